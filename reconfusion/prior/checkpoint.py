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
"""
from __future__ import annotations

import os
import random
import shutil

import numpy as np
import torch

from ..safe_io import load_safetensors, optimizer_from_flat, optimizer_to_flat, read_json, write_json

LATEST = "latest.json"


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
    from safetensors.torch import save_file

    rank, world = _dist()
    name = f"state-{step:06d}"
    path = os.path.join(out_dir, name)
    if rank == 0:
        if os.path.isdir(path):  # a partial write of this step by an earlier, killed run
            shutil.rmtree(path)
        os.makedirs(path)
    _barrier()
    t, meta = rng_state()
    save_file(t, os.path.join(path, f"rng-rank{rank}.safetensors"))
    write_json(os.path.join(path, f"rng-rank{rank}.json"), meta)
    if rank == 0:
        prior.save(os.path.join(path, "model"))
        save_file({k: v.contiguous() for k, v in ema.shadow.items()}, os.path.join(path, "ema.safetensors"))
        ot, ometa = optimizer_to_flat(opt)
        save_file(ot, os.path.join(path, "optimizer.safetensors"))
        write_json(os.path.join(path, "optimizer.json"), ometa)
        write_json(os.path.join(path, "train.json"), {**train, "step": step, "world_size": world,
                                                        "scaler": scaler.state_dict()})
    _barrier()
    if rank == 0:
        old = latest(out_dir)
        write_json(os.path.join(out_dir, LATEST), {"dir": name, "step": step})
        if old is not None and old["dir"] != name:
            shutil.rmtree(os.path.join(out_dir, old["dir"]), ignore_errors=True)
    _barrier()
    return path


def latest(out_dir: str) -> dict | None:
    """``{"dir", "step"}`` of the newest complete state, or None."""
    p = os.path.join(out_dir, LATEST)
    return read_json(p) if os.path.isfile(p) else None


def load_train_json(out_dir: str) -> dict:
    info = latest(out_dir)
    if info is None:
        raise ValueError(f"no saved training state in {out_dir}")
    return read_json(os.path.join(out_dir, info["dir"], "train.json"))


def load_state(out_dir: str, prior, ema, opt, scaler) -> dict:
    """Restore everything saved by :func:`save_state` into the given objects (the prior's weights in
    place; it must have been built from ``state/model/config.json``); -> the ``train`` dict."""
    from safetensors.torch import load_model

    rank, world = _dist()
    info = latest(out_dir)
    path = os.path.join(out_dir, info["dir"])
    train = read_json(os.path.join(path, "train.json"))
    if train["world_size"] != world:
        raise ValueError(f"{path} was saved by {train['world_size']} processes, this run has {world}: the data "
                         "shards and RNG states would not match (resume with the same number of processes)")
    load_model(prior, os.path.join(path, "model", "model.safetensors"), strict=True)
    for k, v in load_safetensors(os.path.join(path, "ema.safetensors"))[0].items():
        if k not in ema.shadow:
            raise ValueError(f"{path}: EMA entry {k!r} is not a trainable parameter of this prior")
        ema.shadow[k].copy_(v)
    optimizer_from_flat(opt, load_safetensors(os.path.join(path, "optimizer.safetensors"))[0],
                        read_json(os.path.join(path, "optimizer.json")))
    scaler.load_state_dict(train["scaler"])
    set_rng_state(load_safetensors(os.path.join(path, f"rng-rank{rank}.safetensors"))[0],
                  read_json(os.path.join(path, f"rng-rank{rank}.json")))
    return train


__all__ = ["LATEST", "latest", "load_state", "load_train_json", "rng_state", "save_state", "set_rng_state"]
