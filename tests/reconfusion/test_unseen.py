"""RegNeRF's depth smoothness (unseen viewpoints between training cameras, patch rays, the loss) and the grid decay."""

import math

import torch

import rfkernels
from reconfusion.data.scene import select_views
from reconfusion.losses import functions as reg
from reconfusion.reconstruct import build_model, train
from reconfusion.unseen import between_poses, nearest_neighbours, unseen_patches
from tests.helpers.recon_scenes import boxes_scene, ring_poses, small_config


def test_between_poses_are_rigid_and_between_neighbours():
    c2w = ring_poses(6)
    g = torch.Generator().manual_seed(torch.seed() % 2**31)
    poses, src = between_poses(c2w, 200, g)
    rot = poses[:, :3, :3]
    torch.testing.assert_close(rot @ rot.transpose(1, 2), torch.eye(3).expand(200, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(200), atol=1e-5, rtol=0)
    assert torch.equal(poses[:, 3], torch.tensor([0.0, 0, 0, 1]).expand(200, 4))
    centers, nn = c2w[:, :3, 3], nearest_neighbours(c2w[:, :3, 3])
    a, b = centers[src], centers[nn[src]]
    # each centre lies on the segment from its camera to that camera's nearest neighbour
    seg = b - a
    t = ((poses[:, :3, 3] - a) * seg).sum(-1) / seg.square().sum(-1)
    assert bool(((t >= -1e-5) & (t <= 1 + 1e-5)).all())
    torch.testing.assert_close(a + t[:, None] * seg, poses[:, :3, 3], atol=1e-5, rtol=0)
    # the viewing direction stays between the two cameras' (ring cameras are 60 degrees apart)
    fwd = -rot[:, :, 2]
    ang = lambda u, v: torch.rad2deg(torch.acos((u * v).sum(-1).clamp(-1, 1)))  # noqa: E731
    span = ang(-c2w[src, :3, 2], -c2w[nn[src], :3, 2])
    assert bool((ang(fwd, -c2w[src, :3, 2]) <= span + 1e-3).all())


def test_nearest_neighbours_single_camera():
    assert nearest_neighbours(torch.zeros(1, 3)).tolist() == [0]


def test_unseen_patches_are_adjacent_pixels_of_one_camera():
    scene = select_views(boxes_scene(n_views=4, size=16), train_ids=[0, 1, 2], test_ids=[3])
    ids = torch.tensor(scene.train_ids)
    g = torch.Generator().manual_seed(0)
    rays = unseen_patches(scene, scene.c2w[ids], scene.intrinsics[ids], 5, 4, g)
    assert len(rays) == 5 * 16
    o = rays.origins.view(5, 16, 3)
    assert bool((o == o[:, :1]).all())  # one camera per patch
    d = rays.directions.view(5, 4, 4, 3)
    # neighbouring pixels: directions change smoothly and monotonically along rows
    step = (d[:, :, 1:] - d[:, :, :-1]).norm(dim=-1)
    assert bool((step > 0).all()) and float(step.max() / step.min()) < 1.5


def test_depth_smoothness_values():
    flat = torch.full((2, 4, 4), 0.3)
    assert float(reg.depth_smoothness(flat)) == 0.0
    ramp = torch.arange(4.0).view(1, 1, 4).expand(2, 4, 4) * 0.1  # steps of 0.1 along x only
    assert math.isclose(float(reg.depth_smoothness(ramp)), 0.01, rel_tol=1e-6)


def test_training_with_depth_smoothness_runs_and_logs_the_term():
    scene = select_views(boxes_scene(n_views=4, size=16), train_ids=[0, 1, 2], test_ids=[3])
    cfg = small_config(
        iterations=3, depth_smoothness_weight=0.1, depth_smoothness_patches=2, depth_smoothness_patch_size=4
    )
    res = train(scene, cfg, None, progress_bar=False, log=lambda s: None)
    assert "depth_smoothness" in res.history[-1] and math.isfinite(res.history[-1]["depth_smoothness"])


def test_grid_decay_sums_level_means_of_every_grid():
    """Zip-NeRF's hash decay: sum over levels (of every hash grid in the module) of the mean square."""
    scene = select_views(boxes_scene(n_views=4, size=16), train_ids=[0, 1, 2], test_ids=[3])
    model = build_model(small_config(), scene)
    grids = [m for m in model.modules() if isinstance(m, rfkernels.HashGridEncoding)]
    assert len(grids) == 1 + len(model.cfg.proposals)
    expected = 0.0
    for g in grids:
        with torch.no_grad():
            g.params.copy_(torch.randn_like(g.params))
        offs = g.level_offsets
        F = g.params.numel() // offs[-1]
        expected += sum(
            float(g.params.detach()[offs[i] * F : offs[i + 1] * F].double().square().mean())
            for i in range(len(offs) - 1)
        )
    value = reg.grid_decay(model)
    assert math.isclose(float(value.detach()), expected, rel_tol=1e-5)
    value.backward()
    assert all(g.params.grad is not None and float(g.params.grad.abs().max()) > 0 for g in grids)
    assert float(reg.grid_decay(torch.nn.Linear(2, 2))) == 0.0
    # the training loop's in-place form adds exactly the gradient of 0.3 * grid_decay
    autograd = [g.params.grad.clone() * 0.3 for g in grids]
    for g in grids:
        g.params.grad = torch.ones_like(g.params)
    reg.add_grid_decay_grad_(model, 0.3)
    for g, want in zip(grids, autograd):
        torch.testing.assert_close(g.params.grad, want + 1.0)
    grids[0].params.requires_grad_(False)  # a frozen grid is left alone
    grids[0].params.grad = None
    reg.add_grid_decay_grad_(model, 0.3)
    assert grids[0].params.grad is None
    res = train(scene, small_config(iterations=3, grid_decay_weight=0.1), None, progress_bar=False, log=lambda s: None)
    assert math.isfinite(res.history[-1]["grid_decay"])


def test_unseen_patch_size_is_checked():
    import pytest

    scene = select_views(boxes_scene(n_views=4, size=16), train_ids=[0, 1, 2], test_ids=[3])
    ids = torch.tensor(scene.train_ids)
    for bad in (0, 17):
        with pytest.raises(ValueError, match="`patch` must be in"):
            unseen_patches(scene, scene.c2w[ids], scene.intrinsics[ids], 2, bad, torch.Generator())
