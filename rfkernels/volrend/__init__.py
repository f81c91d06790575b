"""Volume rendering (op family 3): weights, fused compositing and the distortion loss.

Layouts: padded ``[R, S]`` tensors, or packed (ragged) ``[N]`` tensors with per-ray ``offsets``
``[R+1]`` (or sorted ``ray_indices`` ``[N]`` plus ``n_rays``). The ``torch`` backend is
:mod:`.reference` differentiated by autograd; ``triton`` and ``cuda`` run fused kernels with a
hand-written backward that recomputes transmittance from the saved outputs (instant-ngp style)
instead of keeping per-sample intermediates.

Where each piece lives: :mod:`.contract` (the ``VolrendKernels`` protocol a fused backend
implements, ``VolumeRenderOutput``, ``TAU_MAX``), :mod:`.api` (public functions + argument checks),
:mod:`.ops` (autograd Functions), :mod:`.adapters` (``Reference``/``Fused``, what the registry
stores), :mod:`.reference` / :mod:`.triton` / :mod:`.cuda` (the backends).
"""

from __future__ import annotations

from .. import _dispatch
from .adapters import Fused, Reference
from .api import distortion_loss, render_weights, volume_render
from .contract import VolrendKernels, VolumeRenderOutput

__all__ = ["VolumeRenderOutput", "render_weights", "volume_render", "distortion_loss"]

_dispatch.register_family(
    "volrend",
    VolrendKernels,
    torch=Reference(),
    fused=Fused,
    triton="rfkernels.volrend.triton",
    cuda="rfkernels.volrend.cuda",
)
