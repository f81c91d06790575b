"""Multiresolution hash-grid encoding (op family 1): Instant-NGP / tiny-cuda-nn ``HashGrid``
with float32 or float16 tables, gradients w.r.t. the table, the points and the Zip-NeRF scales,
and a fused Zip-NeRF anti-aliasing factor.

Layout and index formula: :mod:`.layout`. Math: :mod:`.reference` (ground truth); the ``torch``
backend runs :mod:`.vectorized`, the same math vectorized over levels and corners. ``triton`` and ``cuda`` run one fused kernel per pass; their backward scatters table
gradients with float32 atomics (``deterministic=True``: without atomics, bitwise reproducible) and
computes each gradient only when autograd needs it. The backward is itself differentiable
(``create_graph=True``, e.g. eikonal losses on d features / d points), with a fused second-order
kernel for the common case (see :class:`_EncodeBackward`).
"""
from __future__ import annotations

from typing import Protocol

import torch

from .. import _checks, _dispatch
from .._compile import Compiled, torch_compile_enabled
from . import deterministic as _det
from . import reference, vectorized
from .layout import (BASE_RESOLUTION, LOG2_HASHMAP_SIZE, MAX_DIMS, N_FEATURES_PER_LEVEL, N_LEVELS, HashGridLayout,
                     make_layout)

OUT_OF_BOUNDS = ("clamp", "error")
TABLE_DTYPES = (torch.float16, torch.float32)
COMPILE_BUCKET = 4096  # the compiled torch path pads N to a multiple of this
Tensor = torch.Tensor


class HashGridKernels(Protocol):
    """What a fused hash-grid backend (``triton.py``, ``cuda.py``) provides. ``points`` ``[N, D]`` and
    ``scales`` ``[N]`` | None float32 contiguous, ``params`` ``[n_params]`` float16/float32 contiguous,
    ``g_out`` ``[N, L*F]`` float32; a ``need_*`` flag False means that gradient is not computed (None)."""

    def forward(self, points: Tensor, params: Tensor, scales: Tensor | None, layout: HashGridLayout) -> Tensor:
        """-> features [N, L*F] float32."""

    def backward(self, g_out: Tensor, points: Tensor, params: Tensor, scales: Tensor | None,
                 layout: HashGridLayout, need_points: bool, need_params: bool,
                 need_scales: bool) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """-> d points [N, D], d params [n_params] (params dtype), d scales [N]; float atomics."""

    def backward_levels(self, g_out: Tensor, points: Tensor, params: Tensor, scales: Tensor | None,
                        layout: HashGridLayout, level_base: int, n_levels: int, need_points: bool,
                        need_params: bool, need_scales: bool) -> tuple[Tensor | None, ...]:
        """Levels ``[level_base, level_base + n_levels)`` without atomics (``deterministic=True``, see
        :mod:`.deterministic`): -> corner table rows [n, N, 2^D], corner weights [n, N, 2^D],
        per-level d points [n, N, D], per-level d scales [n, N]."""

    def double_backward(self, gg_x: Tensor, g_out: Tensor, points: Tensor, params: Tensor,
                        scales: Tensor | None, layout: HashGridLayout, need_g_out: bool, need_points: bool,
                        need_params: bool, need_scales: bool) -> tuple[Tensor | None, ...]:
        """Backward of the backward when only d points is used downstream (``gg_x`` [N, D]):
        -> d g_out [N, L*F], d points [N, D], d params [n_params], d scales [N]."""


class _Encode(torch.autograd.Function):
    """(points f32 [N, D], params [P], scales f32 [N] | None) -> features f32 [N, L*F]."""

    @staticmethod
    def forward(ctx, points, params, scales, layout, kernels, deterministic):
        ctx.save_for_backward(points, params, scales)
        ctx.layout, ctx.kernels, ctx.deterministic = layout, kernels, deterministic
        return kernels.forward(points, params, scales, layout)

    @staticmethod
    def backward(ctx, g_out):
        points, params, scales = ctx.saved_tensors
        args = (g_out.contiguous().float(), points, params, scales, ctx.layout, ctx.kernels, ctx.deterministic,
                *ctx.needs_input_grad[:3])
        if torch.is_grad_enabled():  # create_graph=True: the backward itself is differentiable
            g_x, g_p, g_s = _EncodeBackward.apply(*args)
        else:
            g_x, g_p, g_s = _fused_backward(*args)
        return g_x, g_p, g_s, None, None, None


def _fused_backward(g_out, points, params, scales, layout, kernels, deterministic, need_x, need_p, need_s):
    args = (g_out, points, params, scales, layout, need_x, need_p, need_s)
    return _det.backward(kernels, *args) if deterministic else kernels.backward(*args)


