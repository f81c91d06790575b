"""Triton kernels for proposal sampling and the interlevel losses (packed rays, float32).

Every ray's arrays are searched with a vectorized binary search (``_count_le``: each lane gathers
from the sorted per-ray array in global memory; ``N_ITER`` = bit length of the longest array).
Per-ray prefix sums (CDFs, integrals) are written to scratch buffers by one program per ray that
walks its bins in blocks (``tl.cumsum`` + a scalar carry). Layout: ray r owns weights
``[off[r], off[r+1])`` and edges ``[off[r] + r, off[r+1] + r]`` (``S_r + 1`` of them).

Sampling: ``_cdf_kernel`` (step CDF) -> [blur: ``_knots_kernel`` (merged knots ``t -+ r`` placed
by rank, density at each) -> ``_knot_cdf_kernel`` (trapezoid CDF)] -> ``_invert_kernel`` (one lane
per output sample). Outer loss: ``_hist_prefix_kernel`` (proposal prefix mass) ->
``_outer_fwd_kernel``; backward ``_outer_scatter_kernel`` (adjoints of the prefix entries,
``tl.atomic_add``) -> ``_suffix_kernel`` (suffix sums = grad of the proposal weights). Blurred
loss: ``_hist_prefix_kernel`` (fine prefix mass + integral) -> ``_blurred_fwd_kernel`` (one lane
per proposal bin; also writes the elementwise d loss / d wp used by the backward).
See :mod:`.reference` for the formulas.
"""
from __future__ import annotations

import torch
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


@triton.jit
def _merge_rank(base, n, v, shift, strict, lane_mask, N_ITER):
    """#{j in [0, n): base[j] + shift < v} where ``strict`` else ``<= v`` (per-lane shift/strict):
    the rank of v among the shifted copy of the sorted base, ties broken by ``strict``."""
    lo = tl.zeros_like(v).to(tl.int32)
    hi = lo + n.to(tl.int32)
    for _ in range(N_ITER):
        active = (lo < hi) & lane_mask
        mid = (lo + hi) // 2
        a = tl.load(base + mid, mask=active, other=0.0) + shift
        right = active & ((a < v) | ((a == v) & ~strict))
        lo = tl.where(right, mid + 1, lo)
        hi = tl.where(active & ~right, mid, hi)
    return lo


@triton.jit
def _eval_step_cdf(t_base, c_base, S, y, m, N_ITER):
    """Piecewise-linear CDF (knots t, values c; S + 1 of each) at y."""
    i = _count_le(t_base, S + 1, y, m, N_ITER) - 1
    ic = tl.maximum(tl.minimum(i, S - 1), 0)
    m1 = m & (ic < S)
    t0 = tl.load(t_base + ic, mask=m, other=0.0)
    t1 = tl.load(t_base + ic + 1, mask=m1, other=0.0)
    c0 = tl.load(c_base + ic, mask=m, other=0.0)
    c1 = tl.load(c_base + ic + 1, mask=m1, other=0.0)
    width = t1 - t0
    inside = c0 + (y - t0) / tl.where(width > 0, width, 1.0) * (c1 - c0)
    return tl.where(i < 0, 0.0, tl.where(i >= S, 1.0, inside))


