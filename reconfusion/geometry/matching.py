"""Feature matches between training views: OpenCV's SIFT, Lowe's ratio test and a mutual check,
optionally only along the epipolar lines of the known cameras.

OpenCV is an optional dependency (``pip install reconfusion[geometry]``, i.e.
``opencv-python-headless``): SIFT detection and brute-force descriptor matching are what it does
well; the triangulation with the scene's known cameras is ours (:mod:`.triangulate`).
"""

from __future__ import annotations

import numpy as np


class GeometryDependencyError(ImportError):
    """OpenCV is not installed (needed by the sparse-depth term only)."""


def _cv2():
    try:
        import cv2
    except ImportError as exc:
        raise GeometryDependencyError(
            "the sparse-depth term matches features with OpenCV: pip install opencv-python-headless "
            "(or reconfusion[geometry]), or turn it off with --sparse-depth off"
        ) from exc
    return cv2


def to_gray_u8(image: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` float in [0, 1] -> ``[H, W]`` uint8 luminance."""
    gray = np.asarray(image, dtype=np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(np.round(gray * 255.0), 0, 255).astype(np.uint8)


def detect(image: np.ndarray, max_features: int = 0, upsample: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """SIFT keypoints of an ``[H, W, 3]`` float image -> (pixels ``[K, 2]`` with pixel centres at
    ``+0.5`` as in :mod:`reconfusion.rays`, descriptors ``[K, 128]`` float32). ``max_features`` 0 keeps
    every keypoint; ``upsample`` > 1 detects on the image enlarged by that factor (bicubic), which
    finds several times more stable keypoints on the small images few-view runs use, at sub-pixel
    positions in the original image."""
    cv2 = _cv2()
    gray = to_gray_u8(image)
    if upsample > 1:
        gray = cv2.resize(gray, None, fx=upsample, fy=upsample, interpolation=cv2.INTER_CUBIC)
    # precise upscale: SIFT's internal 2x octave otherwise puts every keypoint 0.25 px right and down
    sift = cv2.SIFT_create(nfeatures=max_features, enable_precise_upscale=True)
    keypoints, desc = sift.detectAndCompute(gray, None)
    if desc is None or not keypoints:
        return np.zeros((0, 2)), np.zeros((0, 128), dtype=np.float32)
    # OpenCV puts pixel (0, 0)'s centre at (0, 0) (in the enlarged image: (u + 0.5) * k - 0.5 for
    # original coordinate u); the scenes put it at (0.5, 0.5).
    pixels = (np.array([kp.pt for kp in keypoints], dtype=np.float64) + 0.5) / max(upsample, 1)
    return pixels, desc.astype(np.float32)


def _two_nearest(dist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise (index of the nearest, nearest distance, second-nearest distance) of ``dist [A, B]``."""
    two = np.argpartition(dist, 1, axis=1)[:, :2]
    d = np.take_along_axis(dist, two, axis=1)
    first = d[:, 0] <= d[:, 1]
    idx = np.where(first, two[:, 0], two[:, 1])
    return idx, d.min(axis=1), d.max(axis=1)


def match(desc_a: np.ndarray, desc_b: np.ndarray, ratio: float = 0.75, allowed=None, chunk: int = 2048) -> np.ndarray:
    """Indices ``[M, 2]`` of descriptor pairs (a, b) that pass Lowe's ratio test (nearest distance
    below ``ratio`` times the second nearest) in both directions and are each other's nearest.

    ``allowed(rows) -> bool [len(rows), B]`` (optional) restricts which b each a in ``rows`` may
    match (e.g. :func:`epipolar_band`); the ratio test then runs among the allowed candidates only.
    Distances are computed ``chunk`` rows at a time (memory ``chunk x B``)."""
    A, B = len(desc_a), len(desc_b)
    if A < 2 or B < 2:
        return np.zeros((0, 2), dtype=np.int64)
    a_sq, b_sq = (desc_a.astype(np.float64) ** 2).sum(1), (desc_b.astype(np.float64) ** 2).sum(1)
    row_idx, row_d1, row_d2 = np.zeros(A, dtype=np.int64), np.full(A, np.inf), np.full(A, np.inf)
    col_idx, col_d1, col_d2 = np.zeros(B, dtype=np.int64), np.full(B, np.inf), np.full(B, np.inf)
    for lo in range(0, A, chunk):
        rows = np.arange(lo, min(lo + chunk, A))
        d2 = a_sq[rows, None] + b_sq[None, :] - 2.0 * desc_a[rows].astype(np.float64) @ desc_b.T.astype(np.float64)
        dist = np.sqrt(np.maximum(d2, 0.0))
        if allowed is not None:
            dist = np.where(allowed(rows), dist, np.inf)
        row_idx[rows], row_d1[rows], row_d2[rows] = _two_nearest(dist)
        c_idx, c_d1, c_d2 = _two_nearest(dist.T)  # this chunk's two nearest a per b, merged below
        better = c_d1 < col_d1
        col_d2 = np.where(better, np.minimum(col_d1, c_d2), np.minimum(col_d2, c_d1))
        col_idx = np.where(better, rows[c_idx], col_idx)
        col_d1 = np.minimum(col_d1, c_d1)
    a_ok = np.isfinite(row_d1) & (row_d1 < ratio * row_d2)
    b_ok = np.isfinite(col_d1) & (col_d1 < ratio * col_d2)
    a = np.nonzero(a_ok)[0]
    b = row_idx[a]
    keep = b_ok[b] & (col_idx[b] == a)
    return np.stack([a[keep], b[keep]], axis=1).astype(np.int64).reshape(-1, 2)


def epipolar_band(pixels_a: np.ndarray, pixels_b: np.ndarray, fundamental: np.ndarray, max_px: float):
    """``allowed(rows)`` for :func:`match`: b within ``max_px`` of a's epipolar line in view b and a within
    ``max_px`` of b's line in view a (``x_b^T F x_a = 0``, :func:`~.triangulate.fundamental_matrix`)."""
    ha = np.concatenate([pixels_a, np.ones((len(pixels_a), 1))], axis=1)
    hb = np.concatenate([pixels_b, np.ones((len(pixels_b), 1))], axis=1)
    lines_in_a = hb @ fundamental  # [B, 3]
    lines_in_a = lines_in_a / np.linalg.norm(lines_in_a[:, :2], axis=1, keepdims=True).clip(1e-300)

    def allowed(rows):
        lines_in_b = ha[rows] @ fundamental.T
        lines_in_b = lines_in_b / np.linalg.norm(lines_in_b[:, :2], axis=1, keepdims=True).clip(1e-300)
        return (np.abs(lines_in_b @ hb.T) <= max_px) & (np.abs(ha[rows] @ lines_in_a.T) <= max_px)

    return allowed


__all__ = ["GeometryDependencyError", "detect", "epipolar_band", "match", "to_gray_u8"]