class _EncodeBackward(torch.autograd.Function):
    """The fused backward as a differentiable op: (g_out, points, params, scales) -> (g_points,
    g_params, g_scales). Its own backward (second order, e.g. eikonal losses) is fused for the
    common case where only ``g_points`` is used downstream; anything else (gradients flowing into
    ``g_params``/``g_scales``, third order) differentiates the reference."""

    @staticmethod
    def forward(ctx, g_out, points, params, scales, layout, kernels, deterministic, need_x, need_p, need_s):
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(g_out, points, params, scales)
        ctx.layout, ctx.kernels, ctx.first_needs = layout, kernels, (need_x, need_p, need_s)
        return _fused_backward(g_out, points, params, scales, layout, kernels, deterministic, need_x, need_p, need_s)

    @staticmethod
    def backward(ctx, gg_x, gg_p, gg_s):
        g_out, points, params, scales = ctx.saved_tensors
        needs = ctx.needs_input_grad[:4]
        none6 = (None,) * 6
        if gg_x is None and gg_p is None and gg_s is None:
            return (None,) * 4 + none6
        if gg_p is None and gg_s is None and not torch.is_grad_enabled():
            grads = ctx.kernels.double_backward(
                gg_x.contiguous().float(), g_out, points, params, scales, ctx.layout, *needs)
            return (*grads, *none6)
        return (*_reference_double_vjp((gg_x, gg_p, gg_s), (g_out, points, params, scales), ctx.layout,
                                       ctx.first_needs, needs), *none6)


def _reference_vjp(g_out, points, params, scales, layout, needs):
    """Gradients of <reference.encode(...), g_out> w.r.t. the needed inputs, with a graph."""
    inputs = [t for t, n in zip((points, params, scales), needs) if n]
    if not inputs:
        return None, None, None
    out = reference.encode(points, params, layout, scales)
    grads = iter(torch.autograd.grad(out, inputs, g_out, create_graph=True, allow_unused=True))
    return tuple(next(grads) if n else None for n in needs)


def _reference_double_vjp(grads_in, saved, layout, first_needs, needs):
    """Backward of the backward through the reference (detached: no third order)."""
    with torch.enable_grad():
        leaves = [None if t is None else t.detach().requires_grad_(bool(n or k > 0))
                  for k, (t, n) in enumerate(zip(saved, needs))]
        firsts = _reference_vjp(*leaves, layout, first_needs)
        pairs = [(f, g) for f, g in zip(firsts, grads_in) if f is not None and g is not None]
        inputs = [leaf for leaf, n in zip(leaves, needs) if n]
        if not pairs or not inputs:
            return (None,) * 4
        res = iter(torch.autograd.grad([p[0] for p in pairs], inputs, [p[1] for p in pairs], allow_unused=True))
    return tuple(next(res) if n else None for n in needs)


def _validate(points, params, layout: HashGridLayout, scales, out_of_bounds):
    _checks.check_tensor("points", points, ndim=2)
    if points.shape[1] != layout.n_input_dims:
        raise ValueError(f"`points` must have shape [N, {layout.n_input_dims}] (n_input_dims), got {list(points.shape)}")
    device = points.device
    _checks.check_tensor("params", params, ndim=1, dtypes=TABLE_DTYPES + (torch.float64,), device=device)
    if params.numel() != layout.n_params:
        raise ValueError(f"`params` must have {layout.n_params} entries for this configuration "
                         f"(levels at entry offsets {list(layout.level_offsets)} x {layout.n_features_per_level} "
                         f"features), got {params.numel()}")
    if scales is not None:
        _checks.check_tensor("scales", scales, shape=[points.shape[0]], device=device)
    if out_of_bounds not in OUT_OF_BOUNDS:
        raise ValueError(f"`out_of_bounds` must be one of {OUT_OF_BOUNDS}, got {out_of_bounds!r}")
    if _checks.validation_enabled():
        if points.numel() and bool(torch.isnan(points).any()):  # every mode, every backend
            raise ValueError(f"`points` has {int(torch.isnan(points).any(1).sum())} point(s) with NaN coordinates")
        if out_of_bounds == "error" and points.numel():
            bad = ~((points >= 0) & (points <= 1))  # also catches NaN
            if bool(bad.any()):
                raise ValueError(f"`points` has {int(bad.any(1).sum())} point(s) outside [0, 1]^D or NaN "
                                 f"(first: {points[bad.any(1)][0].tolist()}); normalize them or pass "
                                 "out_of_bounds='clamp'")
        if scales is not None and scales.numel() and not bool((scales >= 0).all()):
            raise ValueError("`scales` must be >= 0 and not NaN (Gaussian standard deviations)")