# ------------------------------------------------------------------------------------ sampling
@triton.jit
def _cdf_kernel(t_ptr, w_ptr, off_ptr, cdf_ptr, padding, BLOCK: tl.constexpr):
    """Normalized step CDF at the edges (padding, zero-width mask, uniform fallbacks)."""
    ray = tl.program_id(0)
    start, S, eb = _ray_span(off_ptr, ray)
    tot = tl.zeros((), dtype=tl.float32)
    tot_width = tl.zeros((), dtype=tl.float32)
    for block in range(0, S, BLOCK):
        idx = block + tl.arange(0, BLOCK)
        m = idx < S
        w = tl.load(w_ptr + start + idx, mask=m, other=0.0)
        width = tl.load(t_ptr + eb + idx + 1, mask=m, other=0.0) - tl.load(t_ptr + eb + idx, mask=m, other=0.0)
        tot += tl.sum(tl.where(m & (width > 0), w + padding, 0.0), 0)
        tot_width += tl.sum(width, 0)
    use_w = tot > 0
    use_width = (tot <= 0) & (tot_width > 0)
    total = tl.where(use_w, tot, tl.where(use_width, tot_width, S.to(tl.float32)))
    tl.store(cdf_ptr + eb, tl.where(S > 0, 0.0, 1.0))
    carry = tl.zeros((), dtype=tl.float32)
    for block in range(0, S, BLOCK):
        idx = block + tl.arange(0, BLOCK)
        m = idx < S
        w = tl.load(w_ptr + start + idx, mask=m, other=0.0)
        width = tl.load(t_ptr + eb + idx + 1, mask=m, other=0.0) - tl.load(t_ptr + eb + idx, mask=m, other=0.0)
        v = tl.where(use_w, tl.where(width > 0, w + padding, 0.0), tl.where(use_width, width, 1.0))
        v = tl.where(m, v, 0.0)
        c = tl.minimum((carry + tl.cumsum(v, 0)) / total, 1.0)
        tl.store(cdf_ptr + eb + idx + 1, tl.where(idx + 1 == S, 1.0, c), mask=m)
        carry += tl.sum(v, 0)


@triton.jit
def _knots_kernel(t_ptr, cdf_ptr, off_ptr, blur_ptr, kx_ptr, kp_ptr, N_ITER, BLOCK: tl.constexpr):
    """Blur knots: edge i gives t_i - r (rank i + #{j: t_j + r < t_i - r}) and t_i + r
    (rank i + #{j: t_j - r <= t_i + r}); stores x clamped to [t_0, t_S] (truncation) and the
    blurred density (F(x+r) - F(x-r)) / 2r there."""
    ray = tl.program_id(0)
    start = tl.load(off_ptr + ray)
    S = tl.load(off_ptr + ray + 1) - start
    E = S + 1
    eb = start + ray
    r = tl.load(blur_ptr + ray)
    for block in range(0, 2 * E, BLOCK):
        j = block + tl.arange(0, BLOCK)
        m = j < 2 * E
        is_a = j < E
        i = tl.where(is_a, j, j - E)
        ti = tl.load(t_ptr + eb + i, mask=m, other=0.0)
        x = tl.where(is_a, ti - r, ti + r)
        rank = i + _merge_rank(t_ptr + eb, E, x, tl.where(is_a, r, -r), is_a, m, N_ITER)
        x = tl.minimum(tl.maximum(x, tl.load(t_ptr + eb)), tl.load(t_ptr + eb + S))  # truncate to the domain
        p = (_eval_step_cdf(t_ptr + eb, cdf_ptr + eb, S, x + r, m, N_ITER)
             - _eval_step_cdf(t_ptr + eb, cdf_ptr + eb, S, x - r, m, N_ITER)) / (2.0 * r)
        tl.store(kx_ptr + 2 * eb + rank, x, mask=m)
        tl.store(kp_ptr + 2 * eb + rank, tl.maximum(p, 0.0), mask=m)


