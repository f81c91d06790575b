"""Level geometry and parameter layout of the hash grid, identical to tiny-cuda-nn's ``HashGrid``.

For level ``l`` (0-based), with ``b = per_level_scale`` and ``N_min = base_resolution``:

* ``scale_l = 2**(l * log2(b)) * N_min - 1`` (float32, as tcnn computes it): the number of grid
  *cells* per unit length; ``base_resolution`` counts grid *vertices* (tcnn's "-1" convention).
* ``resolution_l = ceil(scale_l) + 1`` vertices per axis.
* ``size_l = min(round_up_8(resolution_l**D), 2**log2_hashmap_size)`` table entries (rows).
* The flat table ``params`` holds the levels one after another: level ``l`` starts at entry
  ``offset_l = size_0 + ... + size_{l-1}`` and entry ``i`` of level ``l`` holds its ``F`` features
  at ``params[(offset_l + i) * F : (offset_l + i + 1) * F]``; ``len(params) = offset_L * F``.

Index of the grid vertex ``p = (p_0, .., p_{D-1})`` (uint32 arithmetic, wrapping mod 2**32)::

    stride = 1; index = 0
    for d in range(D):                       # tcnn's loop: stops once stride > size_l
        if stride > size_l: break
        index += p_d * stride; stride *= resolution_l
    if stride > size_l:                      # the grid does not fit: spatial hash
        index = p_0 * 1 ^ p_1 * 2654435761 ^ p_2 * 805459861 ^ p_3 * 3674653429
    entry = index % size_l

Coarse levels whose full grid fits are therefore dense (one-to-one); this layout module
precomputes, per level, the dense strides actually used (``stride_d``, 0 for dimensions the loop
never reached; uint32-wrapped exactly as tcnn's loop, which matters for resolutions >= 65536) and
whether the level hashes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

PRIMES = (1, 2654435761, 805459861, 3674653429)  # tcnn's "CoherentPrime" hash factors
MAX_DIMS = len(PRIMES)
MAX_LEVELS = 32  # the CUDA kernels pass level metadata by value
FEATURES = (1, 2, 4, 8)
INTERPOLATIONS = ("linear", "smoothstep")
U32 = 0xFFFFFFFF


@dataclass(frozen=True)
class HashGridLayout:
    n_input_dims: int
    n_levels: int
    n_features_per_level: int
    log2_hashmap_size: int
    base_resolution: int
    per_level_scale: float
    interpolation: str
    level_scales: tuple  # [L] float (float32 values): cells per unit length
    resolutions: tuple  # [L] int: vertices per axis
    level_offsets: tuple  # [L+1] int: first table entry of each level (in rows of F features)
    level_strides: tuple  # [L] tuples of D uint32 dense strides (0 = dimension not reached)
    level_hashed: tuple  # [L] bool

    @property
    def output_dim(self) -> int:
        return self.n_levels * self.n_features_per_level

    @property
    def n_params(self) -> int:
        return self.level_offsets[-1] * self.n_features_per_level

    def level_size(self, level: int) -> int:
        return self.level_offsets[level + 1] - self.level_offsets[level]

    def device_meta(self, device: torch.device) -> dict:
        """Per-level metadata as small device tensors for the Triton kernels (cached per device)."""
        return _device_meta(self, torch.device(device))


def _tcnn_scale(level: int, per_level_scale: float, base_resolution: int) -> float:
    """``exp2f(level * log2f(b)) * N_min - 1.0f`` in float32 arithmetic, as tcnn."""
    f32 = np.float32
    log2b = f32(np.log2(f32(per_level_scale)))
    return float(f32(np.exp2(f32(level) * log2b)) * f32(base_resolution) - f32(1.0))


def _tcnn_strides(resolution: int, size: int, dims: int) -> tuple[tuple, bool]:
    """Replay tcnn's ``grid_index`` stride loop in uint32: (strides used per dim, hashed?)."""
    stride, strides = 1, []
    for _ in range(dims):
        if stride > size:
            break
        strides.append(stride)
        stride = (stride * resolution) & U32
    strides += [0] * (dims - len(strides))
    return tuple(strides), size < stride


