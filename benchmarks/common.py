"""Benchmark cases and timing shared by every ``bench_<family>.py``.

A family module exposes ``cases(device: torch.device, quick: bool) -> list[Case]``. The runner
(``python -m benchmarks``) times every case, computes the speedup of each backend against the
``torch`` reference of the same (op, size, mode), and the achieved bandwidth as a fraction of a
device-to-device copy measured in the same run.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass
class Case:
    op: str  # e.g. "volume_render"
    size: str  # human-readable shape, e.g. "R=65536 S=48 C=3"
    backend: str  # "torch" | "triton" | "cuda" | a peer's name (e.g. "nerfacc")
    mode: str  # "fwd" | "fwd+bwd" | other phase names
    fn: Callable[[], object]  # runs the op once (inputs prepared outside)
    bytes_moved: int = 0  # minimal bytes the op must read + write (physical lower bound)
    items: int = 0  # work items per call (rays, points, ...) for a throughput column
    item_name: str = "items"
    extra: dict = field(default_factory=dict)


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
    while len(times) < max_reps and (time.perf_counter() - start_all < min_time or len(times) < 3):
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
