"""The covisibility term: frustum counts on a known rig, sample points back in the world (metric and
NDC), the value and its gradient (only the lonely samples' weights), and the term in the objective."""

import pytest
import torch

from reconfusion.config import ConfigError, tiny
from reconfusion.field.zipnerf import RenderOutput
from reconfusion.losses import LossContext, config_terms
from reconfusion.losses.covisibility import TrainingFrusta, covisibility_value, sample_world_points
from tests.helpers.plane_scenes import plane_scene
from tests.helpers.recon_scenes import boxes_scene


def ring(n_views=4):
    """A ring of cameras looking at the origin from 25 degrees up, all of them training views."""
    return boxes_scene(n_views=n_views, size=32).replace(train_ids=list(range(n_views)))


def test_frustum_counts_on_a_ring():
    scene = ring()
    frusta = TrainingFrusta(scene, torch.device("cpu"))
    centers = scene.c2w[:, :3, 3]
    forward = -scene.c2w[:, :3, 2]  # OpenGL: the camera looks along -z
    pts = torch.stack(
        [
            torch.zeros(3),  # the common focus: every camera
            centers[0] - 0.5 * forward[0],  # behind camera 0, and outside the others' view
            centers[0] + 0.3 * forward[0],  # just in front of camera 0
            torch.tensor([0.0, 0.0, 50.0]),  # high above: no camera
        ]
    )
    counts = frusta.counts(pts)
    assert counts[0] == 4 and counts[3] == 0
    assert counts[2] >= 1 and counts[2] > counts[1]


@pytest.mark.parametrize("space", ["ndc", "contract"])
def test_sample_points_lie_on_the_world_ray_in_order(space):
    scene = plane_scene(space=space)
    x, y = torch.tensor([20.5, 64.0, 100.5]), torch.tensor([30.5, 64.0, 90.5])
    c2w, intr = scene.c2w[:1].expand(3, 4, 4), scene.intrinsics[:1].expand(3, 4)
    rays = scene.rays(c2w, intr, x, y)
    s = torch.tensor([[0.1, 0.4, 0.7]]).expand(3, 3)
    pts = sample_world_points(scene, rays, s, "linear")
    from reconfusion.rays import generate_rays

    o, d = generate_rays(c2w, intr, x, y)
    rel = pts - o[:, None]
    cross = torch.linalg.cross(rel, d[:, None].expand_as(rel), dim=-1)
    assert cross.norm(dim=-1).max() < 1e-3 * rel.norm(dim=-1).max()  # on the ray
    depth = (rel * d[:, None]).sum(-1)
    assert (depth[:, 1:] > depth[:, :-1]).all() and (depth > 0).all()  # in front, in order


def test_value_and_gradient_count_only_lonely_samples():
    scene = ring().replace(near=0.3)  # the ray starts in front of its camera, where only it looks
    rays = scene.view_rays(0, torch.tensor([16 * 32 + 16, 8 * 32 + 8]))  # near the image centre
    S = 16
    s_edges = torch.linspace(0.0, 1.0, S + 1).expand(2, S + 1).contiguous()
    weights = torch.full((2, S), 1.0 / S, dtype=torch.float64, requires_grad=True)
    out = RenderOutput(None, None, None, weights, s_edges, None)
    frusta = TrainingFrusta(scene, torch.device("cpu"))
    value = covisibility_value(out, rays, scene, frusta, "power", min_views=2)
    value.backward()
    s_mid = 0.5 * (s_edges[:, 1:] + s_edges[:, :-1])
    lonely = frusta.counts(sample_world_points(scene, rays, s_mid, "power")) < 2
    assert lonely.any() and (~lonely).any()  # the ray leaves its camera alone and crosses the others' views
    torch.testing.assert_close(weights.grad, lonely.double() / 2)
    torch.testing.assert_close(value, (lonely.double() / S).sum() / 2)


def test_term_in_the_objective():
    scene = ring()
    cfg = tiny().replace(covisibility_weight=0.5, spacing="power")
    (term,) = [t for t in config_terms(cfg, scene) if t.name == "covisibility"]
    assert term.weight == 0.5
    with pytest.raises(ValueError, match="needs the scene"):
        config_terms(cfg)
    ctx = LossContext(None, scene, 0, cfg, torch.device("cpu"), 0.0, out=None)
    with pytest.raises(ValueError, match="rays"):
        term.compute(ctx)
    with pytest.raises(ConfigError, match="covisibility_min_views"):
        tiny().replace(covisibility_min_views=0)
    with pytest.raises(ConfigError, match="covisibility_weight"):
        tiny().replace(covisibility_weight=float("nan"))
