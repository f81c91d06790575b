"""CUDA backend for the hash-grid encoding: thin wrappers over the extension built from
csrc/hashgrid/. Implements :class:`rfkernels.hashgrid.contract.HashGridKernels` (shapes and dtypes are
documented there), as :mod:`.triton` does; level metadata is passed as Python lists (the kernels
receive it by value)."""

from __future__ import annotations

import functools

import torch

from .._cuda_ext import module
from .contract import AA_Z_MAX
from .layout import MAX_DIMS, HashGridLayout
from .output import DEFAULT, OutputFormat


@functools.lru_cache(maxsize=64)
def _meta(layout: HashGridLayout) -> tuple:
    L = layout.n_levels
    strides = [s for st in layout.level_strides for s in list(st) + [0] * (MAX_DIMS - len(st))]
    return (
        list(layout.level_offsets[:L]),
        [layout.level_size(l) for l in range(L)],
        list(layout.level_scales),
        strides,
        [int(h) for h in layout.level_hashed],
        layout.n_features_per_level,
        layout.interpolation == "smoothstep",
        AA_Z_MAX,
    )


def _aligned(params: torch.Tensor, F: int) -> torch.Tensor:
    """The kernels read one entry (F features) as one vector: the table must be entry-aligned."""
    return params if params.data_ptr() % (F * params.element_size()) == 0 else params.clone()


def _opt(t, like):
    return t if t is not None else like.new_empty(0)


def forward(points, params, scales, layout: HashGridLayout, out_format: OutputFormat = DEFAULT):
    """:meth:`HashGridKernels.forward` via the extension's ``hashgrid`` binding."""
    params = _aligned(params, layout.n_features_per_level)
    out = out_format.empty_buffer(points.shape[0], layout.output_dim, points.device)
    module().hashgrid_forward(points, params, _opt(scales, points), out, *_meta(layout), out_format.feature_major)
    return out


def backward(
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
    """:meth:`HashGridKernels.backward` via the extension's ``hashgrid`` binding (half tables: the
    gradient comes back in half, see csrc/hashgrid/kernels.h)."""
    params = _aligned(params, layout.n_features_per_level)
    g_x, g_table, g_s = module().hashgrid_backward(
        g_out,
        points,
        params,
        _opt(scales, points),
        *_meta(layout),
        out_format.feature_major,
        bool(need_points),
        bool(need_params),
        bool(need_scales),
    )
    return (
        g_x if need_points else None,
        g_table.to(params.dtype) if need_params else None,
        g_s if need_scales else None,
    )


def backward_levels(
    g_out,
    points,
    params,
    scales,
    layout: HashGridLayout,
    level_base,
    n_levels,
    need_points,
    need_params,
    need_scales,
    out_format: OutputFormat = DEFAULT,
):
    """:meth:`HashGridKernels.backward_levels` via the extension's ``hashgrid`` binding."""
    params = _aligned(params, layout.n_features_per_level)
    rows, w, px, ps = module().hashgrid_backward_levels(
        g_out,
        points,
        params,
        _opt(scales, points),
        *_meta(layout),
        out_format.feature_major,
        int(level_base),
        int(n_levels),
        bool(need_points),
        bool(need_params),
        bool(need_scales),
    )
    return (
        rows if need_params else None,
        w if need_params else None,
        px if need_points else None,
        ps if need_scales else None,
    )


def double_backward(
    gg_x,
    g_out,
    points,
    params,
    scales,
    layout: HashGridLayout,
    need_g_out,
    need_points,
    need_params,
    need_scales,
    out_format: OutputFormat = DEFAULT,
):
    """:meth:`HashGridKernels.double_backward` via the extension's ``hashgrid`` binding."""
    params = _aligned(params, layout.n_features_per_level)
    gg_out, g_x, g_table, g_s = module().hashgrid_double_backward(
        gg_x,
        g_out,
        points,
        params,
        _opt(scales, points),
        *_meta(layout),
        out_format.feature_major,
        bool(need_g_out),
        bool(need_points),
        bool(need_params),
        bool(need_scales),
    )
    return (
        gg_out if need_g_out else None,
        g_x if need_points else None,
        g_table.to(params.dtype) if need_params else None,
        g_s if need_scales else None,
    )
