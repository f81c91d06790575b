"""tiny-cuda-nn's input encodings (``encoding_config``) as torch functions of ``(x, params)``.

:func:`make_encoding` parses a tcnn encoding config (``otype`` case-insensitive, tcnn's defaults
for missing keys) into an :class:`EncodingSpec`; ``spec(x, params)`` maps ``[B, n_input_dims]``
to ``[B, padded_output_dims]`` and ``spec.init_params(gen)`` gives the flat ``[n_params]``
initial parameters in tcnn's layout (only grids have parameters).

Semantics follow tcnn's encodings (``include/tiny-cuda-nn/encodings/*.h``), per input dimension ``x``:

- ``Identity``: ``x * scale + offset``.
- ``Frequency`` (``n_frequencies`` F): ``sin(2^k pi x)``, ``cos(2^k pi x)`` for k = 0..F-1, interleaved.
- ``TriangleWave`` (F): ``4 |frac(u) - 1/2| - 1`` with ``u = 2^(k-1) x + k/4``.
- ``OneBlob`` (``n_bins`` n): the mass of a quartic kernel of radius ``1/n`` centred at ``x`` that
  falls in each of ``n`` bins of [0, 1], the kernel wrapping around [0, 1].
- ``SphericalHarmonics`` (``degree`` 1..8, three inputs in [0, 1] mapped to ``2x - 1``): the real
  orthonormal SH basis with the Condon-Shortley phase, bands ``l < degree`` (``degree**2`` outputs),
  ``m = -l..l`` within a band, as polynomials of the (unnormalised) mapped direction.
- ``Grid`` / ``HashGrid`` / ``DenseGrid`` / ``TiledGrid`` (``type`` Hash/Dense/Tiled): the multiresolution
  grid on :func:`rfkernels.hash_grid_encode`. A dense or tiled grid is the hash grid whose every level
  fits its table (same layout and index); a tiled grid whose levels would wrap is rejected.
- ``Composite``: ``nested`` encodings on consecutive input slices (``n_dims_to_encode``, at most one
  left unspecified = the rest; ``dims_to_encode_begin``), ``reduction`` Concatenation / Sum / Product.
- ``Empty``; ``OneBlobFrequency`` / ``NRC`` (TriangleWave on 3 dims, OneBlob on 5, Identity on the rest).

Padding (``alignment``, as tcnn's ``set_alignment``): outputs are padded to a multiple of
``lcm(alignment, required_output_alignment)`` with ones after the features, except spherical harmonics
(ones before) and grids (zeros after). Inside a concatenating ``Composite`` each nested encoding is
padded so that the next one starts at a multiple of its required alignment (a grid's feature count).
"""

from __future__ import annotations

import math
import numbers

import torch

import rfkernels
from rfkernels.hashgrid.layout import TCNN_DEFAULTS, make_layout


def _next_multiple(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def _int(cfg: dict, key: str, default: int, lo: int = 1, hi: int | None = None) -> int:
    value = cfg.get(key, default)
    bad = isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo
    if bad or (hi is not None and value > hi):
        rng = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"encoding_config[{key!r}] must be an integer {rng}, got {value!r}")
    return int(value)


def _float(cfg: dict, key: str, default: float) -> float:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"encoding_config[{key!r}] must be a finite number, got {value!r}")
    return float(value)


