"""The distortion loss in nerfacc's flattened conventions (nerfacc 0.5.3 ships none; 0.3.x had
``nerfacc.losses.distortion``). Runs rfkernels' fused O(S) kernel."""

from __future__ import annotations

from torch import Tensor

import rfkernels

from .pack import to_offsets


def distortion(
    weights: Tensor,
    t_starts: Tensor,
    t_ends: Tensor,
    packed_info: Tensor | None = None,
    ray_indices: Tensor | None = None,
    n_rays: int | None = None,
) -> Tensor:
    """mip-NeRF 360 distortion loss per ray ``[n_rays]`` for batched ``[R, S]`` inputs or flat
    ``[N]`` ones with ``packed_info`` or ``ray_indices`` + ``n_rays``:
    ``sum_ij w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 (t_end_i - t_start_i)``."""
    offsets = to_offsets(weights.shape[0], packed_info, ray_indices, n_rays)
    kw = {} if offsets is None else {"offsets": offsets}
    return rfkernels.distortion_loss(weights, t_starts, t_ends, **kw)


__all__ = ["distortion"]
