"""``HashGridEncoding``: the hash grid as an ``nn.Module`` owning its flat table (tcnn layout)."""

from __future__ import annotations

import torch
from torch import nn

from .api import OUT_OF_BOUNDS, encode
from .contract import TABLE_DTYPES
from .layout import BASE_RESOLUTION, LOG2_HASHMAP_SIZE, N_FEATURES_PER_LEVEL, N_LEVELS, TCNN_DEFAULTS, make_layout
from .output import make_output_format

_TCNN_KEYS = set(TCNN_DEFAULTS) | {"otype", "type", "hash"}


class HashGridEncoding(nn.Module):
    """Multiresolution hash encoding ``[N, D] -> [N, n_levels * n_features_per_level]``.

    ``params`` is the flat table ``[n_params]`` in tiny-cuda-nn's layout (level-major, then table
    entry, then feature; see :mod:`rfkernels.hashgrid.layout`), initialised uniform in
    ``[-1e-4, 1e-4]`` as tcnn does. ``resolutions[l]`` is the number of grid vertices per axis of
    level ``l``; ``level_scales[l] = base_resolution * per_level_scale**l - 1`` is its number of
    cells per unit length (the grid coordinate is ``x * level_scales[l] + 0.5``), the ``res_l`` of
    the anti-aliasing factor ``erf(1 / sqrt(8 * scales**2 * level_scales[l]**2))``.

    ``output_layout`` / ``output_dtype``: memory layout (``"point_major"`` or ``"feature_major"``) and
    dtype (None = float32, float16, bfloat16) of the returned features (see :mod:`.output`).
    """

    def __init__(
        self,
        n_input_dims: int = 3,
        n_levels: int = N_LEVELS,
        n_features_per_level: int = N_FEATURES_PER_LEVEL,
        log2_hashmap_size: int = LOG2_HASHMAP_SIZE,
        base_resolution: int = BASE_RESOLUTION,
        per_level_scale: float | None = None,
        max_resolution: float | None = None,
        interpolation: str = "linear",
        dtype: torch.dtype = torch.float32,
        out_of_bounds: str = "clamp",
        backend: str | None = None,
        device: torch.device | str | None = None,
        deterministic: bool = False,
        output_layout: str = "point_major",
        output_dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.layout = make_layout(
            n_input_dims,
            n_levels,
            n_features_per_level,
            log2_hashmap_size,
            base_resolution,
            per_level_scale,
            max_resolution,
            interpolation,
        )
        if dtype not in TABLE_DTYPES + (torch.float64,):
            raise ValueError(
                f"`dtype` must be torch.float32 or torch.float16 (float64: torch backend only), got {dtype}"
            )
        if out_of_bounds not in OUT_OF_BOUNDS:
            raise ValueError(f"`out_of_bounds` must be one of {OUT_OF_BOUNDS}, got {out_of_bounds!r}")
        self.out_of_bounds = out_of_bounds
        self.backend = backend
        self.deterministic = deterministic
        make_output_format(output_layout, output_dtype)  # checked here, not at the first forward
        self.output_layout, self.output_dtype = output_layout, output_dtype
        self.params = nn.Parameter(torch.empty(self.layout.n_params, dtype=dtype, device=device).uniform_(-1e-4, 1e-4))

    # ------------------------------------------------------------------------------ geometry
    @property
    def n_input_dims(self) -> int:
        return self.layout.n_input_dims

    @property
    def output_dim(self) -> int:
        return self.layout.output_dim

    @property
    def resolutions(self) -> list[int]:
        """Grid vertices per axis of each level: ``ceil(level_scales[l]) + 1``."""
        return list(self.layout.resolutions)

    @property
    def level_scales(self) -> list[float]:
        """Cells per unit length of each level: ``base_resolution * per_level_scale**l - 1``."""
        return list(self.layout.level_scales)

    @property
    def level_offsets(self) -> list[int]:
        """``[L+1]`` first table entry of each level (multiply by F for the index in ``params``)."""
        return list(self.layout.level_offsets)

    def level_table(self, level: int) -> torch.Tensor:
        """View ``[entries_l, F]`` of one level's rows of ``params``."""
        F = self.layout.n_features_per_level
        start, end = self.layout.level_offsets[level], self.layout.level_offsets[level + 1]
        return self.params[start * F : end * F].view(end - start, F)

    # ------------------------------------------------------------------------------- forward
    def forward(self, points: torch.Tensor, scales: torch.Tensor | None = None) -> torch.Tensor:
        """``points [N, D]`` in [0, 1], optional Zip-NeRF ``scales [N]`` -> ``[N, output_dim]`` (float32,
        or ``output_dtype``; stored as ``output_layout``)."""
        return encode(
            points,
            self.params,
            self.layout,
            scales=scales,
            out_of_bounds=self.out_of_bounds,
            backend=self.backend,
            deterministic=self.deterministic,
            output_layout=self.output_layout,
            output_dtype=self.output_dtype,
        )

    # -------------------------------------------------------------------------- tcnn interop
    @classmethod
    def from_tcnn_config(cls, n_input_dims: int, config: dict, **kwargs) -> HashGridEncoding:
        """Build from a tiny-cuda-nn encoding config (``{"otype": "HashGrid", ...}``, or
        ``{"otype": "Grid", "type": "Hash", ...}``); missing keys take tcnn's defaults. ``kwargs``
        (dtype, out_of_bounds, backend, device, output_layout, output_dtype) pass through. The table
        layout is tcnn's, so ``enc.params.data.copy_(tcnn_module.params)`` moves a trained table over."""
        if not isinstance(config, dict):
            raise ValueError(f"`config` must be a dict, got {type(config).__name__}")
        unknown = set(config) - _TCNN_KEYS
        if unknown:
            raise ValueError(f"`config` has unsupported keys {sorted(unknown)}; supported: {sorted(_TCNN_KEYS)}")
        otype = str(config.get("otype", "HashGrid")).lower()
        gtype = str(config.get("type", "Hash")).lower()
        if otype not in ("hashgrid", "grid") or gtype != "hash":
            raise ValueError(
                f"`config` must describe a hash grid (otype 'HashGrid', or 'Grid' with type 'Hash'), "
                f"got otype={config.get('otype')!r} type={config.get('type')!r}"
            )
        if str(config.get("hash", "CoherentPrime")).lower() != "coherentprime":
            raise ValueError(f"`config['hash']` must be 'CoherentPrime' (tcnn's default), got {config['hash']!r}")
        cfg = {**TCNN_DEFAULTS, **{k: v for k, v in config.items() if k in TCNN_DEFAULTS}}
        interp = str(cfg.pop("interpolation")).lower()
        if interp not in ("linear", "smoothstep"):
            raise ValueError(
                f"`config['interpolation']` must be 'Linear' or 'Smoothstep', got {config['interpolation']!r}"
            )
        return cls(n_input_dims, interpolation=interp, **cfg, **kwargs)

    def tcnn_config(self) -> dict:
        """The equivalent tiny-cuda-nn encoding config."""
        lay = self.layout
        return {
            "otype": "HashGrid",
            "n_levels": lay.n_levels,
            "n_features_per_level": lay.n_features_per_level,
            "log2_hashmap_size": lay.log2_hashmap_size,
            "base_resolution": lay.base_resolution,
            "per_level_scale": lay.per_level_scale,
            "interpolation": lay.interpolation.capitalize(),
        }

    def extra_repr(self) -> str:
        lay = self.layout
        return (
            f"n_input_dims={lay.n_input_dims}, n_levels={lay.n_levels}, n_features_per_level="
            f"{lay.n_features_per_level}, log2_hashmap_size={lay.log2_hashmap_size}, base_resolution="
            f"{lay.base_resolution}, per_level_scale={lay.per_level_scale:.6g}, interpolation="
            f"{lay.interpolation!r}, dtype={self.params.dtype}, n_params={lay.n_params}"
        )
