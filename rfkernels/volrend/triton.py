"""Triton kernels for volume rendering on packed rays (one program per ray, samples in blocks).

Each program walks its ray ``[offsets[r], offsets[r+1])`` in blocks of ``BLOCK_S`` samples, using
``tl.cumsum`` for the within-block prefix of optical depth and a scalar carry across blocks. Exclusive
prefixes are cumsums of the inputs shifted by one sample (reloaded at ``idx - 1``), never
``inclusive - x``, which cancels next to a large ``x`` (an opaque sample's ``tau``).
Numerics (``tau`` of ``0 * inf``, saturation, zero-weight products, NaN) follow :mod:`.reference`.
Colours are loaded as ``[BLOCK_S, BLOCK_C]`` tiles (``BLOCK_C`` = next power of two >= C). The block size
and the warps per program follow the mean samples per ray (:func:`_launch_config`).

Implements :class:`rfkernels.volrend.contract.VolrendKernels` (the public launchers below).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .contract import TAU_MAX

BLOCK_S = 64  # the largest block of samples per step
MIN_BLOCK_S = 16


def _launch_config(n_samples: int, n_rays: int, channels: int = 0) -> dict:
    """Constexpr block size and warps for rays of ``n_samples / n_rays`` samples on average: ``BLOCK_S`` is
    that mean rounded up to a power of two in [16, 64] (short rays do not load mostly masked blocks), and
    one warp per 32 samples of the block (one sample per lane; more warps would only hold copies of the
    block and add barriers to every cumsum and sum), more for wide colour tiles (at most 8 of the
    ``[BLOCK_S, BLOCK_C]`` tile's entries per thread, up to 4 warps) so that their registers stay bounded."""
    mean = -(-n_samples // max(n_rays, 1))
    block = min(max(triton.next_power_of_2(max(mean, 1)), MIN_BLOCK_S), BLOCK_S)
    tile_warps = block * _block_c(channels) // (8 * 32) if channels else 1
    return {"BLOCK_S": block, "num_warps": min(max(block // 32, tile_warps, 1), 4)}


def _block_c(channels: int) -> int:
    return max(triton.next_power_of_2(max(channels, 1)), 2)


@triton.jit
def _tau(sigma_ptr, delta_ptr, idx, m, tau_max):
    """-> (tau, regular): tau = 0 if sigma or delta is 0, tau_max above it (NaN propagates);
    regular: the plain product is finite and <= tau_max (sigma = 0 on a finite interval included),
    the only case passing gradient to sigma/delta."""
    sigma = tl.load(sigma_ptr + idx, mask=m, other=0.0)
    delta = tl.load(delta_ptr + idx, mask=m, other=0.0)
    raw = sigma * delta
    zero = (sigma == 0.0) | (delta == 0.0)
    tau = tl.where(zero, 0.0, tl.where(raw > tau_max, tau_max, raw))
    return tau, raw <= tau_max  # False for NaN (0 * inf) and saturated products


@triton.jit
def _shifted_tau(sigma_ptr, delta_ptr, idx, block, end, tau_max):
    """tau of the previous sample within the block (0 for the block's first): its cumsum is the
    exclusive prefix, computed without subtracting."""
    prev = idx - 1
    tau, _ = _tau(sigma_ptr, delta_ptr, prev, (prev >= block) & (prev < end), tau_max)
    return tau


@triton.jit
def _alpha(tau):
    """1 - exp(-tau) without cancellation: a 3-term series below 1e-2 (relative error < 5e-8)."""
    series = tau * (1.0 - tau * (0.5 - tau * (1.0 / 6.0)))
    return tl.where(tau < 1e-2, series, 1.0 - tl.exp(-tau))


@triton.jit
def _mul0(a, b):
    """a * b with 0 * inf = 0."""
    return tl.where((a == 0.0) | (b == 0.0), 0.0, a * b)


@triton.jit
def _composite_fwd_kernel(
    sigma_ptr,
    delta_ptr,
    tmid_ptr,
    color_ptr,
    offsets_ptr,
    rgb_ptr,
    depth_ptr,
    opacity_ptr,
    weight_ptr,
    trans_ptr,
    C,
    eps,
    tau_max,
    HAS_TMID: tl.constexpr,
    HAS_COLOR: tl.constexpr,
    WANT_TRANS: tl.constexpr,  # False: trans_ptr is never written (the caller did not ask for it)
    BLOCK_S: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    ray = tl.program_id(0)
    start = tl.load(offsets_ptr + ray)
    end = tl.load(offsets_ptr + ray + 1)
    ch = tl.arange(0, BLOCK_C)
    carry = tl.zeros((), dtype=tl.float32)  # sum of tau before this block
    depth = tl.zeros((), dtype=tl.float32)
    opacity = tl.zeros((), dtype=tl.float32)
    rgb = tl.zeros((BLOCK_C,), dtype=tl.float32)
    for block in range(start, end, BLOCK_S):
        idx = block + tl.arange(0, BLOCK_S)
        m = idx < end
        tau, _ = _tau(sigma_ptr, delta_ptr, idx, m, tau_max)
        excl = carry + tl.cumsum(_shifted_tau(sigma_ptr, delta_ptr, idx, block, end, tau_max), 0)
        trans = tl.exp(-excl)
        w = trans * _alpha(tau)
        w = tl.where(m & ~(trans < eps), w, 0.0)  # NaN transmittance keeps its NaN weight
        tl.store(weight_ptr + idx, w, mask=m)
        if WANT_TRANS:
            tl.store(trans_ptr + idx, trans, mask=m)
        opacity += tl.sum(w, 0)
        if HAS_TMID:
            depth += tl.sum(_mul0(w, tl.load(tmid_ptr + idx, mask=m, other=0.0)), 0)
        if HAS_COLOR:
            col = tl.load(color_ptr + idx[:, None] * C + ch[None, :], mask=m[:, None] & (ch[None, :] < C), other=0.0)
            rgb += tl.sum(_mul0(w[:, None], col), 0)
        carry += tl.sum(tau, 0)
    tl.store(opacity_ptr + ray, opacity)
    tl.store(depth_ptr + ray, depth)
    if HAS_COLOR:
        tl.store(rgb_ptr + ray * C + ch, rgb, mask=ch < C)


@triton.jit
def _composite_bwd_kernel(
    g_rgb_ptr,
    g_depth_ptr,
    g_opacity_ptr,
    g_weight_ptr,
    g_trans_ptr,
    sigma_ptr,
    delta_ptr,
    tmid_ptr,
    color_ptr,
    offsets_ptr,
    rgb_ptr,
    depth_ptr,
    opacity_ptr,
    g_sigma_ptr,
    g_delta_ptr,
    g_tmid_ptr,
    g_color_ptr,
    C,
    eps,
    tau_max,
    HAS_TMID: tl.constexpr,
    HAS_COLOR: tl.constexpr,
    HAS_GW: tl.constexpr,
    HAS_GT: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """d/dtau_k of L = sum_i w_i v_i + sum_i T_i u_i is T_{k+1} v_k - sum_{i>k} (w_i v_i + T_i u_i),
    with v_i = g_rgb.c_i + g_depth t_i + g_opacity + g_w_i and u_i = g_T_i; the suffix sum is
    (total - inclusive prefix), the total coming from the saved outputs (+ one pass if g_w/g_T), and
    exactly 0 where T_{k+1} is 0 (every later term carries a factor T_i <= T_{k+1})."""
    ray = tl.program_id(0)
    start = tl.load(offsets_ptr + ray)
    end = tl.load(offsets_ptr + ray + 1)
    ch = tl.arange(0, BLOCK_C)
    cmask = ch < C
    g_depth = tl.load(g_depth_ptr + ray)
    g_opacity = tl.load(g_opacity_ptr + ray)
    total = g_opacity * tl.load(opacity_ptr + ray)
    if HAS_TMID:
        total += g_depth * tl.load(depth_ptr + ray)
    if HAS_COLOR:
        g_rgb = tl.load(g_rgb_ptr + ray * C + ch, mask=cmask, other=0.0)
        total += tl.sum(g_rgb * tl.load(rgb_ptr + ray * C + ch, mask=cmask, other=0.0), 0)
    if HAS_GW or HAS_GT:  # per-sample output grads: one extra pass for their share of the total
        carry = tl.zeros((), dtype=tl.float32)
        for block in range(start, end, BLOCK_S):
            idx = block + tl.arange(0, BLOCK_S)
            m = idx < end
            tau, _ = _tau(sigma_ptr, delta_ptr, idx, m, tau_max)
            trans = tl.exp(-(carry + tl.cumsum(_shifted_tau(sigma_ptr, delta_ptr, idx, block, end, tau_max), 0)))
            if HAS_GW:
                w = tl.where(m & ~(trans < eps), trans * _alpha(tau), 0.0)
                total += tl.sum(w * tl.load(g_weight_ptr + idx, mask=m, other=0.0), 0)
            if HAS_GT:
                total += tl.sum(trans * tl.load(g_trans_ptr + idx, mask=m, other=0.0), 0)
            carry += tl.sum(tau, 0)
    carry = tl.zeros((), dtype=tl.float32)
    prefix = tl.zeros((), dtype=tl.float32)
    for block in range(start, end, BLOCK_S):
        idx = block + tl.arange(0, BLOCK_S)
        m = idx < end
        sigma = tl.load(sigma_ptr + idx, mask=m, other=0.0)
        delta = tl.load(delta_ptr + idx, mask=m, other=0.0)
        tau, regular = _tau(sigma_ptr, delta_ptr, idx, m, tau_max)
        excl = carry + tl.cumsum(_shifted_tau(sigma_ptr, delta_ptr, idx, block, end, tau_max), 0)
        trans = tl.exp(-excl)
        trans_next = tl.exp(-(excl + tau))
        active = m & ~(trans < eps)
        w = tl.where(active, trans * _alpha(tau), 0.0)
        v = g_opacity + tl.zeros((BLOCK_S,), dtype=tl.float32)
        if HAS_TMID:
            tmid = tl.load(tmid_ptr + idx, mask=m, other=0.0)
            v += tl.where(g_depth == 0.0, 0.0, tl.where(tmid == 0.0, 0.0, g_depth * tmid))  # 0 * inf = 0
            tl.store(g_tmid_ptr + idx, w * g_depth, mask=m)
        if HAS_COLOR:
            cm = m[:, None] & cmask[None, :]
            col = tl.load(color_ptr + idx[:, None] * C + ch[None, :], mask=cm, other=0.0)
            v += tl.sum(col * g_rgb[None, :], 1)
            tl.store(g_color_ptr + idx[:, None] * C + ch[None, :], w[:, None] * g_rgb[None, :], mask=cm)
        if HAS_GW:
            v += tl.load(g_weight_ptr + idx, mask=m, other=0.0)
        a = _mul0(w, v)
        if HAS_GT:
            a += trans * tl.load(g_trans_ptr + idx, mask=m, other=0.0)
        prefix_incl = prefix + tl.cumsum(a, 0)
        # No light passes sample k (T_{k+1} underflowed to 0, e.g. tau next to TAU_MAX): nothing after
        # it depends on tau_k, so d/dtau_k is exactly 0, as in the reference, instead of the rounding
        # error of (total - prefix), which sigma or delta (huge there) would multiply.
        suffix = tl.where(trans_next == 0.0, 0.0, total - prefix_incl)
        g_tau = tl.where(active, trans_next * v, 0.0) - suffix
        g_tau = tl.where(m & regular, g_tau, 0.0)  # saturated / 0*inf taus pass no gradient
        tl.store(g_sigma_ptr + idx, tl.where(regular, g_tau * delta, 0.0), mask=m)
        tl.store(g_delta_ptr + idx, tl.where(regular, g_tau * sigma, 0.0), mask=m)
        prefix += tl.sum(a, 0)
        carry += tl.sum(tau, 0)


def composite_forward(sigmas, deltas, tmids, colors, offsets, eps, want_trans):
    """Packed float32 inputs ([N], [N], [N]|None, [N, C]|None, offsets [R+1]) ->
    rgb [R, C], depth [R], opacity [R], weights [N], transmittance [N] (None unless ``want_trans``)."""
    n_rays = offsets.numel() - 1
    C = colors.shape[1] if colors is not None else 0
    dev = sigmas.device
    rgb = torch.zeros(n_rays, C, device=dev)
    depth = torch.zeros(n_rays, device=dev)
    opacity = torch.zeros(n_rays, device=dev)
    weights = torch.empty_like(sigmas)
    trans = torch.empty_like(sigmas) if want_trans else None
    if n_rays:
        _composite_fwd_kernel[(n_rays,)](
            sigmas,
            deltas,
            tmids if tmids is not None else sigmas,
            colors if colors is not None else sigmas,
            offsets,
            rgb,
            depth,
            opacity,
            weights,
            trans if want_trans else weights,  # not written without WANT_TRANS
            C,
            eps,
            TAU_MAX,
            HAS_TMID=tmids is not None,
            HAS_COLOR=colors is not None,
            WANT_TRANS=want_trans,
            BLOCK_C=_block_c(C),
            **_launch_config(sigmas.numel(), n_rays, C),
        )
    return rgb, depth, opacity, weights, trans


def composite_backward(
    g_rgb, g_depth, g_opacity, g_weights, g_trans, sigmas, deltas, tmids, colors, offsets, rgb, depth, opacity, eps
):
    """-> grads for (sigmas [N], deltas [N], tmids [N] | None, colors [N, C] | None)."""
    n_rays = offsets.numel() - 1
    C = colors.shape[1] if colors is not None else 0
    g_sigmas, g_deltas = torch.empty_like(sigmas), torch.empty_like(deltas)
    g_tmids = torch.empty_like(tmids) if tmids is not None else None
    g_colors = torch.empty_like(colors) if colors is not None else None
    dummy = sigmas
    if n_rays:
        _composite_bwd_kernel[(n_rays,)](
            g_rgb if C else dummy,
            g_depth,
            g_opacity,
            g_weights if g_weights is not None else dummy,
            g_trans if g_trans is not None else dummy,
            sigmas,
            deltas,
            tmids if tmids is not None else dummy,
            colors if colors is not None else dummy,
            offsets,
            rgb if C else dummy,
            depth,
            opacity,
            g_sigmas,
            g_deltas,
            g_tmids if g_tmids is not None else dummy,
            g_colors if g_colors is not None else dummy,
            C,
            eps,
            TAU_MAX,
            HAS_TMID=tmids is not None,
            HAS_COLOR=colors is not None,
            HAS_GW=g_weights is not None,
            HAS_GT=g_trans is not None,
            BLOCK_C=_block_c(C),
            **_launch_config(sigmas.numel(), n_rays, C),
        )
    return g_sigmas, g_deltas, g_tmids, g_colors


@triton.jit
def _distortion_kernel(
    w_ptr,
    m_ptr,
    d_ptr,
    offsets_ptr,
    loss_ptr,
    g_loss_ptr,
    g_w_ptr,
    g_m_ptr,
    g_d_ptr,
    BACKWARD: tl.constexpr,
    BLOCK_S: tl.constexpr,
):
    """Forward: loss = 2 sum_i w_i (m_i W_<i - WM_<i) + 1/3 sum_i w_i^2 d_i.
    Backward: dL/dw_k = 2(m_k W_<k - WM_<k) + 2((WM - WM_<=k) - m_k (W - W_<=k)) + 2/3 w_k d_k,
    dL/dm_k = 2 w_k (W_<k - (W - W_<=k)), dL/dd_k = w_k^2 / 3  (W, WM: per-ray totals)."""
    ray = tl.program_id(0)
    start = tl.load(offsets_ptr + ray)
    end = tl.load(offsets_ptr + ray + 1)
    w_tot = tl.zeros((), dtype=tl.float32)
    wm_tot = tl.zeros((), dtype=tl.float32)
    loss = tl.zeros((), dtype=tl.float32)
    g = tl.load(g_loss_ptr + ray)  # the loss buffer itself in the forward (unused there)
    if BACKWARD:  # totals first
        for block in range(start, end, BLOCK_S):
            idx = block + tl.arange(0, BLOCK_S)
            msk = idx < end
            w = tl.load(w_ptr + idx, mask=msk, other=0.0)
            w_tot += tl.sum(w, 0)
            wm_tot += tl.sum(w * tl.load(m_ptr + idx, mask=msk, other=0.0), 0)
    w_before = tl.zeros((), dtype=tl.float32)
    wm_before = tl.zeros((), dtype=tl.float32)
    for block in range(start, end, BLOCK_S):
        idx = block + tl.arange(0, BLOCK_S)
        msk = idx < end
        w = tl.load(w_ptr + idx, mask=msk, other=0.0)
        mid = tl.load(m_ptr + idx, mask=msk, other=0.0)
        d = tl.load(d_ptr + idx, mask=msk, other=0.0)
        prev = idx - 1
        pm = (prev >= block) & (prev < end)
        w_prev = tl.load(w_ptr + prev, mask=pm, other=0.0)
        w_excl = w_before + tl.cumsum(w_prev, 0)  # shifted cumsums: no inclusive - x cancellation
        wm_excl = wm_before + tl.cumsum(w_prev * tl.load(m_ptr + prev, mask=pm, other=0.0), 0)
        w_incl = w_excl + w
        wm_incl = wm_excl + w * mid
        if BACKWARD:
            g_w = (
                2.0 * (mid * w_excl - wm_excl)
                + 2.0 * ((wm_tot - wm_incl) - mid * (w_tot - w_incl))
                + (2.0 / 3.0) * w * d
            )
            tl.store(g_w_ptr + idx, g * g_w, mask=msk)
            tl.store(g_m_ptr + idx, g * 2.0 * w * (w_excl - (w_tot - w_incl)), mask=msk)
            tl.store(g_d_ptr + idx, g * w * w / 3.0, mask=msk)
        else:
            loss += tl.sum(2.0 * w * (mid * w_excl - wm_excl) + w * w * d / 3.0, 0)
        w_before += tl.sum(w, 0)
        wm_before += tl.sum(w * mid, 0)
    if not BACKWARD:
        tl.store(loss_ptr + ray, loss)


def distortion_forward(weights, tmids, deltas, offsets):
    """Packed [N] float32 inputs -> loss [R]."""
    n_rays = offsets.numel() - 1
    loss = torch.zeros(n_rays, device=weights.device)
    if n_rays:
        _distortion_kernel[(n_rays,)](
            weights,
            tmids,
            deltas,
            offsets,
            loss,
            loss,
            loss,
            loss,
            loss,
            BACKWARD=False,
            **_launch_config(weights.numel(), n_rays),
        )
    return loss


def distortion_backward(g_loss, weights, tmids, deltas, offsets):
    """-> grads for (weights, tmids, deltas), each [N]."""
    n_rays = offsets.numel() - 1
    g_w, g_m, g_d = torch.empty_like(weights), torch.empty_like(tmids), torch.empty_like(deltas)
    if n_rays:
        _distortion_kernel[(n_rays,)](
            weights,
            tmids,
            deltas,
            offsets,
            g_loss,
            g_loss,
            g_w,
            g_m,
            g_d,
            BACKWARD=True,
            **_launch_config(weights.numel(), n_rays),
        )
    return g_w, g_m, g_d
