"""The sample loss in reconstruction: novel poses, t annealing, gradients into the NeRF, the loop."""

import pytest
import torch

from reconfusion.data.scene import select_views
from reconfusion.prior import ReconFusionPrior
from reconfusion.prior.sample_loss import SampleLoss, annealed_t_range, focus_point, nearest_views, sample_novel_pose
from tests.helpers.prior_scenes import synthetic_scene

S = 64


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def prior():
    torch.manual_seed(0)
    return ReconFusionPrior.tiny()


def _scene(kind):
    return select_views(synthetic_scene(10, 32, kind), n_views=3)


def _project(c2w, point):
    """OpenGL camera-space coordinates of a world point."""
    return (torch.linalg.inv(c2w) @ torch.cat([point, torch.ones(1)]))[:3]


@pytest.mark.parametrize("kind", ["360", "forward"])
def test_novel_poses_look_at_the_scene(kind):
    scene = _scene(kind)
    c2w = scene.c2w[scene.train_ids]
    focus = focus_point(c2w, scene.focus_depth)
    if kind == "360":
        assert focus.norm() < 1e-3  # ring cameras all look at the origin
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        pose = sample_novel_pose(c2w, kind == "forward", g, scene.focus_depth)
        x, y, z = _project(pose, focus).tolist()
        assert z < 0 and abs(x) < 1e-4 * abs(z) + 1e-5 and abs(y) < 1e-4 * abs(z) + 1e-5  # dead ahead
        assert torch.allclose(pose[:3, :3] @ pose[:3, :3].T, torch.eye(3), atol=1e-5)
        if kind == "360":  # on the orbit: distance to the focus within the training range
            r = (c2w[:, :3, 3] - focus).norm(dim=-1)
            assert r.min() - 1e-4 <= (pose[:3, 3] - focus).norm() <= r.max() + 1e-4


def test_poses_never_use_test_cameras(prior):
    scene = _scene("360")
    moved = scene.c2w.clone()
    moved[scene.test_ids, :3, 3] += 10.0
    a = SampleLoss(prior, scene, seed=3).novel_camera()[0]
    b = SampleLoss(prior, scene.replace(c2w=moved), seed=3).novel_camera()[0]
    assert torch.equal(a, b)


def test_nearest_views_and_annealing():
    c2w = torch.eye(4).repeat(4, 1, 1)
    c2w[:, 0, 3] = torch.tensor([0.0, 1.0, 2.0, 3.0])
    target = torch.eye(4)
    target[0, 3] = 2.2
    assert nearest_views(c2w, target, 2) == [2, 3]
    assert annealed_t_range(0.0) == (1.0, 1.0) and annealed_t_range(1.0) == (0.0, 1.0)
    assert annealed_t_range(0.25) == (0.75, 1.0)


def _ctx(scene, progress=0.5):
    from reconfusion.config import tiny
    from reconfusion.losses import LossContext
    from reconfusion.reconstruct import build_model

    torch.manual_seed(0)
    cfg = tiny()
    return LossContext(build_model(cfg, scene), scene, 0, cfg, torch.device("cpu"), progress)


