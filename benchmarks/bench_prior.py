"""Diffusion prior: the prior's part of one regularization step of the sample loss (NeRF render excluded).

``prior_regularize`` times :func:`reconfusion.prior.sample_loss.prior_sample`, what the sample loss
calls: PixelNeRF conditioning (conditional + null branch) + VAE encode of the render + K = 10 guided
DDIM steps (one batched UNet call each) + VAE decode. ``prior_unet_step``: one guided DDIM step
alone. ``prior_condition``: the PixelNeRF render alone per rfkernels backend. Two paths:

- ``torch``: the baseline, the prior as a user would run it: float32, diffusers' own attention
  processors, eager;
- the fast path, named by what :func:`reconfusion.prior.fast_path.select_fast_path` chose for the
  device (e.g. ``bf16-sdpa-graph``: UNet and VAE bfloat16, SDPA attention, CUDA-graph DDIM step;
  ``sdpa`` on the CPU): the same weights prepared by
  :func:`~reconfusion.prior.fast_path.prepare_prior`, exactly as the reconstruction loop does. Each
  case's ``extra`` records the selection and its reason (e.g. why xformers is not used).

GPU: Stable-Diffusion-1.5-sized UNet and VAE built from config (random weights), 512x512 images,
64x64 latents, 3 input views. Scale ``tiny`` (CPU, dry runs): the tiny test prior (16x16 latents).
"""

from __future__ import annotations

import copy

import torch

from .common import Case

K_STEPS = 10


def _build(device: torch.device, quick: bool):
    """The prior as a user loads it: float32 weights on ``device``, diffusers' attention processors."""
    from reconfusion.prior import PriorConfig, ReconFusionPrior
    from reconfusion.prior.pixelnerf import PixelNeRFConfig
    from reconfusion.prior.unet import sd15_unet_config, sd15_vae_config

    torch.manual_seed(0)
    if quick:
        return ReconFusionPrior.tiny().to(device).eval()
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
    return ReconFusionPrior(cfg).to(device).eval()


def cases(device: torch.device, scale: str) -> list[Case]:
    """Baseline ``torch``: the prior as a user loads it (float32, diffusers' own attention processors,
    eager DDIM). Fast path: the same weights put on :func:`~reconfusion.prior.fast_path.prepare_prior`'s
    path, the function the reconstruction's sample loss calls, named by what it selected (e.g.
    ``bf16-sdpa-graph``; on the CPU ``sdpa``). Both time :func:`~reconfusion.prior.sample_loss.prior_sample`
    (conditioning + K DDIM steps + VAE), the prior's part of one regularization step."""
    from reconfusion.prior.fast_path import prepare_prior
    from reconfusion.prior.sample_loss import prior_sample
    from reconfusion.prior.sampler import DDIMSampler, make_step_fn
    from tests.helpers.prior_scenes import camera_batch

    quick = scale == "tiny"
    baseline = _build(device, quick)
    fast, path = prepare_prior(copy.deepcopy(baseline), device)
    S, V = baseline.cfg.image_size, 3
    cams = camera_batch(1, V, S, device)
    inputs = torch.rand(1, V, 3, S, S, device=device)
    render = torch.rand(1, 3, S, S, device=device)
    h = S // baseline.downsample
    size = f"{S}x{S} img {h}x{h} lat V={V}" + ("" if quick else " SD1.5")
    out = []
    for name, prior, graphs in (("torch", baseline, False), (path.label, fast, path.cuda_graphs)):
        with torch.no_grad():
            views, null_views = prior.encode_views(inputs), prior.null_views(inputs)
            cond, null = prior.condition(views, cams, (S, S)), prior.condition(null_views, cams, (S, S))
        sampler = DDIMSampler(prior, guidance=3.0, cuda_graph=graphs)

        def regularize(prior=prior, sampler=sampler, views=views, null_views=null_views):
            return prior_sample(prior, sampler, render, views, null_views, cams, t=0.98, steps=K_STEPS)

        step_inputs = dict(
            x=torch.randn(1, prior.latent_channels, h, h, device=device),
            t=torch.full((1,), 500, device=device),
            a_t=torch.full((1, 1, 1, 1), 0.5, device=device),
            a_prev=torch.full((1, 1, 1, 1), 0.6, device=device),
            features=torch.cat([null.features, cond.features]),
            tokens=torch.cat([null.tokens, cond.tokens]),
            guidance=torch.tensor([3.0], device=device),
        )
        eager_step = make_step_fn(prior, "cfg")

        @torch.no_grad()
        def unet_step(sampler=sampler, graphs=graphs, eager_step=eager_step, inp=step_inputs):
            return sampler.step("cfg", **inp) if graphs else eager_step(**inp)

        extra = {"path": path.describe(), "reason": path.reason} if prior is fast else {"path": "float32, diffusers"}
        out += [
            Case(
                "prior_regularize",
                size + f" K={K_STEPS}",
                name,
                "sample",
                regularize,
                items=1,
                item_name="samples",
                extra=extra,
            ),
            Case("prior_unet_step", size + " cfg", name, "step", unet_step, items=1, item_name="steps", extra=extra),
        ]
    with torch.no_grad():
        views = baseline.encode_views(inputs)
    out += _condition_cases(baseline, views, cams, S, size, device)
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
