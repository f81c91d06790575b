"""CUDA backend for the feature gather: thin wrappers over the extension built from csrc/gather/.

Implements :class:`rfkernels.gather.contract.GatherKernels` (shapes and dtypes are documented there), as
:mod:`.triton` does; absent optional tensors are passed as empty tensors (the binding maps them to
null pointers)."""

from __future__ import annotations

import torch

from .._cuda_ext import module
from .contract import REDUCE_MAX


def _empty(like: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    return like.new_empty(0, dtype=dtype)


def gather_forward(points, feats, cams, near_eps, reduce, want_cam):
    """:meth:`GatherKernels.gather_forward` via the extension's ``gather`` binding."""
    out, mask, cam, arg = module().gather_forward(points, feats, cams, float(near_eps), int(reduce), bool(want_cam))
    return out, mask.view(torch.bool), (cam if want_cam else None), (arg if reduce == REDUCE_MAX else None)


def gather_backward(g_out, g_cam, points, feats, cams, out, mask, arg, near_eps, reduce, need_points, scale=None):
    """:meth:`GatherKernels.gather_backward` via the extension's ``gather`` binding."""
    g_feats, g_points = module().gather_backward(
        g_out,
        g_cam if g_cam is not None else _empty(points),
        points,
        feats,
        cams,
        out if out is not None else _empty(points),
        mask.view(torch.uint8),
        arg if arg is not None else _empty(points, torch.int32),
        float(near_eps),
        int(reduce),
        bool(need_points),
        scale if scale is not None else _empty(points),
    )
    return g_feats, (g_points if need_points else None)
