"""Model, training loop, extra-loss hook, checkpoints, metrics and video output."""

import json
import math
import os

import numpy as np
import pytest
import torch

from reconfusion.config import Config, get_preset, resolve
from reconfusion.data.scene import select_views
from reconfusion.evaluation import evaluate, render_view
from reconfusion.losses import LossTerm
from reconfusion.metrics import psnr, ssim
from reconfusion.reconstruct import build_model, learning_rate, load_checkpoint, save_checkpoint, scene_meta, train
from reconfusion.video import side_by_side, write_video
from tests.helpers.recon_scenes import ITERS, boxes_scene, small_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def scene():
    return select_views(boxes_scene(n_views=12, size=32), train_ids=[i for i in range(12) if i != 4], test_ids=[4])


@pytest.fixture(scope="module")
def trained(scene, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run"))
    torch.manual_seed(0)
    return train(scene, small_config(), out, progress_bar=False), out


def test_presets_and_config_json():
    base = get_preset("base")
    assert base.field.grid.n_levels == 10 and base.field.grid.max_resolution == 8192
    assert base.field.grid.log2_hashmap_size == 21 and base.field.grid.n_features_per_level == 4
    assert [p.grid.max_resolution for p in base.proposals] == [512, 2048]
    assert base.n_samples == (64, 64, 32) and base.interlevel_blurs == (0.03, 0.003)
    assert (base.lr_init, base.lr_final, base.warmup_steps, base.beta2, base.adam_eps) == (
        1e-2,
        1e-3,
        2500,
        0.99,
        1e-15,
    )
    again = Config.from_dict(json.loads(base.to_json()))
    assert again == base
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("huge")
    with pytest.raises(ValueError, match="unknown config"):
        base.replace(learning_rate=3)


def test_learning_rate_schedule():
    cfg = get_preset("base")
    assert learning_rate(0, cfg) < 1e-9
    assert math.isclose(
        learning_rate(cfg.warmup_steps, cfg), math.exp(math.log(1e-2) * (1 - 0.1) + math.log(1e-3) * 0.1), rel_tol=1e-6
    )
    assert math.isclose(learning_rate(cfg.iterations, cfg), 1e-3, rel_tol=1e-6)


def test_model_forward_shapes(scene):
    model = build_model(small_config(), scene)
    rays = scene.view_rays(0)[:50]
    out = model(rays, progress=0.5)
    assert out.rgb.shape == (50, 3) and out.weights.shape == (50, 16) and out.s_edges.shape == (50, 17)
    assert len(out.proposals) == 1 and out.proposals[0][0].shape == (50, 25)
    assert bool((out.s_edges[:, 1:] >= out.s_edges[:, :-1]).all())
    out.rgb.sum().backward()
    assert model.field.encoding.grid.params.grad is not None


def test_training_reaches_psnr(scene, trained):
    """200 iterations of 512 rays (MSE, as the tiny preset) on 11 of 12 ring views of a 32x32
    two-box scene; view 4 (30 degrees from its neighbours) is held out.

    Threshold: rendering only the black background scores 11.2 dB on the held-out view (the boxes
    cover about a fifth of it), and a model that collapsed to that (what an L1-like loss does in
    such short runs) or fits the training views without consistent 3D geometry stays well below
    20 dB there. Requiring > 20 dB and > background + 8 dB means the boxes' shapes and colours
    were recovered in 3D; the development run reached 23.8 dB held-out (about 25 dB on a training
    view), so the bound leaves ~4 dB of margin and is not tuned to pass by a hair.
    """
    result, _ = trained
    r = render_view(result.model, scene, 4, chunk=2048)
    gt = scene.images[4]
    bg = psnr(torch.zeros_like(gt), gt)
    got = psnr(r["rgb"], gt)
    print(f"held-out PSNR {got:.2f} dB (background-only {bg:.2f} dB)")
    assert got > 20.0 and got > bg + 8.0
    hist = result.history
    assert hist[-1]["data"] < hist[0]["data"]


def test_checkpoint_round_trip_identical_renders(scene, trained, tmp_path):
    result, out = trained
    model, cfg, info = load_checkpoint(out)
    assert info["step"] == ITERS and info["scene"]["train_ids"] == scene.train_ids
    rays = scene.view_rays(4)[:300]
    with torch.no_grad():
        a, b = result.model(rays), model(rays)
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.depth, b.depth)
    assert os.path.isfile(os.path.join(out, "checkpoint", "model.safetensors"))


