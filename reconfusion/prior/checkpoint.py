"""Full training state of the prior, saved atomically as safetensors + JSON (nothing pickled).

Layout of ``OUT/`` (one run)::

    latest.json                    {"dir": "state-000120", "step": 120}: written last, by rename
    state-000120/
      model/                       the prior (config.json + model.safetensors, ReconFusionPrior.load)
      ema.safetensors              EMA shadow of the trainable parameters
      optimizer.safetensors        optimizer state tensors; optimizer.json: the rest (param groups)
      train.json                   step, data position, grad-scaler state, the run's config
      rng-rank{r}.json/.safetensors  every rank's RNG states (torch CPU + CUDA, numpy, python)

A state directory is complete before ``latest.json`` names it (write to a temp file, then
``os.replace``), so a run killed while saving resumes from the previous state; older states are
deleted once the new one is named.

Nothing read from a run folder can point outside it: ``latest.json``'s ``dir`` must be a
``state-<step>`` folder of ``OUT`` itself (not ``../x``, not absolute, not a link out), and every
file read, written or deleted is checked with :func:`~reconfusion.safe_io.inside`.
"""

from __future__ import annotations

import os
import random
import re
import shutil

import numpy as np
import torch

from ..safe_io import (
    CheckpointError,
    check_optimizer_shapes,
    fsync_path,
    inside,
    load_safetensors,
    optimizer_from_flat,
    optimizer_to_flat,
    read_json,
    write_json,
    write_safetensors,
)

