"""Triangulation of matched pixels with known cameras (numpy, float64).

Cameras are the scene's: OpenGL camera-to-world ``c2w`` ``[4, 4]`` and ``(fx, fy, cx, cy)`` with
pixel centres at ``(j + 0.5, i + 0.5)`` (:mod:`reconfusion.rays`). A camera's projection matrix
``P = K [R | t]`` maps world points to pixels in that convention (OpenCV axes: the camera looks
along +z, pixel y down).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def projection_matrix(c2w: np.ndarray, intr: np.ndarray) -> np.ndarray:
    """``[4, 4]`` OpenGL camera-to-world and ``(fx, fy, cx, cy)`` -> ``P`` ``[3, 4]`` (world -> pixel)."""
    c2w = np.asarray(c2w, dtype=np.float64)
    rot = c2w[:3, :3] * np.array([1.0, -1.0, -1.0])  # OpenGL -> OpenCV camera axes (y and z flipped)
    w2c_rot = rot.T
    w2c_t = -w2c_rot @ c2w[:3, 3]
    fx, fy, cx, cy = np.asarray(intr, dtype=np.float64)
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return K @ np.concatenate([w2c_rot, w2c_t[:, None]], axis=1)


def fundamental_matrix(P_a: np.ndarray, P_b: np.ndarray, center_a: np.ndarray) -> np.ndarray:
    """``F`` ``[3, 3]`` with ``x_b^T F x_a = 0`` for the pixels (homogeneous) of one world point in
    cameras ``P_a`` and ``P_b`` (:func:`projection_matrix`); ``center_a``: camera a's centre ``[3]``."""
    e_b = P_b @ np.append(np.asarray(center_a, dtype=np.float64), 1.0)  # a's centre seen by b: the epipole
    cross = np.array([[0.0, -e_b[2], e_b[1]], [e_b[2], 0.0, -e_b[0]], [-e_b[1], e_b[0], 0.0]])
    return cross @ P_b @ np.linalg.pinv(P_a)


def project(P: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points ``[N, 3]`` through ``P`` ``[3, 4]`` -> (pixels ``[N, 2]``, depth along the optical axis ``[N]``;
    positive in front of the camera)."""
    h = points @ P[:, :3].T + P[:, 3]
    # P's third row is [0 0 1] @ [R | t] (K's last row), so h[:, 2] is the camera-space depth.
    return h[:, :2] / h[:, 2:3], h[:, 2]


def triangulate_dlt(Ps: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Linear (DLT) triangulation of ``N`` points seen by ``V`` cameras each.

    Args:
        Ps: ``[N, V, 3, 4]`` (or ``[V, 3, 4]`` shared by every point) projection matrices.
        pixels: ``[N, V, 2]`` observed pixel coordinates.
    Returns:
        ``[N, 3]`` world points: the right singular vector of the stacked ``x P3 - P1``,
        ``y P3 - P2`` rows, after scaling each row to unit norm (better conditioned).
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    Ps = np.broadcast_to(np.asarray(Ps, dtype=np.float64), (*pixels.shape[:2], 3, 4))
    rows_x = pixels[..., 0:1] * Ps[..., 2, :] - Ps[..., 0, :]
    rows_y = pixels[..., 1:2] * Ps[..., 2, :] - Ps[..., 1, :]
    A = np.concatenate([rows_x, rows_y], axis=1)  # [N, 2V, 4]
    A = A / np.linalg.norm(A, axis=-1, keepdims=True).clip(1e-300)
    _, _, vt = np.linalg.svd(A)
    X = vt[:, -1, :]
    return X[:, :3] / X[:, 3:4]


@dataclass(frozen=True)
class RejectionRules:
    """A triangulated point is kept when its largest reprojection error is at most
    ``max_reprojection_px``, it lies in front of every camera that sees it by more than
    ``min_depth`` (cheirality), and the largest angle between its viewing rays is at least
    ``min_angle_deg`` (a smaller angle leaves the depth poorly determined)."""

    max_reprojection_px: float = 1.5
    min_angle_deg: float = 1.0
    min_depth: float = 0.0


@dataclass
class Triangulation:
    """Per point ``[N]``: ``points [N, 3]``, ``reprojection_px`` (largest over its views),
    ``depths [N, V]`` (along each camera's optical axis), ``angle_deg`` (largest ray angle) and
    ``kept`` with the reason of each rejection in ``rejected`` (name -> bool mask)."""

    points: np.ndarray
    reprojection_px: np.ndarray
    depths: np.ndarray
    angle_deg: np.ndarray
    kept: np.ndarray
    rejected: dict


def ray_angles_deg(centers: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Largest angle between the rays from camera centres ``[N, V, 3]`` to ``points`` ``[N, 3]`` -> ``[N]``."""
    rays = points[:, None, :] - centers
    rays = rays / np.linalg.norm(rays, axis=-1, keepdims=True).clip(1e-300)
    cos = np.einsum("nvk,nwk->nvw", rays, rays).clip(-1.0, 1.0)
    return np.degrees(np.arccos(cos.min(axis=(1, 2))))


def triangulate_checked(
    Ps: np.ndarray, centers: np.ndarray, pixels: np.ndarray, rules: RejectionRules
) -> Triangulation:
    """:func:`triangulate_dlt` then the :class:`RejectionRules`.

    Args:
        Ps: ``[N, V, 3, 4]`` projection matrices; ``centers``: ``[N, V, 3]`` camera centres;
        pixels: ``[N, V, 2]``.
    """
    points = triangulate_dlt(Ps, pixels)
    N, V = pixels.shape[:2]
    reproj = np.zeros((N, V))
    depths = np.zeros((N, V))
    for v in range(V):
        h = np.einsum("nij,nj->ni", Ps[:, v, :, :3], points) + Ps[:, v, :, 3]
        depths[:, v] = h[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            reproj[:, v] = np.linalg.norm(h[:, :2] / h[:, 2:3] - pixels[:, v], axis=-1)
    reproj = np.nan_to_num(reproj, nan=np.inf).max(axis=1)
    angle = ray_angles_deg(centers, points)
    rejected = {
        "cheirality": ~(depths > rules.min_depth).all(axis=1),
        "reprojection": reproj > rules.max_reprojection_px,
        "angle": angle < rules.min_angle_deg,
    }
    kept = ~(rejected["cheirality"] | rejected["reprojection"] | rejected["angle"])
    return Triangulation(points, reproj, depths, angle, kept, rejected)


__all__ = [
    "RejectionRules",
    "Triangulation",
    "fundamental_matrix",
    "project",
    "projection_matrix",
    "ray_angles_deg",
    "triangulate_checked",
    "triangulate_dlt",
]
