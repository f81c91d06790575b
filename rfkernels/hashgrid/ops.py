"""The fused hash-grid backends as registered torch operators (pattern: :mod:`rfkernels._operators`).

- ``rfkernels::hashgrid_encode`` (points f32 [N, D], params [P], scales f32 [N] | None, layout fields,
  deterministic, output format, backend) -> the features' buffer in the output format
  (:class:`~.output.OutputFormat`; default f32 [N, L*F]).
- ``rfkernels::hashgrid_encode_backward`` -> (d points, d params, d scales), absent where not needed;
  scatters table gradients with float atomics, or without them through :mod:`.deterministic`.
  It is differentiable (``create_graph=True``, e.g. eikonal losses): fused
  (``rfkernels::hashgrid_encode_double_backward``) when only ``d points`` is used downstream and no
  third order is asked, else through the reference.

The layout travels as its defining fields (``dims = [D, L, F, log2 T, N_min]``, ``per_level_scale``,
``interpolation``) and the output format as (``out_layout``, ``out_dtype``); both are rebuilt inside.
"""

from __future__ import annotations

import torch

from .. import _operators as reg
from . import reference
from .deterministic import backward as deterministic_backward
from .layout import HashGridLayout, _build
from .output import OutputFormat

Tensor = torch.Tensor


def _fields(layout: HashGridLayout) -> tuple[list[int], float, str]:
    dims = [layout.n_input_dims, layout.n_levels, layout.n_features_per_level]
    return dims + [layout.log2_hashmap_size, layout.base_resolution], layout.per_level_scale, layout.interpolation


def _layout(dims: list[int], per_level_scale: float, interpolation: str) -> HashGridLayout:
    return _build(*dims, per_level_scale, interpolation)  # cached: the same object per configuration


def encode(points, params, scales, layout: HashGridLayout, deterministic: bool, out_format: OutputFormat, backend: str):
    """The fused encoding through :func:`encode_op` (checked, contiguous inputs) -> the output buffer."""
    return encode_op(
        points, params, scales, *_fields(layout), deterministic, out_format.layout, out_format.dtype, backend
    )


# ---------------------------------------------------------------------------------------- forward
@reg.define("hashgrid_encode")
def encode_op(
    points: Tensor,
    params: Tensor,
    scales: Tensor | None,
    dims: list[int],
    per_level_scale: float,
    interpolation: str,
    deterministic: bool,
    out_layout: str,
    out_dtype: torch.dtype | None,
    backend: str,
) -> Tensor:
    layout = _layout(dims, per_level_scale, interpolation)
    out_format = OutputFormat(out_layout, out_dtype)
    return reg.kernels("hashgrid", backend).forward(points, params, scales, layout, out_format=out_format)


@encode_op.register_fake
def _(points, params, scales, dims, per_level_scale, interpolation, deterministic, out_layout, out_dtype, backend):
    fmt = OutputFormat(out_layout, out_dtype)
    return fmt.empty_buffer(points.shape[0], dims[1] * dims[2], points.device)


def _encode_setup(ctx, inputs, output):
    points, params, scales, *config = inputs
    ctx.save_for_backward(points, params, scales)
    ctx.config = config  # dims, per_level_scale, interpolation, deterministic, out_layout, out_dtype, backend


def _encode_grad(ctx, g_out):
    points, params, scales = ctx.saved_tensors
    dims, b, interp, deterministic, out_layout, out_dtype, backend = ctx.config
    need_x, need_p, need_s = ctx.needs_input_grad[:3]
    g_out = g_out.contiguous().to(OutputFormat(out_layout, out_dtype).buffer_dtype())
    g_x, g_p, g_s = encode_backward(
        g_out,
        points,
        params,
        scales,
        dims,
        b,
        interp,
        deterministic,
        out_layout,
        out_dtype,
        need_x,
        need_p,
        need_s,
        backend,
    )
    return (
        (g_x if need_x else None),
        (g_p if need_p else None),
        (g_s if need_s and scales is not None else None),
        *(None,) * 7,
    )


encode_op.register_autograd(_encode_grad, setup_context=_encode_setup)


# --------------------------------------------------------------------------------------- backward
@reg.define("hashgrid_encode_backward")
def encode_backward(
    g_out: Tensor,
    points: Tensor,
    params: Tensor,
    scales: Tensor | None,
    dims: list[int],
    per_level_scale: float,
    interpolation: str,
    deterministic: bool,
    out_layout: str,
    out_dtype: torch.dtype | None,
    need_points: bool,
    need_params: bool,
    need_scales: bool,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor]:
    """-> (d points [N, D], d params [P] (params dtype), d scales [N]); absent where not needed."""
    kernels = reg.kernels("hashgrid", backend)
    layout, out_format = _layout(dims, per_level_scale, interpolation), OutputFormat(out_layout, out_dtype)
    args = (g_out, points, params, scales, layout, need_points, need_params, need_scales)
    if deterministic:
        grads = deterministic_backward(kernels, *args, out_format=out_format)
    else:
        grads = kernels.backward(*args, out_format=out_format)
    return tuple(reg.or_absent(g, like) for g, like in zip(grads, (points, params, points)))


