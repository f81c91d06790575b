"""Run-folder checkpoints: safetensors + JSON only; pickles and truncated files refused clearly."""
import os
import pickle

import pytest

from reconfusion.checkpoint import CheckpointError, is_pickle, load_checkpoint
from reconfusion.data.scene import select_views
from reconfusion.reconstruct import train
from tests.helpers.recon_scenes import boxes_scene
from tests.helpers.recon_scenes import small_config

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
