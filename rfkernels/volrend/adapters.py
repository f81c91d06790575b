"""What the registry stores for volrend: :class:`Reference` (the ``torch`` backend) and
:class:`Fused` (a triton/cuda :class:`~.contract.VolrendKernels` object behind the :mod:`.ops`
registered operators). Both take checked tensors in the caller's layout (a :class:`Layout` from :mod:`.api`)
and return results in the input's dtype and layout."""

from __future__ import annotations

from typing import NamedTuple

import torch

from .. import _checks, _packing
from . import ops, reference
from .contract import VolrendKernels


class Layout(NamedTuple):
    """How the caller laid out its per-sample tensors."""

    padded: bool
    n_rays: int
    offsets: torch.Tensor | None  # [R+1] int64 for packed inputs
    shape: tuple  # the per-sample shape of the input ([R, S] or [N])
    name: str  # the argument that set the layout (`sigmas` or `weights`)


class Reference:
    """The ``torch`` backend: :mod:`.reference` on padded tensors, differentiated by autograd.
    Inputs are in the caller's layout and any float dtypes, computed in
    :func:`rfkernels._checks.compute_dtype` of the inputs (float32, or float64 if all are);
    outputs in the first input's dtype (as the fused backends)."""

    def composite(self, sigmas, deltas, tmids, colors, layout: Layout, eps, want_trans: bool):
        """-> rgb [R, C], depth [R], opacity [R], weights, trans (the input layout; None unless
        ``want_trans``)."""
        out = sigmas.dtype
        cd = _checks.compute_dtype(sigmas, deltas, tmids, colors)
        sigmas, deltas = sigmas.to(cd), deltas.to(cd)
        tmids = None if tmids is None else tmids.to(cd)
        colors = None if colors is None else colors.to(cd)
        *outputs, trans = (x.to(out) for x in self._composite(sigmas, deltas, tmids, colors, layout, eps))
        return (*outputs, trans if want_trans else None)

    def _composite(self, sigmas, deltas, tmids, colors, layout: Layout, eps):
        if layout.padded:
            return reference.composite_padded(sigmas, deltas, tmids, colors, None, eps)
        offsets = layout.offsets
        sig, mask = _packing.pad(sigmas, offsets)
        dlt = _packing.pad(deltas, offsets)[0]
        tm = _packing.pad(tmids, offsets)[0] if tmids is not None else None
        col = _packing.pad(colors, offsets)[0] if colors is not None else None
        rgb, depth, opacity, w, tr = reference.composite_padded(sig, dlt, tm, col, mask, eps)
        return rgb, depth, opacity, _packing.unpad(w, mask), _packing.unpad(tr, mask)

    def distortion(self, weights, tmids, deltas, layout: Layout):
        """-> loss [R]."""
        out, cd = weights.dtype, _checks.compute_dtype(weights, tmids, deltas)
        return self._distortion(weights.to(cd), tmids.to(cd), deltas.to(cd), layout).to(out)

    def _distortion(self, weights, tmids, deltas, layout: Layout):
        if layout.padded:
            return reference.distortion_padded(weights, tmids, deltas)
        w, mask = _packing.pad(weights, layout.offsets)
        return reference.distortion_padded(
            w, _packing.pad(tmids, layout.offsets)[0], _packing.pad(deltas, layout.offsets)[0], mask
        )


class Fused:
    """A fused backend (``triton``/``cuda``): :class:`VolrendKernels` behind the :mod:`.ops` operators,
    on packed float32 copies; results are cast back to the input dtype and layout."""

    def __init__(self, kernels: VolrendKernels, name: str):
        self.kernels, self.name = kernels, name

    def composite(self, sigmas, deltas, tmids, colors, layout: Layout, eps, want_trans: bool):
        """As :meth:`Reference.composite`; without ``want_trans`` the kernel neither allocates nor writes trans."""
        dtype = sigmas.dtype
        rgb, depth, opacity, w, tr = ops.composite(
            _flat(sigmas, layout),
            _flat(deltas, layout),
            _flat(tmids, layout),
            _flat(colors, layout, channels=True),
            _offsets(layout, sigmas.device),
            float(eps),
            want_trans,
            self.name,
        )
        return (
            rgb.to(dtype),
            depth.to(dtype),
            opacity.to(dtype),
            w.view(layout.shape).to(dtype),
            tr.view(layout.shape).to(dtype) if want_trans else None,
        )

    def distortion(self, weights, tmids, deltas, layout: Layout):
        loss = ops.distortion(
            _flat(weights, layout),
            _flat(tmids, layout),
            _flat(deltas, layout),
            _offsets(layout, weights.device),
            self.name,
        )
        return loss.to(weights.dtype)


def _flat(t, layout: Layout, channels: bool = False):
    """Input layout -> packed float32 contiguous [N] (or [N, C])."""
    if t is None:
        return None
    if layout.padded:
        n = layout.shape[0] * layout.shape[1]
        t = t.reshape(n, t.shape[-1]) if channels else t.reshape(n)
    return t.float().contiguous()


def _offsets(layout: Layout, device):
    """[R+1] int64 offsets of the packed copy (regular strides for padded inputs)."""
    if layout.padded:
        return _packing.padded_offsets(layout.n_rays, layout.shape[1], device)
    return layout.offsets
