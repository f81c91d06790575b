"""Host syncs in reconfusion's training loop, counted on the CPU.

On a GPU, reading a device tensor on the host (``.item()``, ``bool()``, ``.tolist()``, ``nonzero``, a
boolean-mask index, ...) waits for every queued kernel, and so does a constant made from Python data
on the device (``torch.tensor(..., device=)``, a pageable host-to-device copy). :class:`HostSyncCounter`
finds both in a CPU run: it follows which tensors would live on the device (the model's parameters
and the ray batches, then everything computed from them) with a ``TorchDispatchMode`` and counts

- host reads of those tensors: ``aten._local_scalar_dense`` (every ``.item()``/``bool()``/``float()``
  ends there), ops whose output size depends on the data (``nonzero``, ``masked_select``, ``unique``,
  boolean-mask indexing, ``repeat_interleave`` without ``output_size``, ``bincount``), ``equal``, and
  ``.tolist()``/``.numpy()``/``.cpu()`` (which do not dispatch: patched);
- host constants (``aten.lift_fresh``: tensors from Python data, not 0-dim) used with them.

Host-side work (the ray pool's sampling, Adam's step counters on the CPU) touches no device tensor
and is not counted.
"""

from __future__ import annotations

import warnings
import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import reconfusion.reconstruct as reconstruct
import rfkernels
from reconfusion.losses import LossTerm
from tests.helpers.recon_scenes import boxes_scene, small_config

aten = torch.ops.aten
READS = {
    aten._local_scalar_dense.default,
    aten.nonzero.default,
    aten.masked_select.default,
    aten.equal.default,
    aten.bincount.default,
    aten._unique.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
}
INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default}
HOST_METHODS = ("tolist", "numpy", "cpu")


class TensorMap:
    """Tensors by identity, held weakly (a ``WeakSet`` would compare tensors with ``==``), each with a
    value."""

    def __init__(self):
        self.refs: dict[int, tuple[weakref.ref, object]] = {}

    def add(self, t: torch.Tensor, value=None) -> None:
        self.refs[id(t)] = (weakref.ref(t), value)

    def get(self, t: torch.Tensor, default=None):
        ref, value = self.refs.get(id(t), (None, default))
        return value if ref is not None and ref() is t else default

    def __contains__(self, t: torch.Tensor) -> bool:
        ref, _ = self.refs.get(id(t), (None, None))
        return ref is not None and ref() is t


class HostSyncCounter(TorchDispatchMode):
    """Counts host reads of device tensors and host constants meeting them (see the module docstring).
    ``mark(t)`` declares device tensors; ``events`` lists ``(kind, op)`` in order."""

    def __init__(self):
        super().__init__()
        self.device = TensorMap()
        self.constants = TensorMap()  # host constants and what is computed from them alone -> their origin
        self.copied: set[int] = set()  # origins already counted
        self.events: list[tuple[str, str]] = []

    def mark(self, *tensors) -> None:
        for t in tree_flatten(tensors)[0]:
            if isinstance(t, torch.Tensor):
                self.device.add(t)

    def on_device(self, t) -> bool:
        return isinstance(t, torch.Tensor) and t in self.device

    def count(self, kind: str, op: str) -> None:
        self.events.append((kind, op))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        device_inputs = any(self.on_device(t) for t in inputs)
        if device_inputs:
            if func in READS or (func is aten.repeat_interleave.Tensor and kwargs.get("output_size") is None):
                self.count("read", str(func))
            if func in INDEXING and any(i is not None and i.dtype == torch.bool for i in args[1]):
                self.count("read", f"{func} (boolean mask)")
            for t in inputs:
                origin = self.constants.get(t)
                if origin is not None and origin[0] not in self.copied:
                    self.copied.add(origin[0])
                    self.count("constant", f"torch.tensor of shape {origin[1]} used by {func}")
        out = func(*args, **kwargs)
        if device_inputs:
            self.mark(out)
        elif func is aten.lift_fresh.default and out.dim() > 0:
            self.constants.add(out, (id(out), list(out.shape)))
        else:  # computed from host constants only: still the constant that will be copied
            origin = next((self.constants.get(t) for t in inputs if t in self.constants), None)
            for t in tree_flatten(out)[0] if origin is not None else ():
                if isinstance(t, torch.Tensor):
                    self.constants.add(t, origin)
        return out

    def patch_host_methods(self, monkeypatch) -> None:
        """Count ``.tolist()``, ``.numpy()`` and ``.cpu()`` of device tensors (``.to(device)`` is not
        counted: on the CPU the loop's device and the host are one, so it cannot tell them apart)."""
        for name in HOST_METHODS:
            original = getattr(torch.Tensor, name)

            def method(t, *a, _original=original, _name=name, **k):
                if self.on_device(t):
                    self.count("read", f"Tensor.{_name}")
                return _original(t, *a, **k)

            monkeypatch.setattr(torch.Tensor, name, method)


