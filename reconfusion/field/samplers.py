"""Samplers: where along each ray the NeRF field is evaluated. Proposal networks are one.

A sampler is an ``nn.Module`` called as ``sampler(rays, points, progress)`` that returns a
:class:`Samples`: the s-space interval edges ``[R, S+1]`` of the NeRF round (sorted, in [0, 1],
detached) and the histograms it wants supervised (``[(edges [R, n+1], weights [R, n])]``, the
interlevel loss's inputs; empty for samplers without learned parts). ``points(s_edges)`` (from
the model) maps edges to ``(t_starts, t_ends [R, n], u [R*n, 3] in the unit cube, scales [R*n])``;
``progress`` in [0, 1] means training (jittered samples), ``None`` evaluation (deterministic).
A new sampler is a new class in :data:`SAMPLERS` (selected by ``Config.sampler``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

import rfkernels

from ..config import Config
from ..rays import RayBundle
from .proposal import ProposalField, mlp_autocast


class Samples(NamedTuple):
    s_edges: torch.Tensor  # [R, S+1] NeRF-round interval edges in s, detached
    histograms: list  # [(s_edges [R, n+1], weights [R, n])] to supervise (interlevel loss)


def annealed_s_range(cfg: Config, progress: float | None) -> tuple[float, float]:
    """The s-interval sampled at ``progress`` (RegNeRF's sample-space annealing): ``[0, 1]`` at
    evaluation and after ``cfg.sample_anneal_steps`` steps; before, ``[m - w m, m + w (1 - m)]``
    with ``m = cfg.sample_anneal_mid`` and ``w`` growing linearly from 0 to 1 over those steps."""
    if progress is None or cfg.sample_anneal_steps <= 0:
        return 0.0, 1.0
    w = min(max(progress * cfg.iterations / cfg.sample_anneal_steps, 1e-4), 1.0)
    m = cfg.sample_anneal_mid
    return m - w * m, m + w * (1.0 - m)


class Sampler(nn.Module):
    """Interface (see the module docstring)."""

    def forward(self, rays: RayBundle, points: Callable, progress: float | None = None) -> Samples:  # pragma: no cover
        raise NotImplementedError


class ProposalSampler(Sampler):
    """Zip-NeRF's proposal rounds: each round resamples s by ``rfkernels.sample_pdf`` on the previous
    round's weights, evaluates a density-only :class:`ProposalField` and renders its weights; the
    last weights place ``n_samples[-1]`` NeRF samples. Its histograms feed the interlevel loss."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.proposals = nn.ModuleList(ProposalField(p, freq_reg_fraction=cfg.freq_reg_fraction) for p in cfg.proposals)

    def forward(self, rays, points, progress=None):
        R, dev = len(rays), rays.origins.device
        mode = "midpoint" if progress is None else "single_jitter"
        lo, hi = annealed_s_range(self.cfg, progress)
        s_edges = torch.stack([torch.full((R,), lo, device=dev), torch.full((R,), hi, device=dev)], 1)  # no H2D copy
        weights = torch.ones(R, 1, device=dev)
        histograms = []
        for k, prop in enumerate(self.proposals):
            s_edges = self._resample(s_edges, weights, self.cfg.n_samples[k], mode)
            t0, t1, u, scales = points(s_edges)
            with mlp_autocast(self.cfg, rays.origins.is_cuda):
                sigma = prop(u, scales, progress).view(R, -1)
            weights = rfkernels.render_weights(sigma, t0, t1)[0]
            histograms.append((s_edges, weights))
            weights = weights.detach()
        return Samples(self._resample(s_edges, weights, self.cfg.n_samples[-1], mode), histograms)

    def _resample(self, s_edges, weights, n, mode):
        return rfkernels.sample_pdf(
            s_edges, weights, n, mode=mode, histogram_padding=self.cfg.histogram_padding, return_edges=True
        ).detach()


class UniformSampler(Sampler):
    """``n_samples[-1]`` equal intervals of s per ray; in training the interior edges move by one
    random shift per ray (stratified, within +-half an interval), at evaluation they are fixed.
    No learned parts, no histograms (so no interlevel loss)."""

    def __init__(self, cfg: Config):
        super().__init__()
        if cfg.proposals:
            raise ValueError("config `proposals` must be empty with sampler='uniform' (it has no proposal rounds)")
        self.cfg, self.n = cfg, cfg.n_samples[-1]

    def forward(self, rays, points, progress=None):
        R, dev = len(rays), rays.origins.device
        lo, hi = annealed_s_range(self.cfg, progress)
        edges = torch.linspace(lo, hi, self.n + 1, device=dev).expand(R, -1).clone()
        if progress is not None and self.n > 1:
            shift = (torch.rand(R, 1, device=dev) - 0.5) * (hi - lo) / self.n
            edges[:, 1:-1] += shift
        return Samples(edges, [])


SAMPLERS = {"proposal": ProposalSampler, "uniform": UniformSampler}


def make_sampler(cfg: Config) -> Sampler:
    """The sampler ``cfg.sampler`` names (see :data:`SAMPLERS`)."""
    if cfg.sampler not in SAMPLERS:
        raise ValueError(f"config `sampler` must be one of {sorted(SAMPLERS)}, got {cfg.sampler!r}")
    return SAMPLERS[cfg.sampler](cfg)


__all__ = ["ProposalSampler", "annealed_s_range", "SAMPLERS", "Sampler", "Samples", "UniformSampler", "make_sampler"]
