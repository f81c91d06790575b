"""What the registry stores for the hash grid: :class:`Reference` (the ``torch`` backend) and
:class:`Fused` (a :class:`~.contract.HashGridKernels` object behind the :mod:`.ops` operators)."""

from __future__ import annotations

import torch

from .._compile import Compiled, torch_compile_enabled
from . import ops, vectorized
from .contract import HashGridKernels
from .output import DEFAULT, OutputFormat

COMPILE_BUCKET = 4096  # the compiled torch path pads N to a multiple of this


class Reference:
    """The ``torch`` backend: :func:`.vectorized.encode` (the reference's math vectorized over levels
    and corners, tested against :func:`.reference.encode`), autograd for every order of gradient;
    the only one taking float64 tables. ``deterministic`` does not apply (no atomics). With
    :func:`rfkernels.set_torch_compile` on, runs through ``torch.compile`` (:mod:`rfkernels._compile`)."""

    def __init__(self):
        self._encode = Compiled(vectorized.encode, "the hash-grid encoding")

    def encode(self, points, params, scales, layout, deterministic, out_format: OutputFormat = DEFAULT):
        """-> features [N, L*F] (float32, or float64 for float64 tables), converted to ``out_format``."""
        if out_format != DEFAULT:
            return out_format.convert(self.encode(points, params, scales, layout, deterministic))
        if not torch_compile_enabled():
            return vectorized.encode(points, params, layout, scales)
        # compiled kernels are specialized to N (dynamic-shape ones ran ~3x slower here): pad N up
        # to a multiple of COMPILE_BUCKET so that training and chunked rendering reuse a few shapes
        n = points.shape[0]
        pad = -n % COMPILE_BUCKET
        if pad:
            points = torch.nn.functional.pad(points, (0, 0, 0, pad))
            scales = None if scales is None else torch.nn.functional.pad(scales, (0, pad))
        return self._encode(points, params, layout, scales)[:n]


class Fused:
    """A fused backend (``triton``/``cuda``): :class:`~.contract.HashGridKernels` behind
    the :mod:`.ops` operators (float32 points/scales; float16/float32 tables)."""

    def __init__(self, kernels: HashGridKernels, name: str):
        self.kernels, self.name = kernels, name

    def encode(self, points, params, scales, layout, deterministic, out_format: OutputFormat = DEFAULT):
        """-> features [N, L*F] in ``out_format`` (the kernels write its buffer directly)."""
        if params.dtype == torch.float64:
            raise ValueError(
                "`params` is float64: only backend='torch' supports float64 tables "
                "(the fused backends take float16 or float32)"
            )
        buffer = ops.encode(
            points.float().contiguous(),
            params.contiguous(),
            None if scales is None else scales.float().contiguous(),
            layout,
            deterministic,
            out_format,
            self.name,
        )
        return out_format.view(buffer)
