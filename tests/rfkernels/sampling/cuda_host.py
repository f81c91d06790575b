"""``rfkernels/sampling/cuda.py`` look-alike running the per-ray team code of csrc/sampling/ on the CPU.

Every function takes the signature of its ``cuda.py`` counterpart plus ``team``: the team width (8, 16, 32)
of every pass, or None for the ones the launchers pick from the bins per ray."""

import ctypes

import torch

from tests.helpers.cuda_host import load, ptr


def sample(bins, weights, offsets, jitter, n, padding, blur, return_edges, max_bins, team=None):
    R = offsets.numel() - 1
    out = torch.empty(R, n + 1 if return_edges else n)
    cdf = torch.empty_like(bins)
    knots = [torch.empty(2 * bins.numel()) if blur is not None else None for _ in range(3)]
    mode = 0 if jitter is None else (1 if jitter.shape[1] == 1 else 2)
    load("sampling").host_sample_pdf(
        ctypes.c_int(team or 0),
        ptr(bins),
        ptr(weights),
        ptr(offsets),
        ctypes.c_int64(R),
        ctypes.c_int64(weights.numel()),
        ptr(jitter),
        ctypes.c_int(mode),
        ctypes.c_int(n),
        ctypes.c_int(int(return_edges)),
        ctypes.c_float(padding),
        ptr(blur),
        ptr(cdf),
        *map(ptr, knots),
        ptr(out),
    )
    return out


def interlevel_forward(t, w, t_off, tp, wp, tp_off, blur, eps, max_fine, max_prop, team=None):
    R = t_off.numel() - 1
    n = t.numel() if blur is not None else tp.numel()
    cy, g = torch.empty(n, dtype=torch.float64), torch.empty(n, dtype=torch.float64)
    loss, dwp = torch.empty(R), torch.empty_like(wp)
    load("sampling").host_interlevel_forward(
        ctypes.c_int(team or 0),
        ptr(t),
        ptr(w),
        ptr(t_off),
        ptr(tp),
        ptr(wp),
        ptr(tp_off),
        ctypes.c_int64(R),
        ctypes.c_int64(w.numel()),
        ctypes.c_int64(wp.numel()),
        ptr(blur),
        ctypes.c_float(eps),
        ptr(cy),
        ptr(g),
        ptr(loss),
        ptr(dwp),
    )
    return loss, (dwp if blur is not None else None)


def interlevel_backward(g_loss, t, w, t_off, tp, wp, tp_off, eps, max_fine, max_prop, team=None):
    R = t_off.numel() - 1
    cy, u = torch.empty(tp.numel(), dtype=torch.float64), torch.zeros(wp.numel(), dtype=torch.float64)
    g_wp = torch.zeros_like(wp)
    load("sampling").host_interlevel_outer_backward(
        ctypes.c_int(team or 0),
        ptr(t),
        ptr(w),
        ptr(t_off),
        ptr(tp),
        ptr(wp),
        ptr(tp_off),
        ctypes.c_int64(R),
        ctypes.c_int64(w.numel()),
        ctypes.c_int64(wp.numel()),
        ctypes.c_float(eps),
        ptr(g_loss),
        ptr(cy),
        ptr(u),
        ptr(g_wp),
    )
    return g_wp
