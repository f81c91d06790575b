"""Triton kernels for the feature gather: one program per (block of BLOCK_N points, block of
BLOCK_C channels, batch), looping over the V views.

Per view the program transforms and projects its points (the CAM_STRIDE packed camera floats are scalar
loads), then loads the four bilinear corners as ``[BLOCK_N, BLOCK_C]`` tiles of the channels-last
feature map (each row contiguous in C). Reductions accumulate in registers (Welford for mean_var,
first strict maximum for max), so only the reduced tensor is written. The backward recomputes the
projection, forms the gradient of each per-view sample, scatters it into the 4 corners of the
feature-map gradient with ``tl.atomic_add`` (float, or int64 fixed point when deterministic) and
(optionally) chains it to the points (one partial per channel block, summed afterwards).

Implements :class:`rfkernels.gather.contract.GatherKernels` (the public launchers below).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import contract

# the contract's constants as compile-time globals of the kernels (Triton reads only constexpr globals)
REDUCE_NONE = tl.constexpr(contract.REDUCE_NONE)
REDUCE_MEAN = tl.constexpr(contract.REDUCE_MEAN)
REDUCE_MEAN_VAR = tl.constexpr(contract.REDUCE_MEAN_VAR)
REDUCE_MAX = tl.constexpr(contract.REDUCE_MAX)
CAM_STRIDE = tl.constexpr(contract.CAM_STRIDE)

MAX_BLOCK_C = 128
# BLOCK_N * BLOCK_C elements per program over NUM_WARPS warps: 2 per thread. Each element carries its
# own corner addresses and bilinear terms through the backward's four scatters, so 4 per thread does
# not fit the occupancy target (tests/ci/sm90_gate.py) and spills in some variants.
TILE = 512
NUM_WARPS = 8


def _blocks(C: int) -> tuple[int, int]:
    block_c = min(max(triton.next_power_of_2(C), 2), MAX_BLOCK_C)
    return max(TILE // block_c, 1), block_c


@triton.jit
def _project(cam_ptr, px, py, pz, near_eps, H, W):
    """One view's camera (CAM_STRIDE floats: 12 of [R|t], 6 of K_feat) -> camera coords, safe depth,
    feature-pixel coords (centres at integers) and validity, all [BLOCK_N]."""
    xc = tl.load(cam_ptr + 0) * px + tl.load(cam_ptr + 1) * py + tl.load(cam_ptr + 2) * pz + tl.load(cam_ptr + 3)
    yc = tl.load(cam_ptr + 4) * px + tl.load(cam_ptr + 5) * py + tl.load(cam_ptr + 6) * pz + tl.load(cam_ptr + 7)
    zc = tl.load(cam_ptr + 8) * px + tl.load(cam_ptr + 9) * py + tl.load(cam_ptr + 10) * pz + tl.load(cam_ptr + 11)
    front = zc > near_eps
    zs = tl.where(front, zc, 1.0)
    xf = (tl.load(cam_ptr + 12) * xc + tl.load(cam_ptr + 13) * yc + tl.load(cam_ptr + 14) * zc) / zs
    yf = (tl.load(cam_ptr + 15) * xc + tl.load(cam_ptr + 16) * yc + tl.load(cam_ptr + 17) * zc) / zs
    valid = front & (xf >= -0.5) & (xf <= W - 0.5) & (yf >= -0.5) & (yf <= H - 0.5)
    return xc, yc, zc, zs, xf, yf, valid


@triton.jit
def _corners(xf, yf, valid, H, W, C):
    """Bilinear footprint: element offsets (y*W + x)*C of the 4 corners [00, 01, 10, 11] (y, x),
    their in-bounds masks (zeros padding) and the fractional weights (wx1, wy1)."""
    xf = tl.where(valid, xf, -2.0)  # keeps far-away / behind-camera coords out of int conversion
    yf = tl.where(valid, yf, -2.0)
    x0f = tl.floor(xf)
    y0f = tl.floor(yf)
    wx1 = xf - x0f
    wy1 = yf - y0f
    x0 = x0f.to(tl.int32)
    y0 = y0f.to(tl.int32)
    in_x0 = (x0 >= 0) & (x0 < W)
    in_x1 = (x0 + 1 >= 0) & (x0 + 1 < W)
    in_y0 = valid & (y0 >= 0) & (y0 < H)
    in_y1 = valid & (y0 + 1 >= 0) & (y0 + 1 < H)
    o00 = (y0 * W + x0) * C
    return (
        o00,
        o00 + C,
        o00 + W * C,
        o00 + W * C + C,
        in_y0 & in_x0,
        in_y0 & in_x1,
        in_y1 & in_x0,
        in_y1 & in_x1,
        wx1,
        wy1,
    )


@triton.jit
def _load_tile(ptr, off, m, ch, cm):
    return tl.load(ptr + off[:, None] + ch[None, :], mask=m[:, None] & cm[None, :], other=0.0)


@triton.jit
def _scatter(ptr, off, m, ch, cm, val, scale, FIXED: tl.constexpr):
    """Atomic add of a [BLOCK_N, BLOCK_C] tile into the rows ``off`` (relaxed: only the sum matters).
    FIXED: ``ptr`` is int64 and ``val * scale`` (scale a power of two) is added as a fixed-point
    integer, so the sum does not depend on the order of the atomics (deterministic)."""
    if FIXED:
        val = (val * scale).to(tl.int64)
    tl.atomic_add(ptr + off[:, None] + ch[None, :], val, mask=m[:, None] & cm[None, :], sem="relaxed")


@triton.jit
def _gather_fwd_kernel(
    points_ptr,
    feat_ptr,
    cam_ptr,
    out_ptr,
    mask_ptr,
    camc_ptr,
    arg_ptr,
    N,
    V,
    C,
    H,
    W,
    near_eps,
    REDUCE: tl.constexpr,
    WRITE_CAM: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """REDUCE: REDUCE_NONE -> out [B,N,V,C]; REDUCE_MEAN, REDUCE_MAX -> [B,N,C]; REDUCE_MEAN_VAR -> [B,N,2C]."""
    b = tl.program_id(2).to(tl.int64)
    n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    ch = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    nm = n < N
    cm = ch < C
    first_c = (tl.zeros((BLOCK_N,), dtype=tl.int32) + tl.program_id(1)) == 0  # [BLOCK_N] (mask dtype)
    bn = b * N + n  # [BLOCK_N] int64 row index into [B, N, ...]
    px = tl.load(points_ptr + bn * 3 + 0, mask=nm, other=0.0)
    py = tl.load(points_ptr + bn * 3 + 1, mask=nm, other=0.0)
    pz = tl.load(points_ptr + bn * 3 + 2, mask=nm, other=0.0)
    acc = tl.zeros((BLOCK_N, BLOCK_C), dtype=tl.float32)  # sum (mean) | running mean | running max
    m2 = tl.zeros((BLOCK_N, BLOCK_C), dtype=tl.float32)  # Welford sum of squared deviations
    arg = tl.full((BLOCK_N, BLOCK_C), -1, dtype=tl.int32)
    count = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for v in range(V):
        bv = b * V + v
        xc, yc, zc, zs, xf, yf, valid = _project(cam_ptr + bv * CAM_STRIDE, px, py, pz, near_eps, H, W)
        valid = valid & nm
        row = bn * V + v
        tl.store(mask_ptr + row, valid.to(tl.uint8), mask=nm & first_c)
        if WRITE_CAM:
            tl.store(camc_ptr + row * 3 + 0, xc, mask=nm & first_c)
            tl.store(camc_ptr + row * 3 + 1, yc, mask=nm & first_c)
            tl.store(camc_ptr + row * 3 + 2, zc, mask=nm & first_c)
        o00, o01, o10, o11, m00, m01, m10, m11, wx1, wy1 = _corners(xf, yf, valid, H, W, C)
        fbase = feat_ptr + bv * H * W * C
        wx1 = wx1[:, None]
        wy1 = wy1[:, None]
        s = (1.0 - wy1) * (
            (1.0 - wx1) * _load_tile(fbase, o00, m00, ch, cm) + wx1 * _load_tile(fbase, o01, m01, ch, cm)
        ) + wy1 * ((1.0 - wx1) * _load_tile(fbase, o10, m10, ch, cm) + wx1 * _load_tile(fbase, o11, m11, ch, cm))
        vm = valid[:, None]
        if REDUCE == REDUCE_NONE:
            tl.store(out_ptr + row[:, None] * C + ch[None, :], s, mask=nm[:, None] & cm[None, :])
        elif REDUCE == REDUCE_MEAN:
            acc += s  # s is exactly 0 for invalid views
            count += valid.to(tl.float32)
        elif REDUCE == REDUCE_MEAN_VAR:
            count += valid.to(tl.float32)
            delta = s - acc
            acc += tl.where(vm, delta / tl.maximum(count, 1.0)[:, None], 0.0)
            m2 += tl.where(vm, delta * (s - acc), 0.0)
        else:
            take = vm & ((arg < 0) | (s > acc))
            acc = tl.where(take, s, acc)
            arg = tl.where(take, v, arg)
    if REDUCE != REDUCE_NONE:
        om = nm[:, None] & cm[None, :]
        if REDUCE == REDUCE_MEAN:
            acc = acc / tl.maximum(count, 1.0)[:, None]
        if REDUCE == REDUCE_MEAN_VAR:
            tl.store(out_ptr + bn[:, None] * (2 * C) + ch[None, :], acc, mask=om)
            tl.store(out_ptr + bn[:, None] * (2 * C) + C + ch[None, :], m2 / tl.maximum(count, 1.0)[:, None], mask=om)
        else:
            tl.store(out_ptr + bn[:, None] * C + ch[None, :], acc, mask=om)
        if REDUCE == REDUCE_MAX:
            tl.store(arg_ptr + bn[:, None] * C + ch[None, :], arg, mask=om)


@triton.jit
def _gather_bwd_kernel(
    g_out_ptr,
    g_cam_ptr,
    points_ptr,
    feat_ptr,
    cam_ptr,
    out_ptr,
    mask_ptr,
    arg_ptr,
    g_feat_ptr,
    g_points_ptr,
    scale_ptr,
    N,
    V,
    C,
    H,
    W,
    near_eps,
    REDUCE: tl.constexpr,
    HAS_GCAM: tl.constexpr,
    NEED_GP: tl.constexpr,
    FIXED: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """Validity comes from the saved mask (same views as the forward). Per view, the gradient of
    the sample is g_s = g_out[v] (none), g/count (mean), (g_mean + 2 g_var (s - mean))/count
    (mean_var) or g where v is the saved argmax (max)."""
    b = tl.program_id(2).to(tl.int64)
    n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    ch = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    nm = n < N
    cm = ch < C
    om = nm[:, None] & cm[None, :]
    bn = b * N + n
    px = tl.load(points_ptr + bn * 3 + 0, mask=nm, other=0.0)
    py = tl.load(points_ptr + bn * 3 + 1, mask=nm, other=0.0)
    pz = tl.load(points_ptr + bn * 3 + 2, mask=nm, other=0.0)
    inv = tl.zeros((BLOCK_N,), dtype=tl.float32)
    if REDUCE == REDUCE_MEAN or REDUCE == REDUCE_MEAN_VAR:
        count = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for v in range(V):
            count += tl.load(mask_ptr + bn * V + v, mask=nm, other=0).to(tl.float32)
        inv = 1.0 / tl.maximum(count, 1.0)
    g_red = tl.zeros((BLOCK_N, BLOCK_C), dtype=tl.float32)  # grad of the reduced output
    if REDUCE == REDUCE_MEAN or REDUCE == REDUCE_MAX:
        g_red = tl.load(g_out_ptr + bn[:, None] * C + ch[None, :], mask=om, other=0.0)
    if REDUCE == REDUCE_MEAN_VAR:
        g_red = tl.load(g_out_ptr + bn[:, None] * (2 * C) + ch[None, :], mask=om, other=0.0)
        g_var = tl.load(g_out_ptr + bn[:, None] * (2 * C) + C + ch[None, :], mask=om, other=0.0)
        mean = tl.load(out_ptr + bn[:, None] * (2 * C) + ch[None, :], mask=om, other=0.0)
    if REDUCE == REDUCE_MAX:
        arg = tl.load(arg_ptr + bn[:, None] * C + ch[None, :], mask=om, other=-1)
    scale = 1.0
    if FIXED:
        scale = tl.load(scale_ptr)
    gpx = tl.zeros((BLOCK_N,), dtype=tl.float32)
    gpy = tl.zeros((BLOCK_N,), dtype=tl.float32)
    gpz = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for v in range(V):
        bv = b * V + v
        cam = cam_ptr + bv * CAM_STRIDE
        xc, yc, zc, zs, xf, yf, valid = _project(cam, px, py, pz, near_eps, H, W)
        row = bn * V + v
        valid = (tl.load(mask_ptr + row, mask=nm, other=0) != 0) & nm
        o00, o01, o10, o11, m00, m01, m10, m11, wx1, wy1 = _corners(xf, yf, valid, H, W, C)
        vm = valid[:, None] & cm[None, :]
        if REDUCE == REDUCE_NONE:
            g_s = tl.load(g_out_ptr + row[:, None] * C + ch[None, :], mask=vm, other=0.0)
        elif REDUCE == REDUCE_MEAN:
            g_s = g_red * inv[:, None]
        elif REDUCE == REDUCE_MAX:
            g_s = tl.where(arg == v, g_red, 0.0)
        else:
            g_s = g_red  # completed below once the sample is known
        fbase = feat_ptr + bv * H * W * C
        if NEED_GP or REDUCE == REDUCE_MEAN_VAR:
            f00 = _load_tile(fbase, o00, m00, ch, cm)
            f01 = _load_tile(fbase, o01, m01, ch, cm)
            f10 = _load_tile(fbase, o10, m10, ch, cm)
            f11 = _load_tile(fbase, o11, m11, ch, cm)
            wx = wx1[:, None]
            wy = wy1[:, None]
            if REDUCE == REDUCE_MEAN_VAR:
                s = (1.0 - wy) * ((1.0 - wx) * f00 + wx * f01) + wy * ((1.0 - wx) * f10 + wx * f11)
                g_s = (g_red + 2.0 * g_var * (s - mean)) * inv[:, None]
        g_s = tl.where(vm, g_s, 0.0)
        gbase = g_feat_ptr + bv * H * W * C
        wx = wx1[:, None]
        wy = wy1[:, None]
        _scatter(gbase, o00, m00, ch, cm, (1.0 - wy) * (1.0 - wx) * g_s, scale, FIXED)
        _scatter(gbase, o01, m01, ch, cm, (1.0 - wy) * wx * g_s, scale, FIXED)
        _scatter(gbase, o10, m10, ch, cm, wy * (1.0 - wx) * g_s, scale, FIXED)
        _scatter(gbase, o11, m11, ch, cm, wy * wx * g_s, scale, FIXED)
        if NEED_GP:
            gxf = tl.sum(g_s * ((1.0 - wy) * (f01 - f00) + wy * (f11 - f10)), 1)
            gyf = tl.sum(g_s * ((1.0 - wx) * (f10 - f00) + wx * (f11 - f01)), 1)
            # xf = (k0 . x_cam) / z  =>  d xf / d x_cam = (k00, k01, k02 - xf) / z  (same for yf)
            gxc = (gxf * tl.load(cam + 12) + gyf * tl.load(cam + 15)) / zs
            gyc = (gxf * tl.load(cam + 13) + gyf * tl.load(cam + 16)) / zs
            gzc = (gxf * (tl.load(cam + 14) - xf) + gyf * (tl.load(cam + 17) - yf)) / zs
            gxc = tl.where(valid, gxc, 0.0)
            gyc = tl.where(valid, gyc, 0.0)
            gzc = tl.where(valid, gzc, 0.0)
            if HAS_GCAM:  # camera coords are an output for every view; counted once (channel block 0)
                cm0 = nm & ((tl.zeros((BLOCK_N,), dtype=tl.int32) + tl.program_id(1)) == 0)
                gxc += tl.load(g_cam_ptr + row * 3 + 0, mask=cm0, other=0.0)
                gyc += tl.load(g_cam_ptr + row * 3 + 1, mask=cm0, other=0.0)
                gzc += tl.load(g_cam_ptr + row * 3 + 2, mask=cm0, other=0.0)
            gpx += tl.load(cam + 0) * gxc + tl.load(cam + 4) * gyc + tl.load(cam + 8) * gzc  # R^T g
            gpy += tl.load(cam + 1) * gxc + tl.load(cam + 5) * gyc + tl.load(cam + 9) * gzc
            gpz += tl.load(cam + 2) * gxc + tl.load(cam + 6) * gyc + tl.load(cam + 10) * gzc
    if NEED_GP:  # one partial per channel block, summed by the launcher (no float atomics)
        gp_ptr = g_points_ptr + tl.program_id(1).to(tl.int64) * tl.num_programs(2) * N * 3 + bn * 3
        tl.store(gp_ptr + 0, gpx, mask=nm)
        tl.store(gp_ptr + 1, gpy, mask=nm)
        tl.store(gp_ptr + 2, gpz, mask=nm)


def _out_shape(B, N, V, C, reduce):
    if reduce == contract.REDUCE_NONE:
        return (B, N, V, C)
    return (B, N, 2 * C if reduce == contract.REDUCE_MEAN_VAR else C)


def gather_forward(points, feats, cams, near_eps, reduce, want_cam):
    """points [B,N,3], feats [B,V,H,W,C], cams [B,V,CAM_STRIDE] (float32, contiguous), reduce code ->
    (out, mask [B,N,V] bool, camera coords [B,N,V,3] (opencv) | None, argmax [B,N,C] int32 | None)."""
    B, N = points.shape[:2]
    V, H, W, C = feats.shape[1:]
    dev = points.device
    out = torch.empty(_out_shape(B, N, V, C, reduce), device=dev)
    mask = torch.empty(B, N, V, dtype=torch.uint8, device=dev)
    cam = torch.empty(B, N, V, 3, device=dev) if want_cam else None
    arg = torch.empty(B, N, C, dtype=torch.int32, device=dev) if reduce == contract.REDUCE_MAX else None
    if B * N:
        block_n, block_c = _blocks(C)
        grid = (triton.cdiv(N, block_n), triton.cdiv(C, block_c), B)
        _gather_fwd_kernel[grid](
            points,
            feats,
            cams,
            out,
            mask,
            cam if cam is not None else out,
            arg if arg is not None else mask,
            N,
            V,
            C,
            H,
            W,
            near_eps,
            REDUCE=reduce,
            WRITE_CAM=want_cam,
            BLOCK_N=block_n,
            BLOCK_C=block_c,
            num_warps=NUM_WARPS,
        )
    return out, mask.view(torch.bool), cam, arg


def gather_backward(g_out, g_cam, points, feats, cams, out, mask, arg, near_eps, reduce, need_points, scale=None):
    """-> (g_feats [B,V,H,W,C], g_points [B,N,3] | None). ``scale`` ([1] float32 power of two, see
    :func:`rfkernels.gather.ops.fixed_point_scale`): accumulate the feature gradient in int64 fixed point
    (deterministic) instead of float atomics."""
    B, N = points.shape[:2]
    V, H, W, C = feats.shape[1:]
    block_n, block_c = _blocks(C)
    grid = (triton.cdiv(N, block_n), triton.cdiv(C, block_c), B)
    fixed = scale is not None
    acc = torch.zeros(feats.shape, dtype=torch.int64 if fixed else torch.float32, device=feats.device)
    g_points = torch.zeros((grid[1], B, N, 3), device=points.device) if need_points else None
    if B * N:
        _gather_bwd_kernel[grid](
            g_out,
            g_cam if g_cam is not None else g_out,
            points,
            feats,
            cams,
            out if out is not None else g_out,
            mask.view(torch.uint8),
            arg if arg is not None else mask,
            acc,
            g_points if g_points is not None else points,
            scale if fixed else cams,
            N,
            V,
            C,
            H,
            W,
            near_eps,
            REDUCE=reduce,
            HAS_GCAM=g_cam is not None,
            NEED_GP=need_points,
            FIXED=fixed,
            BLOCK_N=block_n,
            BLOCK_C=block_c,
            num_warps=NUM_WARPS,
        )
    g_feats = (acc.double() / scale.double()).float() if fixed else acc
    return g_feats, (g_points.sum(0) if need_points else None)
