"""train-prior killed at any point of a state write resumes to the same weights.

The kill is simulated in-process at every file operation of the second save (making the state
folder, each tensor / JSON write, the prior's own save, fsync, ``latest.json``, removing the old
state): operation k raises before it runs, or for a safetensors write after leaving it half written
(JSON files are written atomically, temp file + rename). The
run is then started again with the same command; it must resume (from the new state or the previous
one) and end with the uninterrupted run's weights, bit for bit.
"""

import os

import pytest
import torch

import reconfusion.prior.checkpoint as ckpt_mod
from reconfusion.data.index import SceneIndex
from reconfusion.prior import ReconFusionPrior
from reconfusion.prior.dataset import PriorExamples
from reconfusion.prior.run_config import TrainConfig
from reconfusion.prior.train import train_prior
from tests.helpers.kills import Killed, OperationKiller
from tests.helpers.prior_scenes import synthetic_scene

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 4  # states at steps 2 and 4


class Killer(OperationKiller):
    """Counts the state writer's file operations; raises :class:`Killed` at operation ``at``."""

    def __init__(self, monkeypatch, at: int | None):
        super().__init__(at)
        # safetensors files are written in place (a kill can leave half of one); write_json is atomic
        # (temp file + rename), so a kill there leaves the old file: it raises before the write
        monkeypatch.setattr(ckpt_mod, "write_safetensors", self.wrap(ckpt_mod.write_safetensors, half_write=True))
        monkeypatch.setattr(ckpt_mod, "write_json", self.wrap(ckpt_mod.write_json))
        monkeypatch.setattr(ckpt_mod, "fsync_path", self.wrap(ckpt_mod.fsync_path))
        monkeypatch.setattr(ckpt_mod.shutil, "rmtree", self.wrap(ckpt_mod.shutil.rmtree))
        monkeypatch.setattr(ckpt_mod.os, "makedirs", self.wrap(os.makedirs))
        monkeypatch.setattr(ReconFusionPrior, "save", self.wrap(ReconFusionPrior.save))


def _run(out: str):
    torch.manual_seed(0)
    prior = ReconFusionPrior.tiny(latent_size=8)
    idx = [SceneIndex.from_scene(synthetic_scene(6, 32, seed=i)) for i in range(2)]
    data = PriorExamples(idx, 32, 2, (1, 2), seed=0, epoch_size=64)
    cfg = TrainConfig(steps=STEPS, batch_size=2, lr=2e-3, ema=0.9, checkpoint_every=2, log_every=1000, num_workers=0)
    torch.manual_seed(123)
    return train_prior(prior, data, cfg, out)


def _weights(out: str) -> dict:
    return {k: v.clone() for k, v in ReconFusionPrior.load(os.path.join(out, "last")).state_dict().items()}


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The uninterrupted run's final weights, and how many file operations its first save takes."""
    out = str(tmp_path_factory.mktemp("whole"))
    mp = pytest.MonkeyPatch()
    killer = Killer(mp, at=None)
    try:
        _run(out)
    finally:
        mp.undo()
    assert killer.count > 0
    return _weights(out), killer.count // 2  # two saves of the same shape (a final export aside)


def test_kill_at_every_operation_of_a_save_resumes_to_the_same_weights(whole, tmp_path):
    weights, per_save = whole
    for k in range(per_save + 1, 2 * per_save + 1):  # every operation of the second save
        out = str(tmp_path / f"k{k}")
        mp = pytest.MonkeyPatch()
        Killer(mp, at=k)
        try:
            with pytest.raises(Killed):
                _run(out)
        finally:
            mp.undo()
        assert ckpt_mod.latest(out) is not None, f"kill at operation {k}: no complete state left"
        res = _run(out)  # the same command again
        assert res.resumed_from in (2, 4), k
        got = _weights(out)
        assert all(torch.equal(got[n], weights[n]) for n in weights), f"kill at operation {k}: other weights"
