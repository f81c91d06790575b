"""``rfkernels/volrend/cuda.py`` look-alike running csrc/volrend/kernels.cu's per-ray team code on the CPU.

Every function takes the signature of its ``cuda.py`` counterpart plus ``team``: the team width (8, 16, 32)
the kernels run with, or None for the one the launcher picks from the samples per ray."""

import ctypes

import torch

from rfkernels.volrend.contract import TAU_MAX
from tests.helpers.cuda_host import load, ptr

f32 = ctypes.c_float


def composite_forward(sigmas, deltas, tmids, colors, offsets, eps, want_trans=True, team=None):
    lib = load("volrend")
    R, C = offsets.numel() - 1, (colors.shape[1] if colors is not None else 0)
    rgb, depth, opacity = torch.empty(R, C), torch.empty(R), torch.empty(R)
    weights, trans = torch.empty_like(sigmas), (torch.empty_like(sigmas) if want_trans else None)
    lib.host_composite_forward(
        ctypes.c_int(team or 0),
        ptr(sigmas),
        ptr(deltas),
        ptr(tmids),
        ptr(colors),
        ptr(offsets),
        ctypes.c_int64(R),
        ctypes.c_int64(sigmas.numel()),
        ctypes.c_int(C),
        f32(eps),
        f32(TAU_MAX),
        ptr(rgb),
        ptr(depth),
        ptr(opacity),
        ptr(weights),
        ptr(trans),
    )
    return rgb, depth, opacity, weights, trans


def composite_backward(
    g_rgb,
    g_depth,
    g_opacity,
    g_weights,
    g_trans,
    sigmas,
    deltas,
    tmids,
    colors,
    offsets,
    rgb,
    depth,
    opacity,
    eps,
    team=None,
):
    lib = load("volrend")
    R, C = offsets.numel() - 1, (colors.shape[1] if colors is not None else 0)
    g_s, g_d = torch.empty_like(sigmas), torch.empty_like(deltas)
    g_t = torch.empty_like(tmids) if tmids is not None else None
    g_c = torch.empty_like(colors) if colors is not None else None
    lib.host_composite_backward(
        ctypes.c_int(team or 0),
        ptr(sigmas),
        ptr(deltas),
        ptr(tmids),
        ptr(colors),
        ptr(offsets),
        ctypes.c_int64(R),
        ctypes.c_int64(sigmas.numel()),
        ctypes.c_int(C),
        f32(eps),
        f32(TAU_MAX),
        ptr(g_rgb if C else None),
        ptr(g_depth),
        ptr(g_opacity),
        ptr(g_weights),
        ptr(g_trans),
        ptr(rgb if C else None),
        ptr(depth),
        ptr(opacity),
        ptr(g_s),
        ptr(g_d),
        ptr(g_t),
        ptr(g_c),
    )
    return g_s, g_d, g_t, g_c


def team_width(n_samples, n_rays):
    """The team width the launchers pick for ``n_samples`` samples over ``n_rays`` rays."""
    return load("volrend").host_team_width(ctypes.c_int64(n_samples), ctypes.c_int64(n_rays))


def _distortion(backward, weights, tmids, deltas, offsets, g_loss=None, team=None):
    lib = load("volrend")
    R = offsets.numel() - 1
    loss = torch.empty(R)
    g = [torch.empty_like(weights), torch.empty_like(tmids), torch.empty_like(deltas)]
    lib.host_distortion(
        ctypes.c_int(team or 0),
        ctypes.c_int(backward),
        ptr(weights),
        ptr(tmids),
        ptr(deltas),
        ptr(offsets),
        ctypes.c_int64(R),
        ctypes.c_int64(weights.numel()),
        ptr(loss),
        ptr(g_loss),
        *map(ptr, g),
    )
    return tuple(g) if backward else loss


def distortion_forward(weights, tmids, deltas, offsets, team=None):
    return _distortion(0, weights, tmids, deltas, offsets, team=team)


def distortion_backward(g_loss, weights, tmids, deltas, offsets, team=None):
    return _distortion(1, weights, tmids, deltas, offsets, g_loss, team=team)
