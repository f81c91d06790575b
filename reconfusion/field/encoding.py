"""Encodings: points in the unit cube -> features. The hash grid is one implementation.

An encoding is an ``nn.Module`` with an ``output_dim`` and
``forward(u [N, 3] in [0, 1], scales [N] | None, progress float | None) -> [N, output_dim]``;
``scales`` is the per-point Gaussian footprint in unit-cube units (anti-aliasing), ``progress``
the training progress in [0, 1] (``None`` at evaluation) for coarse-to-fine schedules. A new
encoding is a new class passed to a field (``NeRFField(cfg, encoding=...)``); the fields only
call this interface.
"""

from __future__ import annotations

import torch
from torch import nn

import rfkernels

from ..config import GridConfig


def frequency_mask(n_levels: int, n_features: int, progress: float, device=None) -> torch.Tensor:
    """Mask ``[n_levels * n_features]`` for grid features at schedule ``progress`` (>= 0).

    FreeNeRF's frequency regularization (Yang et al., CVPR 2023) carried over to a hash grid:
    level ``l`` ramps from 0 to 1 while ``progress * n_levels`` goes from ``l - 1`` to ``l``; the
    coarsest level is always on and all levels are on at ``progress >= 1``.
    """
    levels = torch.arange(n_levels, dtype=torch.float32, device=device)
    m = (max(progress, 0.0) * n_levels - levels + 1.0).clamp(0.0, 1.0)
    return m.repeat_interleave(n_features)


class Encoding(nn.Module):
    """Interface of a point encoding (see the module docstring)."""

    output_dim: int

    def forward(
        self, u: torch.Tensor, scales: torch.Tensor | None = None, progress: float | None = None
    ) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class HashGridEncoder(Encoding):
    """``rfkernels.HashGridEncoding`` (float32 table) with an optional coarse-to-fine level mask:
    with ``freq_reg_fraction > 0``, fine levels unmask linearly over that fraction of the run."""

    def __init__(self, cfg: GridConfig, freq_reg_fraction: float = 0.0):
        super().__init__()
        self.cfg, self.freq_reg_fraction = cfg, freq_reg_fraction
        self.grid = rfkernels.HashGridEncoding(
            n_input_dims=3,
            n_levels=cfg.n_levels,
            n_features_per_level=cfg.n_features_per_level,
            log2_hashmap_size=cfg.log2_hashmap_size,
            base_resolution=cfg.base_resolution,
            max_resolution=cfg.max_resolution,
            dtype=torch.float32,
        )
        self.output_dim = self.grid.output_dim

    def forward(self, u, scales=None, progress=None):
        feats = self.grid(u, scales)
        if progress is None or self.freq_reg_fraction <= 0:
            return feats
        mask = frequency_mask(
            self.cfg.n_levels, self.cfg.n_features_per_level, progress / self.freq_reg_fraction, feats.device
        )
        return feats * mask.to(feats)


__all__ = ["Encoding", "HashGridEncoder", "frequency_mask"]