LATEST = "latest.json"
STATE_NAME = re.compile(r"state-\d{6,}")


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """This process's RNG states -> (tensors, JSON-able)."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64))
    py = random.getstate()
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(gauss)], "python": [py[0], list(py[1]), py[2]]}
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda.")), key=lambda k: int(k[5:]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    v, state, g = meta["python"]
    random.setstate((v, tuple(state), g))


# ----------------------------------------------------------------------------------- save/load
def _dist():
    d = torch.distributed
    return (d.get_rank(), d.get_world_size()) if d.is_available() and d.is_initialized() else (0, 1)


def _barrier():
    if _dist()[1] > 1:
        torch.distributed.barrier()


def save_state(out_dir: str, step: int, prior, ema, opt, scaler, train: dict) -> str:
    """Collective (every rank calls it): rank 0 writes the model, EMA, optimizer and ``train``
    (JSON-able: data position, config, ...), every rank its RNG states; then ``latest.json``."""
    rank, world = _dist()
    name = f"state-{step:06d}"
    path = inside(out_dir, name, what="state folder")
    if rank == 0:
        if os.path.isdir(path):  # a partial write of this step by an earlier, killed run
            shutil.rmtree(path)
        os.makedirs(path)
    _barrier()
    t, meta = rng_state()
    write_safetensors(os.path.join(path, f"rng-rank{rank}.safetensors"), t)
    write_json(os.path.join(path, f"rng-rank{rank}.json"), meta)
    if rank == 0:
        prior.save(os.path.join(path, "model"))
        write_safetensors(os.path.join(path, "ema.safetensors"), {k: v.contiguous() for k, v in ema.shadow.items()})
        ot, ometa = optimizer_to_flat(opt)
        write_safetensors(os.path.join(path, "optimizer.safetensors"), ot)
        write_json(os.path.join(path, "optimizer.json"), ometa)
        write_json(
            os.path.join(path, "train.json"),
            {**train, "step": step, "world_size": world, "scaler": scaler.state_dict()},
        )
        fsync_path(path)
    _barrier()
    if rank == 0:
        old = latest(out_dir)
        write_json(inside(out_dir, LATEST, what="state index"), {"dir": name, "step": step})
        if old is not None and old["dir"] != name:
            shutil.rmtree(state_dir(out_dir, old), ignore_errors=True)
    _barrier()
    return path


def latest(out_dir: str) -> dict | None:
    """``{"dir", "step"}`` of the newest complete state, or None (no ``latest.json``). A
    ``latest.json`` that is not ``{"dir": "state-<digits>", "step": int >= 0}`` naming a folder inside
    ``out_dir`` raises :class:`~reconfusion.safe_io.CheckpointError`."""
    p = inside(out_dir, LATEST, what="state index")
    if not os.path.lexists(p):
        return None
    info = read_json(p)
    if not isinstance(info, dict) or "dir" not in info or "step" not in info:
        raise CheckpointError(f'{p} must be an object with "dir" and "step", got {_short(info)}')
    name, step = info["dir"], info["step"]
    if not isinstance(name, str) or not STATE_NAME.fullmatch(name):
        raise CheckpointError(f'{p}: "dir" must name a state-<step> folder of {out_dir}, got {_short(name)}')
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f'{p}: "step" must be an integer >= 0, got {_short(step)}')
    state_dir(out_dir, info)
    return {"dir": name, "step": step}


def state_dir(out_dir: str, info: dict) -> str:
    """The state folder ``latest.json`` names, checked to lie inside ``out_dir``."""
    return inside(out_dir, info["dir"], what="state folder")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def load_train_json(out_dir: str) -> dict:
    info = latest(out_dir)
    if info is None:
        raise CheckpointError(f"no saved training state in {out_dir}")
    return read_json(inside(state_dir(out_dir, info), "train.json", what="state file"))


def load_state(out_dir: str, prior, ema, opt, scaler) -> dict:
    """Restore everything saved by :func:`save_state` into the given objects (the prior's weights in
    place; it must have been built from ``state/model/config.json``); -> the ``train`` dict."""
    rank, world = _dist()
    info = latest(out_dir)
    if info is None:
        raise CheckpointError(f"no saved training state in {out_dir}")
    path = state_dir(out_dir, info)

    def file(*parts):
        return inside(path, *parts, what="state file")

    train = read_json(file("train.json"))
    if train.get("world_size") != world:
        raise CheckpointError(
            f"{path} was saved by {train.get('world_size')} processes, this run has {world}: the "
            "data shards and RNG states would not match (resume with the same number of processes)"
        )
    _load_model(prior, file("model", "model.safetensors"))
    for k, v in _load_matching({k: t for k, t in ema.shadow.items()}, file("ema.safetensors"), "EMA").items():
        ema.shadow[k].copy_(v)
    flat = load_safetensors(file("optimizer.safetensors"))[0]
    check_optimizer_shapes(opt, flat, file("optimizer.safetensors"), "this prior", "a state of another prior size")
    optimizer_from_flat(opt, flat, read_json(file("optimizer.json")))
    scaler.load_state_dict(train["scaler"])
    set_rng_state(load_safetensors(file(f"rng-rank{rank}.safetensors"))[0], read_json(file(f"rng-rank{rank}.json")))
    return train


def _load_matching(
    expected: dict[str, torch.Tensor], path: str, what: str, exact: bool = True
) -> dict[str, torch.Tensor]:
    """Tensors of ``path`` after checking their names and shapes against ``expected`` (a state of
    another prior size is refused before anything is copied). ``exact``: no name may be missing
    (a model file may omit tensors that share storage with another one)."""
    tensors = load_safetensors(path)[0]
    missing = sorted(set(expected) - set(tensors)) if exact else []
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{path}: the {what} state is not of this prior (missing {missing[:3]}, unexpected {extra[:3]})"
        )
    for k, t in tensors.items():
        if tuple(t.shape) != tuple(expected[k].shape):
            raise CheckpointError(
                f"{path}: {what} tensor {k!r} has shape {list(t.shape)}, this prior's run config "
                f"gives {list(expected[k].shape)} (a state of another prior size)"
            )
    return tensors


def _load_model(prior, path: str) -> None:
    from safetensors.torch import load_model

    _load_matching(prior.state_dict(), path, "model", exact=False)
    try:
        load_model(prior, path, strict=True)
    except RuntimeError as exc:  # missing tensors: the first line of torch's report is enough
        raise CheckpointError(f"{path}: not a model of this prior ({str(exc).splitlines()[0]})") from exc


__all__ = ["LATEST", "latest", "load_state", "load_train_json", "rng_state", "save_state", "set_rng_state", "state_dir"]