def encode(points: torch.Tensor, params: torch.Tensor, layout: HashGridLayout, *,
           scales: torch.Tensor | None = None, out_of_bounds: str = "clamp", backend: str | None = None,
           deterministic: bool = False) -> torch.Tensor:
    """:func:`hash_grid_encode` with a prebuilt :class:`~.layout.HashGridLayout` (used by the module)."""
    _validate(points, params, layout, scales, out_of_bounds)
    impl = _dispatch.implementation("hashgrid", backend, points)
    return impl.encode(points, params, scales, layout, bool(deterministic))


def hash_grid_encode(
    points: torch.Tensor,
    params: torch.Tensor,
    *,
    n_levels: int = N_LEVELS,
    n_features_per_level: int = N_FEATURES_PER_LEVEL,
    log2_hashmap_size: int = LOG2_HASHMAP_SIZE,
    base_resolution: int = BASE_RESOLUTION,
    per_level_scale: float | None = None,
    max_resolution: float | None = None,
    interpolation: str = "linear",
    out_of_bounds: str = "clamp",
    scales: torch.Tensor | None = None,
    backend: str | None = None,
    deterministic: bool = False,
) -> torch.Tensor:
    """Multiresolution hash-grid encoding of ``points [N, D]`` in ``[0, 1]^D`` (D = 1..4).

    Args:
        params: the flat table ``[n_params]`` (float32 or float16; float64 with ``backend="torch"``)
            in tiny-cuda-nn's layout (see :mod:`rfkernels.hashgrid.layout`).
        n_levels .. interpolation: the grid configuration (tcnn's meaning and defaults;
            ``per_level_scale`` defaults to 2.0, or is derived from ``max_resolution``).
        out_of_bounds: ``"clamp"`` clamps coordinates to [0, 1] (zero point-gradient outside);
            ``"error"`` raises ``ValueError`` for points outside [0, 1]. NaN coordinates raise
            ``ValueError`` in both modes (value checks, skipped when validation is off: the
            result for NaN points is then unspecified).
        scales: optional ``[N]`` Zip-NeRF Gaussian std per point in [0, 1]-cube units; level ``l``'s
            features are multiplied by ``erf(1 / sqrt(8 * scales**2 * level_scales[l]**2))``.
        deterministic: fused backends only: a backward without float atomics whose gradients are
            bitwise reproducible (slower, ``N * 2^D * (12 + 4F)`` bytes of temporaries per level).
    Returns:
        ``[N, n_levels * n_features_per_level]`` float32 (float64 for float64 tables), level-major.
    """
    _checks.check_tensor("points", points, ndim=2)
    if not 1 <= points.shape[1] <= MAX_DIMS:
        raise ValueError(f"`points` must be [N, D] with D in 1..{MAX_DIMS}, got shape {list(points.shape)}")
    layout = make_layout(points.shape[1], n_levels, n_features_per_level, log2_hashmap_size, base_resolution,
                         per_level_scale, max_resolution, interpolation)
    return encode(points, params, layout, scales=scales, out_of_bounds=out_of_bounds, backend=backend,
                  deterministic=deterministic)



# ------------------------------------------------------------------------------ implementations
class Reference:
    """The ``torch`` backend: :func:`.vectorized.encode` (the reference's math vectorized over levels
    and corners, tested against :func:`.reference.encode`), autograd for every order of gradient;
    the only one taking float64 tables. ``deterministic`` does not apply (no atomics). With
    :func:`rfkernels.set_torch_compile` on, runs through ``torch.compile`` (:mod:`rfkernels._compile`)."""

    def __init__(self):
        self._encode = Compiled(vectorized.encode, "the hash-grid encoding")

    def encode(self, points, params, scales, layout, deterministic):
        """-> features [N, L*F] (float32, or float64 for float64 tables)."""
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
    """A fused backend (``triton``/``cuda``): :class:`HashGridKernels` behind :class:`_Encode`
    (float32 points/scales; float16/float32 tables)."""

    def __init__(self, kernels: HashGridKernels, name: str):
        self.kernels, self.name = kernels, name

    def encode(self, points, params, scales, layout, deterministic):
        if params.dtype == torch.float64:
            raise ValueError("`params` is float64: only backend='torch' supports float64 tables "
                             "(the fused backends take float16 or float32)")
        return _Encode.apply(points.float().contiguous(), params.contiguous(),
                             None if scales is None else scales.float().contiguous(), layout, self.kernels,
                             deterministic)


_dispatch.register_family("hashgrid", HashGridKernels, torch=Reference(), fused=Fused,
                          triton="rfkernels.hashgrid.triton", cuda="rfkernels.hashgrid.cuda")

# HashGridEncoding (module.py) is a layer above this API: import it from rfkernels.hashgrid.module
__all__ = ["HashGridLayout", "encode", "hash_grid_encode", "make_layout"]
