"""The hash grid's public functions, :func:`hash_grid_encode` and :func:`encode` (prebuilt layout):
argument checks, then the backend chosen by :mod:`rfkernels._dispatch`."""

from __future__ import annotations

import torch

from .. import _checks, _dispatch
from .contract import TABLE_DTYPES
from .layout import (
    BASE_RESOLUTION,
    LOG2_HASHMAP_SIZE,
    MAX_DIMS,
    N_FEATURES_PER_LEVEL,
    N_LEVELS,
    HashGridLayout,
    make_layout,
)
from .output import make_output_format

OUT_OF_BOUNDS = ("clamp", "error")


def _validate(points, params, layout: HashGridLayout, scales, out_of_bounds):
    _checks.check_tensor("points", points, ndim=2)
    if points.shape[1] != layout.n_input_dims:
        raise ValueError(
            f"`points` must have shape [N, {layout.n_input_dims}] (n_input_dims), got {list(points.shape)}"
        )
    device = points.device
    _checks.check_tensor("params", params, ndim=1, dtypes=TABLE_DTYPES + (torch.float64,), device=device)
    if params.numel() != layout.n_params:
        raise ValueError(
            f"`params` must have {layout.n_params} entries for this configuration "
            f"(levels at entry offsets {list(layout.level_offsets)} x {layout.n_features_per_level} "
            f"features), got {params.numel()}"
        )
    if scales is not None:
        _checks.check_tensor("scales", scales, shape=[points.shape[0]], device=device)
    if out_of_bounds not in OUT_OF_BOUNDS:
        raise ValueError(f"`out_of_bounds` must be one of {OUT_OF_BOUNDS}, got {out_of_bounds!r}")
    if _checks.reads_values(points, scales):
        if points.numel() and bool(torch.isnan(points).any()):  # every mode, every backend
            raise ValueError(f"`points` has {int(torch.isnan(points).any(1).sum())} point(s) with NaN coordinates")
        if out_of_bounds == "error" and points.numel():
            bad = ~((points >= 0) & (points <= 1))  # also catches NaN
            if bool(bad.any()):
                raise ValueError(
                    f"`points` has {int(bad.any(1).sum())} point(s) outside [0, 1]^D or NaN "
                    f"(first: {points[bad.any(1)][0].tolist()}); normalize them or pass "
                    "out_of_bounds='clamp'"
                )
        if scales is not None and scales.numel() and not bool((scales >= 0).all()):
            raise ValueError("`scales` must be >= 0 and not NaN (Gaussian standard deviations)")


def encode(
    points: torch.Tensor,
    params: torch.Tensor,
    layout: HashGridLayout,
    *,
    scales: torch.Tensor | None = None,
    out_of_bounds: str = "clamp",
    backend: str | None = None,
    deterministic: bool = False,
    output_layout: str = "point_major",
    output_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """:func:`hash_grid_encode` with a prebuilt :class:`~.layout.HashGridLayout` (used by the module)."""
    out_format = make_output_format(output_layout, output_dtype)
    _validate(points, params, layout, scales, out_of_bounds)
    impl = _dispatch.implementation("hashgrid", backend, points)
    return impl.encode(points, params, scales, layout, bool(deterministic), out_format)


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
    output_layout: str = "point_major",
    output_dtype: torch.dtype | None = None,
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
        output_layout: ``"point_major"`` (contiguous ``[N, L*F]``) or ``"feature_major"`` (the
            transpose of a contiguous ``[L*F, N]`` buffer: coalesced stores; see :mod:`.output`).
        output_dtype: ``None`` (float32), ``torch.float16`` or ``torch.bfloat16``.
    Returns:
        ``[N, n_levels * n_features_per_level]`` (level-major columns) in ``output_dtype`` (float32 by
        default; float64 for float64 tables), stored as ``output_layout`` says.
    """
    _checks.check_tensor("points", points, ndim=2)
    if not 1 <= points.shape[1] <= MAX_DIMS:
        raise ValueError(f"`points` must be [N, D] with D in 1..{MAX_DIMS}, got shape {list(points.shape)}")
    layout = make_layout(
        points.shape[1],
        n_levels,
        n_features_per_level,
        log2_hashmap_size,
        base_resolution,
        per_level_scale,
        max_resolution,
        interpolation,
    )
    return encode(
        points,
        params,
        layout,
        scales=scales,
        out_of_bounds=out_of_bounds,
        backend=backend,
        deterministic=deterministic,
        output_layout=output_layout,
        output_dtype=output_dtype,
    )
