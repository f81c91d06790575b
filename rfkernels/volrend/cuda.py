"""CUDA backend for volume rendering: thin wrappers over the extension built from csrc/volrend/.

Implements :class:`rfkernels.volrend.contract.VolrendKernels` (shapes and dtypes are documented there), as
:mod:`.triton` does; absent optional tensors are passed as empty tensors (the binding maps them to
null pointers)."""

from __future__ import annotations

import torch

from .._cuda_ext import module
from .contract import TAU_MAX


def _opt(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return t if t is not None else like.new_empty(0)


def composite_forward(sigmas, deltas, tmids, colors, offsets, eps, want_trans):
    """:meth:`VolrendKernels.composite_forward` via the extension's ``volrend`` binding (without
    ``want_trans`` the binding passes a null trans pointer and returns an empty trans)."""
    C = colors.shape[1] if colors is not None else 0
    colors = colors if colors is not None else sigmas.new_empty(0, 0)
    rgb, depth, opacity, weights, trans = module().volrend_composite_forward(
        sigmas, deltas, _opt(tmids, sigmas), colors, offsets, C, float(eps), TAU_MAX, bool(want_trans)
    )
    return rgb, depth, opacity, weights, (trans if want_trans else None)


def composite_backward(
    g_rgb, g_depth, g_opacity, g_weights, g_trans, sigmas, deltas, tmids, colors, offsets, rgb, depth, opacity, eps
):
    """:meth:`VolrendKernels.composite_backward` via the extension's ``volrend`` binding."""
    C = colors.shape[1] if colors is not None else 0
    colors_ = colors if colors is not None else sigmas.new_empty(0, 0)
    g_sigmas, g_deltas, g_tmids, g_colors = module().volrend_composite_backward(
        g_rgb.reshape(-1, C) if C else sigmas.new_empty(0, 0),
        g_depth,
        g_opacity,
        _opt(g_weights, sigmas),
        _opt(g_trans, sigmas),
        sigmas,
        deltas,
        _opt(tmids, sigmas),
        colors_,
        offsets,
        rgb if C else sigmas.new_empty(0, 0),
        depth,
        opacity,
        C,
        float(eps),
        TAU_MAX,
    )
    return g_sigmas, g_deltas, (g_tmids if tmids is not None else None), (g_colors if colors is not None else None)


def distortion_forward(weights, tmids, deltas, offsets):
    """:meth:`VolrendKernels.distortion_forward` via the extension's ``volrend`` binding."""
    return module().volrend_distortion_forward(weights, tmids, deltas, offsets)


def distortion_backward(g_loss, weights, tmids, deltas, offsets):
    """:meth:`VolrendKernels.distortion_backward` via the extension's ``volrend`` binding."""
    return tuple(module().volrend_distortion_backward(g_loss, weights, tmids, deltas, offsets))
