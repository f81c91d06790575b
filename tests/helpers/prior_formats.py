"""Test fixtures for the prior's data formats: lego's cameras (the Blender loader's) written out as
COLMAP, CO3D v2, RealEstate10K and Zero-1-to-3 datasets, so loaders can be checked against them."""

from __future__ import annotations

import functools
import pathlib

import torch


def _shared_data() -> pathlib.Path:
    """``shared/data`` beside the checkout (or beside any folder above it: worktrees live deeper)."""
    from tests.helpers.paths import SHARED_DATA

    return SHARED_DATA


LEGO = _shared_data() / "lego"


@functools.lru_cache(maxsize=1)
def _lego():
    from reconfusion.data import load_blender

    return load_blender(str(LEGO))


def lego_cameras():
    """(c2w ``[N, 4, 4]`` OpenGL, intrinsics ``[N, 4]`` px, image names relative to lego/) of lego's train split."""
    sc = _lego()
    return sc.c2w.clone(), sc.intrinsics.clone(), list(sc.image_names)


def _w2c_opencv(c2w: torch.Tensor):
    """OpenGL c2w ``[N, 4, 4]`` -> OpenCV w2c ``[N, 4, 4]`` float64 numpy."""
    m = c2w.double().clone()
    m[:, :3, 1:3] *= -1
    return torch.linalg.inv(m).numpy()


def rotmat_to_qvec(R):
    """Rotation ``[3, 3]`` -> unit quaternion (w, x, y, z), w >= 0 (Shepperd's method)."""
    import numpy as np

    t = np.trace(R)
    if t > 0:
        s = 2.0 * np.sqrt(t + 1.0)
        q = [0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + R[i, i] - R[j, j] - R[k, k])
        q = [0.0] * 4
        q[0] = (R[k, j] - R[j, k]) / s
        q[1 + i], q[1 + j], q[1 + k] = 0.25 * s, (R[j, i] + R[i, j]) / s, (R[k, i] + R[i, k]) / s
    q = np.asarray(q)
    return q if q[0] >= 0 else -q


def _link(src: pathlib.Path, dst: pathlib.Path):
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)


def write_colmap(
    root: pathlib.Path,
    n: int = 12,
    binary: bool = False,
    model: str = "PINHOLE",
    distortion: tuple[float, ...] | None = None,
) -> None:
    """lego's first ``n`` views as ``root/sparse/0/{cameras,images}.{txt,bin}`` + ``root/images/``.
    Each view gets its own camera (``model``; distortion params zero unless given)."""
    import struct

    c2w, intr, names = lego_cameras()
    w2c = _w2c_opencv(c2w[:n])
    ids = {"SIMPLE_PINHOLE": 0, "PINHOLE": 1, "SIMPLE_RADIAL": 2, "RADIAL": 3, "OPENCV": 4, "OPENCV_FISHEYE": 5}
    n_dist = {"SIMPLE_PINHOLE": 0, "PINHOLE": 0, "SIMPLE_RADIAL": 1, "RADIAL": 2, "OPENCV": 4, "OPENCV_FISHEYE": 4}
    cams, imgs = [], []
    for i in range(n):
        fx, fy, cx, cy = intr[i].double().tolist()
        pin = [fx, cx, cy] if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL") else [fx, fy, cx, cy]
        params = pin + list(distortion if distortion is not None else [0.0] * n_dist[model])
        cams.append((i + 1, model, 200, 200, params))
        imgs.append((i + 1, rotmat_to_qvec(w2c[i, :3, :3]), w2c[i, :3, 3], i + 1, f"view_{i:03d}.png"))
        _link(LEGO / names[i], root / "images" / f"view_{i:03d}.png")
    d = root / "sparse" / "0"
    d.mkdir(parents=True)
    if binary:
        with open(d / "cameras.bin", "wb") as f:
            f.write(struct.pack("<Q", len(cams)))
            for cid, m, w, h, p in cams:
                f.write(struct.pack("<iiQQ", cid, ids[m], w, h) + struct.pack("<" + "d" * len(p), *p))
        with open(d / "images.bin", "wb") as f:
            f.write(struct.pack("<Q", len(imgs)))
            for iid, q, t, cid, name in reversed(imgs):  # any order: the loader sorts by name
                f.write(struct.pack("<i7di", iid, *q, *t, cid) + name.encode() + b"\0")
                f.write(struct.pack("<Q", 1) + struct.pack("<ddq", 10.5, 20.5, -1))  # one 2D point
    else:
        with open(d / "cameras.txt", "w") as f:
            f.write("# Camera list with one line of data per camera:\n")
            for cid, m, w, h, p in cams:
                f.write(f"{cid} {m} {w} {h} " + " ".join(repr(v) for v in p) + "\n")
        with open(d / "images.txt", "w") as f:
            f.write("# Image list with two lines of data per image:\n")
            for iid, q, t, cid, name in imgs:
                f.write(f"{iid} " + " ".join(repr(float(v)) for v in (*q, *t)) + f" {cid} {name}\n")
                f.write("10.5 20.5 -1\n" if iid % 2 else "\n")


