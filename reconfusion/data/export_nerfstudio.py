"""Write any loaded :class:`Scene` as a nerfstudio scene: ``transforms.json`` + ``images/*.png``.

The frames carry the scene's cameras as they are (OpenGL camera-to-world, nerfstudio's convention)
and per-frame pinhole intrinsics of the written images (``fl_x, fl_y, cx, cy, w, h``, no
distortion); images are 8-bit PNGs of the scene's (already composited) pixels. When the scene has
a train/test split, ``train_filenames`` / ``val_filenames`` / ``test_filenames`` name it
(nerfstudio's dataparser reads them; no training split means every view not held out; validation
= test). Loading the folder back with :func:`reconfusion.data.load_nerfstudio` gives the same
images and intrinsics, and the poses normalised the way that loader normalises any capture.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch

from .scene import DataError, Scene

IMAGE_DIR = "images"


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """``[H, W, 3]`` float in [0, 1] -> uint8 (rounded)."""
    return image.clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()


def export_nerfstudio(scene: Scene, out_dir: str, overwrite: bool = False) -> str:
    """Write ``scene`` to ``out_dir`` (created; an existing ``transforms.json`` there is an error
    unless ``overwrite``). Returns the path of the ``transforms.json`` written."""
    from ..video import save_image

    jpath = os.path.join(out_dir, "transforms.json")
    if os.path.exists(jpath) and not overwrite:
        raise DataError(f"{jpath} exists (pass overwrite=True / --overwrite to replace it)")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise DataError(f"output path {out_dir} exists and is not a folder")
    os.makedirs(os.path.join(out_dir, IMAGE_DIR), exist_ok=True)
    n, h, w = scene.images.shape[:3]
    frames, names = [], []
    for i in range(n):
        name = f"{IMAGE_DIR}/frame_{i:05d}.png"
        save_image(os.path.join(out_dir, name), _to_uint8(scene.images[i]))
        fx, fy, cx, cy = (float(v) for v in scene.intrinsics[i])
        frames.append(
            {
                "file_path": name,
                "transform_matrix": scene.c2w[i].double().tolist(),
                "fl_x": fx,
                "fl_y": fy,
                "cx": cx,
                "cy": cy,
                "w": int(w),
                "h": int(h),
            }
        )
        names.append(name)
    meta = {"camera_model": "OPENCV", "frames": frames}
    if scene.train_ids or scene.test_ids:  # nerfstudio wants all three lists once one is given
        train = scene.train_ids or [i for i in range(n) if i not in set(scene.test_ids)]
        held_out = scene.test_ids or [i for i in range(n) if i not in set(train)]
        meta["train_filenames"] = [names[i] for i in train]
        meta["val_filenames"] = meta["test_filenames"] = [names[i] for i in held_out]
    with open(jpath, "w") as f:
        json.dump(meta, f, indent=2)
    return jpath


__all__ = ["export_nerfstudio"]
