"""COLMAP sparse models (MVImgNet, users' own captures): ``cameras.txt|bin`` + ``images.txt|bin``.

Layouts found: ``SCENE/sparse/0/``, ``SCENE/sparse/``, or the model files in ``SCENE/`` itself;
images in ``SCENE/images/`` (``images=`` overrides). The binary and text formats are COLMAP's own
(``src/colmap/scene/reconstruction_io.cc``); ``points3D`` is not read.

Conventions: ``images`` hold world-to-camera ``qvec`` (w, x, y, z) and ``tvec`` in OpenCV axes
(x right, y down, z forwards); the centre of the top-left pixel is ``(0.5, 0.5)``, as here.
Camera models: ``SIMPLE_PINHOLE`` (f, cx, cy), ``PINHOLE`` (fx, fy, cx, cy), ``SIMPLE_RADIAL``
(f, cx, cy, k), ``RADIAL`` (f, cx, cy, k1, k2), ``OPENCV`` (fx, fy, cx, cy, k1, k2, p1, p2). Only the
pinhole part is used: **non-zero distortion is rejected** with an error naming the camera (run
``colmap image_undistorter``, which writes PINHOLE cameras and undistorted images, and point the
loader at its output). Fisheye and other models are rejected the same way.
"""

from __future__ import annotations

import os
import struct

import numpy as np
import torch

from .camera_check import check_cameras, check_unique
from .index import SceneIndex, rig_bounds, w2c_opencv_to_c2w_opengl
from .scene import DataError, Scene

# model id -> (name, number of params, index of the first distortion param or None)
CAMERA_MODELS = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
}
MODEL_IDS = {name: i for i, (name, _) in CAMERA_MODELS.items()}
SUPPORTED = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")


def pinhole(model: str, params, camera_id: int = 0) -> tuple[float, float, float, float]:
    """``(fx, fy, cx, cy)`` of a COLMAP camera; non-zero distortion or another model -> DataError."""
    p = [float(v) for v in params]
    if model not in SUPPORTED:
        raise DataError(
            f"COLMAP camera {camera_id}: model {model} is not supported (supported: "
            f"{', '.join(SUPPORTED)}); undistort with `colmap image_undistorter`"
        )
    n = CAMERA_MODELS[MODEL_IDS[model]][1]
    if len(p) != n:
        raise DataError(f"COLMAP camera {camera_id}: {model} takes {n} params, got {len(p)}")
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        fx = fy = p[0]
        cx, cy, dist = p[1], p[2], p[3:]
    else:
        fx, fy, cx, cy, dist = p[0], p[1], p[2], p[3], p[4:]
    if any(d != 0.0 for d in dist):
        raise DataError(
            f"COLMAP camera {camera_id} ({model}) has lens distortion {dist}: distorted images are "
            "not supported; undistort them with `colmap image_undistorter` and load its output"
        )
    return fx, fy, cx, cy


# --------------------------------------------------------------------------------- readers
def read_cameras_text(path: str) -> dict[int, tuple[str, int, int, list[float]]]:
    """-> ``{camera_id: (model, width, height, params)}``."""
    cams = {}
    for line in _text_lines(path):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        el = line.split()
        try:
            cams[int(el[0])] = (el[1], int(el[2]), int(el[3]), [float(v) for v in el[4:]])
        except (IndexError, ValueError) as exc:
            raise DataError(f"{path}: bad camera line {line!r}") from exc
    return cams


def read_images_text(path: str) -> list[tuple[int, np.ndarray, np.ndarray, int, str]]:
    """-> ``[(image_id, qvec [4], tvec [3], camera_id, name)]`` (every other line holds 2D points)."""
    out = []
    lines = [ln.strip() for ln in _text_lines(path) if not ln.startswith("#")]
    for i in range(0, len(lines), 2):
        if not lines[i]:
            continue
        el = lines[i].split()
        try:
            out.append(
                (
                    int(el[0]),
                    np.array(el[1:5], dtype=np.float64),
                    np.array(el[5:8], dtype=np.float64),
                    int(el[8]),
                    " ".join(el[9:]),
                )
            )
        except (IndexError, ValueError) as exc:
            raise DataError(f"{path}: bad image line {lines[i]!r}") from exc
    return out


