"""Proposal-network resampling (op family 2): inverse-CDF sampling of per-ray histograms, s-space
maps and the interlevel (proposal) losses of mip-NeRF 360 / Zip-NeRF.

Layouts: padded (``bins [R, S+1]``, ``weights [R, S]``) or packed for :func:`sample_pdf` (``weights
[N]``, ``offsets [R+1]`` over the weights, ``bins [N + R]``: ray r owns the ``S_r + 1`` edges
``bins[offsets[r] + r : offsets[r+1] + r + 1]``). The ``torch`` backend is :mod:`.reference`;
``triton`` and ``cuda`` run fused kernels on float32 copies (results cast back to the input dtype).
Random numbers are drawn once with ``torch.rand(..., generator=generator)`` before dispatch, so all
backends produce the same samples for the same generator state.

Where each piece lives: :mod:`.contract` (the ``SamplingKernels`` protocol a fused backend
implements), :mod:`.api` (public functions + argument checks), :mod:`.ops` (the interlevel autograd
Function), :mod:`.adapters` (``Reference``/``Fused``, what the registry stores), :mod:`.spacing`
(``SpaceMap``: t <-> s), :mod:`.reference` / :mod:`.triton` (+ ``triton_search``,
``triton_interlevel``) / :mod:`.cuda` (the backends).
"""

from __future__ import annotations

from .. import _dispatch
from .adapters import Fused, Reference
from .api import DEFAULT_HISTOGRAM_PADDING, EPS, interlevel_loss, sample_pdf  # noqa: F401  (EPS: the loss default)
from .contract import SamplingKernels
from .spacing import SpaceMap, s_to_t, t_to_s

__all__ = ["SpaceMap", "interlevel_loss", "s_to_t", "sample_pdf", "t_to_s", "DEFAULT_HISTOGRAM_PADDING"]

_dispatch.register_family(
    "sampling",
    SamplingKernels,
    torch=Reference(),
    fused=Fused,
    triton="rfkernels.sampling.triton",
    cuda="rfkernels.sampling.cuda",
)
