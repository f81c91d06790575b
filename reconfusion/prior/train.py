"""Training the prior: the loss, EMA, the resumable (DDP-aware) loop and ``reconfusion train-prior``.

One example = a target view + 1..``max_views`` input views of one scene (:mod:`.dataset`). The loss
is the diffusion loss (epsilon or v) on VAE latents of the target plus ``photometric_weight`` x MSE
between PixelNeRF's RGB and the target downsampled to latent size. Input images are zeroed with
probability ``cond_drop_prob`` (classifier-free guidance); the VAE and CLIP are frozen.

The run is one JSON config (:class:`~reconfusion.prior.run_config.TrainConfig`, written to
``OUT/run.json``). Every ``checkpoint_every`` steps and on SIGTERM the full state is saved
(:mod:`.checkpoint`); the same command restarted continues from it, bit-for-bit on the CPU.

Multi-process: ``torchrun --nproc_per_node N [--nnodes ...] -m reconfusion train-prior ...`` (one
process per GPU, NCCL; gloo on CPUs). Each rank reads its own shard of every epoch; gradients are
all-reduced by DDP (once per optimizer step with gradient accumulation).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..safe_io import check_writable_dir, inside
from . import checkpoint as ckpt
from .examples import batch_cameras, square_resize  # noqa: F401 (re-exported)
from .model import ReconFusionPrior
from .run_config import TrainConfig

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------- loss
def prior_loss(
    prior: ReconFusionPrior, batch: dict, generator: torch.Generator | None = None, stratified: bool = True
) -> tuple[torch.Tensor, dict]:
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
    """Exponential moving average of the trainable parameters (float32 shadow)."""

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


def trainable_parameters(prior: ReconFusionPrior) -> list[nn.Parameter]:
    return [p for p in prior.parameters() if p.requires_grad]


# ------------------------------------------------------------------------------ stop on SIGTERM
class StopFlag:
    """Set by SIGTERM (and SIGINT if asked); ranks agree on it each step (any rank stops all)."""

    def __init__(self, signals=(signal.SIGTERM,)):
        self.flag, self._old = False, {}
        if hasattr(signal, "SIGTERM"):
            for s in signals:
                try:
                    self._old[s] = signal.signal(s, self._set)
                except ValueError:  # not the main thread: no handler, never set
                    pass

    def _set(self, signum, frame):
        self.flag = True

    def agreed(self, device) -> bool:
        if _world() > 1:
            t = torch.tensor([float(self.flag)], device=device)
            torch.distributed.all_reduce(t)
            return bool(t.item() > 0)
        return self.flag

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def _world() -> int:
    d = torch.distributed
    return d.get_world_size() if d.is_available() and d.is_initialized() else 1


def _rank() -> int:
    d = torch.distributed
    return d.get_rank() if d.is_available() and d.is_initialized() else 0


# ---------------------------------------------------------------------------------------- loop
@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)  # this invocation's steps
    step: int = 0  # the last completed step
    interrupted: bool = False  # stopped by SIGTERM (state saved)
    resumed_from: int | None = None


class Throughput:
    """examples/s, s/step and the fraction of time spent waiting for data, over a logging window."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.t0, self.wait, self.steps, self.examples = time.perf_counter(), 0.0, 0, 0

    def summary(self) -> dict:
        dt = max(time.perf_counter() - self.t0, 1e-9)
        return {
            "examples_per_s": self.examples / dt,
            "s_per_step": dt / max(self.steps, 1),
            "data_wait": self.wait / dt,
        }


def _metrics_writer(out_dir: str | None, tensorboard: bool):
    if not out_dir or _rank() != 0:
        return None, None
    tb = None
    if tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ValueError("tensorboard logging needs the `tensorboard` package (pip install tensorboard)") from exc
        tb = SummaryWriter(inside(out_dir, "tensorboard", what="log folder"))
    return open(inside(out_dir, "metrics.jsonl", what="metrics file"), "a"), tb


