"""Streaming prior examples: lazy decoding, reproducible plans, disjoint rank shards, mixing, resume."""

import numpy as np
import pytest
import torch

from reconfusion.data.index import SceneIndex
from reconfusion.prior.dataset import PriorExamples, Source, loader
from tests.helpers.prior_scenes import synthetic_scene

pytestmark = pytest.mark.usefixtures("one_thread")

S = 16


def _indices(n_scenes=3, views=5, size=24):
    return [SceneIndex.from_scene(synthetic_scene(views, size, seed=i)) for i in range(n_scenes)]


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_batches_shapes_and_views():
    ds = PriorExamples(_indices(), S, batch_size=3, views=(1, 3), seed=0)
    it = iter(ds)
    for _ in range(5):
        b = next(it)
        V = b["inputs"].shape[1]
        assert 1 <= V <= 3 and b["target"].shape == (3, 3, S, S) and b["inputs"].shape == (3, V, 3, S, S)
        assert b["input_K"].shape == (3, V, 3, 3) and b["mid"].shape == (3,) and bool((b["mid"] > b["near"]).all())
    assert {ds.batch_views(0, j) for j in range(40)} == {1, 2, 3}


def test_target_is_never_an_input_and_the_plan_covers_every_view():
    ds = PriorExamples(_indices(), S, batch_size=1, views=(3, 3), seed=1)
    plan = ds.plan(0)
    assert sorted(map(tuple, plan.tolist())) == [(g, v) for g in range(3) for v in range(5)]  # each pair once
    for pos, (g, t) in enumerate(plan.tolist()):
        inp = ds.input_views(0, pos, g, t, 3)
        assert t not in inp and len(set(inp)) == 3


def test_images_are_decoded_lazily(monkeypatch):
    calls = []
    orig = SceneIndex.read_image
    monkeypatch.setattr(SceneIndex, "read_image", lambda self, i: calls.append(i) or orig(self, i))
    ds = PriorExamples(_indices(), S, batch_size=2, views=(2, 2))
    assert calls == []  # indexing decodes nothing
    ds.make_batch(0, 0)
    assert len(calls) == 2 * 3  # (1 target + 2 inputs) x 2 examples


def test_reproducible_and_independent_of_workers():
    a = PriorExamples(_indices(), S, batch_size=2, seed=7)
    b = PriorExamples(_indices(), S, batch_size=2, seed=7)
    got0 = [x for _, x in zip(range(6), loader(a, num_workers=0))]
    got2 = [x for _, x in zip(range(6), loader(b, num_workers=2))]
    assert all(_same(x, y) for x, y in zip(got0, got2))
    c = PriorExamples(_indices(), S, batch_size=2, seed=8)
    assert not _same(got0[0], c.make_batch(0, 0))


def test_ranks_see_disjoint_examples_each_epoch():
    ranks = [PriorExamples(_indices(4, 6), S, batch_size=2, seed=3, rank=r, world_size=3) for r in range(3)]
    nb = ranks[0].batches_per_epoch
    assert nb == (4 * 6) // (3 * 2)
    seen = [set() for _ in ranks]
    for r, ds in enumerate(ranks):
        it = iter(ds)
        for _ in range(nb):
            b = next(it)
            assert int(b["epoch"]) == 0
            seen[r] |= set(b["example"].tolist())
        assert int(next(it)["epoch"]) == 1  # then the next epoch starts
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert set().union(*seen) == set(range(nb * 3 * 2))
    plans = [ds.plan(0) for ds in ranks]
    assert all(np.array_equal(plans[0], p) for p in plans)  # one plan, sharded


def test_weighted_mixing():
    a, b = _indices(2, 5), _indices(1, 4)
    ds = PriorExamples([Source(a, 3.0, "a"), Source(b, 1.0, "b")], S, batch_size=4, epoch_size=400, seed=0)
    plan = ds.plan(0)
    from_a = int((plan[:, 0] < 2).sum())
    assert from_a == 300 and len(plan) == 400
    assert len({tuple(p) for p in plan[plan[:, 0] == 2].tolist()}) == 4  # b over-sampled: all its views, cycled
    assert not np.array_equal(ds.plan(1), plan)  # a new shuffle each epoch
    with pytest.raises(ValueError, match="weights"):
        PriorExamples([Source(a, 0.0)], S, batch_size=1)


def test_resume_position():
    ds = PriorExamples(_indices(), S, batch_size=2, seed=5)  # 15 pairs / 2 = 7 batches per epoch
    it = iter(ds)
    ref = [next(it) for _ in range(10)]
    ds2 = PriorExamples(_indices(), S, batch_size=2, seed=5)
    ds2.set_position(*ds2.position_after(8))
    assert ds2.start == (1, 1)
    it2 = iter(ds2)
    assert _same(next(it2), ref[8]) and _same(next(it2), ref[9])


def test_errors():
    with pytest.raises(ValueError, match="smaller than one global batch"):
        PriorExamples(_indices(1, 3), S, batch_size=4)
    one = SceneIndex.from_scene(synthetic_scene(1, 8))
    with pytest.raises(ValueError, match="need >= 2"):
        PriorExamples([one], S, batch_size=1)
    with pytest.raises(ValueError, match="rank"):
        PriorExamples(_indices(), S, batch_size=1, rank=2, world_size=2)
