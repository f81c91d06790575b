"""``reconfusion benchmark``: a tiny run through the real entry point, resumability, the splits and
the table format."""

import json
import os
import subprocess
import sys
import types

import pytest
import torch

from reconfusion.app import quality_benchmark as bm
from reconfusion.app.cli import main
from tests.helpers.paths import ROOT as PATHS_ROOT
from tests.helpers.scene_files import write_blender, write_llff

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = str(PATHS_ROOT)
TINY = ["--iterations", "2", "--batch-rays", "32", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    d = tmp_path_factory.mktemp("scenes")
    return write_llff(str(d / "tinyllff"), n=10, h=12, w=16), write_blender(str(d / "tinyblender"), n=10, size=12)


def _table(out):
    with open(os.path.join(out, "benchmark.json")) as f:
        return json.load(f)


def test_entry_point_tiny_run(scenes, tmp_path):
    out = str(tmp_path / "b")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconfusion",
            "benchmark",
            *scenes,
            "--views",
            "3,2",
            "--out",
            out,
            "--threads",
            "1",
            *TINY,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    t = _table(out)
    assert t["views"] == [2, 3] and t["scenes"] == ["tinyblender", "tinyllff"]
    assert len(t["pairs"]) == 4 and {p["views"] for p in t["pairs"]} == {2, 3}
    for p in t["pairs"]:
        assert len(p["train_ids"]) == p["views"] and not set(p["train_ids"]) & set(p["test_ids"])
        assert p["lpips"] is None and p["train_seconds"] > 0 and p["render_seconds"] > 0
    llff = [p for p in t["pairs"] if p["scene"] == "tinyllff"]
    assert all(p["test_ids"] == [0, 8] and p["format"] == "llff" for p in llff)
    for n in ("2", "3"):  # the mean row is the mean of the per-scene rows
        sel = [p["psnr"] for p in t["pairs"] if p["views"] == int(n)]
        assert t["mean"][n]["psnr"] == pytest.approx(sum(sel) / 2) and t["mean"][n]["lpips"] is None
    assert t["published"] is None  # not an all-LLFF scene set
    md = open(os.path.join(out, "benchmark.md")).read()
    assert "n/a" in md and "Zip-NeRF" not in md and "tinyllff" in md
    assert t["settings"]["iterations"] == 2 and t["settings"]["versions"]["torch"] == torch.__version__


def test_resume_reuses_finished_pairs(scenes, tmp_path, capsys):
    llff = scenes[0]
    out = str(tmp_path / "b")
    assert main(["benchmark", llff, "--views", "2,3", "--out", out, *TINY]) == 0
    capsys.readouterr()
    res = {n: os.path.join(out, "tinyllff", f"{n}views", "results.json") for n in (2, 3)}
    before = {n: os.path.getmtime(p) for n, p in res.items()}
    os.remove(res[3])  # as if stopped after training 2 views and during 3 views
    assert main(["benchmark", llff, "--views", "2,3", "--out", out, *TINY]) == 0
    printed = capsys.readouterr().out
    assert "tinyllff 2 views: reused" in printed and "3 views: reused" not in printed
    assert os.path.getmtime(res[2]) == before[2] and os.path.isfile(res[3])
    assert len(_table(out)["pairs"]) == 2
    # other settings in the same folder: a one-line error, nothing overwritten
    assert (
        main(
            [
                "benchmark",
                llff,
                "--views",
                "2",
                "--out",
                out,
                "--iterations",
                "3",
                "--batch-rays",
                "32",
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 2
    )
    assert "other settings" in capsys.readouterr().err
    assert os.path.getmtime(res[2]) == before[2]


def test_bad_arguments(scenes, tmp_path, capsys):
    for argv, match in (
        (["nope_scene_xyz"], "not found"),
        ([scenes[0], "--views", "3,x"], "--views"),
        ([scenes[0], "--views", "0"], "--views"),
        ([scenes[0], scenes[0]], "names must differ"),
    ):
        assert main(["benchmark", *argv, "--out", str(tmp_path / "e"), *TINY]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("reconfusion: error:") and match in err[0], err


def test_blender_dietnerf_split():
    scene = types.SimpleNamespace(n_images=100, test_ids=[])
    train, test, name = bm.blender_split(scene, 3)
    assert train == sorted(bm.DIETNERF_BLENDER_IDS[:3]) and "DietNeRF" in name
    assert test == [i for i in range(0, 100, 8) if i not in bm.DIETNERF_BLENDER_IDS] and 16 not in test
    assert bm.blender_split(scene, 8)[0] == sorted(bm.DIETNERF_BLENDER_IDS)
    official = types.SimpleNamespace(n_images=300, test_ids=list(range(100, 300)))
    assert bm.blender_split(official, 8)[1] == list(range(100, 300))
    with pytest.raises(bm.BenchmarkError, match="8 training views at most"):
        bm.blender_split(scene, 9)


def _pair(scene, views, psnr, fmt="llff"):
    return {
        "scene": scene,
        "mean": {"psnr": psnr, "ssim": 0.5},
        "train_seconds": 10.0,
        "render_seconds": 2.0,
        "resolution": [504, 378],
        "train_ids": list(range(views)),
        "test_ids": [0, 8, 16],
        "benchmark": {"n_views": views, "split": "llff", "format": fmt},
    }


def test_table_layout():
    sett = {
        "preset": "tiny",
        "iterations": 100,
        "batch_rays": 64,
        "seed": 0,
        "device": "cpu",
        "threads": 1,
        "backend": "auto",
        "versions": {"reconfusion": "0", "rfkernels": "0", "torch": "0", "python": "3"},
    }
    s = bm.summarize([_pair("fern", 3, 19.0), _pair("horns", 3, 17.0), _pair("fern", 6, 22.0)], [3, 6, 9], sett)
    assert s["mean"]["3"]["psnr"] == pytest.approx(18.0) and s["mean"]["3"]["n_scenes"] == 2
    assert "9" not in s["mean"] and s["published"]["llff_3view_psnr"]["ReconFusion"] == 21.34
    md = bm.markdown(s)
    table = [ln for ln in md.splitlines() if ln.startswith("|")]
    first = table[:6]  # header, separator, 3 published rows, ours
    assert all(ln.count("|") == 1 + 1 + 3 * 3 for ln in first), first
    assert "| Zip-NeRF (published, all 8 LLFF scenes) | 17.23 | – | – | – |" in md
    assert "| ours, `tiny` 100 it., no prior (mean of fern, horns) | 18.00 | 0.500 | n/a | 22.00 |" in md
    assert "| horns | 17.00 | 0.500 | n/a | – | – | – | – | – | – |" in md
    assert "LPIPS: n/a" in md
    mixed = bm.summarize([_pair("fern", 3, 19.0), _pair("lego", 3, 20.0, "blender")], [3], sett)
    assert mixed["published"] is None and "Zip-NeRF" not in bm.markdown(mixed)
    orbit = _pair("milk", 3, 18.0)
    orbit["benchmark"]["split"] = "mip-NeRF 360: test every 8th image, N views spread around the orbit"
    assert bm.summarize([_pair("fern", 3, 19.0), orbit], [3], sett)["published"] is None  # not forward-facing


def test_settings_compare_configs_not_their_json():
    """A result written before a config field existed (the field at its default) is still reused."""
    import json

    from reconfusion.config import tiny

    cfg = json.loads(tiny().to_json())
    sett = {"preset": "tiny", "iterations": 10, "batch_rays": 64, "seed": 0, "config": cfg}
    older = {**sett, "config": {k: v for k, v in cfg.items() if k != "backdrop_opacity_weight"}}
    assert bm._same_settings(older, sett)
    assert not bm._same_settings({**sett, "config": {**cfg, "backdrop_opacity_weight": 0.1}}, sett)
    assert not bm._same_settings({**sett, "config": {**cfg, "no_such_key": 1}}, sett)
    assert not bm._same_settings({**sett, "seed": 1}, sett)
