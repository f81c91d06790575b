"""Pure-PyTorch reference of the proposal-sampling ops (padded ``[R, S]`` layout).

The fused backends follow the same formulas step by step (so their float32 results agree with this
file to rounding):

Sampling (inverse CDF of a piecewise-constant PDF with masses ``w`` on bins ``t``):
  ``v_i = (w_i + padding) * [t_{i+1} > t_i]``; if a ray's ``sum v == 0`` use ``v_i = t_{i+1} - t_i``
  (uniform in t), and if that is 0 too ``v_i = 1``. ``cdf = [0, min(cumsum(v) / sum(v), 1)]`` with
  the last entry set to 1. Sample k uses ``u_k = (k + j_k) / n`` (``j`` = per-sample jitter,
  one jitter per ray, or 0.5), ``i = searchsorted(cdf, u, right) - 1`` clamped to ``[0, S-1]`` and
  ``x = t_i + (u - cdf_i) / (cdf_{i+1} - cdf_i) * (t_{i+1} - t_i)``.
  Blurred (Zip-NeRF anti-aliasing, half-width r): the step PDF convolved with a box of width 2r is
  piecewise linear with knots ``sort(t - r, t + r)``; its density at a knot is
  ``(F(x + r) - F(x - r)) / 2r`` (F: the step CDF above), its CDF at the knots the cumulative
  trapezoid sum, and ``u`` is inverted exactly within a knot interval (a quadratic). The blurred
  PDF is truncated to the ray's domain ``[t_0, t_S]`` (knots clamped into it, then renormalized),
  so samples never leave the bins.

Interlevel losses (fine ``t, w`` detached; proposal ``tp, wp``), per ray:
  outer (mip-NeRF 360): ``sum_j max(0, w_j - W_j)^2 / (w_j + eps)`` with ``W_j`` the proposal mass
  of all bins overlapping fine interval j (``lossfun_outer``).
  blurred (Zip-NeRF ``spline_interlevel_loss``): the fine histogram (zero-width bins dropped) as a
  PDF, blurred by a box of half-width r, integrated over each proposal interval (``Wb_k``, clamped
  at 0): ``sum_k max(0, Wb_k - wp_k)^2 / (wp_k + eps)``. The blurred CDF is
  ``(G(x + r) - G(x - r)) / 2r`` with ``G`` the integral of the (unnormalized) fine CDF.
"""

from __future__ import annotations

import torch


# ------------------------------------------------------------------------------------- sampling
def step_cdf(bins: torch.Tensor, weights: torch.Tensor, padding: float) -> torch.Tensor:
    """[R, S+1], [R, S] -> normalized CDF at the bin edges [R, S+1] (padding, zero-width mask, fallbacks)."""
    if weights.shape[-1] == 0:
        return torch.ones_like(bins)
    widths = bins[:, 1:] - bins[:, :-1]
    v = torch.where(widths > 0, weights + padding, torch.zeros_like(weights))
    total = v.sum(-1, keepdim=True)
    total_w = widths.sum(-1, keepdim=True)
    use_w, use_width = total > 0, (total <= 0) & (total_w > 0)
    v = torch.where(use_w, v, torch.where(use_width, widths, torch.ones_like(v)))
    total = torch.where(use_w, total, torch.where(use_width, total_w, torch.full_like(total, v.shape[-1])))
    cdf = torch.clamp(torch.cumsum(v, -1) / total, max=1.0)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf[:, :-1], torch.ones_like(cdf[:, :1])], -1)
    return cdf


def _gather(x, i):
    return torch.gather(x, -1, i)


