"""Prior assembly: PixelNeRF conditioning, conv_in widening, CLIP tokens, VAE, save/load."""

import os

import pytest
import torch

from reconfusion.prior import PriorConfig, ReconFusionPrior
from reconfusion.prior.pixelnerf import PixelNeRF, PixelNeRFConfig, positional_encoding
from reconfusion.prior.unet import tiny_unet_config, widen_conv_in
from tests.helpers.numerics import assert_close
from tests.helpers.prior_scenes import camera_batch

pytestmark = pytest.mark.usefixtures("one_thread")


os.environ.setdefault("HF_HUB_OFFLINE", "1")
S = 64  # tiny prior: 64x64 images, 16x16 latents


@pytest.fixture(scope="module")
def prior():
    torch.manual_seed(0)
    return ReconFusionPrior.tiny().eval()


def _inputs(B=2, V=2):
    return torch.rand(B, V, 3, S, S), camera_batch(B, V, S)


def test_shapes_and_ranges(prior):
    imgs, cams = _inputs()
    with torch.no_grad():
        views = prior.encode_views(imgs)
        cond = prior.condition(views, cams, (S, S))
        z = prior.encode(imgs[:, 0])
        out = prior.denoise(z, torch.tensor([0, 999]), cond.features, cond.tokens)
        img = prior.decode(z)
    assert views.features.shape == (2, 2, 8, 16, 16) and views.tokens.shape == (2, 2, 32)
    assert cond.features.shape == (2, 4, 16, 16) and cond.pixelnerf.rgb.shape == (2, 3, 16, 16)
    assert z.shape == (2, 4, 16, 16) and out.shape == z.shape and img.shape == (2, 3, S, S)
    assert bool(((cond.pixelnerf.rgb >= 0) & (cond.pixelnerf.rgb <= 1)).all())
    assert bool(((img >= 0) & (img <= 1)).all())
    assert torch.isfinite(cond.features).all() and torch.isfinite(out).all()


@pytest.mark.parametrize("mid", [None, 2.0])
def test_pixelnerf_pose_invariant(prior, seed, mid):
    """Moving, rotating and scaling the whole world (cameras + near/mid/far) leaves the render unchanged."""
    imgs, cams = _inputs(1, 2)
    if mid is not None:  # contracted spacing: linear to mid, disparity beyond (far = 5)
        cams = cams._replace(mid=torch.full_like(cams.far, mid))
    q, _ = torch.linalg.qr(torch.randn(3, 3))
    q = q * torch.sign(torch.linalg.det(q))
    T = torch.eye(4)
    T[:3, :3], T[:3, 3] = q, torch.randn(3)
    s = 2.5

    def move(c2w):
        out = T @ c2w
        out[..., :3, 3] *= s
        return out

    moved = cams._replace(
        input_c2w=move(cams.input_c2w),
        target_c2w=move(cams.target_c2w),
        near=cams.near * s,
        far=cams.far * s,
        mid=None if mid is None else cams.mid * s,
    )
    with torch.no_grad():
        views = prior.encode_views(imgs)
        a = prior.condition(views, cams, (S, S))
        b = prior.condition(views, moved, (S, S))
    assert_close(b.features, a.features, atol=2e-4, rtol=1e-3)
    assert_close(b.pixelnerf.rgb, a.pixelnerf.rgb, atol=2e-4, rtol=1e-3)


def test_pixelnerf_sees_inputs_and_has_gradients(prior):
    """The features depend on the input images (through the gather) and gradients reach the encoder."""
    imgs, cams = _inputs(1, 2)
    views = prior.encode_views(imgs)
    cond = prior.condition(views, cams, (S, S), stratified=True)
    assert cond.pixelnerf.opacity.mean() > 0
    cond.features.square().sum().backward()
    g = prior.pixelnerf.encoder.fuse.weight.grad
    assert g is not None and g.abs().sum() > 0
    prior.zero_grad(set_to_none=True)
    with torch.no_grad():
        other = prior.condition(prior.encode_views(torch.rand_like(imgs)), cams, (S, S))
    assert (other.features - cond.features.detach()).abs().max() > 1e-6


def test_positional_encoding():
    x = torch.randn(5, 3)
    pe = positional_encoding(x, 2)
    assert pe.shape == (5, 15)
    assert_close(pe[:, :3], x)


def test_widen_conv_in_zero_init(seed):
    from diffusers import UNet2DConditionModel

    base = UNet2DConditionModel.from_config(tiny_unet_config(4, 16, 8)).eval()
    x, t, ctx = torch.randn(1, 4, 8, 8), torch.tensor([10]), torch.randn(1, 2, 16)
    with torch.no_grad():
        ref = base(x, t, encoder_hidden_states=ctx).sample
        widen_conv_in(base, 5)
        assert base.conv_in.in_channels == 9 and base.config.in_channels == 9
        out = base(torch.cat([x, torch.randn(1, 5, 8, 8)], 1), t, encoder_hidden_states=ctx).sample
    assert_close(out, ref, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="extra_channels"):
        widen_conv_in(base, -1)


