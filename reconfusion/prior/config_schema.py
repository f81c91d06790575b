"""The typed schema of ``train-prior``'s run config: every key's type and range, checked as a whole
before anything runs.

:func:`problems` lists every problem of a config dict (unknown keys, wrong types, values out of
range; ``true`` is not an integer, ``"0.9"`` is not a number), one line each; :func:`check` raises
one ``ValueError`` that lists them all on one line (the CLI prints one line).
"""

from __future__ import annotations

import math
import re

MIXED_PRECISION = ("no", "bf16", "fp16")
DATA_FORMATS = ("co3d", "realestate", "colmap", "zero123", "scene")
PREDICTION_TYPES = ("epsilon", "v_prediction")
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _int(lo: int):
    return lambda v: None if _is_int(v) and v >= lo else f"must be an integer >= {lo}"


def _number(lo: float, hi: float | None = None, lo_open: bool = False, hi_open: bool = True):
    def check(v):
        ok = _is_number(v) and (v > lo if lo_open else v >= lo) and (hi is None or (v < hi if hi_open else v <= hi))
        if ok:
            return None
        left, right = "(" if lo_open else "[", ")" if hi_open or hi is None else "]"
        return f"must be a number in {left}{lo}, {'inf' if hi is None else hi}{right}"

    return check


def _one_of(options):
    return lambda v: None if isinstance(v, str) and v in options else f"must be one of {list(options)}"


def _optional(check):
    return lambda v: None if v is None else check(v)


def _bool(v):
    return None if isinstance(v, bool) else "must be true or false"


def _string(v):
    return None if isinstance(v, str) and v else "must be a non-empty string"


def _strings(v):
    return None if isinstance(v, list) and all(isinstance(s, str) for s in v) else "must be a list of strings"


def _views(v):
    if v is None or (isinstance(v, list) and len(v) == 2 and all(_is_int(x) for x in v) and 1 <= v[0] <= v[1]):
        return None
    return "must be null or [min, max] integers with 1 <= min <= max"


def _device(v):
    return None if isinstance(v, str) and DEVICE.fullmatch(v) else "must be auto, cpu, cuda or cuda:<index>"


DATA_ENTRY = {
    "format": _one_of(DATA_FORMATS),
    "weight": _number(0, lo_open=True),
    "frames": _string,
    "sequences": _strings,
    "categories": _strings,
    "downscale": _number(0, lo_open=True),
    "name": _string,
    "path": lambda v: (
        None
        if (isinstance(v, str) and v) or (isinstance(v, list) and v and not _strings(v))
        else "must be a path or a non-empty list of paths"
    ),
}
MODEL = {
    "tiny": _bool,
    "init": _string,
    "base_unet": _string,
    "base_vae": _string,
    "base_clip": _string,
    "prediction_type": _one_of(PREDICTION_TYPES),
    "tiny_latent_size": _int(1),
}
TOP = {
    "steps": _int(1),
    "batch_size": _int(1),
    "grad_accum": _int(1),
    "lr": _number(0, lo_open=True),
    "warmup_steps": _int(0),
    "weight_decay": _number(0),
    "grad_clip": _number(0),
    "ema": _number(0, 1),
    "mixed_precision": _one_of(MIXED_PRECISION),
    "checkpoint_every": _int(1),
    "log_every": _int(1),
    "seed": _int(0),
    "views": _views,
    "epoch_size": _optional(_int(1)),
    "num_workers": _int(0),
    "max_bad_examples": _int(0),
    "device": _device,
    "tensorboard": _bool,
}


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_object(d, spec: dict, where: str, required=()) -> list[str]:
    out = [
        f"`{where}{k}`: unknown train config key (known: {', '.join(sorted(spec))})" for k in sorted(set(d) - set(spec))
    ]
    out += [f"`{where}{k}` is required" for k in required if k not in d]
    for k, check in spec.items():
        if k in d and (msg := check(d[k])) is not None:
            out.append(f"`{where}{k}` {msg}, got {_short(d[k])}")
    return out


def problems(d) -> list[str]:
    """Every problem of a run-config dict (``data``, ``model`` and the keys of :data:`TOP`)."""
    if not isinstance(d, dict):
        return [f"the run config must be a JSON object, got {type(d).__name__}"]
    out = _check_object({k: v for k, v in d.items() if k not in ("data", "model")}, TOP, "")
    data = d.get("data", [])
    if not isinstance(data, list):
        out.append(f"`data` must be a list of data entries, got {_short(data)}")
    else:
        for i, entry in enumerate(data):
            if not isinstance(entry, dict):
                out.append(f"`data[{i}]` must be an object, got {_short(entry)}")
            else:
                out += _check_object(entry, DATA_ENTRY, f"data[{i}].", required=("format", "path"))
    model = d.get("model", {})
    if not isinstance(model, dict):
        out.append(f"`model` must be an object, got {_short(model)}")
    else:
        out += _check_object(model, MODEL, "model.")
    return out


def check(d, source: str = "run config") -> None:
    """Raise one ``ValueError`` listing every problem of ``d`` (on one line), if any."""
    found = problems(d)
    if found:
        n = len(found)
        raise ValueError(f"{source}: {n} problem{'s' if n > 1 else ''}: " + "; ".join(found))


__all__ = ["DATA_FORMATS", "MIXED_PRECISION", "check", "problems"]
