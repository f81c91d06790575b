"""Diffusion prior: one regularization step of the sample loss (NeRF render excluded).

``regularize``: PixelNeRF conditioning (conditional + null branch, once per step) + VAE encode of
the render + K = 10 guided DDIM steps (one batched UNet call each) + VAE decode. ``unet_step``: one
guided DDIM step alone. ``prior_condition``: the PixelNeRF render alone per rfkernels backend.
Backends of the first two:

- ``torch``: eager, diffusers' default attention processor (the baseline the speedup is against);
- ``sdpa`` / ``xformers``: eager with :class:`~reconfusion.prior.attention.FastAttnProcessor`;
- ``graph``: FastAttnProcessor ("auto": xformers when installed) + the CUDA-graph-captured step.

GPU: Stable-Diffusion-1.5-sized UNet and VAE built from config (random weights, fp16), 512x512
images, 64x64 latents, 3 input views. Scale ``tiny`` (CPU, dry runs): the tiny test prior (16x16 latents).
"""

from __future__ import annotations

import torch

from .common import Case

K_STEPS = 10


def _build(device: torch.device, quick: bool):
    from reconfusion.prior import PriorConfig, ReconFusionPrior
    from reconfusion.prior.pixelnerf import PixelNeRFConfig
    from reconfusion.prior.unet import sd15_unet_config, sd15_vae_config

    torch.manual_seed(0)
    if quick:
        return ReconFusionPrior.tiny().to(device).eval(), torch.float32
    pn = PixelNeRFConfig()
    clip = dict(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=224,
        patch_size=14,
        projection_dim=768,
    )  # CLIP ViT-L/14
    cfg = PriorConfig(
        unet=sd15_unet_config(4 + pn.out_channels),
        vae=sd15_vae_config(),
        clip=clip,
        pixelnerf=pn.to_dict(),
        image_size=512,
    )
    prior = ReconFusionPrior(cfg).to(device).eval()
    prior.unet.half()
    prior.vae.half()
    return prior, torch.float16


def cases(device: torch.device, scale: str) -> list[Case]:
    quick = scale == "tiny"
    from diffusers.models.attention_processor import AttnProcessor2_0

    from reconfusion.prior.attention import set_attention_backend, xformers_available
    from reconfusion.prior.sampler import DDIMSampler, make_step_fn
    from tests.helpers.prior_scenes import camera_batch

    prior, dtype = _build(device, quick)
    S, V = prior.cfg.image_size, 3
    cams = camera_batch(1, V, S, device)
    inputs = torch.rand(1, V, 3, S, S, device=device)
    render = torch.rand(1, 3, S, S, device=device)
    with torch.no_grad():
        views, null_views = prior.encode_views(inputs), prior.null_views(inputs)
    h = S // prior.downsample
    size = f"{S}x{S} img {h}x{h} lat V={V}" + ("" if quick else " SD1.5 fp16")
    state = {"attn": None}

    def use(attn):
        if state["attn"] != attn:
            if attn == "diffusers":
                prior.unet.set_attn_processor(AttnProcessor2_0())
            else:
                set_attention_backend(prior.unet, attn)
            state["attn"] = attn

    backends = [("torch", "diffusers", False), ("sdpa", "sdpa", False)]
    if device.type == "cuda":
        if xformers_available():
            backends.append(("xformers", "xformers", False))
        backends.append(("graph", "auto", True))
    out = []
    for name, attn, graph in backends:
        sampler = DDIMSampler(prior, guidance=3.0, cuda_graph=graph)

        @torch.no_grad()
        def regularize(sampler=sampler, attn=attn):
            use(attn)
            cond = prior.condition(views, cams, (S, S))
            null = prior.condition(null_views, cams, (S, S))
            return sampler.regularize(render, cond, null, t=0.98, steps=K_STEPS)

        with torch.no_grad():
            cond = prior.condition(views, cams, (S, S))
            null = prior.condition(null_views, cams, (S, S))
        x = torch.randn(1, prior.latent_channels, h, h, device=device)
        inp = dict(
            x=x,
            t=torch.full((1,), 500, device=device),
            a_t=torch.full((1, 1, 1, 1), 0.5, device=device),
            a_prev=torch.full((1, 1, 1, 1), 0.6, device=device),
            features=torch.cat([null.features, cond.features]).to(dtype),
            tokens=torch.cat([null.tokens, cond.tokens]).to(dtype),
            guidance=torch.tensor([3.0], device=device),
        )
        eager_step = make_step_fn(prior, "cfg")

        @torch.no_grad()
        def unet_step(sampler=sampler, attn=attn, graph=graph, eager_step=eager_step, inp=inp):
            use(attn)
            return sampler.step("cfg", **inp) if graph else eager_step(**inp)

        out += [
            Case("prior_regularize", size + f" K={K_STEPS}", name, "sample", regularize, items=1, item_name="samples"),
            Case("prior_unet_step", size + " cfg", name, "step", unet_step, items=1, item_name="steps"),
        ]
    out += _condition_cases(prior, views, cams, S, size, device)
    return out


def _condition_cases(prior, views, cams, S, size, device) -> list[Case]:
    """The per-step PixelNeRF conditioning (cond + null renders) on each rfkernels backend."""
    import rfkernels

    from .common import backends_for

    backends = backends_for(device)
    out = []
    for be in backends:

        @torch.no_grad()
        def condition(be=be):
            prev = rfkernels.get_backend()
            rfkernels.set_backend(be)
            try:
                return prior.condition(views, cams, (S, S))
            finally:
                rfkernels.set_backend(prev)

        n = prior.pixelnerf.cfg.n_samples
        out.append(
            Case(
                "prior_condition",
                size + f" S={n}",
                be,
                "fwd",
                condition,
                items=(S // prior.downsample) ** 2 * n * views.features.shape[1],
                item_name="pts*views",
            )
        )
    return out
