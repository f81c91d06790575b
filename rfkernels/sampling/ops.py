"""The fused sampling backends as registered torch operators (pattern: :mod:`rfkernels._operators`):
packed float32 histograms, the largest per-ray bin counts (``max_*``, ints the caller knows or
computes) and a backend name in, tensors out.

- ``rfkernels::sampling_sample_pdf`` -> sorted samples [R, n] (or edges [R, n + 1]); not differentiated.
- ``rfkernels::sampling_interlevel`` -> (loss [R], d loss / d wp [Np] for the blurred loss, else
  empty); differentiable w.r.t. the proposal weights ``wp`` only.
"""

from __future__ import annotations

import torch

from .. import _operators as reg

Tensor = torch.Tensor


# --------------------------------------------------------------------------------------- sampling
@reg.define("sampling_sample_pdf")
def sample_pdf(
    bins: Tensor,
    weights: Tensor,
    offsets: Tensor,
    jitter: Tensor | None,
    n: int,
    padding: float,
    blur: Tensor | None,
    return_edges: bool,
    max_bins: int,
    backend: str,
) -> Tensor:
    kernels = reg.kernels("sampling", backend)
    return kernels.sample(bins, weights, offsets, jitter, n, padding, blur, return_edges, max_bins)


@sample_pdf.register_fake
def _(bins, weights, offsets, jitter, n, padding, blur, return_edges, max_bins, backend):
    return bins.new_empty(offsets.shape[0] - 1, n + int(return_edges))


# -------------------------------------------------------------------------------- interlevel loss
@reg.define("sampling_interlevel")
def interlevel(
    t: Tensor,
    w: Tensor,
    t_off: Tensor,
    tp: Tensor,
    wp: Tensor,
    tp_off: Tensor,
    blur: Tensor | None,
    eps: float,
    max_fine: int,
    max_prop: int,
    backend: str,
) -> tuple[Tensor, Tensor]:
    """The blurred loss's d loss / d wp comes with the forward (the blurred fine mass does not depend
    on wp), so its backward is a product; the outer loss runs :func:`interlevel_backward`."""
    loss, dwp = reg.kernels("sampling", backend).interlevel_forward(
        t, w, t_off, tp, wp, tp_off, blur, eps, max_fine, max_prop
    )
    return loss, reg.or_absent(dwp, wp)


@interlevel.register_fake
def _(t, w, t_off, tp, wp, tp_off, blur, eps, max_fine, max_prop, backend):
    return wp.new_empty(t_off.shape[0] - 1), reg.absent(wp) if blur is None else torch.empty_like(wp)


@reg.define("sampling_interlevel_backward")
def interlevel_backward(
    g_loss: Tensor,
    t: Tensor,
    w: Tensor,
    t_off: Tensor,
    tp: Tensor,
    wp: Tensor,
    tp_off: Tensor,
    eps: float,
    max_fine: int,
    max_prop: int,
    backend: str,
) -> Tensor:
    """Outer (unblurred) loss: d loss / d wp [Np] given g_loss [R]."""
    kernels = reg.kernels("sampling", backend)
    return kernels.interlevel_backward(g_loss, t, w, t_off, tp, wp, tp_off, eps, max_fine, max_prop)


@interlevel_backward.register_fake
def _(g_loss, t, w, t_off, tp, wp, tp_off, eps, max_fine, max_prop, backend):
    return torch.empty_like(wp)


def _interlevel_setup(ctx, inputs, output):
    t, w, t_off, tp, wp, tp_off, blur, eps, max_fine, max_prop, backend = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.blurred = blur is not None
    if ctx.blurred:  # the product needs only d loss / d wp and the ray of each proposal bin
        ctx.save_for_backward(output[1], tp_off)
    else:
        ctx.save_for_backward(t, w, t_off, tp, wp, tp_off)
    ctx.args = (eps, max_fine, max_prop, backend)


def _interlevel_grad(ctx, g_loss, _g_dwp):
    if ctx.blurred:
        dwp, tp_off = ctx.saved_tensors
        counts = tp_off[1:] - tp_off[:-1]
        g_wp = dwp * torch.repeat_interleave(g_loss, counts, output_size=dwp.shape[0])  # no device sync
    else:
        g_wp = interlevel_backward(g_loss.contiguous(), *ctx.saved_tensors, *ctx.args)
    return None, None, None, None, g_wp, None, None, None, None, None, None


interlevel.register_autograd(_interlevel_grad, setup_context=_interlevel_setup)
