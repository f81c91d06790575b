"""Reading and writing run state without pickles: safetensors + JSON, atomic JSON writes, and the
optimizer state flattened into tensors + JSON. Shared by the reconstruction checkpoints
(:mod:`reconfusion.checkpoint`) and the prior's training state (:mod:`reconfusion.prior.checkpoint`).

Nothing read here is unpickled: a pickle found where a safetensors file is expected is refused with
:class:`CheckpointError`, since loading it could run arbitrary code.
"""

from __future__ import annotations

import json
import os
import zipfile

import torch


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, not safetensors/JSON, or a (refused) pickle."""


class OutputError(OSError):
    """An output location that cannot be written: found before any work starts."""


def check_writable_dir(path: str, flag: str = "--out") -> str:
    """Prove, before any work, that the folder ``path`` can be written: a probe file is created and
    removed in it, or, while it does not exist yet, in its nearest existing parent (so a refused
    command leaves no folder behind; modes alone do not tell, root ignores them) -> ``path``;
    :class:`OutputError` naming ``flag`` otherwise."""
    import tempfile

    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"{flag} {path} is an existing file; give a folder for the results")
    base = os.path.abspath(path)
    while not os.path.exists(base):
        base = os.path.dirname(base)
    where = (
        f"{flag} {path} is not writable"
        if base == os.path.abspath(path)
        else f"{flag} {path} cannot be created: {base} is not a writable folder"
    )
    if not os.path.isdir(base):
        raise OutputError(f"{flag} {path} cannot be created: {base} is a file")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=base)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise OutputError(f"{where} ({exc.strerror or exc})") from None
    return path


def is_pickle(path: str) -> bool:
    """True for a raw pickle (protocol >= 2) or a ``torch.save`` zip archive (holds ``*.pkl``)."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:] == b"{" and int.from_bytes(head[:8], "little") <= os.path.getsize(path):
        return False  # a safetensors header (its length, then JSON) whose length may begin 0x80 0x02..0x05
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return any(n.endswith(".pkl") for n in z.namelist())
    return False


def load_safetensors(path: str) -> tuple[dict[str, torch.Tensor], dict]:
    """-> (tensors on CPU, metadata); a clear :class:`CheckpointError` for anything else."""
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file missing: {path}")
    if is_pickle(path):
        raise CheckpointError(f"{path} is a pickle, not safetensors: refused (unpickling can run arbitrary code)")
    try:
        with safe_open(path, framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - SafetensorError and I/O errors: the file is unusable
        raise CheckpointError(f"{path} is truncated or not a safetensors file ({exc})") from exc


def read_json(path: str):
    """JSON from ``path``; :class:`CheckpointError` if it is missing, truncated or not JSON."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file missing: {path}")
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is truncated or not JSON ({exc})") from exc


def write_json(path: str, obj) -> None:
    """Write ``obj`` to ``path`` atomically (a fresh temp file beside it, fsync, rename). The temp file
    is created exclusively, so a link planted under a predictable name is never followed."""
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)  # the mode open() would give: others may read a shared run folder
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_safetensors(path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_file`` made durable (fsync) and given the run folder's file mode
    (:data:`FILE_MODE`: safetensors creates its files 0600, unreadable to the other users of a shared
    run folder). Not atomic by itself: write into a folder that is published afterwards."""
    from safetensors.torch import save_file

    save_file(tensors, path, metadata=metadata)
    os.chmod(path, FILE_MODE)
    fsync_path(path)


def fsync_path(path: str) -> None:
    """Flush a file's or a folder's entries to disk (a folder: so the renames in it survive a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_read_umask()  # what open() gives a new file; the umask is read once, at import
# (setting it is process-wide, so not at every write)


def inside(root: str, *parts: str, what: str = "path") -> str:
    """``os.path.join(root, *parts)`` once it is checked to resolve (links followed) inside ``root``.

    Every path a run reads from its own files (``latest.json``'s ``dir``, ...) or writes under its
    output folder goes through this, so a hostile run folder cannot make a program read, write or
    delete anywhere else: ``../x``, absolute paths and links pointing out raise :class:`CheckpointError`.
    """
    path = os.path.join(root, *parts)
    base = os.path.realpath(root)
    real = os.path.realpath(path)
    if real != base and os.path.commonpath([base, real]) != base:
        raise CheckpointError(f"{what} {path} resolves to {real}, outside {root}: refused")
    return path


def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """``opt.state_dict()`` -> (tensors ``{"state.<param>.<key>": t}``, JSON-able rest:
    ``{"param_groups": [...], "scalars": {"<param>.<key>": value}}``)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def check_optimizer_shapes(
    opt: torch.optim.Optimizer, flat: dict[str, torch.Tensor], path: str, whose: str, other: str
) -> None:
    """Every ``state.<param>.<key>`` tensor of ``flat`` (:func:`optimizer_to_flat`) must name a parameter
    of ``opt``, and a param-shaped moment must have that parameter's shape; ``whose`` ("this prior")
    and ``other`` ("a state of another prior size") word the :class:`CheckpointError`."""
    params = [p for g in opt.param_groups for p in g["params"]]
    for name, t in flat.items():
        parts = name.split(".", 2)
        if len(parts) != 3 or parts[0] != "state" or not parts[1].isdigit():
            raise CheckpointError(f"{path}: unexpected optimizer entry {name!r}")
        pid = int(parts[1])
        if pid >= len(params):
            raise CheckpointError(f"{path}: optimizer state for parameter {pid}, {whose} has {len(params)}")
        if t.dim() > 0 and tuple(t.shape) != tuple(params[pid].shape):
            raise CheckpointError(
                f"{path}: optimizer tensor {name!r} has shape {list(t.shape)}, parameter {pid} "
                f"of {whose} is {list(params[pid].shape)} ({other})"
            )


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Inverse of :func:`optimizer_to_flat` (other keys in ``tensors`` are ignored); tuples such as
    Adam's ``betas`` come back as tuples so a resumed run is bit-identical."""
    state: dict[int, dict] = {}
    for name, t in tensors.items():
        if name.startswith("state."):
            _, pid, k = name.split(".", 2)
            state.setdefault(int(pid), {})[k] = t
    for name, v in meta["scalars"].items():
        pid, k = name.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    groups = [
        {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
        for g in meta["param_groups"]
    ]
    opt.load_state_dict({"state": state, "param_groups": groups})


__all__ = [
    "FILE_MODE",
    "CheckpointError",
    "OutputError",
    "check_optimizer_shapes",
    "check_writable_dir",
    "fsync_path",
    "inside",
    "is_pickle",
    "load_safetensors",
    "optimizer_from_flat",
    "optimizer_to_flat",
    "read_json",
    "sha256_file",
    "write_json",
    "write_safetensors",
]
