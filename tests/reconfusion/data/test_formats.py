"""Dataset formats for prior training (COLMAP, CO3D v2, RealEstate10K, Zero-1-to-3): lego's cameras
written out in each format and read back must equal the Blender loader's."""

import gzip
import json

import numpy as np
import pytest
import torch

from reconfusion.data import DataError, detect_format, load_scene
from reconfusion.data.co3d import index_co3d, ndc_to_pixels
from reconfusion.data.colmap import index_colmap, load_colmap, qvec_to_rotmat
from reconfusion.data.index import SceneIndex
from reconfusion.data.objaverse import index_zero123
from reconfusion.data.realestate import index_realestate, index_realestate_folder
from tests.helpers.prior_formats import (
    LEGO,
    lego_cameras,
    rotmat_to_qvec,
    write_co3d,
    write_colmap,
    write_realestate,
    write_zero123,
)

pytestmark = pytest.mark.skipif(not LEGO.is_dir(), reason="shared data (lego) not present")


def _same_cameras(idx: SceneIndex, ids, dx=None):
    c2w, intr, _ = lego_cameras()
    want_intr = intr[ids].clone()
    if dx is not None:
        want_intr[:, 2] -= torch.tensor(dx, dtype=torch.float32)
    assert torch.allclose(idx.c2w, c2w[ids], atol=2e-5), float((idx.c2w - c2w[ids]).abs().max())
    assert torch.allclose(idx.intrinsics, want_intr, atol=1e-4)


def test_quaternions_roundtrip():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
        R = (q * torch.sign(torch.det(q))).numpy()
        assert np.allclose(qvec_to_rotmat(rotmat_to_qvec(R)), R, atol=1e-12)


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("model", ["SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV"])
def test_colmap_models(tmp_path, binary, model):
    write_colmap(tmp_path, n=6, binary=binary, model=model)
    idx = index_colmap(str(tmp_path))
    _same_cameras(idx, list(range(6)))
    assert idx.sizes.tolist() == [[200, 200]] * 6 and idx.image_paths[0].endswith("images/view_000.png")
    img = idx.read_image(2)
    assert img.shape == (200, 200, 3)


@pytest.mark.parametrize("model,dist", [("SIMPLE_RADIAL", (0.01,)), ("OPENCV", (0.0, 0.0, 1e-3, 0.0))])
def test_colmap_distortion_is_rejected(tmp_path, model, dist):
    write_colmap(tmp_path, n=3, model=model, distortion=dist)
    with pytest.raises(DataError, match=rf"camera 1 \({model}\) has lens distortion.*image_undistorter"):
        index_colmap(str(tmp_path))


def test_colmap_unsupported_model_and_missing_model(tmp_path):
    write_colmap(tmp_path / "a", n=3, model="OPENCV_FISHEYE")
    with pytest.raises(DataError, match="OPENCV_FISHEYE is not supported"):
        index_colmap(str(tmp_path / "a"))
    with pytest.raises(DataError, match="no COLMAP model"):
        index_colmap(str(tmp_path))


def test_colmap_scene_for_reconstruct(tmp_path):
    """`reconfusion reconstruct --data COLMAP_DIR`: detected, normalized like nerfstudio, unbounded."""
    write_colmap(tmp_path, n=5, binary=True)
    assert detect_format(str(tmp_path)) == "colmap"
    sc = load_scene(str(tmp_path), downscale=4)
    assert sc.images.shape == (5, 50, 50, 3) and sc.space == "contract" and (sc.near, sc.far) == (0.05, 1000.0)
    assert float(sc.c2w[:, :3, 3].norm(dim=-1).max()) == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(sc.intrinsics[0], lego_cameras()[1][0] / 4, atol=1e-4)
    raw = load_colmap(str(tmp_path), normalize=False)
    _same_cameras(SceneIndex.from_scene(raw), list(range(5)))


@pytest.mark.parametrize("fmt", ["ndc_isotropic", "ndc_norm_image_bounds"])
def test_co3d(tmp_path, fmt):
    layout = write_co3d(tmp_path, fmt, n=6, sequences=2)
    seqs = index_co3d(str(tmp_path / "lego_cat"))
    assert [s.name for s in seqs] == ["lego_cat/100_seq", "lego_cat/101_seq"]
    for idx, rows in zip(seqs, layout):
        ids, dx = [i for i, _ in rows], [x0 for _, x0 in rows]
        _same_cameras(idx, ids, dx)
        assert idx.sizes.tolist() == [[200, 200] if x0 == 0 else [200, 160] for x0 in dx]
        assert idx.read_image(1).shape == (200, 160, 3) and idx.space == "contract"
    assert [s.name for s in index_co3d(str(tmp_path / "lego_cat"), sequences=["101_seq"])] == ["lego_cat/101_seq"]
    with pytest.raises(DataError, match="no such sequence"):
        index_co3d(str(tmp_path / "lego_cat"), sequences=["nope"])


def test_co3d_projection_matches_pytorch3d_formula(tmp_path):
    """Project a world point with PyTorch3D's own equations from the raw annotations (row-vector
    X_cam = X @ R + T, NDC +X left / +Y up, screen = half size - ndc * scale) and with our cameras."""
    write_co3d(tmp_path, "ndc_isotropic", n=4, sequences=1)
    with gzip.open(tmp_path / "lego_cat" / "frame_annotations.jgz", "rt") as f:
        frames = sorted(json.load(f), key=lambda fr: fr["frame_number"])
    idx = index_co3d(str(tmp_path / "lego_cat"))[0]
    X = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    for fr, c2w, k in zip(frames, idx.c2w.double(), idx.intrinsics.double()):
        vp, (H, W) = fr["viewpoint"], fr["image"]["size"]
        xc = X @ torch.tensor(vp["R"], dtype=torch.float64) + torch.tensor(vp["T"], dtype=torch.float64)
        ndc = torch.tensor(vp["focal_length"]) * xc[:2] / xc[2] + torch.tensor(vp["principal_point"])
        s = min(H, W) / 2
        want = torch.tensor([W / 2 - ndc[0] * s, H / 2 - ndc[1] * s])
        p = torch.linalg.inv(c2w) @ torch.cat([X, torch.ones(1, dtype=torch.float64)])  # OpenGL camera
        got = torch.stack([k[0] * p[0] / -p[2] + k[2], -k[1] * p[1] / -p[2] + k[3]])
        assert torch.allclose(got, want, atol=1e-3), (got, want)


