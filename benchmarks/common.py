"""Benchmark cases and timing shared by every ``bench_<family>.py``.

A family module exposes ``cases(device: torch.device, scale: str) -> list[Case]`` with ``scale`` one of
:data:`SCALES`. The same case lists feed both front ends: ``python -m benchmarks`` (table + JSON) and
``pytest benchmarks/ --benchmark-only`` (pytest-benchmark, ``benchmarks/test_cases.py``). The runner
times every case, computes the speedup of each backend against the ``torch`` reference of the same
(op, size, mode), the ratio ours / peer against each peer (nerfacc, torch.compile) of the same
(op, size, mode), and the achieved bandwidth as a fraction of a device-to-device copy measured in the
same run. Every case carries its minimum traffic and the H200 time it bounds (``benchmarks/roofline.py``).
Before a case is timed, ours is checked equal to the torch reference on the same inputs (values and
gradients, :func:`reference_gate`) and peers equal to ours (:func:`check_peer`); a mismatch is an error.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

import rfkernels  # noqa: F401 - registers every op family
from rfkernels import _dispatch

from .roofline import Traffic

SCALES = ("tiny", "one", "all")  # CPU/dry-run sizes | one headline size per op | every size
PEERS = ("nerfacc", "tcnn", "torch.compile")  # backends that are not ours: rows get an ours / peer ratio
# the op families of the registry (each has benchmarks/bench_<family>.py), in registration order
OP_FAMILIES = tuple(_dispatch.families())
# every benchmark: the op families, then each other benchmarks/bench_<name>.py found on disk (the prior)
FAMILIES = OP_FAMILIES + tuple(
    sorted(
        name
        for name in (p.stem[len("bench_") :] for p in Path(__file__).resolve().parent.glob("bench_*.py"))
        if name not in OP_FAMILIES
    )
)
ALL_OPS = "ops"  # in a list of families: every op family


def select_families(only: str | None) -> list[str]:
    """``only`` (comma-separated names, ``ops`` = every op family; None or empty = all) as a list of
    benchmark families; raises ValueError naming an unknown one."""
    names = [n for n in (only or "").split(",") if n] or list(FAMILIES)
    out = []
    for name in names:
        for fam in OP_FAMILIES if name == ALL_OPS else (name,):
            if fam not in FAMILIES:
                raise ValueError(f"unknown benchmark family {fam!r}; known: {', '.join(FAMILIES)} (or {ALL_OPS!r})")
            if fam not in out:
                out.append(fam)
    return out


class PeerMismatch(AssertionError):
    """A peer's output differs from ours on the same inputs: it is not timed (it computes another function)."""


class OursMismatch(AssertionError):
    """One of our backends differs from the torch reference on the same inputs: the case is not timed."""


def _compare(name, expected, got, atol: float, rtol: float, error: type[AssertionError], what: str) -> float:
    """Max abs error of ``got`` vs ``expected`` (tensors or tuples); raises ``error`` beyond tolerance."""
    expected = expected if isinstance(expected, (tuple, list)) else (expected,)
    got = got if isinstance(got, (tuple, list)) else (got,)
    if len(expected) != len(got):
        raise error(f"{name}: {len(got)} outputs, {what} has {len(expected)}")
    worst = 0.0
    for i, (a, b) in enumerate(zip(expected, got)):
        if a is None or b is None:
            if (a is None) != (b is None):
                raise error(f"{name}: output {i} is None on one side only")
            continue
        a, b = a.detach().double(), b.detach().double().reshape(a.shape)
        err = (a - b).abs()
        worst = max(worst, float(err.max()) if err.numel() else 0.0)
        if not bool((err <= atol + rtol * a.abs()).all()):
            raise error(f"{name}: output {i} differs from {what} by up to {float(err.max()):.3g}")
    return worst


def check_peer(name: str, ours, peer, atol: float = 1e-4, rtol: float = 1e-3) -> float:
    """Max abs error of ``peer`` vs ``ours`` (tensors or tuples); raises :class:`PeerMismatch` beyond tolerance."""
    return _compare(name, ours, peer, atol, rtol, PeerMismatch, "ours")


def outputs_and_grads(call: Callable[[], object], wrt: tuple = ()) -> tuple:
    """``call()``'s tensor outputs, then the gradients w.r.t. ``wrt`` of their sum weighted by a fixed
    non-uniform cotangent (a plain sum would not see errors that cancel along a row)."""
    with torch.enable_grad():
        outs = call()
        outs = tuple(outs) if isinstance(outs, (tuple, list)) else (outs,)
        if not wrt:
            return outs
        terms = [
            (o.float() * torch.cos(torch.arange(o.numel(), device=o.device, dtype=torch.float32)).view(o.shape)).sum()
            for o in outs
            if isinstance(o, torch.Tensor) and o.requires_grad
        ]
        grads = torch.autograd.grad(sum(terms), wrt, allow_unused=True)
    return outs + tuple(grads)


