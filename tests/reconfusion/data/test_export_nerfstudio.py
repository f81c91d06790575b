"""export_nerfstudio / ``reconfusion export-nerfstudio``: a scene written as transforms.json and read
back by our nerfstudio loader gives the same images, intrinsics and (normalised) cameras."""

import json
import os

import pytest
import torch

from reconfusion.app.cli import main
from reconfusion.cameras import normalize_poses
from reconfusion.data import DataError, load_llff, load_nerfstudio, load_scene
from reconfusion.data.export_nerfstudio import export_nerfstudio
from tests.helpers.numerics import assert_close
from tests.helpers.scene_files import write_llff


def test_round_trip_llff_to_nerfstudio_and_back(tmp_path):
    src = load_llff(write_llff(str(tmp_path / "llff"), n=6), factor=8)
    jpath = export_nerfstudio(src, str(tmp_path / "ns"))
    meta = json.loads(open(jpath).read())
    assert [f["file_path"] for f in meta["frames"]] == [f"images/frame_{i:05d}.png" for i in range(6)]
    held_out = [meta["frames"][i]["file_path"] for i in src.test_ids]
    assert meta["test_filenames"] == meta["val_filenames"] == held_out
    assert sorted(meta["train_filenames"] + held_out) == sorted(f["file_path"] for f in meta["frames"])
    back = load_nerfstudio(str(tmp_path / "ns"))
    assert back.images.shape == src.images.shape
    assert_close(back.images, src.images, atol=0.5 / 255 + 1e-6, rtol=0, name="images (8-bit PNG)")
    assert_close(back.intrinsics, src.intrinsics, atol=1e-5, name="intrinsics")
    # the loader normalises any capture it reads: the same cameras, normalised once
    expected, _, _ = normalize_poses(src.c2w.double(), target_radius=1.0)
    assert_close(back.c2w, expected, atol=1e-5, name="c2w")
    # a nerfstudio scene (already normalised) comes back with identical cameras
    again = load_nerfstudio(export_nerfstudio(back, str(tmp_path / "ns2")).rsplit(os.sep, 1)[0])
    assert_close(again.c2w, back.c2w, atol=1e-5, name="c2w, nerfstudio round trip")
    assert_close(again.images, back.images, atol=0, name="images, nerfstudio round trip")


def test_export_refuses_to_overwrite(tmp_path):
    src = load_llff(write_llff(str(tmp_path / "llff"), n=3), factor=8)
    export_nerfstudio(src, str(tmp_path / "ns"))
    with pytest.raises(DataError, match="exists"):
        export_nerfstudio(src, str(tmp_path / "ns"))
    export_nerfstudio(src, str(tmp_path / "ns"), overwrite=True)


def test_cli_export(tmp_path, capsys):
    root = write_llff(str(tmp_path / "llff"), n=3)
    out = str(tmp_path / "ns")
    assert main(["export-nerfstudio", root, out]) == 0
    assert "3 frames" in capsys.readouterr().out
    assert torch.equal(load_scene(out).intrinsics, load_nerfstudio(out).intrinsics)
    assert main(["export-nerfstudio", root, out]) == 2  # exists: one error line, no traceback
    assert "exists" in capsys.readouterr().err
    assert main(["export-nerfstudio", str(tmp_path / "missing"), str(tmp_path / "x")]) == 2
    assert "not found" in capsys.readouterr().err
