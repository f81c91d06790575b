"""Mapping sample points into the unit cube the hash grids index.

- ``contract``: mip-NeRF 360's scene contraction, identity inside the unit ball and
  ``(2 - 1/|x|) x/|x|`` outside (range: the ball of radius 2); ``uncontract`` is its inverse.
- ``contract_scale``: the isotropic factor by which contraction shrinks a small Gaussian at ``x``:
  the cube root of the Jacobian determinant (radial 1/|x|^2, tangential (2|x|-1)/|x|^2), as
  Zip-NeRF does to carry the per-sample scale through the contraction.
- ``to_unit_cube``: points of a scene space (``ndc``, ``contract`` or ``box``) -> ``[0, 1]^3`` and
  the factor that converts a world-space footprint radius to unit-cube units.
"""

from __future__ import annotations

import torch

EPS = 1e-12
# NDC x/y of the reference camera's frustum span [-1, 1]; other views of a forward-facing capture
# look slightly past it, so the grid covers a margin (z in NDC is always within [-1, 1]).
NDC_XY_EXTENT = 1.25


def contract(x: torch.Tensor) -> torch.Tensor:
    """``[..., 3]`` -> ``[..., 3]`` inside the radius-2 ball."""
    n = x.norm(dim=-1, keepdim=True).clamp_min(EPS)
    return torch.where(n <= 1.0, x, (2.0 - 1.0 / n) * (x / n))


def uncontract(y: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`contract` (defined for ``|y| < 2``)."""
    n = y.norm(dim=-1, keepdim=True).clamp_min(EPS)
    return torch.where(n <= 1.0, y, y / (n * (2.0 - n)).clamp_min(EPS))


def contract_scale(x: torch.Tensor) -> torch.Tensor:
    """``[..., 3]`` -> ``[...]``: det(J_contract)^(1/3), 1 inside the unit ball."""
    n = x.norm(dim=-1).clamp_min(1.0)
    det = (1.0 / n**2) * ((2.0 * n - 1.0) / n**2) ** 2
    return det.pow(1.0 / 3.0)


def to_unit_cube(x: torch.Tensor, space: str, bbox: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Points ``[..., 3]`` -> (unit-cube coordinates ``[..., 3]`` clamped to [0, 1], scale ``[...]``).

    ``scale`` multiplies a footprint radius in the input space to give it in unit-cube units.
    """
    if space == "contract":
        y = contract(x)
        s = contract_scale(x) / 4.0
        u = (y + 2.0) / 4.0
    elif space == "box":
        lo, hi = bbox[0].to(x), bbox[1].to(x)
        u = (x - lo) / (hi - lo)
        s = (1.0 / (hi - lo).max()).expand(x.shape[:-1])  # a device scalar: no read back to the host
    elif space == "ndc":
        # x/y over their extent, z as is: Python scalars only (no host-built tensor, nothing cached)
        u = (torch.cat([x[..., :2] / NDC_XY_EXTENT, x[..., 2:]], dim=-1) + 1.0) / 2.0
        s = torch.full(x.shape[:-1], 0.5 / NDC_XY_EXTENT, dtype=x.dtype, device=x.device)
    else:
        raise ValueError(f"unknown space {space!r}; use ndc, contract or box")
    return u.clamp(0.0, 1.0), s
