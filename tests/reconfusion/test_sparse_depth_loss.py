"""The sparse-depth term: its loss functions (gradients against finite differences), the targets
in each space (NDC, box, contract), the fade for few points, and the term in the objective."""

import pytest
import torch

import rfkernels
from reconfusion.config import ConfigError, tiny
from reconfusion.geometry import SparsePoints
from reconfusion.losses import config_terms
from reconfusion.losses.sparse_depth import (
    depth_cross_entropy,
    depth_l2,
    depth_targets,
    fade_factor,
    gaussian_bin_mass,
)
from reconfusion.rays import world_to_ndc
from tests.helpers.plane_scenes import plane_scene


def histogram(R=4, S=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    inner = torch.sort(torch.rand(R, S - 1, generator=g, dtype=torch.float64), dim=-1).values
    edges = torch.cat([torch.zeros(R, 1, dtype=torch.float64), inner, torch.ones(R, 1, dtype=torch.float64)], -1)
    w = torch.rand(R, S, generator=g, dtype=torch.float64)
    return edges, w / w.sum(-1, keepdim=True) * 0.9


def test_cross_entropy_gradient_matches_finite_differences():
    edges, w = histogram()
    s = torch.tensor([0.2, 0.5, 0.55, 0.9], dtype=torch.float64)
    sigma = torch.tensor([0.05, 0.01, 0.1, 0.02], dtype=torch.float64)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda w: depth_cross_entropy(edges, w, s, sigma), (w,), eps=1e-7, atol=1e-6)


def test_l2_gradient_matches_finite_differences():
    depth = torch.tensor([0.1, 0.4, 0.8], dtype=torch.float64, requires_grad=True)
    s = torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64)
    sigma = torch.tensor([0.05, 0.1, 0.02], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda d: depth_l2(d, s, sigma), (depth,), eps=1e-7, atol=1e-6)


def test_cross_entropy_is_lowest_with_the_weight_at_the_target():
    edges = torch.linspace(0, 1, 11).expand(3, 11)
    s, sigma = torch.full((3,), 0.55), torch.full((3,), 0.02)
    w = torch.full((3, 10), 1e-3)
    w[0, 5], w[1, 4], w[2, 9] = 0.99, 0.99, 0.99  # at the target's bin, one bin off, far off
    loss = depth_cross_entropy(edges, w, s, sigma)
    assert loss[0] < loss[1] < loss[2]
    mass = gaussian_bin_mass(edges, s, sigma)
    torch.testing.assert_close(mass.sum(-1), torch.ones(3))


def test_fade_factor():
    assert fade_factor(0, 100) == 0.0 and fade_factor(50, 100) == 0.5 and fade_factor(400, 100) == 1.0
    assert fade_factor(3, 0) == 1.0


def known_points(scene):
    """Observations of two world points in views 0 and 1 -> (SparsePoints, the points [2, 3])."""
    X = torch.tensor([[0.3, -0.2, -4.0], [-0.5, 0.4, -9.0]])
    view, pixels, dist = [], [], []
    for v in (0, 1):
        c2w, (fx, fy, cx, cy) = scene.c2w[v], scene.intrinsics[v]
        cam = (X - c2w[:3, 3]) @ c2w[:3, :3]  # OpenGL camera coordinates (z < 0 in front)
        pixels.append(torch.stack([cx + fx * cam[:, 0] / -cam[:, 2], cy - fy * cam[:, 1] / -cam[:, 2]], -1))
        view.append(torch.full((2,), v))
        dist.append((X - c2w[:3, 3]).norm(dim=-1))
    cat = torch.cat
    return SparsePoints(cat(view), cat(pixels), cat(dist), torch.full((4,), 0.05)), X


@pytest.mark.parametrize("space", ["box", "contract"])
def test_metric_targets_are_the_distance_in_s(space):
    scene = plane_scene(space=space)
    pts, _ = known_points(scene)
    tg = depth_targets(scene, pts, "power", 1e-4)
    t = rfkernels.SpaceMap("power", tg.rays.near.double(), tg.rays.far.double()).s_to_t(tg.s.double())
    torch.testing.assert_close(t.float(), pts.distance, rtol=1e-5, atol=1e-5)
    assert (tg.sigma > 1e-4).all()


