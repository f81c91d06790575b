"""The optimization loop: the training objective (:mod:`.losses`: every term behind one
interface), the learning-rate schedule, checkpoints (:mod:`.checkpoint`: safetensors + JSON) and
resume, and per-step callbacks (periodic evaluation, probes).

The diffusion prior's sample loss is one more :class:`~reconfusion.losses.LossTerm` (see
:func:`reconfusion.prior.sample_loss.prior_loss_term`); so is any term of the user's::

    def my_term(ctx):               # e.g. render a novel view and compare it with something
        out = ctx.render(ctx.scene.camera_rays(pose, intr, pixels))
        return (out.rgb - target).abs().mean()

    train(scene, cfg, extra_terms=[LossTerm("mine", my_term, weight=0.1, every=10)])

The whole run uses ``cfg.backend`` for every rfkernels op (``rfkernels.use_backend``, entered once).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

import torch

import rfkernels

from .checkpoint import (
    STATE_FILE,
    checkpoint_dir,
    load_checkpoint,
    load_trainer_state,
    resumable_checkpoint,
    save_checkpoint,
)
from .config import Config, resolve
from .data.scene import Scene
from .evaluation import periodic_evaluation
from .field.zipnerf import ZipNeRF
from .losses import LossContext, LossTerm, config_terms
from .metrics import psnr_from_mse
from .rays import RayBundle
from .unseen import unseen_patches


# ------------------------------------------------------------------------------- schedule
def learning_rate(step: int, cfg: Config) -> float:
    """Log-linear decay ``lr_init -> lr_final`` with Zip-NeRF's sine warm-up over ``warmup_steps``."""
    t = min(max(step / max(cfg.iterations, 1), 0.0), 1.0)
    lr = math.exp(math.log(cfg.lr_init) * (1 - t) + math.log(cfg.lr_final) * t)
    if cfg.warmup_steps > 0:
        lr *= 1e-8 + (1 - 1e-8) * math.sin(0.5 * math.pi * min(step / cfg.warmup_steps, 1.0))
    return lr


def build_model(cfg: Config, scene: Scene) -> ZipNeRF:
    """The model for ``scene``, with ``cfg`` resolved for its space: the one place a config meets a
    scene (:func:`reconfusion.config.resolve`); ``model.cfg`` is the resolved config."""
    return ZipNeRF(resolve(cfg, scene.space), scene.space, scene.bbox, scene.background)


def scene_meta(scene: Scene, data: dict | None = None) -> dict:
    """What a checkpoint needs to rebuild the model and its evaluation split."""
    return {
        "space": scene.space,
        "background": scene.background,
        "name": scene.name,
        "bbox": scene.bbox.tolist() if scene.bbox is not None else None,
        "train_ids": list(scene.train_ids),
        "test_ids": list(scene.test_ids),
        "data": data or {},
    }


# ------------------------------------------------------------------------------- training
LOG_EVERY = 10  # steps between history records (and the last step)
VALIDATE = ("first", "always")


def log_record(step: int, lr: float, total, rgb, target, losses: dict, ctx, active) -> dict:
    """The history record of a logged step: ``step, loss, psnr, lr``, each weighted loss, then each
    gradient-only term's weighted ``log_fn`` value. Every tensor among them is read back in one
    device-to-host transfer (one sync instead of one per value)."""
    mse = (rgb.detach().float() - target.float()).square().mean()
    rec = {"step": step, "loss": total, "psnr": mse, "lr": lr}
    rec.update(losses)
    rec.update({t.name: t.weight * t.log_fn(ctx) for t in active if t.log_fn is not None})
    keys = [k for k, v in rec.items() if isinstance(v, torch.Tensor)]
    if keys:
        host = torch.stack([rec[k].detach().reshape(()).double() for k in keys]).tolist()
        rec.update({k: v for k, v in zip(keys, host)})
    rec["loss"], rec["psnr"] = float(rec["loss"]), psnr_from_mse(rec["psnr"])  # loss: 0 without active terms
    return rec


def make_optimizer(model: ZipNeRF, cfg: Config) -> torch.optim.Adam:
    return torch.optim.Adam(model.parameters(), lr=cfg.lr_init, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps)


