"""Loaders on small files written here (and the shared scenes when present), few-view selection."""

import json
import math
import os

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from reconfusion.data import (
    DataError,
    detect_format,
    llff_protocol_ids,
    load_blender,
    load_llff,
    load_nerfstudio,
    load_npz,
    load_scene,
    select_views,
)
from reconfusion.data.scene import farthest_point_ids
from tests.helpers.paths import DEMO_FERN, SHARED_DATA
from tests.helpers.scene_files import _img, write_blender, write_llff

SHARED = str(SHARED_DATA)
DEMO = str(DEMO_FERN)


def test_llff_loader(tmp_path):
    root = write_llff(str(tmp_path / "scene"))
    s = load_llff(root, factor=8)
    assert s.images.shape == (10, 12, 16, 3) and s.space == "ndc"
    assert torch.allclose(s.intrinsics[0], torch.tensor([20.0, 20.0, 8.0, 6.0]))
    # [down, right, back] -> OpenGL [right, up, back]: world-aligned cameras stay axis-aligned
    assert torch.allclose(s.c2w[0, :3, :3], torch.eye(3), atol=1e-5)
    assert s.test_ids == [0, 8]
    assert s.near == 1.0 and s.far > 1.0
    assert detect_format(root) == "llff"


def test_llff_resizes_full_images_when_factor_folder_missing(tmp_path):
    root = write_llff(str(tmp_path / "scene"), h=24, w=32, folder="images")
    s = load_llff(root, factor=2)
    assert s.images.shape[1:3] == (12, 16)
    # focal in poses_bounds is for 8x the written size (192 px high): 160 * 16 / 256
    assert math.isclose(s.intrinsics[0, 0].item(), 160.0 * 16 / 256, rel_tol=1e-6)


def test_llff_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="poses_bounds.npy"):
        load_llff(str(tmp_path))
    root = write_llff(str(tmp_path / "a"), n=3)
    os.remove(os.path.join(root, "images_8", "img_002.png"))
    with pytest.raises(DataError, match="2 images but poses_bounds.npy has 3"):
        load_llff(root)
    root = write_llff(str(tmp_path / "b"), n=3, sizes=[(12, 16), (12, 16), (10, 16)])
    with pytest.raises(DataError, match="inconsistent image sizes"):
        load_llff(root)
    bad = str(tmp_path / "c")
    os.makedirs(bad)
    np.save(os.path.join(bad, "poses_bounds.npy"), np.zeros((3, 15)))
    with pytest.raises(DataError, match=r"\[N, 17\]"):
        load_llff(bad)


def test_blender_loader(tmp_path):
    root = write_blender(str(tmp_path / "lego"))
    s = load_blender(root)
    assert s.images.shape == (3, 8, 8, 3) and s.background == "white" and s.space == "box"
    assert torch.allclose(s.images[0], torch.ones(8, 8, 3))  # transparent -> white
    assert math.isclose(s.intrinsics[0, 0].item(), 8.0)  # 0.5 * 8 / tan(atan(0.5))
    assert s.c2w[2, 2, 3].item() == 6.0
    black = load_blender(root, white_background=False)
    assert float(black.images[0].max()) == 0.0
    with pytest.raises(DataError, match="transforms"):
        load_blender(str(tmp_path))


def test_nerfstudio_loader(tmp_path):
    root = str(tmp_path / "ns")
    os.makedirs(os.path.join(root, "images"))
    frames = []
    for i in range(4):
        iio.imwrite(os.path.join(root, "images", f"{i}.png"), _img(6, 10, seed=i))
        m = np.eye(4)
        m[:3, 3] = [math.cos(i), math.sin(i), 0.0]
        frames.append({"file_path": f"images/{i}.png", "transform_matrix": m.tolist(), "fl_x": 9.0 + i})
    meta = {"fl_y": 9.0, "cx": 5.0, "cy": 3.0, "w": 10, "h": 6, "frames": frames}
    with open(os.path.join(root, "transforms.json"), "w") as f:
        json.dump(meta, f)
    s = load_nerfstudio(root)
    assert s.images.shape == (4, 6, 10, 3) and s.space == "contract"
    assert s.intrinsics[:, 0].tolist() == [9.0, 10.0, 11.0, 12.0]  # per-frame fl_x wins
    assert math.isclose(s.c2w[:, :3, 3].norm(dim=-1).max().item(), 1.0, rel_tol=1e-5)
    assert detect_format(root) == "nerfstudio"
    meta["k1"] = 0.1
    with open(os.path.join(root, "transforms.json"), "w") as f:
        json.dump(meta, f)
    with pytest.raises(DataError, match="distortion"):
        load_nerfstudio(root)