def train_prior(
    prior: ReconFusionPrior,
    dataset,
    cfg: TrainConfig,
    out_dir: str | None = None,
    device="cpu",
    on_step=None,
    progress_bar: bool = False,
) -> TrainResult:
    """Train ``prior`` in place on ``dataset`` (:class:`~reconfusion.prior.dataset.PriorExamples`)
    up to ``cfg.steps`` optimizer steps; resumes from ``out_dir``'s saved state when there is one.

    ``on_step(step, batches, loss)`` is called on every rank after every optimizer step with the
    micro-batches it consumed. Checkpoints: ``out_dir/state-*`` (resume), ``out_dir/ema`` and
    ``out_dir/last`` (saved priors) at every checkpoint and at the end.
    """
    from tqdm import tqdm

    from .batches import batch_stream

    cfg.validate()
    device = torch.device(device)
    rank, world = _rank(), _world()
    prior.to(device).train()
    module = _TrainModule(prior)
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        module = nn.parallel.DistributedDataParallel(module, device_ids=ids)
    params = trainable_parameters(prior)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = EMA(prior, cfg.ema)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.mixed_precision)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.mixed_precision == "fp16")
    res = TrainResult()
    batches = 0
    if out_dir and rank == 0:
        os.makedirs(out_dir, exist_ok=True)
    if out_dir and ckpt.latest(out_dir) is not None:
        train = ckpt.load_state(out_dir, prior, ema, opt, scaler)
        res.step = res.resumed_from = train["step"]
        batches = train["batches"]
        if rank == 0:
            log.info("resumed from %s at step %d", out_dir, res.step)
            # a kill between a state and its exports leaves them older than the state: export again
            _export_priors(out_dir, prior, ema)
    dataset.set_position(0, 0)
    dataset.set_position(*dataset.position_after(batches))
    start_batches = batches
    metrics, tb = _metrics_writer(out_dir, cfg.tensorboard)
    stop = StopFlag()
    meter = Throughput()
    bar = tqdm(
        total=cfg.steps, initial=res.step, disable=not progress_bar or rank != 0, dynamic_ncols=True, desc="train-prior"
    )
    workers = contextlib.ExitStack()
    try:
        stream = workers.enter_context(
            batch_stream(dataset, cfg.num_workers, cfg.max_bad_examples, pin_memory=device.type == "cuda")
        )
        while res.step < cfg.steps:
            step = res.step + 1
            for g in opt.param_groups:
                g["lr"] = cfg.lr * min(1.0, step / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
            total, used = 0.0, []
            for micro in range(cfg.grad_accum):
                t_wait = time.perf_counter()
                batch = stream.next_batch()
                meter.wait += time.perf_counter() - t_wait
                used.append(batch)
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                sync = world == 1 or micro == cfg.grad_accum - 1
                with (
                    contextlib.nullcontext() if sync else module.no_sync(),
                    torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None),
                ):
                    loss, parts = module(batch)
                scaler.scale(loss / cfg.grad_accum).backward()
                total += float(loss.detach()) / cfg.grad_accum
            scaler.unscale_(opt)
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            ema.update(prior)
            batches = start_batches + stream.consumed
            res.step = step
            res.losses.append(total)
            meter.steps += 1
            meter.examples += sum(len(b["example"]) for b in used) * world
            bar.update(1)
            if on_step is not None:
                on_step(step, used, total)
            if step % cfg.log_every == 0 or step == 1 or step == cfg.steps:
                _log(step, cfg, total, parts, meter, metrics, tb, bar)
            interrupted = stop.agreed(device)
            if out_dir and (step % cfg.checkpoint_every == 0 or step == cfg.steps or interrupted):
                _checkpoint(out_dir, step, batches, prior, ema, opt, scaler, cfg, dataset)
            if interrupted:
                res.interrupted = True
                if rank == 0:
                    log.warning("SIGTERM: state saved at step %d; run the same command to continue", step)
                break
    finally:
        workers.close()  # reaped, also after an error
        stop.restore()
        bar.close()
        if metrics is not None:
            metrics.close()
        if tb is not None:
            tb.close()
    return res


