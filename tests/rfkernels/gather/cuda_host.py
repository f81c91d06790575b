"""``rfkernels/gather/cuda.py`` look-alike running csrc/gather/kernels.cu's per-lane code on the CPU."""

import ctypes

import torch

from rfkernels.gather.contract import REDUCE_MAX, REDUCE_MEAN_VAR, REDUCE_NONE
from tests.helpers.cuda_host import load, ptr


def _dims(points, feats, near_eps, reduce):
    B, N = points.shape[:2]
    V, H, W, C = feats.shape[1:]
    return (
        ctypes.c_int64(B),
        ctypes.c_int64(N),
        ctypes.c_int(V),
        ctypes.c_int(C),
        ctypes.c_int(H),
        ctypes.c_int(W),
        ctypes.c_float(near_eps),
        ctypes.c_int(reduce),
    )


def gather_forward(points, feats, cams, near_eps, reduce, want_cam):
    B, N = points.shape[:2]
    V, C = feats.shape[1], feats.shape[4]
    out = torch.empty((B, N, V, C) if reduce == REDUCE_NONE else (B, N, 2 * C if reduce == REDUCE_MEAN_VAR else C))
    mask = torch.empty(B, N, V, dtype=torch.uint8)
    cam = torch.empty(B, N, V, 3) if want_cam else None
    arg = torch.empty(B, N, C, dtype=torch.int32) if reduce == REDUCE_MAX else None
    load("gather").host_gather_forward(
        ptr(points),
        ptr(feats),
        ptr(cams),
        *_dims(points, feats, near_eps, reduce),
        ptr(out),
        ptr(mask),
        ptr(cam),
        ptr(arg),
    )
    return out, mask.view(torch.bool), cam, arg


def gather_backward(g_out, g_cam, points, feats, cams, out, mask, arg, near_eps, reduce, need_points, scale=None):
    fixed = scale is not None
    acc = torch.zeros(feats.shape, dtype=torch.int64 if fixed else torch.float32)
    g_points = torch.zeros_like(points) if need_points else None
    load("gather").host_gather_backward(
        ptr(points),
        ptr(feats),
        ptr(cams),
        *_dims(points, feats, near_eps, reduce),
        ptr(g_out),
        ptr(g_cam),
        ptr(out),
        ptr(mask.view(torch.uint8)),
        ptr(arg),
        ptr(None if fixed else acc),
        ptr(acc if fixed else None),
        ctypes.c_float(float(scale) if fixed else 0.0),
        ptr(g_points),
    )
    g_feats = (acc.double() / scale.double()).float() if fixed else acc
    return g_feats, g_points
