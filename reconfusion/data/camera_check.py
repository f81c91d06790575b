"""The one check every loader applies to the cameras it read, before using them.

A camera is refused (:class:`~reconfusion.data.scene.DataError` naming the file, the frame and the
field) when its pose has a NaN/inf, its rotation is not a rotation (``max |RᵀR - I| >
ROTATION_TOLERANCE``, or a reflection), a focal length is not a positive finite number, the principal
point is not finite, or (when sizes are given) the image is smaller than 1 x 1 pixel.

The pose may be camera-to-world or world-to-camera, in any axis convention: the rotation block of
either is orthonormal. Loaders check world-to-camera matrices before inverting them, so a singular
(e.g. all-zero) pose is an error naming the frame rather than a ``LinAlgError``.
"""

from __future__ import annotations

import numpy as np

from .errors import DataError

# Rounding of a stored rotation (float32, printed decimals) moves RᵀR from I by ~1e-6; sheared or
# scaled matrices that are not cameras are off by far more (the cases reported were 0.05 to 0.75).
ROTATION_TOLERANCE = 1e-3


def _label(names, i: int) -> str:
    return f"frame {i} ({names[i]})" if names is not None and i < len(names) else f"frame {i}"


def _pose_checks(poses: np.ndarray, source: str) -> list:
    """(bad mask ``[N]``, message of frame i) for every pose check."""
    if poses.ndim != 3 or poses.shape[1:] not in ((3, 4), (4, 4)):
        raise DataError(f"{source}: poses must be [N, 3|4, 4], got {list(poses.shape)}")
    R, t = poses[:, :3, :3], poses[:, :3, 3]
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(np.einsum("nji,njk->nik", R, R) - np.eye(3)).max(axis=(1, 2))
        det = np.linalg.det(np.where(np.isfinite(R), R, 0.0))
    checks = [
        (~np.isfinite(R).all(axis=(1, 2)), lambda i: "rotation has a non-finite (NaN/inf) value"),
        (~np.isfinite(t).all(axis=1), lambda i: "translation has a non-finite (NaN/inf) value"),
        (
            ~(err <= ROTATION_TOLERANCE),
            lambda i: f"rotation is not orthonormal (max |RᵀR - I| = {err[i]:.3g}, tolerance {ROTATION_TOLERANCE:g})",
        ),
        (det < 0, lambda i: "rotation is a reflection (determinant < 0)"),
    ]
    if poses.shape[1] == 4:
        bottom = ~np.all(poses[:, 3] == [0.0, 0.0, 0.0, 1.0], axis=1)
        checks.append((bottom, lambda i: f"last row must be [0, 0, 0, 1], got {poses[i, 3].tolist()}"))
    return checks


def check_cameras(poses, intrinsics=None, source: str = "cameras", names=None, sizes=None) -> None:
    """Refuse impossible cameras.

    Args:
        poses: ``[N, 3|4, 4]`` rigid transforms (c2w or w2c), or None (intrinsics / sizes only).
        intrinsics: ``[N, 4]`` ``(fx, fy, cx, cy)`` in pixels, or None.
        source: the file (or scene) the cameras come from, for the message.
        names: ``N`` frame names for the message (image files), or None.
        sizes: ``[N, 2]`` ``(height, width)`` in pixels, or None.
    """
    checks = [] if poses is None else _pose_checks(np.asarray(poses, dtype=np.float64), source)
    n = None if poses is None else len(poses)
    if intrinsics is not None:
        k = np.asarray(intrinsics, dtype=np.float64).reshape(n or -1, 4)
        for j, field in enumerate(("focal length fx", "focal length fy")):
            checks.append(
                (
                    ~(np.isfinite(k[:, j]) & (k[:, j] > 0)),
                    lambda i, j=j, field=field: f"{field} must be a finite number > 0, got {k[i, j]}",
                )
            )
        for j, field in ((2, "principal point cx"), (3, "principal point cy")):
            checks.append((~np.isfinite(k[:, j]), lambda i, j=j, field=field: f"{field} must be finite, got {k[i, j]}"))
    if sizes is not None:
        hw = np.asarray(sizes, dtype=np.float64).reshape(n or -1, 2)
        for j, field in ((1, "image width"), (0, "image height")):
            checks.append((~(hw[:, j] >= 1), lambda i, j=j, field=field: f"{field} must be >= 1, got {hw[i, j]}"))
    for bad, message in checks:
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{source}: {_label(names, i)}: {message(i)}")


def check_unique(names, source: str, what: str = "image name") -> None:
    """Refuse a repeated name (two cameras claiming one image)."""
    seen = set()
    for i, n in enumerate(names):
        if n in seen:
            raise DataError(f"{source}: {what} {n!r} appears twice (frame {i} repeats it)")
        seen.add(n)


__all__ = ["ROTATION_TOLERANCE", "check_cameras", "check_unique"]
