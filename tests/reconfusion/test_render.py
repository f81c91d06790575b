"""reconfusion.render: the fast evaluation path gives the pixels of the model's own forward pass,
does not depend on the chunk size, restores the training mode and counts rays on its bar."""

import pytest
import torch

from reconfusion.reconstruct import build_model
from reconfusion.render import render_image, render_rays
from tests.helpers.recon_scenes import boxes_scene, small_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_scene():
    scene = boxes_scene(n_views=2, size=16)
    torch.manual_seed(0)
    model = build_model(small_config(), scene)
    with torch.no_grad():  # a non-trivial field: random tables instead of the near-zero init
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model, scene


def test_matches_the_forward_pass(model_scene):
    model, scene = model_scene
    rays = scene.view_rays(0)[:100]
    with torch.no_grad():
        o = model.eval()(rays)  # one chunk, with autograd's bookkeeping: the plain evaluation path
    want = {"rgb": o.rgb.float().clamp(0, 1), "depth": o.depth.float(), "opacity": o.opacity.float()}
    got = render_rays(model, rays, 100, outputs=("rgb", "depth", "opacity"))
    for k in ("rgb", "depth", "opacity"):
        assert torch.equal(got[k], want[k]), k
    assert want["opacity"].max() > 0.1  # the comparison is not between empty renders


def test_chunk_size_and_image_shapes(model_scene):
    model, scene = model_scene
    rays = scene.view_rays(1)
    a = render_image(model, rays, scene.height, scene.width, chunk=37)
    b = render_image(model, rays, scene.height, scene.width, chunk=100000)
    assert set(a) == {"rgb", "depth"} and a["rgb"].shape == (16, 16, 3) and a["depth"].shape == (16, 16)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5)
    assert not a["rgb"].requires_grad


def test_mode_restored_and_bar_counts(model_scene):
    model, scene = model_scene

    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    bar = Bar()
    model.train()
    render_rays(model, scene.view_rays(0), 50, outputs=("rgb",), bar=bar)
    assert model.training and bar.n == scene.height * scene.width
    model.eval()
    render_rays(model, scene.view_rays(0)[:10], 50, outputs=("rgb",))
    assert not model.training


def test_bad_arguments(model_scene):
    model, scene = model_scene
    rays = scene.view_rays(0)
    with pytest.raises(ValueError, match="outputs"):
        render_rays(model, rays, outputs=("rgb", "normals"))
    with pytest.raises(ValueError, match="chunk"):
        render_rays(model, rays, chunk=0)
    with pytest.raises(ValueError, match="height \\* width"):
        render_image(model, rays, 15, 16)
