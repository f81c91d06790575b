"""Building blocks shared by the fields, and the proposal (density-only) field."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ProposalConfig
from .encoding import Encoding, HashGridEncoder


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


class ProposalField(nn.Module):
    """Encoding (a hash grid with 1 feature per level in Zip-NeRF) -> small MLP -> density."""

    def __init__(self, cfg: ProposalConfig, encoding: Encoding | None = None, freq_reg_fraction: float = 0.0):
        super().__init__()
        self.cfg = cfg
        self.encoding = encoding if encoding is not None else HashGridEncoder(cfg.grid, freq_reg_fraction)
        self.mlp = mlp(self.encoding.output_dim, cfg.width, cfg.depth, 1)

    def forward(
        self, u: torch.Tensor, scales: torch.Tensor | None = None, progress: float | None = None
    ) -> torch.Tensor:
        """``u [N, 3]`` in [0, 1], ``scales [N]`` (unit-cube std) -> density ``[N]``."""
        return density_activation(self.mlp(self.encoding(u, scales, progress))[:, 0])


def mlp_autocast(cfg, on_cuda: bool):
    """bf16 autocast of the MLPs (``cfg.mixed_precision``), on CUDA only; a no-op context elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=bool(cfg.mixed_precision) and on_cuda)
