"""Shared argument validation: every public op checks its inputs once, before dispatch, and
raises ``ValueError`` naming the argument (shape, dtype, device, range)."""

from __future__ import annotations

import os as _os
from collections.abc import Sequence

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INDEX_DTYPES = (torch.int32, torch.int64)


def check_tensor(
    name: str,
    t,
    *,
    ndim: int | Sequence[int] | None = None,
    shape: Sequence[int | None] | None = None,
    dtypes: Sequence[torch.dtype] | None = FLOAT_DTYPES,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Validate one tensor argument; ``None`` entries in ``shape`` match any size."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor, got {type(t).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if t.dim() not in allowed:
            raise ValueError(f"`{name}` must have {' or '.join(map(str, allowed))} dims, got shape {tuple(t.shape)}")
    if shape is not None:
        if t.dim() != len(shape) or any(s is not None and s != ts for s, ts in zip(shape, t.shape)):
            want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
            raise ValueError(f"`{name}` must have shape {want}, got {list(t.shape)}")
    if dtypes is not None and t.dtype not in dtypes:
        raise ValueError(f"`{name}` must have dtype in {[str(d) for d in dtypes]}, got {t.dtype}")
    if device is not None and t.device != device:
        raise ValueError(f"`{name}` is on {t.device} but the other inputs are on {device}")
    return t


def compute_dtype(*ts) -> torch.dtype:
    """The dtype the torch backends compute in: float32 (as the fused kernels), or float64 when every
    given (non-None) tensor is float64 (the float64 reference of the tests)."""
    given = [t for t in ts if t is not None]
    return torch.float64 if given and all(t.dtype == torch.float64 for t in given) else torch.float32


def check_same_device(**tensors) -> torch.device:
    """All given (non-None) tensors must share one device; return it."""
    items = [(k, v) for k, v in tensors.items() if v is not None]
    device = items[0][1].device
    for k, v in items[1:]:
        if v.device != device:
            raise ValueError(f"`{k}` is on {v.device} but `{items[0][0]}` is on {device}")
    return device


def check_offsets(name: str, offsets: torch.Tensor, n_total: int, validate_values: bool) -> None:
    """``offsets`` is ``[R+1]`` int, starts at 0, ends at ``n_total``, non-decreasing."""
    check_tensor(name, offsets, ndim=1, dtypes=INDEX_DTYPES)
    if offsets.numel() < 1:
        raise ValueError(f"`{name}` must have at least one entry ([n_rays + 1])")
    if validate_values:
        first, last = int(offsets[0]), int(offsets[-1])
        if first != 0 or last != n_total:
            raise ValueError(f"`{name}` must start at 0 and end at {n_total} (the packed length), got {first}..{last}")
        if offsets.numel() > 1 and bool((offsets[1:] < offsets[:-1]).any()):
            raise ValueError(f"`{name}` must be non-decreasing (monotonic per-ray offsets)")


def check_nonnegative(name: str, t: torch.Tensor, validate_values: bool) -> None:
    if validate_values and t.numel() and bool((t < 0).any()):
        raise ValueError(f"`{name}` must be >= 0 (got min {t.min().item():.4g})")


def check_no_nan(name: str, t: torch.Tensor, validate_values: bool) -> None:
    if validate_values and t.numel() and bool(torch.isnan(t).any()):
        raise ValueError(f"`{name}` contains NaN")


def check_finite(name: str, t: torch.Tensor, validate_values: bool) -> None:
    if validate_values and t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"`{name}` must be finite (got NaN or inf)")


def check_scalar(name: str, value, lo: float, hi: float) -> float:
    """A Python number in ``[lo, hi]`` (NaN rejected); always checked (no data read)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a float in [{lo}, {hi}], got {value!r}") from None
    if not lo <= v <= hi:
        raise ValueError(f"`{name}` must be a float in [{lo}, {hi}], got {value!r}")
    return v


_validate_values = _os.environ.get("RFKERNELS_VALIDATE", "1") != "0"


def set_validation(enabled: bool) -> None:
    """Turn value checks (negative intervals, offsets monotonic, ...) on or off process-wide.

    Shape/dtype/device checks always run; value checks read the data (a device sync on GPU), so
    hot loops that already trust their inputs may turn them off (``RFKERNELS_VALIDATE=0``)."""
    global _validate_values
    _validate_values = bool(enabled)


def validation_enabled() -> bool:
    """Whether value checks run: on (the default) unless turned off, and never while ``torch.compile``
    or ``torch.export`` traces (a check that reads data would be a graph break there)."""
    return _validate_values and not torch.compiler.is_compiling()


def reads_values(*tensors) -> bool:
    """Whether value checks run on ``tensors``: :func:`validation_enabled` and none is a meta tensor
    (meta tensors have shapes but no data: only shape/dtype/device checks apply to them)."""
    return validation_enabled() and not any(t is not None and t.device.type == "meta" for t in tensors)