def _text_lines(path: str) -> list[str]:
    """The lines of a COLMAP text file, which must be UTF-8 (COLMAP writes it so)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


class _Reader:
    def __init__(self, path: str):
        self.path = path
        with open(path, "rb") as f:
            self.buf = f.read()
        self.pos = 0

    def read(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.buf):
            raise DataError(f"{self.path}: truncated COLMAP binary file")
        vals = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return vals

    def cstring(self) -> str:
        end = self.buf.find(b"\0", self.pos)
        if end < 0:
            raise DataError(f"{self.path}: truncated COLMAP binary file")
        try:
            s = self.buf[self.pos : end].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{self.path}: an image name at byte {self.pos} is not UTF-8 ({exc.reason})") from exc
        self.pos = end + 1
        return s


def read_cameras_binary(path: str) -> dict[int, tuple[str, int, int, list[float]]]:
    r = _Reader(path)
    cams = {}
    for _ in range(r.read("Q")[0]):
        cam_id, model_id, width, height = r.read("iiQQ")
        if model_id not in CAMERA_MODELS:
            raise DataError(f"{path}: unknown COLMAP camera model id {model_id}")
        name, n = CAMERA_MODELS[model_id]
        cams[cam_id] = (name, width, height, list(r.read("d" * n)))
    return cams


def read_images_binary(path: str) -> list[tuple[int, np.ndarray, np.ndarray, int, str]]:
    r = _Reader(path)
    out = []
    for _ in range(r.read("Q")[0]):
        image_id, *qt, cam_id = r.read("idddddddi")
        name = r.cstring()
        n_points = r.read("Q")[0]
        r.pos += n_points * struct.calcsize("<ddq")  # x, y, point3D_id: not needed
        out.append((image_id, np.array(qt[:4]), np.array(qt[4:]), cam_id, name))
    return out


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) -> rotation ``[3, 3]``."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


# ----------------------------------------------------------------------------------- layout
def find_model(path: str) -> str:
    """The folder holding ``cameras.bin|txt`` and ``images.bin|txt`` under a scene folder."""
    for sub in ("sparse/0", "sparse", ""):
        d = os.path.join(path, sub)
        if all(any(os.path.isfile(os.path.join(d, f"{n}.{e}")) for e in ("bin", "txt")) for n in ("cameras", "images")):
            return d
    raise DataError(
        f"no COLMAP model in {path} (looked for cameras.bin|txt + images.bin|txt in sparse/0, "
        "sparse and the folder itself)"
    )


def model_file(model: str, name: str) -> str:
    """``model/name.bin`` if present, else ``model/name.txt``."""
    b = os.path.join(model, f"{name}.bin")
    return b if os.path.isfile(b) else os.path.join(model, f"{name}.txt")


def is_colmap(path: str) -> bool:
    try:
        find_model(path)
        return True
    except DataError:
        return False


def index_colmap(path: str, images: str | None = None, space: str = "contract") -> SceneIndex:
    """Index a COLMAP scene (raw COLMAP world frame and scale), images sorted by name.

    Bounds (no metric scale is assumed): ``near = 0.05 r``, ``far = 1000 r`` with ``r`` the camera rig's
    radius (:func:`~reconfusion.data.index.rig_bounds`).
    """
    model = find_model(path)
    cam_file, img_file = model_file(model, "cameras"), model_file(model, "images")
    cams = (read_cameras_binary if cam_file.endswith(".bin") else read_cameras_text)(cam_file)
    imgs = sorted(
        (read_images_binary if img_file.endswith(".bin") else read_images_text)(img_file), key=lambda im: im[4]
    )
    if not imgs:
        raise DataError(f"{img_file}: the COLMAP model has no registered images")
    image_dir = images or os.path.join(path, "images")
    names = [im[4] for im in imgs]
    check_unique(names, img_file)
    w2c, intr, sizes, paths = [], [], [], []
    for _, q, t, cam_id, name in imgs:
        if cam_id not in cams:
            raise DataError(f"{img_file}: image {name} uses camera {cam_id}, which is not in {cam_file}")
        if not (np.isfinite(q).all() and np.linalg.norm(q) > 0):
            raise DataError(f"{img_file}: image {name}: qvec must be a finite non-zero quaternion, got {q.tolist()}")
        model_name, width, height, params = cams[cam_id]
        intr.append(pinhole(model_name, params, cam_id))
        sizes.append((height, width))
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = qvec_to_rotmat(q), t
        w2c.append(m)
        paths.append(os.path.join(image_dir, name))
    check_cameras(None, intr, cam_file, [f"camera of {n}" for n in names], sizes)
    check_cameras(np.stack(w2c), None, img_file, names)
    c2w = w2c_opencv_to_c2w_opengl(np.stack(w2c))
    near, far = rig_bounds(c2w)
    return SceneIndex(
        c2w=c2w,
        intrinsics=torch.tensor(intr, dtype=torch.float32),
        sizes=torch.tensor(sizes),
        near=near,
        far=far,
        space=space,
        image_paths=paths,
        name=os.path.basename(os.path.normpath(path)),
    )


def load_colmap(
    path: str, downscale: float = 1.0, images: str | None = None, normalize: bool = True, background: str = "learned"
) -> Scene:
    """A COLMAP scene for reconstruction: as nerfstudio's loader, poses recentred and scaled to radius
    1, unbounded (contraction), ``near = 0.05``, ``far = 1000`` (``normalize=False`` keeps COLMAP's frame)."""
    from ..cameras import normalize_poses

    idx = index_colmap(path, images)
    idx.background = background
    if normalize:
        c2w, _, _ = normalize_poses(idx.c2w.double(), target_radius=1.0)
        idx.c2w, idx.near, idx.far, idx.focus_depth = c2w.float(), 0.05, 1000.0, 1.0
    scene = idx.to_scene(downscale)
    return scene.replace(image_names=[os.path.basename(p) for p in idx.image_paths])


__all__ = [
    "CAMERA_MODELS",
    "SUPPORTED",
    "find_model",
    "index_colmap",
    "is_colmap",
    "load_colmap",
    "pinhole",
    "qvec_to_rotmat",
    "read_cameras_binary",
    "read_cameras_text",
    "read_images_binary",
    "read_images_text",
]
