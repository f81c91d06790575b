"""Pure-PyTorch volume rendering: readable, vectorized, differentiable by autograd.

This is the ground truth of the tests and the ``torch`` backend. It works on padded rays
``[R, S]`` with an optional validity ``mask`` (packed inputs are padded by the caller).

Per ray with samples i = 0..S-1 (optical depth ``tau_i = sigma_i * delta_i``)::

    T_i     = exp(-sum_{j<i} tau_j)           transmittance before sample i
    alpha_i = 1 - exp(-tau_i)                 (as -expm1(-tau_i): exact for tiny tau)
    w_i     = T_i * alpha_i                   (0 where T_i < early_stop_eps, if eps > 0)
    rgb     = sum_i w_i c_i,  depth = sum_i w_i t_i,  opacity = sum_i w_i

Numerics shared by every backend (README "Numerics policy"): ``tau = 0`` when ``sigma`` or ``delta``
is 0 (so ``0 * inf = 0``: a zero-density sample on an infinite interval, or an infinite density on
an empty one, is transparent); ``tau`` saturates at ``TAU_MAX`` (so ``inf`` densities are opaque);
a product with a zero weight is 0 (``w * t_mid`` with ``t_mid = inf``); ``tau`` passes gradient to
``sigma``/``delta`` wherever the plain product is finite and below ``TAU_MAX`` (``sigma = 0`` on a
finite interval included: d tau / d sigma = delta there), and none where it is ``0 * inf`` or
saturated. NaN propagates.
"""

from __future__ import annotations

import torch

from .contract import TAU_MAX


def optical_depth(sigmas: torch.Tensor, deltas: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``sigma * delta`` with the policy above: 0 if either is 0, ``TAU_MAX`` above it, gradient
    wherever the product is finite and at most ``TAU_MAX``."""
    with torch.no_grad():
        raw = sigmas * deltas
        zero = (sigmas == 0) | (deltas == 0)
        regular = raw <= TAU_MAX  # False for NaN (0 * inf included) and for saturated products
        fill = torch.where(zero, 0.0, torch.where(raw > TAU_MAX, TAU_MAX, raw))  # NaN stays NaN
        if mask is not None:
            regular, fill = regular & mask, torch.where(mask, fill, 0.0)
    zeros = torch.zeros_like(raw)
    prod = torch.where(regular, sigmas, zeros) * torch.where(regular, deltas, zeros)
    return torch.where(regular, prod, fill.to(prod.dtype))


class _Mul0(torch.autograd.Function):
    """``a * b`` with ``0 * x = 0`` for any x (inf included); d/da uses b with non-finite b as 0."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return torch.where((a == 0) | (b == 0), torch.zeros_like(a * b), a * b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        b_fin = torch.where(torch.isfinite(b), b, torch.zeros_like(b))
        return g * b_fin, torch.where(a == 0, torch.zeros_like(g), g * a)


def mul0(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise product where a zero factor wins over inf (weights times interval midpoints)."""
    return _Mul0.apply(a, b)


def exclusive_cumsum(x: torch.Tensor) -> torch.Tensor:
    """Exclusive prefix sum along the last dim: out[..., i] = sum_{j<i} x[..., j]."""
    return torch.cat([torch.zeros_like(x[..., :1]), torch.cumsum(x[..., :-1], dim=-1)], dim=-1)


def weights_padded(
    sigmas: torch.Tensor,
    deltas: torch.Tensor,
    mask: torch.Tensor | None = None,
    early_stop_eps: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """sigmas, deltas, mask: [R, S] -> (weights, transmittance, alphas), each [R, S]."""
    tau = optical_depth(sigmas, deltas, mask)
    trans = torch.exp(-exclusive_cumsum(tau))
    alphas = -torch.expm1(-tau)  # 1 - exp(-tau) without cancellation for small tau
    weights = trans * alphas
    if early_stop_eps > 0:
        weights = torch.where(trans < early_stop_eps, torch.zeros_like(weights), weights)
    return weights, trans, alphas


def composite_padded(
    sigmas: torch.Tensor,
    deltas: torch.Tensor,
    tmids: torch.Tensor | None,
    colors: torch.Tensor | None,
    mask: torch.Tensor | None = None,
    early_stop_eps: float = 0.0,
):
    """[R, S] inputs (colors [R, S, C]) -> rgb [R, C], depth [R], opacity [R], weights, transmittance."""
    weights, trans, _ = weights_padded(sigmas, deltas, mask, early_stop_eps)
    R = sigmas.shape[0]
    rgb = torch.einsum("rs,rsc->rc", weights, colors) if colors is not None else weights.new_zeros(R, 0)
    depth = mul0(weights, tmids).sum(-1) if tmids is not None else weights.new_zeros(R)
    opacity = weights.sum(-1)
    return rgb, depth, opacity, weights, trans


def distortion_padded(
    weights: torch.Tensor, tmids: torch.Tensor, deltas: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """mip-NeRF 360 distortion loss per ray in O(S) (intervals sorted, non-overlapping): [R].

    ``sum_{i,j} w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 d_i`` with midpoints m and widths d, using
    ``sum_{i,j} w_i w_j |m_i - m_j| = 2 sum_i w_i (m_i W_{<i} - (wm)_{<i})``.
    """
    if mask is not None:
        weights = torch.where(mask, weights, torch.zeros_like(weights))
    w_before = exclusive_cumsum(weights)
    wm_before = exclusive_cumsum(weights * tmids)
    pairwise = 2.0 * (weights * (tmids * w_before - wm_before)).sum(-1)
    self_term = (weights.square() * deltas).sum(-1) / 3.0
    return pairwise + self_term


def distortion_bruteforce(weights: torch.Tensor, tmids: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """O(S^2) definition, for tests only: [R, S] -> [R]."""
    pair = (weights[:, :, None] * weights[:, None, :] * (tmids[:, :, None] - tmids[:, None, :]).abs()).sum((1, 2))
    return pair + (weights.square() * deltas).sum(-1) / 3.0
