"""Run-folder checkpoints: safetensors + JSON only; pickles and truncated files refused clearly."""

import os
import pickle

import pytest

from reconfusion.checkpoint import CheckpointError, is_pickle, load_checkpoint
from reconfusion.data.scene import select_views
from reconfusion.reconstruct import train
from tests.helpers.recon_scenes import boxes_scene, small_config

pytestmark = pytest.mark.usefixtures("one_thread")


class Payload:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    scene = select_views(boxes_scene(n_views=6, size=16), train_ids=[0, 1, 2, 3, 5], test_ids=[4])
    out = str(tmp_path_factory.mktemp("run"))
    train(scene, small_config(iterations=2, checkpoint_every=1), out, progress_bar=False)
    return scene, out


def copy_run(run, tmp_path):
    import shutil

    dst = str(tmp_path / "run")
    shutil.copytree(run[1], dst)
    return dst


def test_checkpoint_files_are_not_pickles(run):
    ck = os.path.join(run[1], "checkpoint")
    assert sorted(os.listdir(ck)) == ["config.json", "model.safetensors", "optimizer.safetensors"]
    assert not any(is_pickle(os.path.join(ck, f)) for f in os.listdir(ck))


@pytest.mark.parametrize("where", ["optimizer.pt", "optimizer.safetensors"])
def test_pickled_optimizer_state_is_refused_not_run(run, tmp_path, where):
    out = copy_run(run, tmp_path)
    ck = os.path.join(out, "checkpoint")
    os.remove(os.path.join(ck, "optimizer.safetensors"))
    marker = str(tmp_path / "pwned")
    with open(os.path.join(ck, where), "wb") as f:
        pickle.dump(Payload(marker), f)
    assert is_pickle(os.path.join(ck, where))
    with pytest.raises(CheckpointError, match="pickle.*refused"):
        train(run[0], small_config(iterations=3), out, resume=True, progress_bar=False)
    assert not os.path.exists(marker)


