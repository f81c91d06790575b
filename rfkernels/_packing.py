"""The packed (ragged) ray layout every op family shares, and helpers to go to and from padded.

Per-sample tensors. R rays with ``S_r`` samples each store their samples back to back in a flat
tensor ``[N, ...]`` (``N = sum S_r``); ``offsets`` ``[R+1]`` (int32 or int64, ``offsets[0] = 0``,
``offsets[R] = N``, non-decreasing) says ray r owns ``[offsets[r], offsets[r+1])``. Padded
``[R, S, ...]`` inputs are the special case ``offsets = S * arange(R+1)`` (:func:`padded_offsets`).
``ray_indices`` ``[N]`` (sorted ray id per sample, as nerfacc produces) is an equivalent
per-sample form (:func:`ray_indices_to_offsets`, :func:`offsets_to_ray_indices`).

Histograms (bin edges + per-bin masses: ``sample_pdf``, ``interlevel_loss``). The masses follow the
per-sample layout above (``weights [N]``, ``offsets [R+1]``); a ray with ``S_r`` bins has ``S_r + 1``
edges, so the edges are packed with the *same* offsets shifted by the ray index: ray r owns
``bins[offsets[r] + r : offsets[r+1] + r + 1]`` of ``bins [N + R]`` (:func:`edge_offsets`). A
volrend pass over ``t_starts/t_ends [N]`` gives them as ``bins = pack_edges(t_starts, t_ends, offsets)``.

Users: ``volume_render``/``render_weights``/``distortion_loss`` (``offsets`` or ``ray_indices``),
``sample_pdf`` and ``interlevel_loss`` (histograms, per level). Fused kernels see only the packed
form (float32 contiguous, int64 offsets); the torch reference pads (:func:`pad`, :func:`pad_histogram`).
"""

from __future__ import annotations

import torch


def ray_indices_to_offsets(ray_indices: torch.Tensor, n_rays: int) -> torch.Tensor:
    """Sorted per-sample ray ids [N] -> offsets [n_rays + 1] (int64)."""
    counts = torch.bincount(ray_indices.long(), minlength=n_rays)
    if counts.numel() > n_rays:
        raise ValueError(f"`ray_indices` has ids >= n_rays ({n_rays})")
    offsets = torch.zeros(n_rays + 1, dtype=torch.int64, device=ray_indices.device)
    torch.cumsum(counts, 0, out=offsets[1:])
    return offsets


def offsets_to_ray_indices(offsets: torch.Tensor) -> torch.Tensor:
    """offsets [R + 1] -> ray id of each packed sample [N] (int64)."""
    counts = (offsets[1:] - offsets[:-1]).long()
    return torch.repeat_interleave(torch.arange(counts.numel(), device=offsets.device), counts)


def padded_offsets(n_rays: int, n_samples: int, device) -> torch.Tensor:
    """Offsets of a padded ``[n_rays, n_samples]`` batch: ``n_samples * arange(n_rays + 1)`` (int64)."""
    return torch.arange(n_rays + 1, device=device, dtype=torch.int64) * n_samples


def max_count(offsets: torch.Tensor) -> int:
    """Largest per-ray sample count (0 for no rays); reads the data (a sync on GPU)."""
    return int((offsets[1:] - offsets[:-1]).max()) if offsets.numel() > 1 else 0


def given_max_count(name: str, value, offsets: torch.Tensor, validate: bool) -> int:
    """A caller's maximum count ``value``: an upper bound on the per-ray counts of ``offsets`` that
    the caller knows (e.g. the samples per ray it drew), used instead of reading ``offsets`` back to
    the host. Always an int >= 0; with ``validate`` (value checks on) also >= :func:`max_count`, since
    a smaller bound would cut rays short."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"`{name}` must be an int >= 0 (the largest per-ray count), got {value!r}")
    if validate and value < max_count(offsets):
        raise ValueError(f"`{name}` is {value} but a ray has {max_count(offsets)} entries (it must be >= every count)")
    return value


def edge_offsets(offsets: torch.Tensor) -> torch.Tensor:
    """Per-sample offsets [R+1] -> offsets of the packed bin edges ``[N + R]``: ``offsets + arange(R+1)``."""
    return offsets + torch.arange(offsets.numel(), device=offsets.device, dtype=offsets.dtype)


def pack_edges(t_starts: torch.Tensor, t_ends: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Contiguous packed intervals (``t_ends[i] == t_starts[i+1]`` within a ray) -> bin edges
    ``[N + R]``: each ray's starts followed by its last end. Rays without samples get one edge (0)."""
    offsets = offsets.long()
    R = offsets.numel() - 1
    N = t_starts.shape[0]
    edges = t_starts.new_zeros(N + R)
    ray = offsets_to_ray_indices(offsets)
    edges[torch.arange(N, device=t_starts.device) + ray] = t_starts
    counts = offsets[1:] - offsets[:-1]
    has = counts > 0
    last = (offsets[1:] - 1).clamp(min=0)
    edge_last = edge_offsets(offsets)[1:] - 1
    if N:
        edges[edge_last[has]] = t_ends[last[has]]
    return edges


def pad(packed: torch.Tensor, offsets: torch.Tensor, fill: float = 0.0):
    """Packed [N, ...] -> (padded [R, S_max, ...], mask [R, S_max]); differentiable."""
    counts = (offsets[1:] - offsets[:-1]).long()
    n_rays = counts.numel()
    s_max = int(counts.max()) if n_rays else 0
    mask = torch.arange(s_max, device=packed.device)[None, :] < counts[:, None]
    if n_rays * s_max == packed.shape[0]:  # every ray is full: a view, no scatter
        return packed.reshape((n_rays, s_max) + tuple(packed.shape[1:])), mask
    out = packed.new_full((n_rays, s_max) + tuple(packed.shape[1:]), fill)
    out = (
        out.masked_scatter(mask.view(mask.shape + (1,) * (packed.dim() - 1)).expand_as(out), packed)
        if packed.numel()
        else out
    )
    return out, mask


def unpad(padded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pad`: [R, S_max, ...] -> [N, ...]."""
    return padded[mask]


def pad_histogram(bins: torch.Tensor, weights: torch.Tensor, offsets: torch.Tensor, max_bins: int):
    """Packed histograms (``bins [N + R]``, ``weights [N]``) -> padded ``[R, max_bins + 1]``,
    ``[R, max_bins]``: extra edges repeat the ray's last edge and extra bins get mass 0 (zero-width,
    zero-mass bins change neither the samples nor the interlevel losses). Differentiable in weights."""
    R = offsets.numel() - 1
    counts = offsets[1:] - offsets[:-1]
    k = torch.arange(max_bins + 1, device=bins.device)
    edge_idx = edge_offsets(offsets)[:-1, None] + torch.minimum(k, counts[:, None])
    w_idx = offsets[:-1, None] + k[:-1]
    w_mask = k[:-1] < counts[:, None]
    pb = bins[edge_idx]
    pw = torch.zeros(R, max_bins, dtype=weights.dtype, device=weights.device)
    if weights.numel():
        pw = torch.where(w_mask, weights[w_idx.clamp(max=weights.numel() - 1)], pw)
    return pb, pw