def _check_int(name, value, lo, hi=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"`{name}` must be an int, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"`{name}` must be {rng}, got {value}")
    return int(value)


# tiny-cuda-nn's HashGrid defaults: the one place they are spelled (the functional API, the module,
# make_layout and the tcnn-config reader all take them from here)
N_LEVELS = 16
N_FEATURES_PER_LEVEL = 2
LOG2_HASHMAP_SIZE = 19
BASE_RESOLUTION = 16
PER_LEVEL_SCALE = 2.0
TCNN_DEFAULTS = {
    "n_levels": N_LEVELS,
    "n_features_per_level": N_FEATURES_PER_LEVEL,
    "log2_hashmap_size": LOG2_HASHMAP_SIZE,
    "base_resolution": BASE_RESOLUTION,
    "per_level_scale": PER_LEVEL_SCALE,
    "interpolation": "Linear",
}


def resolve_per_level_scale(n_levels, base_resolution, per_level_scale, max_resolution) -> float:
    """``per_level_scale`` directly, or from ``max_resolution`` (Instant-NGP eq. 3:
    ``b = exp((ln N_max - ln N_min) / (L - 1))``), else tcnn's default 2.0."""
    if per_level_scale is not None and max_resolution is not None:
        raise ValueError("pass either `per_level_scale` or `max_resolution`, not both")
    if max_resolution is not None:
        if not (math.isfinite(max_resolution) and max_resolution >= base_resolution):
            raise ValueError(
                f"`max_resolution` must be a finite number >= `base_resolution` ({base_resolution}), "
                f"got {max_resolution}"
            )
        if n_levels == 1:
            return 1.0
        return math.exp((math.log(max_resolution) - math.log(base_resolution)) / (n_levels - 1))
    if per_level_scale is None:
        return PER_LEVEL_SCALE
    per_level_scale = float(per_level_scale)
    if not (per_level_scale >= 1.0 and math.isfinite(per_level_scale)):
        raise ValueError(f"`per_level_scale` must be a finite float >= 1, got {per_level_scale}")
    return per_level_scale


def make_layout(
    n_input_dims: int = 3,
    n_levels: int = N_LEVELS,
    n_features_per_level: int = N_FEATURES_PER_LEVEL,
    log2_hashmap_size: int = LOG2_HASHMAP_SIZE,
    base_resolution: int = BASE_RESOLUTION,
    per_level_scale: float | None = None,
    max_resolution: float | None = None,
    interpolation: str = "linear",
) -> HashGridLayout:
    """Validate a configuration (``ValueError`` naming the argument) and build its layout."""
    D = _check_int("n_input_dims", n_input_dims, 1, MAX_DIMS)
    L = _check_int("n_levels", n_levels, 1, MAX_LEVELS)
    F = _check_int("n_features_per_level", n_features_per_level, 1)
    if F not in FEATURES:
        raise ValueError(f"`n_features_per_level` must be one of {FEATURES}, got {F}")
    T = _check_int("log2_hashmap_size", log2_hashmap_size, 1, 30)
    N0 = _check_int("base_resolution", base_resolution, 2)
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"`interpolation` must be one of {INTERPOLATIONS}, got {interpolation!r}")
    b = resolve_per_level_scale(L, N0, per_level_scale, max_resolution)
    return _build(D, L, F, T, N0, float(np.float32(b)), interpolation)


@functools.lru_cache(maxsize=64)
def _build(D, L, F, T, N0, b, interpolation) -> HashGridLayout:
    scales, resolutions, offsets, strides, hashed = [], [], [0], [], []
    max_params = U32 // 2
    for level in range(L):
        scale = _tcnn_scale(level, b, N0)
        res = int(math.ceil(scale)) + 1
        if res >= 1 << 31:
            raise ValueError(f"level {level} has resolution {res}: lower `per_level_scale`/`n_levels`")
        size = min(res**D, max_params)
        size = min((size + 7) // 8 * 8, 1 << T)
        st, h = _tcnn_strides(res, size, D)
        scales.append(scale)
        resolutions.append(res)
        offsets.append(offsets[-1] + size)
        strides.append(st)
        hashed.append(h)
    if offsets[-1] * F >= 1 << 31:
        raise ValueError(f"the table would hold {offsets[-1] * F} parameters (>= 2**31): lower `log2_hashmap_size`")
    return HashGridLayout(
        D,
        L,
        F,
        T,
        N0,
        b,
        interpolation,
        tuple(scales),
        tuple(resolutions),
        tuple(offsets),
        tuple(strides),
        tuple(hashed),
    )


@functools.lru_cache(maxsize=64)
def _device_meta(layout: HashGridLayout, device: torch.device) -> dict:
    L, D = layout.n_levels, layout.n_input_dims
    strides = torch.tensor([list(s) + [0] * (MAX_DIMS - D) for s in layout.level_strides], dtype=torch.int64)
    strides = torch.where(strides >= 1 << 31, strides - (1 << 32), strides)  # uint32 bits as int32
    return {
        "offsets": torch.tensor(layout.level_offsets[:L], dtype=torch.int64, device=device),
        "sizes": torch.tensor([layout.level_size(l) for l in range(L)], dtype=torch.int32, device=device),
        "scales": torch.tensor(layout.level_scales, dtype=torch.float32, device=device),
        "strides": strides.to(torch.int32).reshape(L, MAX_DIMS).contiguous().to(device),
        "hashed": torch.tensor(layout.level_hashed, dtype=torch.int32, device=device),
    }
