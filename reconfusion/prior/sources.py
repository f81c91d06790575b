"""Training data sources from a run config: ``{"format", "path", "weight", ...}`` -> :class:`Source`.

Formats (each indexes cameras + image paths only; see :mod:`reconfusion.data`):

- ``co3d``: a CO3D v2 category folder, or the dataset root (every category in it, or
  ``"categories": [...]``); ``"sequences"`` restricts a single category.
- ``realestate``: a folder of RealEstate10K / ACID ``<clip>.txt`` (``"frames"``: the folder holding
  ``<clip>/<timestamp>.png``, default the same folder).
- ``colmap``: one COLMAP scene folder, or a folder of them (MVImgNet).
- ``zero123``: one Zero-1-to-3 object folder, or a folder of them (Objaverse renders).
- ``scene``: any scene :func:`reconfusion.data.load_scene` reads (LLFF, Blender, nerfstudio, npz,
  COLMAP); ``"path"`` may be a list; ``"downscale"`` as in ``load_scene``. Loaded into memory.
"""

from __future__ import annotations

import os

from reconfusion.data.index import SceneIndex

from .dataset import Source

FORMATS = ("co3d", "realestate", "colmap", "zero123", "scene")


def _subdirs(path: str, keep) -> list[str]:
    return [os.path.join(path, d) for d in sorted(os.listdir(path)) if keep(os.path.join(path, d))]


def index_source(spec: dict) -> list[SceneIndex]:
    """The scenes of one data entry of a run config."""
    from reconfusion.data import load_scene
    from reconfusion.data.co3d import index_co3d, is_co3d
    from reconfusion.data.colmap import index_colmap, is_colmap
    from reconfusion.data.objaverse import index_zero123, index_zero123_folder
    from reconfusion.data.realestate import index_realestate_folder

    fmt, path = spec.get("format"), spec.get("path")
    if fmt not in FORMATS:
        raise ValueError(f"data format must be one of {FORMATS}, got {fmt!r}")
    if not path:
        raise ValueError(f"data entry {spec} has no 'path'")
    paths = path if isinstance(path, list) else [path]
    for p in paths:
        if not os.path.exists(p):
            raise ValueError(f"data path not found: {p}")
    if fmt == "scene":
        return [SceneIndex.from_scene(load_scene(p, downscale=spec.get("downscale", 1.0))) for p in paths]
    (path,) = paths
    if fmt == "co3d":
        if is_co3d(path):
            return index_co3d(path, spec.get("sequences"))
        cats = spec.get("categories")
        dirs = _subdirs(path, lambda d: is_co3d(d) and (cats is None or os.path.basename(d) in cats))
        if not dirs:
            raise ValueError(f"no CO3D category (frame_annotations.jgz) in {path}")
        return [s for d in dirs for s in index_co3d(d, root=path)]
    if fmt == "realestate":
        return index_realestate_folder(path, spec.get("frames"))
    if fmt == "colmap":
        if is_colmap(path):
            return [index_colmap(path)]
        dirs = _subdirs(path, is_colmap)
        if not dirs:
            raise ValueError(f"no COLMAP scene in {path} or its subfolders")
        return [index_colmap(d) for d in dirs]
    if any(f.endswith(".npy") for f in os.listdir(path)):
        return [index_zero123(path)]
    return index_zero123_folder(path)


def build_sources(specs: list[dict]) -> list[Source]:
    """One weighted :class:`Source` per data entry (``"weight"``, default 1)."""
    if not specs:
        raise ValueError("the run config has no data entries")
    return [
        Source(index_source(s), float(s.get("weight", 1.0)), s.get("name", f"{s['format']}:{s['path']}")) for s in specs
    ]


__all__ = ["FORMATS", "build_sources", "index_source"]
