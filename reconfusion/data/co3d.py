"""CO3D v2 (Common Objects in 3D): ``ROOT/<category>/frame_annotations.jgz`` (+ ``sequence_annotations.jgz``).

``frame_annotations.jgz`` is gzipped JSON: a list of frames, each with ``sequence_name``,
``frame_number``, ``image.path`` (relative to ``ROOT``), ``image.size = [H, W]`` (varies per frame),
optional ``mask.path``, and ``viewpoint`` = ``R`` ``[3, 3]``, ``T`` ``[3]``, ``focal_length`` ``[2]``,
``principal_point`` ``[2]``, ``intrinsics_format``.

Conversion (PyTorch3D's convention, which CO3D uses):

- Extrinsics: points are row vectors, ``X_cam = X_world @ R + T``, i.e. world-to-camera
  ``x_cam = R^T x_world + T``, in camera axes +X left, +Y up, +Z forwards. OpenCV axes are
  ``diag(-1, -1, 1)`` of those, so ``w2c_opencv = [F R^T | F T]`` with ``F = diag(-1, -1, 1)``; then
  ``c2w = inverse(w2c_opencv)`` with the y and z axes flipped to OpenGL.
- Intrinsics, from NDC to pixels of the frame's ``[H, W]`` image with the principal point's NDC
  +X left / +Y up: ``fx = f_x s_x``, ``fy = f_y s_y``, ``cx = W/2 - p_x s_x``, ``cy = H/2 - p_y s_y``,
  where ``s_x = s_y = min(H, W) / 2`` for ``intrinsics_format = "ndc_isotropic"`` (CO3D v2's) and
  ``s_x = W / 2``, ``s_y = H / 2`` for ``"ndc_norm_image_bounds"`` (CO3D v1's).

Each sequence becomes one :class:`~reconfusion.data.index.SceneIndex` in CO3D's world frame and
scale (object-centric, unbounded: bounds from the camera rig, see ``rig_bounds``). The prior trains
on full frames: masks and depth maps are not read, and ``sequence_annotations.jgz`` is not needed
(sequence names come with every frame).
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections import defaultdict

import numpy as np
import torch

from .camera_check import check_cameras, check_unique
from .index import SceneIndex, rig_bounds, w2c_opencv_to_c2w_opengl
from .scene import DataError

INTRINSICS_FORMATS = ("ndc_isotropic", "ndc_norm_image_bounds")
_P3D_TO_OPENCV = np.diag([-1.0, -1.0, 1.0])


def read_jgz(path: str):
    if not os.path.isfile(path):
        raise DataError(f"CO3D annotations not found: {path}")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    except EOFError as exc:
        raise DataError(f"cannot read {path}: truncated (the gzip stream ends early)") from exc
    except (OSError, zlib.error, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: corrupted or not gzipped JSON ({exc})") from exc


def ndc_to_pixels(focal, principal_point, size_hw, intrinsics_format: str) -> tuple[float, float, float, float]:
    """CO3D/PyTorch3D NDC intrinsics -> ``(fx, fy, cx, cy)`` in pixels of an ``[H, W]`` image."""
    if intrinsics_format not in INTRINSICS_FORMATS:
        raise DataError(f"unknown CO3D intrinsics_format {intrinsics_format!r}; known: {INTRINSICS_FORMATS}")
    H, W = (float(v) for v in size_hw)
    sx, sy = (min(H, W) / 2,) * 2 if intrinsics_format == "ndc_isotropic" else (W / 2, H / 2)
    (fx, fy), (px, py) = focal, principal_point
    return fx * sx, fy * sy, W / 2 - px * sx, H / 2 - py * sy


def viewpoint_to_w2c_opencv(R, T) -> np.ndarray:
    """PyTorch3D ``(R, T)`` (``X_cam = X_world @ R + T``) -> OpenCV world-to-camera ``[4, 4]``."""
    R, T = np.asarray(R, dtype=np.float64), np.asarray(T, dtype=np.float64)
    if R.shape != (3, 3) or T.shape != (3,):
        raise DataError(f"CO3D viewpoint needs R [3, 3] and T [3], got {list(R.shape)} and {list(T.shape)}")
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = _P3D_TO_OPENCV @ R.T, _P3D_TO_OPENCV @ T
    return m


def index_co3d(
    category_dir: str, sequences: list[str] | None = None, root: str | None = None, min_frames: int = 2
) -> list[SceneIndex]:
    """One :class:`SceneIndex` per sequence of a CO3D category folder (frames sorted by number).

    ``root`` (default: the category folder's parent) is what ``image.path`` is relative to;
    ``sequences`` restricts to those names; sequences with fewer than ``min_frames`` frames are skipped.
    """
    root = root or os.path.dirname(os.path.normpath(category_dir))
    ann = os.path.join(category_dir, "frame_annotations.jgz")
    frames = read_jgz(ann)
    if not isinstance(frames, list):
        raise DataError(f"{ann} must hold a list of frames, got {type(frames).__name__}")
    by_seq = defaultdict(list)
    for k, fr in enumerate(frames):
        name = fr.get("sequence_name") if isinstance(fr, dict) else None
        if not isinstance(name, str):
            raise DataError(f"{ann}: frame annotation {k} needs a string 'sequence_name', got {_short(name)}")
        number = fr.get("frame_number")
        if isinstance(number, bool) or not isinstance(number, int):
            raise DataError(
                f"{ann}: frame annotation {k} ({name}) needs an integer 'frame_number', got {_short(number)}"
            )
        by_seq[name].append(fr)
    wanted = set(sequences) if sequences is not None else None
    if wanted is not None and wanted - set(by_seq):
        raise DataError(f"{category_dir}: no such sequence(s) {sorted(wanted - set(by_seq))}")
    out = []
    for name in sorted(by_seq):
        if (wanted is not None and name not in wanted) or len(by_seq[name]) < min_frames:
            continue
        seq = sorted(by_seq[name], key=lambda f: f["frame_number"])
        check_unique([f"{name}/{fr['frame_number']}" for fr in seq], ann, "frame")
        cams = [_frame_camera(fr, root, f"{ann}: {name} frame {fr['frame_number']}") for fr in seq]
        w2c, intr, sizes, paths = (list(c) for c in zip(*cams))
        check_cameras(np.stack(w2c), intr, f"{ann}: {name}", [os.path.basename(p) for p in paths], sizes)
        c2w = w2c_opencv_to_c2w_opengl(np.stack(w2c))
        near, far = rig_bounds(c2w)
        out.append(
            SceneIndex(
                c2w=c2w,
                intrinsics=torch.tensor(intr, dtype=torch.float32),
                sizes=torch.tensor(sizes),
                near=near,
                far=far,
                space="contract",
                image_paths=paths,
                name=f"{os.path.basename(os.path.normpath(category_dir))}/{name}",
            )
        )
    if not out:
        raise DataError(f"{category_dir}: no sequence with >= {min_frames} frames")
    return out


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _numbers(value, shape: tuple[int, ...], field: str, where: str) -> np.ndarray:
    """``value`` as a float64 array of ``shape``; anything else (strings, null, ...) names ``field``."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {field} must be numbers, got {_short(value)}") from None
    if a.shape != shape:
        raise DataError(f"{where}: {field} must have shape {list(shape)}, got {list(a.shape)}")
    return a