def per_iteration_syncs(monkeypatch, iterations: int = 3, extra_terms=(), **train_kw) -> list[list]:
    """Train the small boxes scene for ``iterations`` steps under a :class:`HostSyncCounter`; -> the
    counted events of each iteration."""
    counter = HostSyncCounter()
    counter.patch_host_methods(monkeypatch)
    build, sample, unseen = reconstruct.build_model, reconstruct._RayPool.sample, reconstruct._RayPool.unseen

    def build_on_device(cfg, scene):
        model = build(cfg, scene)
        counter.mark(list(model.parameters()), list(model.buffers()))
        return model

    def sample_on_device(pool, *a, **k):
        out = sample(pool, *a, **k)
        counter.mark(list(vars(out[0]).values()), out[1])
        return out

    def unseen_on_device(pool, *a, **k):
        out = unseen(pool, *a, **k)
        counter.mark(list(vars(out).values()))
        return out

    monkeypatch.setattr(reconstruct, "build_model", build_on_device)
    monkeypatch.setattr(reconstruct._RayPool, "sample", sample_on_device)
    monkeypatch.setattr(reconstruct._RayPool, "unseen", unseen_on_device)
    ends = []
    scene = boxes_scene(n_views=4, size=16, n_samples=32).replace(train_ids=[0, 1, 2], test_ids=[3])
    cfg = small_config(iterations=iterations, eval_every=0)
    with counter:
        reconstruct.train(
            scene,
            cfg,
            progress_bar=False,
            log=lambda _: None,
            extra_terms=extra_terms,
            callbacks=[lambda info: ends.append(len(counter.events))],
            **train_kw,
        )
    starts = [0, *ends[:-1]]
    return [counter.events[a:b] for a, b in zip(starts, ends)]


def test_counter_counts_host_reads_and_constants():
    counter = HostSyncCounter()
    dev, host = torch.rand(4), torch.rand(4)
    counter.mark(dev)
    with counter:
        y = dev * 2  # derived from a device tensor: on the device too
        float(host.sum()), bool(host[0] > 0)  # host tensors: nothing to wait for
        float(y.sum()), bool(y[0] > 0)  # 2 reads
        y.nonzero(), y[y > 1]  # 2 reads (data-dependent output sizes)
        y + torch.tensor([1.0, 2.0, 3.0, 4.0])  # a host constant copied to the device
        y + torch.tensor(1.0)  # a 0-dim constant: a scalar argument, no copy
    assert [k for k, _ in counter.events] == ["read"] * 4 + ["constant"]


def test_one_training_iteration_syncs_at_most_once(monkeypatch):
    """Validation on for the first iteration only (the default): a later iteration that is not a
    logging step reads nothing back; a logging step (here the last) reads its whole record at once."""
    events = per_iteration_syncs(monkeypatch, iterations=3)
    assert len(events[1]) <= 1, events[1]
    assert len(events[2]) <= 1, events[2]  # the last step logs: its record in one read


def test_counter_catches_a_sync_in_the_loop(monkeypatch):
    """The loop test would see a sync that a loss term adds (the counter counts in the loop)."""

    def syncing(ctx):
        if bool(ctx.out.opacity.mean() > 2.0):  # one host read per step
            raise AssertionError
        return None

    events = per_iteration_syncs(monkeypatch, iterations=2, extra_terms=[LossTerm("syncing", syncing)])
    assert ("read", str(aten._local_scalar_dense.default)) in events[1]


def test_value_checks_in_every_iteration_sync(monkeypatch):
    """With value checks kept on, every iteration syncs many times (what ``validate="first"`` avoids)."""
    events = per_iteration_syncs(monkeypatch, iterations=2, validate="always")
    assert len(events[1]) > 5


def test_packed_histograms_with_a_given_max_count_read_nothing(monkeypatch):
    """Packed ``sample_pdf``/``interlevel_loss`` read the largest count from ``offsets`` unless the
    caller gives it; the results are the same, and a bound below a ray's count is refused."""
    monkeypatch.setattr(rfkernels._checks, "_validate_values", False)
    g = torch.Generator().manual_seed(0)
    offsets = torch.tensor([0, 3, 3, 7])
    weights = torch.rand(7, generator=g)
    bins = torch.cat(
        [torch.rand(4, generator=g).sort().values, torch.zeros(1), torch.rand(5, generator=g).sort().values]
    )
    runs = {}
    for given in (None, 4):
        counter = HostSyncCounter()
        counter.mark(offsets, weights, bins)
        with counter:
            s = rfkernels.sample_pdf(bins, weights, 5, mode="midpoint", offsets=offsets, max_count=given)
            loss = rfkernels.interlevel_loss(
                bins,
                weights,
                bins,
                weights,
                fine_offsets=offsets,
                prop_offsets=offsets,
                fine_max_count=given,
                prop_max_count=given,
            )
        runs[given] = (s, loss, len(counter.events))
    assert runs[None][2] >= 3 and runs[4][2] == 0
    assert torch.equal(runs[None][0], runs[4][0]) and torch.equal(runs[None][1], runs[4][1])
    monkeypatch.setattr(rfkernels._checks, "_validate_values", True)
    with pytest.raises(ValueError, match="`max_count` is 3 but a ray has 4"):
        rfkernels.sample_pdf(bins, weights, 5, offsets=offsets, max_count=3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_iterations_after_the_first_do_not_synchronize():
    """On a GPU, torch's own sync detector: no synchronizing CUDA call in a non-logging iteration."""
    scene = boxes_scene(n_views=4, size=16, n_samples=32).replace(train_ids=[0, 1, 2], test_ids=[3])
    ends = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        def watch(info):
            ends.append(len(caught))
            torch.cuda.set_sync_debug_mode("warn")  # from the end of the first iteration on

        try:
            reconstruct.train(
                scene,
                small_config(iterations=3, eval_every=0),
                device="cuda",
                progress_bar=False,
                log=lambda _: None,
                callbacks=[watch],
            )
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert ends[1] - ends[0] == 0, [str(w.message) for w in caught[ends[0] : ends[1]]]  # iteration 1
