"""Training: the loss, EMA, a few steps on a tiny prior make the loss go down, full resume in-process."""

import pytest
import torch

from reconfusion.data.index import SceneIndex
from reconfusion.prior import ReconFusionPrior
from reconfusion.prior.dataset import PriorExamples
from reconfusion.prior.run_config import TrainConfig
from reconfusion.prior.train import EMA, prior_loss, square_resize, train_prior
from tests.helpers.prior_scenes import synthetic_scene

pytestmark = pytest.mark.usefixtures("one_thread")


S = 64


def _data(size=S, batch_size=4, views=(2, 2), n=6, seed=0, scenes=1):
    idx = [SceneIndex.from_scene(synthetic_scene(n, size, seed=i)) for i in range(scenes)]
    return PriorExamples(idx, size, batch_size, views, seed=seed, epoch_size=64)


def _cfg(**kw):
    base = dict(steps=20, batch_size=4, lr=2e-3, ema=0.9, checkpoint_every=1000, log_every=1000, num_workers=0)
    return TrainConfig(**{**base, **kw})


def test_square_resize_keeps_principal_point_centred():
    imgs = torch.rand(2, 40, 60, 3)
    intr = torch.tensor([50.0, 50.0, 30.0, 20.0]).repeat(2, 1)
    x, K = square_resize(imgs, intr, 20)
    assert x.shape == (2, 3, 20, 20)
    assert torch.allclose(K[0], torch.tensor([[25.0, 0, 10], [0, 25, 10], [0, 0, 1]]))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_loss_decreases(prediction_type, tmp_path):
    torch.manual_seed(0)
    prior = ReconFusionPrior.tiny(prediction_type=prediction_type)
    ds = _data()
    fixed = ds.make_batch(0, 0)

    def eval_loss():
        prior.eval()
        with torch.no_grad():
            vals = [prior_loss(prior, fixed, torch.Generator().manual_seed(i), stratified=False)[0] for i in range(3)]
        return float(torch.stack(vals).mean())

    before = eval_loss()
    res = train_prior(prior, ds, _cfg(checkpoint_every=20), str(tmp_path))
    after = eval_loss()
    assert len(res.losses) == 20 and res.step == 20 and all(torch.isfinite(torch.tensor(res.losses)))
    print(f"loss before {before:.4f} after {after:.4f}")
    assert after < 0.8 * before, (before, after)
    assert ReconFusionPrior.load(str(tmp_path / "ema")).cfg.prediction_type == prediction_type


def test_cfg_dropout_zeroes_inputs(monkeypatch):
    prior = ReconFusionPrior.tiny()
    prior.cfg.cond_drop_prob = 1.0
    seen = {}
    orig = prior.encode_views

    def spy(images):
        seen["max"] = float(images.abs().max())
        return orig(images)

    monkeypatch.setattr(prior, "encode_views", spy)
    batch = _data(batch_size=2, views=(1, 1)).make_batch(0, 0)
    loss, parts = prior_loss(prior, batch)
    assert seen["max"] == 0.0 and float(parts["photometric"]) == 0.0 and torch.isfinite(loss)


def test_ema_moves_towards_params():
    m = torch.nn.Linear(2, 2)
    ema = EMA(m, decay=0.5)
    with torch.no_grad():
        m.weight.add_(1.0)
    ema.update(m)
    target = m.weight.detach().clone()
    other = torch.nn.Linear(2, 2)
    ema.copy_to(other)
    assert torch.allclose(other.weight, target - 0.5)


def test_bf16_autocast_and_config_errors():
    torch.manual_seed(0)
    prior = ReconFusionPrior.tiny(latent_size=8)
    ds = _data(32, batch_size=2, views=(1, 1))
    res = train_prior(prior, ds, _cfg(steps=1, batch_size=2, mixed_precision="bf16"))
    assert all(torch.isfinite(torch.tensor(res.losses)))
    with pytest.raises(ValueError, match="mixed_precision"):
        train_prior(prior, ds, _cfg(mixed_precision="fp8"))
    with pytest.raises(ValueError, match="grad_accum"):
        TrainConfig(grad_accum=0).validate()
    with pytest.raises(ValueError, match="unknown train config key"):
        TrainConfig.from_dict({"stepz": 3})


