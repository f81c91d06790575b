"""The ReconFusion prior: PixelNeRF conditioning + CLIP tokens + a latent-diffusion UNet + a VAE.

Save/load: ``prior.save(dir)`` writes ``config.json`` (every component's config) and
``model.safetensors`` (all weights); :meth:`ReconFusionPrior.load` rebuilds from those only. Base
weights come from local diffusers/transformers directories (:meth:`ReconFusionPrior.from_components`,
``local_files_only=True``, never a hub name).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from .clip import ClipTokens, build_clip, tiny_clip_config
from .pixelnerf import PixelNeRF, PixelNeRFConfig, PixelNeRFOutput
from .unet import tiny_unet_config, tiny_vae_config, widen_conv_in

PREDICTION_TYPES = ("epsilon", "v_prediction")
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


@dataclass
class PriorConfig:
    unet: dict
    vae: dict
    clip: dict
    pixelnerf: dict = field(default_factory=lambda: PixelNeRFConfig().to_dict())
    # v-prediction by default although SD-1.5 (the usual base) was trained for epsilon: the switch is
    # learned in fine-tuning (v stays well-posed at high noise, where the sample loss starts); tests
    # check that fine-tuning an epsilon base converges in either parameterization.
    prediction_type: str = "v_prediction"
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085  # scaled-linear schedule of Stable Diffusion
    beta_end: float = 0.012
    image_size: int = 512  # square target/input images the prior works at
    max_views: int = 3
    cond_drop_prob: float = 0.1  # classifier-free guidance: input images zeroed in training
    photometric_weight: float = 1.0  # PixelNeRF RGB vs downsampled target

    def __post_init__(self):
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"`prediction_type` must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "prior config") -> PriorConfig:
        """Inverse of :meth:`to_dict`; an unknown or missing key is a ``ValueError`` naming it."""
        from dataclasses import fields

        if not isinstance(d, dict):
            raise ValueError(f"{where} must be a JSON object, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} in {where}; known: {sorted(names)}")
        missing = sorted(k for k in ("unet", "vae", "clip") if k not in d)
        if missing:
            raise ValueError(f"{where} lacks key(s) {missing}")
        return cls(**d)


class ViewEncoding(NamedTuple):
    """Per-scene conditioning computed once from the input images (reusable across steps)."""

    features: torch.Tensor  # [B, V, C, h, w] PixelNeRF encoder features
    tokens: torch.Tensor  # [B, V, D] CLIP cross-attention tokens


class Conditioning(NamedTuple):
    features: torch.Tensor  # [B, F, h, w] PixelNeRF feature map of the target camera
    tokens: torch.Tensor  # [B, V, D]
    pixelnerf: PixelNeRFOutput | None = None


class Cameras(NamedTuple):
    """Cameras of one conditioning batch (``c2w`` in the PixelNeRF config's convention)."""

    input_c2w: torch.Tensor  # [B, V, 4, 4]
    input_K: torch.Tensor  # [B, V, 3, 3] in pixels of the prior's image size
    target_c2w: torch.Tensor  # [B, 4, 4]
    target_K: torch.Tensor  # [B, 3, 3]
    near: torch.Tensor  # [B]
    far: torch.Tensor  # [B]
    mid: torch.Tensor | None = None  # [B] end of PixelNeRF's linear depth range (None: far); see prior.depths


def _json_safe(cfg) -> dict:
    return json.loads(json.dumps(dict(cfg), default=lambda o: list(o) if isinstance(o, tuple) else str(o)))


class ReconFusionPrior(nn.Module):
    def __init__(self, cfg: PriorConfig, unet=None, vae=None, clip=None):
        from diffusers import AutoencoderKL, UNet2DConditionModel

        super().__init__()
        self.cfg = cfg
        pn_cfg = PixelNeRFConfig(**cfg.pixelnerf)
        vae = vae if vae is not None else AutoencoderKL.from_config(cfg.vae)
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        if pn_cfg.downsample != factor:
            raise ValueError(f"pixelnerf downsample {pn_cfg.downsample} != VAE factor {factor}")
        want_in = vae.config.latent_channels + pn_cfg.out_channels
        unet = unet if unet is not None else UNet2DConditionModel.from_config({**cfg.unet, "in_channels": want_in})
        if unet.config.in_channels == vae.config.latent_channels:  # a base (e.g. SD) UNet: widen, zero init
            widen_conv_in(unet, pn_cfg.out_channels)
        if unet.config.in_channels != want_in:
            raise ValueError(f"UNet takes {unet.config.in_channels} input channels, expected {want_in}")
        self.vae = vae.requires_grad_(False).eval()
        self.unet = unet
        self.clip = ClipTokens(clip if clip is not None else build_clip(cfg.clip), unet.config.cross_attention_dim)
        self.pixelnerf = PixelNeRF(pn_cfg)
        # store the configs as actually built (e.g. widened conv_in) so load() rebuilds the same modules
        cfg.unet, cfg.vae = _json_safe(unet.config), _json_safe(vae.config)
        cfg.clip = self.clip.clip.config.to_dict()
        betas = (
            torch.linspace(cfg.beta_start**0.5, cfg.beta_end**0.5, cfg.num_train_timesteps, dtype=torch.float64) ** 2
        )
        self.register_buffer("alphas_cumprod", torch.cumprod(1.0 - betas, 0).float(), persistent=False)

    # ---------------------------------------------------------------------------- constructors
    @classmethod
    def tiny(cls, latent_size: int = 16, pixelnerf: dict | None = None, **kw) -> ReconFusionPrior:
        """Random weights, everything small: images ``4 * latent_size`` square (VAE factor 4)."""
        pn = dict(feature_channels=8, encoder_width=8, hidden=16, out_channels=4, n_samples=8, pe_freqs=2, downsample=4)
        pn.update(pixelnerf or {})
        cfg = PriorConfig(
            unet=tiny_unet_config(4 + pn["out_channels"], 32, latent_size),
            vae=tiny_vae_config(),
            clip=tiny_clip_config(),
            pixelnerf=pn,
            image_size=4 * latent_size,
            **kw,
        )
        return cls(cfg)

    @classmethod
    def from_components(
        cls, unet_dir: str, vae_dir: str, clip_dir: str, pixelnerf: dict | None = None, **kw
    ) -> ReconFusionPrior:
        """Base weights from local directories (e.g. a Stable Diffusion ``unet/`` and ``vae/`` and a
        CLIP vision model); the UNet's ``conv_in`` is widened with zero-initialized channels."""
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPVisionModelWithProjection

        for name, d in (("unet_dir", unet_dir), ("vae_dir", vae_dir), ("clip_dir", clip_dir)):
            if not os.path.isdir(d):
                raise ValueError(f"`{name}` must be a local directory, got {d!r}")
        unet = UNet2DConditionModel.from_pretrained(unet_dir, local_files_only=True)
        vae = AutoencoderKL.from_pretrained(vae_dir, local_files_only=True)
        clip = CLIPVisionModelWithProjection.from_pretrained(clip_dir, local_files_only=True)
        pn = PixelNeRFConfig(downsample=2 ** (len(vae.config.block_out_channels) - 1)).to_dict()
        pn.update(pixelnerf or {})
        cfg = PriorConfig(unet=dict(unet.config), vae=dict(vae.config), clip=clip.config.to_dict(), pixelnerf=pn, **kw)
        return cls(cfg, unet=unet, vae=vae, clip=clip)

    def save(self, path: str) -> None:
        """``path/config.json`` + ``path/model.safetensors``."""
        from safetensors.torch import save_model

        from ..safe_io import FILE_MODE

        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, CONFIG_NAME), "w") as f:
            json.dump(self.cfg.to_dict(), f, indent=1)
        save_model(self, os.path.join(path, WEIGHTS_NAME))
        os.chmod(os.path.join(path, WEIGHTS_NAME), FILE_MODE)  # safetensors writes 0600: same mode as config.json

    @classmethod
    def load(
        cls, path: str, device="cpu", dtype: torch.dtype | None = None, prediction_type: str | None = None
    ) -> ReconFusionPrior:
        """Rebuild a saved prior; ``prediction_type`` switches the parameterization (e.g. fine-tune an
        epsilon-trained base as v-prediction): same weights, new training target."""
        from safetensors.torch import load_model

        cfg_path, w_path = os.path.join(path, CONFIG_NAME), os.path.join(path, WEIGHTS_NAME)
        for p in (cfg_path, w_path):
            if not os.path.isfile(p):
                raise ValueError(f"not a saved prior: {p} is missing")
        from ..safe_io import CheckpointError, load_safetensors, read_json

        cfg = PriorConfig.from_dict(read_json(cfg_path), cfg_path)
        model = cls(cfg)
        expected = model.state_dict()
        for k, t in load_safetensors(w_path)[0].items():  # refuses pickles and truncated files first
            if k not in expected or tuple(t.shape) != tuple(expected[k].shape):
                want = f"shape {list(expected[k].shape)}" if k in expected else "no such tensor"
                raise CheckpointError(
                    f"{w_path}: tensor {k!r} has shape {list(t.shape)}, the prior of {cfg_path} "
                    f"has {want} (weights of another prior size)"
                )
        try:
            load_model(model, w_path, strict=True)
        except RuntimeError as exc:  # missing tensors: torch's first line names them
            raise CheckpointError(f"{w_path}: not the weights of {cfg_path} ({str(exc).splitlines()[0]})") from exc
        model.to(device)
        if dtype is not None:
            model.to(dtype)
        if prediction_type is not None:  # read at every use (target / split_prediction): no rebuild needed
            from dataclasses import replace

            model.cfg = replace(model.cfg, prediction_type=prediction_type)  # validated in __post_init__
        return model.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.vae.eval()
        return self

    # ------------------------------------------------------------------------------- pieces
    @property
    def latent_channels(self) -> int:
        return self.vae.config.latent_channels

    @property
    def downsample(self) -> int:
        return self.pixelnerf.cfg.downsample

    def encode(self, images: torch.Tensor, sample: bool = False, generator=None) -> torch.Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> scaled latents ``[B, 4, H/d, W/d]`` (posterior mean by default)."""
        dist = self.vae.encode((images * 2.0 - 1.0).to(self.vae.dtype)).latent_dist
        z = dist.sample(generator) if sample else dist.mean
        return z * self.vae.config.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images ``[B, 3, H, W]`` in [0, 1] (differentiable)."""
        x = self.vae.decode((latents / self.vae.config.scaling_factor).to(self.vae.dtype)).sample
        return (x.float() * 0.5 + 0.5).clamp(0.0, 1.0)

    def encode_views(self, images: torch.Tensor) -> ViewEncoding:
        """Input views ``[B, V, 3, H, W]`` in [0, 1] -> :class:`ViewEncoding` (PixelNeRF features, CLIP tokens)."""
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"`images` must be [B, V, 3, H, W], got {list(images.shape)}")
        return ViewEncoding(self.pixelnerf.encode(images), self.clip(images))

    def condition(
        self, views: ViewEncoding, cams: Cameras, image_size: tuple[int, int], stratified: bool = False
    ) -> Conditioning:
        """Render the PixelNeRF feature map of the target camera; pair it with the CLIP tokens."""
        out = self.pixelnerf(
            views.features,
            cams.input_c2w,
            cams.input_K,
            cams.target_c2w,
            cams.target_K,
            image_size,
            cams.near,
            cams.far,
            cams.mid,
            stratified=stratified,
        )
        return Conditioning(out.features, views.tokens, out)

    def null_views(self, like: torch.Tensor) -> ViewEncoding:
        """The unconditional branch of classifier-free guidance: input images all zero."""
        return self.encode_views(torch.zeros_like(like))

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, features: torch.Tensor, tokens: torch.Tensor):
        """Raw UNet output (eps or v, see ``cfg.prediction_type``) ``[B, 4, h, w]``."""
        dt = self.unet.dtype
        x = torch.cat([x_t, features.to(x_t.dtype)], dim=1).to(dt)
        return self.unet(x, t, encoder_hidden_states=tokens.to(dt)).sample

    # ------------------------------------------------------------------ parameterizations
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """``alphas_cumprod[t]`` as ``[B, 1, 1, 1]``."""
        return self.alphas_cumprod[t.long()].view(-1, 1, 1, 1)

    def add_noise(self, x0, noise, t):
        a = self.alpha(t)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def target(self, x0, noise, t):
        """Training target of the UNet for ``cfg.prediction_type``."""
        if self.cfg.prediction_type == "epsilon":
            return noise
        a = self.alpha(t)
        return a.sqrt() * noise - (1 - a).sqrt() * x0

    def split_prediction(self, out, x_t, a):
        """Model output -> ``(x0, eps)`` given ``a = alphas_cumprod[t]`` broadcastable to ``x_t``."""
        if self.cfg.prediction_type == "epsilon":
            return (x_t - (1 - a).sqrt() * out) / a.sqrt(), out
        return a.sqrt() * x_t - (1 - a).sqrt() * out, (1 - a).sqrt() * x_t + a.sqrt() * out


__all__ = ["Cameras", "Conditioning", "PREDICTION_TYPES", "PriorConfig", "ReconFusionPrior", "ViewEncoding"]
