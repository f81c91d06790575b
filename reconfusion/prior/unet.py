"""The denoiser: a diffusers ``UNet2DConditionModel`` whose input is ``cat(noisy latent, PixelNeRF
features)``, plus the VAE configs. Configs here build models with random weights (tests,
benchmarks); real weights come from local directories via ``from_pretrained``.
"""

from __future__ import annotations

import torch
from torch import nn


def tiny_unet_config(in_channels: int = 4, cross_attention_dim: int = 32, sample_size: int = 16) -> dict:
    """A two-level UNet with cross-attention (a few hundred k parameters) for CPU tests."""
    return dict(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def sd15_unet_config(in_channels: int = 4, cross_attention_dim: int = 768) -> dict:
    """Stable Diffusion 1.5's UNet (860M parameters) as a config (no weights)."""
    return dict(
        sample_size=64,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=32,
    )


def tiny_vae_config() -> dict:
    """A 3-level AutoencoderKL (downsampling factor 4) for CPU tests."""
    return dict(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 16, 16),
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        norm_num_groups=8,
        sample_size=64,
    )


def sd15_vae_config() -> dict:
    """Stable Diffusion's VAE (factor 8, 4 latent channels, scaling 0.18215) as a config."""
    return dict(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=32,
        sample_size=512,
        scaling_factor=0.18215,
    )


def widen_conv_in(unet, extra_channels: int) -> None:
    """Give ``unet.conv_in`` ``extra_channels`` more input channels, zero-initialized, in place.

    With zero weights on the new channels the widened UNet computes exactly what the base UNet
    computed on the first ``in_channels`` channels, so fine-tuning starts from the base model.
    """
    if extra_channels < 0:
        raise ValueError(f"`extra_channels` must be >= 0, got {extra_channels}")
    if extra_channels == 0:
        return
    old: nn.Conv2d = unet.conv_in
    new = nn.Conv2d(
        old.in_channels + extra_channels,
        old.out_channels,
        old.kernel_size,
        old.stride,
        old.padding,
        bias=old.bias is not None,
    ).to(old.weight.device, old.weight.dtype)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels] = old.weight
        if old.bias is not None:
            new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=old.in_channels + extra_channels)


__all__ = ["sd15_unet_config", "sd15_vae_config", "tiny_unet_config", "tiny_vae_config", "widen_conv_in"]
