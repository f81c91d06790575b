"""Multiresolution hash-grid encoding (op family 1): Instant-NGP / tiny-cuda-nn ``HashGrid``
with float32 or float16 tables, gradients w.r.t. the table, the points and the Zip-NeRF scales,
and a fused Zip-NeRF anti-aliasing factor.

Layout and index formula: :mod:`.layout`. Math: :mod:`.reference` (ground truth); the ``torch``
backend runs :mod:`.vectorized`, the same math vectorized over levels and corners. ``triton`` and
``cuda`` run one fused kernel per pass; their backward scatters table gradients with float32
atomics (``deterministic=True``: without atomics, bitwise reproducible, :mod:`.deterministic`) and
computes each gradient only when autograd needs it. The backward is itself differentiable
(``create_graph=True``, e.g. eikonal losses on d features / d points), with a fused second-order
kernel for the common case (see :mod:`.ops`).

Where each piece lives: :mod:`.api` (public functions, argument checks), :mod:`.contract` (the
fused-kernel Protocol, shared constants), :mod:`.ops` (registered torch operators), :mod:`.adapters` (what
the registry stores), :mod:`.module` (``HashGridEncoding``, a layer above this API: import it from
``rfkernels.hashgrid.module``).
"""

from __future__ import annotations

from .. import _dispatch
from .adapters import Fused, Reference
from .api import OUT_OF_BOUNDS, encode, hash_grid_encode
from .contract import TABLE_DTYPES, HashGridKernels
from .layout import HashGridLayout, make_layout

_dispatch.register_family(
    "hashgrid",
    HashGridKernels,
    torch=Reference(),
    fused=Fused,
    triton="rfkernels.hashgrid.triton",
    cuda="rfkernels.hashgrid.cuda",
)

__all__ = [
    "OUT_OF_BOUNDS",
    "TABLE_DTYPES",
    "HashGridKernels",
    "HashGridLayout",
    "encode",
    "hash_grid_encode",
    "make_layout",
]