def test_torch_save_archive_is_detected_as_pickle(tmp_path):
    import torch

    torch.save({"a": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
    assert is_pickle(str(tmp_path / "x.safetensors"))
    (tmp_path / "y.json").write_text("{}")
    assert not is_pickle(str(tmp_path / "y.json"))


def test_pickled_model_is_refused(run, tmp_path):
    out = copy_run(run, tmp_path)
    marker = str(tmp_path / "pwned")
    with open(os.path.join(out, "checkpoint", "model.safetensors"), "wb") as f:
        pickle.dump(Payload(marker), f)
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(out)
    assert not os.path.exists(marker)


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors", "config.json"])
def test_truncated_files_give_a_clear_error(run, tmp_path, name):
    out = copy_run(run, tmp_path)
    p = os.path.join(out, "checkpoint", name)
    data = open(p, "rb").read()
    with open(p, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{name} is truncated"):
        train(run[0], small_config(iterations=3), out, resume=True, progress_bar=False)


@pytest.fixture(scope="module")
def other_run(run, tmp_path_factory):
    """A second run of the same scene and config: same steps and shapes, another run id."""
    out = str(tmp_path_factory.mktemp("other"))
    train(run[0], small_config(iterations=2, checkpoint_every=1), out, progress_bar=False)
    return out


def _resume(run, out):
    return train(run[0], small_config(iterations=3), out, resume=True, progress_bar=False)


def test_an_optimizer_of_another_run_is_refused(run, other_run, tmp_path):
    import shutil

    out = copy_run(run, tmp_path)
    shutil.copy(os.path.join(other_run, "checkpoint", "optimizer.safetensors"), os.path.join(out, "checkpoint"))
    with pytest.raises(CheckpointError, match=r"optimizer.safetensors is from run \w+ step 2, .*config.json from run"):
        _resume(run, out)


def test_overwritten_tensor_bytes_are_refused(run, tmp_path):
    import numpy as np

    out = copy_run(run, tmp_path)
    p = os.path.join(out, "checkpoint", "model.safetensors")
    data = bytearray(open(p, "rb").read())
    data[-400:] = np.full(100, 3.4e38, np.float32).tobytes()
    open(p, "wb").write(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors was changed after it was saved"):
        load_checkpoint(out)


def test_an_optimizer_of_other_shapes_is_refused(run, tmp_path, monkeypatch):
    """Even with a consistent set (here rewritten through the writer), shapes are checked on load."""
    import torch

    from reconfusion import checkpoint as ck

    out = copy_run(run, tmp_path)
    model, cfg, info = load_checkpoint(out)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(3))])
    opt.state[opt.param_groups[0]["params"][0]] = {
        "step": torch.tensor(1.0),
        "exp_avg": torch.zeros(3),
        "exp_avg_sq": torch.zeros(3),
    }
    ck.save_checkpoint(out, model, cfg, info["scene"], info["step"], opt)
    with pytest.raises(CheckpointError, match="optimizer tensor 'state.0.exp_avg' has shape \\[3\\]"):
        _resume(run, out)


def test_resume_without_a_checkpoint_says_so(run, tmp_path):
    logs = []
    train(run[0], small_config(iterations=1), str(tmp_path), resume=True, progress_bar=False, log=logs.append)
    assert any(f"no checkpoint with a trainer state in {tmp_path}: training from scratch" in m for m in logs)


def test_every_file_of_a_run_folder_has_the_umask_mode(run):
    from reconfusion.safe_io import FILE_MODE

    ck = os.path.join(run[1], "checkpoint")
    modes = {f: os.stat(os.path.join(ck, f)).st_mode & 0o777 for f in os.listdir(ck)}
    modes["history.json"] = os.stat(os.path.join(run[1], "history.json")).st_mode & 0o777
    assert set(modes.values()) == {FILE_MODE}, modes


def test_a_safetensors_header_of_640_bytes_is_not_taken_for_a_pickle(tmp_path):
    """The header length 0x280 starts with the bytes of a protocol-2 pickle (0x80 0x02)."""
    import json
    import struct

    header = json.dumps({"__metadata__": {"pad": ""}}).encode()
    header = json.dumps({"__metadata__": {"pad": "x" * (640 - len(header))}}).encode()
    assert len(header) == 640
    p = tmp_path / "t.safetensors"
    p.write_bytes(struct.pack("<Q", 640) + header)
    assert not is_pickle(str(p))


def _snapshot(folder):
    return {os.path.join(d, f): open(os.path.join(d, f), "rb").read() for d, _, fs in os.walk(folder) for f in fs}


@pytest.mark.parametrize("link", ["checkpoint", "checkpoint/model.safetensors", "checkpoint.partial"])
def test_a_link_leading_out_of_the_run_folder_is_refused_and_nothing_outside_changes(run, tmp_path, link):
    """``train(resume=True)`` (reconstruct --resume) and ``load_checkpoint`` (evaluate, render-video)
    refuse a run folder whose checkpoint names lead outside it; the target is left as it was."""
    import shutil

    out = copy_run(run, tmp_path)
    outside = str(tmp_path / "outside")
    shutil.copytree(os.path.join(out, "checkpoint"), outside)
    before = _snapshot(outside)
    target = outside if link != "checkpoint/model.safetensors" else os.path.join(outside, "model.safetensors")
    if os.path.isdir(os.path.join(out, link)):
        shutil.rmtree(os.path.join(out, link))
    elif os.path.lexists(os.path.join(out, link)):
        os.remove(os.path.join(out, link))
    os.symlink(target, os.path.join(out, link))
    with pytest.raises(CheckpointError, match="outside"):
        _resume(run, out)
    if link != "checkpoint.partial":  # a stale partial folder is never read, only refused by the writer
        with pytest.raises(CheckpointError, match="outside"):
            load_checkpoint(out)
    assert _snapshot(outside) == before and os.path.islink(os.path.join(out, link))
