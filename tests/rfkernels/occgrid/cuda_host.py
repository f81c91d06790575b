"""``rfkernels/occgrid/cuda.py`` look-alike running csrc/occgrid/kernels.cu's per-ray code on the CPU."""

import ctypes

import torch

from tests.helpers.cuda_host import load, ptr


class Args(ctypes.Structure):
    """``rfk::OccgridArgs`` of csrc/occgrid/kernels.h (same field order and types)."""

    _fields_ = [
        ("rays_o", ctypes.c_void_p),
        ("rays_d", ctypes.c_void_p),
        ("binaries", ctypes.c_void_p),
        ("aabbs", ctypes.c_void_p),
        ("near", ctypes.c_void_p),
        ("far", ctypes.c_void_p),
        ("rays_mask", ctypes.c_void_p),
        ("n_rays", ctypes.c_int64),
        ("levels", ctypes.c_int),
        ("res", ctypes.c_int * 3),
        ("step_size", ctypes.c_float),
        ("cone_angle", ctypes.c_float),
        ("max_steps", ctypes.c_int64),
    ]


def constants() -> tuple[int, float, float]:
    """(kOccgridMaxLevels, kOccgridDdaEps, kOccgridDtMax) as compiled."""
    levels, eps, dt_max = ctypes.c_int(), ctypes.c_float(), ctypes.c_float()
    load("occgrid").host_occgrid_constants(ctypes.byref(levels), ctypes.byref(eps), ctypes.byref(dt_max))
    return levels.value, eps.value, dt_max.value


def intersect(rays_o, rays_d, aabbs, near, far, miss):
    R, M = rays_o.shape[0], aabbs.shape[0]
    t_mins, t_maxs = torch.empty(R, M), torch.empty(R, M)
    hits = torch.empty(R, M, dtype=torch.uint8)
    load("occgrid").host_occgrid_intersect(
        ptr(rays_o), ptr(rays_d), ptr(aabbs), ctypes.c_int64(R), ctypes.c_int(M), ctypes.c_float(near),
        ctypes.c_float(far), ctypes.c_float(miss), ptr(t_mins), ptr(t_maxs), ptr(hits),
    )  # fmt: skip
    return t_mins, t_maxs, hits.bool()


def traverse(rays_o, rays_d, binaries, aabbs, near, far, rays_mask, step_size, cone_angle, max_steps):
    R = rays_o.shape[0]
    bins, mask = binaries.view(torch.uint8), rays_mask.view(torch.uint8)
    a = Args(
        ptr(rays_o).value, ptr(rays_d).value, ptr(bins).value, ptr(aabbs).value, ptr(near).value, ptr(far).value,
        ptr(mask).value, R, binaries.shape[0], (ctypes.c_int * 3)(*binaries.shape[1:]), step_size, cone_angle,
        max_steps,
    )  # fmt: skip
    counts, terminate = torch.zeros(R, dtype=torch.int64), torch.empty(R)
    lib = load("occgrid")
    lib.host_occgrid_count(ctypes.byref(a), ptr(counts), ptr(terminate))
    offsets = torch.zeros(R + 1, dtype=torch.int64)
    torch.cumsum(counts, 0, out=offsets[1:])
    n = int(offsets[-1])
    t_starts, t_ends = torch.empty(n), torch.empty(n)
    if n:
        lib.host_occgrid_fill(ctypes.byref(a), ptr(offsets), ptr(t_starts), ptr(t_ends))
    return offsets, t_starts, t_ends, terminate