@triton.jit
def _knot_cdf_kernel(kx_ptr, kp_ptr, kf_ptr, off_ptr, BLOCK: tl.constexpr):
    """CDF of the piecewise-linear density at the knots (trapezoids), normalized; p rescaled."""
    ray = tl.program_id(0)
    start = tl.load(off_ptr + ray)
    K = 2 * (tl.load(off_ptr + ray + 1) - start + 1)
    kb = 2 * (start + ray)
    tot = tl.zeros((), dtype=tl.float32)
    for block in range(0, K - 1, BLOCK):
        idx = block + tl.arange(0, BLOCK)
        m = idx < K - 1
        dx = tl.load(kx_ptr + kb + idx + 1, mask=m, other=0.0) - tl.load(kx_ptr + kb + idx, mask=m, other=0.0)
        p1 = tl.load(kp_ptr + kb + idx + 1, mask=m, other=0.0)
        trap = 0.5 * (p1 + tl.load(kp_ptr + kb + idx, mask=m, other=0.0)) * dx
        tot += tl.sum(tl.where(m, trap, 0.0), 0)
    total = tl.where(tot > 0, tot, 1.0)
    tl.store(kf_ptr + kb, 0.0)
    carry = tl.zeros((), dtype=tl.float32)
    for block in range(0, K - 1, BLOCK):
        idx = block + tl.arange(0, BLOCK)
        m = idx < K - 1
        dx = tl.load(kx_ptr + kb + idx + 1, mask=m, other=0.0) - tl.load(kx_ptr + kb + idx, mask=m, other=0.0)
        p0 = tl.load(kp_ptr + kb + idx, mask=m, other=0.0)
        trap = tl.where(m, 0.5 * (tl.load(kp_ptr + kb + idx + 1, mask=m, other=0.0) + p0) * dx, 0.0)
        f = tl.minimum((carry + tl.cumsum(trap, 0)) / total, 1.0)
        tl.store(kf_ptr + kb + idx + 1, tl.where(idx + 2 == K, 1.0, f), mask=m)
        carry += tl.sum(trap, 0)
    for block in range(0, K, BLOCK):  # rescale the density (a separate pass: p is read above)
        idx = block + tl.arange(0, BLOCK)
        m = idx < K
        tl.store(kp_ptr + kb + idx, tl.load(kp_ptr + kb + idx, mask=m, other=0.0) / total, mask=m)


@triton.jit
def _sample_at(k, ray, n, t_base, c_base, kx_base, kf_base, kp_base, S, jit_ptr, m, N_ITER,
               JMODE: tl.constexpr, BLUR: tl.constexpr):
    """Inverse CDF at u_k = (k + j) / n (JMODE 0: j = 0.5, 1: one per ray, 2: one per sample)."""
    if JMODE == 0:
        jit = tl.zeros_like(k.to(tl.float32)) + 0.5
    elif JMODE == 1:
        jit = tl.zeros_like(k.to(tl.float32)) + tl.load(jit_ptr + ray)
    else:
        jit = tl.load(jit_ptr + ray * n + k, mask=m, other=0.0)
    u = (k.to(tl.float32) + jit) / n
    if BLUR:
        K = 2 * (S + 1)
        i = _count_le(kf_base, K, u, m, N_ITER) - 1
        i = tl.maximum(tl.minimum(i, K - 2), 0)
        x0 = tl.load(kx_base + i, mask=m, other=0.0)
        x1 = tl.load(kx_base + i + 1, mask=m, other=0.0)
        h = x1 - x0
        f0 = tl.load(kf_base + i, mask=m, other=0.0)
        p0 = tl.load(kp_base + i, mask=m, other=0.0)
        p1 = tl.load(kp_base + i + 1, mask=m, other=0.0)
        du = tl.maximum(u - f0, 0.0)
        slope = tl.where(h > 0, (p1 - p0) / tl.where(h > 0, h, 1.0), 0.0)
        den = p0 + tl.sqrt(tl.maximum(p0 * p0 + 2.0 * slope * du, 0.0))
        s = tl.where(den > 0, 2.0 * du / tl.where(den > 0, den, 1.0), 0.0)
        x = tl.minimum(x0 + s, x1)  # rounding never passes the next knot
    else:
        i = _count_le(c_base, S + 1, u, m, N_ITER) - 1
        i = tl.maximum(tl.minimum(i, S - 1), 0)
        m1 = m & (i < S)
        c0 = tl.load(c_base + i, mask=m, other=0.0)
        dc = tl.load(c_base + i + 1, mask=m1, other=0.0) - c0
        t0 = tl.load(t_base + i, mask=m, other=0.0)
        t1 = tl.load(t_base + i + 1, mask=m1, other=0.0)
        frac = tl.where(dc > 0, (u - c0) / tl.where(dc > 0, dc, 1.0), 0.0)
        x = tl.minimum(t0 + tl.minimum(tl.maximum(frac, 0.0), 1.0) * (t1 - t0), t1)
        x = tl.where(S > 0, x, t0)
    return x


