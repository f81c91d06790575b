"""tiny-cuda-nn's torch API (``tinycudann``) on rfkernels: ``Encoding``, ``Network``,
``NetworkWithInputEncoding``, on any device, float32 or float16, with second derivatives.

- ``Encoding``: ``HashGrid`` (or ``Grid`` with ``type: "Hash"``) via :class:`rfkernels.HashGridEncoding`
  (tcnn's flat table layout and hash, init uniform in [-1e-4, 1e-4]). Inputs ``[B, D]`` in [0, 1]
  (points outside are clamped; tcnn extrapolates the grid). Output dtype = ``dtype``. Every other
  tcnn encoding (SphericalHarmonics, Frequency, Identity, OneBlob, TriangleWave, Composite, Dense /
  Tiled grids, ...) comes from :mod:`.tcnn_encodings`, also inside ``NetworkWithInputEncoding``.
- ``Network``: ``FullyFusedMLP`` / ``CutlassMLP`` as plain torch matmuls on one flat ``params``
  in tcnn's layout: bias-free weight matrices ``[out, in]`` row-major, input layer, hidden layers,
  output layer; the input width padded to a multiple of 16 with ones (tcnn's encoding padding)
  and the output width to a multiple of 16 (sliced off). Init: Xavier-uniform per matrix on the
  padded sizes (tcnn's rule; the random stream is torch's, seeded by ``seed``).
- ``dtype=None`` means float32 (tcnn picks float16 on most GPUs; pass ``torch.float16`` for that).
  Parameters are created on the CPU; move the module with ``.to(device)``.
Unsupported configs raise ``ValueError`` naming the key.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn

import rfkernels

from .tcnn_encodings import make_encoding

ALIGNMENT = 16  # tcnn pads network input and output widths to multiples of this
K_ACT = 10.0  # tcnn's sharpness of Softplus / Squareplus


def _squareplus(x):
    kx = x * K_ACT
    return 0.5 * (kx + torch.sqrt(kx * kx + 4)) / K_ACT


ACTIVATIONS = {
    "none": lambda x: x,
    "relu": F.relu,
    "leakyrelu": lambda x: F.leaky_relu(x, 0.01),
    "exponential": torch.exp,
    "sine": torch.sin,
    "sigmoid": torch.sigmoid,
    "squareplus": _squareplus,
    "softplus": lambda x: F.softplus(x * K_ACT) / K_ACT,
    "tanh": torch.tanh,
}
_NETWORK_KEYS = {"otype", "activation", "output_activation", "n_neurons", "n_hidden_layers", "feedback_alignment"}
_FULLY_FUSED_WIDTHS = (16, 32, 64, 128)


def _round_up(x: int, m: int = ALIGNMENT) -> int:
    return (x + m - 1) // m * m


def _dtype(dtype):
    if dtype is None:
        return torch.float32
    if dtype not in (torch.float32, torch.float16):
        raise ValueError(f"`dtype` must be torch.float32, torch.float16 or None, got {dtype}")
    return dtype


def _activation(config: dict, key: str):
    name = config.get(key, "ReLU" if key == "activation" else "None")
    if not isinstance(name, str):
        raise ValueError(f"network_config[{key!r}] must be an activation name (a string), got {name!r}")
    if name.lower() not in ACTIVATIONS:
        raise ValueError(
            f"network_config[{key!r}] = {name!r} is not supported; use one of "
            "None, ReLU, LeakyReLU, Exponential, Sine, Sigmoid, Squareplus, Softplus, Tanh"
        )
    return ACTIVATIONS[name.lower()]


def _as_input(x: torch.Tensor) -> torch.Tensor:
    """tcnn takes float32 inputs; float64 passes through (double-precision checks)."""
    return x if x.dtype == torch.float64 else x.float()


def _integer(value, name: str, lo: int = 1) -> int:
    """``value`` as an int >= ``lo`` (``True`` is not an integer, ``"abc"`` not a number), naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def _positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


_GRID_INTS = ("n_levels", "n_features_per_level", "log2_hashmap_size", "base_resolution")


def _check_config(name: str, config) -> dict:
    if not isinstance(config, dict):
        raise ValueError(f"`{name}` must be a dict, got {type(config).__name__}")
    return config


# ------------------------------------------------------------------------------------- encoding
def _is_hash_grid(config) -> bool:
    """A plain hash-grid config (served by :class:`rfkernels.HashGridEncoding`)."""
    if not isinstance(config, dict):
        return False
    otype, gtype = str(config.get("otype", "")).lower(), str(config.get("type", "Hash")).lower()
    return otype == "hashgrid" or (otype == "grid" and gtype == "hash")