class _Interrupt(Exception):
    pass


def _interrupt_at(step):
    def fn(ctx):
        if ctx.iteration == step:
            raise _Interrupt

    return LossTerm("interrupt", fn)


def test_resume_continues_with_the_saved_config(scene, tmp_path):
    """A run interrupted after its step-3 checkpoint resumes there with the saved config; the
    caller's differing keys are reported once, by name, and ignored; the model is built once."""
    out = str(tmp_path)
    cfg = small_config(iterations=6, checkpoint_every=3)
    with pytest.raises(_Interrupt):
        train(scene, cfg, out, progress_bar=False, extra_terms=[_interrupt_at(4)])
    assert load_checkpoint(out)[2]["step"] == 3
    logs = []
    res = train(
        scene, cfg.replace(eval_chunk=1000, n_samples=(8, 8)), out, resume=True, progress_bar=False, log=logs.append
    )
    assert logs[0] == "warmup_steps 10 -> 1 (capped at a tenth of 6 iterations)"
    assert len(logs) == 3 and "eval_chunk (saved 2048, yours 1000)" in logs[1] and "n_samples" in logs[1]
    assert "step 3" in logs[2]
    assert res.config == resolve(cfg, "box") and res.model.cfg.n_samples == (24, 16)
    assert [h["step"] for h in res.history] == [5]  # steps 3..5 ran (logged every 10 and at the end)
    assert load_checkpoint(out)[2]["step"] == 6
    # the same run, never interrupted, ends with the same weights: optimizer and both RNGs restored
    whole = train(scene, cfg, str(tmp_path / "whole"), progress_bar=False)
    a, b = res.model.state_dict(), whole.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_restores_optimizer_state(scene, tmp_path):
    from reconfusion.checkpoint import load_trainer_state, save_trainer_state
    from reconfusion.reconstruct import make_optimizer

    model = build_model(small_config(), scene)
    opt = make_optimizer(model, small_config())
    model(scene.view_rays(0)[:32], progress=0.1).rgb.sum().backward()
    opt.step()
    path = str(tmp_path / "opt.safetensors")
    save_trainer_state(path, opt, 7)
    rng = torch.get_rng_state()
    torch.rand(3)
    opt2 = make_optimizer(model, small_config())
    assert load_trainer_state(path, opt2) == 7
    assert torch.equal(torch.get_rng_state(), rng)
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for pid, st in a["state"].items():
        for k, v in st.items():
            assert torch.equal(v, b["state"][pid][k]), k


def test_extra_loss_term(scene):
    calls = []

    def hook(ctx):
        calls.append(ctx.iteration)
        out = ctx.render(ctx.scene.view_rays(0)[:16])
        assert out.rgb.requires_grad
        return out.rgb.mean() * 0.0 if ctx.iteration % 2 == 0 else None

    res = train(
        scene,
        small_config(iterations=7),
        None,
        progress_bar=False,
        extra_terms=[LossTerm("prior", hook, weight=0.5, every=3)],
    )
    assert calls == [0, 3, 6]
    assert "prior" in res.history[0]


def test_evaluate_writes_outputs(scene, trained, tmp_path):
    result, _ = trained
    res = evaluate(result.model, scene, str(tmp_path), chunk=2048, log=lambda s: None)
    assert set(res["mean"]) == {"psnr", "ssim"} and "not computed" in res["lpips"]
    assert os.path.isfile(tmp_path / "results.json") and os.path.isfile(tmp_path / "test_004.png")


def test_psnr_ssim_values():
    torch.manual_seed(0)
    a = torch.rand(32, 32, 3)
    assert math.isclose(psnr(a, a.clamp(0, 1) * 0 + a), float("inf"))
    assert math.isclose(psnr(torch.zeros(4, 4, 3), torch.full((4, 4, 3), 0.1)), 20.0, rel_tol=1e-6)
    assert math.isclose(ssim(a, a), 1.0, rel_tol=1e-9)
    noisy = (a + 0.1 * torch.randn_like(a)).clamp(0, 1)
    assert 0.0 < ssim(noisy, a) < 0.99
    # brute force at one window position (the top-left 11x11 patch, Gaussian sigma 1.5)
    x, y = a[:11, :11, 0].double(), noisy[:11, :11, 0].double()
    g = torch.exp(-((torch.arange(11.0, dtype=torch.float64) - 5) ** 2) / 4.5)
    w = (g[:, None] * g[None]) / (g[:, None] * g[None]).sum()
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy, cxy = (w * x * x).sum() - mx**2, (w * y * y).sum() - my**2, (w * x * y).sum() - mx * my
    c1, c2 = 0.01**2, 0.03**2
    ref = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert math.isclose(ssim(noisy[:11, :11, :1], a[:11, :11, :1]), ref.item(), rel_tol=1e-9)


