"""Triton kernels for proposal sampling: inverse-CDF sampling of packed per-ray histograms
(float32). The interlevel losses live in :mod:`.triton_interlevel`, the shared search helpers in
:mod:`.triton_search`; this module is the family's registered ``triton`` backend and re-exports
the interlevel launchers.

Per-ray prefix sums (CDFs) are written to scratch buffers by one program per ray that walks its bins
in blocks (``tl.cumsum`` + a scalar carry). ``_cdf_kernel`` (step CDF) -> [blur: ``_knots_kernel``
(merged knots ``t -+ r`` placed by rank, density at each) -> ``_knot_cdf_kernel`` (trapezoid CDF)]
-> ``_invert_kernel`` (one lane per output sample). See :mod:`.reference` for the formulas.

Implements :class:`rfkernels.sampling.contract.SamplingKernels` (with :mod:`.triton_interlevel`).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_interlevel import interlevel_backward, interlevel_forward  # noqa: F401  (the contract)
from .triton_search import BLOCK, _count_le, _ray_span, n_iter


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
        p = (
            _eval_step_cdf(t_ptr + eb, cdf_ptr + eb, S, x + r, m, N_ITER)
            - _eval_step_cdf(t_ptr + eb, cdf_ptr + eb, S, x - r, m, N_ITER)
        ) / (2.0 * r)
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
def _sample_at(
    k, ray, n, t_base, c_base, kx_base, kf_base, kp_base, S, jit_ptr, m, N_ITER, JMODE: tl.constexpr, BLUR: tl.constexpr
):
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
def _invert_kernel(
    t_ptr,
    cdf_ptr,
    kx_ptr,
    kf_ptr,
    kp_ptr,
    off_ptr,
    jit_ptr,
    out_ptr,
    n,
    N_ITER,
    JMODE: tl.constexpr,
    BLUR: tl.constexpr,
    BLOCK: tl.constexpr,
):
    ray = tl.program_id(0)
    k = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = k < n
    start, S, eb = _ray_span(off_ptr, ray)
    t_base, c_base = t_ptr + eb, cdf_ptr + eb
    kx_base, kf_base, kp_base = kx_ptr + 2 * eb, kf_ptr + 2 * eb, kp_ptr + 2 * eb
    x = _sample_at(k, ray, n, t_base, c_base, kx_base, kf_base, kp_base, S, jit_ptr, m, N_ITER, JMODE, BLUR)
    tl.store(out_ptr + ray * n + k, x, mask=m)


@triton.jit
def _edges_kernel(c_ptr, t_ptr, off_ptr, out_ptr, n, BLOCK: tl.constexpr):
    """n + 1 interval edges per ray between consecutive centres c [R, n] (Zip-NeRF sample_intervals), the
    outer two mirrored and clamped to the ray's domain: each centre was inverted once."""
    ray = tl.program_id(0)
    k = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m = k < n + 1
    _, S, eb = _ray_span(off_ptr, ray)
    ka = tl.maximum(tl.minimum(k - 1, n - 2), 0)
    kb = tl.minimum(ka + 1, n - 1)
    ca = tl.load(c_ptr + ray * n + ka, mask=m, other=0.0)
    cb = tl.load(c_ptr + ray * n + kb, mask=m, other=0.0)
    mid = 0.5 * (cb + ca)
    lo = tl.load(t_ptr + eb)
    hi = tl.load(t_ptr + eb + S)
    first = tl.where(n > 1, tl.maximum(lo, 2.0 * ca - mid), lo)
    last = tl.where(n > 1, tl.minimum(hi, 2.0 * cb - mid), hi)
    x = tl.where(k == 0, first, tl.where(k == n, last, mid))
    tl.store(out_ptr + ray * (n + 1) + k, x, mask=m)


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
    centres = torch.empty(R, n, device=bins.device, dtype=torch.float32) if return_edges else out
    block_n = min(BLOCK, triton.next_power_of_2(n))
    _invert_kernel[(R, triton.cdiv(n, block_n))](
        bins,
        cdf,
        kx,
        kf,
        kp,
        offsets,
        jitter if jitter is not None else bins,
        centres,
        n,
        iters,
        JMODE=jmode,
        BLUR=blur is not None,
        BLOCK=block_n,
    )
    if return_edges:
        block_e = min(BLOCK, triton.next_power_of_2(n_out))
        _edges_kernel[(R, triton.cdiv(n_out, block_e))](centres, bins, offsets, out, n, BLOCK=block_e)
    return out
