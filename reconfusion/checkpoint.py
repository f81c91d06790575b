"""Run-folder checkpoints: safetensors tensors + JSON, never a pickle.

``OUT/checkpoint/``:

- ``config.json``: ``{"config": <resolved Config>, "scene": <scene meta>, "step": int}``
- ``model.safetensors``: the model's state dict (float32)
- ``optimizer.safetensors``: optimizer state tensors ``state.<param>.<name>``, the torch RNG
  state ``rng.torch`` (and the ray sampler's ``rng.rays``), and in its JSON metadata the step and
  the optimizer's param groups

Nothing read here is unpickled: a pickle found where a checkpoint file is expected (e.g. the
``optimizer.pt`` older versions wrote) is refused with :class:`CheckpointError`, since loading it
could run arbitrary code.
"""
from __future__ import annotations

import json
import os

import torch

from .config import Config, resolve
from .field.zipnerf import ZipNeRF
from .safe_io import CheckpointError, is_pickle, load_safetensors, optimizer_from_flat, optimizer_to_flat, read_json

CKPT_DIR = "checkpoint"
MODEL_FILE, CONFIG_FILE, STATE_FILE = "model.safetensors", "config.json", "optimizer.safetensors"
LEGACY_STATE_FILE = "optimizer.pt"  # pickled by versions before 0.2: refused, never loaded


def checkpoint_dir(path: str) -> str:
    """Accept the run folder or its ``checkpoint/`` subfolder."""
    if os.path.isfile(os.path.join(path, CONFIG_FILE)):
        return path
    d = os.path.join(path, CKPT_DIR)
    if os.path.isfile(os.path.join(d, CONFIG_FILE)):
        return d
    raise FileNotFoundError(f"no checkpoint in {path} (expected {CKPT_DIR}/{CONFIG_FILE})")


def save_checkpoint(out_dir: str, model: ZipNeRF, cfg: Config, meta: dict, step: int,
                    optimizer: torch.optim.Optimizer | None = None, generator: torch.Generator | None = None) -> str:
    """Write ``out_dir/checkpoint/`` (see the module docstring) -> its path."""
    from safetensors.torch import save_file

    d = os.path.join(out_dir, CKPT_DIR)
    os.makedirs(d, exist_ok=True)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, os.path.join(d, MODEL_FILE))
    with open(os.path.join(d, CONFIG_FILE), "w") as f:
        json.dump({"config": json.loads(cfg.to_json()), "scene": meta, "step": step}, f, indent=2)
    if optimizer is not None:
        save_trainer_state(os.path.join(d, STATE_FILE), optimizer, step, generator)
    return d


def load_checkpoint(path: str, device="cpu", backend: str | None = None) -> tuple[ZipNeRF, Config, dict]:
    """-> (model in eval mode, its config, ``{"scene": meta, "step": step, ...}``).

    ``backend`` (the rfkernels backend the model's ops use) is a choice of this process, not of
    the saved run: it replaces the saved config's.
    """
    d = checkpoint_dir(path)
    info = read_json(os.path.join(d, CONFIG_FILE))
    if not isinstance(info, dict) or "config" not in info or "scene" not in info:
        raise CheckpointError(f"{os.path.join(d, CONFIG_FILE)} lacks 'config' or 'scene'")
    meta = info["scene"]
    cfg = resolve(Config.from_dict(info["config"]), meta["space"]).replace(backend=backend)
    bbox = torch.tensor(meta["bbox"]) if meta.get("bbox") is not None else None
    model = ZipNeRF(cfg, meta["space"], bbox, meta["background"])
    tensors, _ = load_safetensors(os.path.join(d, MODEL_FILE))
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise CheckpointError(f"{os.path.join(d, MODEL_FILE)} does not match its config.json: "
                              f"{str(exc).splitlines()[0]}") from exc
    return model.to(device).eval(), cfg, info


# ------------------------------------------------------------------------------- trainer state
def save_trainer_state(path: str, optimizer: torch.optim.Optimizer, step: int,
                       generator: torch.Generator | None = None) -> None:
    """Optimizer state + torch RNG state (+ ``generator``'s) + step as one safetensors file."""
    from safetensors.torch import save_file

    tensors, flat = optimizer_to_flat(optimizer)
    tensors["rng.torch"] = torch.get_rng_state()
    if generator is not None:
        tensors["rng.rays"] = generator.get_state()
    meta = {"step": str(int(step)), "param_groups": json.dumps(flat["param_groups"]), "scalars": json.dumps(flat["scalars"])}
    save_file(tensors, path, metadata=meta)


def has_trainer_state(ckpt_dir: str) -> bool:
    """True if ``ckpt_dir`` holds a trainer state; a legacy pickled one is refused, not ignored."""
    legacy = os.path.join(ckpt_dir, LEGACY_STATE_FILE)
    if not os.path.isfile(os.path.join(ckpt_dir, STATE_FILE)) and os.path.isfile(legacy):
        raise CheckpointError(f"{legacy} is a pickled optimizer state (older reconfusion): refused "
                              "(unpickling can run arbitrary code); start the run again without --resume")
    return os.path.isfile(os.path.join(ckpt_dir, STATE_FILE))


def load_trainer_state(path: str, optimizer: torch.optim.Optimizer, generator: torch.Generator | None = None) -> int:
    """Restore ``optimizer``, the torch RNG and ``generator`` (if saved) from
    :func:`save_trainer_state`'s file -> the step."""
    tensors, meta = load_safetensors(path)
    try:
        step = int(meta["step"])
        optimizer_from_flat(optimizer, tensors, {"param_groups": json.loads(meta["param_groups"]),
                                                 "scalars": json.loads(meta["scalars"])})
        torch.set_rng_state(tensors["rng.torch"])
        if generator is not None and "rng.rays" in tensors:
            generator.set_state(tensors["rng.rays"])
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is not a reconfusion optimizer state ({exc})") from exc
    return step


__all__ = ["CKPT_DIR", "CONFIG_FILE", "CheckpointError", "MODEL_FILE", "STATE_FILE", "checkpoint_dir",
           "has_trainer_state", "is_pickle", "load_checkpoint", "load_trainer_state", "save_checkpoint",
           "save_trainer_state"]
