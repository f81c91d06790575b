"""PixelNeRF conditioning: render a feature map of the target camera from the input views.

1. :class:`ViewEncoder` turns each input image ``[3, H, W]`` into a feature map at latent resolution
   ``[C, H/d, W/d]`` (multi-scale conv encoder; paper: 512x512 -> 64x64x128).
2. :class:`PixelNeRF` casts one ray per latent pixel of the target camera, samples points, projects
   them into the input views with :func:`rfkernels.gather_features`, runs a per-view MLP on
   (feature, positional encoding of the point in that camera, target view direction in that
   camera), averages over the views that see the point, maps the result to density, features and
   RGB, and composites with :func:`rfkernels.volume_render`.

All cameras are expressed relative to the target camera and scaled by ``1 / mid``, so the output
does not depend on the world frame or scale. Samples are spaced uniformly in contracted distance
(linear in depth over ``[near, mid]``, in disparity over ``[mid, far]``; see
:mod:`reconfusion.prior.depths`), so unbounded scenes with ``far = 1000`` keep their geometry.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

import rfkernels
from reconfusion.rays import camera_directions


@dataclass
class PixelNeRFConfig:
    feature_channels: int = 128  # per-view encoder features (paper: 128)
    encoder_width: int = 64
    hidden: int = 128
    out_channels: int = 16  # feature map channels concatenated to the UNet input
    n_samples: int = 32  # points per ray
    pe_freqs: int = 6
    downsample: int = 8  # image size / latent size (the VAE's factor)
    convention: str = "opengl"  # of the c2w matrices passed in

    def to_dict(self) -> dict:
        return asdict(self)


class PixelNeRFOutput(NamedTuple):
    features: torch.Tensor  # [B, out_channels, h, w]
    rgb: torch.Tensor  # [B, 3, h, w] in [0, 1] (auxiliary photometric loss)
    depth: torch.Tensor  # [B, 1, h, w] contracted distance s (= depth / far when mid = far)
    opacity: torch.Tensor  # [B, 1, h, w]


def _gn(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, c), c)


class ViewEncoder(nn.Module):
    """``[N, 3, H, W]`` in [0, 1] -> ``[N, C, H/d, W/d]``: strided conv levels, every level pooled to
    the output size and fused by a 1x1 conv (skip connections across scales)."""

    def __init__(self, width: int, out_channels: int, downsample: int):
        super().__init__()
        levels = int(round(math.log2(downsample)))
        if 2**levels != downsample:
            raise ValueError(f"`downsample` must be a power of 2, got {downsample}")
        self.downsample = downsample
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), _gn(width), nn.SiLU())
        self.levels = nn.ModuleList()
        c = width
        for i in range(levels):
            c_out = min(width * 2 ** (i + 1), 4 * width)
            self.levels.append(
                nn.Sequential(
                    nn.Conv2d(c, c_out, 3, stride=2, padding=1),
                    _gn(c_out),
                    nn.SiLU(),
                    nn.Conv2d(c_out, c_out, 3, padding=1),
                    _gn(c_out),
                    nn.SiLU(),
                )
            )
            c = c_out
        total = width + sum(min(width * 2 ** (i + 1), 4 * width) for i in range(levels))
        self.fuse = nn.Conv2d(total, out_channels, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        H, W = images.shape[-2:]
        size = (H // self.downsample, W // self.downsample)
        x = self.stem(images * 2.0 - 1.0)
        outs = [F.adaptive_avg_pool2d(x, size)]
        for level in self.levels:
            x = level(x)
            outs.append(x if x.shape[-2:] == size else F.adaptive_avg_pool2d(x, size))
        return self.fuse(torch.cat(outs, dim=1))


def positional_encoding(x: torch.Tensor, n_freqs: int) -> torch.Tensor:
    """``[..., D]`` -> ``[..., D * (1 + 2 n_freqs)]`` (identity, sin, cos at 2^k pi)."""
    freqs = (2.0 ** torch.arange(n_freqs, device=x.device, dtype=x.dtype)) * math.pi
    xf = (x[..., None] * freqs).flatten(-2)
    return torch.cat([x, xf.sin(), xf.cos()], dim=-1)


def contract_distance(t: torch.Tensor) -> torch.Tensor:
    """mip-NeRF 360's 1D contraction of a depth in units of ``mid``: ``t`` for ``t <= 1``, else ``2 - 1/t``."""
    return torch.where(t <= 1, t, 2.0 - 1.0 / t.clamp_min(1.0))