class EncodingSpec:
    """A parsed encoding: ``n_input_dims``, ``n_output_dims`` (features), ``n_to_pad``, ``n_params``."""

    required_output_alignment = 1
    pad_value = 1.0
    pad_in_front = False
    n_params = 0

    def __init__(self, n_input_dims: int, n_output_dims: int):
        self.n_input_dims, self.n_output_dims, self.n_to_pad = n_input_dims, n_output_dims, 0

    @property
    def padded_output_dims(self) -> int:
        return self.n_output_dims + self.n_to_pad

    def set_padded_output_dims(self, width: int) -> None:
        self.n_to_pad = width - self.n_output_dims

    def set_alignment(self, alignment: int) -> None:
        align = math.lcm(max(alignment, 1), self.required_output_alignment)
        self.set_padded_output_dims(_next_multiple(self.n_output_dims, align))

    def init_params(self, gen: torch.Generator) -> torch.Tensor:
        return torch.empty(0)

    def features(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """``[B, n_input_dims]`` float32 -> ``[B, n_output_dims]`` (unpadded)."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """``[B, n_input_dims]`` -> ``[B, padded_output_dims]``."""
        y = self.features(x, params)
        if self.n_to_pad == 0:
            return y
        pad = y.new_full((y.shape[0], self.n_to_pad), self.pad_value)
        return torch.cat([pad, y] if self.pad_in_front else [y, pad], 1)


class Empty(EncodingSpec):
    def __init__(self, n_input_dims: int, cfg: dict):
        super().__init__(n_input_dims, 0)

    def features(self, x, params):
        return x.new_zeros(x.shape[0], 0)


class Identity(EncodingSpec):
    def __init__(self, n_input_dims: int, cfg: dict):
        super().__init__(n_input_dims, n_input_dims)
        self.scale, self.offset = _float(cfg, "scale", 1.0), _float(cfg, "offset", 0.0)

    def features(self, x, params):
        return x * self.scale + self.offset


class Frequency(EncodingSpec):
    def __init__(self, n_input_dims: int, cfg: dict):
        self.n_frequencies = _int(cfg, "n_frequencies", 12)
        super().__init__(n_input_dims, n_input_dims * self.n_frequencies * 2)

    def features(self, x, params):
        freqs = 2.0 ** torch.arange(self.n_frequencies, dtype=x.dtype, device=x.device)
        phase = x[:, :, None] * freqs * math.pi  # [B, D, F]
        return torch.stack([torch.sin(phase), torch.cos(phase)], -1).reshape(x.shape[0], -1)


class TriangleWave(EncodingSpec):
    def __init__(self, n_input_dims: int, cfg: dict):
        self.n_frequencies = _int(cfg, "n_frequencies", 12)
        super().__init__(n_input_dims, n_input_dims * self.n_frequencies)

    def features(self, x, params):
        k = torch.arange(self.n_frequencies, dtype=x.dtype, device=x.device)
        u = x[:, :, None] * 2.0 ** (k - 1) + k * 0.25  # [B, D, F]
        return ((u - torch.floor(u) - 0.5).abs() * 4 - 1).reshape(x.shape[0], -1)


def _quartic_cdf(t: torch.Tensor, n_bins: int) -> torch.Tensor:
    """CDF of the quartic kernel ``15/16 (1 - u^2)^2`` (``u = t * n_bins``) at ``t``."""
    u = t * n_bins
    return (15.0 / 16.0 * u * (1 - 2.0 / 3.0 * u * u + 0.2 * u**4) + 0.5).clamp(0.0, 1.0)


class OneBlob(EncodingSpec):
    def __init__(self, n_input_dims: int, cfg: dict):
        self.n_bins = _int(cfg, "n_bins", 16)
        if self.n_bins & (self.n_bins - 1):
            raise ValueError(f"encoding_config['n_bins'] must be a power of two, got {self.n_bins}")
        super().__init__(n_input_dims, n_input_dims * self.n_bins)

    def features(self, x, params):
        edges = torch.arange(self.n_bins + 1, dtype=x.dtype, device=x.device) / self.n_bins
        t = edges - x[:, :, None]  # [B, D, n+1]
        cdf = sum(_quartic_cdf(t + shift, self.n_bins) for shift in (-1.0, 0.0, 1.0))  # wrapped kernel
        return (cdf[..., 1:] - cdf[..., :-1]).reshape(x.shape[0], -1)


def _sh_normalisation(band: int, m: int) -> float:
    """sqrt((2l+1)/(4pi) (l-m)!/(l+m)!) for band l, times sqrt(2) for m > 0 (real SH)."""
    k = math.sqrt((2 * band + 1) / (4 * math.pi) * math.factorial(band - m) / math.factorial(band + m))
    return k * math.sqrt(2.0) if m > 0 else k


class SphericalHarmonics(EncodingSpec):
    pad_in_front = True

    def __init__(self, n_input_dims: int, cfg: dict):
        self.degree = _int(cfg, "degree", 4, lo=1, hi=8)
        if n_input_dims != 3:
            raise ValueError(f"SphericalHarmonics encodes 3-D directions: n_input_dims must be 3, got {n_input_dims}")
        super().__init__(3, self.degree**2)

    def features(self, x, params):
        d = x * 2 - 1
        dx, dy, dz = d.unbind(1)
        # cos/sin parts: Re/Im of (x + iy)^m; z parts: associated Legendre polynomials P_l^m
        # without their (1 - z^2)^(m/2) factor, by the standard recurrences in l.
        cos_m, sin_m = [torch.ones_like(dx)], [torch.zeros_like(dx)]
        for _ in range(1, self.degree):
            c, s = cos_m[-1], sin_m[-1]
            cos_m.append(c * dx - s * dy)
            sin_m.append(c * dy + s * dx)
        legendre = {}
        for m in range(self.degree):
            legendre[m, m] = torch.full_like(dz, (-1) ** m * math.prod(range(1, 2 * m, 2)))
            if m + 1 < self.degree:
                legendre[m + 1, m] = (2 * m + 1) * dz * legendre[m, m]
            for b in range(m + 2, self.degree):
                legendre[b, m] = ((2 * b - 1) * dz * legendre[b - 1, m] - (b + m - 1) * legendre[b - 2, m]) / (b - m)
        out = []
        for b in range(self.degree):  # band l = b
            for m in range(-b, b + 1):
                angular = sin_m[-m] if m < 0 else cos_m[m]
                out.append(_sh_normalisation(b, abs(m)) * legendre[b, abs(m)] * angular)
        return torch.stack(out, 1)


_GRID_TYPES = {"grid": "hash", "hashgrid": "hash", "densegrid": "dense", "tiledgrid": "tiled"}
_GRID_KEYS = {
    "otype",
    "type",
    "n_levels",
    "n_features_per_level",
    "log2_hashmap_size",
    "base_resolution",
    "per_level_scale",
    "interpolation",
    "hash",
    "n_dims_to_encode",
    "dims_to_encode_begin",
}


class Grid(EncodingSpec):
    """Multiresolution grid via :func:`rfkernels.hash_grid_encode` (params: table, U(-1e-4, 1e-4))."""

    pad_value = 0.0

    def __init__(self, n_input_dims: int, cfg: dict):
        unknown = set(cfg) - _GRID_KEYS
        if unknown:
            raise ValueError(f"encoding_config has unsupported grid keys {sorted(unknown)}")
        otype = str(cfg.get("otype", "Grid")).lower()
        gtype = str(cfg.get("type", _GRID_TYPES[otype].capitalize())).lower()
        if gtype not in ("hash", "dense", "tiled"):
            raise ValueError(f"encoding_config['type'] = {cfg['type']!r} is not a grid type; use Hash, Dense or Tiled")
        if str(cfg.get("hash", "CoherentPrime")).lower() != "coherentprime":
            raise ValueError(f"encoding_config['hash'] = {cfg['hash']!r} is not supported; only 'CoherentPrime'")
        interp = str(cfg.get("interpolation", "Linear")).lower()
        if interp not in ("linear", "smoothstep"):
            raise ValueError(f"encoding_config['interpolation'] = {cfg['interpolation']!r}: use Linear or Smoothstep")
        L = _int(cfg, "n_levels", TCNN_DEFAULTS["n_levels"])
        N0 = _int(cfg, "base_resolution", TCNN_DEFAULTS["base_resolution"])
        default_scale = 2.0 if gtype != "dense" or L == 1 else math.exp(math.log(256.0 / N0) / (L - 1))
        scale = _float(cfg, "per_level_scale", default_scale)
        if scale <= 0:
            raise ValueError(f"encoding_config['per_level_scale'] must be > 0, got {scale}")
        self.kwargs = {
            "n_levels": L,
            "n_features_per_level": _int(cfg, "n_features_per_level", TCNN_DEFAULTS["n_features_per_level"]),
            "log2_hashmap_size": _int(cfg, "log2_hashmap_size", TCNN_DEFAULTS["log2_hashmap_size"]),
            "base_resolution": N0,
            "per_level_scale": scale,
            "interpolation": interp,
        }
        if gtype != "hash":
            self.kwargs["log2_hashmap_size"] = self._dense_log2_size(n_input_dims, gtype)
        self.layout = make_layout(n_input_dims, **self.kwargs)
        self.n_params = self.layout.n_params
        self.required_output_alignment = self.kwargs["n_features_per_level"]
        super().__init__(n_input_dims, L * self.kwargs["n_features_per_level"])

    def _dense_log2_size(self, D: int, gtype: str) -> int:
        """A table size every level fits densely (then the hash grid's layout is the dense grid's)."""
        probe = make_layout(D, **{**self.kwargs, "log2_hashmap_size": 1})
        dense_sizes = [_next_multiple(r**D, 8) for r in probe.resolutions]
        if gtype == "tiled" and max(dense_sizes) > self.kwargs["base_resolution"] ** D:
            raise ValueError(
                "encoding_config['type'] = 'Tiled' with levels finer than base_resolution (whose tables "
                "wrap) is not supported; use 'Dense' or 'Hash'"
            )
        return max(1, math.ceil(math.log2(max(dense_sizes))))

    def init_params(self, gen):
        return torch.empty(self.n_params).uniform_(-1e-4, 1e-4, generator=gen)

    def features(self, x, params):
        return rfkernels.hash_grid_encode(x, params, **self.kwargs)


class Composite(EncodingSpec):
    def __init__(self, n_input_dims: int, cfg: dict):
        nested = cfg.get("nested")
        if not isinstance(nested, list) or not all(isinstance(n, dict) for n in nested):
            raise ValueError("encoding_config['nested'] must be a list of encoding configs (Composite)")
        reduction = str(cfg.get("reduction", "Concatenation")).lower()
        if reduction not in ("concatenation", "sum", "product"):
            raise ValueError(f"encoding_config['reduction'] = {cfg['reduction']!r}: use Concatenation, Sum or Product")
        self.reduction = reduction
        explicit = [n for n in nested if "n_dims_to_encode" in n]
        if len(nested) - len(explicit) > 1:
            raise ValueError("Composite: only one nested encoding may leave 'n_dims_to_encode' unspecified")
        begins = any("dims_to_encode_begin" in n for n in nested)
        counts = [_int(n, "n_dims_to_encode", 0, lo=0) for n in explicit]
        if not begins and sum(counts) > n_input_dims:
            raise ValueError(f"Composite: nested encodings encode {sum(counts)} dims > n_input_dims = {n_input_dims}")
        rest = n_input_dims - sum(counts) if not begins else None
        self.nested, self.begins, offset = [], [], 0
        for sub in nested:
            if "n_dims_to_encode" in sub:
                offset = _int(sub, "dims_to_encode_begin", offset, lo=0)
                n = _int(sub, "n_dims_to_encode", 0, lo=0)
            elif rest is None:
                raise ValueError("Composite: 'n_dims_to_encode' is required with 'dims_to_encode_begin'")
            else:
                n = rest
            if offset + n > n_input_dims:
                raise ValueError(f"Composite: a nested encoding reads dims {offset}..{offset + n} of {n_input_dims}")
            if n > 0:
                self.nested.append(make_encoding(n, sub, alignment=1))
                self.begins.append(offset)
            offset += n
        if not self.nested:
            raise ValueError("Composite: no nested encoding encodes any dimension")
        self.n_params = sum(e.n_params for e in self.nested)
        self.required_output_alignment = math.lcm(*(e.required_output_alignment for e in self.nested))
        if reduction == "concatenation":
            so_far = 0
            for enc, nxt in zip(self.nested[:-1], self.nested[1:]):
                enc.set_padded_output_dims(
                    _next_multiple(so_far + enc.n_output_dims, nxt.required_output_alignment) - so_far
                )
                so_far += enc.padded_output_dims
            width = so_far + self.nested[-1].padded_output_dims
        else:
            widths = {e.n_output_dims for e in self.nested}
            if len(widths) != 1:
                raise ValueError(f"Composite: reduction {reduction!r} needs equal nested output widths, got {widths}")
            width = widths.pop()
        super().__init__(n_input_dims, width)

    def set_padded_output_dims(self, width: int) -> None:
        if self.reduction == "concatenation":  # the last nested encoding carries the padding
            last = self.nested[-1]
            last.set_padded_output_dims(width - (self.n_output_dims - last.padded_output_dims))
        else:
            self.n_to_pad = width - self.n_output_dims

    @property
    def padded_output_dims(self) -> int:
        if self.reduction == "concatenation":
            return sum(e.padded_output_dims for e in self.nested)
        return self.n_output_dims + self.n_to_pad

    def init_params(self, gen):
        return torch.cat([torch.empty(0)] + [e.init_params(gen) for e in self.nested])

    def features(self, x, params):
        outs, start = [], 0
        for enc, begin in zip(self.nested, self.begins):
            outs.append(enc(x[:, begin : begin + enc.n_input_dims], params[start : start + enc.n_params]))
            start += enc.n_params
        if self.reduction == "concatenation":
            return torch.cat(outs, 1)
        return torch.stack(outs).sum(0) if self.reduction == "sum" else torch.stack(outs).prod(0)


def _nrc(n_input_dims: int, cfg: dict) -> Composite:
    nested = [
        {"otype": "TriangleWave", "n_dims_to_encode": 3, "n_frequencies": cfg.get("n_frequencies", 12)},
        {"otype": "OneBlob", "n_dims_to_encode": 5, "n_bins": cfg.get("n_bins", 4)},
        {"otype": "Identity"},
    ]
    return Composite(n_input_dims, {"otype": "Composite", "nested": nested})


ENCODINGS = {
    "composite": Composite,
    "empty": Empty,
    "frequency": Frequency,
    "grid": Grid,
    "hashgrid": Grid,
    "densegrid": Grid,
    "tiledgrid": Grid,
    "identity": Identity,
    "oneblob": OneBlob,
    "sphericalharmonics": SphericalHarmonics,
    "trianglewave": TriangleWave,
    "oneblobfrequency": _nrc,
    "nrc": _nrc,
}
_NAMES = (
    "Composite, Empty, Frequency, Grid, HashGrid, DenseGrid, TiledGrid, Identity, OneBlob, "
    "SphericalHarmonics, TriangleWave, OneBlobFrequency, NRC"
)


def make_encoding(n_input_dims: int, encoding_config: dict, alignment: int = 0) -> EncodingSpec:
    """Parse a tcnn ``encoding_config`` for ``n_input_dims`` inputs, padded to ``alignment`` (0: none)."""
    if not isinstance(encoding_config, dict):
        raise ValueError(f"`encoding_config` must be a dict, got {type(encoding_config).__name__}")
    name = encoding_config.get("otype", "OneBlob")  # tcnn's default otype
    if not isinstance(name, str) or name.lower() not in ENCODINGS:
        raise ValueError(f"encoding_config['otype'] = {name!r} is not a tiny-cuda-nn encoding; use one of {_NAMES}")
    spec = ENCODINGS[name.lower()](n_input_dims, encoding_config)
    if alignment > 0:
        spec.set_alignment(alignment)
    return spec


__all__ = ["ENCODINGS", "EncodingSpec", "make_encoding"]
