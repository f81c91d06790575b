"""One JSON file describes a prior-training run: data mixture, model, optimization, logging.

Example (``reconfusion train-prior --config run.json --out runs/prior``)::

    {"data": [{"format": "co3d", "path": "/data/co3d", "weight": 3},
              {"format": "realestate", "path": "/data/re10k/train", "frames": "/data/re10k/frames", "weight": 1}],
     "model": {"base_unet": "sd15/unet", "base_vae": "sd15/vae", "base_clip": "clip-vit-h",
               "prediction_type": "v_prediction"},
     "steps": 250000, "batch_size": 8, "grad_accum": 1, "lr": 1e-4, "ema": 0.9999,
     "mixed_precision": "bf16", "checkpoint_every": 5000, "num_workers": 8}

Command-line flags override the file; the resolved config is written to ``OUT/run.json`` and kept in
every saved state. A restarted run uses its saved config (only ``steps`` may grow) and says which
given values differ.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from dataclasses import dataclass, field

from . import config_schema
from .config_schema import MIXED_PRECISION

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    data: list[dict] = field(default_factory=list)  # see reconfusion.prior.sources
    # {"tiny": true} | {"init": DIR} | {"base_unet", "base_vae", "base_clip"}; + "prediction_type", "tiny_latent_size"
    model: dict = field(default_factory=dict)
    steps: int = 250_000  # optimizer steps
    batch_size: int = 8  # examples per process per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 1e-4
    warmup_steps: int = 0  # linear LR warm-up
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global grad norm (0: off)
    ema: float = 0.9999
    mixed_precision: str = "no"
    checkpoint_every: int = 5000
    log_every: int = 50
    seed: int = 0
    views: list[int] | None = None  # [min, max] input views (default [1, prior max_views])
    epoch_size: int | None = None  # examples per epoch (default: every (scene, view) pair once)
    num_workers: int = 4  # DataLoader workers per process (image decoding)
    max_bad_examples: int = 0  # unreadable examples left out (each logged) before the run stops; 0: stop at the first
    device: str = "auto"
    tensorboard: bool = False

    def validate(self, source: str = "run config") -> TrainConfig:
        """Check every field against the schema (:mod:`.config_schema`); all problems in one error."""
        config_schema.check(self.to_dict(), source)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str) -> None:
        from ..safe_io import write_json

        write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: dict, source: str = "run config") -> TrainConfig:
        """A config from a dict, checked as a whole against the schema before it is built."""
        config_schema.check(d, source)
        return cls(**d)

    @classmethod
    def load(cls, path: str) -> TrainConfig:
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read train config {path}: {exc}") from exc
        return cls.from_dict(d, path)


def build_prior(model: dict):
    """The prior a run config's ``model`` entry describes."""
    from .model import ReconFusionPrior

    kw = {"prediction_type": model["prediction_type"]} if "prediction_type" in model else {}
    if model.get("init"):
        return ReconFusionPrior.load(model["init"], **kw)
    if model.get("tiny"):
        return ReconFusionPrior.tiny(latent_size=int(model.get("tiny_latent_size", 16)), **kw)
    if all(model.get(k) for k in ("base_unet", "base_vae", "base_clip")):
        return ReconFusionPrior.from_components(model["base_unet"], model["base_vae"], model["base_clip"], **kw)
    raise ValueError("train-prior: the model needs --init, --tiny, or all of --base-unet/--base-vae/--base-clip")


def resolve_resume(cfg: TrainConfig, out_dir: str) -> tuple[TrainConfig, str | None]:
    """With a saved state in ``out_dir``: (its config, with this command's ``steps``; the saved model
    directory), reporting other differences; else ``(cfg, None)``."""
    from ..safe_io import inside
    from . import checkpoint as ckpt

    info = ckpt.latest(out_dir)
    if info is None:
        return cfg, None
    saved = TrainConfig.from_dict(ckpt.load_train_json(out_dir)["config"])
    diff = {k: (v, getattr(cfg, k)) for k, v in saved.to_dict().items() if k != "steps" and getattr(cfg, k) != v}
    if diff:
        log.warning(
            "resuming %s: the saved run config is used; given values that differ are ignored: %s",
            out_dir,
            ", ".join(f"{k}={new!r} (saved {old!r})" for k, (old, new) in sorted(diff.items())),
        )
    saved.steps = cfg.steps
    return saved, inside(ckpt.state_dir(out_dir, info), "model", what="saved model")


