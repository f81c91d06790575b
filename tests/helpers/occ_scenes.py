"""Random occupancy-grid scenes for the occgrid tests and benchmarks: nested multi-level boxes
(each level twice the previous, as nerfacc's ``OccGridEstimator`` builds them), random binaries and
rays that start inside, outside, or aim past the boxes."""

from __future__ import annotations

import torch


def nested_aabbs(levels: int, base=(-1.0, -1.0, -1.0, 1.0, 1.0, 1.0), device="cpu") -> torch.Tensor:
    """[levels, 6]: ``base`` scaled by 2**i about its centre."""
    b = torch.tensor(base, device=device)
    centre, half = (b[:3] + b[3:]) / 2, (b[3:] - b[:3]) / 2
    return torch.stack([torch.cat([centre - half * 2**i, centre + half * 2**i]) for i in range(levels)])


def random_rays(n: int, generator: torch.Generator, spread: float = 2.5, device="cpu"):
    """(origins [n, 3] uniform in [-spread, spread]^3, unit directions [n, 3])."""
    o = (torch.rand(n, 3, generator=generator) * 2 - 1) * spread
    d = torch.randn(n, 3, generator=generator)
    return o.to(device), (d / d.norm(dim=-1, keepdim=True)).to(device)


def random_binaries(levels: int, res, p: float, generator: torch.Generator, device="cpu") -> torch.Tensor:
    """[levels, *res] bool, each cell occupied with probability ``p``."""
    return (torch.rand(levels, *res, generator=generator) < p).to(device)
