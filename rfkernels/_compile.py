"""Opt-in ``torch.compile`` of the ``torch`` backend's hot paths (the CPU speed path).

Off by default. On (``set_torch_compile(True)``, ``with use_torch_compile():`` or
``RFKERNELS_TORCH_COMPILE=1``; ``RFKERNELS_TORCH_COMPILE=0`` vetoes every request), the hash-grid
encoding of ``backend="torch"`` runs through ``torch.compile`` (inductor: on CPU one fused C++ loop
per pass instead of ~40 tensor ops). Measured here (1 thread, 24576 points, the ``tiny`` preset's
8-level F=2 grid): forward + backward 56 ms eager vs 20 ms compiled, after a ~14 s first-call
compile (inductor caches it on disk for later processes). Values match eager to float32 rounding.

Limits: first-order gradients only (torch.compile has no double backward: leave it off for
eikonal-style ``create_graph=True`` losses); kernels are specialized to shapes (dynamic-shape
ones ran ~3x slower here), so callers pad to a few sizes: each new size compiles once. If compiling
fails (no C++ compiler, an unsupported torch), a warning names the error once and the eager path runs.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator

import torch

_enabled = os.environ.get("RFKERNELS_TORCH_COMPILE") == "1"
# RFKERNELS_TORCH_COMPILE=0 is a veto: nothing compiles in this process, whatever is requested
# (no C++ compiler, debugging, short test runs where compile time dominates)
_vetoed = os.environ.get("RFKERNELS_TORCH_COMPILE") == "0"


def set_torch_compile(enabled: bool) -> None:
    """Turn the ``torch`` backend's compiled paths on or off for this process."""
    global _enabled
    if not isinstance(enabled, bool):
        raise ValueError(f"`enabled` must be a bool, got {enabled!r}")
    _enabled = enabled


def torch_compile_enabled() -> bool:
    """Whether the compiled paths run now (requested and not vetoed by ``RFKERNELS_TORCH_COMPILE=0``)."""
    return _enabled and not _vetoed


@contextlib.contextmanager
def use_torch_compile(enabled: bool = True) -> Iterator[None]:
    """:func:`set_torch_compile` for a ``with`` block; the previous setting is restored after it."""
    before = _enabled
    set_torch_compile(enabled)
    try:
        yield
    finally:
        set_torch_compile(before)


class Compiled:
    """``fn`` through ``torch.compile`` while compiling is on, else ``fn`` itself."""

    def __init__(self, fn: Callable, name: str):
        self.fn, self.name = fn, name
        self._compiled: Callable | None = None
        self.failure: str | None = None

    def __call__(self, *args):
        if not torch_compile_enabled() or self.failure is not None:
            return self.fn(*args)
        if self._compiled is None:
            self._compiled = torch.compile(self.fn, dynamic=False)
        try:
            return self._compiled(*args)
        except Exception as exc:  # compiler missing or unsupported here: inputs were validated before
            self.failure = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            warnings.warn(
                f"rfkernels: torch.compile of {self.name} failed ({self.failure}); running it eagerly",
                RuntimeWarning,
                stacklevel=2,
            )
            return self.fn(*args)


__all__ = ["Compiled", "set_torch_compile", "torch_compile_enabled", "use_torch_compile"]
