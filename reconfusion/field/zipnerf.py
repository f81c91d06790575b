"""A Zip-NeRF-style model on rfkernels: proposal resampling in s-space, a hash-grid NeRF field with
anti-aliased level weighting, scene contraction, and compositing with a background.

Per ray (``R`` rays): the unit interval of normalized distance ``s`` is resampled by each proposal
round (``rfkernels.sample_pdf`` on the previous round's weights), ``t = SpaceMap.s_to_t(s)``
gives metric distances, sample points ``o + t d`` are mapped into the grid's unit cube
(:mod:`.contraction`), and the NeRF round is composited by ``rfkernels.volume_render``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

import rfkernels

from ..config import Config, FieldConfig
from ..rays import RayBundle
from .contraction import to_unit_cube
from .proposal import ProposalField, density_activation, make_grid, masked, mlp

STD_SCALE = 0.5


def posenc(x: torch.Tensor, degree: int) -> torch.Tensor:
    """``[N, 3]`` -> ``[N, 3 + 6 * degree]``: x, sin(2^k x), cos(2^k x) for k < degree."""
    if degree == 0:
        return x
    freqs = 2.0 ** torch.arange(degree, dtype=x.dtype, device=x.device)
    xb = (x[:, None, :] * freqs[:, None]).reshape(x.shape[0], -1)
    return torch.cat([x, torch.sin(xb), torch.cos(xb)], dim=-1)


class NeRFField(nn.Module):
    """Hash grid -> density MLP -> (density, bottleneck) -> colour MLP(bottleneck, dir enc) -> RGB."""

    def __init__(self, cfg: FieldConfig):
        super().__init__()
        self.cfg = cfg
        self.grid = make_grid(cfg.grid)
        self.density_mlp = mlp(self.grid.output_dim, cfg.density_width, cfg.density_depth, 1 + cfg.bottleneck)
        self.color_mlp = mlp(cfg.bottleneck + 3 + 6 * cfg.dir_degree, cfg.color_width, cfg.color_depth, 3)

    def forward(self, u, viewdirs, scales=None, level_mask=None):
        """``u [N, 3]``, ``viewdirs [N, 3]``, ``scales [N]`` -> (density ``[N]``, rgb ``[N, 3]``)."""
        h = self.density_mlp(masked(self.grid(u, scales), level_mask))
        sigma = density_activation(h[:, 0])
        rgb = torch.sigmoid(self.color_mlp(torch.cat([h[:, 1:], posenc(viewdirs, self.cfg.dir_degree)], -1)).float())
        return sigma, rgb


@dataclass
class RenderOutput:
    rgb: torch.Tensor  # [R, 3]
    depth: torch.Tensor  # [R] expected normalized distance s (in [0, 1])
    opacity: torch.Tensor  # [R]
    weights: torch.Tensor  # [R, S] of the NeRF round
    s_edges: torch.Tensor  # [R, S+1]
    sigmas: torch.Tensor  # [R, S]
    proposals: list = field(default_factory=list)  # [(s_edges [R, n+1], weights [R, n])] per round


class ZipNeRF(nn.Module):
    """The full model. ``space``/``bbox``/``background`` come from the :class:`~reconfusion.data.Scene`."""

    def __init__(self, cfg: Config, space: str, bbox: torch.Tensor | None = None, background: str = "black"):
        super().__init__()
        if len(cfg.n_samples) != len(cfg.proposals) + 1:
            raise ValueError(f"n_samples {cfg.n_samples} needs one entry per proposal round plus the NeRF round")
        self.cfg, self.space, self.background = cfg, space, background
        self.register_buffer("bbox", bbox.float() if bbox is not None else torch.zeros(2, 3), persistent=False)
        self.field = NeRFField(cfg.field)
        self.proposals = nn.ModuleList(ProposalField(p) for p in cfg.proposals)
        self.bg_logit = nn.Parameter(torch.zeros(3)) if background == "learned" else None

    # ------------------------------------------------------------------------------ helpers
    def background_color(self, device) -> torch.Tensor:
        if self.bg_logit is not None:
            return torch.sigmoid(self.bg_logit)
        return torch.full((3,), 1.0 if self.background == "white" else 0.0, device=device)

    def space_map(self, rays: RayBundle):
        kind = "linear" if self.space == "ndc" else self.cfg.spacing
        return rfkernels.SpaceMap(kind, rays.near, rays.far)

    def _points(self, rays: RayBundle, smap, s_edges):
        """s-space edges [R, n+1] -> (t_starts, t_ends [R, n], unit-cube points [R*n, 3], scales [R*n])."""
        t_edges = smap.s_to_t(s_edges)
        t0, t1 = t_edges[:, :-1], t_edges[:, 1:]
        tm = 0.5 * (t0 + t1)
        x = rays.origins[:, None, :] + rays.directions[:, None, :] * tm[..., None]
        u, unit_scale = to_unit_cube(x.reshape(-1, 3), self.space, self.bbox)
        radius = rays.radii[:, None] if self.space == "ndc" else rays.radii[:, None] * tm
        # Gaussian std of the cone's cross-section: half its radius (Zip-NeRF's std_scale 0.5)
        scales = (STD_SCALE * radius).expand_as(tm).reshape(-1) * unit_scale
        return t0, t1, u, scales

    def _level_masks(self, progress: float | None):
        from ..regularizers import frequency_mask

        if progress is None or self.cfg.freq_reg_fraction <= 0:
            return None, [None] * len(self.proposals)
        frac = progress / self.cfg.freq_reg_fraction
        dev = self.bbox.device
        g = self.cfg.field.grid
        return (frequency_mask(g.n_levels, g.n_features_per_level, frac, dev),
                [frequency_mask(p.grid.n_levels, p.grid.n_features_per_level, frac, dev) for p in self.cfg.proposals])

    # ------------------------------------------------------------------------------ forward
    def forward(self, rays: RayBundle, progress: float | None = None) -> RenderOutput:
        """Render ``rays``. ``progress`` in [0, 1] (training) enables jittered sampling and the
        frequency mask; ``None`` (evaluation) samples deterministically at bin midpoints."""
        R, dev = len(rays), rays.origins.device
        training = progress is not None
        mode = "single_jitter" if training else "midpoint"
        smap = self.space_map(rays)
        nerf_mask, prop_masks = self._level_masks(progress)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16,
                                  enabled=self.cfg.mixed_precision and rays.origins.is_cuda)
        s_edges = torch.tensor([0.0, 1.0], device=dev).expand(R, 2).contiguous()
        weights = torch.ones(R, 1, device=dev)
        proposals = []
        for k, prop in enumerate(self.proposals):
            s_edges = rfkernels.sample_pdf(s_edges, weights, self.cfg.n_samples[k], mode=mode,
                                           histogram_padding=self.cfg.histogram_padding, return_edges=True).detach()
            t0, t1, u, scales = self._points(rays, smap, s_edges)
            with autocast:
                sigma = prop(u, scales, prop_masks[k]).view(R, -1)
            weights = rfkernels.render_weights(sigma, t0, t1)[0]
            proposals.append((s_edges, weights))
            weights = weights.detach()
        s_edges = rfkernels.sample_pdf(s_edges, weights, self.cfg.n_samples[-1], mode=mode,
                                       histogram_padding=self.cfg.histogram_padding, return_edges=True).detach()
        t0, t1, u, scales = self._points(rays, smap, s_edges)
        S = t0.shape[1]
        dirs = rays.viewdirs[:, None, :].expand(R, S, 3).reshape(-1, 3)
        with autocast:
            sigma, rgb = self.field(u, dirs, scales, nerf_mask)
        sigma, rgb = sigma.view(R, S), rgb.view(R, S, 3)
        out = rfkernels.volume_render(sigma, rgb, t0, t1, background=self.background_color(dev))
        s_mid = 0.5 * (s_edges[:, :-1] + s_edges[:, 1:])
        depth = (out.weights * s_mid).sum(-1)
        return RenderOutput(out.rgb, depth, out.opacity, out.weights, s_edges, sigma, proposals)

    @torch.no_grad()
    def render_chunked(self, rays: RayBundle, chunk: int = 8192) -> dict:
        """Evaluation render of many rays -> ``{"rgb": [R, 3], "depth": [R], "opacity": [R]}``."""
        outs = {"rgb": [], "depth": [], "opacity": []}
        for i in range(0, len(rays), chunk):
            o = self(rays[i:i + chunk])
            outs["rgb"].append(o.rgb.float().clamp(0, 1))
            outs["depth"].append(o.depth.float())
            outs["opacity"].append(o.opacity.float())
        return {k: torch.cat(v) for k, v in outs.items()}


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["NeRFField", "RenderOutput", "ZipNeRF", "n_parameters", "posenc"]
