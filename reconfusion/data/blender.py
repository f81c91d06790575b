"""NeRF-synthetic / Blender scenes: ``transforms_{train,val,test}.json`` (OpenGL camera-to-world).

RGBA images are composited on white (customary) or black. Focal from ``camera_angle_x``:
``0.5 * W / tan(0.5 * camera_angle_x)``. Bounds 2..6, scene inside [-1.5, 1.5]^3.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import torch

from .camera_check import check_cameras
from .scene import DataError, Scene, composite, downscale_size, read_image, resize_image, stack_images

SPLITS = ("train", "val", "test")


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc


def _frame_path(root: str, file_path: str) -> str:
    p = os.path.join(root, file_path)
    if not os.path.splitext(p)[1]:
        p += ".png"
    return p


def camera_angle(value, where: str) -> float:
    """``camera_angle_x`` in radians, which must be a number in (0, pi)."""
    try:
        angle = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: camera_angle_x must be a number (radians), got {value!r}") from None
    if not 0.0 < angle < math.pi:
        raise DataError(f"{where}: camera_angle_x must be in (0, pi) radians, got {value!r}")
    return angle


def check_frame(fr, where: str) -> None:
    """A frame needs a string ``file_path`` and a ``transform_matrix``."""
    if not isinstance(fr, dict):
        raise DataError(f"{where} must be a JSON object, got {type(fr).__name__}")
    missing = [k for k in ("file_path", "transform_matrix") if k not in fr]
    if missing:
        raise DataError(f"{where} lacks {' and '.join(repr(k) for k in missing)}")
    if not isinstance(fr["file_path"], str):
        raise DataError(f"{where}: file_path must be a string, got {fr['file_path']!r}")


def pose_matrix(value, where: str, shapes=((4, 4),)) -> np.ndarray:
    """``transform_matrix`` as float64, with one of ``shapes``."""
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: transform_matrix must be a matrix of numbers") from None
    if m.shape not in shapes:
        raise DataError(
            f"{where}: transform_matrix must be {' or '.join('x'.join(map(str, s)) for s in shapes)}, "
            f"got {list(m.shape)}"
        )
    return m


def load_blender(
    path: str, splits: tuple[str, ...] | None = None, white_background: bool = True, downscale: float = 1.0
) -> Scene:
    """Load the given splits (default: all present); the ``test`` split, if loaded, is the test set."""
    present = [s for s in SPLITS if os.path.isfile(os.path.join(path, f"transforms_{s}.json"))]
    if not present:
        raise DataError(f"not a Blender scene: no transforms_{{train,val,test}}.json in {path}")
    splits = tuple(splits or present)
    missing = [s for s in splits if s not in present]
    if missing:
        raise DataError(f"missing transforms_{missing[0]}.json in {path}")
    bg = "white" if white_background else "black"
    imgs, names, poses, split_of, angle = [], [], [], [], None
    for split in splits:
        meta = _read_json(os.path.join(path, f"transforms_{split}.json"))
        if not isinstance(meta, dict) or "camera_angle_x" not in meta or "frames" not in meta:
            raise DataError(f"transforms_{split}.json needs 'camera_angle_x' and 'frames'")
        angle = camera_angle(meta["camera_angle_x"], f"transforms_{split}.json")
        for k, fr in enumerate(meta["frames"]):
            check_frame(fr, f"transforms_{split}.json frame {k}")
            p = _frame_path(path, fr["file_path"])
            img = composite(read_image(p), bg)
            if downscale != 1:
                img = resize_image(img, *downscale_size(img.shape[1], img.shape[0], downscale))
            imgs.append(img)
            names.append(os.path.relpath(p, path))
            poses.append(pose_matrix(fr["transform_matrix"], p))
            split_of.append(split)
    if not imgs:
        raise DataError(f"no frames in {path}")
    images = stack_images(imgs, names)
    H, W = images.shape[1:3]
    focal = 0.5 * W / math.tan(0.5 * angle)
    intr = torch.tensor([[focal, focal, W / 2.0, H / 2.0]]).repeat(len(imgs), 1)
    check_cameras(np.stack(poses), intr.numpy(), path, names)
    test_ids = [i for i, s in enumerate(split_of) if s == "test"] if len(set(split_of)) > 1 else []
    return Scene(
        images=images,
        c2w=torch.from_numpy(np.stack(poses)).float(),
        intrinsics=intr.float(),
        near=2.0,
        far=6.0,
        space="box",
        background=bg,
        test_ids=test_ids,
        bbox=torch.tensor([[-1.5] * 3, [1.5] * 3]),
        focus_depth=4.0,
        name=os.path.basename(os.path.normpath(path)),
        image_names=names,
    )
