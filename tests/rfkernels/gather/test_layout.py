"""The fused gather reads feature maps channels-last ([B, V, H, W, C] memory): maps already stored that way
(e.g. ``[B*V, C, H, W]`` in ``torch.channels_last`` viewed as ``[B, V, C, H, W]``, what PixelNeRF's encoder
returns) reach the kernels without a copy, so a caller that renders many times from the same maps pays the
layout change once."""

from types import SimpleNamespace

import pytest
import torch

from rfkernels import _dispatch, gather_features
from tests.helpers.gather_scenes import random_scene


class _Launched(Exception):
    """Raised by the spy kernel with the feature tensor it was given."""


def _spy_forward(points, feats, *args):
    raise _Launched(feats)


def test_channels_last_feature_maps_reach_the_kernel_without_a_copy():
    points, features, K, E = random_scene(1, 5, 2, 3, 6, 9, (24, 30), torch.device("cpu"))
    B, V, C, H, W = features.shape
    maps = features.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(B, V, C, H, W)
    spy = SimpleNamespace(gather_forward=_spy_forward, gather_backward=None)
    with _dispatch.registered("gather", "triton", spy, available=lambda device: None):
        with pytest.raises(_Launched) as launched:
            gather_features(points, maps, K, E, image_size=(24, 30), backend="triton")
    feats = launched.value.args[0]
    assert feats.shape == (B, V, H, W, C) and feats.is_contiguous()
    assert feats.data_ptr() == maps.data_ptr()


def test_pixelnerf_encodes_feature_maps_channels_last():
    from reconfusion.prior.pixelnerf import PixelNeRF, PixelNeRFConfig

    cfg = PixelNeRFConfig(feature_channels=8, encoder_width=8, hidden=8, out_channels=4, n_samples=4)
    with torch.no_grad():
        maps = PixelNeRF(cfg).encode(torch.rand(1, 2, 3, 32, 32))
    assert maps.shape[:3] == (1, 2, 8) and maps.permute(0, 1, 3, 4, 2).is_contiguous()
