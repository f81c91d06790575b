"""How a fused rfkernels op becomes a registered torch operator (``torch.ops.rfkernels.*``).

Every family's ``ops.py`` follows one pattern, so that ``torch.compile``, fake/meta tensors,
``torch.export`` and CUDA graphs see each fused kernel as one node instead of a graph break:

1. One operator per contract function, named ``rfkernels::<family>_<function>`` (forward) and
   ``..._backward``, defined with :func:`define` (:func:`torch.library.custom_op`, ``mutates_args=()``: the kernels
   allocate their outputs; nothing is written in place). Arguments are tensors, ``Tensor | None``,
   Python scalars and ``str``; structured arguments (a hash-grid layout) travel as plain fields and
   are rebuilt inside.
2. The backend is the string argument ``backend`` (``"triton"`` or ``"cuda"``), chosen in Python by
   :func:`rfkernels._dispatch.implementation` *before* the operator is called; the operator turns it
   into kernels with :func:`kernels` (``_dispatch.fused_kernels``), the one place a name becomes code.
   Replacements made with ``_dispatch.registered`` (the CUDA host emulation) reach the operator too.
3. Custom operators return tensors only: an optional output (no ``tmids`` gradient, no camera
   coordinates) is :func:`absent` (an empty tensor) and callers decide from their own flags, never
   from ``numel()``.
4. ``@<op>.register_fake``: output shapes, dtypes and (contiguous) strides from input shapes alone,
   no data read. Packed inputs carry ``offsets [R+1]``, so every output size is an input size; a
   data-dependent count (the largest bins per ray of a packed histogram) is an ``int`` argument the
   caller computes (a SymInt when traced with ``capture_scalar_outputs``).
5. ``<op>.register_autograd(backward, setup_context=...)``: ``setup_context`` saves only what the
   backward reads (``ctx.save_for_backward`` for tensors, plain attributes for scalars), and the
   backward calls the ``..._backward`` operator, itself registered with a fake, so the backward
   graph traces too. Outputs without a gradient (masks, indices) are marked non-differentiable.
6. ``torch.library.opcheck`` of every operator and backend runnable here: tests/rfkernels/test_operators.py.

The ``torch`` backend (plain PyTorch, differentiated by autograd) is not wrapped: dynamo traces it
directly and inductor fuses it with the surrounding model. ``torch.library.triton_op`` is not used for
the Triton backend: its fake implementation runs the launcher on fake tensors, which the Triton
interpreter (``TRITON_INTERPRET=1``, how CI runs the kernels) cannot do (it reads data pointers), so
the Triton kernels are opaque custom operators like the CUDA ones.
"""

from __future__ import annotations

from typing import Any

import torch

from . import _dispatch

NAMESPACE = "rfkernels"
_DEFINED: list[str] = []


def name(op: str) -> str:
    """``"volrend_composite"`` -> ``"rfkernels::volrend_composite"`` (the qualified operator name)."""
    return f"{NAMESPACE}::{op}"


def kernels(family: str, backend: str) -> Any:
    """The fused kernels behind an operator's ``backend`` argument (see :func:`_dispatch.fused_kernels`)."""
    return _dispatch.fused_kernels(family, backend)


def absent(like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The stand-in for an optional tensor output: empty, on ``like``'s device."""
    return like.new_empty(0, dtype=dtype or like.dtype)


def or_absent(t: torch.Tensor | None, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``t``, or :func:`absent` when it is None (a kernel that skipped an optional output)."""
    return absent(like, dtype) if t is None else t


def define(op: str):
    """Decorator: the function becomes the custom operator ``rfkernels::<op>`` (no input mutated)."""

    def wrap(fn):
        _DEFINED.append(name(op))
        return torch.library.custom_op(name(op), fn, mutates_args=())

    return wrap


def unaliased(outputs, *inputs: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """``outputs`` with a copy of each one that shares memory with an input or an earlier output
    (a custom operator's outputs must be fresh tensors; a kernel may return views of one buffer)."""
    seen = [t for t in inputs if t is not None]
    out = []
    for t in outputs:  # empty tensors may all report address 0: copying them is free
        if any(t.untyped_storage().data_ptr() == s.untyped_storage().data_ptr() for s in seen):
            t = t.clone()
        out.append(t)
        seen.append(t)
    return tuple(out)


def operators() -> list[str]:
    """Qualified names of every registered rfkernels operator (after ``import rfkernels``)."""
    return sorted(_DEFINED)
