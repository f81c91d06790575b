"""A hostile run folder (``latest.json`` pointing out, links planted in ``--out``, a saved state that
is truncated, pickled or of another prior size) makes ``train-prior`` refuse with one clear line naming
the file, and nothing outside ``--out`` is created, changed or deleted."""

import hashlib
import json
import os
import pathlib
import shutil

import numpy as np
import pytest

from reconfusion.app.cli import main
from tests.helpers.prior_scenes import synthetic_scene

pytestmark = pytest.mark.usefixtures("one_thread")


def _train(data: pathlib.Path, out: pathlib.Path, steps: int) -> int:
    return main(
        [
            "train-prior",
            str(data),
            "--tiny",
            "--out",
            str(out),
            "--steps",
            str(steps),
            "--batch-size",
            "2",
            "--checkpoint-every",
            "1",
            "--num-workers",
            "0",
            "--no-progress",
            "--device",
            "cpu",
        ]
    )


def _snapshot(root: pathlib.Path) -> dict:
    """Every entry under ``root`` (links not followed) -> its kind and content hash / link target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = pathlib.Path(dirpath) / name
            if p.is_symlink():
                out[str(p)] = ("link", os.readlink(p))
            elif p.is_dir():
                out[str(p)] = ("dir",)
            else:
                out[str(p)] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A scene and a run folder after one saved step."""
    root = tmp_path_factory.mktemp("run")
    sc = synthetic_scene(4, 32)
    data = root / "scene.npz"
    np.savez(data, images=sc.images.numpy(), poses=sc.c2w.numpy(), focal=32.0, near=1.0, far=5.0)
    assert _train(data, root / "template", 1) == 0
    return data, root / "template"


def _state(out: pathlib.Path) -> str:
    return json.loads((out / "latest.json").read_text())["dir"]


def _escape_up(out, victim):
    (out / "latest.json").write_text(json.dumps({"dir": f"../victim/{_state(victim)}", "step": 1}))


def _escape_absolute(out, victim):
    (out / "latest.json").write_text(json.dumps({"dir": str(victim / _state(victim)), "step": 1}))


def _state_is_a_link_out(out, victim):
    shutil.rmtree(out / _state(out))
    (out / _state(victim)).symlink_to(victim / _state(victim))


def _latest_is_a_link_out(out, victim):
    (out / "latest.json").unlink()
    (out / "latest.json").symlink_to(victim / "latest.json")


def _saved_prior_is_a_link_out(out, victim):
    shutil.rmtree(out / "last")
    (out / "last").symlink_to(victim / "last")


def _metrics_is_a_link_out(out, victim):
    (out / "metrics.jsonl").unlink()
    (out / "metrics.jsonl").symlink_to(victim / "metrics.jsonl")


def _no_dir_key(out, victim):
    (out / "latest.json").write_text(json.dumps({"step": 1}))


def _dir_not_a_string(out, victim):
    (out / "latest.json").write_text(json.dumps({"dir": ["state-000001"], "step": 1}))


def _not_an_object(out, victim):
    (out / "latest.json").write_text("[1, 2]")


def _truncated(out, victim):
    (out / "latest.json").write_text('{"dir": "state-0')


def _resized(path: pathlib.Path):
    """Rewrite a safetensors file with its first tensor one row longer (a state of another prior size)."""
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    k = sorted(k for k, t in tensors.items() if t.dim() > 0)[0]
    tensors[k] = torch.cat([tensors[k], tensors[k][:1]])
    save_file(tensors, str(path))


def _model_of_other_size(out, victim):
    _resized(out / _state(out) / "model" / "model.safetensors")


def _ema_of_other_size(out, victim):
    _resized(out / _state(out) / "ema.safetensors")


def _optimizer_of_other_size(out, victim):
    _resized(out / _state(out) / "optimizer.safetensors")


def _model_truncated(out, victim):
    p = out / _state(out) / "model" / "model.safetensors"
    p.write_bytes(p.read_bytes()[:1000])


def _model_pickled(out, victim):
    import pickle

    (out / _state(out) / "model" / "model.safetensors").write_bytes(pickle.dumps({"w": [1.0]}, protocol=4))


def _model_config_cut(out, victim):
    p = out / _state(out) / "model" / "config.json"
    p.write_text(p.read_text()[:30])


HOSTILE = {
    f.__name__.lstrip("_"): f
    for f in (
        _escape_up,
        _escape_absolute,
        _state_is_a_link_out,
        _latest_is_a_link_out,
        _saved_prior_is_a_link_out,
        _metrics_is_a_link_out,
        _no_dir_key,
        _dir_not_a_string,
        _not_an_object,
        _truncated,
        _model_of_other_size,
        _ema_of_other_size,
        _optimizer_of_other_size,
        _model_truncated,
        _model_pickled,
        _model_config_cut,
    )
}
EXPECTED = {
    "escape_up": "state-<step> folder",
    "escape_absolute": "state-<step> folder",
    "state_is_a_link_out": "outside",
    "latest_is_a_link_out": "outside",
    "saved_prior_is_a_link_out": "outside",
    "metrics_is_a_link_out": "outside",
    "no_dir_key": '"dir" and "step"',
    "dir_not_a_string": "state-<step> folder",
    "not_an_object": '"dir" and "step"',
    "truncated": "not JSON",
    "model_of_other_size": "another prior size",
    "ema_of_other_size": "another prior size",
    "optimizer_of_other_size": "another prior size",
    "model_truncated": "truncated or not a safetensors",
    "model_pickled": "is a pickle",
    "model_config_cut": "not JSON",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_run_folder_touches_nothing_outside_out(case, trained, tmp_path, capsys):
    data, template = trained
    victim, out = tmp_path / "victim", tmp_path / "out"
    shutil.copytree(template, victim)
    shutil.copytree(template, out)
    HOSTILE[case](out, victim)
    before = _snapshot(tmp_path / "victim")
    assert _train(data, out, 3) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reconfusion: error:") and len(err.splitlines()) == 1
    assert EXPECTED[case] in err
    assert _snapshot(tmp_path / "victim") == before
    assert sorted(os.listdir(tmp_path)) == ["out", "victim"]