@triton.jit
def _invert_kernel(t_ptr, cdf_ptr, kx_ptr, kf_ptr, kp_ptr, off_ptr, jit_ptr, out_ptr, n, n_out, N_ITER,
                   JMODE: tl.constexpr, BLUR: tl.constexpr, EDGES: tl.constexpr, BLOCK: tl.constexpr):
    ray = tl.program_id(0)
    k = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = k < n_out
    start, S, eb = _ray_span(off_ptr, ray)
    t_base, c_base = t_ptr + eb, cdf_ptr + eb
    kx_base, kf_base, kp_base = kx_ptr + 2 * eb, kf_ptr + 2 * eb, kp_ptr + 2 * eb
    if EDGES:  # edges between centers c_{k-1}, c_k (Zip-NeRF sample_intervals)
        ka = tl.maximum(tl.minimum(k - 1, n - 2), 0)
        kb = tl.minimum(ka + 1, n - 1)
        ca = _sample_at(ka, ray, n, t_base, c_base, kx_base, kf_base, kp_base, S, jit_ptr, m, N_ITER, JMODE, BLUR)
        cb = _sample_at(kb, ray, n, t_base, c_base, kx_base, kf_base, kp_base, S, jit_ptr, m, N_ITER, JMODE, BLUR)
        mid = 0.5 * (cb + ca)
        lo = tl.load(t_base)
        hi = tl.load(t_base + S)
        first = tl.where(n > 1, tl.maximum(lo, 2.0 * ca - mid), lo)
        last = tl.where(n > 1, tl.minimum(hi, 2.0 * cb - mid), hi)
        x = tl.where(k == 0, first, tl.where(k == n, last, mid))
    else:
        x = _sample_at(k, ray, n, t_base, c_base, kx_base, kf_base, kp_base, S, jit_ptr, m, N_ITER, JMODE, BLUR)
    tl.store(out_ptr + ray * n_out + k, x, mask=m)


def sample(bins, weights, offsets, jitter, n, padding, blur, return_edges, max_bins):
    """Packed float32 bins [N+R], weights [N], offsets [R+1] int64, jitter [R, J] | None,
    blur [R] | None -> samples [R, n] (or edges [R, n+1])."""
    R = offsets.numel() - 1
    n_out = n + 1 if return_edges else n
    out = torch.empty(R, n_out, device=bins.device, dtype=torch.float32)
    if R == 0:
        return out
    cdf = torch.empty_like(bins)
    _cdf_kernel[(R,)](bins, weights, offsets, cdf, padding, BLOCK=BLOCK)
    if blur is not None:
        kx, kp, kf = (torch.empty(2 * bins.numel(), device=bins.device) for _ in range(3))
        _knots_kernel[(R,)](bins, cdf, offsets, blur, kx, kp, n_iter(max_bins + 1), BLOCK=BLOCK)
        _knot_cdf_kernel[(R,)](kx, kp, kf, offsets, BLOCK=BLOCK)
        iters = n_iter(2 * (max_bins + 1))
    else:
        kx = kp = kf = cdf
        iters = n_iter(max_bins + 1)
    J = 0 if jitter is None else jitter.shape[1]
    jmode = 0 if J == 0 else (1 if J == 1 else 2)
    block_n = min(BLOCK, triton.next_power_of_2(n_out))
    _invert_kernel[(R, triton.cdiv(n_out, block_n))](
        bins, cdf, kx, kf, kp, offsets, jitter if jitter is not None else bins, out, n, n_out, iters,
        JMODE=jmode, BLUR=blur is not None, EDGES=bool(return_edges), BLOCK=block_n,
    )
    return out


