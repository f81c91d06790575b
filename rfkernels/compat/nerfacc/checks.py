"""Argument checks in nerfacc's names, run at the compat boundary before any rfkernels op.

Each raises ``ValueError`` naming the nerfacc argument (``ray_indices``, ``packed_info``,
``intervals.vals``, ``cdfs``, ...), so the shared ops underneath never see input they would
reject under their own names (``offsets``, ``bins``, ``weights``) and torch never fails inside
(``bincount``, ``index_add_``, broadcasting). Checks that read the data (ranges, order) follow
:func:`rfkernels.set_validation`, like the ops' own value checks.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rfkernels._checks import INDEX_DTYPES, validation_enabled


def tensor(name: str, t, *, min_dim: int = 0) -> Tensor:
    """``t`` is a tensor with at least ``min_dim`` dims."""
    if not isinstance(t, Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() < min_dim:
        raise ValueError(f"`{name}` must have at least {min_dim} dim(s), got shape {list(t.shape)}")
    return t


def samples(name: str, t, packed: bool) -> Tensor:
    """Per-sample values: flat ``[n_samples]`` when packed, ``[..., S]`` (>= 1 dim) when padded."""
    tensor(name, t, min_dim=1)
    if packed and t.dim() != 1:
        raise ValueError(
            f"`{name}` must be flattened [n_samples] with `packed_info`/`ray_indices`, got {list(t.shape)}"
        )
    return t


def n_rays_arg(n_rays) -> int:
    """``n_rays`` is a Python (or 0-d integer tensor) int >= 0; bool refused."""
    if isinstance(n_rays, Tensor) and n_rays.dim() == 0 and n_rays.dtype in INDEX_DTYPES:
        n_rays = int(n_rays)
    if isinstance(n_rays, bool) or not isinstance(n_rays, int) or n_rays < 0:
        raise ValueError(f"`n_rays` must be an int >= 0, got {n_rays!r}")
    return n_rays


def ray_indices(t, n_samples: int, n_rays: int | None, *, sorted_: bool) -> int:
    """``ray_indices [n_samples]`` int32/int64, each in ``[0, n_rays)`` (and non-decreasing when
    ``sorted_``: the packed layouts need each ray's samples back to back). Returns ``n_rays``
    (``max + 1`` when not given, as nerfacc)."""
    tensor("ray_indices", t)
    if t.dtype not in INDEX_DTYPES:
        raise ValueError(f"`ray_indices` must be an int32/int64 tensor, got {t.dtype}")
    if t.dim() != 1 or t.shape[0] != n_samples:
        raise ValueError(f"`ray_indices` must have shape [{n_samples}] (one id per sample), got {list(t.shape)}")
    if n_rays is None:
        n_rays = int(t.max()) + 1 if t.numel() else 0
    n_rays = n_rays_arg(n_rays)
    if validation_enabled() and t.numel():
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= n_rays:
            raise ValueError(f"`ray_indices` must lie in [0, n_rays={n_rays}), got {lo}..{hi}")
        if sorted_ and bool((t[1:] < t[:-1]).any()):
            raise ValueError("`ray_indices` must be sorted (non-decreasing: each ray's samples back to back)")
    return n_rays


def packed_info(t, n_samples: int, name: str = "packed_info") -> Tensor:
    """``packed_info [n_rays, 2]`` int (start, count >= 0) of back-to-back chunks covering all
    ``n_samples``; returns the offsets ``[n_rays + 1]`` int64."""
    tensor(name, t)
    if t.dim() != 2 or t.shape[-1] != 2:
        raise ValueError(f"`{name}` must have shape [n_rays, 2], got {list(t.shape)}")
    if t.dtype not in INDEX_DTYPES:
        raise ValueError(f"`{name}` must be an int32/int64 tensor, got {t.dtype}")
    starts, counts = t.long().unbind(-1)
    offsets = torch.cat([starts.new_zeros(1), torch.cumsum(counts, 0)])
    if validation_enabled() and t.shape[0]:
        if bool((counts < 0).any()):
            raise ValueError(f"`{name}` counts (column 1) must be >= 0")
        if not torch.equal(starts, offsets[:-1]) or int(offsets[-1]) != n_samples:
            raise ValueError(
                f"`{name}` must describe contiguous back-to-back chunks covering all "
                f"{n_samples} samples (start[i+1] == start[i] + count[i])"
            )
    elif not t.shape[0] and n_samples:
        raise ValueError(f"`{name}` has no rays but there are {n_samples} samples")
    return offsets


def prefix_trans(t, like: Tensor) -> None:
    """``prefix_trans`` multiplies the transmittance: it must broadcast to its shape unchanged."""
    if t is None:
        return
    tensor("prefix_trans", t)
    try:
        ok = torch.broadcast_shapes(t.shape, like.shape) == like.shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"`prefix_trans` must have the shape of the samples {list(like.shape)}, got {list(t.shape)}")


def sorted_rows(name: str, t: Tensor) -> None:
    """Finite values, non-decreasing along the last dim (each ray's edges or CDF)."""
    if not validation_enabled() or t.numel() == 0:
        return
    if not bool(t.isfinite().all()):
        raise ValueError(f"`{name}` must be finite (got NaN or inf)")
    if bool((t[..., 1:] < t[..., :-1]).any()):
        raise ValueError(f"`{name}` must be non-decreasing along each ray")
