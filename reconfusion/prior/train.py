"""Training the prior on multiview scenes: examples, the loss, EMA, the loop (DDP-aware).

One example = a target view + 1..``max_views`` input views of one scene, square-cropped and resized to
the prior's image size. The loss is the diffusion loss (epsilon or v) on VAE latents of the target
plus ``photometric_weight`` x MSE between PixelNeRF's RGB and the target downsampled to latent size.
Input images are zeroed with probability ``cond_drop_prob`` (classifier-free guidance); the VAE and
CLIP are frozen.

Multi-GPU: ``torchrun --nproc_per_node N -m reconfusion train-prior ...`` (one process per GPU,
NCCL; gradients all-reduced by DDP; only rank 0 writes checkpoints).
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from .examples import ExampleSampler, batch_cameras, square_resize  # noqa: F401 (re-exported)
from .model import ReconFusionPrior

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------- loss
def prior_loss(prior: ReconFusionPrior, batch: dict, generator: torch.Generator | None = None,
               stratified: bool = True) -> tuple[torch.Tensor, dict]:
    """Diffusion + PixelNeRF photometric loss of one batch -> (loss, {"diffusion": .., "photometric": ..})."""
    cfg = prior.cfg
    target, inputs = batch["target"], batch["inputs"]
    B, dev = target.shape[0], target.device
    keep = (torch.rand(B, generator=generator, device=dev) >= cfg.cond_drop_prob).float()
    views = prior.encode_views(inputs * keep.view(B, 1, 1, 1, 1))
    cond = prior.condition(views, batch_cameras(batch), tuple(target.shape[-2:]), stratified=stratified)
    with torch.no_grad():
        z0 = prior.encode(target, sample=True, generator=generator).float()
    t = torch.randint(0, cfg.num_train_timesteps, (B,), generator=generator, device=dev)
    noise = torch.randn(z0.shape, generator=generator, device=dev)
    out = prior.denoise(prior.add_noise(z0, noise, t), t, cond.features, cond.tokens)
    diffusion = F.mse_loss(out.float(), prior.target(z0, noise, t))
    small = F.interpolate(target, size=cond.features.shape[-2:], mode="area")
    per = ((cond.pixelnerf.rgb.float() - small) ** 2).mean(dim=(1, 2, 3))
    photometric = (per * keep).sum() / keep.sum().clamp_min(1.0)
    loss = diffusion + cfg.photometric_weight * photometric
    return loss, {"diffusion": diffusion.detach(), "photometric": photometric.detach()}


class _TrainModule(nn.Module):
    """Wraps the prior so DDP sees one forward (batch -> loss)."""

    def __init__(self, prior):
        super().__init__()
        self.prior = prior

    def forward(self, batch, stratified: bool = True):
        return prior_loss(self.prior, batch, stratified=stratified)


# ----------------------------------------------------------------------------------------- EMA
class EMA:
    """Exponential moving average of the trainable parameters."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.decay = decay
        self.shadow = {n: p.detach().clone().float() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for n, p in model.named_parameters():
            if n in self.shadow:
                self.shadow[n].lerp_(p.detach().float(), 1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        for n, p in model.named_parameters():
            if n in self.shadow:
                p.copy_(self.shadow[n].to(p.dtype))


# ---------------------------------------------------------------------------------------- loop
def trainable_parameters(prior: ReconFusionPrior) -> list[nn.Parameter]:
    return [p for p in prior.parameters() if p.requires_grad]


def train_prior(prior: ReconFusionPrior, sampler: ExampleSampler, steps: int, batch_size: int = 4,
                lr: float = 1e-4, out_dir: str | None = None, checkpoint_every: int = 1000,
                ema_decay: float = 0.999, mixed_precision: str = "no", device="cpu", log_every: int = 50,
                views=(1, 3)) -> list[float]:
    """Train in place; returns the loss of every step. Saves ``out_dir/ema`` and ``out_dir/last``
    (prior directories, see :meth:`ReconFusionPrior.save`) every ``checkpoint_every`` steps and at the end."""
    if mixed_precision not in ("no", "bf16", "fp16"):
        raise ValueError(f"`mixed_precision` must be no, bf16 or fp16, got {mixed_precision!r}")
    device = torch.device(device)
    dist = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank = torch.distributed.get_rank() if dist else 0
    prior.to(device).train()
    module = _TrainModule(prior)
    if dist:
        ids = [device.index] if device.type == "cuda" else None
        module = nn.parallel.DistributedDataParallel(module, device_ids=ids)
    params = trainable_parameters(prior)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    ema = EMA(prior, ema_decay)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision)
    scaler = torch.amp.GradScaler(device.type, enabled=mixed_precision == "fp16")
    history, t0 = [], time.time()
    for step in range(1, steps + 1):
        n_views = sampler.rng.randint(views[0], views[1])
        batch = {k: v.to(device) for k, v in sampler.sample(batch_size, n_views).items()}
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            loss, parts = module(batch)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(opt)
        scaler.update()
        ema.update(prior)
        history.append(float(loss.detach()))
        if rank == 0 and (step % log_every == 0 or step == 1):
            log.info("step %d loss %.4f (diffusion %.4f photometric %.4f) %.2f s/step", step, history[-1],
                     float(parts["diffusion"]), float(parts["photometric"]), (time.time() - t0) / step)
        if rank == 0 and out_dir and (step % checkpoint_every == 0 or step == steps):
            save_checkpoint(prior, ema, out_dir, step)
    return history


def save_checkpoint(prior: ReconFusionPrior, ema: EMA, out_dir: str, step: int) -> None:
    prior.save(os.path.join(out_dir, "last"))
    ema_prior = copy.deepcopy(prior)
    ema.copy_to(ema_prior)
    ema_prior.save(os.path.join(out_dir, "ema"))
    with open(os.path.join(out_dir, "state.json"), "w") as f:
        json.dump({"step": step}, f)


# ----------------------------------------------------------------------------------------- CLI
def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="reconfusion train-prior", description=__doc__.split("\n")[0])
    p.add_argument("scenes", nargs="+", help="scene directories / .npz bundles (any reconfusion loader format)")
    p.add_argument("--out", required=True, help="output directory (checkpoints: OUT/ema, OUT/last)")
    p.add_argument("--init", default=None, help="a saved prior to continue from")
    p.add_argument("--base-unet", default=None, help="local diffusers UNet directory (e.g. SD-1.5/unet)")
    p.add_argument("--base-vae", default=None, help="local diffusers VAE directory")
    p.add_argument("--base-clip", default=None, help="local transformers CLIPVisionModelWithProjection directory")
    p.add_argument("--tiny", action="store_true", help="tiny random prior (smoke tests)")
    p.add_argument("--prediction", default="v_prediction", choices=("epsilon", "v_prediction"))
    p.add_argument("--steps", type=int, default=250_000)
    p.add_argument("--batch-size", type=int, default=8, help="per process")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--ema", type=float, default=0.9999)
    p.add_argument("--mixed-precision", default="no", choices=("no", "bf16", "fp16"))
    p.add_argument("--checkpoint-every", type=int, default=5000)
    p.add_argument("--downscale", type=float, default=1.0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.add_argument("--seed", type=int, default=0)
    return p


def run(args) -> int:
    from reconfusion.data import load_scene

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if "LOCAL_RANK" in os.environ and not torch.distributed.is_initialized():  # launched by torchrun
        local = int(os.environ["LOCAL_RANK"])
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    torch.manual_seed(args.seed + rank)
    if args.init:
        prior = ReconFusionPrior.load(args.init)
    elif args.tiny:
        prior = ReconFusionPrior.tiny(prediction_type=args.prediction)
    elif args.base_unet and args.base_vae and args.base_clip:
        prior = ReconFusionPrior.from_components(args.base_unet, args.base_vae, args.base_clip,
                                                 prediction_type=args.prediction)
    else:
        raise ValueError("train-prior: pass --init, --tiny, or all of --base-unet/--base-vae/--base-clip")
    scenes = [load_scene(s, downscale=args.downscale) for s in args.scenes]
    sampler = ExampleSampler(scenes, prior.cfg.image_size, seed=args.seed + rank)
    train_prior(prior, sampler, args.steps, args.batch_size, args.lr, args.out, args.checkpoint_every, args.ema,
                args.mixed_precision, device, views=(1, prior.cfg.max_views))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


def main(argv=None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
