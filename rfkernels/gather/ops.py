"""The fused backends' autograd Function :class:`Gather` (forward + hand-written backward) and the
scale of its deterministic (int64 fixed-point) backward, :func:`fixed_point_scale`."""

from __future__ import annotations

import torch

from .contract import REDUCE_CODE


def fixed_point_scale(g_out: torch.Tensor, feats: torch.Tensor, reduce: str) -> torch.Tensor:
    """[1] float32 power of two ``2^k`` for the deterministic backward, without a device sync.

    Every per-view sample gradient scattered to the feature maps is bounded, summed over all points
    and views, by ``S = sum |g|`` (``+ 4 sum |g_var| max |f|`` for mean_var), so with ``2^k <= 2^61 / S``
    the int64 fixed-point sums ``sum trunc(w g 2^k)`` cannot overflow; each addend loses < 2^-k."""
    g = g_out.double().abs()
    if reduce == "mean_var":
        C = feats.shape[-1]
        bound = g[..., :C].sum() + 4.0 * g[..., C:].sum() * feats.abs().max().double()
    else:
        bound = g.sum()
    k = torch.floor(61.0 - torch.log2(bound.clamp(min=1e-30))).clamp(-100.0, 100.0)
    return torch.exp2(k).float().reshape(1)


class Gather(torch.autograd.Function):
    """(points [B,N,3] f32, feats [B,V,H,W,C] f32 channels-last, cams [B,V,CAM_STRIDE]) -> (out, mask, cam)."""

    @staticmethod
    def forward(ctx, points, feats, cams, near_eps, reduce, want_cam, deterministic, kernels):
        out, mask, cam, argmax = kernels.gather_forward(
            points, feats, cams, float(near_eps), REDUCE_CODE[reduce], want_cam
        )
        ctx.save_for_backward(points, feats, cams, out if reduce == "mean_var" else None, mask, argmax)
        ctx.near_eps, ctx.reduce, ctx.deterministic, ctx.kernels = float(near_eps), reduce, deterministic, kernels
        ctx.mark_non_differentiable(mask)
        return out, mask, cam

    @staticmethod
    def backward(ctx, g_out, g_mask, g_cam):
        points, feats, cams, out, mask, argmax = ctx.saved_tensors
        need_points = ctx.needs_input_grad[0]  # grads of unused outputs arrive as zeros (materialized)
        g_out = g_out.contiguous()
        scale = fixed_point_scale(g_out, feats, ctx.reduce) if ctx.deterministic else None
        g_feats, g_points = ctx.kernels.gather_backward(
            g_out,
            g_cam.contiguous() if (g_cam is not None and need_points) else None,
            points,
            feats,
            cams,
            out,
            mask,
            argmax,
            ctx.near_eps,
            REDUCE_CODE[ctx.reduce],
            need_points,
            scale,
        )
        return g_points, g_feats, None, None, None, None, None, None