def check_backend(backend: str | None, device) -> None:
    """Raise ``rfkernels.BackendUnavailableError`` if an explicitly chosen backend cannot run on ``device``."""
    if backend in (None, "auto"):
        return
    available = rfkernels.available_backends(device)
    if backend not in available:
        raise rfkernels.BackendUnavailableError(
            f"backend {backend!r} cannot run on {torch.device(device)} here (available: {', '.join(available)})"
        )


def config_differences(saved: Config, mine: Config, space: str) -> list[str]:
    """Top-level keys where ``mine`` (resolved for ``space`` as :func:`build_model` would) differs from
    ``saved`` (a checkpoint's resolved config), ``backend`` excluded, with values."""
    a, b = json.loads(saved.to_json()), json.loads(resolve(mine, space).to_json())
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
        return self._upload_rays(rays), self._upload(self.colors[idx])

    def batch(self, n: int, gen: torch.Generator, terms) -> tuple[RayBundle, torch.Tensor, dict]:
        """A step's ``n`` rays and colours: the pixels the active ``terms`` ask for (``rays_fn``) after
        ``n`` minus their count random ones; ``{term name: slice of its rows}``."""
        wanted = [(t.name, t.rays_fn()) for t in terms if t.rays_fn is not None]
        extra = sum(len(r) for _, (r, _) in wanted)
        if extra >= n:
            raise ValueError(f"config `batch_rays` ({n}) must exceed the {extra} rays the loss terms add per step")
        rays, colors = self.sample(n - extra, gen)
        rows, bundles, targets, start = {}, [rays], [colors], n - extra
        for name, (r, c) in wanted:
            rows[name] = slice(start, start + len(r))
            bundles.append(self._upload_rays(r))
            targets.append(self._upload(c))
            start += len(r)
        if not wanted:
            return rays, colors, rows
        return RayBundle.cat(bundles), torch.cat(targets), rows

    def unseen(self, n_patches: int, patch: int, gen: torch.Generator) -> RayBundle:
        """Rays of ``n_patches`` patches from viewpoints between the training cameras."""
        return self._upload_rays(unseen_patches(self.scene, self.c2w, self.intr, n_patches, patch, gen))

    def _upload(self, t: torch.Tensor) -> torch.Tensor:
        """A host tensor on the loop's device; to CUDA from pinned memory without waiting for the
        copy (a pageable copy would wait for the device: a host sync per batch)."""
        return t.pin_memory().to(self.device, non_blocking=True) if self.device.type == "cuda" else t.to(self.device)

    def _upload_rays(self, rays: RayBundle) -> RayBundle:
        return RayBundle(**{f.name: self._upload(getattr(rays, f.name)) for f in fields(rays)})


@dataclass
class StepInfo:
    """What a per-step callback sees, after the optimizer step of ``iteration``."""

    iteration: int
    model: ZipNeRF
    scene: Scene
    config: Config
    device: torch.device
    losses: dict  # name -> weighted loss tensor of this step
    history: list  # the logged records so far


def train(
    scene: Scene,
    cfg: Config,
    out_dir: str | None = None,
    *,
    device="cpu",
    resume: bool = False,
    extra_terms: Sequence[LossTerm] = (),
    callbacks: Sequence[Callable[[StepInfo], None]] = (),
    progress_bar: bool = True,
    data_info: dict | None = None,
    log: Callable[[str], None] = print,
    validate: str = "first",
) -> TrainResult:
    """Optimize a :class:`ZipNeRF` on ``scene.train_ids`` for ``cfg.iterations`` steps.

    ``cfg`` is resolved for the scene by :func:`build_model` (spacing, warm-up capped at a tenth of
    the run) and the run uses the model's resolved config; ``cfg.backend`` must be able to run on
    ``device`` and is every
    rfkernels op's backend for the run. The objective is ``config_terms(cfg)`` then ``extra_terms``
    (:class:`~reconfusion.losses.LossTerm`); ``callbacks`` run after every optimizer step (with
    ``cfg.eval_every``, a periodic held-out evaluation is the first).
    With ``out_dir``: checkpoints every ``cfg.checkpoint_every`` steps and at the end. ``resume``
    continues from ``out_dir``'s checkpoint (model, optimizer, RNG states, step) with the *saved* config,
    as if never interrupted: keys where ``cfg`` differs are logged once and ignored (except ``backend``,
    a choice of this process).
    ``validate``: ``"first"`` runs rfkernels' value checks (``rfkernels.validation_enabled()``) in
    the first iteration only, then turns them off for the rest of the loop (they read the data: a
    host sync per op on a GPU); ``"always"`` keeps the process-wide setting throughout. The
    setting is restored when training returns.
    """
    if validate not in VALIDATE:
        raise ValueError(f"`validate` must be one of {VALIDATE}, got {validate!r}")
    if not scene.train_ids:
        raise ValueError("scene has no training views: call select_views first")
    device = torch.device(device)
    check_backend(cfg.backend, device)
    validating = rfkernels.validation_enabled()
    try:
        with rfkernels.use_backend(cfg.backend):
            return _train(
                scene, cfg, out_dir, device, resume, extra_terms, callbacks, progress_bar, data_info, log, validate
            )
    finally:
        rfkernels.set_validation(validating)


