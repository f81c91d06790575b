"""Attention processor: SDPA (and xformers when present on CUDA) vs the math reference."""

import logging

import pytest
import torch

from reconfusion.prior import attention as A
from tests.helpers.numerics import assert_close

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("L,S", [(1, 1), (17, 5), (64, 64)])
@pytest.mark.parametrize("with_mask", [False, True])
def test_attention_backends_match_math(seed, device, L, S, with_mask):
    q, k, v = (torch.randn(2, 3, n, 8, device=device) for n in (L, S, S))
    mask = torch.randn(2, 1, L, S, device=device) if with_mask else None
    ref = A.math_attention(q.double(), k.double(), v.double(), None if mask is None else mask.double(), scale=0.3)
    tol = 1e-5 if device.type == "cpu" else 2e-4  # fused GPU kernels reassociate sums
    for be in ("sdpa", "auto", "math"):
        assert_close(A.attention(q, k, v, mask, scale=0.3, backend=be), ref, atol=tol, rtol=10 * tol, name=be)


def test_xformers_falls_back_with_log(caplog, monkeypatch):
    monkeypatch.setattr(A, "xformers_available", lambda: False)
    A._logged.clear()
    with caplog.at_level(logging.WARNING, logger=A.__name__):
        assert A.resolve_attention_backend("xformers", torch.device("cpu")) == "sdpa"
    assert "falling back to PyTorch SDPA" in caplog.text
    assert A.resolve_attention_backend("auto", torch.device("cpu")) == "sdpa"


def test_bad_backend():
    with pytest.raises(ValueError, match="backend"):
        A.FastAttnProcessor("flash9")
    with pytest.raises(ValueError, match="backend"):
        A.resolve_attention_backend("nope", torch.device("cpu"))


def _unet(cross_attention_dim=16):
    from diffusers import UNet2DConditionModel

    from reconfusion.prior.unet import tiny_unet_config

    return UNet2DConditionModel.from_config(tiny_unet_config(4, cross_attention_dim, 8)).eval()


@pytest.mark.parametrize("backend", ["sdpa", "math", "auto"])
def test_processor_matches_diffusers_default(seed, backend):
    """The whole UNet (self- and cross-attention) with our processor == diffusers' own processor."""
    from diffusers.models.attention_processor import AttnProcessor

    unet = _unet()
    x, t, ctx = torch.randn(2, 4, 8, 8), torch.tensor([3, 700]), torch.randn(2, 3, 16)
    unet.set_attn_processor(AttnProcessor())  # diffusers' math processor
    with torch.no_grad():
        ref = unet(x, t, encoder_hidden_states=ctx).sample
        assert A.set_attention_backend(unet, backend) > 0
        out = unet(x, t, encoder_hidden_states=ctx).sample
    assert_close(out, ref, atol=2e-5, rtol=1e-4, name=backend)


def test_processor_with_attention_mask(seed):
    from diffusers.models.attention_processor import Attention, AttnProcessor

    attn = Attention(16, cross_attention_dim=12, heads=2, dim_head=8)
    h, ctx = torch.randn(2, 5, 16), torch.randn(2, 4, 12)
    mask = torch.zeros(2, 1, 4)
    mask[0, 0, 3] = -1e4
    with torch.no_grad():
        attn.set_processor(AttnProcessor())
        ref = attn(h, ctx, attention_mask=mask)
        attn.set_processor(A.FastAttnProcessor("sdpa"))
        out = attn(h, ctx, attention_mask=mask)
    assert_close(out, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(not (torch.cuda.is_available() and A.xformers_available()), reason="needs CUDA + xformers")
def test_xformers_matches_sdpa_cuda(seed):
    q, k, v = (torch.randn(2, 8, n, 40, device="cuda", dtype=torch.float16) for n in (300, 77, 77))
    ref = A.attention(q, k, v, backend="sdpa")
    assert_close(A.attention(q, k, v, backend="xformers"), ref, atol=2e-3, rtol=2e-3)
