"""nerfstudio ``transforms.json`` scenes (OpenGL camera-to-world per frame).

Intrinsics ``fl_x, fl_y, cx, cy, w, h`` may be global or per frame (per-frame wins). Lens
distortion coefficients are not modelled: a non-zero ``k1..k4, p1, p2`` is an error. Poses are
recentred and scaled so the farthest camera is at radius 1, and the scene is treated as unbounded
(mip-NeRF 360 contraction) unless ``space`` says otherwise.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..cameras import normalize_poses
from .blender import _read_json, check_frame, pose_matrix
from .camera_check import check_cameras
from .scene import DataError, Scene, composite, downscale_size, read_image, resize_image, stack_images

_DIST_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")


def _get(frame: dict, meta: dict, key: str, where: str) -> float:
    """Intrinsic ``key`` of a frame (per frame, else global) as a number."""
    val = frame.get(key, meta.get(key))
    if val is None:
        raise DataError(f"{where}: missing intrinsic '{key}' (global or per frame)")
    if isinstance(val, bool) or not isinstance(val, (int, float)):
        raise DataError(f"{where}: '{key}' must be a number, got {val!r}")
    return float(val)


def _int(value, key: str, where: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: '{key}' must be an integer, got {value!r}") from None


def load_nerfstudio(path: str, downscale: float = 1.0, space: str = "contract", background: str = "learned") -> Scene:
    jpath = os.path.join(path, "transforms.json")
    if not os.path.isfile(jpath):
        raise DataError(f"not a nerfstudio scene: {jpath} not found")
    meta = _read_json(jpath)
    frames = meta.get("frames")
    if not frames:
        raise DataError(f"{jpath} has no frames")
    imgs, names, poses, intr = [], [], [], []
    for k, fr in enumerate(frames):
        check_frame(fr, f"{jpath} frame {k}")
        if any(
            _get(fr, {**dict.fromkeys(_DIST_KEYS, 0.0), **meta}, key, f"{jpath} frame {k}") != 0
            for key in _DIST_KEYS
            if fr.get(key, meta.get(key)) is not None
        ):
            raise DataError(f"{jpath}: lens distortion is not supported (undistort the images first)")
        p = os.path.join(path, fr["file_path"])
        img = composite(read_image(p), "white" if background == "white" else "black")
        sx = sy = 1.0
        if downscale != 1:
            w, h = downscale_size(img.shape[1], img.shape[0], downscale)
            sx, sy = w / img.shape[1], h / img.shape[0]
            img = resize_image(img, w, h)
        for key, size, scale, what in (("w", img.shape[1], sx, "width"), ("h", img.shape[0], sy, "height")):
            value = fr.get(key, meta.get(key))
            if value is not None and _int(value, key, jpath) != round(size / scale):
                raise DataError(f"{p}: {what} {round(size / scale)} does not match {key}={value} in transforms.json")
        imgs.append(img)
        names.append(fr["file_path"])
        poses.append(pose_matrix(fr["transform_matrix"], f"{jpath} frame {k}", ((4, 4), (3, 4)))[:3, :4])
        where = f"{jpath} frame {k}"
        intr.append(
            [
                _get(fr, meta, "fl_x", where) * sx,
                _get(fr, meta, "fl_y", where) * sy,
                _get(fr, meta, "cx", where) * sx,
                _get(fr, meta, "cy", where) * sy,
            ]
        )
    check_cameras(np.stack(poses), intr, jpath, names)
    images = stack_images(imgs, names)
    c2w = torch.from_numpy(np.stack(poses))
    c2w, _, _ = normalize_poses(c2w, target_radius=1.0)
    bbox = torch.tensor([[-1.0] * 3, [1.0] * 3]) if space == "box" else None
    return Scene(
        images=images,
        c2w=c2w.float(),
        intrinsics=torch.tensor(intr).float(),
        near=0.05,
        far=1000.0 if space == "contract" else 4.0,
        space=space,
        background=background,
        bbox=bbox,
        focus_depth=1.0,
        name=os.path.basename(os.path.normpath(path)),
        image_names=names,
    )