def _frame_camera(fr: dict, root: str, where: str):
    """One frame annotation -> (OpenCV w2c ``[4, 4]``, ``(fx, fy, cx, cy)`` px, ``[H, W]``, image path)."""
    vp, im = fr.get("viewpoint"), fr.get("image")
    for key, value in (("viewpoint", vp), ("image", im)):
        if not isinstance(value, dict):
            raise DataError(f"{where}: '{key}' must be an object, got {_short(value)}")
    if not isinstance(im.get("path"), str):
        raise DataError(f"{where}: image.path must be a string, got {_short(im.get('path'))}")
    size = _numbers(im.get("size"), (2,), "image.size", where)
    if not (np.isfinite(size).all() and (size == np.round(size)).all()):
        raise DataError(f"{where}: image.size must be two integers [H, W], got {size.tolist()}")
    fmt = vp.get("intrinsics_format", "ndc_norm_image_bounds")
    if fmt not in INTRINSICS_FORMATS:
        raise DataError(f"{where}: unknown viewpoint.intrinsics_format {_short(fmt)}; known: {INTRINSICS_FORMATS}")
    focal = _numbers(vp.get("focal_length"), (2,), "viewpoint.focal_length", where)
    pp = _numbers(vp.get("principal_point"), (2,), "viewpoint.principal_point", where)
    R = _numbers(vp.get("R"), (3, 3), "viewpoint.R", where)
    T = _numbers(vp.get("T"), (3,), "viewpoint.T", where)
    size = [int(v) for v in size]
    return viewpoint_to_w2c_opencv(R, T), ndc_to_pixels(focal, pp, size, fmt), size, os.path.join(root, im["path"])


def is_co3d(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "frame_annotations.jgz"))


__all__ = ["INTRINSICS_FORMATS", "index_co3d", "is_co3d", "ndc_to_pixels", "read_jgz", "viewpoint_to_w2c_opencv"]