def _make_grid(n_input_dims: int, encoding_config: dict, dtype) -> rfkernels.HashGridEncoding:
    cfg = _check_config("encoding_config", encoding_config)
    otype = str(cfg.get("otype", "")).lower()
    if otype not in ("hashgrid", "grid"):
        raise ValueError(
            f"encoding_config['otype'] = {cfg.get('otype')!r} is not supported; "
            "only 'HashGrid' (or 'Grid' with type 'Hash')"
        )
    if otype == "grid" and str(cfg.get("type", "Hash")).lower() != "hash":
        raise ValueError(f"encoding_config['type'] = {cfg['type']!r} is not supported; only 'Hash'")
    _integer(n_input_dims, "n_input_dims")
    for key in _GRID_INTS:
        if key in cfg:
            _integer(cfg[key], f"encoding_config[{key!r}]")
    if "per_level_scale" in cfg:
        _positive(cfg["per_level_scale"], "encoding_config['per_level_scale']")
    return rfkernels.HashGridEncoding.from_tcnn_config(n_input_dims, cfg, dtype=dtype)


class Encoding(nn.Module):
    """``[B, n_input_dims]`` in [0, 1] -> ``[B, n_output_dims]`` of ``dtype`` (tcnn ``Encoding``).

    ``params`` is the flat hash table in tcnn's layout, of ``dtype``."""

    def __init__(self, n_input_dims: int, encoding_config: dict, seed: int = 1337, dtype=None):
        super().__init__()
        self.n_input_dims = n_input_dims
        self.encoding_config = encoding_config
        self.seed = seed
        self.dtype = _dtype(dtype)
        gen = torch.Generator().manual_seed(seed)
        if _is_hash_grid(encoding_config):
            self.grid, self.spec = _make_grid(n_input_dims, encoding_config, self.dtype), None
            with torch.no_grad():
                self.grid.params.copy_(torch.empty_like(self.grid.params).uniform_(-1e-4, 1e-4, generator=gen))
            self.n_output_dims = self.grid.output_dim
        else:
            _integer(n_input_dims, "n_input_dims")
            self.grid, self.spec = None, make_encoding(n_input_dims, encoding_config)
            self.spec_params = nn.Parameter(self.spec.init_params(gen).to(self.dtype))
            self.n_output_dims = self.spec.padded_output_dims

    @property
    def params(self) -> nn.Parameter:
        return self.grid.params if self.grid is not None else self.spec_params

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.n_input_dims:
            raise ValueError(f"input must have shape [B, {self.n_input_dims}], got {list(x.shape)}")
        if self.grid is None:
            return self.spec(_as_input(x), self.spec_params).to(self.dtype)
        return self.grid(_as_input(x)).to(self.params.dtype)

    def extra_repr(self) -> str:
        return _extra_repr(self)


# -------------------------------------------------------------------------------------- network
class _MLP:
    """The parsed network config: matrix shapes, activations, init; ``forward(x, params)``."""

    def __init__(self, n_input_dims: int, n_output_dims: int, network_config: dict):
        cfg = _check_config("network_config", network_config)
        unknown = set(cfg) - _NETWORK_KEYS
        if unknown:
            raise ValueError(f"network_config has unsupported keys {sorted(unknown)}")
        otype = str(cfg.get("otype", "")).lower()
        if otype not in ("fullyfusedmlp", "cutlassmlp"):
            raise ValueError(
                f"network_config['otype'] = {cfg.get('otype')!r} is not supported; only 'FullyFusedMLP' or 'CutlassMLP'"
            )
        _integer(n_input_dims, "n_input_dims")
        _integer(n_output_dims, "n_output_dims")
        width = _integer(cfg.get("n_neurons", 128), "network_config['n_neurons']")
        n_hidden = _integer(cfg.get("n_hidden_layers", 5), "network_config['n_hidden_layers']")
        if otype == "fullyfusedmlp" and width not in _FULLY_FUSED_WIDTHS:
            raise ValueError(
                f"network_config['n_neurons'] = {width} is not supported by FullyFusedMLP; "
                f"use one of {_FULLY_FUSED_WIDTHS} (or CutlassMLP)"
            )
        if width < 1:
            raise ValueError(f"network_config['n_neurons'] must be >= 1, got {width}")
        if n_hidden < 1:  # tcnn's MLPs always have an input and an output layer
            raise ValueError(f"network_config['n_hidden_layers'] must be >= 1, got {n_hidden}")
        self.act = _activation(cfg, "activation")
        self.out_act = _activation(cfg, "output_activation")
        self.n_input_dims, self.n_output_dims = n_input_dims, n_output_dims
        self.padded_input_dims, self.padded_output_dims = _round_up(n_input_dims), _round_up(n_output_dims)
        dims = [self.padded_input_dims] + [width] * n_hidden + [self.padded_output_dims]
        self.shapes = [(o, i) for i, o in zip(dims[:-1], dims[1:])]  # [out, in] per matrix
        self.n_params = sum(o * i for o, i in self.shapes)

    def init_params(self, gen: torch.Generator) -> torch.Tensor:
        """Xavier-uniform per matrix (padded sizes), float32 ``[n_params]``."""
        return torch.cat(
            [torch.empty(o * i).uniform_(-1.0, 1.0, generator=gen) * math.sqrt(6.0 / (o + i)) for o, i in self.shapes]
        )

    def weights(self, params: torch.Tensor) -> list[torch.Tensor]:
        """The weight matrices ``[out, in]`` as views of the flat ``params``."""
        out, start = [], 0
        for o, i in self.shapes:
            out.append(params[start : start + o * i].view(o, i))
            start += o * i
        return out

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.n_input_dims:
            raise ValueError(f"input must have shape [B, {self.n_input_dims}], got {list(x.shape)}")
        h = x.to(params.dtype)
        if self.padded_input_dims > self.n_input_dims:
            h = torch.cat([h, h.new_ones(h.shape[0], self.padded_input_dims - self.n_input_dims)], 1)
        mats = self.weights(params)
        for w in mats[:-1]:
            h = self.act(h @ w.t())
        return self.out_act(h @ mats[-1].t())[:, : self.n_output_dims]


