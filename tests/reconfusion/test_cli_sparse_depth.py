"""``--sparse-depth on|off``: the config it gives, and a reconstruction that triangulates its
training views and caches the points in the run folder."""

import json
import os

import pytest

from reconfusion.app.cli import main
from reconfusion.app.runs import make_config
from reconfusion.config import SPARSE_DEPTH_WEIGHT
from reconfusion.geometry.sparse_points import CACHE_DIR
from tests.helpers.plane_scenes import plane_scene
from tests.helpers.recon_scenes import save_npz


def test_switch_sets_the_weight_and_set_wins():
    assert make_config("tiny", sparse_depth="on").sparse_depth_weight == SPARSE_DEPTH_WEIGHT > 0
    assert make_config("tiny", sparse_depth="off").sparse_depth_weight == 0
    assert make_config("tiny", overrides=["sparse_depth_weight=0.5"], sparse_depth="on").sparse_depth_weight == 0.5
    assert make_config("tiny").sparse_depth_weight == make_config("tiny", sparse_depth=None).sparse_depth_weight


@pytest.mark.slow  # a whole reconstruct command (compile, evaluation): minutes on a loaded CPU
def test_reconstruct_caches_the_points_in_the_run_folder(tmp_path, capsys):
    pytest.importorskip("cv2")
    data = save_npz(plane_scene(n_views=4, space="box"), str(tmp_path / "plane.npz"))
    out = str(tmp_path / "run")
    argv = ["reconstruct", "--data", data, "--views", "3", "--iterations", "2", "--batch-rays", "32"]
    argv += ["--no-video", "--quiet", "--device", "cpu", "--out", out, "--sparse-depth", "on"]
    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "sparse depth:" in printed and "target rays" in printed
    cached = os.listdir(os.path.join(out, CACHE_DIR))
    assert sorted(f.rsplit(".", 1)[1] for f in cached) == ["json", "safetensors"]
    saved = json.load(open(os.path.join(out, "checkpoint", "config.json")))["config"]
    assert saved["sparse_depth_weight"] == SPARSE_DEPTH_WEIGHT
