"""Readable PyTorch reference of the occgrid family (the ground truth of the tests), vectorized over
rays and written with the fused kernels' float32 operations in the same order, so every backend
produces the same intervals bit for bit (the rule: :mod:`.contract`).

- :func:`intersect`: slab intersection of every ray with every aabb.
- :func:`traverse`: segments (:func:`.segments.build_segments`), a DDA over the cells of every
  segment at once (:func:`visit_cells`), then the march: the step sequence ``t_k`` of all rays in
  lock step (:func:`march_steps`, float32 additions in order), each step looked up in the table
  of visited cells with ``searchsorted``.
"""

from __future__ import annotations

import torch

from .contract import DDA_EPS, DT_MAX
from .segments import build_segments, cell_table

Tensor = torch.Tensor
NEG_INF = -float("inf")
MARCH_CHUNK = 256  # steps generated between two checks whether every ray has finished


def intersect(rays_o: Tensor, rays_d: Tensor, aabbs: Tensor, near: float, far: float, miss: float):
    """-> t_mins [R, L], t_maxs [R, L] (``miss`` where missed), hits [R, L] (float32 inputs)."""
    inv = (1.0 / rays_d)[:, None, :]  # [R, 1, 3]
    a = (aabbs[None, :, :3] - rays_o[:, None, :]) * inv  # [R, L, 3]
    b = (aabbs[None, :, 3:] - rays_o[:, None, :]) * inv
    forward = inv >= 0
    entry, exit_ = torch.where(forward, a, b), torch.where(forward, b, a)
    tmin, tmax = entry[..., 0], exit_[..., 0]
    hit = torch.ones_like(tmin, dtype=torch.bool)
    for ax in (1, 2):
        lo, hi = entry[..., ax], exit_[..., ax]
        hit &= ~((tmin > hi) | (lo > tmax))
        tmin = torch.where(lo > tmin, lo, tmin)
        tmax = torch.where(hi < tmax, hi, tmax)
    hit &= ~(tmax <= 0)
    tmin = torch.fmax(tmin, tmin.new_tensor(near))
    tmax = torch.fmin(tmax, tmax.new_tensor(far))
    missed = tmin.new_tensor(miss)
    return torch.where(hit, tmin, missed), torch.where(hit, tmax, missed), hit


def _cell_index(x: Tensor, res: Tensor) -> Tensor:
    """Unit-cube position * resolution -> cell index (truncation, clamped into the grid; NaN -> 0)."""
    x = torch.fmin(torch.fmax(x, x.new_tensor(-1.0)), res)
    return torch.clamp(x.trunc().long(), min=0).minimum(res.long() - 1)


def visit_cells(rays_o, rays_d, binaries, aabbs, lo, hi, level, valid):
    """The DDA of every walked segment at once (lanes = ray x segment, in lock step over cells).

    Returns ``(exits, occupied)`` ``[R, S, X+Y+Z]``: each visited cell's exit (``min`` of the next
    plane crossings, clipped to the segment end) and occupancy; ``-inf``/False past the last cell.
    """
    R, S = lo.shape
    L, X, Y, Z = binaries.shape
    n_cells = X + Y + Z  # a walk moves one index by one per cell: it leaves the grid within X+Y+Z cells
    exits = torch.full((R * S, n_cells), NEG_INF, device=lo.device)
    occupied = torch.zeros((R * S, n_cells), dtype=torch.bool, device=lo.device)
    walked = valid.reshape(-1).nonzero()[:, 0]  # only segments that are walked get lanes
    ray = walked // S
    o, d = rays_o[ray], rays_d[ray]
    lo, hi, lvl = lo.reshape(-1)[walked], hi.reshape(-1)[walked], level.reshape(-1)[walked]
    amin, amax = aabbs[lvl, :3], aabbs[lvl, 3:]
    res = torch.tensor([X, Y, Z], dtype=torch.float32, device=o.device)
    ires = res.long()
    voxel = (amax - amin) / res
    inv = 1.0 / d
    start = o + d * (lo + DDA_EPS)[:, None]
    end = o + d * (hi - DDA_EPS)[:, None]
    cur = _cell_index((start - amin) / (amax - amin) * res, res)
    final = _cell_index((end - amin) / (amax - amin) * res, res)
    step = torch.sign(d).long()
    plane = (cur + (d > 0).long()).float()  # index of the next plane crossed along each axis
    tdist = torch.where(d == 0, hi[:, None], ((amin + ((plane * voxel) - start)) * inv) + lo[:, None])
    delta = torch.where(d == 0, hi[:, None], (voxel * inv) * step.float())
    overflow = final + step
    alive = torch.ones_like(lo, dtype=torch.bool)
    flat = binaries.reshape(-1)
    for j in range(n_cells):
        if j % 8 == 0 and not bool(alive.any()):
            break
        t_exit = torch.fmin(torch.fmin(tdist[:, 0], torch.fmin(tdist[:, 1], tdist[:, 2])), hi)
        exits[walked, j] = torch.where(alive, t_exit, NEG_INF)
        c = cur.clamp(min=0).minimum(ires - 1)
        occupied[walked, j] = alive & flat[((lvl * X + c[:, 0]) * Y + c[:, 1]) * Z + c[:, 2]]
        tx, ty, tz = tdist.unbind(1)
        x_first = (tx < ty) & (tx < tz)
        move = torch.stack([x_first, ~x_first & (ty < tz), ~x_first & ~(ty < tz)], dim=1)  # one axis per lane
        cur = torch.where(move, cur + step, cur)
        tdist = torch.where(move, tdist + delta, tdist)
        out = move & ((cur == overflow) | (cur < 0) | (cur >= ires))
        alive &= ~out.any(dim=1)
    assert not bool(alive.any()), "DDA did not leave the grid within X+Y+Z cells"
    return exits.view(R, S, n_cells), occupied.view(R, S, n_cells)


