"""One attention processor for every diffusers ``Attention`` block: xformers | SDPA | math.

``backend="auto"`` uses xformers' memory-efficient attention when xformers' compiled extension
loads (:func:`xformers_status`) and the tensors are on CUDA, else PyTorch's
``scaled_dot_product_attention``. ``"math"`` is the readable reference (explicit softmax) the others
are tested against. The choice is made per call, so one processor works on CPU and GPU; a requested
backend that cannot run falls back to SDPA with one log line (per reason).
"""

from __future__ import annotations

import functools
import logging
import math

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

BACKENDS = ("auto", "xformers", "sdpa", "math")
_logged: set[str] = set()


def _log_once(msg: str) -> None:
    if msg not in _logged:
        _logged.add(msg)
        log.warning(msg)


@functools.cache
def xformers_status() -> tuple[bool, str]:
    """-> (whether xformers' own attention kernels can run, why, in one line). Importing xformers is
    not enough: when its compiled extension fails to load (e.g. wheels linking ``libcudart.so.12``
    under a torch built for CUDA 13) it still imports and falls back to PyTorch's flash kernel, the
    one SDPA runs, so an "xformers" figure would not be one."""
    try:
        import xformers
    except Exception as exc:  # noqa: BLE001 - any import failure means "not usable"
        return False, f"xformers is not installed ({type(exc).__name__}: {_first_line(exc)})"
    version = getattr(xformers, "__version__", "?")
    if not getattr(xformers, "_has_cpp_library", False):
        exc = getattr(getattr(xformers, "_cpp_lib", None), "_cpp_library_load_exception", None)
        why = _first_line(exc) if exc is not None else "no compiled extension"
        return False, (
            f"xformers {version} imports but its compiled extension does not load ({why}); "
            "it would fall back to PyTorch's flash kernel, the one SDPA uses"
        )
    try:
        import xformers.ops  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return False, f"xformers {version}: xformers.ops fails to import ({type(exc).__name__}: {_first_line(exc)})"
    return True, f"xformers {version} with its compiled extension"


def _first_line(exc) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def xformers_available() -> bool:
    """Whether xformers' own kernels can run (:func:`xformers_status`)."""
    return xformers_status()[0]


def resolve_attention_backend(backend: str, device: torch.device) -> str:
    """-> ``"xformers" | "sdpa" | "math"`` that can run on ``device``."""
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}")
    if backend in ("auto", "xformers"):
        if device.type == "cuda" and xformers_available():
            return "xformers"
        if backend == "xformers":
            why = xformers_status()[1] if not xformers_available() else f"tensors are on {device.type}"
            _log_once(f"xformers attention unavailable ({why}); falling back to PyTorch SDPA")
        return "sdpa"
    return backend


def math_attention(q, k, v, mask=None, scale=None):
    """Reference ``softmax(q k^T * scale + mask) v`` in float32; q ``[B, H, L, D]``, k/v ``[B, H, S, D]``."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    logits = torch.einsum("bhld,bhsd->bhls", q.float(), k.float()) * scale
    if mask is not None:
        logits = logits + mask.float()
    return torch.einsum("bhls,bhsd->bhld", logits.softmax(-1), v.float()).to(q.dtype)


def attention(q, k, v, mask=None, scale=None, backend: str = "auto"):
    """Multi-head attention on ``[B, H, L, D]`` tensors (additive ``mask`` broadcastable to
    ``[B, H, L, S]``) with the resolved backend; returns ``[B, H, L, D]``."""
    be = resolve_attention_backend(backend, q.device)
    if be == "math":
        return math_attention(q, k, v, mask, scale)
    if be == "xformers":
        import xformers.ops as xops

        bias = None if mask is None else mask.to(q.dtype).expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])
        out = xops.memory_efficient_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_bias=bias, scale=scale
        )
        return out.transpose(1, 2)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


class FastAttnProcessor:
    """diffusers attention processor (self- and cross-attention) with a selectable backend.

    Mirrors diffusers' ``AttnProcessor2_0`` (group/spatial norm, residual, rescale) but routes the
    core attention through :func:`attention`.
    """

    def __init__(self, backend: str = "auto"):
        if backend not in BACKENDS:
            raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs
    ):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        batch, seq = (hidden_states if encoder_hidden_states is None else encoder_hidden_states).shape[:2]
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, seq, batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key, value = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        head_dim = key.shape[-1] // attn.heads

        def heads(x):
            return x.view(batch, -1, attn.heads, head_dim).transpose(1, 2)

        query, key, value = heads(query), heads(key), heads(value)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = attention(query, key, value, attention_mask, scale=attn.scale, backend=self.backend)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def set_attention_backend(module: torch.nn.Module, backend: str = "auto") -> int:
    """Install :class:`FastAttnProcessor` on every diffusers ``Attention`` inside ``module``.

    Returns the number of attention blocks changed.
    """
    from diffusers.models.attention_processor import Attention

    proc = FastAttnProcessor(backend)
    n = 0
    for m in module.modules():
        if isinstance(m, Attention):
            m.set_processor(proc)
            n += 1
    return n


__all__ = [
    "BACKENDS",
    "FastAttnProcessor",
    "attention",
    "math_attention",
    "resolve_attention_backend",
    "set_attention_backend",
    "xformers_available",
    "xformers_status",
]