# ----------------------------------------------------------------------------------------- CLI
_FLAGS = {  # flag -> (config key, type, help)
    "--steps": ("steps", int, "optimizer steps (default 250000)"),
    "--batch-size": ("batch_size", int, "examples per process per micro-batch (default 8)"),
    "--grad-accum": ("grad_accum", int, "micro-batches per optimizer step (default 1)"),
    "--lr": ("lr", float, "learning rate (default 1e-4)"),
    "--warmup-steps": ("warmup_steps", int, "linear LR warm-up steps (default 0)"),
    "--ema": ("ema", float, "EMA decay (default 0.9999)"),
    "--mixed-precision": ("mixed_precision", str, "no | bf16 | fp16 (default no)"),
    "--checkpoint-every": ("checkpoint_every", int, "save the full state every N steps (default 5000)"),
    "--log-every": ("log_every", int, "log loss and throughput every N steps (default 50)"),
    "--num-workers": ("num_workers", int, "DataLoader workers per process (default 4)"),
    "--max-bad-examples": (
        "max_bad_examples",
        int,
        "unreadable examples to leave out (each logged) before stopping (default 0: the first one stops the run)",
    ),
    "--epoch-size": ("epoch_size", int, "examples per epoch (default: every (scene, view) once)"),
    "--device": ("device", str, "auto | cpu | cuda (default auto)"),
    "--seed": ("seed", int, "seed of data plans, initial weights and noise (default 0)"),
}


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="reconfusion train-prior", description="train the multiview diffusion prior")
    p.add_argument("scenes", nargs="*", help="scene directories / .npz bundles (any reconfusion loader format)")
    p.add_argument(
        "--out", required=True, help="run directory: state-*/ (resume), ema/, last/, run.json, metrics.jsonl"
    )
    p.add_argument("--config", default=None, help="a JSON run config (flags override it)")
    p.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="FORMAT:PATH[:WEIGHT]",
        help="a data source (co3d, realestate, colmap, zero123, scene); repeatable",
    )
    p.add_argument("--init", default=None, help="a saved prior to fine-tune")
    p.add_argument("--base-unet", default=None, help="local diffusers UNet directory (e.g. SD-1.5/unet)")
    p.add_argument("--base-vae", default=None, help="local diffusers VAE directory")
    p.add_argument("--base-clip", default=None, help="local transformers CLIPVisionModelWithProjection directory")
    p.add_argument("--tiny", action="store_true", help="tiny random prior (smoke tests)")
    p.add_argument(
        "--prediction",
        default=None,
        choices=("epsilon", "v_prediction"),
        help="parameterization (default v_prediction, also on an epsilon base such as SD-1.5)",
    )
    p.add_argument("--downscale", type=float, default=1.0, help="downscale of the positional scenes")
    p.add_argument("--tensorboard", action="store_true", help="also log to OUT/tensorboard (needs tensorboard)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    for flag, (_, typ, hlp) in _FLAGS.items():
        p.add_argument(flag, type=typ, default=None, help=hlp)
    return p


def _data_flag(s: str) -> dict:
    fmt, sep, rest = s.partition(":")
    if not sep or not rest:
        raise ValueError(f"--data must be FORMAT:PATH[:WEIGHT], got {s!r}")
    path, weight = rest, 1.0
    head, _, tail = rest.rpartition(":")
    if head:
        try:
            path, weight = head, float(tail)
        except ValueError:
            pass
    return {"format": fmt, "path": path, "weight": weight}


def config_from_args(args) -> TrainConfig:
    """The config file (if any) with the given flags applied."""
    d = TrainConfig.load(args.config).to_dict() if args.config else TrainConfig().to_dict()
    for flag, (key, _, _) in _FLAGS.items():
        v = getattr(args, flag[2:].replace("-", "_"))
        if v is not None:
            d[key] = v
    data = [_data_flag(s) for s in args.data]
    data += [{"format": "scene", "path": s, "downscale": args.downscale} for s in args.scenes]
    if data:
        d["data"] = data
    model = dict(d["model"])
    for key in ("init", "base_unet", "base_vae", "base_clip"):
        if getattr(args, key):
            model[key] = getattr(args, key)
    if args.tiny:
        model["tiny"] = True
    if args.prediction:
        model["prediction_type"] = args.prediction
    d["model"] = model
    if args.tensorboard:
        d["tensorboard"] = True
    return TrainConfig.from_dict(d)


__all__ = ["MIXED_PRECISION", "TrainConfig", "build_parser", "build_prior", "config_from_args", "resolve_resume"]