def test_video_and_side_by_side(tmp_path):
    img = side_by_side(torch.zeros(5, 6, 3), torch.ones(5, 6, 3))
    assert img.shape == (5, 18, 3) and img.dtype == np.uint8
    frames = [np.full((10, 12, 3), i * 20, np.uint8) for i in range(4)]
    path = write_video(frames, str(tmp_path / "v.mp4"), fps=4)
    assert os.path.getsize(path) > 0
    gif = write_video(frames, str(tmp_path / "v.gif"), fps=4)
    assert gif.endswith(".gif") and os.path.getsize(gif) > 0


def test_save_checkpoint_meta(scene, tmp_path):
    model = build_model(small_config(), scene)
    save_checkpoint(str(tmp_path), model, model.cfg, scene_meta(scene, {"path": "x"}), 0)
    m, _, info = load_checkpoint(str(tmp_path / "checkpoint"))
    assert info["scene"]["data"] == {"path": "x"} and m.space == "box"


def test_lpips_from_local_torchscript_only(tmp_path):
    from reconfusion.metrics import LPIPS

    class L1(torch.nn.Module):  # stands in for a scripted LPIPS network (NCHW in [-1, 1])
        def forward(self, x, y):
            return (x - y).abs().mean()

    path = str(tmp_path / "lpips.pt")
    torch.jit.script(L1()).save(path)
    fn = LPIPS(path)
    assert math.isclose(fn(torch.zeros(4, 4, 3), torch.ones(4, 4, 3)), 2.0)
    with pytest.raises(FileNotFoundError, match="LPIPS weights not found"):
        LPIPS(str(tmp_path / "missing.pt"))
    torch.save({"w": torch.zeros(2)}, str(tmp_path / "sd.pth"))  # a pickled state dict is never unpickled
    with pytest.raises(ValueError, match="not a TorchScript module"):
        LPIPS(str(tmp_path / "sd.pth"))


@pytest.mark.parametrize("space", ["ndc", "contract", "box"])
def test_forward_in_every_space(space, scene, tmp_path):
    """NDC (forward-facing LLFF), contraction (unbounded, power-ladder spacing) and box scenes."""
    if space == "ndc":
        from reconfusion.data import load_llff
        from tests.helpers.scene_files import write_llff

        sc = load_llff(write_llff(str(tmp_path / "llff"), n=4))
    elif space == "contract":
        sc = scene.replace(space="contract", near=0.05, far=1000.0, bbox=None, background="learned")
    else:
        sc = scene
    model = build_model(small_config(), sc)
    out = model(sc.view_rays(0)[:64], progress=0.3)
    assert bool(torch.isfinite(out.rgb).all()) and bool(((out.depth >= 0) & (out.depth <= 1 + 1e-5)).all())
    out.rgb.sum().backward()
    assert model.field.encoding.grid.params.grad.abs().sum() > 0
    if space == "ndc":
        assert model.bg_logit.grad is not None


def test_base_preset_trains_a_step_on_cpu(scene):
    """The `base` preset (Zip-NeRF sizes: 2^21-entry tables, 64/64/32 samples) builds and takes
    optimizer steps: catches config/shape mistakes that only the large preset would hit."""
    cfg = get_preset("base").replace(iterations=2, batch_rays=64, warmup_steps=1, eval_every=0, checkpoint_every=0)
    result = train(scene, cfg, None, progress_bar=False)
    out = result.model(scene.view_rays(4)[:32], progress=None)
    assert out.weights.shape == (32, 32) and bool(torch.isfinite(out.rgb).all())
    assert len(out.proposals) == 2 and out.proposals[0][0].shape == (32, 65)