def step_length(t: Tensor, step_size: float, cone_angle: float) -> Tensor:
    """``dt(t) = clamp(t * cone_angle, step_size, DT_MAX)`` in float32."""
    return torch.clamp(t * cone_angle, min=step_size, max=DT_MAX)


def _step_starts(t: Tensor, n: int, step_size: float, cone_angle: float) -> Tensor:
    """``n`` consecutive step starts ``[R, n]`` from ``t`` [R] (float32 additions, in order)."""
    out = torch.empty((t.shape[0], n), dtype=t.dtype, device=t.device)
    for j in range(n):
        out[:, j] = t
        t = t + step_length(t, step_size, cone_angle)
    return out


def traverse(rays_o, rays_d, binaries, aabbs, near, far, rays_mask, step_size, cone_angle, max_steps):
    """-> offsets [R+1] int64, t_starts [N], t_ends [N], terminate_planes [R] (float32 inputs)."""
    R = rays_o.shape[0]
    inf = float("inf")
    t_mins, t_maxs, hits = intersect(rays_o, rays_d, aabbs, -inf, inf, inf)
    lo, hi, level, valid = build_segments(t_mins, t_maxs, hits, near, far)
    exits, occupied = visit_cells(rays_o, rays_d, binaries, aabbs, lo, hi, level, valid)
    exits, occupied, seg_lo, stop = cell_table(exits, occupied, lo[:, :, None].expand_as(exits), valid, lo)

    rays = torch.arange(R, device=near.device)
    finished = ~(rays_mask & (stop > NEG_INF))  # masked rays and rays crossing no cell never step
    terminate, count = near.clone(), torch.zeros(R, dtype=torch.int64, device=near.device)
    t, picked = near, []
    while not bool(finished.all()):
        starts = _step_starts(t, MARCH_CHUNK, step_size, cone_angle)  # [R, MARCH_CHUNK]
        dt = step_length(starts, step_size, cone_angle)
        mid, ends = starts + dt * 0.5, starts + dt
        ended = (mid >= stop[:, None]) | ~(ends > starts)  # past the last cell, or stalled
        processed = ~finished[:, None] & (ended.cumsum(1) == 0)
        cell = torch.searchsorted(exits, mid, right=True).clamp(max=exits.shape[1] - 1)
        emitted = processed & torch.gather(occupied, 1, cell) & (mid >= torch.gather(seg_lo, 1, cell))
        first_end = ended.float().argmax(1)
        stops_here = ~finished & ended.any(1)
        terminate = torch.where(stops_here, starts[rays, first_end], terminate)
        if max_steps > 0:
            running = count[:, None] + emitted.cumsum(1)
            emitted &= running <= max_steps
            full = ~finished & (running[:, -1] >= max_steps)
            last = (running >= max_steps).float().argmax(1)  # this ray's max_steps-th interval
            terminate = torch.where(full, ends[rays, last], terminate)
            stops_here |= full
        count += emitted.sum(1)
        ray, k = emitted.nonzero(as_tuple=True)
        picked.append((ray, starts[ray, k], ends[ray, k]))
        finished |= stops_here
        t = ends[:, -1]
    ray = torch.cat([p[0] for p in picked]) if picked else rays[:0]
    order = torch.sort(ray, stable=True).indices  # chunks are in step order: sort by ray, keep it
    t_starts = torch.cat([p[1] for p in picked])[order] if picked else near[:0]
    t_ends = torch.cat([p[2] for p in picked])[order] if picked else near[:0]
    offsets = torch.zeros(R + 1, dtype=torch.int64, device=near.device)
    torch.cumsum(count, 0, out=offsets[1:])
    return offsets, t_starts, t_ends, terminate
