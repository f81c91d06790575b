"""The sampling contract: what a fused backend (``triton.py``, ``cuda.py``) implements."""

from __future__ import annotations

from typing import Protocol

import torch

Tensor = torch.Tensor


class SamplingKernels(Protocol):
    """What a fused sampling backend (``triton.py``, ``cuda.py``) provides. Inputs are packed float32
    contiguous (see :mod:`rfkernels._packing`): weights ``[N]`` with ``offsets`` ``[R+1]`` int64, bin
    edges ``[N + R]``; ``max_*`` are the largest per-ray bin counts; outputs are float32."""

    def sample(
        self,
        bins: Tensor,
        weights: Tensor,
        offsets: Tensor,
        jitter: Tensor | None,
        n: int,
        padding: float,
        blur: Tensor | None,
        return_edges: bool,
        max_bins: int,
    ) -> Tensor:
        """-> sorted samples [R, n] (or edges [R, n + 1]); ``jitter`` [R, n] / [R, 1] / None (midpoints)."""

    def interlevel_forward(
        self,
        t: Tensor,
        w: Tensor,
        t_off: Tensor,
        tp: Tensor,
        wp: Tensor,
        tp_off: Tensor,
        blur: Tensor | None,
        eps: float,
        max_fine: int,
        max_prop: int,
    ) -> tuple[Tensor, Tensor | None]:
        """-> loss [R], and for the blurred loss (``blur`` [R]) d loss / d wp [Np] (else None)."""

    def interlevel_backward(
        self,
        g_loss: Tensor,
        t: Tensor,
        w: Tensor,
        t_off: Tensor,
        tp: Tensor,
        wp: Tensor,
        tp_off: Tensor,
        eps: float,
        max_fine: int,
        max_prop: int,
    ) -> Tensor:
        """Outer (unblurred) loss: -> d loss / d wp [Np] given g_loss [R]."""
