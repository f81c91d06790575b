"""Streaming training batches for the prior: indexed scenes, lazy decoding, rank sharding, mixing.

Scenes are indexed up front (:class:`~reconfusion.data.index.SceneIndex`: cameras + image paths);
images are decoded only when a batch is built, inside ``DataLoader`` workers.

An **epoch** is a plan, the same on every rank, fixed by ``(seed, epoch)``: each source (a list of
scenes with a weight) contributes ``round(epoch_size * weight / sum(weights))`` examples, drawn
from a shuffled list of all its ``(scene, target view)`` pairs (cycled when a source is
over-sampled); the sources are then interleaved by one more shuffle. Global batch ``j`` of the
epoch is plan positions ``[j W B, (j + 1) W B)`` (``W`` ranks, ``B`` examples per rank); rank ``r``
takes the ``r``-th slice of ``B``, so no two ranks see the same example in an epoch. Each batch has
one number of input views ``V`` in ``views`` (drawn from ``(seed, epoch, j)``), and each example
``V`` random distinct views of its scene other than the target (repeated when the scene has fewer),
from ``(seed, epoch, position)``: the same example on any machine, any number of workers.
``DataLoader`` workers take batches round-robin, which is the order the loader returns them in;
:meth:`PriorExamples.set_position` restarts the stream at any ``(epoch, batch)`` (resume).

An example whose files cannot be read (:class:`~reconfusion.data.scene.DataError`: an image
missing, corrupt or of another size than its camera) is left out of its batch in the stream, which
reports it in the batch's ``bad`` list (absent when none was) (``"<file>: <reason>"``) instead of
raising inside a worker;
the training loop decides what that means (:mod:`.batches`). :meth:`PriorExamples.make_batch`
called directly raises it.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

import numpy as np
import torch

from reconfusion.data.index import SceneIndex
from reconfusion.data.scene import DataError

from .depths import depth_bounds
from .examples import square_resize

KEYS = ("target", "inputs", "input_c2w", "input_K", "target_c2w", "target_K", "near", "far", "mid")


@dataclass
class Source:
    """One dataset of the mixture: its scenes and its sampling weight."""

    scenes: list[SceneIndex]
    weight: float = 1.0
    name: str = ""


def _pairs(lengths: list[int], offset: int) -> np.ndarray:
    """``[sum(lengths), 2]`` rows ``(offset + scene, view)`` for every view of every scene."""
    lengths = np.asarray(lengths, dtype=np.int64)
    scene = np.repeat(np.arange(len(lengths)) + offset, lengths)
    view = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.stack([scene, view], -1)


def _worker_init(_: int) -> None:
    """Workers ignore SIGTERM: a job's SIGTERM reaches the whole process group, and the main process
    needs its workers until it has saved its state (it shuts them down itself)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def crop_view(index: SceneIndex, i: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode view ``i`` and centre-crop/resize it -> (``[3, size, size]``, K ``[3, 3]``)."""
    img, K = square_resize(index.read_image(i)[None], index.intrinsics[i][None], size)
    return img[0], K[0]


class PriorExamples(torch.utils.data.IterableDataset):
    """An endless stream of batches (dicts of ``KEYS`` + ``example`` ``[B]``: plan positions, +
    ``epoch``); use with ``DataLoader(ds, batch_size=None, num_workers=...)``.

    Args:
        sources: :class:`Source` list (or one list of scenes = one source of weight 1).
        image_size: square side of the prior's images.
        batch_size: examples per rank per batch.
        views: ``(min, max)`` input views per example.
        rank, world_size: default from ``torch.distributed`` when initialized, else 0 and 1.
        epoch_size: examples per epoch over all ranks (default: every ``(scene, view)`` pair once).
    """

    def __init__(
        self,
        sources,
        image_size: int,
        batch_size: int,
        views: tuple[int, int] = (1, 3),
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        epoch_size: int | None = None,
    ):
        super().__init__()
        if sources and isinstance(sources[0], SceneIndex):
            sources = [Source(list(sources))]
        if not sources or not all(s.scenes for s in sources):
            raise ValueError("`sources` must be non-empty lists of scenes")
        if any(not s.weight > 0 for s in sources):
            raise ValueError(f"source weights must be > 0, got {[s.weight for s in sources]}")
        if not 1 <= views[0] <= views[1]:
            raise ValueError(f"`views` must be (min, max) with 1 <= min <= max, got {views}")
        dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.rank = rank if rank is not None else (torch.distributed.get_rank() if dist else 0)
        self.world_size = world_size if world_size is not None else (torch.distributed.get_world_size() if dist else 1)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"`rank` must be in [0, {self.world_size}), got {self.rank}")
        self.sources, self.image_size, self.batch_size = sources, image_size, batch_size
        self.views, self.seed = (int(views[0]), int(views[1])), seed
        self.scenes = [sc for s in sources for sc in s.scenes]
        for sc in self.scenes:
            if len(sc) < 2:
                raise ValueError(f"scene {sc.name!r} has {len(sc)} view(s); need >= 2 for (inputs, target)")
        self.bounds = [depth_bounds(sc.c2w, sc.near, sc.far, sc.space, sc.focus_depth) for sc in self.scenes]
        first = np.cumsum([0] + [len(s.scenes) for s in sources])
        self.items = [
            _pairs([len(sc) for sc in self.scenes[first[k] : first[k + 1]]], first[k]) for k in range(len(sources))
        ]  # all (global scene id, view) pairs of each source
        self.epoch_size = epoch_size or sum(len(it) for it in self.items)
        self.batches_per_epoch = self.epoch_size // (self.world_size * batch_size)
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"an epoch of {self.epoch_size} examples is smaller than one global batch "
                f"({self.world_size} ranks x {batch_size}); raise epoch_size"
            )
        self.start = (0, 0)
        self._plans: dict[int, np.ndarray] = {}

    # --------------------------------------------------------------------------- the plan
    def plan(self, epoch: int) -> np.ndarray:
        """``[epoch_size, 2]`` (global scene id, target view) of every example of ``epoch``."""
        if epoch not in self._plans:
            rng = np.random.default_rng([self.seed, epoch])
            w = np.array([s.weight for s in self.sources], dtype=np.float64)
            counts = np.floor(self.epoch_size * w / w.sum()).astype(int)
            counts[np.argsort(-(self.epoch_size * w / w.sum() - counts))[: self.epoch_size - counts.sum()]] += 1
            parts = []
            for items, n in zip(self.items, counts):
                reps = -(-n // len(items))
                order = np.concatenate([rng.permutation(len(items)) for _ in range(reps)])[:n]
                parts.append(items[order])
            plan = np.concatenate(parts)
            self._plans = {epoch: plan[rng.permutation(len(plan))]}  # keep one epoch cached
        return self._plans[epoch]

    def batch_positions(self, batch: int) -> range:
        """Plan positions of this rank's part of global batch ``batch``."""
        start = (batch * self.world_size + self.rank) * self.batch_size
        return range(start, start + self.batch_size)

    def batch_views(self, epoch: int, batch: int) -> int:
        return int(np.random.default_rng([self.seed, epoch, batch, 1]).integers(self.views[0], self.views[1] + 1))

    def input_views(self, epoch: int, pos: int, scene: int, target: int, n: int) -> list[int]:
        others = [v for v in range(len(self.scenes[scene])) if v != target]
        rng = np.random.default_rng([self.seed, epoch, pos, 2])
        ids = [others[i] for i in rng.permutation(len(others))[:n]]
        while len(ids) < n:  # small scenes: repeat input views
            ids.append(ids[len(ids) % len(others)])
        return ids

    # --------------------------------------------------------------------------- batches
    def make_batch(self, epoch: int, batch: int, leave_out_bad: bool = False) -> dict:
        """This rank's batch ``batch`` of ``epoch`` (decodes its images). An unreadable example raises
        :class:`DataError`, or with ``leave_out_bad`` is left out and listed in ``bad`` (then the batch
        may have fewer than ``batch_size`` examples, or none: only ``example``, ``epoch``, ``bad``);
        a batch with no bad example has no ``bad`` key."""
        V = self.batch_views(epoch, batch)
        examples, kept, bad = [], [], []
        for pos in self.batch_positions(batch):
            try:
                examples.append(self._example(epoch, pos, V))
                kept.append(pos)
            except DataError as exc:
                if not leave_out_bad:
                    raise
                bad.append(str(exc))
        res = {k: torch.stack([e[k] for e in examples]) for k in KEYS} if examples else {}
        res["example"] = torch.tensor(kept, dtype=torch.int64)
        res["epoch"] = torch.tensor(epoch)
        if bad:
            res["bad"] = bad
        return res

    def _example(self, epoch: int, pos: int, n_views: int) -> dict[str, torch.Tensor]:
        """Plan position ``pos``: its target and ``n_views`` input views, cropped, with cameras and bounds."""
        g, tgt = (int(v) for v in self.plan(epoch)[pos])
        sc, inp = self.scenes[g], self.input_views(epoch, pos, g, tgt, n_views)
        t_img, t_K = crop_view(sc, tgt, self.image_size)
        crops = [crop_view(sc, i, self.image_size) for i in inp]
        near, mid, far = self.bounds[g]
        ex = {
            "target": t_img,
            "inputs": torch.stack([c[0] for c in crops]),
            "input_c2w": sc.c2w[inp],
            "input_K": torch.stack([c[1] for c in crops]),
            "target_c2w": sc.c2w[tgt],
            "target_K": t_K,
            "near": torch.tensor(near),
            "far": torch.tensor(far),
            "mid": torch.tensor(mid),
        }
        return {k: v.float() for k, v in ex.items()}

    def set_position(self, epoch: int, batch: int) -> None:
        """Start the next iteration at ``batch`` of ``epoch``."""
        if not 0 <= batch < self.batches_per_epoch or epoch < 0:
            raise ValueError(f"position ({epoch}, {batch}) out of range ({self.batches_per_epoch} batches/epoch)")
        self.start = (int(epoch), int(batch))

    def position_after(self, n_batches: int) -> tuple[int, int]:
        """The ``(epoch, batch)`` reached after ``n_batches`` batches from the start position."""
        e, b = self.start
        e, b = e + (b + n_batches) // self.batches_per_epoch, (b + n_batches) % self.batches_per_epoch
        return e, b

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch, batch = self.start
        count = 0
        while True:  # endless: the training loop decides when to stop
            if count % nw == wid:
                yield self.make_batch(epoch, batch, leave_out_bad=True)
            count += 1
            batch += 1
            if batch == self.batches_per_epoch:
                epoch, batch = epoch + 1, 0


def loader(dataset: PriorExamples, num_workers: int = 0, pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """The ``DataLoader`` for :class:`PriorExamples` (batches already built; workers decode). It has
    its own generator, so creating an iterator leaves the global RNG (training noise) untouched."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=2 if num_workers else None,
        generator=torch.Generator().manual_seed(dataset.seed),
        worker_init_fn=_worker_init if num_workers else None,
    )


__all__ = ["KEYS", "PriorExamples", "Source", "crop_view", "loader"]
