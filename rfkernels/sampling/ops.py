"""The autograd Function of the fused interlevel loss: packed float32 tensors and a
:class:`~.contract.SamplingKernels` object in, the per-ray loss out (sampling itself is not
differentiated, so it needs none)."""

from __future__ import annotations

import torch

from .. import _packing


class Interlevel(torch.autograd.Function):
    """Packed fused interlevel loss: grad only w.r.t. the proposal weights. The blurred loss's
    forward also returns the elementwise d loss / d wp (the blurred fine mass does not depend on
    wp), so its backward is a product; the outer loss runs a backward kernel."""

    @staticmethod
    def forward(ctx, t, w, t_off, tp, wp, tp_off, blur, eps, max_fine, max_prop, kernels):
        blur = blur if blur.numel() else None
        loss, dwp = kernels.interlevel_forward(t, w, t_off, tp, wp, tp_off, blur, eps, max_fine, max_prop)
        if dwp is not None:
            ctx.save_for_backward(dwp, tp_off)
        else:
            ctx.save_for_backward(t, w, t_off, tp, wp, tp_off)
        ctx.blurred = dwp is not None
        ctx.args = (eps, max_fine, max_prop, kernels)
        return loss

    @staticmethod
    def backward(ctx, g_loss):
        eps, max_fine, max_prop, kernels = ctx.args
        if ctx.blurred:
            dwp, tp_off = ctx.saved_tensors
            R = g_loss.numel()
            if dwp.numel() == R * max_prop:  # padded: no ray-index tensor (and no device sync)
                g_wp = (dwp.view(R, max_prop) * g_loss[:, None]).reshape(-1)
            else:
                g_wp = dwp * g_loss[_packing.offsets_to_ray_indices(tp_off)]
        else:
            t, w, t_off, tp, wp, tp_off = ctx.saved_tensors
            g_wp = kernels.interlevel_backward(
                g_loss.contiguous(), t, w, t_off, tp, wp, tp_off, eps, max_fine, max_prop
            )
        return None, None, None, None, g_wp, None, None, None, None, None, None
