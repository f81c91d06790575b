"""Deterministic backward for the fused backends (``deterministic=True``): no float atomics.

The kernel (``backward_levels``) writes, for a chunk of levels, every corner's global table row and
weight and the per-level partial point/scale gradients; the table gradient is then summed with
``index_put_(accumulate=True)`` (sequential on CPU, sort-based and order-fixed on CUDA) and the
partials are reduced over levels with ``sum``. Costs ``N * 2^D * (12 + 4F)`` bytes per level chunk.
"""

from __future__ import annotations

import torch

from .layout import HashGridLayout
from .output import DEFAULT, OutputFormat

CHUNK_BYTES = 1 << 29  # temporary memory budget per level chunk


def backward(
    mod,
    g_out,
    points,
    params,
    scales,
    layout: HashGridLayout,
    need_points,
    need_params,
    need_scales,
    out_format: OutputFormat = DEFAULT,
):
    """Same contract as the backends' ``backward``; ``mod`` is the backend module."""
    N, D, L, F = points.shape[0], layout.n_input_dims, layout.n_levels, layout.n_features_per_level
    C = 1 << D
    dev = points.device
    g_x = torch.zeros(N, D, device=dev) if need_points else None
    g_table = torch.zeros(params.numel() // F, F, device=dev) if need_params else None
    g_s = torch.zeros(N, device=dev) if need_scales else None
    per_level = max(1, N * (C * (12 + 4 * F) + 4 * D + 4))
    chunk = max(1, min(L, CHUNK_BYTES // per_level))
    g_levels = out_format.view(g_out).reshape(N, L, F).float()  # [N, L, F] view for point-major float32
    for base in range(0, L if N else 0, chunk):
        n = min(chunk, L - base)
        rows, w, px, ps = mod.backward_levels(
            g_out, points, params, scales, layout, base, n, need_points, need_params, need_scales, out_format=out_format
        )
        if need_params:
            contrib = w[..., None] * g_levels[:, base : base + n].transpose(0, 1)[:, :, None, :]  # [n, N, C, F]
            g_table.index_put_((rows.reshape(-1),), contrib.reshape(-1, F), accumulate=True)
        if need_points:
            g_x += px.sum(0)
        if need_scales:
            g_s += ps.sum(0)
    return g_x, (g_table.view(-1).to(params.dtype) if need_params else None), g_s
