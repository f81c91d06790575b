"""CLIP image embeddings of the input views: the UNet's cross-attention tokens (one per view)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def tiny_clip_config() -> dict:
    """A 2-layer ViT (32x32 input, 8x8 patches) for CPU tests."""
    return dict(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        projection_dim=32,
    )


def build_clip(config: dict):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    return CLIPVisionModelWithProjection(CLIPVisionConfig(**config))


class ClipTokens(nn.Module):
    """Frozen ``CLIPVisionModelWithProjection`` + a trainable linear map to the UNet's
    ``cross_attention_dim`` (identity-initialized when the sizes match).

    ``forward(images [B, V, 3, H, W] in [0, 1]) -> tokens [B, V, cross_attention_dim]``.
    """

    def __init__(self, clip_model, cross_attention_dim: int):
        super().__init__()
        self.clip = clip_model.requires_grad_(False).eval()
        dim = clip_model.config.projection_dim
        self.proj = nn.Linear(dim, cross_attention_dim)
        with torch.no_grad():
            if dim == cross_attention_dim:
                self.proj.weight.copy_(torch.eye(dim))
                self.proj.bias.zero_()
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()  # frozen: never dropout
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        B, V = images.shape[:2]
        size = self.clip.config.image_size
        x = F.interpolate(
            images.flatten(0, 1).float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        x = (x - self.mean) / self.std
        with torch.no_grad():
            emb = self.clip(pixel_values=x.to(self.clip.dtype)).image_embeds  # [B*V, proj]
        return self.proj(emb.to(self.proj.weight.dtype)).view(B, V, -1)


__all__ = ["CLIP_MEAN", "CLIP_STD", "ClipTokens", "build_clip", "tiny_clip_config"]
