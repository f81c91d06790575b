"""What every hash-grid backend shares: the fused-kernel contract (:class:`HashGridKernels`), the
table dtypes the fused kernels take, and the anti-aliasing cut-off every backend applies.

Layout and index formula of the table: :mod:`.layout`."""

from __future__ import annotations

from typing import Protocol

import torch

from .layout import HashGridLayout
from .output import DEFAULT, OutputFormat

TABLE_DTYPES = (torch.float16, torch.float32)  # fused tables; the torch backend also takes float64
AA_Z_MAX = 30.0  # erf(z) == 1 in float64 for z >= 30: the factor is exactly 1 there (and its grad 0)
Tensor = torch.Tensor


class HashGridKernels(Protocol):
    """What a fused hash-grid backend (``triton.py``, ``cuda.py``) provides. ``points`` ``[N, D]`` and
    ``scales`` ``[N]`` | None float32 contiguous, ``params`` ``[n_params]`` float16/float32 contiguous,
    ``g_out`` the features' gradient in the buffer of ``out_format`` (:class:`~.output.OutputFormat`:
    ``[N, L*F]`` or ``[L*F, N]``, float32/float16/bfloat16; default ``[N, L*F]`` float32); a ``need_*``
    flag False means that gradient is not computed (None).

    Table gradients of half tables: Triton accumulates in float32 and rounds once; CUDA accumulates
    hashed levels directly in half with one ``half2`` atomic per feature pair (as tiny-cuda-nn: each
    entry gets few contributions there, so the sum keeps about half precision, but contributions
    below half's smallest subnormal, 6e-8, are lost: scale the loss as for any half training) and
    dense levels, whose few entries each sum many contributions, in float32."""

    def forward(
        self,
        points: Tensor,
        params: Tensor,
        scales: Tensor | None,
        layout: HashGridLayout,
        out_format: OutputFormat = DEFAULT,
    ) -> Tensor:
        """-> the features' buffer of ``out_format`` (default [N, L*F] float32)."""

    def backward(
        self,
        g_out: Tensor,
        points: Tensor,
        params: Tensor,
        scales: Tensor | None,
        layout: HashGridLayout,
        need_points: bool,
        need_params: bool,
        need_scales: bool,
        out_format: OutputFormat = DEFAULT,
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """-> d points [N, D], d params [n_params] (params dtype), d scales [N]; float atomics."""

    def backward_levels(
        self,
        g_out: Tensor,
        points: Tensor,
        params: Tensor,
        scales: Tensor | None,
        layout: HashGridLayout,
        level_base: int,
        n_levels: int,
        need_points: bool,
        need_params: bool,
        need_scales: bool,
        out_format: OutputFormat = DEFAULT,
    ) -> tuple[Tensor | None, ...]:
        """Levels ``[level_base, level_base + n_levels)`` without atomics (``deterministic=True``, see
        :mod:`.deterministic`): -> corner table rows [n, N, 2^D], corner weights [n, N, 2^D],
        per-level d points [n, N, D], per-level d scales [n, N]."""

    def double_backward(
        self,
        gg_x: Tensor,
        g_out: Tensor,
        points: Tensor,
        params: Tensor,
        scales: Tensor | None,
        layout: HashGridLayout,
        need_g_out: bool,
        need_points: bool,
        need_params: bool,
        need_scales: bool,
        out_format: OutputFormat = DEFAULT,
    ) -> tuple[Tensor | None, ...]:
        """Backward of the backward when only d points is used downstream (``gg_x`` [N, D]):
        -> d g_out (g_out's buffer), d points [N, D], d params [n_params], d scales [N]."""
