"""Triton kernels for the hash-grid encoding: one program per (block of points, level), the
level on grid axis 1 (as tiny-cuda-nn) so that programs running together share one level's table
in L2. Dimensions are unrolled up to 4 (unused ones have weight 1 and vertex 0); the 2**D cell
corners are a static loop; features are a ``[BLOCK, FP]`` tile (``FP = max(F, 2)``, masked).

Backward: table gradients are scattered with ``tl.atomic_add`` into a float32 buffer (cast to the
table dtype at the end); point and scale gradients are atomically summed over the levels. Every
atomic is a pure accumulation read only after the kernel, so it is ``sem="relaxed"`` (a plain
``red.relaxed`` on sm_90; the default ``acq_rel`` adds fences and L1 invalidations per atomic). With
``DET`` (see :mod:`.deterministic`) the same kernel writes per-level buffers instead of atomics.
``_hashgrid_dbl_kernel`` is the backward of the point gradient (second order).

Implements :class:`rfkernels.hashgrid.contract.HashGridKernels` (the public launchers below).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .contract import AA_Z_MAX
from .layout import HashGridLayout
from .output import DEFAULT, OutputFormat

BLOCK = 128
INV_SQRT8 = 1.0 / math.sqrt(8.0)
TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def _num_warps(F: int) -> int:
    """8 warps for F >= 4: the [BLOCK, F] tiles then fit in registers (compiled offline for sm_90 with
    D=3, smoothstep and every gradient: F=8 takes 169 registers and no spills with 8 warps, 255
    registers + 376 B of spills with 4; F=4 80 vs 167 registers; F <= 2 is the same either way)."""
    return 8 if F >= 4 else 4


def _layout_constexprs(layout: HashGridLayout, scales) -> dict:
    """The compile-time layout arguments both kernels share (dimensions, feature count and its
    even-padded width, interpolation, anti-aliasing scales present or not)."""
    F = layout.n_features_per_level
    return dict(
        D=layout.n_input_dims,
        F=F,
        FP=max(F, 2),
        SMOOTH=layout.interpolation == "smoothstep",
        HAS_S=scales is not None,
    )


@triton.jit
def _axis(x_ptr, rows, m, scale, d: tl.constexpr, D: tl.constexpr, SMOOTH: tl.constexpr, BLOCK: tl.constexpr):
    """Axis d of the points: (cell uint32, upper-corner weight w1, dw1/dx, d2w1/dx2); dims >= D give
    zeros. Coordinates are clamped to [0, 1]; the derivatives are 0 for coordinates outside."""
    if d < D:
        x = tl.load(x_ptr + rows * D + d, mask=m, other=0.0)
        inside = (x >= 0.0) & (x <= 1.0)
        pos = tl.minimum(tl.maximum(x, 0.0), 1.0) * scale + 0.5
        cellf = tl.floor(pos)
        t = pos - cellf
        if SMOOTH:
            w1 = t * t * (3.0 - 2.0 * t)
            dw = tl.where(inside, 6.0 * t * (1.0 - t) * scale, 0.0)
            ddw = tl.where(inside, (6.0 - 12.0 * t) * scale * scale, 0.0)
        else:
            w1 = t
            dw = tl.where(inside, scale, 0.0)
            ddw = tl.zeros((BLOCK,), dtype=tl.float32)
        cell = cellf.to(tl.int32).to(tl.uint32, bitcast=True)
    else:
        w1 = tl.zeros((BLOCK,), dtype=tl.float32)
        dw = tl.zeros((BLOCK,), dtype=tl.float32)
        ddw = tl.zeros((BLOCK,), dtype=tl.float32)
        cell = tl.zeros((BLOCK,), dtype=tl.uint32)
    return cell, w1, dw, ddw


@triton.jit
def _pick(bit: tl.constexpr, w1):
    """Weight of the lower (bit 0: 1 - w1) or upper (bit 1: w1) corner along one axis."""
    if bit:
        r = w1
    else:
        r = 1.0 - w1
    return r


@triton.jit
def _dpick(bit: tl.constexpr, dw):
    if bit:
        r = dw
    else:
        r = -dw
    return r


@triton.jit
def _entry(
    c0,
    c1,
    c2,
    c3,
    b0: tl.constexpr,
    b1: tl.constexpr,
    b2: tl.constexpr,
    b3: tl.constexpr,
    s0,
    s1,
    s2,
    s3,
    hashed,
    size,
    D: tl.constexpr,
):
    """Table row (within the level) of vertex cell + bits: dense strides or the coherent prime hash."""
    v0 = c0 + b0
    dense = v0 * s0
    h = v0
    if D > 1:
        v1 = c1 + b1
        dense += v1 * s1
        h = h ^ (v1 * 2654435761)
    if D > 2:
        v2 = c2 + b2
        dense += v2 * s2
        h = h ^ (v2 * 805459861)
    if D > 3:
        v3 = c3 + b3
        dense += v3 * s3
        h = h ^ (v3 * 3674653429)
    return tl.where(hashed != 0, h, dense) % size


@triton.jit
def _corner(
    c: tl.constexpr,
    a0,
    a1,
    a2,
    a3,
    c0,
    c1,
    c2,
    c3,
    s0,
    s1,
    s2,
    s3,
    hashed,
    size,
    off,
    feat,
    F: tl.constexpr,
    D: tl.constexpr,
):
    """Corner ``c`` of each point's cell (bit d of c: upper vertex along axis d), the one home of
    the corner walk: per-axis weights (f0..f3; the corner's weight is their product), its global
    table row and the pointers of its F features."""
    f0 = _pick(c & 1, a0)
    f1 = _pick((c >> 1) & 1, a1)
    f2 = _pick((c >> 2) & 1, a2)
    f3 = _pick((c >> 3) & 1, a3)
    entry = _entry(c0, c1, c2, c3, c & 1, (c >> 1) & 1, (c >> 2) & 1, (c >> 3) & 1, s0, s1, s2, s3, hashed, size, D)
    row = off + entry.to(tl.int64)
    return f0, f1, f2, f3, row, row[:, None] * F + feat[None, :]


@triton.jit
def _aa(s_ptr, rows, m, scale, inv_sqrt8, z_max, two_over_sqrt_pi):
    """Anti-aliasing factor erf(z), z = 1 / (sqrt(8) s scale), and its derivative w.r.t. s."""
    s = tl.load(s_ptr + rows, mask=m, other=0.0)
    c = inv_sqrt8 / scale
    big = s > c / z_max
    s_safe = tl.where(big, s, 1.0)
    z = c / s_safe
    factor = tl.where(big, tl.erf(z), 1.0)
    dfactor = tl.where(big, -two_over_sqrt_pi * tl.exp(-z * z) * z / s_safe, 0.0)
    return factor, dfactor


@triton.jit
def _level_meta(level, off_ptr, size_ptr, scale_ptr, stride_ptr, hashed_ptr):
    """(first row, size uint32, cells per unit, hashed flag, 4 dense strides uint32) of a level."""
    off = tl.load(off_ptr + level)
    size = tl.load(size_ptr + level).to(tl.uint32, bitcast=True)
    scale = tl.load(scale_ptr + level)
    hashed = tl.load(hashed_ptr + level)
    s0 = tl.load(stride_ptr + level * 4 + 0).to(tl.uint32, bitcast=True)
    s1 = tl.load(stride_ptr + level * 4 + 1).to(tl.uint32, bitcast=True)
    s2 = tl.load(stride_ptr + level * 4 + 2).to(tl.uint32, bitcast=True)
    s3 = tl.load(stride_ptr + level * 4 + 3).to(tl.uint32, bitcast=True)
    return off, size, scale, hashed, s0, s1, s2, s3


@triton.jit
def _load_dim(ptr, rows, m, d: tl.constexpr, D: tl.constexpr, BLOCK: tl.constexpr):
    if d < D:
        v = tl.load(ptr + rows * D + d, mask=m, other=0.0)
    else:
        v = tl.zeros((BLOCK,), dtype=tl.float32)
    return v


@triton.jit
def _out_offsets(rows, level, feat, N, OUT_DIM, F: tl.constexpr, OUT_FM: tl.constexpr):
    """[BLOCK, FP] element offsets of the (point, level) features in the output buffer: point-major
    ``[N, L*F]``, or feature-major ``[L*F, N]`` (consecutive points at consecutive addresses)."""
    col = level * F + feat
    if OUT_FM:
        offs = col[None, :].to(tl.int64) * N + rows[:, None]
    else:
        # a (point, level) slice starts at a multiple of F (OUT_DIM = L*F): lets the compiler store and
        # load each point's F features as one vector, whatever it knows of OUT_DIM
        start = tl.multiple_of(rows * OUT_DIM + level * F, F)
        offs = start[:, None] + feat[None, :]
    return offs


@triton.jit
def _accumulate(ptr, offs, val, m, DET: tl.constexpr):
    """Deterministic mode: plain store into a per-level buffer; else atomic add."""
    if DET:
        tl.store(ptr + offs, val, mask=m)
    else:
        tl.atomic_add(ptr + offs, val, mask=m, sem="relaxed")


@triton.jit
def _hashgrid_kernel(
    x_ptr,
    table_ptr,
    s_ptr,
    out_ptr,
    g_out_ptr,
    g_table_ptr,
    g_x_ptr,
    g_s_ptr,
    emit_rows_ptr,
    emit_w_ptr,
    off_ptr,
    size_ptr,
    scale_ptr,
    stride_ptr,
    hashed_ptr,
    N,
    OUT_DIM,
    level_base,
    inv_sqrt8,
    z_max,
    two_over_sqrt_pi,
    D: tl.constexpr,
    F: tl.constexpr,
    FP: tl.constexpr,
    SMOOTH: tl.constexpr,
    HAS_S: tl.constexpr,
    BACKWARD: tl.constexpr,
    NEED_TABLE: tl.constexpr,
    NEED_X: tl.constexpr,
    NEED_S: tl.constexpr,
    DET: tl.constexpr,
    OUT_FM: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Forward (BACKWARD=0): out[n, level*F:(level+1)*F]. Backward: table/point/scale gradients,
    atomically accumulated, or with DET per level (level - level_base) into buffers: the table
    gradient as (global row, weight * factor) pairs per corner, the point/scale gradients as
    per-level partial sums, reduced in a fixed order by the caller."""
    level = tl.program_id(1) + level_base
    rows = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = rows < N
    prow = rows
    if DET:
        prow = rows + tl.program_id(1).to(tl.int64) * N
    feat = tl.arange(0, FP)
    fm = m[:, None] & (feat[None, :] < F)
    off, size, scale, hashed, s0, s1, s2, s3 = _level_meta(level, off_ptr, size_ptr, scale_ptr, stride_ptr, hashed_ptr)
    c0, a0, d0, _ = _axis(x_ptr, rows, m, scale, 0, D, SMOOTH, BLOCK)
    c1, a1, d1, _ = _axis(x_ptr, rows, m, scale, 1, D, SMOOTH, BLOCK)
    c2, a2, d2, _ = _axis(x_ptr, rows, m, scale, 2, D, SMOOTH, BLOCK)
    c3, a3, d3, _ = _axis(x_ptr, rows, m, scale, 3, D, SMOOTH, BLOCK)
    out_offs = _out_offsets(rows, level, feat, N, OUT_DIM, F, OUT_FM)
    factor = tl.full((BLOCK,), 1.0, tl.float32)
    if HAS_S:
        factor, dfactor = _aa(s_ptr, rows, m, scale, inv_sqrt8, z_max, two_over_sqrt_pi)
    if BACKWARD:
        g = tl.load(g_out_ptr + out_offs, mask=fm, other=0.0).to(tl.float32)
        gf = g * factor[:, None]
        gx0 = tl.zeros((BLOCK,), dtype=tl.float32)
        gx1 = tl.zeros((BLOCK,), dtype=tl.float32)
        gx2 = tl.zeros((BLOCK,), dtype=tl.float32)
        gx3 = tl.zeros((BLOCK,), dtype=tl.float32)
    acc = tl.zeros((BLOCK, FP), dtype=tl.float32)
    for c in tl.static_range(1 << D):
        f0, f1, f2, f3, row, ptrs = _corner(
            c, a0, a1, a2, a3, c0, c1, c2, c3, s0, s1, s2, s3, hashed, size, off, feat, F, D
        )
        w = f0 * f1 * f2 * f3
        if BACKWARD:
            if NEED_TABLE:
                if DET:
                    tl.store(emit_rows_ptr + prow * (1 << D) + c, row, mask=m)
                    tl.store(emit_w_ptr + prow * (1 << D) + c, w * factor, mask=m)
                else:
                    tl.atomic_add(g_table_ptr + ptrs, w[:, None] * gf, mask=fm, sem="relaxed")
            if NEED_X or NEED_S:
                val = tl.load(table_ptr + ptrs, mask=fm, other=0.0).to(tl.float32)
                if NEED_S:
                    acc += w[:, None] * val
                if NEED_X:
                    dot = tl.sum(val * gf, 1)
                    gx0 += dot * _dpick(c & 1, d0) * f1 * f2 * f3
                    gx1 += dot * f0 * _dpick((c >> 1) & 1, d1) * f2 * f3
                    gx2 += dot * f0 * f1 * _dpick((c >> 2) & 1, d2) * f3
                    gx3 += dot * f0 * f1 * f2 * _dpick((c >> 3) & 1, d3)
        else:
            val = tl.load(table_ptr + ptrs, mask=fm, other=0.0).to(tl.float32)
            acc += w[:, None] * val
    if BACKWARD:
        if NEED_X:
            _accumulate(g_x_ptr, prow * D, gx0, m, DET)
            if D > 1:
                _accumulate(g_x_ptr, prow * D + 1, gx1, m, DET)
            if D > 2:
                _accumulate(g_x_ptr, prow * D + 2, gx2, m, DET)
            if D > 3:
                _accumulate(g_x_ptr, prow * D + 3, gx3, m, DET)
        if NEED_S:
            _accumulate(g_s_ptr, prow, tl.sum(g * acc, 1) * dfactor, m, DET)
    else:
        tl.store(out_ptr + out_offs, (acc * factor[:, None]).to(out_ptr.dtype.element_ty), mask=fm)


@triton.jit
def _hashgrid_dbl_kernel(
    x_ptr,
    table_ptr,
    s_ptr,
    g_out_ptr,
    t_ptr,
    gg_out_ptr,
    g_table_ptr,
    g_x_ptr,
    g_s_ptr,
    off_ptr,
    size_ptr,
    scale_ptr,
    stride_ptr,
    hashed_ptr,
    N,
    OUT_DIM,
    inv_sqrt8,
    z_max,
    two_over_sqrt_pi,
    D: tl.constexpr,
    F: tl.constexpr,
    FP: tl.constexpr,
    SMOOTH: tl.constexpr,
    HAS_S: tl.constexpr,
    NEED_GOUT: tl.constexpr,
    NEED_TABLE: tl.constexpr,
    NEED_X: tl.constexpr,
    NEED_S: tl.constexpr,
    OUT_FM: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Double backward: the backward's point gradient g_x = sum_c (val_c . g factor) dW_c/dx,
    contracted with the incoming t = dL/dg_x, differentiated w.r.t. g_out (stored, one slot per
    point and level), the table, the points (second derivatives of W) and the scales (atomics).
    With G_d = dW/dx_d: W'_c = sum_d t_d G_d, H_c[e] = sum_d t_d d2W_c/dx_d dx_e."""
    level = tl.program_id(1)
    rows = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = rows < N
    feat = tl.arange(0, FP)
    fm = m[:, None] & (feat[None, :] < F)
    off, size, scale, hashed, s0, s1, s2, s3 = _level_meta(level, off_ptr, size_ptr, scale_ptr, stride_ptr, hashed_ptr)
    c0, a0, d0, e0 = _axis(x_ptr, rows, m, scale, 0, D, SMOOTH, BLOCK)
    c1, a1, d1, e1 = _axis(x_ptr, rows, m, scale, 1, D, SMOOTH, BLOCK)
    c2, a2, d2, e2 = _axis(x_ptr, rows, m, scale, 2, D, SMOOTH, BLOCK)
    c3, a3, d3, e3 = _axis(x_ptr, rows, m, scale, 3, D, SMOOTH, BLOCK)
    t0 = _load_dim(t_ptr, rows, m, 0, D, BLOCK)
    t1 = _load_dim(t_ptr, rows, m, 1, D, BLOCK)
    t2 = _load_dim(t_ptr, rows, m, 2, D, BLOCK)
    t3 = _load_dim(t_ptr, rows, m, 3, D, BLOCK)
    out_offs = _out_offsets(rows, level, feat, N, OUT_DIM, F, OUT_FM)
    factor = tl.full((BLOCK,), 1.0, tl.float32)
    if HAS_S:
        factor, dfactor = _aa(s_ptr, rows, m, scale, inv_sqrt8, z_max, two_over_sqrt_pi)
    g = tl.load(g_out_ptr + out_offs, mask=fm, other=0.0).to(tl.float32)
    gf = g * factor[:, None]
    hx0 = tl.zeros((BLOCK,), dtype=tl.float32)
    hx1 = tl.zeros((BLOCK,), dtype=tl.float32)
    hx2 = tl.zeros((BLOCK,), dtype=tl.float32)
    hx3 = tl.zeros((BLOCK,), dtype=tl.float32)
    acc = tl.zeros((BLOCK, FP), dtype=tl.float32)
    for c in tl.static_range(1 << D):
        f0, f1, f2, f3, _, ptrs = _corner(
            c, a0, a1, a2, a3, c0, c1, c2, c3, s0, s1, s2, s3, hashed, size, off, feat, F, D
        )
        b0 = c & 1
        b1 = (c >> 1) & 1
        b2 = (c >> 2) & 1
        b3 = (c >> 3) & 1
        g0 = t0 * _dpick(b0, d0)  # t_d * dW/dx_d factor along d
        g1 = t1 * _dpick(b1, d1)
        g2 = t2 * _dpick(b2, d2)
        g3 = t3 * _dpick(b3, d3)
        wt = g0 * f1 * f2 * f3 + f0 * g1 * f2 * f3 + f0 * f1 * g2 * f3 + f0 * f1 * f2 * g3  # W'_c
        if NEED_TABLE:
            tl.atomic_add(g_table_ptr + ptrs, wt[:, None] * gf, mask=fm, sem="relaxed")
        if NEED_GOUT or NEED_X or NEED_S:
            val = tl.load(table_ptr + ptrs, mask=fm, other=0.0).to(tl.float32)
            if NEED_GOUT or NEED_S:
                acc += wt[:, None] * val
            if NEED_X:
                dot = tl.sum(val * gf, 1)
                # H_c[e] = t_e d2W/dx_e^2 + dW/dx_e-factor * sum_{d != e} t_d dW/dx_d-factor (rest: f)
                hx0 += dot * (
                    t0 * _dpick(b0, e0) * f1 * f2 * f3 + _dpick(b0, d0) * (g1 * f2 * f3 + f1 * g2 * f3 + f1 * f2 * g3)
                )
                hx1 += dot * (
                    t1 * _dpick(b1, e1) * f0 * f2 * f3 + _dpick(b1, d1) * (g0 * f2 * f3 + f0 * g2 * f3 + f0 * f2 * g3)
                )
                hx2 += dot * (
                    t2 * _dpick(b2, e2) * f0 * f1 * f3 + _dpick(b2, d2) * (g0 * f1 * f3 + f0 * g1 * f3 + f0 * f1 * g3)
                )
                hx3 += dot * (
                    t3 * _dpick(b3, e3) * f0 * f1 * f2 + _dpick(b3, d3) * (g0 * f1 * f2 + f0 * g1 * f2 + f0 * f1 * g2)
                )
    if NEED_GOUT:
        tl.store(gg_out_ptr + out_offs, (acc * factor[:, None]).to(gg_out_ptr.dtype.element_ty), mask=fm)
    if NEED_X:
        tl.atomic_add(g_x_ptr + rows * D, hx0, mask=m, sem="relaxed")
        if D > 1:
            tl.atomic_add(g_x_ptr + rows * D + 1, hx1, mask=m, sem="relaxed")
        if D > 2:
            tl.atomic_add(g_x_ptr + rows * D + 2, hx2, mask=m, sem="relaxed")
        if D > 3:
            tl.atomic_add(g_x_ptr + rows * D + 3, hx3, mask=m, sem="relaxed")
    if NEED_S:
        tl.atomic_add(g_s_ptr + rows, tl.sum(g * acc, 1) * dfactor, mask=m, sem="relaxed")


def _launch(
    layout: HashGridLayout,
    points,
    params,
    scales,
    out=None,
    g_out=None,
    g_table=None,
    g_x=None,
    g_s=None,
    emit_rows=None,
    emit_w=None,
    level_base=0,
    n_levels=None,
    backward=False,
    det=False,
    out_format: OutputFormat = DEFAULT,
):
    N = points.shape[0]
    n_levels = layout.n_levels if n_levels is None else n_levels
    if N == 0 or n_levels == 0:
        return
    meta = layout.device_meta(points.device)
    F = layout.n_features_per_level
    dummy = points
    opt = lambda t: dummy if t is None else t  # noqa: E731
    grid = (triton.cdiv(N, BLOCK), n_levels)
    _hashgrid_kernel[grid](
        points,
        params,
        opt(scales),
        opt(out),
        opt(g_out),
        opt(g_table),
        opt(g_x),
        opt(g_s),
        opt(emit_rows),
        opt(emit_w),
        meta["offsets"],
        meta["sizes"],
        meta["scales"],
        meta["strides"],
        meta["hashed"],
        N,
        layout.output_dim,
        level_base,
        INV_SQRT8,
        AA_Z_MAX,
        TWO_OVER_SQRT_PI,
        **_layout_constexprs(layout, scales),
        BACKWARD=backward,
        NEED_TABLE=g_table is not None or emit_rows is not None,
        NEED_X=g_x is not None,
        NEED_S=g_s is not None,
        DET=det,
        OUT_FM=out_format.feature_major,
        BLOCK=BLOCK,
        num_warps=_num_warps(F),
    )


def forward(points, params, scales, layout: HashGridLayout, out_format: OutputFormat = DEFAULT):
    """points float32 [N, D], params [n_params] (float16/32), scales float32 [N] | None -> the features'
    buffer in ``out_format`` (default [N, L*F] float32)."""
    out = out_format.empty_buffer(points.shape[0], layout.output_dim, points.device)
    _launch(layout, points, params, scales, out=out, out_format=out_format)
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
    """-> (g_points [N, D] | None, g_params [n_params] in the table dtype | None, g_scales [N] | None)."""
    dev = points.device
    g_x = torch.zeros(points.shape, device=dev, dtype=torch.float32) if need_points else None
    g_table = torch.zeros(params.shape, device=dev, dtype=torch.float32) if need_params else None
    g_s = torch.zeros(points.shape[0], device=dev, dtype=torch.float32) if need_scales else None
    if need_points or need_params or need_scales:
        _launch(
            layout,
            points,
            params,
            scales,
            g_out=g_out,
            g_table=g_table,
            g_x=g_x,
            g_s=g_s,
            backward=True,
            out_format=out_format,
        )
    if g_table is not None:
        g_table = g_table.to(params.dtype)
    return g_x, g_table, g_s


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
    """Deterministic backward of levels [level_base, level_base + n_levels), no atomics ->
    (rows [n, N, 2^D] int64 global table rows | None, weights [n, N, 2^D] (times the anti-aliasing
    factor) | None, g_points partials [n, N, D] | None, g_scales partials [n, N] | None)."""
    N, D, dev = points.shape[0], layout.n_input_dims, points.device
    C = 1 << D
    rows = torch.zeros(n_levels, N, C, device=dev, dtype=torch.int64) if need_params else None
    w = torch.zeros(n_levels, N, C, device=dev, dtype=torch.float32) if need_params else None
    px = torch.zeros(n_levels, N, D, device=dev, dtype=torch.float32) if need_points else None
    ps = torch.zeros(n_levels, N, device=dev, dtype=torch.float32) if need_scales else None
    _launch(
        layout,
        points,
        params,
        scales,
        g_out=g_out,
        g_x=px,
        g_s=ps,
        emit_rows=rows,
        emit_w=w,
        level_base=level_base,
        n_levels=n_levels,
        backward=True,
        det=True,
        out_format=out_format,
    )
    return rows, w, px, ps


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
    """Backward of :func:`backward`'s point gradient, given its incoming gradient ``gg_x [N, D]``
    -> (g_g_out (g_out's buffer shape and dtype) | None, g_points [N, D] | None, g_params | None,
    g_scales [N] | None)."""
    N, dev = points.shape[0], points.device
    gg_out = torch.empty_like(g_out) if need_g_out else None
    g_x = torch.zeros(points.shape, device=dev) if need_points else None
    g_table = torch.zeros(params.shape, device=dev) if need_params else None
    g_s = torch.zeros(N, device=dev) if need_scales else None
    if N and (need_g_out or need_points or need_params or need_scales):
        meta = layout.device_meta(dev)
        F = layout.n_features_per_level
        opt = lambda t: points if t is None else t  # noqa: E731
        _hashgrid_dbl_kernel[(triton.cdiv(N, BLOCK), layout.n_levels)](
            points,
            params,
            opt(scales),
            g_out,
            gg_x,
            opt(gg_out),
            opt(g_table),
            opt(g_x),
            opt(g_s),
            meta["offsets"],
            meta["sizes"],
            meta["scales"],
            meta["strides"],
            meta["hashed"],
            N,
            layout.output_dim,
            INV_SQRT8,
            AA_Z_MAX,
            TWO_OVER_SQRT_PI,
            **_layout_constexprs(layout, scales),
            NEED_GOUT=need_g_out,
            NEED_TABLE=need_params,
            NEED_X=need_points,
            NEED_S=need_scales,
            OUT_FM=out_format.feature_major,
            BLOCK=BLOCK,
            num_warps=_num_warps(F),
        )
    return gg_out, g_x, (g_table.to(params.dtype) if need_params else None), g_s