def eval_step_cdf(bins: torch.Tensor, cdf: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The piecewise-linear CDF (knots ``bins``, values ``cdf``) at query points y [R, K]."""
    S = bins.shape[-1] - 1
    i = torch.searchsorted(bins.contiguous(), y.contiguous(), right=True) - 1
    ic = i.clamp(0, max(S - 1, 0))
    t0, t1 = _gather(bins, ic), _gather(bins, (ic + 1).clamp(max=S))
    c0, c1 = _gather(cdf, ic), _gather(cdf, (ic + 1).clamp(max=S))
    width = t1 - t0
    inside = c0 + (y - t0) / torch.where(width > 0, width, torch.ones_like(width)) * (c1 - c0)
    return torch.where(i < 0, torch.zeros_like(y), torch.where(i >= S, torch.ones_like(y), inside))


def uniform_positions(n: int, jitter: torch.Tensor | None, R: int, like: torch.Tensor) -> torch.Tensor:
    """u_k = (k + j_k) / n: jitter [R, n] or [R, 1], or None (0.5: midpoints) -> [R, n]."""
    k = torch.arange(n, device=like.device, dtype=like.dtype).expand(R, n)
    j = 0.5 if jitter is None else jitter.to(like.dtype)
    return (k + j) / n


def invert_step(bins, cdf, u):
    """Inverse of the piecewise-linear CDF at sorted u [R, n]."""
    S = bins.shape[-1] - 1
    if S == 0:
        return bins[:, :1].expand_as(u).clone()
    i = (torch.searchsorted(cdf.contiguous(), u.contiguous(), right=True) - 1).clamp(0, S - 1)
    c0, c1 = _gather(cdf, i), _gather(cdf, i + 1)
    t0, t1 = _gather(bins, i), _gather(bins, i + 1)
    dc = c1 - c0
    frac = torch.where(dc > 0, (u - c0) / torch.where(dc > 0, dc, torch.ones_like(dc)), torch.zeros_like(u))
    return torch.minimum(t0 + frac.clamp(0.0, 1.0) * (t1 - t0), t1)  # min: rounding never passes t1


def blurred_knots(bins, cdf, r):
    """Knots [R, 2(S+1)] of the blurred PDF, its normalized CDF and density there."""
    r = r[:, None]
    x = torch.sort(torch.cat([bins - r, bins + r], -1), dim=-1).values
    x = torch.minimum(torch.maximum(x, bins[:, :1]), bins[:, -1:])  # truncate to the ray's domain
    p = ((eval_step_cdf(bins, cdf, x + r) - eval_step_cdf(bins, cdf, x - r)) / (2 * r)).clamp(min=0.0)
    trap = 0.5 * (p[:, 1:] + p[:, :-1]) * (x[:, 1:] - x[:, :-1])
    F = torch.cumsum(trap, -1)
    total = F[:, -1:]
    total = torch.where(total > 0, total, torch.ones_like(total))
    F = torch.cat([torch.zeros_like(F[:, :1]), torch.clamp(F[:, :-1] / total, max=1.0), torch.ones_like(F[:, :1])], -1)
    return x, F, p / total


def invert_blurred(x, F, p, u):
    """Inverse of the piecewise-quadratic CDF (knots x, values F, linear density p) at u [R, n]."""
    K = x.shape[-1]
    i = (torch.searchsorted(F.contiguous(), u.contiguous(), right=True) - 1).clamp(0, K - 2)
    x0, x1 = _gather(x, i), _gather(x, i + 1)
    F0, p0, p1 = _gather(F, i), _gather(p, i), _gather(p, i + 1)
    h = x1 - x0
    du = (u - F0).clamp(min=0.0)
    slope = torch.where(h > 0, (p1 - p0) / torch.where(h > 0, h, torch.ones_like(h)), torch.zeros_like(h))
    den = p0 + torch.sqrt((p0 * p0 + 2.0 * slope * du).clamp(min=0.0))
    s = torch.where(den > 0, 2.0 * du / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(du))
    return torch.minimum(x0 + s, x1)


def centers_to_edges(c, lo, hi):
    """n sorted centers [R, n] -> n+1 interval edges (Zip-NeRF ``sample_intervals``), clamped to [lo, hi]."""
    if c.shape[-1] == 1:
        return torch.cat([lo, hi], -1)
    mid = 0.5 * (c[:, 1:] + c[:, :-1])
    first = torch.maximum(lo, 2.0 * c[:, :1] - mid[:, :1])
    last = torch.minimum(hi, 2.0 * c[:, -1:] - mid[:, -1:])
    return torch.cat([first, mid, last], -1)


def sample_pdf(bins, weights, n_samples, jitter=None, padding=0.01, blur=None, return_edges=False):
    """Padded reference: bins [R, S+1], weights [R, S], jitter [R, n] | [R, 1] | None, blur [R] | None."""
    R = bins.shape[0]
    cdf = step_cdf(bins, weights, padding)
    u = uniform_positions(n_samples, jitter, R, bins)
    if blur is None:
        out = invert_step(bins, cdf, u)
    else:
        out = invert_blurred(*blurred_knots(bins, cdf, blur.to(bins.dtype)), u)
    if return_edges:
        out = centers_to_edges(out, bins[:, :1], bins[:, -1:])
    return out


# -------------------------------------------------------------------------------- interlevel losses
def lossfun_outer(t, w, tp, wp, eps):
    """mip-NeRF 360 interlevel loss per ray [R] (differentiable w.r.t. wp)."""
    P = tp.shape[-1] - 1
    cy = torch.cat([wp.new_zeros(wp.shape[0], 1), torch.cumsum(wp, -1)], -1)
    count = torch.searchsorted(tp.contiguous(), t.contiguous(), right=True)
    lo = (count[:, :-1] - 1).clamp(min=0)
    hi = count[:, 1:].clamp(max=P)
    outer = _gather(cy, hi) - _gather(cy, lo)
    return (torch.relu(w - outer) ** 2 / (w + eps)).sum(-1)


def blurred_integral(t, w, y):
    """G(y): integral from -inf to y of the (unnormalized) CDF of histogram (t, w); zero-width bins
    carry no mass (as Zip-NeRF's ``weight_to_pdf``)."""
    S = t.shape[-1] - 1
    widths = t[:, 1:] - t[:, :-1]
    pos = widths > 0
    wm = torch.where(pos, w, torch.zeros_like(w))
    F = torch.cat([torch.zeros_like(wm[:, :1]), torch.cumsum(wm, -1)], -1)
    G = torch.cat([torch.zeros_like(wm[:, :1]), torch.cumsum(widths * (F[:, :-1] + 0.5 * wm), -1)], -1)
    dens = wm / torch.where(pos, widths, torch.ones_like(widths))
    c = torch.searchsorted(t.contiguous(), y.contiguous(), right=True)
    i = (c - 1).clamp(0, S - 1)
    d = y - _gather(t, i)
    inside = _gather(G, i) + d * (_gather(F, i) + 0.5 * _gather(dens, i) * d)
    above = G[:, -1:] + F[:, -1:] * (y - t[:, -1:])
    return torch.where(c == 0, torch.zeros_like(y), torch.where(c > S, above, inside))


def blurred_resample(tq, t, w, r):
    """Blur histogram (t [R, S+1], w [R, S]) by a box of half-width r [R], integrate it over the
    intervals of tq [R, Q+1] -> [R, Q] (clamped at 0): Zip-NeRF ``blur_and_resample_weights``."""
    if t.shape[-1] == 1:
        return tq.new_zeros(tq.shape[0], tq.shape[1] - 1)
    r = r[:, None].to(tq.dtype)
    Fb = (blurred_integral(t, w, tq + r) - blurred_integral(t, w, tq - r)) / (2 * r)
    return (Fb[:, 1:] - Fb[:, :-1]).clamp(min=0.0)


def lossfun_blurred(t, w, tp, wp, r, eps):
    """Zip-NeRF anti-aliased interlevel loss per ray [R] (differentiable w.r.t. wp): the fine
    histogram blurred and resampled onto the proposal intervals must be bounded by wp."""
    wb = blurred_resample(tp, t, w, r)
    return (torch.relu(wb - wp) ** 2 / (wp + eps)).sum(-1)