def test_save_load_roundtrip(prior, tmp_path):
    prior.save(str(tmp_path / "p"))
    assert {"config.json", "model.safetensors"} <= set(os.listdir(tmp_path / "p"))
    loaded = ReconFusionPrior.load(str(tmp_path / "p"))
    sd_a, sd_b = prior.state_dict(), loaded.state_dict()
    assert sd_a.keys() == sd_b.keys()
    for k in sd_a:
        assert torch.equal(sd_a[k], sd_b[k]), k
    with pytest.raises(ValueError, match="not a saved prior"):
        ReconFusionPrior.load(str(tmp_path / "missing"))


def test_from_components_local_dirs(tmp_path, seed):
    """Base components saved with save_pretrained load from local dirs; conv_in is widened."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from reconfusion.prior.clip import build_clip, tiny_clip_config
    from reconfusion.prior.unet import tiny_vae_config

    unet = UNet2DConditionModel.from_config(tiny_unet_config(4, 32, 16))
    unet.save_pretrained(tmp_path / "unet")
    AutoencoderKL.from_config(tiny_vae_config()).save_pretrained(tmp_path / "vae")
    build_clip(tiny_clip_config()).save_pretrained(tmp_path / "clip")
    p = ReconFusionPrior.from_components(
        str(tmp_path / "unet"),
        str(tmp_path / "vae"),
        str(tmp_path / "clip"),
        pixelnerf=dict(feature_channels=8, encoder_width=8, hidden=16, out_channels=3, n_samples=4, pe_freqs=1),
        image_size=S,
    )
    assert p.unet.conv_in.in_channels == 7 and p.downsample == 4
    assert torch.equal(p.unet.conv_in.weight[:, :4], unet.conv_in.weight)
    assert p.unet.conv_in.weight[:, 4:].abs().sum() == 0
    p.save(str(tmp_path / "prior"))
    q = ReconFusionPrior.load(str(tmp_path / "prior"))
    assert q.unet.conv_in.in_channels == 7
    with pytest.raises(ValueError, match="local directory"):
        ReconFusionPrior.from_components(
            "runwayml/stable-diffusion-v1-5", str(tmp_path / "vae"), str(tmp_path / "clip")
        )


def test_config_validation():
    with pytest.raises(ValueError, match="prediction_type"):
        PriorConfig(unet={}, vae={}, clip={}, prediction_type="x0")
    with pytest.raises(ValueError, match="downsample"):
        ReconFusionPrior.tiny(pixelnerf=dict(downsample=8))
    with pytest.raises(ValueError, match="power of 2"):
        PixelNeRF(PixelNeRFConfig(downsample=6))


def test_pixelnerf_fused_backends_match_torch(fused_backend):
    """PixelNeRF through rfkernels' fused gather + volume rendering == the torch reference path
    (values and encoder gradients); Triton runs in the interpreter on the CPU."""
    import rfkernels

    torch.manual_seed(0)
    dev = torch.device("cuda" if fused_backend == "cuda" or torch.cuda.is_available() else "cpu")
    p = ReconFusionPrior.tiny(pixelnerf=dict(n_samples=4)).to(dev)
    imgs, cams = torch.rand(1, 2, 3, S, S, device=dev), camera_batch(1, 2, S, dev)
    grads, feats = [], []
    prev = rfkernels.get_backend()
    try:
        for be in ("torch", fused_backend):
            rfkernels.set_backend(be)
            p.zero_grad(set_to_none=True)
            out = p.condition(p.encode_views(imgs), cams, (S, S))
            (out.features.square().sum() + out.pixelnerf.rgb.sum()).backward()
            feats.append(torch.cat([out.features, out.pixelnerf.rgb], 1).detach())
            grads.append(p.pixelnerf.encoder.fuse.weight.grad.clone())
    finally:
        rfkernels.set_backend(prev)
    assert_close(feats[1], feats[0], atol=1e-5, rtol=1e-4)
    assert_close(grads[1], grads[0], atol=1e-4 * grads[0].abs().max().item(), rtol=1e-3)


def test_saved_prior_files_share_one_mode(prior, tmp_path):
    """safetensors creates its files 0600; a saved prior's weights get config.json's mode (the umask's)."""
    import stat

    prior.save(str(tmp_path / "p"))
    modes = {
        name: stat.S_IMODE(os.stat(tmp_path / "p" / name).st_mode) for name in ("config.json", "model.safetensors")
    }
    assert len(set(modes.values())) == 1, modes