def write_co3d(
    root: pathlib.Path, intrinsics_format: str = "ndc_isotropic", n: int = 10, sequences: int = 2
) -> list[list[tuple[int, int]]]:
    """lego's views as a CO3D v2 category ``root/lego_cat`` with ``sequences`` sequences of ``n`` frames
    (PyTorch3D cameras); odd frames are cropped to 160 x 200 (W x H) so sizes vary per frame.
    Returns, per sequence, the lego view index and x-crop offset of each frame."""
    import gzip
    import json

    import numpy as np
    from PIL import Image

    c2w, intr, names = lego_cameras()
    F = np.diag([-1.0, -1.0, 1.0])
    frames, layout = [], []
    for s in range(sequences):
        seq, rows = f"{100 + s}_seq", []
        for k in range(n):
            i = s * n + k
            x0, W, H = (20, 160, 200) if k % 2 else (0, 200, 200)
            rel = f"lego_cat/{seq}/images/frame{k:06d}.png"
            img = Image.open(LEGO / names[i])
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            img.crop((x0, 0, x0 + W, H)).save(root / rel)
            w2c = _w2c_opencv(c2w[i : i + 1])[0]
            R = (F @ w2c[:3, :3]).T  # X_cam = X_world @ R + T
            T = F @ w2c[:3, 3]
            fx, fy, cx, cy = intr[i].double().tolist()
            cx -= x0
            sx, sy = (min(H, W) / 2,) * 2 if intrinsics_format == "ndc_isotropic" else (W / 2, H / 2)
            vp = {
                "R": R.tolist(),
                "T": T.tolist(),
                "focal_length": [fx / sx, fy / sy],
                "principal_point": [(W / 2 - cx) / sx, (H / 2 - cy) / sy],
                "intrinsics_format": intrinsics_format,
            }
            frames.append(
                {
                    "sequence_name": seq,
                    "frame_number": k,
                    "frame_timestamp": k / 30.0,
                    "image": {"path": rel, "size": [H, W]},
                    "viewpoint": vp,
                    "mask": {"path": rel.replace("images", "masks"), "mass": 1.0},
                }
            )
            rows.append((i, x0))
        layout.append(rows)
    d = root / "lego_cat"
    with gzip.open(d / "frame_annotations.jgz", "wt") as f:
        json.dump(frames[::-1], f)  # any order: the loader sorts by frame number
    with gzip.open(d / "sequence_annotations.jgz", "wt") as f:
        json.dump([{"sequence_name": f"{100 + s}_seq", "category": "lego_cat"} for s in range(sequences)], f)
    return layout


def write_realestate(root: pathlib.Path, n: int = 10, clip: str = "0123abcd", missing: int | None = None) -> None:
    """lego's first ``n`` views as a RealEstate10K clip ``root/<clip>.txt`` + ``root/<clip>/<timestamp>.png``
    (frame ``missing``, if given, has a camera line but no image)."""
    c2w, intr, names = lego_cameras()
    w2c = _w2c_opencv(c2w[:n])
    lines = ["https://www.youtube.com/watch?v=xxxxxxxxxxx"]
    for i in range(n):
        fx, fy, cx, cy = intr[i].double().tolist()
        ts = 1_000_000 + 33_367 * i
        m = " ".join(repr(float(v)) for v in w2c[i, :3].reshape(-1))
        lines.append(f"{ts} {fx / 200} {fy / 200} {cx / 200} {cy / 200} 0.0 0.0 {m}")
        if i != missing:
            _link(LEGO / names[i], root / clip / f"{ts}.png")
    (root / f"{clip}.txt").write_text("\n".join(lines) + "\n")


def write_zero123(root: pathlib.Path, n: int = 12) -> float:
    """lego's first ``n`` views as a Zero-1-to-3 object folder ``root/NNN.png`` + ``NNN.npy`` (3x4 w2c,
    Blender axes). Returns the lens (mm, 32 mm sensor) that gives lego's focal."""
    import numpy as np

    c2w, intr, names = lego_cameras()
    for i in range(n):
        _link(LEGO / names[i], root / f"{i:03d}.png")
        np.save(root / f"{i:03d}.npy", torch.linalg.inv(c2w[i].double()).numpy()[:3].astype(np.float32))
    return float(intr[0, 0]) / 200 * 32