# ----------------------------------------------------------------------------- interlevel losses
# Prefix arrays and the blurred integral are evaluated in float64: the blurred mass of an interval
# is a difference of differences of G (the integral of the histogram's CDF), whose float32
# cancellation error (~eps * G / 2r) would dominate small masses. Inputs/outputs stay float32.
@triton.jit
def _hist_prefix_kernel(t_ptr, w_ptr, off_ptr, cy_ptr, g_ptr, BLUR: tl.constexpr, BLOCK: tl.constexpr):
    """cy = [0, cumsum(w)] (float64; masked to positive-width bins when BLUR) and, when BLUR,
    G = [0, cumsum(width * (cy_excl + w / 2))], the integral of the histogram's CDF at the edges."""
    ray = tl.program_id(0)
    start, S, eb = _ray_span(off_ptr, ray)
    zero = tl.zeros((), dtype=tl.float64)
    tl.store(cy_ptr + eb, zero)
    if BLUR:
        tl.store(g_ptr + eb, zero)
    carry = zero
    carry_g = zero
    for block in range(0, S, BLOCK):
        idx = block + tl.arange(0, BLOCK)
        m = idx < S
        w = tl.load(w_ptr + start + idx, mask=m, other=0.0).to(tl.float64)
        if BLUR:
            width = (tl.load(t_ptr + eb + idx + 1, mask=m, other=0.0).to(tl.float64)
                     - tl.load(t_ptr + eb + idx, mask=m, other=0.0).to(tl.float64))
            w = tl.where(width > 0, w, 0.0)
        incl = carry + tl.cumsum(w, 0)
        tl.store(cy_ptr + eb + idx + 1, incl, mask=m)
        if BLUR:
            trap = width * (incl - w + 0.5 * w)
            tl.store(g_ptr + eb + idx + 1, carry_g + tl.cumsum(trap, 0), mask=m)
            carry_g += tl.sum(trap, 0)
        carry += tl.sum(w, 0)


@triton.jit
def _integral_at(t_base, w_base, cy_base, g_base, S, y, m, N_ITER):
    """G(y) (float64): the integral from -inf to y of the histogram's (unnormalized) CDF."""
    c = _count_le(t_base, S + 1, y, m, N_ITER)
    i = tl.maximum(tl.minimum(c - 1, S - 1), 0)
    mi = m & (i < S)
    t0 = tl.load(t_base + i, mask=mi, other=0.0).to(tl.float64)
    width = tl.load(t_base + i + 1, mask=mi, other=0.0).to(tl.float64) - t0
    w = tl.load(w_base + i, mask=mi, other=0.0).to(tl.float64)
    dens = tl.where(width > 0, w, 0.0) / tl.where(width > 0, width, 1.0)
    d = y - t0
    inside = tl.load(g_base + i, mask=mi, other=0.0) + d * (tl.load(cy_base + i, mask=mi, other=0.0) + 0.5 * dens * d)
    above = tl.load(g_base + S) + tl.load(cy_base + S) * (y - tl.load(t_base + S).to(tl.float64))
    return tl.where(c == 0, 0.0, tl.where(c > S, above, inside))


@triton.jit
def _blurred_cdf(t_base, w_base, cy_base, g_base, S, x, r, m, N_ITER):
    return (_integral_at(t_base, w_base, cy_base, g_base, S, x + r, m, N_ITER)
            - _integral_at(t_base, w_base, cy_base, g_base, S, x - r, m, N_ITER)) / (2.0 * r)


@triton.jit
def _outer_bins(tp_base, cy_base, P, t_ptr, eb, idx, m, N_ITER):
    """Proposal bins [lo, hi) overlapping fine interval idx, and their mass cy[hi] - cy[lo]."""
    t0 = tl.load(t_ptr + eb + idx, mask=m, other=0.0)
    t1 = tl.load(t_ptr + eb + idx + 1, mask=m, other=0.0)
    lo = tl.maximum(_count_le(tp_base, P + 1, t0, m, N_ITER) - 1, 0)
    hi = tl.minimum(_count_le(tp_base, P + 1, t1, m, N_ITER), P)
    return lo, hi, tl.load(cy_base + hi, mask=m, other=0.0) - tl.load(cy_base + lo, mask=m, other=0.0)


