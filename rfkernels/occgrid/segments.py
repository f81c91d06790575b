"""Per-ray bookkeeping shared by the torch reference and the Triton launcher (plain PyTorch, O(R * L)
or O(R * cells) work around the kernels): the segments a ray crosses, and the table of visited cells
the march looks its steps up in. The rule itself is written down in :mod:`.contract`."""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def build_segments(t_mins: Tensor, t_maxs: Tensor, hits: Tensor, near: Tensor, far: Tensor):
    """Sorted per-level intersections -> segments.

    Args:
        t_mins, t_maxs, hits: ``[R, L]`` unclipped intersections (``inf`` where missed).
        near, far: ``[R]`` march limits.
    Returns:
        ``(lo, hi, level, valid)``, each ``[R, 2L - 1]``: segment ``i`` spans ``[lo, hi)`` (clipped to
        ``[near, far]``) in grid ``level``; ``valid`` marks segments to walk.
    """
    L = t_mins.shape[1]
    vals, idx = torch.sort(torch.cat([t_mins, t_maxs], dim=-1), dim=-1, stable=True)
    cur, nxt = idx[:, :-1], idx[:, 1:]
    entering, next_entering = cur < L, nxt < L
    # leaving a level: the segment belongs to the next level out (if the ray is still inside one)
    level = torch.where(entering, cur, nxt) % L
    valid = torch.gather(hits, 1, cur % L) & (entering | (~next_entering & torch.gather(hits, 1, nxt % L)))
    lo = torch.fmax(vals[:, :-1], near[:, None])
    hi = torch.fmin(vals[:, 1:], far[:, None])
    return lo, hi, level, valid & (lo < hi)


def cell_table(exits: Tensor, occupied: Tensor, seg_lo: Tensor, valid: Tensor, lo: Tensor):
    """Visited cells ``[R, S, C]`` (in visiting order) -> the march's lookup table.

    Args:
        exits, occupied: ``[R, S, C]`` per visited cell (``-inf``/False past a segment's last cell).
        seg_lo: ``[R, S, C]`` start of the cell's segment. valid, lo: ``[R, S]`` segments.
    Returns:
        ``(exits [R, S*C], occupied [R, S*C], seg_lo [R, S*C], stop [R])``: exits made non-decreasing
        by a running maximum (a step belongs to the first cell whose exit exceeds its midpoint);
        ``stop`` = the last exit or the last walked segment's start, whichever is later (``-inf``
        without segments): the march ends at the first midpoint ``>= stop``.
    """
    R, S, C = exits.shape
    exits = torch.cummax(exits.reshape(R, S * C), dim=1).values
    last_lo = torch.where(valid, lo, torch.full_like(lo, -float("inf"))).amax(dim=1)
    stop = torch.maximum(exits[:, -1], last_lo)
    return exits.contiguous(), occupied.reshape(R, S * C).contiguous(), seg_lo.reshape(R, S * C).contiguous(), stop
