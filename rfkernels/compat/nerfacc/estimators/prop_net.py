"""nerfacc.estimators.prop_net on rfkernels: ``PropNetEstimator`` and its training schedule.

Sampling runs :func:`..pdf.importance_sampling` (rfkernels' ``sample_pdf``) and the fused
transmittance kernel; the loss is nerfacc's (mip-NeRF 360 ``lossfun_outer`` on the CDFs at the
interval edges, eps 1e-7, averaged over rays and intervals, summed over levels), computed by
:func:`rfkernels.interlevel_loss` (fused). Same signatures, defaults and caching behaviour.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

import rfkernels

from ..data_specs import RayIntervals
from ..pdf import importance_sampling
from ..volrend import render_transmittance_from_density
from ._outer_losses import _lossfun_outer, _outer, _pdf_loss  # noqa: F401 (nerfacc's private names)
from .base import AbstractEstimator

PDF_LOSS_EPS = 1e-7  # nerfacc's `_pdf_loss` eps


class PropNetEstimator(AbstractEstimator):
    """Proposal-network transmittance estimator (mip-NeRF 360).

    Args:
        optimizer: optimizer of the proposal networks (used by :meth:`update_every_n_steps`).
        scheduler: its learning-rate scheduler.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    ) -> None:
        super().__init__()
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.prop_cache: list = []

    @torch.no_grad()
    def sampling(
        self,
        prop_sigma_fns: list[Callable],
        prop_samples: list[int],
        num_samples: int,
        n_rays: int,
        near_plane: float,
        far_plane: float,
        sampling_type: Literal["uniform", "lindisp"] = "lindisp",
        stratified: bool = False,
        requires_grad: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """Resample ``num_samples`` intervals per ray through the proposal levels.

        ``prop_sigma_fns[i](t_starts [R, S_i], t_ends [R, S_i]) -> sigmas [R, S_i]``. Returns
        ``(t_starts, t_ends)`` ``[n_rays, num_samples]``. With ``requires_grad`` the proposal outputs
        are cached for :meth:`compute_loss`."""
        if len(prop_sigma_fns) != len(prop_samples):
            raise ValueError("The number of proposal networks and the number of samples should be the same.")
        _check_planes(near_plane, far_plane, sampling_type)
        cdfs = torch.cat(
            [torch.zeros((n_rays, 1), device=self.device), torch.ones((n_rays, 1), device=self.device)], -1
        )
        intervals = RayIntervals(vals=cdfs)
        for level_fn, level_samples in zip(prop_sigma_fns, prop_samples):
            intervals, _ = importance_sampling(intervals, cdfs, level_samples, stratified)
            t_vals = _transform_stot(sampling_type, intervals.vals, near_plane, far_plane)
            t_starts, t_ends = t_vals[..., :-1], t_vals[..., 1:]
            with torch.set_grad_enabled(requires_grad):
                sigmas = level_fn(t_starts, t_ends)
                if sigmas.shape != t_starts.shape:
                    raise ValueError(
                        f"proposal sigmas must have shape {list(t_starts.shape)}, got {list(sigmas.shape)}"
                    )
                trans, _ = render_transmittance_from_density(t_starts, t_ends, sigmas)
                cdfs = 1.0 - torch.cat([trans, torch.zeros_like(trans[:, :1])], dim=-1)
                if requires_grad:
                    self.prop_cache.append((intervals, cdfs))
        intervals, _ = importance_sampling(intervals, cdfs, num_samples, stratified)
        t_vals = _transform_stot(sampling_type, intervals.vals, near_plane, far_plane)
        if requires_grad:
            self.prop_cache.append((intervals, None))
        return t_vals[..., :-1], t_vals[..., 1:]

    @torch.enable_grad()
    def compute_loss(self, trans: Tensor, loss_scaler: float = 1.0) -> Tensor:
        """Proposal loss from the NeRF's transmittance ``trans [n_rays, num_samples]`` (detached)."""
        if len(self.prop_cache) == 0:
            return torch.zeros((), device=self.device)
        intervals, _ = self.prop_cache.pop()
        cdfs = (1.0 - torch.cat([trans, torch.zeros_like(trans[:, :1])], dim=-1)).detach()
        loss = 0.0
        while self.prop_cache:
            prop_intervals, prop_cdfs = self.prop_cache.pop()
            loss += _proposal_loss(intervals, cdfs, prop_intervals, prop_cdfs)
        return loss * loss_scaler

    @torch.enable_grad()
    def update_every_n_steps(self, trans: Tensor, requires_grad: bool = False, loss_scaler: float = 1.0) -> float:
        """One optimizer step on the proposal loss when ``requires_grad`` (else only the scheduler);
        returns the loss as a float."""
        if requires_grad:
            return self._update(trans=trans, loss_scaler=loss_scaler)
        if self.scheduler is not None:
            self.scheduler.step()
        return 0.0

    @torch.enable_grad()
    def _update(self, trans: Tensor, loss_scaler: float = 1.0) -> float:
        if not self.prop_cache:
            raise RuntimeError("no cached proposal outputs: call sampling(..., requires_grad=True) first")
        if self.optimizer is None:
            raise RuntimeError("No optimizer is provided.")
        loss = self.compute_loss(trans, loss_scaler)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.item()


def get_proposal_requires_grad_fn(target: float = 5.0, num_steps: int = 1000) -> Callable:
    """nerfacc's schedule: train the proposals every step at first, then every ``target`` steps."""
    steps_since_last_grad = 0

    def proposal_requires_grad_fn(step: int) -> bool:
        nonlocal steps_since_last_grad
        requires_grad = steps_since_last_grad > min(step / num_steps, 1.0) * target
        if requires_grad:
            steps_since_last_grad = 0
        steps_since_last_grad += 1
        return requires_grad

    return proposal_requires_grad_fn


def _check_planes(near_plane, far_plane, sampling_type) -> None:
    """Planes that map every s in [0, 1] to a finite t: uniform needs finite planes, lindisp a
    near plane > 0 (its far plane may be inf: disparity 0); both need near <= far."""
    if sampling_type not in ("uniform", "lindisp"):
        raise ValueError(f"`sampling_type` must be 'uniform' or 'lindisp', got {sampling_type!r}")
    for name, v in (("near_plane", near_plane), ("far_plane", far_plane)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
            raise ValueError(f"`{name}` must be a number, got {v!r}")
    if sampling_type == "uniform" and not (math.isfinite(near_plane) and math.isfinite(far_plane)):
        raise ValueError(
            f"`near_plane` and `far_plane` must be finite with sampling_type='uniform', "
            f"got {near_plane!r}, {far_plane!r} (use 'lindisp' for an unbounded far plane)"
        )
    if sampling_type == "lindisp" and not (0 < near_plane < math.inf):
        raise ValueError(f"`near_plane` must be finite and > 0 with sampling_type='lindisp', got {near_plane!r}")
    if not near_plane <= far_plane:
        raise ValueError(f"`near_plane` ({near_plane!r}) must be <= `far_plane` ({far_plane!r})")


def _transform_stot(transform_type: str, s_vals: Tensor, t_min, t_max) -> Tensor:
    """s in [0, 1] -> t: linear (``"uniform"``) or linear in disparity (``"lindisp"``)."""
    if transform_type == "uniform":
        return s_vals * t_max + (1 - s_vals) * t_min
    if transform_type == "lindisp":
        return 1.0 / (s_vals / t_max + (1 - s_vals) / t_min)
    raise ValueError(f"Unknown transform_type: {transform_type}")


def _proposal_loss(query: RayIntervals, cdfs_query: Tensor, key: RayIntervals, cdfs_key: Tensor) -> Tensor:
    """nerfacc's ``_pdf_loss(...).mean()`` for batched intervals: mean over rays and query intervals
    of ``max(0, w - w_outer)^2 / (w + eps)``."""
    if query.vals.dim() < 2:
        raise ValueError("the proposal loss supports batched [n_rays, n_edges] intervals only")
    w = cdfs_query[:, 1:] - cdfs_query[:, :-1]
    w_key = cdfs_key[:, 1:] - cdfs_key[:, :-1]
    per_ray = rfkernels.interlevel_loss(query.vals, w, key.vals, w_key, eps=PDF_LOSS_EPS)
    return per_ray.mean() / w.shape[1]