def test_ndc_targets_reach_the_points_ndc_position():
    scene = plane_scene(space="ndc")
    pts, X = known_points(scene)
    tg = depth_targets(scene, pts, "linear", 1e-4)
    reached = tg.rays.origins + tg.s[:, None] * tg.rays.directions
    want = world_to_ndc(X, scene.intrinsics[0], scene.width, scene.height, scene.near).repeat(2, 1)
    torch.testing.assert_close(reached, want, rtol=1e-4, atol=1e-4)
    assert tg.sigma[1] < tg.sigma[0]  # NDC compresses depth: the same 0.05 is a smaller step at z = -9


def test_targets_beyond_the_far_plane_are_dropped():
    scene = plane_scene(space="box")
    pts, _ = known_points(scene)
    pts.distance[0] = 50.0  # beyond far = 20
    assert len(depth_targets(scene, pts, "power", 1e-4)) == 3


def test_term_is_built_from_the_scene_and_faded():
    pytest.importorskip("cv2")
    scene = plane_scene(n_views=3)
    cfg = tiny().replace(sparse_depth_weight=0.1, sparse_depth_full_points=10**6, spacing="linear")
    (term,) = [t for t in config_terms(cfg, scene, log=lambda s: None) if t.name == "sparse_depth"]
    assert 0 < term.weight < 0.1 * 1e-3  # well under a million points: faded
    with pytest.raises(ValueError, match="needs the scene"):
        config_terms(cfg)
    with pytest.raises(ConfigError, match="sparse_depth_loss"):
        tiny().replace(sparse_depth_loss="l1")


def test_pixel_colors_are_bilinear_at_ray_coordinates():
    from reconfusion.losses.sparse_depth import pixel_colors

    images = torch.rand(2, 5, 7, 3)
    view = torch.tensor([0, 1, 1])
    pixels = torch.tensor([[2.5, 3.5], [0.5, 0.5], [4.0, 1.5]])  # centres of (3, 2) and (0, 0); between columns 3, 4
    got = pixel_colors(images, view, pixels)
    torch.testing.assert_close(got[0], images[0, 3, 2])
    torch.testing.assert_close(got[1], images[1, 0, 0])
    torch.testing.assert_close(got[2], 0.5 * (images[1, 1, 3] + images[1, 1, 4]))


def test_term_rays_take_the_place_of_random_ones_in_the_batch():
    pytest.importorskip("cv2")
    from reconfusion.config import resolve
    from reconfusion.field.zipnerf import ZipNeRF
    from reconfusion.losses import LossContext
    from reconfusion.reconstruct import _RayPool

    scene = plane_scene(n_views=3)
    cfg = tiny().replace(sparse_depth_weight=0.1, sparse_depth_rays=16, batch_rays=64, spacing="linear")
    (term,) = [t for t in config_terms(cfg, scene, log=lambda s: None) if t.name == "sparse_depth"]
    rays, colors, rows = _RayPool(scene, torch.device("cpu")).batch(64, torch.Generator().manual_seed(0), [term])
    assert len(rays) == 64 and colors.shape == (64, 3) and rows == {"sparse_depth": slice(48, 64)}
    # the value reads its rows of the step's render: the same as rendering those rays alone
    model = ZipNeRF(resolve(cfg, scene.space), scene.space)
    cpu = torch.device("cpu")
    merged = LossContext(model, scene, 0, cfg, cpu, 0.5, model(rays), colors, extras={"rows": rows})
    alone = model(rays[rows["sparse_depth"]])
    separate = LossContext(
        model, scene, 0, cfg, cpu, 0.5, alone, colors, extras={"rows": {"sparse_depth": slice(0, 16)}}
    )
    torch.testing.assert_close(term.compute(merged), term.compute(separate), rtol=1e-4, atol=1e-5)


def test_targets_near_the_backdrop_are_dropped():
    from reconfusion.losses.sparse_depth import near_backdrop

    images = torch.full((1, 10, 10, 3), 0.5)
    images[0, :, :3] = 1.0  # a white band at the left: columns 0-2
    view = torch.zeros(3, dtype=torch.long)
    pixels = torch.tensor([[4.5, 5.5], [6.5, 5.5], [1.5, 5.5]])  # 1 column, 3 columns away, on the backdrop
    assert near_backdrop(images, "white", view, pixels, 2).tolist() == [True, False, True]
    assert not near_backdrop(images, "black", view, pixels, 2).any()
    assert not near_backdrop(images, "learned", view, pixels, 2).any()
    assert not near_backdrop(images, "white", view, pixels, 0).any()
