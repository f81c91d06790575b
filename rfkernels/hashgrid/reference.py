"""Pure-PyTorch hash-grid encoding: readable, vectorized over points and the 2**D cell corners
(Python loops only over levels and dimensions), differentiated by autograd. The ground truth of
the tests.

Per level ``l`` and point ``x`` (clamped to ``[0, 1]^D``): ``pos = x * scale_l + 0.5`` (tcnn's
half-cell stagger), ``cell = floor(pos)``, ``t = pos - cell``, interpolation weights
``w1 = t`` (linear) or ``t^2 (3 - 2t)`` (smoothstep), ``w0 = 1 - w1``; the level's features are
``sum_corners prod_d w_{bit_d} * table_l[entry(cell + bits)]`` (see :mod:`.layout`), then, with
``scales``, multiplied by the anti-aliasing factor :func:`aa_factor`.
"""

from __future__ import annotations

import math

import torch

from .contract import AA_Z_MAX
from .layout import PRIMES, U32, HashGridLayout


def aa_factor(scales: torch.Tensor, level_scale: float) -> torch.Tensor:
    """Zip-NeRF down-weighting ``erf(1 / sqrt(8 * s^2 * scale_l^2))`` of one level, ``[N]``.

    ``s``: per-point Gaussian std in ``[0, 1]``-cube units; ``scale_l``: the level's cells per unit
    length (``HashGridEncoding.level_scales[l]``). Points with ``z = 1 / (sqrt(8) s scale_l) >= 30``
    (including ``s <= 0``) get exactly 1 and zero gradient, which avoids ``0 * inf`` at ``s = 0``.
    """
    c = 1.0 / (math.sqrt(8.0) * level_scale)
    big = scales > c / AA_Z_MAX
    z = c / torch.where(big, scales, torch.ones_like(scales))
    return torch.where(big, torch.erf(z), torch.ones_like(scales))


def interpolation_weight(t: torch.Tensor, interpolation: str) -> torch.Tensor:
    """Weight of the upper corner along one axis for the fractional position ``t`` in [0, 1)."""
    if interpolation == "smoothstep":
        return t * t * (3.0 - 2.0 * t)
    return t


def vertex_entry(vertex: torch.Tensor, layout: HashGridLayout, level: int) -> torch.Tensor:
    """Table entry (row within the level) of integer grid vertices ``[N, D]`` (int64 holding uint32)."""
    if layout.level_hashed[level]:
        index = torch.zeros_like(vertex[:, 0])
        for d in range(layout.n_input_dims):
            index = index ^ ((vertex[:, d] * PRIMES[d]) & U32)
    else:
        index = sum(vertex[:, d] * s for d, s in enumerate(layout.level_strides[level])) & U32
    return index % layout.level_size(level)


def encode(
    points: torch.Tensor, params: torch.Tensor, layout: HashGridLayout, scales: torch.Tensor | None = None
) -> torch.Tensor:
    """``points [N, D]`` (clamped to [0, 1]), flat ``params [n_params]`` -> features ``[N, L*F]``.

    Computes in float64 if ``params`` is float64, else float32 (float16 tables are upcast).
    """
    dtype = torch.float64 if params.dtype == torch.float64 else torch.float32
    x = points.to(dtype).clamp(0.0, 1.0)
    table = params.to(dtype)
    N, D = x.shape
    F = layout.n_features_per_level
    bits = torch.tensor([[(c >> d) & 1 for d in range(D)] for c in range(1 << D)], device=x.device)  # [2^D, D]
    feats = []
    for level in range(layout.n_levels):
        scale = layout.level_scales[level]
        pos = x * scale + 0.5
        cell = torch.floor(pos).detach()
        w1 = interpolation_weight(pos - cell, layout.interpolation)  # [N, D] upper-corner weights
        corner_w = torch.where(bits.bool(), w1[:, None, :], 1.0 - w1[:, None, :])  # [N, 2^D, D]
        w = corner_w[..., 0]
        for d in range(1, D):
            w = w * corner_w[..., d]  # [N, 2^D] trilinear (or smoothstep) weights
        vertex = cell.to(torch.int64)[:, None, :] + bits  # [N, 2^D, D]
        entry = vertex_entry(vertex.reshape(-1, D), layout, level).view(N, 1 << D)
        start, size = layout.level_offsets[level], layout.level_size(level)
        rows = table[start * F : (start + size) * F].view(size, F)
        acc = (w[..., None] * rows[entry]).sum(1)  # [N, F]
        if scales is not None:
            acc = acc * aa_factor(scales.to(dtype), scale)[:, None]
        feats.append(acc)
    return torch.cat(feats, dim=-1)
