"""The hash grid's output format: memory layout and dtype of the features ``[N, L*F]`` it returns
(and of the gradient it reads back).

* ``output_layout="point_major"`` (default): a contiguous ``[N, L*F]`` tensor; a fused kernel's
  (point, level) thread writes its F features at a stride of ``L*F`` elements from its neighbour's.
* ``output_layout="feature_major"``: the same ``[N, L*F]`` values stored feature-major, i.e. the
  returned tensor is the transpose (``.t()``) of a contiguous ``[L*F, N]`` buffer (strides
  ``(1, N)``): consecutive points of one feature are consecutive addresses, so a warp's stores (and
  the backward's loads of the output gradient) are coalesced. ``out.t()`` is that contiguous buffer.
* ``output_dtype``: ``None`` (float32; float64 for the torch backend's float64 tables), or
  ``torch.float16`` / ``torch.bfloat16`` (what a half-precision MLP after the encoding consumes).
  The fused kernels accumulate in float32 and round once when they store; the gradient is read
  in this dtype and converted to float32 in registers.

The ``torch`` backend computes the default format and converts it (one cast, one transposing
copy): the ground truth for the fused kernels, which write the format directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

OUTPUT_LAYOUTS = ("point_major", "feature_major")
OUTPUT_DTYPES = (None, torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class OutputFormat:
    """Layout (one of :data:`OUTPUT_LAYOUTS`) and dtype (one of :data:`OUTPUT_DTYPES`) of the features."""

    layout: str = "point_major"
    dtype: torch.dtype | None = None

    @property
    def feature_major(self) -> bool:
        return self.layout == "feature_major"

    def buffer_dtype(self, table_dtype: torch.dtype = torch.float32) -> torch.dtype:
        """The dtype of the stored features for a table of ``table_dtype``."""
        if self.dtype is not None:
            return self.dtype
        return torch.float64 if table_dtype == torch.float64 else torch.float32

    def empty_buffer(self, n_points: int, output_dim: int, device, table_dtype=torch.float32) -> torch.Tensor:
        """The kernels' output buffer: ``[N, L*F]`` (point-major) or ``[L*F, N]`` (feature-major)."""
        shape = (output_dim, n_points) if self.feature_major else (n_points, output_dim)
        return torch.empty(shape, device=device, dtype=self.buffer_dtype(table_dtype))

    def view(self, buffer: torch.Tensor) -> torch.Tensor:
        """A kernel buffer -> the ``[N, L*F]`` features (a view, no copy)."""
        return buffer.t() if self.feature_major else buffer

    def buffer_of(self, features: torch.Tensor) -> torch.Tensor:
        """``[N, L*F]`` features in the default format -> this format's buffer shape and dtype
        (differentiable; a transposed view for feature-major, contiguous only if needed by the caller)."""
        out = features if self.dtype is None else features.to(self.dtype)
        return out.t() if self.feature_major else out

    def convert(self, features: torch.Tensor) -> torch.Tensor:
        """``[N, L*F]`` features in the default format -> the same values in this format (once, for
        all levels: one cast and one transposing copy)."""
        return self.view(self.buffer_of(features).contiguous())


DEFAULT = OutputFormat()


def make_output_format(output_layout: str = "point_major", output_dtype: torch.dtype | None = None) -> OutputFormat:
    """Checked :class:`OutputFormat` from the public arguments."""
    if output_layout not in OUTPUT_LAYOUTS:
        raise ValueError(f"`output_layout` must be one of {OUTPUT_LAYOUTS}, got {output_layout!r}")
    if output_dtype == torch.float32:
        output_dtype = None
    if output_dtype not in OUTPUT_DTYPES:
        raise ValueError(
            f"`output_dtype` must be None (float32), torch.float16 or torch.bfloat16, got {output_dtype!r}"
        )
    return OutputFormat(output_layout, output_dtype)