def uncontract_distance(s: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`contract_distance` on ``[0, 2)``."""
    return torch.where(s <= 1, s, 1.0 / (2.0 - s.clamp(1.0, 2.0 - 1e-6)))


def sample_bins(near: torch.Tensor, mid: torch.Tensor, far: torch.Tensor, u: torch.Tensor):
    """Bins uniform in contracted distance ``s = g(t / mid)`` between ``near`` and ``far`` ``[B]``;
    ``u`` ``[B, R, S]`` in [0, 1) places one sample per bin. -> ``(s_starts, s_ends, t)`` ``[B, R, S]``,
    ``t`` the samples' depths in units of ``mid`` (multiply by ``mid`` for world units)."""
    B, R, S = u.shape
    edges = torch.linspace(0, 1, S + 1, device=u.device, dtype=u.dtype)
    lo = contract_distance(near / mid)[:, None, None]
    hi = contract_distance(far / mid)[:, None, None]
    s_starts = (lo + (hi - lo) * edges[:-1]).expand(B, R, S)
    s_ends = (lo + (hi - lo) * edges[1:]).expand(B, R, S)
    return s_starts, s_ends, uncontract_distance(s_starts + (s_ends - s_starts) * u)


def relative_cameras(input_c2w: torch.Tensor, target_c2w: torch.Tensor, scale: torch.Tensor):
    """Express cameras in the target camera's frame, translations times ``scale`` ``[B]``.

    Args: input_c2w ``[B, V, 4, 4]``, target_c2w ``[B, 4, 4]``. Returns input c2w ``[B, V, 4, 4]``.
    """
    rel = torch.linalg.inv(target_c2w)[:, None] @ input_c2w
    rel = rel.clone()
    rel[..., :3, 3] = rel[..., :3, 3] * scale[:, None, None]
    return rel


class PixelNeRF(nn.Module):
    def __init__(self, cfg: PixelNeRFConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = ViewEncoder(cfg.encoder_width, cfg.feature_channels, cfg.downsample)
        pe_dim = 3 * (1 + 2 * cfg.pe_freqs)
        self.view_mlp = nn.Sequential(
            nn.Linear(cfg.feature_channels + pe_dim + 3, cfg.hidden),
            nn.SiLU(),
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.SiLU(),
        )
        self.head = nn.Sequential(
            nn.Linear(2 * cfg.hidden + 1, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, 1 + cfg.out_channels + 3)
        )

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, V, 3, H, W]`` -> per-view features ``[B, V, C, H/d, W/d]``, stored channels-last (C innermost,
        the layout the fused gather reads), so each :meth:`forward` on them gathers without a copy."""
        B, V = images.shape[:2]
        f = self.encoder(images.flatten(0, 1)).contiguous(memory_format=torch.channels_last)
        return f.view(B, V, *f.shape[1:])

    def forward(
        self,
        view_features,
        input_c2w,
        input_K,
        target_c2w,
        target_K,
        image_size,
        near,
        far,
        mid=None,
        stratified: bool = False,
    ) -> PixelNeRFOutput:
        """Render the target camera at latent resolution.

        Args:
            view_features: ``[B, V, C, h, w]`` from :meth:`encode`.
            input_c2w: ``[B, V, 4, 4]``; target_c2w: ``[B, 4, 4]`` camera-to-world (``cfg.convention``).
            input_K: ``[B, V, 3, 3]``; target_K: ``[B, 3, 3]`` pinhole K in pixels of ``image_size``.
            image_size: ``(H, W)`` of the images the intrinsics refer to.
            near, far: ``[B]`` depth range of the samples (world units).
            mid: ``[B]`` end of the linear part (see :mod:`reconfusion.prior.depths`); default ``far``
                (all linear). Coordinates are scaled by ``1 / mid``.
        """
        cfg = self.cfg
        B, V, C, h, w = view_features.shape
        H, W = image_size
        dev, dt = view_features.device, torch.float32
        near = torch.as_tensor(near, device=dev, dtype=dt).expand(B)
        far = torch.as_tensor(far, device=dev, dtype=dt).expand(B)
        mid = far if mid is None else torch.as_tensor(mid, device=dev, dtype=dt).expand(B)
        if bool(((mid <= near) | (mid > far)).any()):
            raise ValueError("PixelNeRF needs near < mid <= far for every example")
        scale = 1.0 / mid
        rel = relative_cameras(input_c2w.to(dt), target_c2w.to(dt), scale)  # target = identity
        w2c = torch.linalg.inv(rel)
        # one ray per latent pixel centre, in the target camera (= world) frame, unit depth
        ys, xs = torch.meshgrid(
            (torch.arange(h, device=dev, dtype=dt) + 0.5) * (H / h),
            (torch.arange(w, device=dev, dtype=dt) + 0.5) * (W / w),
            indexing="ij",
        )
        intr = torch.stack([target_K[:, 0, 0], target_K[:, 1, 1], target_K[:, 0, 2], target_K[:, 1, 2]], -1).to(dt)
        dirs = camera_directions(xs[None], ys[None], intr[:, None, None], cfg.convention).reshape(B, h * w, 3)
        S = cfg.n_samples
        u = torch.rand(B, h * w, S, device=dev) if stratified else torch.full((B, h * w, S), 0.5, device=dev)
        s_starts, s_ends, t_mid = sample_bins(near, mid, far, u)
        points = (dirs[:, :, None, :] * t_mid[..., None]).reshape(B, h * w * S, 3)
        g = rfkernels.gather_features(
            points,
            view_features.float(),
            input_K.float(),
            w2c[:, :, :3, :4],
            image_size=(H, W),
            convention=cfg.convention,
            reduce="none",
            return_camera_coords=True,
        )
        vdir = F.normalize(dirs, dim=-1)  # target view direction, rotated into each input camera
        vdir_in = torch.einsum("bvij,brj->brvi", w2c[:, :, :3, :3], vdir)  # [B, hw, V, 3]
        vdir_in = vdir_in[:, :, None].expand(B, h * w, S, V, 3).reshape(B, h * w * S, V, 3)
        x = torch.cat([g.features, positional_encoding(g.camera_coords, cfg.pe_freqs), vdir_in], dim=-1)
        hid = self.view_mlp(x)  # [B, N, V, hidden]
        m = g.mask.to(hid.dtype)[..., None]
        cnt = m.sum(2)
        mean = (hid * m).sum(2) / cnt.clamp_min(1.0)
        var = ((hid - mean[:, :, None]) ** 2 * m).sum(2) / cnt.clamp_min(1.0)
        out = self.head(torch.cat([mean, var, cnt / V], dim=-1))  # [B, N, 1 + F + 3]
        sigma = F.softplus(out[..., 0] - 1.0).reshape(B * h * w, S) * S  # density per unit s
        colors = torch.cat([out[..., 1 : 1 + cfg.out_channels], torch.sigmoid(out[..., 1 + cfg.out_channels :])], -1)
        r = rfkernels.volume_render(
            sigma.float(),
            colors.reshape(B * h * w, S, -1).float().contiguous(),
            s_starts.reshape(B * h * w, S).contiguous(),
            s_ends.reshape(B * h * w, S).contiguous(),
        )

        def img(x):
            return x.reshape(B, h, w, -1).permute(0, 3, 1, 2)

        feat = img(r.rgb)
        return PixelNeRFOutput(
            feat[:, : cfg.out_channels], feat[:, cfg.out_channels :], img(r.depth[:, None]), img(r.opacity[:, None])
        )


__all__ = [
    "PixelNeRF",
    "PixelNeRFConfig",
    "PixelNeRFOutput",
    "ViewEncoder",
    "contract_distance",
    "positional_encoding",
    "relative_cameras",
    "sample_bins",
    "uncontract_distance",
]
