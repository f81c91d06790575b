"""A reconstruction killed at any point of a checkpoint write resumes to the same weights.

The kill is simulated in-process at every file operation of the save (making a folder, writing a
file, fsync, rename, delete): operation k raises before it runs, or, for a file write, after
leaving a half-written file (a kill mid-write). The run is then resumed, and must end with the
weights of the same run never interrupted, having resumed from the new checkpoint or the previous one.
"""

import os
import shutil

import pytest
import torch

import reconfusion.checkpoint as ckpt_mod
from reconfusion.checkpoint import PARTIAL_DIR, load_checkpoint
from reconfusion.data.scene import select_views
from reconfusion.reconstruct import train
from tests.helpers.kills import Killed, OperationKiller
from tests.helpers.recon_scenes import boxes_scene, small_config

pytestmark = pytest.mark.usefixtures("one_thread")

ITERATIONS = 3  # checkpoints at steps 1 and 2 (every step) and the final one at 3


class Killer(OperationKiller):
    """Counts the checkpoint writer's file operations; raises :class:`Killed` at operation ``at``."""

    def __init__(self, monkeypatch, at: int | None):
        super().__init__(at)
        self.saves = []  # the count before each save's first operation
        for name in ("write_safetensors", "write_json"):
            monkeypatch.setattr(ckpt_mod, name, self.wrap(getattr(ckpt_mod, name), half_write=True))
        for name in ("fsync_path", "_remove"):
            monkeypatch.setattr(ckpt_mod, name, self.wrap(getattr(ckpt_mod, name)))
        monkeypatch.setattr(ckpt_mod.os, "rename", self.wrap(os.rename))
        monkeypatch.setattr(ckpt_mod.os, "makedirs", self.wrap(os.makedirs, before=self._note_save))

    def _note_save(self, path, *args):
        if str(path).endswith(PARTIAL_DIR):
            self.saves.append(self.count)


@pytest.fixture(scope="module")
def scene():
    return select_views(boxes_scene(n_views=6, size=16), train_ids=[0, 1, 2, 3, 5], test_ids=[4])


@pytest.fixture(scope="module")
def whole(scene, tmp_path_factory):
    """The uninterrupted run's final weights, the operations before the second save and in it."""
    out = str(tmp_path_factory.mktemp("whole"))
    mp = pytest.MonkeyPatch()
    killer = Killer(mp, at=None)
    try:
        res = train(scene, small_config(iterations=ITERATIONS, checkpoint_every=1), out, progress_bar=False)
    finally:
        mp.undo()
    saves = [n for n in killer.saves]
    assert len(saves) == ITERATIONS
    return res.model.state_dict(), saves[1], saves[2] - saves[1]


def test_every_save_operation_is_counted(whole):
    # makedirs, model + optimizer + config writes, fsync of the folder, 2 renames, fsync of OUT and
    # the removal of the previous set
    assert whole[2] == 9


@pytest.mark.parametrize("k", range(1, 10))
def test_kill_at_any_point_of_a_save_resumes_to_the_same_weights(scene, whole, tmp_path, monkeypatch, k):
    final, before, per_save = whole
    out = str(tmp_path)
    cfg = small_config(iterations=ITERATIONS, checkpoint_every=1)
    killer = Killer(monkeypatch, at=before + k)  # operation k of the second save (step 2)
    with pytest.raises(Killed):
        train(scene, cfg, out, progress_bar=False)
    monkeypatch.undo()
    step = load_checkpoint(out)[2]["step"]
    assert step in (1, 2), f"killed at operation {k}: resumable checkpoint at step {step}"
    logs = []
    res = train(scene, cfg, out, resume=True, progress_bar=False, log=logs.append)
    assert f"at step {step}" in logs[-1]
    assert all(torch.equal(res.model.state_dict()[n], t) for n, t in final.items())
    assert sorted(n for n in os.listdir(out) if n.startswith("checkpoint")) == ["checkpoint"]
    assert killer.count == before + k


def test_a_partial_folder_left_by_a_kill_is_never_read(scene, tmp_path):
    """A stale ``checkpoint.partial`` (here a copy of the set with a cut model file) is ignored by
    the loader and replaced by the next save."""
    out = str(tmp_path)
    cfg = small_config(iterations=2, checkpoint_every=1)
    train(scene, cfg, out, progress_bar=False)
    partial = os.path.join(out, "checkpoint.partial")
    shutil.copytree(os.path.join(out, "checkpoint"), partial)
    os.truncate(os.path.join(partial, "model.safetensors"), 10)
    assert load_checkpoint(out)[2]["step"] == 2
    train(scene, cfg, out, resume=True, progress_bar=False)  # no step left: saves the final checkpoint again
    assert not os.path.exists(partial) and load_checkpoint(out)[2]["step"] == 2
