"""PixelNeRF: sample depths that cover unbounded scenes, feature-map alignment with an input view."""

import json
import math

import pytest
import torch

import rfkernels
from reconfusion.prior.depths import depth_bounds
from reconfusion.prior.pixelnerf import PixelNeRF, PixelNeRFConfig, contract_distance, sample_bins, uncontract_distance
from tests.helpers.prior_formats import LEGO, lego_cameras

pytestmark = pytest.mark.usefixtures("one_thread")


def test_contraction_roundtrip():
    t = torch.cat([torch.linspace(0, 1, 11), torch.logspace(0, 4, 20)]).double()
    s = contract_distance(t)
    assert bool((s[1:] >= s[:-1]).all()) and float(s.max()) < 2.0
    assert torch.allclose(uncontract_distance(s), t, rtol=1e-9)


def _write_nerfstudio(root, n=12):
    c2w, intr, names = lego_cameras()
    frames = [{"file_path": str(LEGO / names[i]), "transform_matrix": c2w[i].tolist()} for i in range(n)]
    fx, fy, cx, cy = intr[0].tolist()
    meta = {"fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": 200, "h": 200, "frames": frames}
    (root / "transforms.json").write_text(json.dumps(meta))


def test_depths_cover_a_real_unbounded_scene(tmp_path):
    """lego as a nerfstudio scene (radius-1 cameras, near 0.05, far 1000, contracted): the object's
    depth span along a view's centre ray gets many of the 32 samples, not a sliver of the first bin."""
    from reconfusion.cameras import normalize_poses
    from reconfusion.data import load_nerfstudio

    if not LEGO.is_dir():
        pytest.skip("shared data not available")
    _write_nerfstudio(tmp_path)
    scene = load_nerfstudio(str(tmp_path))
    assert (scene.space, scene.near, scene.far) == ("contract", 0.05, 1000.0)
    near, mid, far = depth_bounds(scene.c2w, scene.near, scene.far, scene.space, scene.focus_depth)
    assert (near, far) == (0.05, 1000.0) and 1.0 < mid < 10.0
    # the lego's bounding sphere (radius 1.5 sqrt(3) around the origin in Blender units) after the
    # loader's normalization: centre = transform @ origin * scale, radius * scale
    raw, _, _ = lego_cameras()
    _, transform, scale = normalize_poses(raw[:12].double())
    centre = (transform[:3, 3] * scale).float()
    radius = 1.5 * math.sqrt(3) * scale
    depth = float((scene.c2w[:, :3, 3] - centre).norm(dim=-1).min())
    lo, hi = max(depth - radius, 0.0), depth + radius
    S = 32
    u = torch.full((1, 1, S), 0.5)

    def inside(m):
        _, _, t = sample_bins(torch.tensor([near]), torch.tensor([m]), torch.tensor([far]), u)
        t = t.flatten() * m
        return int(((t >= lo) & (t <= hi)).sum())

    assert inside(far) <= 1  # the old linear spacing: the whole object inside the first bin
    assert inside(mid) >= S // 4, inside(mid)


def test_bounded_scenes_keep_linear_bounds():
    c2w = torch.eye(4)[None].repeat(3, 1, 1)
    assert depth_bounds(c2w, 2.0, 6.0, "box") == (2.0, 6.0, 6.0)
    assert depth_bounds(c2w, 1.0, 20.0, "ndc") == (1.0, 20.0, 20.0)
    _, _, t = sample_bins(torch.tensor([2.0]), torch.tensor([6.0]), torch.tensor([6.0]), torch.full((1, 1, 4), 0.5))
    assert torch.allclose(t.flatten() * 6.0, torch.tensor([2.5, 3.5, 4.5, 5.5]))  # plain linear bins
    with pytest.raises(ValueError, match="near < far"):
        depth_bounds(c2w, 3.0, 2.0, "box")


@pytest.mark.parametrize("mid", [None, 2.5])
def test_feature_map_lines_up_with_the_input_view(monkeypatch, mid):
    """Target camera == input view: every sample of a target pixel projects onto that pixel of the
    input view, at every depth, so PixelNeRF gathers exactly that pixel's feature (non-square image,
    off-centre principal point, arbitrary pose)."""
    torch.manual_seed(0)
    H, W, d = 48, 64, 4
    pn = PixelNeRF(
        PixelNeRFConfig(
            feature_channels=6, encoder_width=8, hidden=16, out_channels=4, n_samples=8, pe_freqs=2, downsample=d
        )
    )
    feats = torch.randn(1, 1, 6, H // d, W // d)
    K = torch.tensor([[70.0, 0, 29.0], [0, 66.0, 26.0], [0, 0, 1]])
    a, b = 0.4, -0.7
    Rx = torch.tensor([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    Ry = torch.tensor([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    c2w = torch.eye(4)
    c2w[:3, :3], c2w[:3, 3] = Rx @ Ry, torch.tensor([0.3, -1.2, 2.0])
    seen = {}
    orig = rfkernels.gather_features

    def spy(*args, **kw):
        seen["out"] = out = orig(*args, **kw)
        return out

    monkeypatch.setattr(rfkernels, "gather_features", spy)
    out = pn(
        feats,
        c2w[None, None],
        K[None, None],
        c2w[None],
        K[None],
        (H, W),
        torch.tensor([0.5]),
        torch.tensor([6.0]),
        None if mid is None else torch.tensor([mid]),
        stratified=True,
    )
    g = seen["out"]
    h, w, S = H // d, W // d, 8
    assert out.features.shape == (1, 4, h, w)
    assert bool(g.mask.all())
    got = g.features.view(1, h, w, S, 1, 6)
    want = feats[0, 0].permute(1, 2, 0)[:, :, None, None, :].expand(h, w, S, 1, 6)
    assert torch.allclose(got[0], want, atol=1e-4), float((got[0] - want).abs().max())