def test_npz_loader(tmp_path):
    p = str(tmp_path / "b.npz")
    poses = np.tile(np.eye(4, dtype=np.float32), (5, 1, 1))
    poses[:, 2, 3] = 4.0
    np.savez(p, images=np.random.rand(5, 7, 9, 3).astype(np.float32), poses=poses, focal=np.float32(12.0))
    s = load_npz(p)
    assert s.images.shape == (5, 7, 9, 3) and s.near == 2.0 and s.far == 6.0
    assert torch.allclose(s.bbox, torch.tensor([[-1.5] * 3, [1.5] * 3]))
    np.savez(str(tmp_path / "bad.npz"), images=np.zeros((2, 3, 3, 3)))
    with pytest.raises(DataError, match="lacks"):
        load_npz(str(tmp_path / "bad.npz"))
    with pytest.raises(DataError, match="not found"):
        load_scene(str(tmp_path / "missing"))


def test_llff_protocol_ids():
    assert llff_protocol_ids(20, 3) == ([1, 10, 19], [0, 8, 16])
    train6, _ = llff_protocol_ids(20, 6)
    train9, _ = llff_protocol_ids(20, 9)
    assert train6 == [1, 4, 7, 12, 15, 19] and len(train9) == 9 and train9[0] == 1 and train9[-1] == 19
    with pytest.raises(DataError, match="too few views"):
        llff_protocol_ids(20, 18)


def test_select_views(tmp_path):
    s = load_llff(write_llff(str(tmp_path / "s"), n=20))
    few = select_views(s, 3)
    assert few.train_ids == [1, 10, 19] and few.test_ids == [0, 8, 16]
    explicit = select_views(s, train_ids=[2, 5])
    assert explicit.train_ids == [2, 5] and not set(explicit.train_ids) & set(explicit.test_ids)
    with pytest.raises(DataError, match="also test views"):
        select_views(s, train_ids=[0, 5])
    with pytest.raises(DataError, match="at least 1"):
        select_views(s, 0)
    with pytest.raises(DataError, match="too few views"):
        select_views(s, 30)
    with pytest.raises(DataError, match=r"in \[0, 20\)"):
        select_views(s, train_ids=[25])
    fps = select_views(s, 4, strategy="farthest")
    assert fps.train_ids == select_views(s, 4, strategy="farthest").train_ids  # deterministic
    assert not set(fps.train_ids) & {0, 8, 16}


def test_farthest_point_spreads_out():
    centers = torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [1.0, 0, 0], [-1.0, 0, 0], [0.05, 0, 0]])
    assert farthest_point_ids(centers, [0, 1, 2, 3, 4], 3) == [2, 3, 4]  # starts nearest the mean (4)


def test_scene_rays_ndc_and_metric():
    from tests.helpers.recon_scenes import boxes_scene

    s = boxes_scene(n_views=2, size=8, n_samples=16)
    r = s.view_rays(0)
    assert len(r) == 64 and torch.allclose(r.directions.norm(dim=-1), torch.ones(64))
    assert float(r.near[0]) == 2.0 and float(r.far[0]) == 6.0


def test_embedded_demo_copy():
    s = select_views(load_llff(DEMO, factor=32), 3)
    assert s.images.shape == (20, 94, 126, 3)
    assert s.train_ids == [1, 10, 19] and s.test_ids == [0, 8, 16]
    assert sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(DEMO) for f in fs) < 2_000_000


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED, "fern")), reason="shared data not present")
def test_shared_scenes():
    fern = load_scene(os.path.join(SHARED, "fern"))
    assert fern.images.shape == (20, 378, 504, 3)
    assert math.isclose(fern.intrinsics[0, 0].item(), 3260.526 / 8, rel_tol=1e-4)
    # the embedded demo copy has the same cameras (poses are resolution-independent)
    assert torch.allclose(fern.c2w, load_llff(DEMO, factor=32).c2w)
    if os.path.isdir(os.path.join(SHARED, "lego")):
        lego = load_scene(os.path.join(SHARED, "lego"))
        assert lego.images.shape == (100, 200, 200, 3) and lego.background == "white"
    if os.path.isfile(os.path.join(SHARED, "tiny_lego_100.npz")):
        tiny = load_scene(os.path.join(SHARED, "tiny_lego_100.npz"))
        assert tiny.images.shape == (100, 100, 100, 3)
        assert math.isclose(tiny.intrinsics[0, 0].item(), 138.889, rel_tol=1e-4)


