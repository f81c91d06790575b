"""RealEstate10K / ACID clips: ``<clip>.txt`` camera files + a folder of extracted frames.

The camera file's first line is the video URL; every other line is one frame:
``timestamp fx fy cx cy 0 0 m00 m01 ... m23`` with the intrinsics normalized by the image size
(``fx_px = fx W``, ``fy_px = fy H``, ``cx_px = cx W``, ``cy_px = cy H``) and ``m`` a row-major 3x4
world-to-camera matrix in OpenCV axes (x right, y down, z forwards), in an arbitrary (SLAM) scale.
Frames are ``<frames>/<timestamp>.png|jpg`` (default ``<frames>`` = the folder beside the txt named
after the clip); frames whose image is missing (lost in download) are skipped.

Bounds: the scale is unknown, so the common ``near = 1``, ``far = 100`` of RealEstate10K
view-synthesis work (pixelSplat, MVSplat) is used, unbounded (contraction).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from .camera_check import check_cameras, check_unique
from .index import SceneIndex, image_size, w2c_opencv_to_c2w_opengl
from .scene import DataError

EXTENSIONS = (".png", ".jpg", ".jpeg")


def read_clip(path: str) -> tuple[str, list[int], np.ndarray, np.ndarray]:
    """-> (url, timestamps, normalized intrinsics ``[N, 4]``, w2c ``[N, 3, 4]``)."""
    if not os.path.isfile(path):
        raise DataError(f"camera file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f if ln.strip()]
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not a RealEstate10K camera file (not UTF-8 text: {exc.reason} at byte {exc.start})"
        ) from exc
    if len(lines) < 2:
        raise DataError(f"{path}: needs a URL line and at least one frame line")
    stamps, intr, w2c = [], [], []
    for i, line in enumerate(lines[1:], start=2):
        el = line.split()
        if len(el) != 19:
            raise DataError(f"{path}:{i}: a frame line has 19 values (timestamp, fx fy cx cy, 0 0, 3x4), got {len(el)}")
        try:
            stamps.append(int(el[0]))
            vals = [float(v) for v in el[1:]]
        except ValueError as exc:
            raise DataError(f"{path}:{i}: not numbers: {line!r}") from exc
        intr.append(vals[:4])
        w2c.append(np.asarray(vals[6:], dtype=np.float64).reshape(3, 4))
    return lines[0], stamps, np.asarray(intr), np.stack(w2c)


def _frame(frames: str, stamp: int) -> str | None:
    for ext in EXTENSIONS:
        p = os.path.join(frames, f"{stamp}{ext}")
        if os.path.isfile(p):
            return p
    return None


def index_realestate(path: str, frames: str | None = None, near: float = 1.0, far: float = 100.0) -> SceneIndex:
    """Index one clip (``path`` = its ``.txt``); image sizes come from the frames' headers."""
    _, stamps, intr_n, w2c = read_clip(path)
    clip = os.path.splitext(os.path.basename(path))[0]
    frames = frames or os.path.join(os.path.dirname(path), clip)
    keep, paths, sizes = [], [], []
    for i, s in enumerate(stamps):
        p = _frame(frames, s)
        if p is not None:
            keep.append(i)
            paths.append(p)
            sizes.append(image_size(p))
    if not keep:
        raise DataError(f"{path}: none of its {len(stamps)} frames is in {frames} (<timestamp>.png|jpg)")
    hw = np.asarray(sizes, dtype=np.float64)
    scale = np.stack([hw[:, 1], hw[:, 0], hw[:, 1], hw[:, 0]], -1)  # fx*W, fy*H, cx*W, cy*H
    intr = intr_n[keep] * scale
    check_unique([stamps[i] for i in keep], path, "timestamp")
    check_cameras(w2c[keep], intr, path, [f"timestamp {stamps[i]}" for i in keep], sizes)
    return SceneIndex(
        c2w=w2c_opencv_to_c2w_opengl(w2c[keep]),
        intrinsics=torch.from_numpy(intr).float(),
        sizes=torch.tensor(sizes),
        near=near,
        far=far,
        space="contract",
        image_paths=paths,
        name=clip,
    )


def index_realestate_folder(cameras_dir: str, frames_dir: str | None = None, **kw) -> list[SceneIndex]:
    """Every ``*.txt`` clip of a split folder (frames in ``frames_dir/<clip>/``, default beside each txt);
    clips with no frames on disk are skipped."""
    clips = sorted(f for f in os.listdir(cameras_dir) if f.endswith(".txt"))
    out = []
    for c in clips:
        clip = os.path.splitext(c)[0]
        frames = os.path.join(frames_dir or cameras_dir, clip)
        if os.path.isdir(frames):  # clips whose frames were not downloaded are skipped
            out.append(index_realestate(os.path.join(cameras_dir, c), frames, **kw))
    if not out:
        raise DataError(f"no RealEstate10K clip with frames in {cameras_dir}")
    return out


__all__ = ["index_realestate", "index_realestate_folder", "read_clip"]
