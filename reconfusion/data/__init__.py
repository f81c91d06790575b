"""Scene loaders: every format returns one :class:`Scene`; :func:`load_scene` detects the format."""

from __future__ import annotations

import os

from .blender import load_blender
from .colmap import is_colmap, load_colmap
from .llff import load_llff
from .nerfstudio import load_nerfstudio
from .npz import load_npz
from .scene import DataError, Scene, llff_protocol_ids, select_views

FORMATS = ("auto", "llff", "blender", "nerfstudio", "npz", "colmap")


def detect_format(path: str) -> str:
    if os.path.isfile(path) and path.endswith(".npz"):
        return "npz"
    if not os.path.exists(path):
        raise DataError(f"data path not found: {path}")
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "poses_bounds.npy")):
            return "llff"
        if any(os.path.isfile(os.path.join(path, f"transforms_{s}.json")) for s in ("train", "val", "test")):
            return "blender"
        if os.path.isfile(os.path.join(path, "transforms.json")):
            return "nerfstudio"
        if is_colmap(path):
            return "colmap"
    raise DataError(
        f"unrecognized scene format at {path} (expected poses_bounds.npy, "
        "transforms_train.json, transforms.json, a COLMAP sparse model or a .npz bundle)"
    )


def load_scene(path: str, format: str = "auto", downscale: float = 1.0, **kwargs) -> Scene:
    """Load any supported scene. ``downscale`` resizes images further (LLFF also takes ``factor``)."""
    if format not in FORMATS:
        raise DataError(f"unknown data format {format!r}; use one of {FORMATS}")
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "llff":
        return load_llff(path, downscale=downscale, **kwargs)
    if fmt == "blender":
        return load_blender(path, downscale=downscale, **kwargs)
    if fmt == "nerfstudio":
        return load_nerfstudio(path, downscale=downscale, **kwargs)
    if fmt == "colmap":
        return load_colmap(path, downscale=downscale, **kwargs)
    if downscale != 1:
        raise DataError("downscale is not supported for .npz bundles")
    return load_npz(path, **kwargs)


__all__ = [
    "DataError",
    "FORMATS",
    "Scene",
    "detect_format",
    "llff_protocol_ids",
    "load_blender",
    "load_colmap",
    "load_llff",
    "load_nerfstudio",
    "load_npz",
    "load_scene",
    "select_views",
]
