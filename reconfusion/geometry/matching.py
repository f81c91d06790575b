"""Feature matches between training views: OpenCV's SIFT, Lowe's ratio test and a mutual check.

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


def match(desc_a: np.ndarray, desc_b: np.ndarray, ratio: float = 0.75) -> np.ndarray:
    """Indices ``[M, 2]`` of descriptor pairs (a, b) that pass Lowe's ratio test (nearest distance
    below ``ratio`` times the second nearest) in both directions and are each other's nearest."""
    if len(desc_a) < 2 or len(desc_b) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    cv2 = _cv2()
    matcher = cv2.BFMatcher(cv2.NORM_L2)

    def one_way(q, t):
        best = {}
        for pair in matcher.knnMatch(q, t, k=2):
            if len(pair) == 2 and pair[0].distance < ratio * pair[1].distance:
                best[pair[0].queryIdx] = pair[0].trainIdx
        return best

    ab, ba = one_way(desc_a, desc_b), one_way(desc_b, desc_a)
    pairs = [(a, b) for a, b in ab.items() if ba.get(b) == a]
    return np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)


__all__ = ["GeometryDependencyError", "detect", "match", "to_gray_u8"]
