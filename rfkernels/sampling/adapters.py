"""What the registry stores for sampling: :class:`Reference` (the ``torch`` backend) and
:class:`Fused` (a triton/cuda :class:`~.contract.SamplingKernels` object, the interlevel loss behind
the :mod:`.ops` operators). Both take checked tensors and :class:`Histogram` layouts from :mod:`.api`;
results come back in the input dtype."""

from __future__ import annotations

from typing import NamedTuple

import torch

from .. import _checks, _packing
from . import ops, reference
from .contract import SamplingKernels


class Histogram(NamedTuple):
    """Layout of one histogram argument: padded (``offsets`` None) or packed."""

    n_rays: int
    offsets: torch.Tensor | None  # [R+1] int64 over the weights, packed only
    max_bins: int  # S (padded) or the largest per-ray bin count (packed)


class Reference:
    """The ``torch`` backend: :mod:`.reference` on padded tensors (packed inputs are padded with
    zero-width, zero-mass bins, which change neither samples nor losses), autograd for gradients.
    Computes in float32 like the fused backends (float64 when every input is float64)."""

    def sample(self, bins, weights, offsets, max_bins, jitter, n, padding, blur, return_edges):
        """-> [R, n] (or [R, n + 1]) in the dtype of ``bins``; ``offsets`` None for padded inputs."""
        cd = _checks.compute_dtype(bins, weights)
        bins, weights = bins.to(cd), weights.to(cd)
        if offsets is not None:
            bins, weights = _packing.pad_histogram(bins, weights, offsets, max_bins)
        return reference.sample_pdf(bins, weights, n, jitter, padding, blur, return_edges)

    def interlevel(self, t, w, fine: Histogram, tp, wp, prop: Histogram, blur, eps):
        """-> loss [R] (``wp``'s dtype), differentiable w.r.t. ``wp``."""
        out, cd = wp.dtype, _checks.compute_dtype(t, w, tp, wp)
        return self._interlevel(t.to(cd), w.to(cd), fine, tp.to(cd), wp.to(cd), prop, blur, eps).to(out)

    def _interlevel(self, t, w, fine: Histogram, tp, wp, prop: Histogram, blur, eps):
        if fine.offsets is not None:
            t, w = _packing.pad_histogram(t, w, fine.offsets, fine.max_bins)
        if prop.offsets is not None:
            tp, wp = _packing.pad_histogram(tp, wp, prop.offsets, prop.max_bins)
        if blur is None:
            return reference.lossfun_outer(t, w, tp, wp, eps)
        return reference.lossfun_blurred(t, w, tp, wp, blur, eps)


class Fused:
    """A fused backend (``triton``/``cuda``): :class:`SamplingKernels` on packed float32 copies
    (padded inputs are packed by reshaping), results cast back to the input dtype."""

    def __init__(self, kernels: SamplingKernels, name: str):
        self.kernels, self.name = kernels, name

    def sample(self, bins, weights, offsets, max_bins, jitter, n, padding, blur, return_edges):
        if offsets is None:
            offsets = _packing.padded_offsets(bins.shape[0], max_bins, bins.device)
        return ops.sample_pdf(
            _f32(bins), _f32(weights), offsets, jitter, n, padding, blur, return_edges, max_bins, self.name
        )

    def interlevel(self, t, w, fine: Histogram, tp, wp, prop: Histogram, blur, eps):
        device = t.device
        t_off, tp_off = _packed_offsets(fine, device), _packed_offsets(prop, device)
        loss, _ = ops.interlevel(
            _f32(t),
            _f32(w),
            t_off,
            _f32(tp),
            _f32(wp),
            tp_off,
            blur,
            eps,
            fine.max_bins,
            prop.max_bins,
            self.name,
        )
        return loss.to(wp.dtype)


def _packed_offsets(hist: Histogram, device) -> torch.Tensor:
    """[R+1] int64 offsets of the packed copy (regular strides for padded inputs)."""
    if hist.offsets is not None:
        return hist.offsets
    return _packing.padded_offsets(hist.n_rays, hist.max_bins, device)


def _f32(x: torch.Tensor) -> torch.Tensor:
    """Any layout -> flat float32 contiguous (the packed copy a kernel reads)."""
    return x.reshape(-1).float().contiguous()
