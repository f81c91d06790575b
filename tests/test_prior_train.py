"""Training: examples from scenes, the loss, a few steps on a tiny prior make the loss go down."""
import pytest
import torch

from reconfusion.prior import ReconFusionPrior
from tests.prior_scenes import synthetic_scene
from reconfusion.prior.train import EMA, ExampleSampler, prior_loss, square_resize, train_prior


pytestmark = pytest.mark.usefixtures("one_thread")


S = 64


def test_square_resize_keeps_principal_point_centred():
    imgs = torch.rand(2, 40, 60, 3)
    intr = torch.tensor([50.0, 50.0, 30.0, 20.0]).repeat(2, 1)
    x, K = square_resize(imgs, intr, 20)
    assert x.shape == (2, 3, 20, 20)
    assert torch.allclose(K[0], torch.tensor([[25.0, 0, 10], [0, 25, 10], [0, 0, 1]]))


def test_example_sampler():
    sampler = ExampleSampler([synthetic_scene(6, 32), synthetic_scene(5, 48, seed=1)], S)
    b = sampler.sample(3, 2)
    assert b["target"].shape == (3, 3, S, S) and b["inputs"].shape == (3, 2, 3, S, S)
    assert b["input_c2w"].shape == (3, 2, 4, 4) and b["target_K"].shape == (3, 3, 3) and b["near"].shape == (3,)
    with pytest.raises(ValueError, match="empty"):
        ExampleSampler([], S)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_loss_decreases(prediction_type, tmp_path):
    torch.manual_seed(0)
    prior = ReconFusionPrior.tiny(prediction_type=prediction_type)
    sampler = ExampleSampler([synthetic_scene(6, S)], S, seed=0)
    fixed = sampler.sample(4, 2)

    def eval_loss():
        prior.eval()
        with torch.no_grad():
            vals = [prior_loss(prior, fixed, torch.Generator().manual_seed(i), stratified=False)[0] for i in range(3)]
        return float(torch.stack(vals).mean())

    before = eval_loss()
    hist = train_prior(prior, sampler, steps=20, batch_size=4, lr=2e-3, out_dir=str(tmp_path), checkpoint_every=20,
                       ema_decay=0.9, views=(2, 2))
    after = eval_loss()
    assert len(hist) == 20 and all(torch.isfinite(torch.tensor(hist)))
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
    batch = ExampleSampler([synthetic_scene(4, S)], S).sample(2, 1)
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


def test_bf16_autocast_and_ddp_paths(tmp_path):
    """Mixed precision and the DDP wrapper (gloo, world size 1) run and give finite losses."""
    torch.manual_seed(0)
    prior = ReconFusionPrior.tiny()
    sampler = ExampleSampler([synthetic_scene(4, S)], S)
    assert all(torch.isfinite(torch.tensor(train_prior(prior, sampler, 1, 2, mixed_precision="bf16", views=(1, 1)))))
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        assert all(torch.isfinite(torch.tensor(train_prior(prior, sampler, 1, 2, views=(1, 1)))))
    finally:
        torch.distributed.destroy_process_group()
    with pytest.raises(ValueError, match="mixed_precision"):
        train_prior(prior, sampler, 1, mixed_precision="fp8")


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_finetuning_an_epsilon_base_converges(prediction_type, tmp_path):
    """SD-1.5 is an epsilon model and the prior defaults to v: fine-tuning a (tiny) epsilon-trained base
    in either parameterization lowers the loss of the new target."""
    torch.manual_seed(0)
    base = ReconFusionPrior.tiny(prediction_type="epsilon")
    sampler = ExampleSampler([synthetic_scene(6, S)], S, seed=0)
    train_prior(base, sampler, steps=10, batch_size=4, lr=2e-3, ema_decay=0.0, views=(2, 2))
    base.save(str(tmp_path / "base"))
    prior = ReconFusionPrior.load(str(tmp_path / "base"), prediction_type=prediction_type).train()
    assert prior.cfg.prediction_type == prediction_type
    fixed = sampler.sample(4, 2)

    def eval_loss():
        prior.eval()
        with torch.no_grad():
            vals = [prior_loss(prior, fixed, torch.Generator().manual_seed(i), stratified=False)[1]["diffusion"]
                    for i in range(3)]
        return float(torch.stack(vals).mean())

    before = eval_loss()
    train_prior(prior, sampler, steps=15, batch_size=4, lr=2e-3, ema_decay=0.0, views=(2, 2))
    after = eval_loss()
    print(f"{prediction_type} from an epsilon base: diffusion loss {before:.4f} -> {after:.4f}")
    assert after < 0.8 * before, (before, after)
