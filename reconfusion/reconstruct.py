"""The optimization loop: data loss + few-view regularizers + pluggable extra losses, evaluation,
checkpoints (:mod:`.checkpoint`: safetensors + JSON) and resume.

The hook for the diffusion prior (a later issue) is :class:`ExtraLoss`: a callable invoked every
``every`` iterations with a :class:`LossContext` (model, scene, iteration, a render function, ...)
that returns a scalar loss tensor (or ``None`` to skip); it is added with ``weight``::

    def sample_loss(ctx):           # e.g. render a novel view, ask the prior, compare
        out = ctx.render(ctx.scene.camera_rays(pose, intr, pixels))
        return (out.rgb - target).abs().mean()

    train(scene, cfg, extra_losses=[ExtraLoss(sample_loss, every=10, weight=0.1, name="prior")])
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

import rfkernels

from . import regularizers as reg
from .checkpoint import (CKPT_DIR, STATE_FILE, checkpoint_dir, has_trainer_state, load_checkpoint,
                         load_trainer_state, save_checkpoint)
from .config import Config, resolve
from .data.scene import Scene
from .field.zipnerf import RenderOutput, ZipNeRF
from .metrics import LPIPS_ABSENT, image_metrics, psnr
from .rays import RayBundle
from .unseen import unseen_patches
from .video import depth_image, save_image, side_by_side, to_uint8


# ------------------------------------------------------------------------------- extra losses
@dataclass
class LossContext:
    """What an :class:`ExtraLoss` sees at one iteration."""

    model: ZipNeRF
    scene: Scene
    iteration: int
    config: Config
    device: torch.device
    progress: float  # iteration / iterations, in [0, 1]

    def render(self, rays: RayBundle) -> RenderOutput:
        """Differentiable render of ``rays`` (moved to the model's device), training-mode sampling."""
        return self.model(rays.to(self.device), progress=self.progress)


@dataclass
class ExtraLoss:
    fn: Callable[[LossContext], torch.Tensor | None]
    every: int = 1
    weight: float = 1.0
    name: str = "extra"


# ------------------------------------------------------------------------------- schedule
def learning_rate(step: int, cfg: Config) -> float:
    """Log-linear decay ``lr_init -> lr_final`` with Zip-NeRF's sine warm-up over ``warmup_steps``."""
    t = min(max(step / max(cfg.iterations, 1), 0.0), 1.0)
    lr = math.exp(math.log(cfg.lr_init) * (1 - t) + math.log(cfg.lr_final) * t)
    if cfg.warmup_steps > 0:
        lr *= 1e-8 + (1 - 1e-8) * math.sin(0.5 * math.pi * min(step / cfg.warmup_steps, 1.0))
    return lr


def build_model(cfg: Config, scene: Scene) -> ZipNeRF:
    """The model for ``scene`` with ``cfg`` resolved for its space (:func:`reconfusion.config.resolve`)."""
    return ZipNeRF(resolve(cfg, scene.space), scene.space, scene.bbox, scene.background)


def scene_meta(scene: Scene, data: dict | None = None) -> dict:
    """What a checkpoint needs to rebuild the model and its evaluation split."""
    return {
        "space": scene.space, "background": scene.background, "name": scene.name,
        "bbox": scene.bbox.tolist() if scene.bbox is not None else None,
        "train_ids": list(scene.train_ids), "test_ids": list(scene.test_ids), "data": data or {},
    }


# ------------------------------------------------------------------------------- training
def make_optimizer(model: ZipNeRF, cfg: Config) -> torch.optim.Adam:
    return torch.optim.Adam(model.parameters(), lr=cfg.lr_init, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps)


def check_backend(backend: str | None, device) -> None:
    """Raise ``rfkernels.BackendUnavailableError`` if an explicitly chosen backend cannot run on ``device``."""
    if backend in (None, "auto"):
        return
    available = rfkernels.available_backends(device)
    if backend not in available:
        raise rfkernels.BackendUnavailableError(
            f"backend {backend!r} cannot run on {torch.device(device)} here (available: {', '.join(available)})")


def config_differences(saved: Config, mine: Config) -> list[str]:
    """Top-level keys where ``mine`` differs from ``saved`` (``backend`` excluded), with values."""
    a, b = json.loads(saved.to_json()), json.loads(mine.to_json())
    out = []
    for k in a:
        if k != "backend" and a[k] != b.get(k):
            scalar = not isinstance(a[k], (dict, list))
            out.append(f"{k} (saved {a[k]!r}, yours {b.get(k)!r})" if scalar else k)
    return out


@dataclass
class TrainResult:
    model: ZipNeRF
    config: Config
    history: list = field(default_factory=list)  # [{"step", "loss", "psnr", ...}]
    seconds: float = 0.0


class _RayPool:
    """All pixels of the training views; draws random ray batches."""

    def __init__(self, scene: Scene, device):
        ids = torch.tensor(scene.train_ids, dtype=torch.long)
        self.scene, self.device = scene, device
        self.c2w, self.intr = scene.c2w[ids], scene.intrinsics[ids]
        self.colors = scene.images[ids].reshape(-1, 3)
        self.hw = scene.height * scene.width

    def sample(self, n: int, gen: torch.Generator) -> tuple[RayBundle, torch.Tensor]:
        idx = torch.randint(self.colors.shape[0], (n,), generator=gen)
        view, pix = torch.div(idx, self.hw, rounding_mode="floor"), idx % self.hw
        W = self.scene.width
        x = (pix % W).float() + 0.5
        y = torch.div(pix, W, rounding_mode="floor").float() + 0.5
        rays = self.scene.rays(self.c2w[view], self.intr[view], x, y)
        return rays.to(self.device), self.colors[idx].to(self.device)

    def unseen(self, n_patches: int, patch: int, gen: torch.Generator) -> RayBundle:
        """Rays of ``n_patches`` patches from viewpoints between the training cameras."""
        return unseen_patches(self.scene, self.c2w, self.intr, n_patches, patch, gen).to(self.device)


def compute_losses(out: RenderOutput, target: torch.Tensor, cfg: Config) -> dict:
    """The per-iteration loss terms (already weighted) from one render."""
    losses = {"data": reg.data_loss(out.rgb, target, cfg.data_loss, cfg.charbonnier_eps)}
    if cfg.interlevel_weight > 0 and out.proposals:
        if len(out.proposals) != len(cfg.interlevel_blurs):  # a level must never fall back to an unblurred loss
            raise ValueError(f"config `interlevel_blurs` has {len(cfg.interlevel_blurs)} half-width(s) but the "
                             f"sampler returned {len(out.proposals)} histogram(s): give one per level")
        losses["interlevel"] = cfg.interlevel_weight * sum(
            reg.interlevel(out.s_edges, out.weights, e, w, blur, backend=cfg.backend)
            for (e, w), blur in zip(out.proposals, cfg.interlevel_blurs))
    if cfg.distortion_weight > 0:
        losses["distortion"] = cfg.distortion_weight * reg.distortion(out.weights, out.s_edges, backend=cfg.backend)
    if cfg.entropy_weight > 0:
        losses["entropy"] = cfg.entropy_weight * reg.opacity_entropy(out.opacity)
    if cfg.occlusion_weight > 0:
        s_mid = 0.5 * (out.s_edges[:, :-1] + out.s_edges[:, 1:])
        losses["occlusion"] = cfg.occlusion_weight * reg.occlusion_loss(out.sigmas, s_mid, cfg.occlusion_s)
    return losses


def train(scene: Scene, cfg: Config, out_dir: str | None = None, *, device="cpu", resume: bool = False,
          extra_losses: tuple[ExtraLoss, ...] = (), progress_bar: bool = True, data_info: dict | None = None,
          log: Callable[[str], None] = print) -> TrainResult:
    """Optimize a :class:`ZipNeRF` on ``scene.train_ids`` for ``cfg.iterations`` steps.

    ``cfg`` is resolved for the scene first (:func:`reconfusion.config.resolve`: spacing, warm-up
    capped at a tenth of the run); ``cfg.backend`` must be able to run on ``device``.
    With ``out_dir``: checkpoints every ``cfg.checkpoint_every`` steps and at the end. ``resume``
    continues from ``out_dir``'s checkpoint (model, optimizer, RNG states, step) with the *saved* config,
    as if never interrupted:
    keys where ``cfg`` differs are logged once and ignored (except ``backend``, a choice of this
    process).
    """
    from tqdm import tqdm

    if not scene.train_ids:
        raise ValueError("scene has no training views: call select_views first")
    device = torch.device(device)
    resolved = resolve(cfg, scene.space)
    if resolved.warmup_steps != cfg.warmup_steps:
        log(f"warmup_steps {cfg.warmup_steps} -> {resolved.warmup_steps} (capped at a tenth of {cfg.iterations} iterations)")
    cfg = resolved
    check_backend(cfg.backend, device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    meta = scene_meta(scene, data_info)
    start, ckpt = 0, os.path.join(out_dir, CKPT_DIR) if out_dir else None
    if resume and ckpt and has_trainer_state(ckpt):
        model, saved, _ = load_checkpoint(ckpt, device, backend=cfg.backend)
        differ = config_differences(saved, cfg)
        if differ:
            log(f"resuming with the config saved in {ckpt}; ignoring your differing key(s): {', '.join(differ)}")
        cfg = saved
        model.train()
        opt = make_optimizer(model, cfg)
        start = load_trainer_state(os.path.join(ckpt, STATE_FILE), opt, gen)
        log(f"resumed from {out_dir} at step {start}")
    else:
        model = build_model(cfg, scene).to(device)
        opt = make_optimizer(model, cfg)
    pool = _RayPool(scene, device)
    history, t0 = [], time.time()
    model.train()
    bar = tqdm(range(start, cfg.iterations), disable=not progress_bar, dynamic_ncols=True,
               initial=start, total=cfg.iterations, desc="reconstruct")
    for step in bar:
        lr = learning_rate(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        progress = step / max(cfg.iterations, 1)
        rays, target = pool.sample(cfg.batch_rays, gen)
        out = model(rays, progress=progress)
        losses = compute_losses(out, target, cfg)
        if cfg.depth_smoothness_weight > 0:
            p = min(cfg.depth_smoothness_patch_size, scene.height, scene.width)  # capped for tiny images
            depth = model(pool.unseen(cfg.depth_smoothness_patches, p, gen), progress=progress).depth
            losses["depth_smoothness"] = cfg.depth_smoothness_weight * reg.depth_smoothness(depth.view(-1, p, p))
        ctx = None
        for extra in extra_losses:
            if extra.every > 0 and step % extra.every == 0:
                ctx = ctx or LossContext(model, scene, step, cfg, device, progress)
                value = extra.fn(ctx)
                if value is not None:
                    losses[extra.name] = extra.weight * value
        total = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        total.backward()
        if cfg.grid_decay_weight > 0:  # its gradient added in place (cheaper than a loss term)
            reg.add_grid_decay_grad_(model, cfg.grid_decay_weight)
        if cfg.grad_max_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_max_norm)
        opt.step()
        batch_psnr = psnr(out.rgb.detach(), target)
        if step % 10 == 0 or step == cfg.iterations - 1:
            rec = {"step": step, "loss": float(total.detach()), "psnr": batch_psnr, "lr": lr}
            rec.update({k: float(v.detach()) for k, v in losses.items()})
            if cfg.grid_decay_weight > 0:
                rec["grid_decay"] = cfg.grid_decay_weight * float(reg.grid_decay(model).detach())
            history.append(rec)
            bar.set_postfix(loss=f"{float(total.detach()):.4f}", psnr=f"{batch_psnr:.2f}")
        done = step + 1
        if cfg.eval_every and done % cfg.eval_every == 0 and scene.test_ids and done < cfg.iterations:
            m = evaluate(model, scene, None, device=device, log=lambda s: None,
                         progress_bar=False)
            log(f"step {done}: held-out PSNR {m['mean']['psnr']:.2f} SSIM {m['mean']['ssim']:.3f}")
            model.train()
        if out_dir and cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < cfg.iterations:
            save_checkpoint(out_dir, model, cfg, meta, done, opt, gen)
    bar.close()
    seconds = time.time() - t0
    if out_dir:
        save_checkpoint(out_dir, model, cfg, meta, cfg.iterations, opt, gen)
        with open(os.path.join(out_dir, "history.json"), "w") as f:
            json.dump(history, f)
    model.eval()
    return TrainResult(model, cfg, history, seconds)


# ------------------------------------------------------------------------------- evaluation
def render_view(model: ZipNeRF, scene: Scene, idx: int, chunk: int | None = None, device="cpu", bar=None) -> dict:
    """Render training/test view ``idx`` (``chunk`` rays at a time, default the model's
    ``cfg.eval_chunk``) -> ``{"rgb": [H, W, 3], "depth": [H, W], "opacity": [H, W]}``."""
    from .render import render_image

    return render_image(model, scene.view_rays(idx), scene.height, scene.width, chunk, device,
                        outputs=("rgb", "depth", "opacity"), bar=bar)


@torch.no_grad()
def evaluate(model: ZipNeRF, scene: Scene, out_dir: str | None, *, chunk: int | None = None, device="cpu",
             lpips_path: str | None = None, log: Callable[[str], None] = print, progress_bar: bool = True) -> dict:
    """Metrics on ``scene.test_ids``; with ``out_dir``, writes ``results.json`` and per view
    ``test_<id>.png`` (render | ground truth | error) and ``depth_<id>.png``."""
    if not scene.test_ids:
        raise ValueError("scene has no test views to evaluate")
    lpips_fn = None
    if lpips_path:
        from .metrics import LPIPS

        lpips_fn = LPIPS(lpips_path, device=device)
    else:
        log(LPIPS_ABSENT)
    from .render import progress_bar as make_bar

    per_view, t0 = [], time.time()
    bar = make_bar(len(scene.test_ids) * scene.height * scene.width, "evaluate", progress_bar)
    for i in scene.test_ids:
        r = render_view(model, scene, i, chunk, device, bar)
        m = image_metrics(r["rgb"], scene.images[i], lpips_fn)
        per_view.append({"view": i, "image": scene.image_names[i], **m})
        if out_dir:
            save_image(os.path.join(out_dir, f"test_{i:03d}.png"), side_by_side(r["rgb"], scene.images[i]))
            save_image(os.path.join(out_dir, f"depth_{i:03d}.png"), to_uint8(depth_image(r["depth"])))
    bar.close()
    keys = [k for k in per_view[0] if k not in ("view", "image")]
    mean = {k: sum(v[k] for v in per_view) / len(per_view) for k in keys}
    results = {
        "scene": scene.name, "n_train_views": len(scene.train_ids), "train_ids": list(scene.train_ids),
        "test_ids": list(scene.test_ids), "resolution": [scene.width, scene.height], "mean": mean,
        "per_view": per_view, "lpips": "computed" if lpips_fn else LPIPS_ABSENT,
        "render_seconds": time.time() - t0,
    }
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
    return results


__all__ = [
    "ExtraLoss", "LossContext", "TrainResult", "build_model", "check_backend", "checkpoint_dir", "compute_losses",
    "config_differences", "evaluate", "learning_rate", "load_checkpoint", "make_optimizer", "render_view",
    "save_checkpoint", "scene_meta", "train",
]
