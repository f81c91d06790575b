"""Triton kernels for occupancy-grid marching: three kernels and a little PyTorch between them.

1. ``_intersect_kernel``: one lane per (ray, box), the slab test.
2. ``_dda_kernel``: one lane per (ray, segment) (segments from :func:`.segments.build_segments`);
   each lane walks its cells in lock step with the others (``X+Y+Z`` iterations, masked) and writes
   every visited cell's exit and occupancy; :func:`.segments.cell_table` turns them into the march's
   table (running-max exits, the stop point).
3. ``_march_kernel``: one lane per ray, two passes over the same step sequence. ``COUNT`` counts
   each ray's intervals and its terminate plane; the counts' cumulative sum gives the packed offsets
   (the library's layout); ``FILL`` repeats the march and writes ``t_starts``/``t_ends`` there. Each
   lane keeps a pointer into its table that only moves forward (midpoints increase), so a step costs
   O(1) amortized loads.

Every operation is the reference's float32 operation in the same order (divisions exactly rounded
with ``div_rn``; fused multiply-adds disabled at launch), so the intervals match :mod:`.reference`.
Implements :class:`rfkernels.occgrid.contract.OccgridKernels`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import contract
from .segments import build_segments, cell_table

DDA_EPS = tl.constexpr(contract.DDA_EPS)
DT_MAX = tl.constexpr(contract.DT_MAX)
BLOCK = 128
NO_LIMIT = 2**62  # max_steps <= 0: a count no ray reaches
LAUNCH = {"enable_fp_fusion": False}  # no a*b+c -> fma contraction: the reference rounds each op


@triton.jit
def _slab(o, inv, lo_box, hi_box):
    """One axis of the slab test: (entry, exit) ordered by the sign of ``inv``."""
    a = (lo_box - o) * inv
    b = (hi_box - o) * inv
    forward = inv >= 0
    return tl.where(forward, a, b), tl.where(forward, b, a)


@triton.jit(do_not_specialize=["n"])  # ray counts are data: no variant per count
def _intersect_kernel(o_ptr, d_ptr, box_ptr, tmin_ptr, tmax_ptr, hit_ptr, n, L, near, far, miss, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    r, b = i // L, i % L
    ox, oy, oz = tl.load(o_ptr + r * 3, m), tl.load(o_ptr + r * 3 + 1, m), tl.load(o_ptr + r * 3 + 2, m)
    dx, dy, dz = tl.load(d_ptr + r * 3, m, 1.0), tl.load(d_ptr + r * 3 + 1, m, 1.0), tl.load(d_ptr + r * 3 + 2, m, 1.0)
    tmin, tmax = _slab(ox, tl.math.div_rn(1.0, dx), tl.load(box_ptr + b * 6, m), tl.load(box_ptr + b * 6 + 3, m))
    hit = m
    for ax in tl.static_range(1, 3):
        o = oy if ax == 1 else oz
        d = dy if ax == 1 else dz
        lo, hi = _slab(
            o, tl.math.div_rn(1.0, d), tl.load(box_ptr + b * 6 + ax, m), tl.load(box_ptr + b * 6 + 3 + ax, m)
        )
        hit = hit & ~((tmin > hi) | (lo > tmax))
        tmin = tl.where(lo > tmin, lo, tmin)
        tmax = tl.where(hi < tmax, hi, tmax)
    hit = hit & ~(tmax <= 0)
    tmin = tl.where(tmin != tmin, near, tl.maximum(tmin, near))  # fmax: a NaN operand yields the other
    tmax = tl.where(tmax != tmax, far, tl.minimum(tmax, far))
    tl.store(tmin_ptr + i, tl.where(hit, tmin, miss), m)
    tl.store(tmax_ptr + i, tl.where(hit, tmax, miss), m)
    tl.store(hit_ptr + i, hit.to(tl.int8), m)


@triton.jit
def _cell_index(x, res):
    """Unit-cube position * resolution -> cell index (truncated, clamped into [0, res - 1]; NaN -> 0)."""
    x = tl.where(x != x, 0.0, x)
    x = tl.minimum(tl.maximum(x, -1.0), tl.zeros_like(x) + res)  # res may be the JIT's constant 1
    return tl.minimum(tl.maximum(x.to(tl.int32), 0), res - 1)


@triton.jit
def _fmin(a, b):
    return tl.where(a != a, b, tl.where(b != b, a, tl.minimum(a, b)))


@triton.jit(do_not_specialize=["n", "X", "Y", "Z", "n_cells"])  # sizes are data: one kernel for all of them
def _dda_kernel(
    o_ptr, d_ptr, box_ptr, bin_ptr, lo_ptr, hi_ptr, lvl_ptr, valid_ptr, exit_ptr, occ_ptr,
    n, S, X, Y, Z, n_cells, BLOCK: tl.constexpr,
):  # fmt: skip
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    r = i // S
    lo, hi = tl.load(lo_ptr + i, m, 0.0), tl.load(hi_ptr + i, m, 0.0)
    lvl = tl.load(lvl_ptr + i, m, 0)
    alive = (tl.load(valid_ptr + i, m, 0) != 0) & m
    t_in = lo + DDA_EPS
    t_out = hi - DDA_EPS
    # per axis: position -> cell, next plane crossing (tdist), its increment (delta), step, overflow
    cx, tx, ex, sx, ox_ = _axis_setup(o_ptr, d_ptr, box_ptr, r, lvl, 0, X, lo, hi, t_in, t_out, m)
    cy, ty, ey, sy, oy_ = _axis_setup(o_ptr, d_ptr, box_ptr, r, lvl, 1, Y, lo, hi, t_in, t_out, m)
    cz, tz, ez, sz, oz_ = _axis_setup(o_ptr, d_ptr, box_ptr, r, lvl, 2, Z, lo, hi, t_in, t_out, m)
    for j in range(n_cells):
        t_exit = _fmin(_fmin(tx, _fmin(ty, tz)), hi)
        tl.store(exit_ptr + i * n_cells + j, tl.where(alive, t_exit, float("-inf")), m)
        cell = ((lvl.to(tl.int64) * X + cx) * Y + cy) * Z + cz
        occ = tl.load(bin_ptr + cell, alive, 0) != 0
        tl.store(occ_ptr + i * n_cells + j, (alive & occ).to(tl.int8), m)
        go_x = (tx < ty) & (tx < tz)
        go_y = ~go_x & (ty < tz)
        go_z = ~go_x & ~go_y
        cx = tl.where(go_x, cx + sx, cx)
        tx = tl.where(go_x, tx + ex, tx)
        cy = tl.where(go_y, cy + sy, cy)
        ty = tl.where(go_y, ty + ey, ty)
        cz = tl.where(go_z, cz + sz, cz)
        tz = tl.where(go_z, tz + ez, tz)
        out_x = (cx == ox_) | (cx < 0) | (cx >= X)
        out_y = (cy == oy_) | (cy < 0) | (cy >= Y)
        out_z = (cz == oz_) | (cz < 0) | (cz >= Z)
        alive = alive & ~((go_x & out_x) | (go_y & out_y) | (go_z & out_z))


@triton.jit
def _axis_setup(o_ptr, d_ptr, box_ptr, r, lvl, ax: tl.constexpr, res, lo, hi, t_in, t_out, m):
    o = tl.load(o_ptr + r * 3 + ax, m, 0.0)
    d = tl.load(d_ptr + r * 3 + ax, m, 1.0)
    bmin = tl.load(box_ptr + lvl * 6 + ax, m, 0.0)
    bmax = tl.load(box_ptr + lvl * 6 + 3 + ax, m, 1.0)
    resf = tl.zeros_like(lo) + res  # float32; res may be the JIT's constant 1 (a grid one cell wide)
    voxel = tl.math.div_rn(bmax - bmin, resf)
    inv = tl.math.div_rn(1.0, d)
    start = o + d * t_in
    end = o + d * t_out
    cur = _cell_index(tl.math.div_rn(start - bmin, bmax - bmin) * resf, res)
    final = _cell_index(tl.math.div_rn(end - bmin, bmax - bmin) * resf, res)
    step = tl.where(d > 0, 1, tl.where(d < 0, -1, 0))
    plane = (cur + tl.where(d > 0, 1, 0)).to(tl.float32)
    tdist = tl.where(d == 0, hi, ((bmin + ((plane * voxel) - start)) * inv) + lo)
    delta = tl.where(d == 0, hi, (voxel * inv) * step.to(tl.float32))
    return cur, tdist, delta, step, final + step


@triton.jit(do_not_specialize=["R", "n_table"])  # ray and table sizes are data: no variant per size
def _march_kernel(
    near_ptr, stop_ptr, mask_ptr, exit_ptr, occ_ptr, seglo_ptr, count_ptr, term_ptr, off_ptr, ts_ptr, te_ptr,
    R, n_table, step_size, cone_angle, max_steps, FILL: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    r = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = r < R
    t = tl.load(near_ptr + r, m, 0.0)
    stop = tl.load(stop_ptr + r, m, float("-inf"))
    running = m & (tl.load(mask_ptr + r, m, 0) != 0) & (stop > float("-inf"))
    term = t
    count = tl.zeros([BLOCK], dtype=tl.int64)
    base = tl.load(off_ptr + r, m, 0)  # zeros during COUNT
    row = r.to(tl.int64) * n_table
    ptr = tl.zeros([BLOCK], dtype=tl.int64)
    while tl.max(running.to(tl.int32), 0) > 0:
        dt = tl.minimum(tl.maximum(t * cone_angle, step_size), DT_MAX)
        mid = t + dt * 0.5
        t_next = t + dt
        ended = running & ((mid >= stop) | ~(t_next > t))
        term = tl.where(ended, t, term)
        running = running & ~ended
        # the step's cell: the first table entry whose (running-max) exit exceeds the midpoint
        behind = running & (ptr < n_table - 1) & (tl.load(exit_ptr + row + ptr, running, 0.0) <= mid)
        while tl.max(behind.to(tl.int32), 0) > 0:
            ptr = ptr + behind.to(tl.int64)
            behind = behind & (ptr < n_table - 1) & (tl.load(exit_ptr + row + ptr, behind, 0.0) <= mid)
        occ = tl.load(occ_ptr + row + ptr, running, 0) != 0
        emit = running & occ & (mid >= tl.load(seglo_ptr + row + ptr, running, 0.0))
        if FILL:
            tl.store(ts_ptr + base + count, t, emit)
            tl.store(te_ptr + base + count, t_next, emit)
        count = count + emit.to(tl.int64)
        full = emit & (count >= max_steps)
        term = tl.where(full, t_next, term)
        running = running & ~full
        t = tl.where(running, t_next, t)
    if not FILL:
        tl.store(count_ptr + r, count, m)
        tl.store(term_ptr + r, term, m)


def _blocks(n: int) -> tuple[int]:
    return (triton.cdiv(max(n, 1), BLOCK),)


def intersect(rays_o, rays_d, aabbs, near, far, miss):
    """:meth:`OccgridKernels.intersect`: one lane per (ray, box)."""
    R, L = rays_o.shape[0], aabbs.shape[0]
    t_mins = rays_o.new_empty(R, L)
    t_maxs = rays_o.new_empty(R, L)
    hits = torch.empty(R, L, dtype=torch.bool, device=rays_o.device)
    if R * L:
        _intersect_kernel[_blocks(R * L)](
            rays_o,
            rays_d,
            aabbs,
            t_mins,
            t_maxs,
            hits.view(torch.int8),
            R * L,
            L,
            near,
            far,
            miss,
            BLOCK=BLOCK,
            **LAUNCH,
        )
    return t_mins, t_maxs, hits


def _cells(rays_o, rays_d, binaries, aabbs, lo, hi, level, valid):
    """Run the DDA kernel: -> exits, occupied ``[R, S, X+Y+Z]``."""
    R, S = lo.shape
    _, X, Y, Z = binaries.shape
    n_cells = X + Y + Z
    exits = rays_o.new_empty(R, S, n_cells)
    occupied = torch.empty(R, S, n_cells, dtype=torch.bool, device=rays_o.device)
    if R * S:
        _dda_kernel[_blocks(R * S)](
            rays_o, rays_d, aabbs, binaries.view(torch.uint8), lo.contiguous(), hi.contiguous(),
            level.to(torch.int32).contiguous(), valid.to(torch.int8).contiguous(), exits, occupied.view(torch.int8),
            R * S, S, X, Y, Z, n_cells, BLOCK=BLOCK, **LAUNCH,
        )  # fmt: skip
    return exits, occupied


def traverse(rays_o, rays_d, binaries, aabbs, near, far, rays_mask, step_size, cone_angle, max_steps):
    """:meth:`OccgridKernels.traverse`: intersections, DDA, then the two-pass march."""
    R = rays_o.shape[0]
    inf = float("inf")
    t_mins, t_maxs, hits = intersect(rays_o, rays_d, aabbs, -inf, inf, inf)
    lo, hi, level, valid = build_segments(t_mins, t_maxs, hits, near, far)
    exits, occupied = _cells(rays_o, rays_d, binaries, aabbs, lo, hi, level, valid)
    exits, occupied, seg_lo, stop = cell_table(exits, occupied, lo[:, :, None].expand_as(exits), valid, lo)
    counts = torch.zeros(R, dtype=torch.int64, device=rays_o.device)
    terminate = near.clone()
    offsets = torch.zeros(R + 1, dtype=torch.int64, device=rays_o.device)
    args = (near, stop.contiguous(), rays_mask.view(torch.int8), exits, occupied.view(torch.int8), seg_lo)
    scalars = (R, exits.shape[1], step_size, cone_angle, max_steps if max_steps > 0 else NO_LIMIT)
    if R == 0:
        return offsets, near[:0], near[:0], terminate
    _march_kernel[_blocks(R)](
        *args, counts, terminate, offsets, near, near, *scalars, FILL=False, BLOCK=BLOCK, **LAUNCH
    )
    torch.cumsum(counts, 0, out=offsets[1:])
    n = int(offsets[-1])
    t_starts, t_ends = near.new_empty(n), near.new_empty(n)
    if n:
        _march_kernel[_blocks(R)](
            *args, counts, terminate, offsets, t_starts, t_ends, *scalars, FILL=True, BLOCK=BLOCK, **LAUNCH
        )
    return offsets, t_starts, t_ends, terminate
