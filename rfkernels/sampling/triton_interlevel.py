"""Triton kernels for the interlevel (proposal) losses on packed rays (float32 in and out).

Outer loss: ``_hist_prefix_kernel`` (proposal prefix mass) -> ``_outer_fwd_kernel``; backward
``_outer_scatter_kernel`` (adjoints of the prefix entries, ``tl.atomic_add``) -> ``_suffix_kernel``
(suffix sums = grad of the proposal weights). Blurred loss: ``_hist_prefix_kernel`` (fine prefix
mass + integral) -> ``_blurred_fwd_kernel`` (one lane per proposal bin; also writes the elementwise
d loss / d wp used by the backward). See :mod:`.reference` for the formulas and
:class:`rfkernels.sampling.contract.SamplingKernels` for the launchers' contract.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_search import BLOCK, _count_le, _ray_span, n_iter


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
            width = tl.load(t_ptr + eb + idx + 1, mask=m, other=0.0).to(tl.float64) - tl.load(
                t_ptr + eb + idx, mask=m, other=0.0
            ).to(tl.float64)
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
    return (
        _integral_at(t_base, w_base, cy_base, g_base, S, x + r, m, N_ITER)
        - _integral_at(t_base, w_base, cy_base, g_base, S, x - r, m, N_ITER)
    ) / (2.0 * r)


@triton.jit
def _outer_bins(tp_base, cy_base, P, t_ptr, eb, idx, m, N_ITER):
    """Proposal bins [lo, hi) overlapping fine interval idx, and their mass cy[hi] - cy[lo]."""
    t0 = tl.load(t_ptr + eb + idx, mask=m, other=0.0)
    t1 = tl.load(t_ptr + eb + idx + 1, mask=m, other=0.0)
    lo = tl.maximum(_count_le(tp_base, P + 1, t0, m, N_ITER) - 1, 0)
    hi = tl.minimum(_count_le(tp_base, P + 1, t1, m, N_ITER), P)
    return lo, hi, tl.load(cy_base + hi, mask=m, other=0.0) - tl.load(cy_base + lo, mask=m, other=0.0)


@triton.jit
def _outer_fwd_kernel(t_ptr, w_ptr, off_ptr, tp_ptr, offp_ptr, cy_ptr, loss_ptr, eps, N_ITER, BLOCK: tl.constexpr):
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
def _outer_scatter_kernel(
    g_loss_ptr, t_ptr, w_ptr, off_ptr, tp_ptr, offp_ptr, cy_ptr, u_ptr, eps, N_ITER, BLOCK: tl.constexpr
):
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
        # pure accumulation (read after the kernel ends): relaxed order, no fences around the atomics
        tl.atomic_add(u_ptr + pstart + hi - 1, g, mask=m & (hi >= 1), sem="relaxed")
        tl.atomic_add(u_ptr + pstart + lo - 1, -g, mask=m & (lo >= 1), sem="relaxed")


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
def _blurred_fwd_kernel(
    t_ptr,
    w_ptr,
    off_ptr,
    tp_ptr,
    wp_ptr,
    offp_ptr,
    cy_ptr,
    g_ptr,
    blur_ptr,
    loss_ptr,
    dwp_ptr,
    eps,
    N_ITER,
    BLOCK: tl.constexpr,
):
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
        wb = _blurred_cdf(t_ptr + eb, w_ptr + start, cy_ptr + eb, g_ptr + eb, S, x1, r, m, N_ITER) - _blurred_cdf(
            t_ptr + eb, w_ptr + start, cy_ptr + eb, g_ptr + eb, S, x0, r, m, N_ITER
        )
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
    _blurred_fwd_kernel[(R,)](
        t, w, t_off, tp, wp, tp_off, cy, g, blur, loss, dwp, eps, n_iter(max_fine + 1), BLOCK=BLOCK
    )
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
