"""The fused gather backends as registered torch operators (pattern: :mod:`rfkernels._operators`),
and the scale of their deterministic (int64 fixed-point) backward, :func:`fixed_point_scale`.

- ``rfkernels::gather_features`` (points [B,N,3] f32, feats [B,V,H,W,C] f32 channels-last,
  cams [B,V,CAM_STRIDE], near_eps, reduce, want_cam, deterministic, backend) -> (out, mask [B,N,V] bool,
  camera coords [B,N,V,3] | empty); differentiable w.r.t. points and feats.
"""

from __future__ import annotations

import torch

from .. import _operators as reg
from .contract import REDUCE_CODE

Tensor = torch.Tensor


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


def _out_shape(points: Tensor, feats: Tensor, reduce: str) -> tuple[int, ...]:
    (B, N, _), V, C = points.shape, feats.shape[1], feats.shape[-1]
    return {"none": (B, N, V, C), "mean_var": (B, N, 2 * C)}.get(reduce, (B, N, C))


@reg.define("gather_features")
def gather(
    points: Tensor,
    feats: Tensor,
    cams: Tensor,
    near_eps: float,
    reduce: str,
    want_cam: bool,
    deterministic: bool,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """-> (out, mask, camera coords | absent, argmax view [B,N,C] int32 (max) | absent)."""
    out, mask, cam, arg = reg.kernels("gather", backend).gather_forward(
        points, feats, cams, near_eps, REDUCE_CODE[reduce], want_cam
    )
    return out, mask, reg.or_absent(cam, points), reg.or_absent(arg, points, torch.int32)


@gather.register_fake
def _(points, feats, cams, near_eps, reduce, want_cam, deterministic, backend):
    (B, N, _), V = points.shape, feats.shape[1]
    cam = points.new_empty(B, N, V, 3) if want_cam else reg.absent(points)
    arg = (
        points.new_empty(B, N, feats.shape[-1], dtype=torch.int32)
        if reduce == "max"
        else reg.absent(points, torch.int32)
    )
    return points.new_empty(_out_shape(points, feats, reduce)), points.new_empty(B, N, V, dtype=torch.bool), cam, arg


@reg.define("gather_features_backward")
def gather_backward(
    g_out: Tensor,
    g_cam: Tensor | None,
    points: Tensor,
    feats: Tensor,
    cams: Tensor,
    out: Tensor | None,
    mask: Tensor,
    arg: Tensor | None,
    near_eps: float,
    reduce: str,
    need_points: bool,
    deterministic: bool,
    backend: str,
) -> tuple[Tensor, Tensor]:
    """-> (d feats [B,V,H,W,C], d points [B,N,3] | absent)."""
    scale = fixed_point_scale(g_out, feats, reduce) if deterministic else None
    g_feats, g_points = reg.kernels("gather", backend).gather_backward(
        g_out, g_cam, points, feats, cams, out, mask, arg, near_eps, REDUCE_CODE[reduce], need_points, scale
    )
    return g_feats, reg.or_absent(g_points, points)


@gather_backward.register_fake
def _(g_out, g_cam, points, feats, cams, out, mask, arg, near_eps, reduce, need_points, deterministic, backend):
    return torch.empty_like(feats), torch.empty_like(points) if need_points else reg.absent(points)


def _gather_setup(ctx, inputs, output):
    points, feats, cams, near_eps, reduce, want_cam, deterministic, backend = inputs
    out, mask, cam, arg = output
    ctx.mark_non_differentiable(mask, arg)
    ctx.save_for_backward(
        points, feats, cams, out if reduce == "mean_var" else None, mask, arg if reduce == "max" else None
    )
    ctx.args = (near_eps, reduce)
    ctx.want_cam, ctx.deterministic, ctx.backend = want_cam, deterministic, backend


def _gather_grad(ctx, g_out, g_mask, g_cam, g_arg):
    points, feats, cams, out, mask, arg = ctx.saved_tensors
    need_points = ctx.needs_input_grad[0]
    g_feats, g_points = gather_backward(
        g_out.contiguous(),
        g_cam.contiguous() if (ctx.want_cam and need_points) else None,
        points,
        feats,
        cams,
        out,
        mask,
        arg,
        *ctx.args,
        need_points,
        ctx.deterministic,
        ctx.backend,
    )
    return (g_points if need_points else None), g_feats, None, None, None, None, None, None


gather.register_autograd(_gather_grad, setup_context=_gather_setup)
