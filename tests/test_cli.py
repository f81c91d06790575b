"""CLI: smoke runs (reconstruct -> evaluate -> render-video) and one-line errors for bad input."""
import json
import os
import subprocess
import sys

import pytest

from reconfusion.cli import main
from tests.recon_scenes import boxes_scene, save_npz
from tests.test_data import write_llff


pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    return save_npz(boxes_scene(n_views=8, size=16, n_samples=64), str(tmp_path_factory.mktemp("d") / "boxes.npz"))


def one_line_error(capsys, argv, match):
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("reconfusion: error:") and match in err[0], err
    assert "Traceback" not in err[0]


def test_reconstruct_evaluate_video_smoke(npz, tmp_path, capsys):
    out = str(tmp_path / "run")
    rc = main(["reconstruct", "--data", npz, "--views", "3", "--preset", "tiny", "--iterations", "3",
               "--batch-rays", "64", "--out", out, "--frames", "2", "--quiet", "--device", "cpu"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "held-out views" in printed and "PSNR" in printed
    res = json.load(open(os.path.join(out, "results.json")))
    assert res["n_train_views"] == 3 and res["test_ids"] == [0] and os.path.isfile(res["video"])
    assert os.path.isfile(os.path.join(out, "checkpoint", "model.safetensors"))
    assert main(["evaluate", "--checkpoint", out, "--device", "cpu"]) == 0
    assert os.path.isfile(os.path.join(out, "eval", "results.json"))
    assert main(["render-video", "--checkpoint", out, "--frames", "2", "--out", str(tmp_path / "v.gif"),
                 "--device", "cpu"]) == 0
    assert os.path.isfile(tmp_path / "v.gif")


def test_bad_inputs_give_one_line(npz, tmp_path, capsys):
    out = str(tmp_path / "o")
    one_line_error(capsys, ["reconstruct", "--data", str(tmp_path / "nope"), "--views", "3", "--out", out], "not found")
    one_line_error(capsys, ["reconstruct", "--data", npz, "--views", "3", "--preset", "huge", "--out", out],
                   "unknown preset")
    one_line_error(capsys, ["reconstruct", "--data", npz, "--views", "50", "--out", out], "too few views")
    one_line_error(capsys, ["reconstruct", "--data", npz, "--train-ids", "0,2", "--out", out], "also test views")
    one_line_error(capsys, ["reconstruct", "--data", npz, "--train-ids", "a,b", "--out", out], "integers")
    bad = write_llff(str(tmp_path / "llff"), n=3, sizes=[(12, 16), (12, 16), (10, 16)])
    one_line_error(capsys, ["reconstruct", "--data", bad, "--views", "1", "--out", out], "inconsistent image sizes")
    one_line_error(capsys, ["evaluate", "--checkpoint", str(tmp_path)], "no checkpoint")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(capsys, ["reconstruct", "--data", str(empty), "--views", "3", "--out", out], "unrecognized")


def test_python_dash_m_help():
    r = subprocess.run([sys.executable, "-m", "reconfusion", "--help"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "demo" in r.stdout and "reconstruct" in r.stdout
