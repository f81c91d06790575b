"""The loss functions (tensors in, scalar out) behind the loop's terms (:mod:`.terms`).

- ``charbonnier``: Zip-NeRF's data loss ``sqrt((x - y)^2 + eps^2)``.
- ``opacity_entropy``: binary entropy of the rendered opacity, pushing rays to be fully empty or
  fully opaque (a per-ray form of InfoNeRF's entropy idea; cheap, no extra rays).
- FreeNeRF's frequency regularization is a schedule of the encoding, not a loss: see
  :func:`reconfusion.field.encoding.frequency_mask` (``Config.freq_reg_fraction``).
- ``occlusion_loss``: FreeNeRF's occlusion regularization: density right in front of the cameras
  (normalized distance ``s < s_max``) is penalized, removing near-camera floaters.
- ``depth_smoothness``: RegNeRF's depth smoothness on patches rendered from unseen viewpoints
  (:mod:`reconfusion.unseen`): squared differences of neighbouring depths.
- ``grid_decay``: Zip-NeRF's hash decay, the mean squared entry of each hash-grid level, summed.
- ``distortion`` / ``interlevel``: mip-NeRF 360 / Zip-NeRF losses, computed by ``rfkernels``.
"""

from __future__ import annotations

import torch

import rfkernels


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt((pred - target).square() + eps * eps).mean()


def data_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "charbonnier", eps: float = 1e-3) -> torch.Tensor:
    """``"charbonnier"`` (Zip-NeRF) or ``"mse"``."""
    if kind == "charbonnier":
        return charbonnier(pred, target, eps)
    if kind == "mse":
        return (pred - target).square().mean()
    raise ValueError(f"unknown data loss {kind!r}; use charbonnier or mse")


def opacity_entropy(opacity: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``[R]`` -> scalar mean binary entropy (in nats)."""
    o = opacity.clamp(eps, 1.0 - eps)
    return -(o * torch.log(o) + (1.0 - o) * torch.log(1.0 - o)).mean()


def occlusion_loss(sigmas: torch.Tensor, s_mids: torch.Tensor, s_max: float) -> torch.Tensor:
    """Mean density of samples ``[R, S]`` whose normalized distance is below ``s_max``."""
    mask = (s_mids < s_max).to(sigmas.dtype)
    return (sigmas * mask).sum() / sigmas.shape[0] / max(sigmas.shape[1], 1)


def depth_smoothness(depth: torch.Tensor) -> torch.Tensor:
    """``[P, p, p]`` patch depths -> scalar: mean squared difference of horizontal and vertical
    neighbours (RegNeRF's smoothness term, summed over both directions)."""
    dx = (depth[:, :, 1:] - depth[:, :, :-1]).square().mean()
    dy = (depth[:, 1:, :] - depth[:, :-1, :]).square().mean()
    return dx + dy


def _grid_levels(module: torch.nn.Module):
    """``(params, [entries per level x features])`` of every ``rfkernels.HashGridEncoding`` in ``module``."""
    for g in module.modules():
        if isinstance(g, rfkernels.HashGridEncoding):
            yield g.params, [g.level_table(level).numel() for level in range(len(g.level_offsets) - 1)]


def grid_decay(module: torch.nn.Module) -> torch.Tensor:
    """Sum over every ``rfkernels.HashGridEncoding`` in ``module`` and each of its levels of the
    level's mean squared entry (scalar)."""
    terms = [
        torch.stack([part.mean() for part in params.square().split(sizes)]).sum()
        for params, sizes in _grid_levels(module)
    ]
    return torch.stack(terms).sum() if terms else torch.zeros(())


@torch.no_grad()
def add_grid_decay_grad_(module: torch.nn.Module, weight: float) -> None:
    """``params.grad += weight * d grid_decay / d params`` for every hash grid in ``module``, in place:
    the gradient of ``weight * grid_decay(module)`` in one pass over the tables, without the
    per-level autograd graph the loss itself would build."""
    for params, sizes in _grid_levels(module):
        if not params.requires_grad:  # a frozen grid is not optimized
            continue
        if params.grad is None:
            params.grad = torch.zeros_like(params)
        for g, p, n in zip(params.grad.split(sizes), params.split(sizes), sizes):
            g.add_(p, alpha=2.0 * weight / n)


def distortion(weights: torch.Tensor, s_edges: torch.Tensor) -> torch.Tensor:
    """``weights [R, S]``, s-space edges ``[R, S+1]`` -> scalar (backend: the scoped default)."""
    return rfkernels.distortion_loss(weights, s_edges[:, :-1].contiguous(), s_edges[:, 1:].contiguous()).mean()


def interlevel(fine_edges, fine_weights, prop_edges, prop_weights, blur_halfwidth=None) -> torch.Tensor:
    """Proposal loss (fine histogram detached): scalar (backend: the scoped default)."""
    return rfkernels.interlevel_loss(
        fine_edges.detach(), fine_weights.detach(), prop_edges, prop_weights, blur_halfwidth=blur_halfwidth
    ).mean()


__all__ = [
    "add_grid_decay_grad_",
    "charbonnier",
    "data_loss",
    "depth_smoothness",
    "distortion",
    "grid_decay",
    "interlevel",
    "occlusion_loss",
    "opacity_entropy",
]
