"""CUDA backend for proposal sampling: thin wrappers over the extension built from csrc/sampling/.

Implements :class:`rfkernels.sampling.contract.SamplingKernels` (shapes and dtypes are documented there), as
:mod:`.triton` does; absent optional tensors (jitter, blur) are passed as empty tensors (the binding
maps them to null pointers)."""

from __future__ import annotations

import torch

from .._cuda_ext import module


def _opt(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return t if t is not None else like.new_empty(0)


def sample(bins, weights, offsets, jitter, n, padding, blur, return_edges, max_bins):
    """:meth:`SamplingKernels.sample` via the extension's ``sampling`` binding."""
    return module().sampling_sample_pdf(
        bins, weights, offsets, _opt(jitter, bins), int(n), float(padding), _opt(blur, bins), bool(return_edges)
    )


def interlevel_forward(t, w, t_off, tp, wp, tp_off, blur, eps, max_fine, max_prop):
    """:meth:`SamplingKernels.interlevel_forward` via the extension's ``sampling`` binding."""
    loss, dwp = module().sampling_interlevel_forward(t, w, t_off, tp, wp, tp_off, _opt(blur, t), float(eps))
    return loss, (dwp if blur is not None else None)


def interlevel_backward(g_loss, t, w, t_off, tp, wp, tp_off, eps, max_fine, max_prop):
    """:meth:`SamplingKernels.interlevel_backward` via the extension's ``sampling`` binding."""
    return module().sampling_interlevel_outer_backward(g_loss, t, w, t_off, tp, wp, tp_off, float(eps))
