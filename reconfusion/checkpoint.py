"""Run-folder checkpoints: safetensors tensors + JSON, never a pickle, written as one atomic set.

``OUT/checkpoint/`` (the newest complete checkpoint):

- ``model.safetensors``: the model's state dict (float32)
- ``optimizer.safetensors``: optimizer state tensors ``state.<param>.<name>``, the torch RNG
  state ``rng.torch`` (and the ray sampler's ``rng.rays``), and in its JSON metadata the optimizer's
  param groups
- ``config.json``: ``{"config": <resolved Config>, "scene": <scene meta>, "step": int, "run_id": str,
  "files": {<file>: <sha256>}}``, the set's manifest

Every file carries the run id and the step (safetensors metadata ``run_id`` / ``step``; config.json
fields), and config.json the sha256 of the other files: a set mixed from two runs or two steps, a file
of other shapes, or tensor bytes overwritten after the write are refused with a
:class:`CheckpointError` naming the file. The run id is drawn once per training run (the first save
of a model) and kept across resumes.

Atomicity (a directory-rename scheme; no pointer file): a checkpoint is written into
``OUT/checkpoint.partial/`` (every file fsynced, then the folder), then published by two renames,
``checkpoint`` -> ``checkpoint.previous`` and ``checkpoint.partial`` -> ``checkpoint`` (then ``OUT``
is fsynced and ``checkpoint.previous`` deleted). ``checkpoint/`` and ``checkpoint.previous/`` are
only ever complete sets, and one of them exists once the first save is done, so a run killed at any
point of a save resumes from the new checkpoint or the previous one; a left-over ``checkpoint.partial``
is discarded by the next save. Every path is checked with :func:`~reconfusion.safe_io.inside`: a run
folder whose checkpoint names are links leading out of it is refused, never followed.

Nothing read here is unpickled: a pickle found where a checkpoint file is expected (e.g. the
``optimizer.pt`` older versions wrote) is refused with :class:`CheckpointError`, since loading it
could run arbitrary code.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import weakref

import torch

from .config import Config
from .field.zipnerf import ZipNeRF
from .safe_io import (
    CheckpointError,
    check_optimizer_shapes,
    fsync_path,
    inside,
    is_pickle,
    load_safetensors,
    optimizer_from_flat,
    optimizer_to_flat,
    read_json,
    sha256_file,
    write_json,
    write_safetensors,
)

CKPT_DIR = "checkpoint"
PARTIAL_DIR, PREVIOUS_DIR = CKPT_DIR + ".partial", CKPT_DIR + ".previous"
MODEL_FILE, CONFIG_FILE, STATE_FILE = "model.safetensors", "config.json", "optimizer.safetensors"
LEGACY_STATE_FILE = "optimizer.pt"  # pickled by versions before 0.2: refused, never loaded

_RUN_IDS: weakref.WeakKeyDictionary[torch.nn.Module, str] = weakref.WeakKeyDictionary()  # model -> its run


def checkpoint_dir(path: str) -> str:
    """Accept the run folder (-> its ``checkpoint/``, or ``checkpoint.previous/`` when a save was
    killed between its two renames) or a checkpoint folder itself."""
    if os.path.isfile(os.path.join(path, CONFIG_FILE)):
        return path
    for name in (CKPT_DIR, PREVIOUS_DIR):
        d = inside(path, name, what="checkpoint folder")
        if os.path.isfile(os.path.join(d, CONFIG_FILE)):
            return d
    raise FileNotFoundError(f"no checkpoint in {path} (expected {CKPT_DIR}/{CONFIG_FILE})")


def resumable_checkpoint(out_dir: str) -> str | None:
    """The checkpoint folder ``train(resume=True)`` continues from, or None (no checkpoint, or one
    saved without a trainer state); a legacy pickled state is refused, not ignored."""
    try:
        d = checkpoint_dir(out_dir)
    except FileNotFoundError:
        return None
    return d if has_trainer_state(d) else None


def save_checkpoint(
    out_dir: str,
    model: ZipNeRF,
    cfg: Config,
    meta: dict,
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    generator: torch.Generator | None = None,
) -> str:
    """Write ``out_dir/checkpoint/`` atomically (see the module docstring) -> its path."""
    final = inside(out_dir, CKPT_DIR, what="checkpoint folder")
    partial = inside(out_dir, PARTIAL_DIR, what="checkpoint folder")
    previous = inside(out_dir, PREVIOUS_DIR, what="checkpoint folder")
    run_id = _RUN_IDS.setdefault(model, uuid.uuid4().hex)
    stamp = {"run_id": run_id, "step": str(int(step))}
    if os.path.lexists(partial):  # a save killed part-way: never published, so never read
        _remove(partial)
    os.makedirs(partial)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    write_safetensors(os.path.join(partial, MODEL_FILE), tensors, stamp)
    files = [MODEL_FILE]
    if optimizer is not None:
        save_trainer_state(os.path.join(partial, STATE_FILE), optimizer, step, generator, run_id)
        files.append(STATE_FILE)
    write_json(
        os.path.join(partial, CONFIG_FILE),
        {
            "config": json.loads(cfg.to_json()),
            "scene": meta,
            "step": int(step),
            "run_id": run_id,
            "files": {f: sha256_file(os.path.join(partial, f)) for f in files},
        },
    )
    fsync_path(partial)
    if os.path.isdir(final):
        if os.path.lexists(previous):  # ``final`` is complete: the older set is no longer needed
            _remove(previous)
        os.rename(final, previous)
    os.rename(partial, final)
    fsync_path(out_dir)
    if os.path.lexists(previous):
        _remove(previous)
    return final


def _remove(path: str) -> None:
    """Delete a checkpoint folder of our own (a link is unlinked, never followed)."""
    if os.path.islink(path) or not os.path.isdir(path):
        os.remove(path)
    else:
        shutil.rmtree(path)


def load_checkpoint(path: str, device="cpu", backend: str | None = None) -> tuple[ZipNeRF, Config, dict]:
    """-> (model in eval mode, its config, ``{"scene": meta, "step": step, "run_id": id, ...}``).

    The set is verified first (:func:`read_manifest`; the model's tensor shapes against the config,
    all finite). ``backend`` (the rfkernels backend the model's ops use) is a choice of this process,
    not of the saved run: it replaces the saved config's.
    """
    d = checkpoint_dir(path)
    info = read_manifest(d)
    meta = info["scene"]
    try:
        cfg = Config.from_dict(info["config"]).replace(backend=backend)  # saved resolved (build_model)
        bbox = torch.tensor(meta["bbox"]) if meta.get("bbox") is not None else None
        model = ZipNeRF(cfg, meta["space"], bbox, meta["background"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{os.path.join(d, CONFIG_FILE)}: its 'scene' lacks or mistypes {exc}") from exc
    model_file = _set_file(d, MODEL_FILE, info)
    tensors, _ = load_safetensors(model_file)
    expected = model.state_dict()
    for name, t in tensors.items():
        if name in expected and tuple(t.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{model_file}: tensor {name!r} has shape {list(t.shape)}, its config.json gives "
                f"{list(expected[name].shape)}"
            )
    _check_finite(tensors, model_file)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise CheckpointError(f"{model_file} does not match its config.json: {str(exc).splitlines()[0]}") from exc
    _RUN_IDS[model] = info["run_id"]  # a resumed run keeps its id
    return model.to(device).eval(), cfg, info


def read_manifest(ckpt_dir: str) -> dict:
    """``config.json`` of a checkpoint folder after checking that every file of the set is this
    run's at this step (metadata) and unchanged since the write (sha256) -> its content."""
    cfg_path = inside(ckpt_dir, CONFIG_FILE, what="checkpoint file")
    info = read_json(cfg_path)
    if not isinstance(info, dict) or "config" not in info or "scene" not in info:
        raise CheckpointError(f"{cfg_path} lacks 'config' or 'scene'")
    run_id, step, files = info.get("run_id"), info.get("step"), info.get("files")
    if (
        not isinstance(run_id, str)
        or isinstance(step, bool)
        or not isinstance(step, int)
        or not isinstance(files, dict)
    ):
        raise CheckpointError(
            f"{cfg_path} lacks its run id, step or file list (written by a reconfusion before 0.3, "
            "or not a checkpoint): start the run again without --resume"
        )
    for name in (MODEL_FILE, STATE_FILE):
        path = inside(ckpt_dir, name, what="checkpoint file")
        if name not in files:
            if os.path.lexists(path):
                raise CheckpointError(f"{path} is not listed in {cfg_path}: not part of this checkpoint")
            continue
        _, meta = load_safetensors(path)  # a truncated or pickled file is named first
        if (meta.get("run_id"), meta.get("step")) != (run_id, str(step)):
            raise CheckpointError(
                f"{path} is from run {meta.get('run_id')} step {meta.get('step')}, {cfg_path} "
                f"from run {run_id} step {step}: files of different checkpoints, refused"
            )
        if sha256_file(path) != files[name]:
            raise CheckpointError(f"{path} was changed after it was saved (its sha256 differs from {cfg_path})")
    return info


def _set_file(ckpt_dir: str, name: str, info: dict) -> str:
    path = inside(ckpt_dir, name, what="checkpoint file")
    if name not in info["files"]:
        raise CheckpointError(f"checkpoint file missing: {path}")
    return path


def _check_finite(tensors: dict[str, torch.Tensor], path: str) -> None:
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{path}: tensor {name!r} holds NaN or inf values")


# ------------------------------------------------------------------------------- trainer state
def save_trainer_state(
    path: str, optimizer: torch.optim.Optimizer, step: int, generator: torch.Generator | None = None, run_id: str = ""
) -> None:
    """Optimizer state + torch RNG state (+ ``generator``'s) + step + run id as one safetensors file."""
    tensors, flat = optimizer_to_flat(optimizer)
    tensors["rng.torch"] = torch.get_rng_state()
    if generator is not None:
        tensors["rng.rays"] = generator.get_state()
    meta = {
        "step": str(int(step)),
        "run_id": run_id,
        "param_groups": json.dumps(flat["param_groups"]),
        "scalars": json.dumps(flat["scalars"]),
    }
    write_safetensors(path, tensors, meta)


def has_trainer_state(ckpt_dir: str) -> bool:
    """True if ``ckpt_dir`` holds a trainer state; a legacy pickled one is refused, not ignored."""
    legacy = os.path.join(ckpt_dir, LEGACY_STATE_FILE)
    if not os.path.isfile(os.path.join(ckpt_dir, STATE_FILE)) and os.path.isfile(legacy):
        raise CheckpointError(
            f"{legacy} is a pickled optimizer state (older reconfusion): refused "
            "(unpickling can run arbitrary code); start the run again without --resume"
        )
    return os.path.isfile(os.path.join(ckpt_dir, STATE_FILE))


def load_trainer_state(path: str, optimizer: torch.optim.Optimizer, generator: torch.Generator | None = None) -> int:
    """Restore ``optimizer``, the torch RNG and ``generator`` (if saved) from
    :func:`save_trainer_state`'s file once its tensors are checked to fit ``optimizer``'s parameters
    and to be finite -> the step. (That the file belongs to its checkpoint's set is checked by
    :func:`load_checkpoint`, which a resume calls first.)"""
    tensors, meta = load_safetensors(path)
    state = {k: t for k, t in tensors.items() if k.startswith("state.")}
    check_optimizer_shapes(optimizer, state, path, "this model", "an optimizer of another model or grid size")
    _check_finite(state, path)
    try:
        step = int(meta["step"])
        optimizer_from_flat(
            optimizer,
            tensors,
            {"param_groups": json.loads(meta["param_groups"]), "scalars": json.loads(meta["scalars"])},
        )
        torch.set_rng_state(tensors["rng.torch"])
        if generator is not None and "rng.rays" in tensors:
            generator.set_state(tensors["rng.rays"])
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is not a reconfusion optimizer state ({exc})") from exc
    return step


__all__ = [
    "CKPT_DIR",
    "CONFIG_FILE",
    "CheckpointError",
    "MODEL_FILE",
    "PARTIAL_DIR",
    "PREVIOUS_DIR",
    "STATE_FILE",
    "checkpoint_dir",
    "has_trainer_state",
    "is_pickle",
    "load_checkpoint",
    "load_trainer_state",
    "read_manifest",
    "resumable_checkpoint",
    "save_checkpoint",
    "save_trainer_state",
]
