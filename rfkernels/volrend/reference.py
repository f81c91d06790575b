"""Pure-PyTorch volume rendering: readable, vectorized, differentiable by autograd.

This is the ground truth of the tests and the ``torch`` backend. It works on padded rays
``[R, S]`` with an optional validity ``mask`` (packed inputs are padded by the caller).

Per ray with samples i = 0..S-1 (optical depth ``tau_i = sigma_i * delta_i``)::

    T_i     = exp(-sum_{j<i} tau_j)           transmittance before sample i
    alpha_i = 1 - exp(-tau_i)
    w_i     = T_i * alpha_i                   (0 where T_i < early_stop_eps, if eps > 0)
    rgb     = sum_i w_i c_i,  depth = sum_i w_i t_i,  opacity = sum_i w_i
"""
from __future__ import annotations

import torch

# exp(-TAU_MAX) is 0 in float32; clamping keeps prefix sums finite for huge densities (no inf-inf).
TAU_MAX = 1.0e4


def optical_depth(sigmas: torch.Tensor, deltas: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    tau = (sigmas * deltas).clamp(max=TAU_MAX)
    return tau if mask is None else torch.where(mask, tau, torch.zeros_like(tau))


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
    alphas = 1.0 - torch.exp(-tau)
    weights = trans * alphas
    if early_stop_eps > 0:
        weights = torch.where(trans >= early_stop_eps, weights, torch.zeros_like(weights))
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
    rgb = (
        torch.einsum("rs,rsc->rc", weights, colors)
        if colors is not None
        else weights.new_zeros(R, 0)
    )
    depth = (weights * tmids).sum(-1) if tmids is not None else weights.new_zeros(R)
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
