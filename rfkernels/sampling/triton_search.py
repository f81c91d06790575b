"""Triton helpers shared by the sampling kernels (:mod:`.triton`) and the interlevel-loss kernels
(:mod:`.triton_interlevel`): the packed-ray preamble and a vectorized binary search.

Layout (:mod:`rfkernels._packing`): ray r owns weights ``[off[r], off[r+1])`` and edges
``[off[r] + r, off[r+1] + r]`` (``S_r + 1`` of them). ``_count_le``: each lane gathers from the
sorted per-ray array in global memory; ``N_ITER`` = bit length of the longest array (:func:`n_iter`).
"""

from __future__ import annotations

import triton
import triton.language as tl

BLOCK = 64


def n_iter(max_len: int) -> int:
    """Binary-search steps that resolve a count in [0, max_len]."""
    return max(int(max_len).bit_length(), 1)


# ------------------------------------------------------------------------------------ helpers
@triton.jit
def _ray_span(off_ptr, ray):
    """Packed ray ``ray``: (first weight, weight count, first edge); its edges sit at weight index + ray."""
    start = tl.load(off_ptr + ray)
    return start, tl.load(off_ptr + ray + 1) - start, start + ray


@triton.jit
def _count_le(base, n, v, lane_mask, N_ITER):
    """#{j in [0, n): base[j] <= v} per lane (base sorted; the comparison in v's precision)."""
    lo = tl.zeros_like(v).to(tl.int32)
    hi = lo + n.to(tl.int32)
    for _ in range(N_ITER):
        active = (lo < hi) & lane_mask
        mid = (lo + hi) // 2
        right = active & (tl.load(base + mid, mask=active, other=0.0) <= v)
        lo = tl.where(right, mid + 1, lo)
        hi = tl.where(active & ~right, mid, hi)
    return lo