@triton.jit
def _outer_fwd_kernel(t_ptr, w_ptr, off_ptr, tp_ptr, offp_ptr, cy_ptr, loss_ptr, eps, N_ITER,
                      BLOCK: tl.constexpr):
    """loss = sum_j max(0, w_j - W_j)^2 / (w_j + eps), W_j = proposal mass overlapping interval j."""
    ray = tl.program_id(0)
    start, S, eb = _ray_span(off_ptr, ray)
    pstart, P, pb = _ray_span(offp_ptr, ray)
    loss = tl.zeros((), dtype=tl.float64)
    for block in range(0, S, BLOCK):
        idx = block + tl.arange(0, BLOCK)
        m = idx < S
        _, _, outer = _outer_bins(tp_ptr + pb, cy_ptr + pb, P, t_ptr, eb, idx, m, N_ITER)
        w = tl.load(w_ptr + start + idx, mask=m, other=0.0).to(tl.float64)
        e = tl.maximum(w - outer, 0.0)
        loss += tl.sum(tl.where(m, e * e / (w + eps), 0.0), 0)
    tl.store(loss_ptr + ray, loss.to(tl.float32))


@triton.jit
def _outer_scatter_kernel(g_loss_ptr, t_ptr, w_ptr, off_ptr, tp_ptr, offp_ptr, cy_ptr, u_ptr, eps, N_ITER,
                          BLOCK: tl.constexpr):
    """d loss / d cy[hi] = g_j and d / d cy[lo] = -g_j, accumulated at slots hi - 1, lo - 1 (the
    proposal bins below that prefix entry; suffix-summed by _suffix_kernel)."""
    ray = tl.program_id(0)
    start, S, eb = _ray_span(off_ptr, ray)
    pstart, P, pb = _ray_span(offp_ptr, ray)
    gl = tl.load(g_loss_ptr + ray).to(tl.float64)
    for block in range(0, S, BLOCK):
        idx = block + tl.arange(0, BLOCK)
        m = idx < S
        lo, hi, outer = _outer_bins(tp_ptr + pb, cy_ptr + pb, P, t_ptr, eb, idx, m, N_ITER)
        w = tl.load(w_ptr + start + idx, mask=m, other=0.0).to(tl.float64)
        g = gl * (-2.0 * tl.maximum(w - outer, 0.0) / (w + eps))
        tl.atomic_add(u_ptr + pstart + hi - 1, g, mask=m & (hi >= 1))
        tl.atomic_add(u_ptr + pstart + lo - 1, -g, mask=m & (lo >= 1))


@triton.jit
def _suffix_kernel(offp_ptr, u_ptr, gwp_ptr, BLOCK: tl.constexpr):
    """grad wp_k = sum_{slot >= k} u (walks the bins from the end: suffix sums via cumsum)."""
    ray = tl.program_id(0)
    pstart = tl.load(offp_ptr + ray)
    P = tl.load(offp_ptr + ray + 1) - pstart
    carry = tl.zeros((), dtype=tl.float64)
    for block in range(0, P, BLOCK):
        k = P - 1 - (block + tl.arange(0, BLOCK))
        m = k >= 0
        u = tl.load(u_ptr + pstart + k, mask=m, other=0.0)
        tl.store(gwp_ptr + pstart + k, (carry + tl.cumsum(u, 0)).to(tl.float32), mask=m)
        carry += tl.sum(u, 0)