def _log(step, cfg, loss, parts, meter, metrics, tb, bar) -> None:
    if _rank() != 0:
        return
    rec = {
        "step": step,
        "loss": loss,
        "diffusion": float(parts["diffusion"]),
        "photometric": float(parts["photometric"]),
        **meter.summary(),
    }
    msg = (
        f"step {step}/{cfg.steps} loss {loss:.4f} (diffusion {rec['diffusion']:.4f} photometric "
        f"{rec['photometric']:.4f}) | {rec['examples_per_s']:.2f} examples/s (all ranks), "
        f"{rec['s_per_step']:.3f} s/step, data wait {100 * rec['data_wait']:.0f}%"
    )
    log.info(msg)
    bar.set_postfix(loss=f"{loss:.4f}", ex_s=f"{rec['examples_per_s']:.1f}")
    if metrics is not None:
        metrics.write(json.dumps(rec) + "\n")
        metrics.flush()
    if tb is not None:
        for k, v in rec.items():
            if k != "step":
                tb.add_scalar(k, v, step)
    meter.reset()


def _checkpoint(out_dir, step, batches, prior, ema, opt, scaler, cfg, dataset) -> None:
    ckpt.save_state(
        out_dir,
        step,
        prior,
        ema,
        opt,
        scaler,
        {"batches": batches, "data_position": list(dataset.position_after(0)), "config": cfg.to_dict()},
    )
    if _rank() == 0:
        _export_priors(out_dir, prior, ema)


def _export_priors(out_dir, prior, ema) -> None:
    """The plain saved priors for use (``reconstruct --prior OUT/ema``), derived from the state."""
    prior.save(_saved_prior_dir(out_dir, "last"))
    ema_prior = copy.deepcopy(prior)
    ema.copy_to(ema_prior)
    ema_prior.save(_saved_prior_dir(out_dir, "ema"))


def _saved_prior_dir(out_dir: str, name: str) -> str:
    """``out_dir/name`` and the files a saved prior writes there, all checked to stay inside ``out_dir``."""
    from .model import CONFIG_NAME, WEIGHTS_NAME

    for f in (CONFIG_NAME, WEIGHTS_NAME):
        inside(out_dir, name, f, what="saved prior")
    return inside(out_dir, name, what="saved prior")


# ----------------------------------------------------------------------------------------- CLI
def build_parser(p=None):
    from .run_config import build_parser as _build

    return _build(p)


def init_distributed(device_arg: str) -> torch.device:
    """Process group from torchrun's environment (NCCL on CUDA, gloo on CPU) -> this rank's device."""
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device_arg == "auto" else device_arg)
    if "LOCAL_RANK" in os.environ and not torch.distributed.is_initialized():  # launched by torchrun
        local = int(os.environ["LOCAL_RANK"])
        if device.type == "cuda":
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def run(args) -> int:
    from .dataset import PriorExamples
    from .run_config import build_prior, config_from_args, resolve_resume
    from .sources import build_sources

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = config_from_args(args)
    check_writable_dir(args.out, "--out")  # before any work: a run that cannot save is refused now
    device = init_distributed(cfg.device)
    try:
        rank = _rank()
        os.makedirs(args.out, exist_ok=True)
        cfg, saved_model = resolve_resume(cfg, args.out)
        if rank == 0:
            cfg.save(inside(args.out, "run.json", what="run config"))
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        prior = ReconFusionPrior.load(saved_model) if saved_model else build_prior(cfg.model)
        torch.manual_seed(cfg.seed + 1000 * rank)  # per-rank noise / dropout streams
        views = tuple(cfg.views) if cfg.views else (1, prior.cfg.max_views)
        dataset = PriorExamples(
            build_sources(cfg.data), prior.cfg.image_size, cfg.batch_size, views, cfg.seed, epoch_size=cfg.epoch_size
        )
        res = train_prior(prior, dataset, cfg, args.out, device, progress_bar=not args.no_progress)
        if rank == 0:
            print(
                f"train-prior: step {res.step}/{cfg.steps}" + (" (interrupted, state saved)" if res.interrupted else "")
            )
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


def main(argv=None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
