"""The fused volrend backends as registered torch operators (pattern: :mod:`rfkernels._operators`):
packed float32 tensors and a backend name in, tensors out; the backward is hand-written and
recomputes transmittance from the saved outputs instead of keeping per-sample intermediates.

- ``rfkernels::volrend_composite`` (sigmas, deltas, tmids?, colors?, offsets, eps, want_trans, backend)
  -> (rgb [R, C], depth [R], opacity [R], weights [N], trans [N]); C = 0 without colors; trans is
  absent (empty [0], neither allocated nor written by the kernel) unless ``want_trans``.
- ``rfkernels::volrend_distortion`` (weights, tmids, deltas, offsets, backend) -> loss [R].
"""

from __future__ import annotations

import torch

from .. import _operators as reg

Tensor = torch.Tensor


# ------------------------------------------------------------------------------------ compositing
@reg.define("volrend_composite")
def composite(
    sigmas: Tensor,
    deltas: Tensor,
    tmids: Tensor | None,
    colors: Tensor | None,
    offsets: Tensor,
    eps: float,
    want_trans: bool,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    kernels = reg.kernels("volrend", backend)
    rgb, depth, opacity, weights, trans = kernels.composite_forward(
        sigmas, deltas, tmids, colors, offsets, eps, want_trans
    )
    return rgb, depth, opacity, weights, reg.or_absent(trans, sigmas)


@composite.register_fake
def _(sigmas, deltas, tmids, colors, offsets, eps, want_trans, backend):
    R, C = offsets.shape[0] - 1, 0 if colors is None else colors.shape[1]
    return (
        sigmas.new_empty(R, C),
        sigmas.new_empty(R),
        sigmas.new_empty(R),
        torch.empty_like(sigmas),
        torch.empty_like(sigmas) if want_trans else reg.absent(sigmas),
    )


@reg.define("volrend_composite_backward")
def composite_backward(
    g_rgb: Tensor,
    g_depth: Tensor,
    g_opacity: Tensor,
    g_weights: Tensor,
    g_trans: Tensor | None,
    sigmas: Tensor,
    deltas: Tensor,
    tmids: Tensor | None,
    colors: Tensor | None,
    offsets: Tensor,
    rgb: Tensor,
    depth: Tensor,
    opacity: Tensor,
    eps: float,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """-> (d sigmas, d deltas, d tmids | absent, d colors | absent); ``g_trans`` None: no trans gradient
    (the forward did not return trans)."""
    grads = reg.kernels("volrend", backend).composite_backward(
        g_rgb, g_depth, g_opacity, g_weights, g_trans, sigmas, deltas, tmids, colors, offsets, rgb, depth, opacity, eps
    )
    g_sigmas, g_deltas, g_tmids, g_colors = grads
    return g_sigmas, g_deltas, reg.or_absent(g_tmids, sigmas), reg.or_absent(g_colors, sigmas)


@composite_backward.register_fake
def _(
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
    eps,
    backend,
):
    g_tmids = reg.absent(sigmas) if tmids is None else torch.empty_like(tmids)
    g_colors = reg.absent(sigmas) if colors is None else torch.empty_like(colors)
    return torch.empty_like(sigmas), torch.empty_like(deltas), g_tmids, g_colors


def _composite_setup(ctx, inputs, output):
    sigmas, deltas, tmids, colors, offsets, eps, want_trans, backend = inputs
    rgb, depth, opacity, _, _ = output
    ctx.save_for_backward(sigmas, deltas, tmids, colors, offsets, rgb, depth, opacity)
    ctx.eps, ctx.want_trans, ctx.backend = eps, want_trans, backend


def _composite_grad(ctx, g_rgb, g_depth, g_opacity, g_weights, g_trans):
    sigmas, deltas, tmids, colors, offsets, rgb, depth, opacity = ctx.saved_tensors
    g_sigmas, g_deltas, g_tmids, g_colors = composite_backward(
        g_rgb.contiguous(),
        g_depth.contiguous(),
        g_opacity.contiguous(),
        g_weights.contiguous(),
        g_trans.contiguous() if ctx.want_trans else None,  # an absent trans has no gradient
        sigmas,
        deltas,
        tmids,
        colors,
        offsets,
        rgb,
        depth,
        opacity,
        ctx.eps,
        ctx.backend,
    )
    g_tmids = None if tmids is None else g_tmids
    g_colors = None if colors is None else g_colors
    return g_sigmas, g_deltas, g_tmids, g_colors, None, None, None, None


composite.register_autograd(_composite_grad, setup_context=_composite_setup)


# -------------------------------------------------------------------------------------- distortion
@reg.define("volrend_distortion")
def distortion(weights: Tensor, tmids: Tensor, deltas: Tensor, offsets: Tensor, backend: str) -> Tensor:
    return reg.kernels("volrend", backend).distortion_forward(weights, tmids, deltas, offsets)


@distortion.register_fake
def _(weights, tmids, deltas, offsets, backend):
    return weights.new_empty(offsets.shape[0] - 1)


@reg.define("volrend_distortion_backward")
def distortion_backward(
    g_loss: Tensor, weights: Tensor, tmids: Tensor, deltas: Tensor, offsets: Tensor, backend: str
) -> tuple[Tensor, Tensor, Tensor]:
    """-> (d weights, d tmids, d deltas), each [N]."""
    return tuple(reg.kernels("volrend", backend).distortion_backward(g_loss, weights, tmids, deltas, offsets))


@distortion_backward.register_fake
def _(g_loss, weights, tmids, deltas, offsets, backend):
    return torch.empty_like(weights), torch.empty_like(tmids), torch.empty_like(deltas)


def _distortion_setup(ctx, inputs, output):
    weights, tmids, deltas, offsets, backend = inputs
    ctx.save_for_backward(weights, tmids, deltas, offsets)
    ctx.backend = backend


def _distortion_grad(ctx, g_loss):
    weights, tmids, deltas, offsets = ctx.saved_tensors
    g_w, g_m, g_d = distortion_backward(g_loss.contiguous(), weights, tmids, deltas, offsets, ctx.backend)
    return g_w, g_m, g_d, None, None


distortion.register_autograd(_distortion_grad, setup_context=_distortion_setup)
