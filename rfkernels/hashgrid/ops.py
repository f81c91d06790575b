"""The fused backends' autograd Functions: :class:`Encode` (forward + hand-written backward) and
:class:`EncodeBackward` (that backward as a differentiable op, for ``create_graph=True``).

Both take the tensors and a :class:`~.contract.HashGridKernels` object; the backward scatters
table gradients with float atomics, or without them through :mod:`.deterministic`, and computes
each gradient only when autograd needs it."""

from __future__ import annotations

import torch

from . import reference
from .deterministic import backward as deterministic_backward


class Encode(torch.autograd.Function):
    """(points f32 [N, D], params [P], scales f32 [N] | None) -> features f32 [N, L*F]."""

    @staticmethod
    def forward(ctx, points, params, scales, layout, kernels, deterministic):
        ctx.save_for_backward(points, params, scales)
        ctx.layout, ctx.kernels, ctx.deterministic = layout, kernels, deterministic
        return kernels.forward(points, params, scales, layout)

    @staticmethod
    def backward(ctx, g_out):
        points, params, scales = ctx.saved_tensors
        args = (
            g_out.contiguous().float(),
            points,
            params,
            scales,
            ctx.layout,
            ctx.kernels,
            ctx.deterministic,
            *ctx.needs_input_grad[:3],
        )
        if torch.is_grad_enabled():  # create_graph=True: the backward itself is differentiable
            g_x, g_p, g_s = EncodeBackward.apply(*args)
        else:
            g_x, g_p, g_s = _fused_backward(*args)
        return g_x, g_p, g_s, None, None, None


def _fused_backward(g_out, points, params, scales, layout, kernels, deterministic, need_x, need_p, need_s):
    args = (g_out, points, params, scales, layout, need_x, need_p, need_s)
    return deterministic_backward(kernels, *args) if deterministic else kernels.backward(*args)


class EncodeBackward(torch.autograd.Function):
    """The fused backward as a differentiable op: (g_out, points, params, scales) -> (g_points,
    g_params, g_scales). Its own backward (second order, e.g. eikonal losses) is fused for the
    common case where only ``g_points`` is used downstream; anything else (gradients flowing into
    ``g_params``/``g_scales``, third order) differentiates the reference."""

    @staticmethod
    def forward(ctx, g_out, points, params, scales, layout, kernels, deterministic, need_x, need_p, need_s):
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(g_out, points, params, scales)
        ctx.layout, ctx.kernels, ctx.first_needs = layout, kernels, (need_x, need_p, need_s)
        return _fused_backward(g_out, points, params, scales, layout, kernels, deterministic, need_x, need_p, need_s)

    @staticmethod
    def backward(ctx, gg_x, gg_p, gg_s):
        g_out, points, params, scales = ctx.saved_tensors
        needs = ctx.needs_input_grad[:4]
        none6 = (None,) * 6
        if gg_x is None and gg_p is None and gg_s is None:
            return (None,) * 4 + none6
        if gg_p is None and gg_s is None and not torch.is_grad_enabled():
            grads = ctx.kernels.double_backward(
                gg_x.contiguous().float(), g_out, points, params, scales, ctx.layout, *needs
            )
            return (*grads, *none6)
        return (
            *_reference_double_vjp(
                (gg_x, gg_p, gg_s), (g_out, points, params, scales), ctx.layout, ctx.first_needs, needs
            ),
            *none6,
        )


def _reference_vjp(g_out, points, params, scales, layout, needs):
    """Gradients of <reference.encode(...), g_out> w.r.t. the needed inputs, with a graph."""
    inputs = [t for t, n in zip((points, params, scales), needs) if n]
    if not inputs:
        return None, None, None
    out = reference.encode(points, params, layout, scales)
    grads = iter(torch.autograd.grad(out, inputs, g_out, create_graph=True, allow_unused=True))
    return tuple(next(grads) if n else None for n in needs)


def _reference_double_vjp(grads_in, saved, layout, first_needs, needs):
    """Backward of the backward through the reference (detached: no third order)."""
    with torch.enable_grad():
        leaves = [
            None if t is None else t.detach().requires_grad_(bool(n or k > 0))
            for k, (t, n) in enumerate(zip(saved, needs))
        ]
        firsts = _reference_vjp(*leaves, layout, first_needs)
        pairs = [(f, g) for f, g in zip(firsts, grads_in) if f is not None and g is not None]
        inputs = [leaf for leaf, n in zip(leaves, needs) if n]
        if not pairs or not inputs:
            return (None,) * 4
        res = iter(torch.autograd.grad([p[0] for p in pairs], inputs, [p[1] for p in pairs], allow_unused=True))
    return tuple(next(res) if n else None for n in needs)
