"""Test fixtures for the prior's data formats: lego's cameras (the Blender loader's) written out as
COLMAP, CO3D v2, RealEstate10K and Zero-1-to-3 datasets, so loaders can be checked against them."""
from __future__ import annotations

import functools
import pathlib

import torch



def _shared_data() -> pathlib.Path:
    """``shared/data`` beside the checkout (or beside any folder above it: worktrees live deeper)."""
    for d in pathlib.Path(__file__).resolve().parents[1].parents:
        if (d / "shared" / "data").is_dir():
            return d / "shared" / "data"
    return pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


LEGO = _shared_data() / "lego"


@functools.lru_cache(maxsize=1)
def _lego():
    from reconfusion.data import load_blender

    return load_blender(str(LEGO))


def lego_cameras():
    """(c2w ``[N, 4, 4]`` OpenGL, intrinsics ``[N, 4]`` px, image names relative to lego/) of lego's train split."""
    sc = _lego()
    return sc.c2w.clone(), sc.intrinsics.clone(), list(sc.image_names)
