"""CLI: smoke runs (reconstruct -> evaluate -> render-video) and one-line errors for bad input."""

import json
import os
import subprocess
import sys

import pytest

from reconfusion.app.cli import main
from tests.helpers.paths import ROOT as PATHS_ROOT
from tests.helpers.recon_scenes import boxes_scene, save_npz
from tests.helpers.scene_files import write_llff

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = str(PATHS_ROOT)


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
    rc = main(
        [
            "reconstruct",
            "--data",
            npz,
            "--views",
            "3",
            "--preset",
            "tiny",
            "--iterations",
            "3",
            "--batch-rays",
            "64",
            "--out",
            out,
            "--frames",
            "2",
            "--quiet",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "held-out views" in printed and "PSNR" in printed
    res = json.load(open(os.path.join(out, "results.json")))
    assert res["n_train_views"] == 3 and res["test_ids"] == [0] and os.path.isfile(res["video"])
    assert os.path.isfile(os.path.join(out, "checkpoint", "model.safetensors"))
    assert main(["evaluate", "--checkpoint", out, "--device", "cpu"]) == 0
    assert os.path.isfile(os.path.join(out, "eval", "results.json"))
    assert (
        main(
            ["render-video", "--checkpoint", out, "--frames", "2", "--out", str(tmp_path / "v.gif"), "--device", "cpu"]
        )
        == 0
    )
    assert os.path.isfile(tmp_path / "v.gif")
    assert_no_pickles(out)


def assert_no_pickles(run_dir):
    """Every file the project wrote in a run folder loads as what its name says, and none is a pickle."""
    import imageio.v3 as iio
    from safetensors import safe_open

    from reconfusion.checkpoint import is_pickle

    seen = set()
    for root, _, files in os.walk(run_dir):
        for name in files:
            path = os.path.join(root, name)
            assert not is_pickle(path), path
            ext = os.path.splitext(name)[1]
            seen.add(ext)
            if ext == ".json":
                json.load(open(path))
            elif ext == ".safetensors":
                with safe_open(path, framework="pt") as f:
                    assert list(f.keys())
            elif ext in (".png", ".gif", ".mp4"):
                assert iio.imread(path, index=0).ndim == 3
            else:
                raise AssertionError(f"unexpected file in a run folder: {path}")
    assert {".json", ".safetensors", ".png"} <= seen


def test_bad_inputs_give_one_line(npz, tmp_path, capsys):
    out = str(tmp_path / "o")
    one_line_error(capsys, ["reconstruct", "--data", str(tmp_path / "nope"), "--views", "3", "--out", out], "not found")
    one_line_error(
        capsys, ["reconstruct", "--data", npz, "--views", "3", "--preset", "huge", "--out", out], "unknown preset"
    )
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
    r = subprocess.run(
        [sys.executable, "-m", "reconfusion", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and "demo" in r.stdout and "reconstruct" in r.stdout


def test_embedded_demo_scene_needs_no_factor(tmp_path, capsys):
    """``reconstruct --data reconfusion/demo/fern`` finds images_32/ (the only folder there)."""
    from reconfusion.app.runs import DEMO_DATA

    out = str(tmp_path / "run")
    rc = main(
        [
            "reconstruct",
            "--data",
            DEMO_DATA,
            "--views",
            "3",
            "--iterations",
            "1",
            "--batch-rays",
            "32",
            "--no-video",
            "--quiet",
            "--device",
            "cpu",
            "--out",
            out,
            "--backend",
            "torch",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert "126x94" in capsys.readouterr().out
    cfg = json.load(open(os.path.join(out, "checkpoint", "config.json")))
    assert cfg["scene"]["data"]["factor"] == 32 and cfg["config"]["backend"] == "torch"


# ----------------------------------------------------------------------- through the real entry point
def _blender(root, **meta_kw):
    from tests.helpers.scene_files import write_blender

    write_blender(root)
    p = os.path.join(root, "transforms_train.json")
    meta = json.load(open(p))
    if meta_kw.pop("drop_matrix", False):
        del meta["frames"][1]["transform_matrix"]
    meta.update(meta_kw)
    json.dump(meta, open(p, "w"))
    return root


@pytest.fixture(scope="module")
def run_dir(npz, tmp_path_factory):
    """A run folder (checkpoint of an untrained tiny model on the npz scene: no training needed)."""
    from reconfusion.config import tiny
    from reconfusion.data import load_scene, select_views
    from reconfusion.reconstruct import build_model, make_optimizer, save_checkpoint, scene_meta

    scene = select_views(load_scene(npz), n_views=3)
    out = str(tmp_path_factory.mktemp("run"))
    cfg = tiny()
    model = build_model(cfg, scene)
    save_checkpoint(
        out,
        model,
        model.cfg,
        scene_meta(scene, {"path": npz, "format": "auto", "downscale": 1.0}),
        1,
        make_optimizer(model, cfg),
    )
    return out


def _variant(run_dir, tmp_path, name, edit):
    import shutil

    dst = str(tmp_path / name)
    shutil.copytree(run_dir, dst)
    edit(os.path.join(dst, "checkpoint"))
    return dst


def _truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


def _pickle_state(ck):
    import pickle

    os.remove(os.path.join(ck, "optimizer.safetensors"))
    pickle.dump({"optimizer": {}}, open(os.path.join(ck, "optimizer.pt"), "wb"))


def _extra_config_key(ck):
    p = os.path.join(ck, "config.json")
    info = json.load(open(p))
    info["config"]["learning_rate"] = 1
    json.dump(info, open(p, "w"))


def test_cli_errors_are_one_line_exit_2(npz, run_dir, tmp_path):
    """Each bad input, run as ``python -m reconfusion ...``: exit 2, one ``reconfusion: error:`` line
    naming the problem on stderr, no traceback; all are caught before any training."""
    from concurrent.futures import ThreadPoolExecutor

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    prior = tmp_path / "prior"
    prior.mkdir()
    (prior / "config.json").write_text(json.dumps({"unet": {}, "vae": {}, "clip": {}, "colour": 1}))
    (prior / "model.safetensors").write_bytes(b"")
    nan = tmp_path / "nan.npz"
    import numpy as np

    d = dict(np.load(npz))
    d["images"] = d["images"].copy()
    d["images"][1, 2, 3, 0] = np.nan
    np.savez(nan, **d)
    out = str(tmp_path / "out")
    rec = ["reconstruct", "--data", npz, "--views", "3", "--out", out, "--iterations", "2", "--quiet"]
    cases = [
        (rec + ["--device", "gpu"], "--device must be auto, cpu, cuda"),
        (rec + ["--device", "mps"], "--device must be auto, cpu, cuda"),
        (rec + ["--batch-rays", "0"], "--batch-rays must be >= 1"),
        (rec + ["--threads", "-1"], "--threads must be >= 0"),
        (rec + ["--frames", "0"], "--frames must be >= 1"),
        (rec[:-5] + ["--out", str(a_file)], "is an existing file"),
        (rec + ["--backend", "cuda", "--device", "cpu"], "backend 'cuda' cannot run on cpu"),
        (["demo", "--frames", "0", "--out", out], "--frames must be >= 1"),
        (["demo", "--out", str(a_file)], "is an existing file"),
        (["render-video", "--checkpoint", run_dir, "--frames", "0"], "--frames must be >= 1"),
        (
            [
                "evaluate",
                "--checkpoint",
                _variant(run_dir, tmp_path, "tm", lambda ck: _truncate(os.path.join(ck, "model.safetensors"))),
            ],
            "model.safetensors is truncated",
        ),
        (
            ["evaluate", "--checkpoint", _variant(run_dir, tmp_path, "ck", _extra_config_key)],
            "unknown key(s) ['learning_rate'] in config",
        ),
        (
            rec[:-5]
            + [
                "--out",
                _variant(run_dir, tmp_path, "to", lambda ck: _truncate(os.path.join(ck, "optimizer.safetensors"))),
                "--resume",
            ],
            "optimizer.safetensors is truncated",
        ),
        (rec[:-5] + ["--out", _variant(run_dir, tmp_path, "po", _pickle_state), "--resume"], "pickle"),
        (rec + ["--prior", str(prior)], "unknown key(s) ['colour']"),
        (
            ["reconstruct", "--data", _blender(str(tmp_path / "b0"), camera_angle_x=0), "--views", "2", "--out", out],
            "camera_angle_x must be in (0, pi)",
        ),
        (
            ["reconstruct", "--data", _blender(str(tmp_path / "b1"), drop_matrix=True), "--views", "2", "--out", out],
            "frame 1 lacks 'transform_matrix'",
        ),
        (["reconstruct", "--data", str(nan), "--views", "3", "--out", out], "non-finite (NaN/inf) pixel"),
    ]
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}

    def run(argv):
        return subprocess.run(
            [sys.executable, "-m", "reconfusion", *argv],
            cwd=str(tmp_path),
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(run, [c[0] for c in cases]))
    for (argv, match), r in zip(cases, results):
        err = r.stderr.strip().splitlines()
        assert r.returncode == 2, (argv, r.stderr[-2000:])
        assert len(err) == 1 and err[0].startswith("reconfusion: error:") and match in err[0], (argv, err)
        assert "Traceback" not in r.stderr
    assert not os.path.exists(out)  # nothing was trained


# ----------------------------------------------------------------------- --set and error classes
def test_set_overrides_reach_the_saved_config(npz, tmp_path, capsys):
    out = str(tmp_path / "run")
    rc = main(
        [
            "reconstruct",
            "--data",
            npz,
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
            out,
            "--set",
            "occlusion_weight=0.05",
            "--set",
            "field.dir_degree=3",
            "--set",
            "proposals.0.width=8",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    cfg = json.load(open(os.path.join(out, "checkpoint", "config.json")))["config"]
    assert cfg["occlusion_weight"] == 0.05 and cfg["field"]["dir_degree"] == 3 and cfg["proposals"][0]["width"] == 8


@pytest.mark.parametrize(
    "item,match",
    [
        ("nope=1", "unknown config key 'nope'"),
        ("field.nope=1", "unknown config key 'field.nope'"),
        ("proposals.7.width=8", "'proposals.7' needs an index < 1"),
        ("iterations=abc", "config `iterations` must be an integer >= 1"),
        ("novalue", "--set takes key=value"),
    ],
)
def test_bad_set_is_one_line_before_any_work(npz, tmp_path, capsys, item, match):
    out = tmp_path / "run"
    one_line_error(
        capsys,
        ["reconstruct", "--data", npz, "--views", "3", "--out", str(out), "--device", "cpu", "--set", item],
        match,
    )
    assert not out.exists()


def test_a_value_error_inside_training_keeps_its_traceback(npz, tmp_path, monkeypatch):
    """Only argument, config and data errors are one line: a ValueError raised by the work itself is a bug."""
    import reconfusion.reconstruct as loop
    from reconfusion.app.runs import WorkError

    def broken_train(*args, **kwargs):
        raise ValueError("an internal shape bug")

    monkeypatch.setattr(loop, "train", broken_train)
    with pytest.raises(WorkError) as info:
        main(
            [
                "reconstruct",
                "--data",
                npz,
                "--views",
                "3",
                "--iterations",
                "1",
                "--no-video",
                "--quiet",
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "run"),
            ]
        )
    assert isinstance(info.value.__cause__, ValueError) and "an internal shape bug" in str(info.value.__cause__)


def test_space_override_is_used_printed_and_replayed(tmp_path, capsys):
    """--space overrides the decision for an LLFF-layout scene; evaluate reloads the scene the same way."""
    from reconfusion.app.runs import DEMO_DATA

    out = str(tmp_path / "run")
    rc = main(
        [
            "reconstruct",
            "--data",
            DEMO_DATA,
            "--views",
            "3",
            "--iterations",
            "1",
            "--batch-rays",
            "32",
            "--no-video",
            "--quiet",
            "--device",
            "cpu",
            "--out",
            out,
            "--space",
            "contract",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert "space contract" in capsys.readouterr().out
    saved = json.load(open(os.path.join(out, "checkpoint", "config.json")))["scene"]
    assert saved["space"] == "contract" and saved["data"]["space"] == "contract"
    assert main(["evaluate", "--checkpoint", out, "--device", "cpu", "--quiet"]) == 0


def test_space_is_for_llff_layout_scenes(npz, tmp_path, capsys):
    one_line_error(
        capsys,
        [
            "reconstruct",
            "--data",
            npz,
            "--views",
            "3",
            "--out",
            str(tmp_path / "r"),
            "--device",
            "cpu",
            "--space",
            "ndc",
        ],
        "--space applies to LLFF-layout scenes",
    )
