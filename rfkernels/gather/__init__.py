"""PixelNeRF feature gather (op family 4): project world points into every source camera,
bilinearly sample that view's feature map, and optionally reduce across views.

The ``torch`` backend is :mod:`.reference` (``F.grid_sample``) differentiated by autograd. The
``triton`` and ``cuda`` backends run one fused kernel (transform, project, sample, reduce) on a
channels-last float32 copy of the feature maps, never materializing the per-view tensor for the
reduced outputs; their backward recomputes the projection and scatters into the feature-map
gradient with atomics (float: summation order varies; ``deterministic``: int64 fixed point, bitwise
reproducible), and differentiates w.r.t. the points (not w.r.t. the cameras).

Where each piece lives: :mod:`.api` (the public function, argument checks), :mod:`.contract` (the
output, the fused-kernel Protocol, the reduction codes and camera layout), :mod:`.ops` (the autograd
Function, the fixed-point scale), :mod:`.adapters` (what the registry stores, camera packing).
"""

from __future__ import annotations

from .. import _dispatch
from .adapters import Fused, Reference
from .api import gather_features
from .contract import CAM_STRIDE, CONVENTIONS, REDUCE_CODE, REDUCTIONS, GatherKernels, GatherOutput
from .ops import fixed_point_scale

_dispatch.register_family(
    "gather",
    GatherKernels,
    torch=Reference(),
    fused=Fused,
    triton="rfkernels.gather.triton",
    cuda="rfkernels.gather.cuda",
)

__all__ = [
    "CAM_STRIDE",
    "CONVENTIONS",
    "REDUCE_CODE",
    "REDUCTIONS",
    "GatherKernels",
    "GatherOutput",
    "fixed_point_scale",
    "gather_features",
]
