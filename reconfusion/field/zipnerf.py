"""A Zip-NeRF-style model on rfkernels: a sampler in s-space (proposal resampling by default), a
NeRF field on an encoding (an anti-aliased hash grid by default), scene contraction, and
compositing with a background.

Per ray (``R`` rays): the sampler (:mod:`.samplers`) places intervals in normalized distance
``s``, ``t = SpaceMap.s_to_t(s)`` gives metric distances, sample points ``o + t d`` are mapped into
the unit cube (:mod:`.contraction`), the field (:class:`NeRFField` on an :mod:`.encoding`) gives
density and colour, and ``rfkernels.volume_render`` composites them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

import rfkernels

from ..config import Config, FieldConfig
from ..rays import RayBundle
from .contraction import to_unit_cube
from .encoding import Encoding, HashGridEncoder
from .proposal import density_activation, mlp, mlp_autocast
from .samplers import Sampler, make_sampler

STD_SCALE = 0.5


def posenc(x: torch.Tensor, degree: int) -> torch.Tensor:
    """``[N, 3]`` -> ``[N, 3 + 6 * degree]``: x, sin(2^k x), cos(2^k x) for k < degree."""
    if degree == 0:
        return x
    freqs = 2.0 ** torch.arange(degree, dtype=x.dtype, device=x.device)
    xb = (x[:, None, :] * freqs[:, None]).reshape(x.shape[0], -1)
    return torch.cat([x, torch.sin(xb), torch.cos(xb)], dim=-1)


class NeRFField(nn.Module):
    """Encoding (hash grid by default) -> density MLP -> (density, bottleneck) -> colour
    MLP(bottleneck, dir enc) -> RGB (``cfg.view_dependent`` False: MLP(bottleneck))."""

    def __init__(self, cfg: FieldConfig, encoding: Encoding | None = None, freq_reg_fraction: float = 0.0):
        super().__init__()
        self.cfg = cfg
        self.encoding = encoding if encoding is not None else HashGridEncoder(cfg.grid, freq_reg_fraction)
        self.density_mlp = mlp(self.encoding.output_dim, cfg.density_width, cfg.density_depth, 1 + cfg.bottleneck)
        dir_dims = 3 + 6 * cfg.dir_degree if cfg.view_dependent else 0
        self.color_mlp = mlp(cfg.bottleneck + dir_dims, cfg.color_width, cfg.color_depth, 3)

    def forward(self, u, viewdirs, scales=None, progress=None):
        """``u [N, 3]``, ``viewdirs [N, 3]``, ``scales [N]`` -> (density ``[N]``, rgb ``[N, 3]``)."""
        h = self.density_mlp(self.encoding(u, scales, progress))
        sigma = density_activation(h[:, 0])
        c = torch.cat([h[:, 1:], posenc(viewdirs, self.cfg.dir_degree)], -1) if self.cfg.view_dependent else h[:, 1:]
        rgb = torch.sigmoid(self.color_mlp(c).float())
        return sigma, rgb


@dataclass
class RenderOutput:
    rgb: torch.Tensor  # [R, 3]
    depth: torch.Tensor  # [R] expected normalized distance s (in [0, 1])
    opacity: torch.Tensor  # [R]
    weights: torch.Tensor  # [R, S] of the NeRF round
    s_edges: torch.Tensor  # [R, S+1]
    sigmas: torch.Tensor  # [R, S]
    proposals: list = field(default_factory=list)  # the sampler's histograms [(s_edges [R, n+1], weights [R, n])]

    def rows(self, idx) -> RenderOutput:
        """The render of the rays ``idx`` (a slice or index tensor) only."""
        per_ray = {k: getattr(self, k)[idx] for k in ("rgb", "depth", "opacity", "weights", "s_edges", "sigmas")}
        return RenderOutput(**per_ray, proposals=[(e[idx], w[idx]) for e, w in self.proposals])


class ZipNeRF(nn.Module):
    """The full model. ``space``/``bbox``/``background`` come from the :class:`~reconfusion.data.Scene`;
    ``cfg`` must be resolved for that space (:func:`reconfusion.config.resolve`; ``build_model``
    does it). ``sampler``/``field`` replace the ones the config describes (see :mod:`.samplers`,
    :mod:`.encoding`)."""

    def __init__(
        self,
        cfg: Config,
        space: str,
        bbox: torch.Tensor | None = None,
        background: str = "black",
        sampler: Sampler | None = None,
        field: nn.Module | None = None,
    ):
        super().__init__()
        if cfg.spacing == "auto":
            raise ValueError(
                "config `spacing` is 'auto': resolve it for the scene first "
                "(reconfusion.config.resolve(cfg, space), as build_model does)"
            )
        self.cfg, self.space, self.background = cfg, space, background
        self.register_buffer("bbox", bbox.float() if bbox is not None else torch.zeros(2, 3), persistent=False)
        self.field = field if field is not None else NeRFField(cfg.field, freq_reg_fraction=cfg.freq_reg_fraction)
        self.sampler = sampler if sampler is not None else make_sampler(cfg)
        self.bg_logit = nn.Parameter(torch.zeros(3)) if background == "learned" else None

    # ------------------------------------------------------------------------------ helpers
    def background_color(self, device) -> torch.Tensor:
        if self.bg_logit is not None:
            return torch.sigmoid(self.bg_logit)
        return torch.full((3,), 1.0 if self.background == "white" else 0.0, device=device)

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

    # ------------------------------------------------------------------------------ forward
    def forward(self, rays: RayBundle, progress: float | None = None) -> RenderOutput:
        """Render ``rays``. ``progress`` in [0, 1] (training) enables jittered sampling and the
        encodings' coarse-to-fine schedule; ``None`` (evaluation) samples deterministically.
        ``cfg.torch_compile``: rfkernels' compiled torch path (CPU) is on while rendering."""
        if self.cfg.torch_compile and not rfkernels.torch_compile_enabled():  # (a no-op when vetoed)
            with rfkernels.use_torch_compile(True):
                return self._forward(rays, progress)
        return self._forward(rays, progress)

    def _forward(self, rays: RayBundle, progress: float | None) -> RenderOutput:
        R, dev = len(rays), rays.origins.device
        smap = rfkernels.SpaceMap(self.cfg.spacing, rays.near, rays.far)
        points = lambda s_edges: self._points(rays, smap, s_edges)  # noqa: E731
        s_edges, histograms = self.sampler(rays, points, progress)
        t0, t1, u, scales = points(s_edges)
        S = t0.shape[1]
        dirs = rays.viewdirs[:, None, :].expand(R, S, 3).reshape(-1, 3)
        with mlp_autocast(self.cfg, rays.origins.is_cuda):
            sigma, rgb = self.field(u, dirs, scales, progress)
        sigma, rgb = sigma.view(R, S), rgb.view(R, S, 3)
        out = rfkernels.volume_render(sigma, rgb, t0, t1, background=self.background_color(dev))
        s_mid = 0.5 * (s_edges[:, :-1] + s_edges[:, 1:])
        depth = (out.weights * s_mid).sum(-1)
        return RenderOutput(out.rgb, depth, out.opacity, out.weights, s_edges, sigma, histograms)


__all__ = ["NeRFField", "RenderOutput", "ZipNeRF", "posenc"]
