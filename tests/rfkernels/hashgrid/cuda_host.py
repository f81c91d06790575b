"""``rfkernels/hashgrid/cuda.py`` look-alike running csrc/hashgrid/kernels.cu's per-(point, level) code on
the CPU. The level metadata and table alignment come from the real cuda.py (``_meta``,
``_aligned``); output allocation (the features' buffer, the table gradient of half tables split
into hashed levels accumulated in half and dense levels in float32) mirrors csrc/hashgrid/bind.cpp."""

import ctypes

import torch

from rfkernels.hashgrid.cuda import _aligned, _meta
from rfkernels.hashgrid.layout import HashGridLayout
from rfkernels.hashgrid.output import DEFAULT, OutputFormat
from tests.helpers.cuda_host import load, ptr

# HashGridOutDtype (csrc/hashgrid/kernels.h) of a features' buffer
OUT_DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


def _common(points, params, scales, layout: HashGridLayout, out_format: OutputFormat, features: torch.Tensor):
    """The leading arguments of every host_hashgrid_* function (HG_ARGS in hashgrid_host.cu), plus
    the metadata tensors they point into (kept alive by the caller). ``features``: the call's
    features' buffer (out or g_out), checked as the binding does."""
    rows, cols = points.shape[0], layout.output_dim
    expected = (cols, rows) if out_format.feature_major else (rows, cols)
    assert tuple(features.shape) == expected and features.is_contiguous(), (features.shape, expected)
    offsets, sizes, level_scales, strides, hashed, F, smooth, aa_z_max = _meta(layout)
    assert points.dtype == torch.float32 and points.is_contiguous() and params.is_contiguous()
    assert params.dtype in (torch.float32, torch.float16) and params.data_ptr() % (F * params.element_size()) == 0
    assert scales is None or (scales.dtype == torch.float32 and scales.is_contiguous())
    if scales is not None and scales.numel() == 0:
        scales = None  # as the binding: empty scales (also N == 0) -> null pointer
    meta = [
        torch.tensor(offsets, dtype=torch.int64),
        torch.tensor(sizes, dtype=torch.int64),
        torch.tensor(level_scales, dtype=torch.float64),
        torch.tensor(strides, dtype=torch.int64),
        torch.tensor(hashed, dtype=torch.int64),
    ]
    c_args = [
        ptr(points),
        ptr(params),
        ptr(scales),
        ctypes.c_int64(points.shape[0]),
        ctypes.c_int(points.shape[1]),
        ctypes.c_int(len(offsets)),
        ctypes.c_int(F),
        ctypes.c_int(params.dtype == torch.float16),
        ctypes.c_int(smooth),
        ctypes.c_double(aa_z_max),
        *map(ptr, meta),
        ctypes.c_int(out_format.feature_major),
        ctypes.c_int(OUT_DTYPE_CODES[features.dtype]),
    ]
    return c_args, meta


def _check(rc, what):
    assert rc == 0, f"host {what} returned error {rc}"


def _check_need_scales(need_scales, points, scales):
    """csrc/hashgrid/bind.cpp's check: scale gradients need scales (or no points)."""
    if need_scales and (scales is None or scales.numel() == 0) and points.shape[0] != 0:
        raise RuntimeError("need_scales requires scales")


def _zeros_if(need, *shape):
    return torch.zeros(*shape) if need else torch.empty(0)


def forward(points, params, scales, layout: HashGridLayout, out_format: OutputFormat = DEFAULT):
    params = _aligned(params, layout.n_features_per_level)
    out = out_format.empty_buffer(points.shape[0], layout.output_dim, points.device)
    c_args, _keep = _common(points, params, scales, layout, out_format, out)
    _check(load("hashgrid").host_hashgrid_forward(*c_args, ptr(out)), "forward")
    return out


def _dense_levels(layout: HashGridLayout):
    """(first param, param count) of each dense level (bind.cpp's table_grad / merge_dense_levels)."""
    F = layout.n_features_per_level
    return [
        (layout.level_offsets[l] * F, layout.level_size(l) * F)
        for l in range(layout.n_levels)
        if not layout.level_hashed[l]
    ]


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
    params = _aligned(params, layout.n_features_per_level)
    c_args, _keep = _common(points, params, scales, layout, out_format, g_out)
    _check_need_scales(need_scales, points, scales)
    g_x = _zeros_if(need_points, *points.shape)
    g_s = _zeros_if(need_scales, points.shape[0])
    half = params.dtype == torch.float16
    g_table = torch.zeros(params.numel(), dtype=params.dtype) if need_params else torch.empty(0)
    dense = _dense_levels(layout) if half and need_params else []
    g_dense = torch.zeros(max((a + n for a, n in dense), default=0))  # float32 sums of the dense levels
    g_f32, g_half = (g_dense, g_table) if half else (g_table, torch.empty(0))
    _check(
        load("hashgrid").host_hashgrid_backward(*c_args, ptr(g_out), ptr(g_f32), ptr(g_half), ptr(g_x), ptr(g_s)),
        "backward",
    )
    for start, n in dense:
        g_table[start : start + n] = g_dense[start : start + n]
    return (
        g_x if need_points else None,
        g_table if need_params else None,
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
    params = _aligned(params, layout.n_features_per_level)
    c_args, _keep = _common(points, params, scales, layout, out_format, g_out)
    _check_need_scales(need_scales, points, scales)
    N, D = points.shape
    C = 1 << D
    # torch.empty like the binding: every entry must be written by the kernel (NaN-filled to catch gaps)
    rows = torch.full((n_levels, N, C), -1, dtype=torch.int64) if need_params else torch.empty(0, dtype=torch.int64)
    w = torch.full((n_levels, N, C), float("nan")) if need_params else torch.empty(0)
    px = torch.full((n_levels, N, D), float("nan")) if need_points else torch.empty(0)
    ps = torch.full((n_levels, N), float("nan")) if need_scales else torch.empty(0)
    _check(
        load("hashgrid").host_hashgrid_backward_levels(
            *c_args, ptr(g_out), ctypes.c_int(level_base), ctypes.c_int(n_levels), ptr(rows), ptr(w), ptr(px), ptr(ps)
        ),
        "backward_levels",
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
    params = _aligned(params, layout.n_features_per_level)
    c_args, _keep = _common(points, params, scales, layout, out_format, g_out)
    _check_need_scales(need_scales, points, scales)
    gg_out = torch.full_like(g_out, float("nan")) if need_g_out else torch.empty(0)
    g_x = _zeros_if(need_points, *points.shape)
    g_table = _zeros_if(need_params, params.numel())
    g_s = _zeros_if(need_scales, points.shape[0])
    _check(
        load("hashgrid").host_hashgrid_double_backward(
            *c_args, ptr(g_out), ptr(gg_x), ptr(gg_out), ptr(g_table), ptr(g_x), ptr(g_s)
        ),
        "double_backward",
    )
    return (
        gg_out if need_g_out else None,
        g_x if need_points else None,
        g_table.to(params.dtype) if need_params else None,
        g_s if need_scales else None,
    )
