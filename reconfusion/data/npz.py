"""``.npz`` bundles in the "tiny NeRF" layout: ``images [N, H, W, 3]``, ``poses [N, 4, 4]``
(camera-to-world, OpenGL axes), ``focal`` (pixels); optional ``near``, ``far``.

Without bounds, the scene is taken as object-centric around the origin: with the mean camera
distance ``r``, near = 0.5 r, far = 1.5 r and the object box is [-0.375 r, 0.375 r]^3 (for the
classic bundle, r = 4: bounds 2..6 and box [-1.5, 1.5]^3 as in NeRF's Blender setup).
"""

from __future__ import annotations

import os
import zipfile

import numpy as np
import torch

from .camera_check import check_cameras
from .scene import DataError, Scene


def _array(data, key: str, path: str) -> np.ndarray:
    """The numeric array under ``key``; a pickled object array is refused (never unpickled)."""
    try:
        a = data[key]
    except ValueError as exc:  # numpy: "Object arrays cannot be loaded when allow_pickle=False"
        raise DataError(
            f"{path}: '{key}' is a pickled object array (refused: unpickling can run code); store a numeric array"
        ) from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read '{key}' ({exc})") from exc
    if a.dtype.kind not in "biuf":
        raise DataError(f"{path}: '{key}' must hold numbers, got dtype {a.dtype}")
    return a


def _scalar(data, key: str, path: str) -> float:
    """One finite number stored under ``key`` (a 0-d or 1-element array)."""
    a = _array(data, key, path)
    if a.size != 1 or a.dtype.kind not in "biuf":
        raise DataError(f"{path}: '{key}' must be one number, got an array of shape {list(a.shape)} ({a.dtype})")
    v = float(a.reshape(-1)[0])
    if not np.isfinite(v):
        raise DataError(f"{path}: '{key}' must be finite, got {v}")
    return v


def load_npz(path: str, background: str = "black") -> Scene:
    if not os.path.isfile(path):
        raise DataError(f"npz bundle not found: {path}")
    try:
        data = np.load(path)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    missing = [k for k in ("images", "poses", "focal") if k not in data.files]
    if missing:
        raise DataError(f"{path} lacks key(s) {missing} (needs images, poses, focal)")
    images, poses = _array(data, "images", path).astype(np.float32), _array(data, "poses", path).astype(np.float64)
    if images.ndim != 4 or images.shape[-1] not in (3, 4):
        raise DataError(f"{path}: images must be [N, H, W, 3], got {list(images.shape)}")
    if images.shape[0] == 0:
        raise DataError(f"{path}: 'images' holds 0 images")
    if images.max() > 1.0 + 1e-6:
        images = images / 255.0
    images = images[..., :3]
    if poses.shape[0] != images.shape[0] or poses.shape[1:] not in ((4, 4), (3, 4)):
        raise DataError(f"{path}: poses must be [{images.shape[0]}, 4, 4], got {list(poses.shape)}")
    if poses.shape[1] == 3:
        poses = np.concatenate([poses, np.tile([[[0, 0, 0, 1.0]]], (len(poses), 1, 1))], axis=1)
    N, H, W = images.shape[:3]
    focal = _scalar(data, "focal", path)
    if not focal > 0:
        raise DataError(f"{path}: focal must be > 0 (pixels), got {focal}")
    check_cameras(poses, [[focal, focal, W / 2.0, H / 2.0]] * N, f"{path} 'poses'")
    r = float(np.linalg.norm(poses[:, :3, 3], axis=-1).mean())
    near = _scalar(data, "near", path) if "near" in data.files else 0.5 * r
    far = _scalar(data, "far", path) if "far" in data.files else 1.5 * r
    half = 0.375 * r
    intr = torch.tensor([[focal, focal, W / 2.0, H / 2.0]]).repeat(N, 1)
    return Scene(
        images=torch.from_numpy(images.copy()),
        c2w=torch.from_numpy(poses).float(),
        intrinsics=intr.float(),
        near=near,
        far=far,
        space="box",
        background=background,
        bbox=torch.tensor([[-half] * 3, [half] * 3]),
        focus_depth=r,
        name=os.path.splitext(os.path.basename(path))[0],
    )
