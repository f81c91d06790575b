"""Valid datasets with one field broken at a time: every loader raises ``DataError`` naming the broken
file, never another exception and never a result.

Each format is written once (lego's cameras, :mod:`tests.helpers.prior_formats`); a hypothesis
example copies it, breaks one field of one frame with one bad value, and loads it. The draws are
derandomized (the same examples every run) unless ``RFK_FUZZ_RANDOM=1``; ``RFK_FUZZ_EXAMPLES``
per format (default 25, the CI budget).
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconfusion.data import DataError, load_nerfstudio, load_npz
from reconfusion.data.co3d import index_co3d
from reconfusion.data.colmap import index_colmap
from reconfusion.data.objaverse import index_zero123
from reconfusion.data.realestate import index_realestate
from tests.helpers.paths import SHARED_DATA
from tests.helpers.prior_formats import lego_cameras, write_co3d, write_colmap, write_realestate, write_zero123

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "lego").is_dir(), reason="needs shared/data/lego")

FUZZ = settings(
    max_examples=int(os.environ.get("RFK_FUZZ_EXAMPLES", "25")),
    deadline=None,
    database=None,
    derandomize=os.environ.get("RFK_FUZZ_RANDOM", "0") != "1",
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
N = 4  # frames per dataset: enough for every check, small to copy
NAN, INF = float("nan"), float("inf")
SHEAR = [[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
REFLECT = [[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
ZERO3 = [[0.0] * 3] * 3
NOT_NUMBERS = ["abc", None, {}, [], True]


# --------------------------------------------------------------------------- whole-file damage
def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path):
    path.write_bytes(b"\xff\xfe not this format \x00\x01" * 4)


def _pickle(path):
    path.write_bytes(pickle.dumps({"R": [[1, 0, 0]]}))


FILE_DAMAGE = [_truncate, _garbage, _pickle]


# --------------------------------------------------------------------------- CO3D
CO3D_FIELDS = {
    ("viewpoint", "R"): [
        [[NAN, 0, 0], [0, 1, 0], [0, 0, 1]],
        SHEAR,
        REFLECT,
        ZERO3,
        [["a"] * 3] * 3,
        [[1, 0]],
        *NOT_NUMBERS,
    ],
    ("viewpoint", "T"): [[NAN, 0, 0], [INF, 0, 0], [1, 2], *NOT_NUMBERS],
    ("viewpoint", "focal_length"): [[0.0, 1.0], [1.0, -1.0], [NAN, 1.0], [INF, 1.0], *NOT_NUMBERS],
    ("viewpoint", "principal_point"): [[INF, 0.0], [0.0, NAN], *NOT_NUMBERS],
    ("viewpoint", "intrinsics_format"): ["bogus", 3],
    ("image", "size"): [[0, 200], [200, -1], [200.5, 200], ["a", 200], *NOT_NUMBERS],
    ("image", "path"): [3, None],
    ("frame_number",): ["3", None, 1.5, True],
    ("viewpoint",): [None, "x", []],
    ("image",): [None, 7],
    ("sequence_name",): [None, 5],
}


def _set(d: dict, keys: tuple, value):
    for k in keys[:-1]:
        d = d[k]
    d[keys[-1]] = value


@pytest.fixture(scope="module")
def co3d(tmp_path_factory):
    root = tmp_path_factory.mktemp("co3d")
    write_co3d(root, n=N, sequences=1)
    return root


@FUZZ
@given(st.data())
def test_co3d_one_broken_field(co3d, tmp_path_factory, data):
    root = tmp_path_factory.mktemp("case")
    shutil.copytree(co3d, root, dirs_exist_ok=True, symlinks=True)
    ann = root / "lego_cat" / "frame_annotations.jgz"
    if data.draw(st.booleans(), "damage the whole file"):
        data.draw(st.sampled_from(FILE_DAMAGE), "damage")(ann)
    else:
        frames = json.loads(gzip.decompress(ann.read_bytes()))
        keys = data.draw(st.sampled_from(sorted(CO3D_FIELDS)), "field")
        value = data.draw(st.sampled_from(CO3D_FIELDS[keys]), "value")
        _set(frames[data.draw(st.integers(0, N - 1), "frame")], keys, value)
        ann.write_bytes(gzip.compress(json.dumps(frames).encode()))
    with pytest.raises(DataError, match=str(ann)):
        index_co3d(str(root / "lego_cat"))


# --------------------------------------------------------------------------- COLMAP (text)
def _colmap_lines(path):
    lines = path.read_text().splitlines()
    data = [i for i, ln in enumerate(lines) if ln and not ln.startswith("#")]
    return lines, data


def _edit_token(path, row: int, col: int, value: str, every_other: bool = False):
    lines, data = _colmap_lines(path)
    if every_other:  # images.txt: pose lines only (each is followed by its 2D points)
        data = [i for i in range(len(lines)) if not lines[i].startswith("#")][::2]
    el = lines[data[row]].split(" ")
    el[col] = value
    lines[data[row]] = " ".join(el)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def colmap(tmp_path_factory):
    root = tmp_path_factory.mktemp("colmap")
    write_colmap(root, n=N)
    return root


# camera line: id MODEL W H fx fy cx cy; image line: id qw qx qy qz tx ty tz cam name
COLMAP_CAMERA_FIELDS = {
    2: ["0", "-1", "abc"],
    3: ["0", "-5"],
    4: ["0", "-100", "nan", "inf", "abc"],
    5: ["0", "nan"],
    6: ["inf", "nan", "x"],
    7: ["-inf"],
}
COLMAP_IMAGE_FIELDS = {1: ["nan", "inf", "x"], 5: ["nan", "inf", "-inf"], 8: ["99", "x"]}


@FUZZ
@given(st.data())
def test_colmap_one_broken_field(colmap, tmp_path_factory, data):
    root = tmp_path_factory.mktemp("case")
    shutil.copytree(colmap, root, dirs_exist_ok=True, symlinks=True)
    model = root / "sparse" / "0"
    what = data.draw(st.sampled_from(["camera", "image", "zero quaternion", "same name", "not utf-8", "file"]))
    row = data.draw(st.integers(0, N - 1), "row")
    broken = model / ("cameras.txt" if what == "camera" else "images.txt")
    if what == "camera":
        col = data.draw(st.sampled_from(sorted(COLMAP_CAMERA_FIELDS)), "column")
        _edit_token(broken, row, col, data.draw(st.sampled_from(COLMAP_CAMERA_FIELDS[col]), "value"))
    elif what == "image":
        col = data.draw(st.sampled_from(sorted(COLMAP_IMAGE_FIELDS)), "column")
        _edit_token(broken, row, col, data.draw(st.sampled_from(COLMAP_IMAGE_FIELDS[col]), "value"), True)
    elif what == "zero quaternion":
        for col in (1, 2, 3, 4):
            _edit_token(broken, row, col, "0.0", True)
    elif what == "same name":
        _edit_token(broken, row, 9, f"view_{(row + 1) % N:03d}.png", True)
    elif what == "not utf-8":
        broken.write_bytes(broken.read_bytes().replace(b"view_000", b"view_\xff\xfe0"))
    else:
        broken = model / data.draw(st.sampled_from(["cameras.txt", "images.txt"]), "file")
        broken.write_bytes(b"1 PINHOLE \xff\xfe\n")
    with pytest.raises(DataError, match=str(broken)):
        index_colmap(str(root))


# --------------------------------------------------------------------------- RealEstate10K
@pytest.fixture(scope="module")
def realestate(tmp_path_factory):
    root = tmp_path_factory.mktemp("re10k")
    write_realestate(root, n=N)
    return root


# frame line: timestamp fx fy cx cy 0 0 m00 .. m23 (m row-major 3x4 w2c)
RE10K_FIELDS = {
    1: ["0", "-0.5", "nan", "inf", "x"],
    3: ["inf", "nan"],
    7: ["nan", "inf", "3.0"],
    10: ["-inf"],
    0: ["x", "1.5"],
}


@FUZZ
@given(st.data())
def test_realestate_one_broken_field(realestate, tmp_path_factory, data):
    root = tmp_path_factory.mktemp("case")
    shutil.copytree(realestate, root, dirs_exist_ok=True, symlinks=True)
    txt = root / "0123abcd.txt"
    lines = txt.read_text().splitlines()
    row = 1 + data.draw(st.integers(0, N - 1), "frame")
    what = data.draw(st.sampled_from(["field", "zero pose", "not utf-8", "columns"]))
    el = lines[row].split()
    if what == "field":
        col = data.draw(st.sampled_from(sorted(RE10K_FIELDS)), "column")
        el[col] = data.draw(st.sampled_from(RE10K_FIELDS[col]), "value")
    elif what == "zero pose":
        el[7:] = ["0.0"] * 12
    elif what == "columns":
        el = el[:-1]
    lines[row] = " ".join(el)
    txt.write_text("\n".join(lines) + "\n")
    if what == "not utf-8":
        txt.write_bytes(txt.read_bytes() + b"\xff\xfe\n")
    with pytest.raises(DataError, match=str(txt)):
        index_realestate(str(txt))


# --------------------------------------------------------------------------- Zero-1-to-3 (Objaverse)
@pytest.fixture(scope="module")
def zero123(tmp_path_factory):
    root = tmp_path_factory.mktemp("zero123")
    write_zero123(root, n=N)
    return root


def _npy_array(value):
    return lambda p: np.save(p, np.asarray(value))


ZERO123_DAMAGE = {
    "truncated": _truncate,
    "not npy": _garbage,
    "pickled": lambda p: np.save(p, np.array([{"R": 1}], dtype=object), allow_pickle=True),
    "strings": _npy_array([["a"] * 4] * 3),
    "nan": _npy_array([[NAN, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]),
    "sheared": _npy_array([[1, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]),
    "zero": _npy_array(np.zeros((3, 4))),
    "shape": _npy_array(np.zeros((2, 4))),
}


@FUZZ
@given(st.sampled_from(sorted(ZERO123_DAMAGE)), st.integers(0, N - 1))
def test_zero123_one_broken_camera(zero123, tmp_path_factory, damage, view):
    root = tmp_path_factory.mktemp("case")
    shutil.copytree(zero123, root, dirs_exist_ok=True, symlinks=True)
    npy = root / f"{view:03d}.npy"
    ZERO123_DAMAGE[damage](npy)
    with pytest.raises(DataError, match=str(root)) as err:
        index_zero123(str(root))
    assert npy.name in str(err.value)


# --------------------------------------------------------------------------- nerfstudio, npz
@pytest.fixture(scope="module")
def nerfstudio(tmp_path_factory):
    root = tmp_path_factory.mktemp("nerfstudio")
    c2w, intr, names = lego_cameras()
    frames = []
    for i in range(N):
        os.symlink(SHARED_DATA / "lego" / names[i], root / f"{i}.png")
        frames.append({"file_path": f"{i}.png", "transform_matrix": c2w[i].tolist()})
    fx, fy, cx, cy = intr[0].tolist()
    (root / "transforms.json").write_text(json.dumps({"fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "frames": frames}))
    return root


NERFSTUDIO_FIELDS = {
    "fl_x": [0, -1, "abc", None, [], True],
    "fl_y": ["1e3x", {}],
    "cx": ["x", []],
    "k1": [0.1, "abc"],
    "transform_matrix": [
        [[NAN] * 4] * 4,
        [[1, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
        np.zeros((4, 4)).tolist(),
        "abc",
        [[1, 2]],
    ],
}


@FUZZ
@given(st.sampled_from(sorted(NERFSTUDIO_FIELDS)), st.data())
def test_nerfstudio_one_broken_field(nerfstudio, tmp_path_factory, key, data):
    root = tmp_path_factory.mktemp("case")
    shutil.copytree(nerfstudio, root, dirs_exist_ok=True, symlinks=True)
    meta = json.loads((root / "transforms.json").read_text())
    meta["frames"][data.draw(st.integers(0, N - 1), "frame")][key] = data.draw(
        st.sampled_from(NERFSTUDIO_FIELDS[key]), "value"
    )
    (root / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=str(root / "transforms.json")):
        load_nerfstudio(str(root))


def _npz_arrays():
    c2w, _, _ = lego_cameras()
    return {"images": np.zeros((N, 8, 8, 3), np.float32), "poses": c2w[:N].numpy(), "focal": np.float32(10.0)}


NPZ_DAMAGE = {
    "pickled images": ("images", np.array([{"a": 1}] * N, dtype=object)),
    "no images": ("images", np.zeros((0, 8, 8, 3), np.float32)),
    "string poses": ("poses", np.array([["a"] * 4] * 4 * N).reshape(N, 4, 4)),
    "nan pose": ("poses", np.full((N, 4, 4), NAN)),
    "sheared pose": (
        "poses",
        np.tile(np.array([[1, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]), (N, 1, 1)),
    ),
    "zero focal": ("focal", np.float32(0.0)),
    "string focal": ("focal", np.array("abc")),
}


@pytest.mark.parametrize("damage", sorted(NPZ_DAMAGE))
def test_npz_one_broken_key(tmp_path, damage):
    key, value = NPZ_DAMAGE[damage]
    path = tmp_path / "scene.npz"
    np.savez(path, **{**_npz_arrays(), key: value})
    with pytest.raises(DataError, match=str(path)) as err:
        load_npz(str(path))
    if damage == "pickled images":
        assert "'images'" in str(err.value)