def test_co3d_intrinsics_formats_differ_only_off_square():
    a = ndc_to_pixels([2.0, 2.0], [0.1, -0.2], [100, 160], "ndc_isotropic")
    b = ndc_to_pixels([2.0, 2.0], [0.1, -0.2], [100, 160], "ndc_norm_image_bounds")
    assert a == (100.0, 100.0, 75.0, 60.0) and b == (160.0, 100.0, 72.0, 60.0)
    assert ndc_to_pixels([2.0, 2.0], [0.1, -0.2], [100, 100], "ndc_isotropic") == ndc_to_pixels(
        [2.0, 2.0], [0.1, -0.2], [100, 100], "ndc_norm_image_bounds"
    )
    with pytest.raises(DataError, match="intrinsics_format"):
        ndc_to_pixels([1, 1], [0, 0], [10, 10], "screen")


def test_realestate(tmp_path):
    write_realestate(tmp_path, n=8, missing=3)
    idx = index_realestate(str(tmp_path / "0123abcd.txt"))
    ids = [0, 1, 2, 4, 5, 6, 7]  # frame 3 has no image: skipped
    _same_cameras(idx, ids)
    assert len(idx) == 7 and idx.read_image(0).shape == (200, 200, 3) and (idx.near, idx.far) == (1.0, 100.0)
    assert [c.name for c in index_realestate_folder(str(tmp_path))] == ["0123abcd"]
    (tmp_path / "bad.txt").write_text("url\n1 2 3\n")
    with pytest.raises(DataError, match="19 values"):
        index_realestate(str(tmp_path / "bad.txt"))


def test_zero123(tmp_path):
    lens = write_zero123(tmp_path, n=6)
    idx = index_zero123(str(tmp_path), lens_mm=lens)
    _same_cameras(idx, list(range(6)))
    assert idx.space == "box" and idx.background == "white" and idx.near < 4.0 < idx.far
    default = index_zero123(str(tmp_path))
    assert float(default.intrinsics[0, 0]) == pytest.approx(200 * 35 / 32)
    sc = idx.to_scene()
    assert sc.images.shape == (6, 200, 200, 3) and float(sc.images.max()) <= 1.0
    (tmp_path / "006.png").symlink_to(tmp_path / "000.png")
    with pytest.raises(DataError, match="006.png has no camera file"):
        index_zero123(str(tmp_path))


def test_reconstruct_accepts_a_colmap_folder(tmp_path):
    from reconfusion.app.cli import main

    write_colmap(tmp_path / "scene", n=6)
    rc = main(
        [
            "reconstruct",
            "--data",
            str(tmp_path / "scene"),
            "--downscale",
            "4",
            "--views",
            "3",
            "--iterations",
            "2",
            "--batch-rays",
            "32",
            "--no-video",
            "--quiet",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert rc == 0 and (tmp_path / "run" / "history.json").is_file()


def test_training_sources_from_config_entries(tmp_path):
    """Run-config data entries -> indexed scenes: folders of COLMAP scenes / Zero-1-to-3 objects,
    one CO3D category, in-memory scenes; bad entries name the problem."""
    from reconfusion.prior.sources import build_sources, index_source

    for k in range(2):
        write_colmap(tmp_path / "mvimgnet" / f"scene{k}", n=3, binary=bool(k))
        (tmp_path / "objs" / f"obj{k}").mkdir(parents=True)
        write_zero123(tmp_path / "objs" / f"obj{k}", n=4)
    write_co3d(tmp_path / "co3d", n=3, sequences=2)
    assert [s.name for s in index_source({"format": "colmap", "path": str(tmp_path / "mvimgnet")})] == [
        "scene0",
        "scene1",
    ]
    assert len(index_source({"format": "colmap", "path": str(tmp_path / "mvimgnet" / "scene1")})) == 1
    assert [len(s) for s in index_source({"format": "zero123", "path": str(tmp_path / "objs")})] == [4, 4]
    assert len(index_source({"format": "zero123", "path": str(tmp_path / "objs" / "obj0")})) == 1
    one = index_source({"format": "co3d", "path": str(tmp_path / "co3d" / "lego_cat"), "sequences": ["100_seq"]})
    assert [s.name for s in one] == ["lego_cat/100_seq"]
    scene = index_source({"format": "scene", "path": str(LEGO), "downscale": 8})
    assert scene[0].images.shape == (100, 25, 25, 3)
    srcs = build_sources([{"format": "colmap", "path": str(tmp_path / "mvimgnet"), "weight": 2}])
    assert srcs[0].weight == 2.0 and len(srcs[0].scenes) == 2
    with pytest.raises(ValueError, match="data format"):
        index_source({"format": "mvimgnet", "path": str(tmp_path)})
    with pytest.raises(ValueError, match="not found"):
        index_source({"format": "colmap", "path": str(tmp_path / "nope")})
    with pytest.raises(ValueError, match="no COLMAP scene"):
        index_source({"format": "colmap", "path": str(tmp_path / "objs")})