@triton.jit
def _blurred_fwd_kernel(t_ptr, w_ptr, off_ptr, tp_ptr, wp_ptr, offp_ptr, cy_ptr, g_ptr, blur_ptr, loss_ptr,
                        dwp_ptr, eps, N_ITER, BLOCK: tl.constexpr):
    """Per proposal bin k: Wb_k = blurred fine mass on [tp_k, tp_{k+1}] (>= 0), loss += max(0, Wb_k -
    wp_k)^2 / (wp_k + eps); also writes d loss / d wp_k (Wb does not depend on wp)."""
    ray = tl.program_id(0)
    start, S, eb = _ray_span(off_ptr, ray)
    pstart, P, pb = _ray_span(offp_ptr, ray)
    r = tl.load(blur_ptr + ray).to(tl.float64)
    loss = tl.zeros((), dtype=tl.float64)
    for block in range(0, P, BLOCK):
        k = block + tl.arange(0, BLOCK)
        m = k < P
        x0 = tl.load(tp_ptr + pb + k, mask=m, other=0.0).to(tl.float64)
        x1 = tl.load(tp_ptr + pb + k + 1, mask=m, other=0.0).to(tl.float64)
        wb = (_blurred_cdf(t_ptr + eb, w_ptr + start, cy_ptr + eb, g_ptr + eb, S, x1, r, m, N_ITER)
              - _blurred_cdf(t_ptr + eb, w_ptr + start, cy_ptr + eb, g_ptr + eb, S, x0, r, m, N_ITER))
        wb = tl.maximum(wb, 0.0)
        wp = tl.load(wp_ptr + pstart + k, mask=m, other=0.0).to(tl.float64)
        e = tl.maximum(wb - wp, 0.0)
        den = wp + eps
        loss += tl.sum(tl.where(m, e * e / den, 0.0), 0)
        tl.store(dwp_ptr + pstart + k, (-2.0 * e / den - e * e / (den * den)).to(tl.float32), mask=m)
    tl.store(loss_ptr + ray, loss.to(tl.float32))


def _prefix(t, w, off, blur):
    R = off.numel() - 1
    cy = torch.empty_like(t, dtype=torch.float64)
    g = torch.empty_like(cy) if blur else cy
    if R:
        _hist_prefix_kernel[(R,)](t, w, off, cy, g, BLUR=blur, BLOCK=BLOCK)
    return cy, g


def interlevel_forward(t, w, t_off, tp, wp, tp_off, blur, eps, max_fine, max_prop):
    """Packed float32 fine (t [N+R], w [N], t_off), proposal (tp, wp, tp_off), blur [R] | None ->
    (loss [R], d loss / d wp [Np] for the blurred loss (else None))."""
    R = t_off.numel() - 1
    loss = torch.zeros(R, device=t.device)
    if R == 0:
        return loss, (torch.zeros_like(wp) if blur is not None else None)
    if blur is None:
        cy, _ = _prefix(tp, wp, tp_off, False)
        _outer_fwd_kernel[(R,)](t, w, t_off, tp, tp_off, cy, loss, eps, n_iter(max_prop + 1), BLOCK=BLOCK)
        return loss, None
    cy, g = _prefix(t, w, t_off, True)
    dwp = torch.empty_like(wp)
    _blurred_fwd_kernel[(R,)](t, w, t_off, tp, wp, tp_off, cy, g, blur, loss, dwp, eps, n_iter(max_fine + 1),
                              BLOCK=BLOCK)
    return loss, dwp


def interlevel_backward(g_loss, t, w, t_off, tp, wp, tp_off, eps, max_fine, max_prop):
    """Outer loss: -> grad of the proposal weights [Np] (float32; accumulated in float64)."""
    R = t_off.numel() - 1
    g_wp = torch.zeros_like(wp)
    if R == 0 or wp.numel() == 0:
        return g_wp
    cy, _ = _prefix(tp, wp, tp_off, False)
    u = torch.zeros_like(wp, dtype=torch.float64)
    _outer_scatter_kernel[(R,)](g_loss, t, w, t_off, tp, tp_off, cy, u, eps, n_iter(max_prop + 1), BLOCK=BLOCK)
    _suffix_kernel[(R,)](tp_off, u, g_wp, BLOCK=BLOCK)
    return g_wp
