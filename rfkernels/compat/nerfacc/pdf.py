"""nerfacc.pdf on rfkernels: ``importance_sampling`` and ``searchsorted``, batched or flattened.

``importance_sampling`` inverts each ray's piecewise-linear CDF with :func:`rfkernels.sample_pdf`
(mass of bin i = ``cdfs[i+1] - cdfs[i]``, no histogram padding): sample k of n is at
``u = (k + j) / n`` of the ray's CDF range, with ``j = 0.5`` or, when ``stratified``, one uniform
jitter per ray, exactly nerfacc's scheme. The intervals around the samples are composed in torch as
nerfacc builds them (midpoints between samples, the outer half-widths mirrored and clamped to the
ray's range). Differences: a ray with no mass samples uniformly (nerfacc piles every sample at the
middle of its last bin), a single sample gets the whole range as its interval (nerfacc reads past
the end), and the random stream is torch's, not nerfacc's Philox one.
"""

from __future__ import annotations

import torch
from torch import Tensor

import rfkernels

from . import checks
from ._histograms import _sample_from_weighted  # noqa: F401 (nerfacc.pdf._sample_from_weighted)
from .data_specs import RayIntervals, RaySamples
from .pack import pad


def _edges_around(centers: Tensor, t_min: Tensor, t_max: Tensor) -> Tensor:
    """``[R, n]`` sorted samples -> ``[R, n + 1]`` interval edges (nerfacc's construction)."""
    if centers.shape[-1] == 1:
        return torch.cat([t_min[:, None], t_max[:, None]], -1)
    mids = 0.5 * (centers[:, 1:] + centers[:, :-1])
    first = torch.maximum(centers[:, :1] - (mids[:, :1] - centers[:, :1]), t_min[:, None])
    last = torch.minimum(centers[:, -1:] + (centers[:, -1:] - mids[:, -1:]), t_max[:, None])
    return torch.cat([first, mids, last], -1)


def _sample(bins: Tensor, cdfs: Tensor, n: int, stratified: bool) -> tuple[Tensor, Tensor]:
    """Batched ``bins``/``cdfs [R, E]`` -> (edges ``[R, n+1]``, samples ``[R, n]``)."""
    weights = (cdfs[:, 1:] - cdfs[:, :-1]).clamp_min(0)
    centers = rfkernels.sample_pdf(
        bins, weights, n, mode="single_jitter" if stratified else "midpoint", histogram_padding=0.0
    )
    return _edges_around(centers, bins[:, 0], bins[:, -1]), centers


def _batched_edges(intervals: RayIntervals, cdfs: Tensor) -> tuple[Tensor, Tensor]:
    """Flattened edges (``packed_info`` over edges) -> ``[R, E_max]``, rows padded with their last edge."""
    if intervals.packed_info is None:
        raise ValueError("flattened `intervals` need `packed_info` [n_rays, 2] (start, count of edges)")
    offsets = checks.packed_info(intervals.packed_info, intervals.vals.shape[0], "intervals.packed_info")
    counts = offsets[1:] - offsets[:-1]
    e_max = max(int(counts.max()) if counts.numel() else 0, 2)
    k = torch.minimum(torch.arange(e_max, device=counts.device)[None], (counts[:, None] - 1).clamp_min(0))
    idx = (offsets[:-1, None] + k).clamp(max=max(intervals.vals.shape[0] - 1, 0))
    empty = (counts == 0)[:, None]
    vals = (
        intervals.vals[idx].masked_fill(empty, 0.0)
        if intervals.vals.numel()
        else torch.zeros_like(k, dtype=torch.float32)
    )
    cdf = cdfs[idx].masked_fill(empty, 0.0) if cdfs.numel() else torch.zeros_like(vals)
    return vals, cdf


def importance_sampling(
    intervals: RayIntervals,
    cdfs: Tensor,
    n_intervals_per_ray: Tensor | int,
    stratified: bool = False,
) -> tuple[RayIntervals, RaySamples]:
    """Inverse-transform sampling of ``n_intervals_per_ray`` intervals per ray from the CDF ``cdfs``
    given at the edges ``intervals.vals`` (``[..., E]`` batched, or flat with ``packed_info``).

    Returns ``(RayIntervals, RaySamples)``: batched ``[..., n + 1]`` / ``[..., n]`` for an int ``n``;
    flat with ``packed_info``, ``ray_indices`` (and ``is_left``/``is_right``) for an ``[R]`` tensor.
    Not differentiable (as in nerfacc). Edges and CDF must be finite and non-decreasing per ray."""
    n = _check_counts(n_intervals_per_ray)
    vals = checks.tensor("intervals.vals", getattr(intervals, "vals", None), min_dim=1)
    if not vals.is_floating_point():
        raise ValueError(f"`intervals.vals` must be a floating-point tensor, got {vals.dtype}")
    checks.tensor("cdfs", cdfs)
    if cdfs.shape != vals.shape:
        raise ValueError(f"`cdfs` must have the shape of `intervals.vals` {list(vals.shape)}, got {list(cdfs.shape)}")
    if not cdfs.is_floating_point():
        raise ValueError(f"`cdfs` must be a floating-point tensor, got {cdfs.dtype}")
    if vals.dim() > 1 and vals.shape[-1] < 2:
        raise ValueError(f"`intervals.vals` needs >= 2 edges per ray, got shape {list(vals.shape)}")
    with torch.no_grad():
        if intervals.vals.dim() > 1:
            lead = intervals.vals.shape[:-1]
            bins = intervals.vals.reshape(-1, intervals.vals.shape[-1]).float()
            cdf = cdfs.reshape(bins.shape).float()
        else:
            lead = None
            bins, cdf = _batched_edges(intervals, cdfs.float())
        checks.sorted_rows("intervals.vals", bins)  # checked here: sample_pdf would say `bins`/`weights`
        checks.sorted_rows("cdfs", cdf)
        if n is not None:
            edges, centers = _sample(bins, cdf, n, stratified)
            if lead is not None:
                edges, centers = edges.reshape(*lead, n + 1), centers.reshape(*lead, n)
            return RayIntervals(vals=edges), RaySamples(vals=centers)
        return _sample_per_ray(bins, cdf, n_intervals_per_ray, stratified)


