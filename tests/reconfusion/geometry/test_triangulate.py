"""Triangulation with known cameras: projection in the scenes' pixel convention, DLT against
synthetic points, and each rejection rule."""

import numpy as np
import pytest
import torch

from reconfusion.cameras import look_at
from reconfusion.geometry.triangulate import (
    RejectionRules,
    fundamental_matrix,
    project,
    projection_matrix,
    triangulate_checked,
    triangulate_dlt,
)
from reconfusion.rays import generate_rays

INTR = np.array([300.0, 310.0, 160.0, 120.0])


def cameras(n: int = 3, spread: float = 1.0) -> np.ndarray:
    """``n`` OpenGL cameras on an arc, all looking at the origin from about 6 units: ``[n, 4, 4]``."""
    out = []
    for k in range(n):
        c = torch.tensor([spread * (k - (n - 1) / 2), 0.3 * k, 6.0], dtype=torch.float64)
        out.append(look_at(-c, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), c))
    return torch.stack(out).numpy()


def points(n: int = 50, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.5, 1.5, size=(n, 3))


def observe(c2ws, X):
    Ps = np.stack([projection_matrix(c, INTR) for c in c2ws])
    px = np.stack([project(P, X)[0] for P in Ps], axis=1)  # [N, V, 2]
    return Ps, px


def test_projection_matches_the_scenes_rays():
    """The pixel a point projects to is the pixel whose ray (reconfusion.rays) passes through it."""
    c2w, X = cameras(1)[0], points(20)
    px, depth = project(projection_matrix(c2w, INTR), X)
    assert (depth > 0).all()
    o, d = generate_rays(
        torch.from_numpy(c2w), torch.from_numpy(INTR), torch.from_numpy(px[:, 0]), torch.from_numpy(px[:, 1])
    )
    to_point = X - o.numpy()
    d = d.numpy() / np.linalg.norm(d.numpy(), axis=-1, keepdims=True)
    cross = np.linalg.norm(np.cross(to_point, d), axis=-1)
    np.testing.assert_allclose(cross, 0.0, atol=1e-9)
    assert (np.einsum("nk,nk->n", to_point, d) > 0).all()  # in front, along the ray


@pytest.mark.parametrize("n_views", [2, 3, 5])
def test_dlt_recovers_known_points(n_views):
    c2ws, X = cameras(n_views), points()
    Ps, px = observe(c2ws, X)
    got = triangulate_dlt(Ps, px)
    rel = np.linalg.norm(got - X, axis=-1) / np.linalg.norm(X, axis=-1)
    assert rel.max() < 1e-4


def check(c2ws, X, px, rules=RejectionRules()):
    Ps = np.broadcast_to(np.stack([projection_matrix(c, INTR) for c in c2ws]), (len(X), len(c2ws), 3, 4))
    centers = np.broadcast_to(c2ws[:, :3, 3], (len(X), len(c2ws), 3))
    return triangulate_checked(Ps, centers, px, rules)


def test_clean_points_are_kept_with_their_angle_and_depths():
    c2ws, X = cameras(2, spread=2.0), points()
    _, px = observe(c2ws, X)
    tri = check(c2ws, X, px)
    assert tri.kept.all() and tri.reprojection_px.max() < 1e-6
    assert (tri.angle_deg > 10).all() and (tri.depths > 3).all()


def test_reprojection_rule_rejects_a_moved_pixel():
    c2ws, X = cameras(2, spread=2.0), points(10)
    _, px = observe(c2ws, X)
    px[3, 1, 1] += 6.0  # off the epipolar line: no point reprojects to both pixels
    tri = check(c2ws, X, px, RejectionRules(max_reprojection_px=1.5))
    assert tri.rejected["reprojection"].tolist() == [i == 3 for i in range(10)]
    assert check(c2ws, X, px, RejectionRules(max_reprojection_px=10.0)).kept.all()


def test_cheirality_rule_rejects_a_point_behind_the_cameras():
    c2ws = cameras(2, spread=2.0)
    X = np.array([[0.0, 0.0, 0.0], [0.2, 0.1, 12.0]])  # the second is behind both cameras (z = 6)
    _, px = observe(c2ws, X)
    tri = check(c2ws, X, px)
    assert tri.rejected["cheirality"].tolist() == [False, True]
    assert tri.kept.tolist() == [True, False]


def test_angle_rule_rejects_a_narrow_baseline():
    wide, narrow = cameras(2, spread=2.0), cameras(2, spread=0.02)
    narrow[:, 1, 3] = narrow[0, 1, 3]  # same height: only the 0.02 baseline separates them
    X = points(5)
    for c2ws, rejected in ((wide, False), (narrow, True)):
        _, px = observe(c2ws, X)
        tri = check(c2ws, X, px, RejectionRules(min_angle_deg=1.0))
        assert tri.rejected["angle"].all() == rejected and tri.rejected["angle"].any() == rejected


def test_fundamental_matrix_relates_the_two_views_of_each_point():
    """``x_b^T F x_a = 0`` for every point's two pixels: each lies on the other's epipolar line
    (distance in pixels below 1e-6 of the image size)."""
    c2w = cameras(2, spread=1.5)
    Pa, Pb = projection_matrix(c2w[0], INTR), projection_matrix(c2w[1], INTR)
    (xa, _), (xb, _) = project(Pa, points()), project(Pb, points())
    F = fundamental_matrix(Pa, Pb, c2w[0][:3, 3])
    homog = lambda x: np.concatenate([x, np.ones((len(x), 1))], 1)  # noqa: E731
    lines = homog(xa) @ F.T
    dist = np.abs((lines * homog(xb)).sum(1)) / np.linalg.norm(lines[:, :2], axis=1)
    assert dist.max() < 1e-6 * 320
    moved = homog(xb + np.array([0.0, 3.0]))  # off the line: a pixel-sized residual
    assert (np.abs((lines * moved).sum(1)) / np.linalg.norm(lines[:, :2], axis=1) > 0.01).all()
