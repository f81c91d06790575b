"""The volrend contract: what a fused backend implements, the public output type, and the
constants every backend (reference, Triton, CUDA) shares."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch

Tensor = torch.Tensor

# Optical depth saturates here: exp(-TAU_MAX) is 0 in float32, and clamping keeps prefix sums finite
# for huge (or inf) densities (no inf - inf).
TAU_MAX = 1.0e4


class VolumeRenderOutput(NamedTuple):
    rgb: torch.Tensor  # [R, C] composited colours/features (+ background)
    depth: torch.Tensor  # [R] sum_i w_i * t_mid_i (not divided by opacity)
    opacity: torch.Tensor  # [R] sum_i w_i (accumulation)
    weights: torch.Tensor  # [R, S] or [N], same layout as the input


class VolrendKernels(Protocol):
    """What a fused volrend backend (``triton.py``, ``cuda.py``) provides. Inputs are packed float32
    contiguous: per-sample ``[N]`` (colors ``[N, C]``), ``offsets`` ``[R+1]`` int64; optional
    tensors may be None; outputs are float32."""

    def composite_forward(
        self,
        sigmas: Tensor,
        deltas: Tensor,
        tmids: Tensor | None,
        colors: Tensor | None,
        offsets: Tensor,
        eps: float,
        want_trans: bool,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """-> rgb [R, C], depth [R], opacity [R], weights [N], transmittance [N] (None, neither allocated
        nor written, unless ``want_trans``)."""

    def composite_backward(
        self,
        g_rgb: Tensor,
        g_depth: Tensor,
        g_opacity: Tensor,
        g_weights: Tensor | None,
        g_trans: Tensor | None,
        sigmas: Tensor,
        deltas: Tensor,
        tmids: Tensor | None,
        colors: Tensor | None,
        offsets: Tensor,
        rgb: Tensor,
        depth: Tensor,
        opacity: Tensor,
        eps: float,
    ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """-> d sigmas [N], d deltas [N], d tmids [N] | None, d colors [N, C] | None."""

    def distortion_forward(self, weights: Tensor, tmids: Tensor, deltas: Tensor, offsets: Tensor) -> Tensor:
        """-> loss [R]."""

    def distortion_backward(
        self, g_loss: Tensor, weights: Tensor, tmids: Tensor, deltas: Tensor, offsets: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """-> d weights, d tmids, d deltas, each [N]."""
