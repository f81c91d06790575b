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


def load_blender(path: str, splits: tuple[str, ...] | None = None, white_background: bool = True,
                 downscale: float = 1.0) -> Scene:
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
        if "camera_angle_x" not in meta or "frames" not in meta:
            raise DataError(f"transforms_{split}.json needs 'camera_angle_x' and 'frames'")
        angle = float(meta["camera_angle_x"])
        for fr in meta["frames"]:
            p = _frame_path(path, fr["file_path"])
            img = composite(read_image(p), bg)
            if downscale != 1:
                img = resize_image(img, *downscale_size(img.shape[1], img.shape[0], downscale))
            imgs.append(img)
            names.append(os.path.relpath(p, path))
            m = np.asarray(fr["transform_matrix"], dtype=np.float64)
            if m.shape != (4, 4):
                raise DataError(f"{p}: transform_matrix must be 4x4, got {list(m.shape)}")
            poses.append(m)
            split_of.append(split)
    if not imgs:
        raise DataError(f"no frames in {path}")
    images = stack_images(imgs, names)
    H, W = images.shape[1:3]
    focal = 0.5 * W / math.tan(0.5 * angle)
    intr = torch.tensor([[focal, focal, W / 2.0, H / 2.0]]).repeat(len(imgs), 1)
    test_ids = [i for i, s in enumerate(split_of) if s == "test"] if len(set(split_of)) > 1 else []
    return Scene(
        images=images, c2w=torch.from_numpy(np.stack(poses)).float(), intrinsics=intr.float(),
        near=2.0, far=6.0, space="box", background=bg, test_ids=test_ids,
        bbox=torch.tensor([[-1.5] * 3, [1.5] * 3]), focus_depth=4.0,
        name=os.path.basename(os.path.normpath(path)), image_names=names,
    )