def _check_counts(n_intervals_per_ray):
    """An int >= 1 (returned) or an integer ``[R]`` tensor (None returned: per-ray counts)."""
    if isinstance(n_intervals_per_ray, Tensor):
        if n_intervals_per_ray.dtype not in (torch.int32, torch.int64):
            raise ValueError(
                f"`n_intervals_per_ray` must be an int or an int32/int64 tensor, got {n_intervals_per_ray.dtype}"
            )
        return None
    if isinstance(n_intervals_per_ray, bool) or not isinstance(n_intervals_per_ray, int) or n_intervals_per_ray < 1:
        raise ValueError(
            f"`n_intervals_per_ray` must be an int >= 1 or an int [n_rays] tensor, got {n_intervals_per_ray!r}"
        )
    return n_intervals_per_ray


def _sample_per_ray(bins: Tensor, cdf: Tensor, n_per_ray: Tensor, stratified: bool):
    """A different number of intervals per ray -> flattened outputs (grouped by count)."""
    n_per_ray = n_per_ray.reshape(-1).long().to(bins.device)
    if n_per_ray.numel() != bins.shape[0]:
        raise ValueError(
            f"`n_intervals_per_ray` must have one entry per ray ({bins.shape[0]}), got {n_per_ray.numel()}"
        )
    if n_per_ray.numel() and int(n_per_ray.min()) < 0:
        raise ValueError("`n_intervals_per_ray` must be >= 0")
    R = bins.shape[0]
    s_off = torch.cat([n_per_ray.new_zeros(1), torch.cumsum(n_per_ray, 0)])
    e_cnt = (n_per_ray + 1) * (n_per_ray > 0)
    e_off = torch.cat([n_per_ray.new_zeros(1), torch.cumsum(e_cnt, 0)])
    samples = bins.new_zeros(int(s_off[-1]))
    edges = bins.new_zeros(int(e_off[-1]))
    for n in torch.unique(n_per_ray).tolist():
        if n == 0:
            continue
        rows = (n_per_ray == n).nonzero(as_tuple=True)[0]
        e, c = _sample(bins[rows], cdf[rows], n, stratified)
        samples[(s_off[rows, None] + torch.arange(n, device=bins.device)).reshape(-1)] = c.reshape(-1)
        edges[(e_off[rows, None] + torch.arange(n + 1, device=bins.device)).reshape(-1)] = e.reshape(-1)
    ray_ids = torch.arange(R, device=bins.device)
    s_rays = torch.repeat_interleave(ray_ids, n_per_ray)
    e_rays = torch.repeat_interleave(ray_ids, e_cnt)
    pos = torch.arange(edges.numel(), device=bins.device) - e_off[e_rays]
    is_left = pos < e_cnt[e_rays] - 1
    is_right = pos > 0
    out_iv = RayIntervals(
        vals=edges,
        packed_info=torch.stack([e_off[:-1], e_cnt], -1),
        ray_indices=e_rays,
        is_left=is_left,
        is_right=is_right,
    )
    out_s = RaySamples(vals=samples, packed_info=torch.stack([s_off[:-1], n_per_ray], -1), ray_indices=s_rays)
    return out_iv, out_s


def searchsorted(
    sorted_sequence: RayIntervals | RaySamples, values: RayIntervals | RaySamples
) -> tuple[Tensor, Tensor]:
    """``(ids_left, ids_right)`` with ``seq[ids_left] <= v < seq[ids_right]`` per ray, clamped to the
    ray's range; indices are per row for batched inputs and global for flattened ones."""
    key, query = sorted_sequence.vals, values.vals
    with torch.no_grad():
        if key.dim() > 1 and query.dim() > 1:
            E = key.shape[-1]
            p = torch.searchsorted(key[..., :-1].contiguous(), query.contiguous(), right=True)
            return (p - 1).clamp(0, E - 1), p.clamp(0, E - 1)
        if key.dim() != 1 or query.dim() != 1:
            raise ValueError("`sorted_sequence` and `values` must both be batched or both be flattened")
        if sorted_sequence.packed_info is None or values.packed_info is None:
            raise ValueError("flattened `sorted_sequence` and `values` need `packed_info`")
        k_off = checks.packed_info(sorted_sequence.packed_info, key.shape[0], "sorted_sequence.packed_info")
        q_off = checks.packed_info(values.packed_info, query.shape[0], "values.packed_info")
        k_cnt = k_off[1:] - k_off[:-1]
        # each ray's first count-1 edges, +inf beyond: upper_bound over [start, last) as in nerfacc
        kp, kmask = pad(key, k_off, float("inf"))
        last = (k_cnt - 1).clamp_min(0)
        kp = kp.masked_fill(torch.arange(kp.shape[1], device=key.device)[None] >= last[:, None], float("inf"))
        qp, qmask = pad(query, q_off, 0.0)
        p = torch.searchsorted(kp.contiguous(), qp.contiguous(), right=True)
        base = k_off[:-1, None]
        left = torch.minimum((p - 1).clamp_min(0), last[:, None]) + base
        right = torch.minimum(p, last[:, None]) + base
        return left[qmask], right[qmask]


__all__ = ["importance_sampling", "searchsorted"]
