"""The autograd Functions of the fused volrend backends: packed float32 tensors and a
:class:`~.contract.VolrendKernels` object in, tensors out; the backward is hand-written and
recomputes transmittance from the saved outputs instead of keeping per-sample intermediates."""

from __future__ import annotations

import torch


class Composite(torch.autograd.Function):
    """Packed fused compositing: (sigmas, deltas, tmids, colors) -> (rgb, depth, opacity, weights, trans)."""

    @staticmethod
    def forward(ctx, sigmas, deltas, tmids, colors, offsets, eps, kernels):
        rgb, depth, opacity, weights, trans = kernels.composite_forward(sigmas, deltas, tmids, colors, offsets, eps)
        ctx.save_for_backward(sigmas, deltas, tmids, colors, offsets, rgb, depth, opacity)
        ctx.has_tmids, ctx.has_colors = tmids is not None, colors is not None
        ctx.eps, ctx.kernels = eps, kernels
        return rgb, depth, opacity, weights, trans

    @staticmethod
    def backward(ctx, g_rgb, g_depth, g_opacity, g_weights, g_trans):
        sigmas, deltas, tmids, colors, offsets, rgb, depth, opacity = ctx.saved_tensors
        zeros_r = lambda g, like: torch.zeros_like(like) if g is None else g.contiguous()  # noqa: E731
        g_rgb, g_depth, g_opacity = zeros_r(g_rgb, rgb), zeros_r(g_depth, depth), zeros_r(g_opacity, opacity)
        g_weights = None if g_weights is None else g_weights.contiguous()
        g_trans = None if g_trans is None else g_trans.contiguous()
        g_sigmas, g_deltas, g_tmids, g_colors = ctx.kernels.composite_backward(
            g_rgb,
            g_depth,
            g_opacity,
            g_weights,
            g_trans,
            sigmas,
            deltas,
            tmids,
            colors,
            offsets,
            rgb,
            depth,
            opacity,
            ctx.eps,
        )
        return (
            g_sigmas,
            g_deltas,
            g_tmids if ctx.has_tmids else None,
            g_colors if ctx.has_colors else None,
            None,
            None,
            None,
        )


class Distortion(torch.autograd.Function):
    """Packed fused distortion loss: (weights, tmids, deltas) -> loss [R]."""

    @staticmethod
    def forward(ctx, weights, tmids, deltas, offsets, kernels):
        ctx.save_for_backward(weights, tmids, deltas, offsets)
        ctx.kernels = kernels
        return kernels.distortion_forward(weights, tmids, deltas, offsets)

    @staticmethod
    def backward(ctx, g_loss):
        weights, tmids, deltas, offsets = ctx.saved_tensors
        g_w, g_m, g_d = ctx.kernels.distortion_backward(g_loss.contiguous(), weights, tmids, deltas, offsets)
        return g_w, g_m, g_d, None, None
