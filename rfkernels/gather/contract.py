"""What every gather backend shares: the output (:class:`GatherOutput`), the fused-kernel contract
(:class:`GatherKernels`) and the constants both sides of it use, named once here: the reduction
codes the kernels branch on, the packed camera layout, the supported conventions."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch

CONVENTIONS = ("opencv", "opengl")
OPENGL_FLIP = (1.0, -1.0, -1.0)  # opengl camera space -> opencv: (x, -y, -z)

# Reduction codes of the fused kernels (a compile-time switch there): by name, then as a table.
REDUCE_NONE = 0  # out [B, N, V, C]
REDUCE_MEAN = 1  # out [B, N, C]
REDUCE_MEAN_VAR = 2  # out [B, N, 2C]
REDUCE_MAX = 3  # out [B, N, C] (+ argmax view [B, N, C] int32 for the backward)
REDUCE_CODE = {"none": REDUCE_NONE, "mean": REDUCE_MEAN, "mean_var": REDUCE_MEAN_VAR, "max": REDUCE_MAX}
REDUCTIONS = tuple(REDUCE_CODE)

CAM_STRIDE = 18  # packed per-view camera: 12 floats world->camera [R|t] (opencv) + 6 floats of K_feat
Tensor = torch.Tensor


class GatherOutput(NamedTuple):
    features: torch.Tensor  # [B, N, V, C] (none) | [B, N, C] (mean, max) | [B, N, 2C] (mean_var)
    mask: torch.Tensor  # [B, N, V] bool: in front of the camera (z > near_eps) and inside the image
    camera_coords: torch.Tensor | None  # [B, N, V, 3] camera-space points (in `convention`) or None


class GatherKernels(Protocol):
    """What a fused gather backend (``triton.py``, ``cuda.py``) provides. ``points`` ``[B, N, 3]``,
    ``feats`` ``[B, V, H, W, C]`` (channels last), ``cams`` ``[B, V, CAM_STRIDE]``
    (:func:`~.adapters.pack_cameras`), all float32 contiguous; ``reduce`` is a :data:`REDUCE_CODE`."""

    def gather_forward(
        self, points: Tensor, feats: Tensor, cams: Tensor, near_eps: float, reduce: int, want_cam: bool
    ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """-> features (shape by ``reduce``), mask [B, N, V] bool, camera coords [B, N, V, 3] | None,
        argmax view [B, N, C] int32 (``max`` only) | None."""

    def gather_backward(
        self,
        g_out: Tensor,
        g_cam: Tensor | None,
        points: Tensor,
        feats: Tensor,
        cams: Tensor,
        out: Tensor | None,
        mask: Tensor,
        arg: Tensor | None,
        near_eps: float,
        reduce: int,
        need_points: bool,
        scale: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """-> d feats [B, V, H, W, C], d points [B, N, 3] | None. ``out``: the forward output
        (``mean_var`` only); ``scale`` [1]: int64 fixed-point accumulation with this scale
        (deterministic) instead of float atomics."""
