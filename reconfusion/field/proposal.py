"""Building blocks shared by the fields, and the proposal (density-only) field."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import rfkernels

from ..config import GridConfig, ProposalConfig


def make_grid(cfg: GridConfig) -> nn.Module:
    """``rfkernels.HashGridEncoding`` from a :class:`GridConfig` (float32 table, auto backend)."""
    return rfkernels.HashGridEncoding(
        n_input_dims=3, n_levels=cfg.n_levels, n_features_per_level=cfg.n_features_per_level,
        log2_hashmap_size=cfg.log2_hashmap_size, base_resolution=cfg.base_resolution,
        max_resolution=cfg.max_resolution, dtype=torch.float32, backend=None,
    )


def mlp(n_in: int, width: int, depth: int, n_out: int) -> nn.Sequential:
    """``depth`` hidden ReLU layers of ``width``, then a linear output layer."""
    layers, d = [], n_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.ReLU(inplace=True)]
        d = width
    layers.append(nn.Linear(d, n_out))
    return nn.Sequential(*layers)


def density_activation(raw: torch.Tensor) -> torch.Tensor:
    """softplus with a -1 bias (Zip-NeRF's ``density_bias``): starts near-empty, no exp blow-up."""
    return F.softplus(raw.float() - 1.0)


def masked(features: torch.Tensor, level_mask: torch.Tensor | None) -> torch.Tensor:
    return features if level_mask is None else features * level_mask.to(features)


class ProposalField(nn.Module):
    """Hash grid (1 feature per level in Zip-NeRF) -> small MLP -> density."""

    def __init__(self, cfg: ProposalConfig):
        super().__init__()
        self.cfg = cfg
        self.grid = make_grid(cfg.grid)
        self.mlp = mlp(self.grid.output_dim, cfg.width, cfg.depth, 1)

    def forward(self, u: torch.Tensor, scales: torch.Tensor | None = None,
                level_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``u [N, 3]`` in [0, 1], ``scales [N]`` (unit-cube std) -> density ``[N]``."""
        feats = masked(self.grid(u, scales), level_mask)
        return density_activation(self.mlp(feats)[:, 0])