def reference_gate(
    name: str,
    call: Callable[..., object],
    backend: str,
    wrt: tuple = (),
    atol: float = 1e-4,
    rtol: float = 1e-3,
    inputs: tuple = (),
    reference_dtype: torch.dtype | None = None,
) -> Callable[[], float] | None:
    """The correctness gate of one case (``Case.check``): ``call(backend, *inputs)``'s outputs (and
    their gradients w.r.t. ``wrt``) equal ``call("torch", *inputs)``'s, the reference, on the same
    inputs; the check returns the max abs error and raises :class:`OursMismatch` otherwise. With
    ``reference_dtype`` (float64) the reference runs on copies of the floating ``inputs`` in that dtype
    (``wrt`` must then be among ``inputs``), for ops whose float32 reference is less accurate than a
    kernel that accumulates in float64. None for the reference itself."""
    if backend == "torch":
        return None

    def check() -> float:
        ref_inputs, ref_wrt = inputs, wrt
        if reference_dtype is not None:
            ref_inputs = tuple(_as_dtype(x, reference_dtype) for x in inputs)
            ref_wrt = tuple(ref_inputs[_position(inputs, w)] for w in wrt)
        expected = outputs_and_grads(lambda: call("torch", *ref_inputs), ref_wrt)
        got = outputs_and_grads(lambda: call(backend, *inputs), wrt)
        return _compare(f"{name} [{backend}]", expected, got, atol, rtol, OursMismatch, "the torch reference")

    return check


def _as_dtype(x, dtype: torch.dtype):
    """A floating tensor as a ``dtype`` leaf with the same ``requires_grad``; anything else as is."""
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        return x.detach().to(dtype).requires_grad_(x.requires_grad)
    return x


def _position(inputs: tuple, tensor) -> int:
    for i, x in enumerate(inputs):
        if x is tensor:
            return i
    raise ValueError("with reference_dtype, every tensor of `wrt` must be one of `inputs`")


def family_cases(family: str, device: torch.device, scale: str) -> list[Case]:
    """The cases of ``benchmarks/bench_<family>.py`` (no second copy anywhere)."""
    import importlib

    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    return importlib.import_module(f"benchmarks.bench_{family}").cases(device, scale)


def backends_for(device: torch.device) -> list[str]:
    """Our backends worth timing here: every available one on CUDA; on CPU only torch (the Triton
    interpreter is a correctness tool, not a benchmark)."""
    from rfkernels import _dispatch

    if device.type == "cpu":
        return ["torch"]
    return [b for b in ("torch", "triton", "cuda") if b in _dispatch.available_backends(device)]


def nerfacc_or_none():
    """The nerfacc module when installed and its CUDA extension builds/loads on this machine, else None."""
    import importlib.util

    if os.environ.get("RFK_BENCH_NO_NERFACC") == "1":  # gpu_check.sh --quick: no nerfacc JIT build
        return None
    if importlib.util.find_spec("nerfacc") is None or not torch.cuda.is_available():
        return None
    try:
        import nerfacc
        from nerfacc.cuda import _backend

        return nerfacc if _backend._C is not None else None
    except Exception as exc:  # build failure: report, time the rest
        print(f"[benchmarks] nerfacc unavailable: {exc}")
        return None


@dataclass
class Case:
    op: str  # e.g. "volume_render"
    size: str  # human-readable shape, e.g. "R=65536 S=48 C=3"
    backend: str  # "torch" | "triton" | "cuda" | a peer's name (e.g. "nerfacc")
    mode: str  # "fwd" | "fwd+bwd" | other phase names
    fn: Callable[[], object]  # runs the op once (inputs prepared outside)
    traffic: Traffic | None = None  # the op's minimum traffic (benchmarks/roofline.py)
    items: int = 0  # work items per call (rays, points, ...) for a throughput column
    item_name: str = "items"
    extra: dict = field(default_factory=dict)
    check: Callable[[], float] | None = None  # correctness gate run before timing (reference_gate)

    def __post_init__(self):
        # a plain byte count (a case written before the roofline model): HBM traffic, no gathers/atomics
        if isinstance(self.traffic, int):
            self.traffic = Traffic(self.traffic, self.items) if self.traffic else None

    @property
    def bytes_moved(self) -> int:
        """Minimal HBM bytes the op must read + write (0 when no traffic model applies)."""
        return self.traffic.hbm_bytes if self.traffic else 0

    @property
    def group(self) -> str:
        return f"{self.op} {self.size} {self.mode}"

    @property
    def id(self) -> str:
        return f"{self.op}[{self.size}]-{self.mode}-{self.backend}".replace(" ", "_")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], object], device: torch.device, min_time: float = 0.2, max_reps: int = 200) -> float:
    """Median milliseconds per call. On CUDA uses ``triton.testing.do_bench`` (L2 flush, events)."""
    if device.type == "cuda":
        try:
            from triton.testing import do_bench

            return float(do_bench(fn, warmup=25, rep=100, return_mode="median"))
        except ImportError:
            pass
    fn()  # warm-up (compilation, caches)
    sync(device)
    times = []
    start_all = time.perf_counter()
    while len(times) < max_reps and (time.perf_counter() - start_all < min_time or len(times) < min(3, max_reps)):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def copy_bandwidth_gbs(device: torch.device, nbytes: int = 1 << 28) -> float:
    """Achieved GB/s of a device-to-device copy (read + write), the roofline for memory-bound ops."""
    n = nbytes // 4 if device.type == "cuda" else (1 << 24)
    src = torch.empty(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    ms = time_fn(lambda: dst.copy_(src), device)
    return 2 * src.numel() * 4 / (ms * 1e-3) / 1e9


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float | None:
    """Peak extra CUDA memory of one call in MB (None on CPU)."""
    if device.type != "cuda":
        return None
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    sync(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20