class Network(nn.Module):
    """tcnn ``Network``: ``[B, n_input_dims]`` -> ``[B, n_output_dims]`` (dtype of the params);
    ``params`` = the weight matrices, flat, in tcnn's order."""

    def __init__(self, n_input_dims: int, n_output_dims: int, network_config: dict, seed: int = 1337, dtype=None):
        super().__init__()
        self.n_input_dims, self.n_output_dims, self.seed = n_input_dims, n_output_dims, seed
        self.network_config = network_config
        self.dtype = _dtype(dtype)
        self.mlp = _MLP(n_input_dims, n_output_dims, network_config)
        self.params = nn.Parameter(self.mlp.init_params(torch.Generator().manual_seed(seed)).to(self.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp.forward(x, self.params)

    def extra_repr(self) -> str:
        return _extra_repr(self)


class NetworkWithInputEncoding(nn.Module):
    """tcnn ``NetworkWithInputEncoding``: an encoding (any of :mod:`.tcnn_encodings`, its output padded
    to 16 the way tcnn pads it) then ``Network``. ``params`` is one flat parameter: the network's
    weights, then the encoding's parameters (tcnn's order)."""

    def __init__(
        self,
        n_input_dims: int,
        n_output_dims: int,
        encoding_config: dict,
        network_config: dict,
        seed: int = 1337,
        dtype=None,
    ):
        super().__init__()
        self.n_input_dims, self.n_output_dims, self.seed = n_input_dims, n_output_dims, seed
        self.encoding_config, self.network_config = encoding_config, network_config
        self.dtype = _dtype(dtype)
        if _is_hash_grid(encoding_config):
            _make_grid(n_input_dims, encoding_config, self.dtype)  # validates the config, names bad keys
        _integer(n_input_dims, "n_input_dims")
        self.encoding = make_encoding(n_input_dims, encoding_config, alignment=ALIGNMENT)
        self.mlp = _MLP(self.encoding.padded_output_dims, n_output_dims, network_config)
        gen = torch.Generator().manual_seed(seed)  # one stream: network, then encoding (tcnn's order)
        net = self.mlp.init_params(gen)
        self.params = nn.Parameter(torch.cat([net, self.encoding.init_params(gen)]).to(self.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.n_input_dims:
            raise ValueError(f"input must have shape [B, {self.n_input_dims}], got {list(x.shape)}")
        n_net = self.mlp.n_params
        return self.mlp.forward(self.encoding(_as_input(x), self.params[n_net:]), self.params[:n_net])

    def extra_repr(self) -> str:
        return _extra_repr(self)


def free_temporary_memory() -> None:
    """No-op (tcnn frees its scratch allocations; rfkernels holds none)."""


__all__ = ["Encoding", "Network", "NetworkWithInputEncoding", "free_temporary_memory"]


def _extra_repr(module) -> str:
    """tcnn's module summary: dimensions, seed and dtype."""
    return (
        f"n_input_dims={module.n_input_dims}, n_output_dims={module.n_output_dims}, seed={module.seed}, "
        f"dtype={module.dtype}"
    )