@pytest.mark.parametrize("kind,guidance", [("forward", 2.0), ("360", 0.0), ("360", 1.0)])
def test_sample_loss_has_gradients_into_nerf(prior, kind, guidance):
    scene = _scene(kind)
    ctx = _ctx(scene)
    fn = SampleLoss(prior, scene, steps=2, guidance=guidance, lpips=lambda x, y: (x - y).square().mean(), seed=1)
    loss = fn(ctx)
    assert loss.dim() == 0 and torch.isfinite(loss) and loss > 0
    loss.backward()
    grads = [p.grad for p in ctx.model.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    assert fn.last["sample"].shape == (1, 3, S, S) and 0.5 <= fn.last["t"] <= 1.0
    assert set(fn.last["ids"]) <= set(range(len(scene.train_ids)))
    assert fn.weight == pytest.approx(1 / 3) and fn.lpips_weight == (0.25 if kind == "forward" else 0.0)


def test_reconstruct_loop_with_prior(prior, tmp_path):
    """The whole loop on CPU: reconstruct.train with the sample loss as one more LossTerm."""
    from reconfusion.config import tiny
    from reconfusion.losses import LossTerm
    from reconfusion.reconstruct import train

    scene = _scene("forward")
    cfg = tiny().replace(iterations=4, batch_rays=64, warmup_steps=1, checkpoint_every=0)
    fn = SampleLoss(prior, scene, steps=2, seed=0)
    res = train(scene, cfg, None, extra_terms=[LossTerm("prior", fn, every=2)], progress_bar=False)
    assert "prior" in res.history[0] and res.history[0]["prior"] > 0
    assert len(fn._views) >= 1  # view encodings cached per input subset


def test_cli_train_prior_then_reconstruct_with_prior(tmp_path, capsys):
    """``reconfusion train-prior`` writes a prior; ``reconfusion reconstruct --prior`` uses it."""
    import json

    import numpy as np

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
                str(tmp_path / "prior"),
                "--steps",
                "2",
                "--batch-size",
                "1",
                "--device",
                "cpu",
                "--num-workers",
                "0",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (tmp_path / "prior" / "ema" / "model.safetensors").is_file()
    rc = main(
        [
            "reconstruct",
            "--data",
            str(data),
            "--views",
            "3",
            "--iterations",
            "2",
            "--batch-rays",
            "32",
            "--prior",
            str(tmp_path / "prior" / "ema"),
            "--prior-every",
            "1",
            "--prior-steps",
            "1",
            "--no-video",
            "--quiet",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert rc == 0 and "sample loss every 1" in capsys.readouterr().out
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    assert hist[0]["prior"] > 0
    assert main(["train-prior", str(data), "--out", str(tmp_path / "x"), "--steps", "1"]) == 2  # no model given


def test_lpips_from_local_weights(prior, tmp_path):
    """LPIPS given as a local TorchScript file: frozen, used with weight 0.25 on forward-facing scenes."""

    class FakeLPIPS(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, x, y):
            return ((x - y) * self.w).abs().mean(dim=(1, 2, 3))

    path = tmp_path / "lpips.pt"
    torch.jit.script(FakeLPIPS()).save(str(path))
    scene = _scene("forward")
    fn = SampleLoss(prior, scene, steps=1, lpips=str(path), seed=0)
    assert fn.lpips_weight == 0.25 and not any(p.requires_grad for p in fn.lpips.parameters())
    loss = fn(_ctx(scene))
    l1 = (fn.last["render"] - fn.last["sample"]).abs().mean()
    assert float(loss.detach()) == pytest.approx(float(l1 * (1 + 0.25 * 2)) / 3, rel=1e-4)  # stand-in = 2 x L1


def test_lpips_off_is_said_loudly_once(prior, caplog):
    """No LPIPS weights on an NDC scene: one WARNING per process, not a silent INFO line."""
    import logging

    from reconfusion.prior import sample_loss as SL

    SL._LPIPS_WARNED.clear()
    scene = _scene("forward")
    with caplog.at_level(logging.WARNING, logger=SL.__name__):
        a = SampleLoss(prior, scene, steps=1)
        SampleLoss(prior, scene, steps=1)
    warned = [r for r in caplog.records if "LPIPS term OFF" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    assert a.lpips is None and a.lpips_weight == SL.LPIPS_WEIGHT_NDC
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=SL.__name__):  # weights given, default weight 0 on 360
        b = SampleLoss(prior, _scene("360"), steps=1, lpips=lambda x, y: (x - y).abs().mean())
    assert b.lpips_weight == 0.0 and any("LPIPS weight is 0" in r.getMessage() for r in caplog.records)


def test_ndc_cone_radius_follows_the_rendering_camera(prior):
    """Sample-loss renders in NDC: the cone radius is the NDC footprint of one pixel of the camera
    that renders (focal f * S / min(H, W)), not of the scene's own cameras."""
    from reconfusion.rays import PIXEL_RADIUS

    scene = select_views(synthetic_scene(10, 48, "forward"), n_views=3)  # S / min(H, W) = 64 / 48
    fn = SampleLoss(prior, scene, steps=1)
    c2w, K = fn.novel_camera()
    intr = torch.stack([K[0, 0], K[1, 1], K[0, 2], K[1, 2]])
    rays = scene.camera_rays(c2w, intr, height=S, width=S)
    # NDC x of each ray at t = 1 (depth infinity): the footprint of one pixel is the step between neighbours
    x_far = (rays.origins + rays.directions)[:, 0].view(S, S)
    step = (x_far[:, 1:] - x_far[:, :-1]).abs().mean()
    assert torch.allclose(rays.radii, torch.full_like(rays.radii, PIXEL_RADIUS * float(step)), rtol=1e-3)
    assert float(step) == pytest.approx(2.0 / scene.width * 48 / 64, rel=1e-3)  # not 2 / W
    own = scene.view_rays(0)  # the scene's own cameras keep 2 / W
    assert torch.allclose(own.radii, torch.full_like(own.radii, PIXEL_RADIUS * 2.0 / scene.width))


def test_sample_loss_depths_cover_contracted_scenes(prior):
    """A nerfstudio-style unbounded scene (far = 1000): the prior's conditioning uses a finite
    linear range (twice the camera distance from the focus: ring radius 3, height 0.5), not [near, 1000]."""
    scene = _scene("360").replace(far=1000.0)
    fn = SampleLoss(prior, scene, steps=1)
    near, mid, far = fn.depths
    assert (near, far) == (scene.near, 1000.0) and mid == pytest.approx(2 * (3.0**2 + 0.5**2) ** 0.5, rel=1e-4)
    assert SampleLoss(prior, _scene("forward"), steps=1).depths[1:] == (6.0, 6.0)  # NDC: linear, as given


def test_the_runs_backend_reaches_every_op_and_the_priors_gather(prior, monkeypatch):
    """train() enters rfkernels.use_backend(cfg.backend) once: every op of the field, the losses and the
    prior's PixelNeRF gather is called without a backend and sees the run's choice. The run asks for
    triton, which "auto" would never pick on the CPU; the spy records the scope each op sees, then
    computes with torch (the interpreter would take minutes)."""
    from reconfusion.config import tiny
    from reconfusion.losses import LossTerm
    from reconfusion.reconstruct import train
    from rfkernels import _dispatch

    if _dispatch.triton_unavailable_reason(torch.device("cpu")) is not None:
        pytest.skip("needs Triton (GPU or interpreter): check_backend refuses the run otherwise")
    calls, real = [], _dispatch.resolve_backend

    def spy(backend, *tensors, family=None):
        calls.append((family, backend, _dispatch.get_backend()))
        return real("torch", *tensors, family=family)

    monkeypatch.setattr(_dispatch, "resolve_backend", spy)
    scene = _scene("forward")
    cfg = tiny().replace(
        iterations=2, batch_rays=16, warmup_steps=1, checkpoint_every=0, backend="triton", torch_compile=False
    )
    train(
        scene, cfg, None, extra_terms=[LossTerm("prior", SampleLoss(prior, scene, steps=1, seed=0))], progress_bar=False
    )
    families = {f for f, _, _ in calls}
    assert {"gather", "hashgrid", "sampling", "volrend"} <= families, families
    assert all(arg is None and scope == "triton" for _, arg, scope in calls), set(calls)
