"""nerfacc.estimators.occ_grid: ``OccGridEstimator``, Instant-NGP's occupancy grid for empty-space
skipping, with nerfacc 0.5.3's constructor, buffers (``resolution``, ``aabbs``, ``occs``,
``binaries``: the same ``state_dict``), ``sampling``, ``update_every_n_steps`` and
``mark_invisible_cells``. Marching runs on :func:`rfkernels.traverse_grids` (fused on GPU, the torch
reference on CPU, where nerfacc itself has no implementation); visibility culling on rfkernels'
transmittance kernel."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

import rfkernels

from ..grid import _enlarge_aabb
from ..volrend import render_visibility_from_alpha, render_visibility_from_density
from .base import AbstractEstimator


def _meshgrid3d(res: Tensor, device: torch.device | str = "cpu") -> Tensor:
    """Integer cell coordinates ``[X, Y, Z, 3]`` (``ij`` order) of a grid of resolution ``res [3]``."""
    axes = [torch.arange(int(n), dtype=torch.long) for n in res.tolist()]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).to(device)


class OccGridEstimator(AbstractEstimator):
    """Occupancy grid over ``levels`` nested boxes (level i = ``roi_aabb`` scaled by 2**i about its
    centre), each of ``resolution`` cells (an int or three).

    Buffers: ``occs [levels * cells]`` (EMA occupancy; -1 marks cells no camera sees),
    ``binaries [levels, X, Y, Z]`` bool (``occs`` above the threshold), ``aabbs [levels, 6]``,
    ``resolution [3]`` int32."""

    DIM: int = 3

    def __init__(self, roi_aabb: list | Tensor, resolution: int | list | Tensor = 128, levels: int = 1, **kwargs):
        super().__init__()
        if "contraction_type" in kwargs:
            raise ValueError("`contraction_type` is not supported anymore for nerfacc >= 0.4.0.")
        if isinstance(resolution, int):
            resolution = [resolution] * self.DIM
        if isinstance(resolution, (list, tuple)):
            resolution = torch.tensor(resolution, dtype=torch.int32)
        if not isinstance(resolution, Tensor) or resolution.shape != (self.DIM,):
            raise ValueError(f"`resolution` must be an int or 3 ints, got {resolution!r}")
        if isinstance(roi_aabb, (list, tuple)):
            roi_aabb = torch.tensor(roi_aabb, dtype=torch.float32)
        if not isinstance(roi_aabb, Tensor) or roi_aabb.shape != (2 * self.DIM,):
            raise ValueError(f"`roi_aabb` must be 6 floats (xmin, ymin, zmin, xmax, ymax, zmax), got {roi_aabb!r}")
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
            raise ValueError(f"`levels` must be an int >= 1, got {levels!r}")
        aabbs = torch.stack([_enlarge_aabb(roi_aabb, 2**i) for i in range(levels)], dim=0)
        self.cells_per_lvl = int(resolution.prod().item())
        self.levels = levels
        self.register_buffer("resolution", resolution)
        self.register_buffer("aabbs", aabbs)
        self.register_buffer("occs", torch.zeros(levels * self.cells_per_lvl))
        self.register_buffer("binaries", torch.zeros([levels] + resolution.tolist(), dtype=torch.bool))
        self.register_buffer("grid_coords", _meshgrid3d(resolution).reshape(-1, self.DIM), persistent=False)
        self.register_buffer("grid_indices", torch.arange(self.cells_per_lvl), persistent=False)

    # ------------------------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sampling(
        self,
        rays_o: Tensor,
        rays_d: Tensor,
        sigma_fn: Callable | None = None,
        alpha_fn: Callable | None = None,
        near_plane: float = 0.0,
        far_plane: float = 1e10,
        t_min: Tensor | None = None,
        t_max: Tensor | None = None,
        render_step_size: float = 1e-3,
        early_stop_eps: float = 1e-4,
        alpha_thre: float = 0.0,
        stratified: bool = False,
        cone_angle: float = 0.0,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """March the rays through the occupied cells -> ``(ray_indices [N], t_starts [N], t_ends [N])``.

        Steps of ``render_step_size`` (growing as ``t * cone_angle``) from ``max(near_plane, t_min)``
        (plus a random fraction of a step per ray when ``stratified``) to ``min(far_plane, t_max)``.
        With ``sigma_fn(t_starts, t_ends, ray_indices) -> sigmas`` or ``alpha_fn(...) -> alphas``,
        samples behind transmittance ``early_stop_eps`` or with alpha below
        ``min(alpha_thre, mean(occs))`` are dropped."""
        near_planes = torch.full_like(rays_o[..., 0], near_plane)
        far_planes = torch.full_like(rays_o[..., 0], far_plane)
        if t_min is not None:
            near_planes = torch.clamp(near_planes, min=t_min)
        if t_max is not None:
            far_planes = torch.clamp(far_planes, max=t_max)
        if stratified:
            near_planes = near_planes + torch.rand_like(near_planes) * render_step_size
        out = rfkernels.traverse_grids(
            rays_o,
            rays_d,
            self.binaries,
            self.aabbs,
            near_planes=near_planes,
            far_planes=far_planes,
            step_size=render_step_size,
            cone_angle=cone_angle,
        )
        ray_indices, t_starts, t_ends = out.ray_indices, out.t_starts, out.t_ends
        if (alpha_thre > 0.0 or early_stop_eps > 0.0) and (sigma_fn is not None or alpha_fn is not None):
            alpha_thre = min(alpha_thre, self.occs.mean().item())
            packed_info = torch.stack([out.offsets[:-1], out.offsets[1:] - out.offsets[:-1]], -1)
            masks = self._visible(
                sigma_fn, alpha_fn, t_starts, t_ends, ray_indices, packed_info, early_stop_eps, alpha_thre
            )
            ray_indices, t_starts, t_ends = ray_indices[masks], t_starts[masks], t_ends[masks]
        return ray_indices, t_starts, t_ends

    @staticmethod
    def _visible(sigma_fn, alpha_fn, t_starts, t_ends, ray_indices, packed_info, early_stop_eps, alpha_thre):
        """Bool mask of the samples worth shading, from the user's densities (or opacities)."""
        fn, name = (sigma_fn, "sigmas") if sigma_fn is not None else (alpha_fn, "alphas")
        values = fn(t_starts, t_ends, ray_indices) if t_starts.shape[0] else t_starts.new_empty(0)
        if values.shape != t_starts.shape:
            raise ValueError(f"{name} must have shape of (N,)! Got {values.shape}")
        if sigma_fn is not None:
            return render_visibility_from_density(
                t_starts=t_starts,
                t_ends=t_ends,
                sigmas=values,
                packed_info=packed_info,
                early_stop_eps=early_stop_eps,
                alpha_thre=alpha_thre,
            )
        return render_visibility_from_alpha(
            alphas=values, packed_info=packed_info, early_stop_eps=early_stop_eps, alpha_thre=alpha_thre
        )

    # ------------------------------------------------------------------------------------ updates
    @torch.no_grad()
    def update_every_n_steps(
        self,
        step: int,
        occ_eval_fn: Callable,
        occ_thre: float = 1e-2,
        ema_decay: float = 0.95,
        warmup_steps: int = 256,
        n: int = 16,
    ) -> None:
        """Every ``n`` training steps: ``occs = max(occs * ema_decay, occ_eval_fn(x))`` at a random
        point of each cell (every cell during the first ``warmup_steps`` steps, then a quarter of the
        cells uniformly plus up to as many occupied ones), then ``binaries = occs > min(mean, occ_thre)``."""
        if not self.training:
            raise RuntimeError(
                "You should only call this function only during training. "
                "Please call _update() directly if you want to update the field during inference."
            )
        if step % n == 0:
            self._update(step, occ_eval_fn, occ_thre, ema_decay, warmup_steps)

    @torch.no_grad()
    def mark_invisible_cells(
        self, K: Tensor, c2w: Tensor, width: int, height: int, near_plane: float = 0.0, chunk: int = 32**3
    ) -> None:
        """Set ``occs = -1`` for cells (their corner-aligned grid points) that no camera sees inside its
        image, or that lie in front of ``near_plane`` of any camera seeing them; 0 for the others.
        ``K [N or 1, 3, 3]``, ``c2w [N, 3 or 4, 4]`` (opencv). Call once, before training."""
        if K.dim() != 3 or K.shape[1:] != (3, 3):
            raise ValueError(f"`K` must be [N, 3, 3], got {list(K.shape)}")
        if c2w.dim() != 3 or c2w.shape[1:] not in ((3, 4), (4, 4)):
            raise ValueError(f"`c2w` must be [N, 3, 4] or [N, 4, 4], got {list(c2w.shape)}")
        if K.shape[0] not in (1, c2w.shape[0]):
            raise ValueError(f"`K` must hold 1 or {c2w.shape[0]} cameras, got {K.shape[0]}")
        n_cams = c2w.shape[0]
        rot_w2c = c2w[:, :3, :3].transpose(2, 1)
        trans_w2c = -rot_w2c @ c2w[:, :3, 3:]
        for lvl, indices in enumerate(self._get_all_cells()):
            coords = self.grid_coords[indices]
            for i in range(0, len(indices), chunk):
                unit = coords[i : i + chunk] / (self.resolution - 1)
                world = (self.aabbs[lvl, :3] + unit * (self.aabbs[lvl, 3:] - self.aabbs[lvl, :3])).T
                uvd = K @ (rot_w2c @ world + trans_w2c)  # [n_cams, 3, chunk]
                uv = uvd[:, :2] / uvd[:, 2:]
                in_image = (
                    (uvd[:, 2] >= 0) & (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
                )
                seen = ((uvd[:, 2] >= near_plane) & in_image).sum(0) / n_cams > 0
                too_near = ((uvd[:, 2] < near_plane) & in_image).any(0)
                ids = lvl * self.cells_per_lvl + indices[i : i + chunk]
                self.occs[ids] = torch.where(seen & ~too_near, 0.0, -1.0)

    @torch.no_grad()
    def _get_all_cells(self) -> list[Tensor]:
        """Per level, the cell indices not marked invisible (``occs >= 0``)."""
        return [
            self.grid_indices[self.occs[lvl * self.cells_per_lvl + self.grid_indices] >= 0.0]
            for lvl in range(self.levels)
        ]

    @torch.no_grad()
    def _sample_uniform_and_occupied_cells(self, n: int) -> list[Tensor]:
        """Per level, ``n`` uniformly drawn visible cells plus (up to ``n`` of) the occupied ones."""
        out = []
        for lvl in range(self.levels):
            uniform = torch.randint(self.cells_per_lvl, (n,), device=self.device)
            uniform = uniform[self.occs[lvl * self.cells_per_lvl + uniform] >= 0.0]
            occupied = torch.nonzero(self.binaries[lvl].flatten())[:, 0]
            if n < len(occupied):
                occupied = occupied[torch.randint(len(occupied), (n,), device=self.device)]
            out.append(torch.cat([uniform, occupied], dim=0))
        return out

    @torch.no_grad()
    def _update(
        self, step: int, occ_eval_fn: Callable, occ_thre: float = 0.01, ema_decay: float = 0.95, warmup_steps: int = 256
    ) -> None:
        """One EMA update of ``occs`` and the re-thresholding of ``binaries`` (see
        :meth:`update_every_n_steps`)."""
        if step < warmup_steps:
            per_level = self._get_all_cells()
        else:
            per_level = self._sample_uniform_and_occupied_cells(self.cells_per_lvl // 4)
        for lvl, indices in enumerate(per_level):
            coords = self.grid_coords[indices]
            unit = (coords + torch.rand_like(coords, dtype=torch.float32)) / self.resolution
            x = self.aabbs[lvl, :3] + unit * (self.aabbs[lvl, 3:] - self.aabbs[lvl, :3])
            occ = occ_eval_fn(x).squeeze(-1)
            ids = lvl * self.cells_per_lvl + indices
            self.occs[ids] = torch.maximum(self.occs[ids] * ema_decay, occ)
        thre = torch.clamp(self.occs[self.occs >= 0].mean(), max=occ_thre)
        self.binaries = (self.occs > thre).view(self.binaries.shape)


__all__ = ["OccGridEstimator"]
