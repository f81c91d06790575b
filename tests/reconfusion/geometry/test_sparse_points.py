"""Sparse points of a scene's training views: OpenCV matching, then triangulation with the scene's
cameras, on a textured plane of known depth; the run-folder cache."""

import os

import numpy as np
import pytest
import torch

from reconfusion.geometry import RejectionRules, load_or_triangulate, triangulate_views
from reconfusion.geometry.sparse_points import CACHE_DIR, distance_sigma
from tests.helpers.plane_scenes import PLANE_Z, plane_scene, texture

pytest.importorskip("cv2")


def test_matches_of_a_shifted_image_have_the_shift():
    from reconfusion.geometry.matching import detect, match

    tex = texture().permute(1, 2, 0).numpy()
    a, b = tex[20:148, 20:148], tex[20:148, 27:155]  # b is a moved 7 pixels left
    (pa, da), (pb, db) = detect(a), detect(b)
    m = match(da, db)
    assert len(m) >= 20
    shift = pa[m[:, 0]] - pb[m[:, 1]]
    assert np.median(np.abs(shift - [7.0, 0.0]), axis=0).max() < 0.2
    assert len(set(m[:, 1].tolist())) == len(m)  # mutual: each b keypoint used once


@pytest.mark.parametrize("upsample", [1, 2])
def test_keypoints_sit_on_blob_centres(upsample):
    """A Gaussian blob centred at a known sub-pixel position (pixel centres at +0.5) is detected there
    to 0.05 px, on the original and on the enlarged image (OpenCV's default SIFT upscale is 0.25 px off)."""
    from reconfusion.geometry.matching import detect

    rng = np.random.default_rng()
    x, y = np.meshgrid(np.arange(96) + 0.5, np.arange(96) + 0.5)
    for cx, cy in rng.uniform(40.0, 56.0, (5, 2)):
        blob = 0.2 + 0.6 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 18.0)
        pixels, _ = detect(np.repeat(blob[..., None], 3, -1), upsample=upsample)
        nearest = pixels[np.argmin(((pixels - [cx, cy]) ** 2).sum(-1))]
        assert np.abs(nearest - [cx, cy]).max() < 0.05, (nearest, (cx, cy))


def test_chunked_matching_equals_one_pass_and_brute_force():
    """Row chunks give the one-pass answer, which is the brute-force mutual ratio test; an ``allowed``
    mask that forbids every pair leaves no match."""
    from reconfusion.geometry.matching import match

    rng = np.random.default_rng()
    a = rng.normal(size=(60, 16)).astype(np.float32)
    b = np.concatenate([a[:40] + 0.05 * rng.normal(size=(40, 16)), rng.normal(size=(30, 16))]).astype(np.float32)
    one, chunked = match(a, b, 0.8), match(a, b, 0.8, chunk=7)
    assert np.array_equal(one, chunked) and len(one) >= 30
    d = np.linalg.norm(a[:, None] - b[None], axis=-1)
    two_a, two_b = np.sort(d, 1)[:, :2], np.sort(d, 0)[:2].T
    expected = [
        (i, int(d[i].argmin()))
        for i in range(len(a))
        if two_a[i, 0] < 0.8 * two_a[i, 1]
        and d[:, d[i].argmin()].argmin() == i
        and two_b[d[i].argmin(), 0] < 0.8 * two_b[d[i].argmin(), 1]
    ]
    assert one.tolist() == [list(e) for e in expected]
    assert len(match(a, b, 0.8, allowed=lambda rows: np.zeros((len(rows), len(b)), dtype=bool))) == 0


@pytest.mark.parametrize("upsample, epipolar_px", [(1, 0.0), (2, 0.0), (2, 1.0)])
def test_points_on_a_textured_plane_have_its_depth(upsample, epipolar_px):
    scene = plane_scene(n_views=3)
    pts = triangulate_views(scene, RejectionRules(), upsample=upsample, epipolar_px=epipolar_px)
    assert pts.stats["kept_points"] >= 30 and len(pts) == 2 * pts.stats["kept_points"]
    c2w, intr = scene.c2w[pts.view], scene.intrinsics[pts.view]
    # the point's depth along the optical axis, from its distance along the unit pixel ray
    u = (pts.pixels - intr[:, 2:]) / intr[:, :2]
    z = -pts.distance / torch.sqrt(1.0 + u.square().sum(-1))
    assert (c2w[:, 2, 3] == 0).all()
    rel = ((z - PLANE_Z) / PLANE_Z).abs()
    # a wrong match along the (horizontal) epipolar line passes every two-view rule: a few outliers
    assert rel.median() < 0.005 and (rel < 0.02).float().mean() > 0.9
    assert (pts.sigma > 0).all() and (pts.sigma < 0.2 * pts.distance).all()


def test_distance_sigma_grows_with_error_and_narrow_angles():
    d, f = np.array([5.0, 5.0, 5.0]), np.array([100.0] * 3)
    s = distance_sigma(d, f, np.array([0.1, 2.0, 2.0]), np.array([10.0, 10.0, 2.0]))
    assert s[0] == pytest.approx(5.0 * 0.5 / (100.0 * np.sin(np.radians(10.0))))  # floor of 0.5 px
    assert s[0] < s[1] < s[2]


def test_points_are_cached_in_the_run_folder(tmp_path):
    scene = plane_scene(n_views=2)
    logs = []
    first = load_or_triangulate(scene, str(tmp_path), RejectionRules(), log=logs.append)
    files = sorted(os.listdir(tmp_path / CACHE_DIR))
    assert [f.rsplit(".", 1)[1] for f in files] == ["json", "safetensors"]
    again = load_or_triangulate(scene, str(tmp_path), RejectionRules(), log=logs.append)
    assert "from " + str(tmp_path) in logs[-1]
    for name in ("view", "pixels", "distance", "sigma"):
        assert torch.equal(getattr(first, name), getattr(again, name))
    other = scene.replace(train_ids=[1, 0][:1] + [0])  # another view set: another file
    assert other.train_ids != scene.train_ids
    load_or_triangulate(other, str(tmp_path), RejectionRules(), log=logs.append)
    assert len(os.listdir(tmp_path / CACHE_DIR)) == 4