@encode_backward.register_fake
def _(g_out, points, params, scales, dims, b, interp, det, out_layout, out_dtype, need_x, need_p, need_s, backend):
    g_x = torch.empty_like(points) if need_x else reg.absent(points)
    g_p = torch.empty_like(params) if need_p else reg.absent(params)
    g_s = points.new_empty(points.shape[0]) if need_s and scales is not None else reg.absent(points)
    return g_x, g_p, g_s


def _backward_setup(ctx, inputs, output):
    g_out, points, params, scales, dims, b, interp, det, out_layout, out_dtype, need_x, need_p, need_s, backend = inputs
    ctx.set_materialize_grads(False)  # None for unused gradients: picks the fused double backward
    ctx.save_for_backward(g_out, points, params, scales)
    ctx.config = (dims, b, interp, out_layout, out_dtype, backend)
    ctx.first_needs = (need_x, need_p, need_s)


def _backward_grad(ctx, gg_x, gg_p, gg_s):
    """Backward of the backward: fused when only ``d points`` is used downstream (and no third order),
    else through the reference (detached: no third order)."""
    g_out, points, params, scales = ctx.saved_tensors
    dims, b, interp, out_layout, out_dtype, backend = ctx.config
    needs = ctx.needs_input_grad[:4]
    none10 = (None,) * 10
    if gg_x is None and gg_p is None and gg_s is None:
        return (None,) * 4 + none10
    if gg_p is None and gg_s is None and not torch.is_grad_enabled():
        grads = encode_double_backward(
            gg_x.contiguous().float(),
            g_out,
            points,
            params,
            scales,
            dims,
            b,
            interp,
            out_layout,
            out_dtype,
            *needs,
            backend,
        )
        return (*(g if n else None for g, n in zip(grads, needs)), *none10)
    layout, out_format = _layout(dims, b, interp), OutputFormat(out_layout, out_dtype)
    saved = (g_out, points, params, scales)
    return (*_reference_double_vjp((gg_x, gg_p, gg_s), saved, layout, out_format, ctx.first_needs, needs), *none10)


encode_backward.register_autograd(_backward_grad, setup_context=_backward_setup)


@reg.define("hashgrid_encode_double_backward")
def encode_double_backward(
    gg_x: Tensor,
    g_out: Tensor,
    points: Tensor,
    params: Tensor,
    scales: Tensor | None,
    dims: list[int],
    per_level_scale: float,
    interpolation: str,
    out_layout: str,
    out_dtype: torch.dtype | None,
    need_g_out: bool,
    need_points: bool,
    need_params: bool,
    need_scales: bool,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``gg_x`` [N, D] -> (d g_out, d points, d params, d scales), absent where not needed."""
    grads = reg.kernels("hashgrid", backend).double_backward(
        gg_x,
        g_out,
        points,
        params,
        scales,
        _layout(dims, per_level_scale, interpolation),
        need_g_out,
        need_points,
        need_params,
        need_scales,
        out_format=OutputFormat(out_layout, out_dtype),
    )
    return tuple(reg.or_absent(g, like) for g, like in zip(grads, (g_out, points, params, points)))


@encode_double_backward.register_fake
def _(
    gg_x, g_out, points, params, scales, dims, b, interp, out_layout, out_dtype, need_g, need_x, need_p, need_s, backend
):
    wanted = (need_g, need_x, need_p, need_s and scales is not None)
    likes = (g_out, points, params, points.new_empty(points.shape[0]))
    return tuple(torch.empty_like(like) if n else reg.absent(like) for like, n in zip(likes, wanted))


# -------------------------------------------------------------------------------------- reference
def _reference_vjp(g_out, points, params, scales, layout, out_format, needs):
    """Gradients of <reference.encode(...) in out_format's buffer, g_out> w.r.t. the needed inputs, with a graph."""
    inputs = [t for t, n in zip((points, params, scales), needs) if n]
    if not inputs:
        return None, None, None
    out = out_format.buffer_of(reference.encode(points, params, layout, scales))
    grads = iter(torch.autograd.grad(out, inputs, g_out, create_graph=True, allow_unused=True))
    return tuple(next(grads) if n else None for n in needs)


def _reference_double_vjp(grads_in, saved, layout, out_format, first_needs, needs):
    """Backward of the backward through the reference (detached: no third order)."""
    with torch.enable_grad():
        leaves = [
            None if t is None else t.detach().requires_grad_(bool(n or k > 0))
            for k, (t, n) in enumerate(zip(saved, needs))
        ]
        firsts = _reference_vjp(*leaves, layout, out_format, first_needs)
        pairs = [(f, g) for f, g in zip(firsts, grads_in) if f is not None and g is not None]
        inputs = [leaf for leaf, n in zip(leaves, needs) if n]
        if not pairs or not inputs:
            return (None,) * 4
        res = iter(torch.autograd.grad([p[0] for p in pairs], inputs, [p[1] for p in pairs], allow_unused=True))
    return tuple(next(res) if n else None for n in needs)