def test_llff_factor_detected_from_the_available_folder(tmp_path):
    from reconfusion.data.llff import default_factor

    root = write_llff(str(tmp_path / "a"), n=3, folder="images_32")
    assert default_factor(root) == 32 and load_llff(root).images.shape == (3, 12, 16, 3)
    for k in (4, 16):
        os.makedirs(os.path.join(root, f"images_{k}"))
    assert default_factor(root) == 16  # ratio 2 either way: the smaller images
    os.makedirs(os.path.join(root, "images_8"))
    assert default_factor(root) == 8
    with pytest.raises(DataError, match=r"images_32/"):
        load_llff(write_llff(str(tmp_path / "b"), n=3, folder="images_32"), factor=8)
    with pytest.raises(DataError, match="factor"):
        load_llff(root, factor=0)


def test_loaders_reject_bad_metadata(tmp_path):
    # NaN in an LLFF pose
    root = write_llff(str(tmp_path / "llff"), n=3)
    pb = np.load(os.path.join(root, "poses_bounds.npy"))
    pb[1, 3] = np.nan
    np.save(os.path.join(root, "poses_bounds.npy"), pb)
    with pytest.raises(DataError, match="row 1 has a non-finite"):
        load_llff(root)
    # Blender: camera_angle_x <= 0 or >= pi, a frame without transform_matrix / file_path
    b = write_blender(str(tmp_path / "lego"))
    jpath = os.path.join(b, "transforms_train.json")
    good = json.load(open(jpath))
    for angle in (0, -0.5, math.pi, "wide", None):
        json.dump({**good, "camera_angle_x": angle}, open(jpath, "w"))
        with pytest.raises(DataError, match="camera_angle_x"):
            load_blender(b)
    for key in ("transform_matrix", "file_path"):
        frames = [dict(f) for f in good["frames"]]
        del frames[1][key]
        json.dump({**good, "frames": frames}, open(jpath, "w"))
        with pytest.raises(DataError, match=f"frame 1 lacks '{key}'"):
            load_blender(b)
    frames = [dict(f) for f in good["frames"]]
    frames[2]["transform_matrix"] = [[1, 0], [0, 1]]
    json.dump({**good, "frames": frames}, open(jpath, "w"))
    with pytest.raises(DataError, match="4x4"):
        load_blender(b)


def test_nerfstudio_checks_height(tmp_path):
    root = str(tmp_path / "ns")
    os.makedirs(os.path.join(root, "images"))
    iio.imwrite(os.path.join(root, "images", "0.png"), _img(6, 10))
    frame = {"file_path": "images/0.png", "transform_matrix": np.eye(4).tolist()}
    meta = {"fl_x": 9.0, "fl_y": 9.0, "cx": 5.0, "cy": 3.0, "w": 10, "h": 7, "frames": [frame]}
    json.dump(meta, open(os.path.join(root, "transforms.json"), "w"))
    with pytest.raises(DataError, match="height 6 does not match h=7"):
        load_nerfstudio(root)
    json.dump(
        {**meta, "h": 6, "frames": [{"file_path": "images/0.png"}]}, open(os.path.join(root, "transforms.json"), "w")
    )
    with pytest.raises(DataError, match="lacks 'transform_matrix'"):
        load_nerfstudio(root)


def test_npz_rejects_bad_values(tmp_path):
    poses = np.tile(np.eye(4, dtype=np.float32), (3, 1, 1))
    poses[:, 2, 3] = 4.0
    imgs = np.random.rand(3, 5, 6, 3).astype(np.float32)

    def save(**kw):
        p = str(tmp_path / "x.npz")
        np.savez(p, **{"images": imgs, "poses": poses, "focal": np.float32(8.0), **kw})
        return p

    nan = imgs.copy()
    nan[2, 1, 1, 0] = np.nan
    cases = [
        ({"images": nan}, "image 2 .*non-finite.*pixel"),
        ({"focal": np.zeros(0)}, "'focal' must be one number"),
        ({"focal": np.float32(-1)}, "focal must be > 0"),
        ({"near": np.array([1.0, 2.0])}, "'near' must be one"),
        ({"far": np.float32(np.inf)}, "'far' must be finite"),
    ]
    for kw, match in cases:
        with pytest.raises(DataError, match=match):
            load_npz(save(**kw))
    assert load_npz(save(near=np.array([1.5]), far=np.float64(7.0))).near == 1.5