def _train(
    scene, cfg, out_dir, device, resume, extra_terms, callbacks, progress_bar, data_info, log, validate
) -> TrainResult:
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    meta = scene_meta(scene, data_info)
    warmup = resolve(cfg, scene.space).warmup_steps  # as build_model will cap it (a resume keeps the saved one)
    if warmup != cfg.warmup_steps:
        log(f"warmup_steps {cfg.warmup_steps} -> {warmup} (capped at a tenth of {cfg.iterations} iterations)")
    start, ckpt = 0, resumable_checkpoint(out_dir) if resume and out_dir else None
    if resume and out_dir and ckpt is None:
        log(f"resume: no checkpoint with a trainer state in {out_dir}: training from scratch")
    if ckpt:
        model, saved, _ = load_checkpoint(ckpt, device, backend=cfg.backend)
        differ = config_differences(saved, cfg, scene.space)
        if differ:
            log(f"resuming with the config saved in {ckpt}; ignoring your differing key(s): {', '.join(differ)}")
        cfg = saved
        model.train()
        opt = make_optimizer(model, cfg)
        start = load_trainer_state(os.path.join(ckpt, STATE_FILE), opt, gen)
        log(f"resumed from {out_dir} at step {start}")
    else:
        model = build_model(cfg, scene).to(device)
        cfg = model.cfg
        opt = make_optimizer(model, cfg)
    terms = [*config_terms(cfg, scene, out_dir, log), *extra_terms]
    callbacks = [periodic_evaluation(cfg.eval_every, log), *callbacks] if cfg.eval_every else list(callbacks)
    pool = _RayPool(scene, device)
    history, t0 = [], time.time()
    model.train()
    bar = tqdm(
        range(start, cfg.iterations),
        disable=not progress_bar,
        dynamic_ncols=True,
        initial=start,
        total=cfg.iterations,
        desc="reconstruct",
    )
    for step in bar:
        lr = learning_rate(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        progress = step / max(cfg.iterations, 1)
        active = [t for t in terms if t.active(step)]
        rays, target, rows = pool.batch(cfg.batch_rays, gen, active)
        out = model(rays, progress=progress)
        ctx = LossContext(
            model,
            scene,
            step,
            cfg,
            device,
            progress,
            out,
            target,
            unseen_rays=lambda n, p: pool.unseen(n, p, gen),
            extras={"rows": rows},
            rays=rays,
        )
        losses = {}
        for term in active:
            value = term.compute(ctx)
            if value is not None:
                losses[term.name] = term.weight * value
        total = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        total.backward()
        for term in active:
            term.add_grad(ctx)
        if cfg.grad_max_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_max_norm)
        opt.step()
        if step == start and validate == "first":  # the first iteration passed the value checks
            rfkernels.set_validation(False)
        if step % LOG_EVERY == 0 or step == cfg.iterations - 1:
            rec = log_record(step, lr, total, out.rgb, target, losses, ctx, active)
            history.append(rec)
            bar.set_postfix(loss=f"{rec['loss']:.4f}", psnr=f"{rec['psnr']:.2f}")
        info = StepInfo(step, model, scene, cfg, device, losses, history)
        for callback in callbacks:
            callback(info)
        done = step + 1
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


__all__ = [
    "StepInfo",
    "TrainResult",
    "build_model",
    "check_backend",
    "checkpoint_dir",
    "config_differences",
    "learning_rate",
    "load_checkpoint",
    "make_optimizer",
    "save_checkpoint",
    "scene_meta",
    "train",
]