def _params(prior):
    return {k: v.detach().clone() for k, v in prior.state_dict().items()}


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    """Stop at step 3 (state saved), continue to 6 with a fresh prior object: weights, EMA and losses
    equal the uninterrupted run's bit for bit (grad accumulation 2, so data position matters)."""
    from safetensors.torch import load_file

    from reconfusion.prior import checkpoint as ckpt

    def fresh():
        torch.manual_seed(0)
        return ReconFusionPrior.tiny(latent_size=8)

    cfg = _cfg(steps=6, batch_size=2, grad_accum=2, checkpoint_every=3, views=[1, 2])
    torch.manual_seed(123)
    full = train_prior(fresh(), _data(32, 2, (1, 2), scenes=2), cfg, str(tmp_path / "a"))
    a = ReconFusionPrior.load(str(tmp_path / "a" / "last"))
    torch.manual_seed(123)
    first = train_prior(
        fresh(), _data(32, 2, (1, 2), scenes=2), _cfg(**{**cfg.to_dict(), "steps": 3}), str(tmp_path / "b")
    )
    assert first.step == 3 and ckpt.latest(str(tmp_path / "b"))["step"] == 3
    torch.manual_seed(999)  # whatever the process did meanwhile
    rest = train_prior(fresh(), _data(32, 2, (1, 2), scenes=2), cfg, str(tmp_path / "b"))
    assert rest.resumed_from == 3 and rest.step == 6
    assert first.losses + rest.losses == full.losses
    b = ReconFusionPrior.load(str(tmp_path / "b" / "last"))
    pa, pb = _params(a), _params(b)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    ea = load_file(str(tmp_path / "a" / "state-000006" / "ema.safetensors"))
    eb = load_file(str(tmp_path / "b" / "state-000006" / "ema.safetensors"))
    assert all(torch.equal(ea[k], eb[k]) for k in ea)
    assert not (tmp_path / "b" / "state-000003").exists()  # older states are removed


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_finetuning_an_epsilon_base_converges(prediction_type, tmp_path):
    """SD-1.5 is an epsilon model and the prior defaults to v: fine-tuning a (tiny) epsilon-trained base
    in either parameterization lowers the loss of the new target."""
    torch.manual_seed(0)
    base = ReconFusionPrior.tiny(latent_size=8, prediction_type="epsilon")
    ds = _data(32)
    train_prior(base, ds, _cfg(steps=10, ema=0.0))
    base.save(str(tmp_path / "base"))
    prior = ReconFusionPrior.load(str(tmp_path / "base"), prediction_type=prediction_type).train()
    assert prior.cfg.prediction_type == prediction_type
    fixed = ds.make_batch(0, 0)

    def eval_loss():
        prior.eval()
        with torch.no_grad():
            vals = [
                prior_loss(prior, fixed, torch.Generator().manual_seed(i), stratified=False)[1]["diffusion"]
                for i in range(3)
            ]
        return float(torch.stack(vals).mean())

    before = eval_loss()
    train_prior(prior, ds, _cfg(steps=15, ema=0.0))
    after = eval_loss()
    print(f"{prediction_type} from an epsilon base: diffusion loss {before:.4f} -> {after:.4f}")
    assert after < 0.8 * before, (before, after)


def test_config_file_and_flags():
    from reconfusion.prior.run_config import build_parser, config_from_args

    args = build_parser().parse_args(
        [
            "s1",
            "--out",
            "o",
            "--data",
            "co3d:/d/co3d:3",
            "--data",
            "realestate:/d/re",
            "--tiny",
            "--steps",
            "7",
            "--grad-accum",
            "4",
            "--prediction",
            "epsilon",
        ]
    )
    cfg = config_from_args(args)
    assert cfg.data == [
        {"format": "co3d", "path": "/d/co3d", "weight": 3.0},
        {"format": "realestate", "path": "/d/re", "weight": 1.0},
        {"format": "scene", "path": "s1", "downscale": 1.0},
    ]
    assert cfg.model == {"tiny": True, "prediction_type": "epsilon"} and (cfg.steps, cfg.grad_accum) == (7, 4)
    assert cfg.batch_size == TrainConfig().batch_size  # not given: the default


def test_run_json_reproduces_the_run(tmp_path):
    """The run.json a run writes, given back as --config, reproduces its weights bit for bit."""
    import numpy as np
    from safetensors.torch import load_file

    from reconfusion.app.cli import main

    sc = synthetic_scene(6, 32)
    data = tmp_path / "scene.npz"
    np.savez(data, images=sc.images.numpy(), poses=sc.c2w.numpy(), focal=32.0, near=1.0, far=5.0)
    assert (
        main(
            [
                "train-prior",
                str(data),
                "--tiny",
                "--out",
                str(tmp_path / "a"),
                "--steps",
                "2",
                "--batch-size",
                "2",
                "--num-workers",
                "0",
                "--no-progress",
                "--seed",
                "3",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert (
        main(
            ["train-prior", "--config", str(tmp_path / "a" / "run.json"), "--out", str(tmp_path / "b"), "--no-progress"]
        )
        == 0
    )
    a, b = (load_file(str(tmp_path / d / "last" / "model.safetensors")) for d in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_tensorboard_logging(tmp_path, monkeypatch):
    """--tensorboard: scalars go to a SummaryWriter (a stand-in here: the package is not installed);
    without the package the error says what to install."""
    import sys
    import types

    written = []

    class Writer:
        def __init__(self, logdir):
            written.append(("dir", logdir))

        def add_scalar(self, k, v, step):
            written.append((k, step))

        def close(self):
            written.append(("closed",))

    prior = ReconFusionPrior.tiny(latent_size=8)
    ds = _data(32, batch_size=2, views=(1, 1))
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    train_prior(prior, ds, _cfg(steps=2, batch_size=2, log_every=1, tensorboard=True), str(tmp_path))
    assert written[0] == ("dir", str(tmp_path / "tensorboard")) and written[-1] == ("closed",)
    assert {("examples_per_s", 2), ("loss", 1), ("data_wait", 2)} <= set(written)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(ValueError, match="pip install tensorboard"):
        train_prior(prior, ds, _cfg(steps=3, batch_size=2, tensorboard=True), str(tmp_path / "x"))
