"""nerfacc.scan: inclusive/exclusive sums and products along rays, padded or packed.

Composed from torch (``cumsum`` / ``cumprod`` on a padded view of packed inputs): rfkernels has no
standalone scan kernel (its fused kernels scan inside rendering). Differentiable like nerfacc's,
and on every device; products with zeros get torch's exact ``cumprod`` gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import checks
from .pack import packed_info_to_offsets, pad


def _scan(inputs: Tensor, packed_info: Tensor | None, op, exclusive: bool, identity: float) -> Tensor:
    checks.samples("inputs", inputs, packed_info is not None)
    if packed_info is None:
        if exclusive:
            inputs = torch.cat([torch.full_like(inputs[..., :1], identity), inputs[..., :-1]], dim=-1)
        return op(inputs, dim=-1)
    offsets = packed_info_to_offsets(packed_info, inputs.shape[0])
    padded, mask = pad(inputs, offsets, identity)
    return _scan(padded, None, op, exclusive, identity)[mask]


def inclusive_sum(inputs: Tensor, packed_info: Tensor | None = None) -> Tensor:
    """``cumsum`` along the last dim, or per chunk of a flat tensor with ``packed_info [R, 2]``."""
    return _scan(inputs, packed_info, torch.cumsum, False, 0.0)


def exclusive_sum(inputs: Tensor, packed_info: Tensor | None = None) -> Tensor:
    """Exclusive ``cumsum`` (first element 0), batched or packed."""
    return _scan(inputs, packed_info, torch.cumsum, True, 0.0)


def inclusive_prod(inputs: Tensor, packed_info: Tensor | None = None) -> Tensor:
    """``cumprod`` along the last dim, or per chunk with ``packed_info``."""
    return _scan(inputs, packed_info, torch.cumprod, False, 1.0)


def exclusive_prod(inputs: Tensor, packed_info: Tensor | None = None) -> Tensor:
    """Exclusive ``cumprod`` (first element 1), batched or packed."""
    return _scan(inputs, packed_info, torch.cumprod, True, 1.0)


__all__ = ["inclusive_sum", "exclusive_sum", "inclusive_prod", "exclusive_prod"]
