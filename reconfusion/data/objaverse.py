"""Objaverse renders in the Zero-1-to-3 layout: one folder per object, ``NNN.png`` + ``NNN.npy``.

Conventions (Zero-1-to-3's ``blender_script.py``):

- ``NNN.npy``: float ``[3, 4]`` world-to-camera ``[R | t]`` of Blender's camera, i.e. in Blender /
  OpenGL camera axes (x right, y up, looking along -z): ``R = R_cam2world^T``, ``t = -R c``. So
  ``c2w = inverse([R | t; 0 0 0 1])``, already OpenGL: no axis flip.
- ``NNN.png``: RGBA renders (composited on white here), square.
- Intrinsics are not stored: the script's camera has a 35 mm lens on a 32 mm sensor, so
  ``fx = fy = W * 35 / 32`` pixels and the principal point is the image centre (``lens_mm`` /
  ``sensor_mm`` override this for other renders).
- Objects are normalized into the unit cube ``[-0.5, 0.5]^3``: a bounded scene with that box and
  bounds ``near = max(min camera distance - sqrt(3)/2, 0.01)``, ``far = max distance + sqrt(3)/2``.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np
import torch

from ..cameras import to_homogeneous
from .camera_check import check_cameras
from .index import SceneIndex, image_size
from .scene import DataError

_VIEW = re.compile(r"^(\d+)\.png$")


def index_zero123(path: str, lens_mm: float = 35.0, sensor_mm: float = 32.0) -> SceneIndex:
    """Index one object folder (views sorted by number)."""
    if not os.path.isdir(path):
        raise DataError(f"object folder not found: {path}")
    views = sorted((int(m.group(1)), f) for f in os.listdir(path) if (m := _VIEW.match(f)))
    if not views:
        raise DataError(f"{path}: no NNN.png views (Zero-1-to-3 layout: NNN.png + NNN.npy)")
    w2c, paths, sizes = [], [], []
    for _, f in views:
        npy = os.path.join(path, f[:-4] + ".npy")
        if not os.path.isfile(npy):
            raise DataError(f"{path}: {f} has no camera file {os.path.basename(npy)}")
        w2c.append(read_pose(npy))
        paths.append(os.path.join(path, f))
        sizes.append(image_size(paths[-1]))
    hw = torch.tensor(sizes, dtype=torch.float64)
    f = hw[:, 1] * lens_mm / sensor_mm
    intr = torch.stack([f, f, hw[:, 1] / 2, hw[:, 0] / 2], -1).float()
    check_cameras(np.stack(w2c), intr.numpy(), path, [os.path.basename(p)[:-4] + ".npy" for p in paths], sizes)
    c2w = torch.linalg.inv(to_homogeneous(torch.from_numpy(np.stack(w2c)))).float()
    dist = c2w[:, :3, 3].norm(dim=-1)
    half_diag = math.sqrt(3) / 2
    return SceneIndex(
        c2w=c2w,
        intrinsics=intr,
        sizes=torch.tensor(sizes),
        near=max(float(dist.min()) - half_diag, 0.01),
        far=float(dist.max()) + half_diag,
        space="box",
        background="white",
        image_paths=paths,
        bbox=torch.tensor([[-0.5] * 3, [0.5] * 3]),
        focus_depth=float(dist.mean()),
        name=os.path.basename(os.path.normpath(path)),
    )


def read_pose(npy: str) -> np.ndarray:
    """A view's ``[3, 4]`` world-to-camera matrix (float64) from its ``.npy``; nothing is unpickled."""
    try:
        m = np.load(npy, allow_pickle=False)
    except ValueError as exc:
        why = "a pickled object array (refused)" if "allow_pickle" in str(exc) else f"not a .npy array ({exc})"
        raise DataError(f"{npy}: {why}") from exc
    except (OSError, EOFError) as exc:
        raise DataError(f"{npy}: truncated or unreadable ({exc})") from exc
    if not isinstance(m, np.ndarray) or m.dtype.kind not in "biuf":
        raise DataError(f"{npy}: expected numbers, got dtype {getattr(m, 'dtype', type(m).__name__)}")
    if m.shape not in ((3, 4), (4, 4)):
        raise DataError(f"{npy}: expected a [3, 4] world-to-camera matrix, got {list(m.shape)}")
    return m[:3].astype(np.float64)


def index_zero123_folder(root: str, **kw) -> list[SceneIndex]:
    """Every object folder under ``root`` (folders without views are skipped)."""
    out = []
    for d in sorted(os.listdir(root)):
        p = os.path.join(root, d)
        if os.path.isdir(p) and any(_VIEW.match(f) for f in os.listdir(p)):
            out.append(index_zero123(p, **kw))
    if not out:
        raise DataError(f"no Zero-1-to-3 object folders (NNN.png + NNN.npy) under {root}")
    return out


__all__ = ["index_zero123", "index_zero123_folder", "read_pose"]
