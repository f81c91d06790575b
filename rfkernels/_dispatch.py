"""Backend choice: ``"auto" | "torch" | "triton" | "cuda"``, availability, and clear errors.

``auto`` resolves to ``cuda`` when the compiled extension is available and the tensors live on a
CUDA device, else ``triton`` for CUDA tensors, else ``torch``. The process-wide default comes from
:func:`set_backend` or the ``RFKERNELS_BACKEND`` environment variable.

Triton kernels also run on CPU tensors when ``TRITON_INTERPRET=1`` is set *before* ``rfkernels``
is imported (this is how CI checks them); ``auto`` never picks the interpreter.
"""
from __future__ import annotations

import functools
import importlib.util
import os

import torch

BACKENDS = ("auto", "torch", "triton", "cuda")
_default_backend = os.environ.get("RFKERNELS_BACKEND", "auto")


class BackendUnavailableError(RuntimeError):
    """Raised when a backend was asked for explicitly but cannot run here; says why and how to fix."""


def set_backend(backend: str) -> None:
    """Set the process-wide default backend used when an op is called with ``backend=None``."""
    global _default_backend
    _validate_name(backend)
    _default_backend = backend


def get_backend() -> str:
    """The process-wide default backend (``"auto"`` unless changed)."""
    return _default_backend


def _validate_name(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def triton_interpreter() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=None)
def _triton_import_error() -> str | None:
    if importlib.util.find_spec("triton") is None:
        return "the `triton` package is not installed (pip install 'triton>=3.6')"
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the environment
        return f"`import triton` failed: {exc}"
    return None


def triton_unavailable_reason(device: torch.device) -> str | None:
    """None if Triton kernels can run on ``device``, else the reason why not."""
    err = _triton_import_error()
    if err:
        return err
    if device.type == "cuda":
        return None
    if device.type == "cpu" and triton_interpreter():
        return None
    return (
        f"Triton kernels need CUDA tensors (got {device.type} tensors); on CPU they run only in "
        "the interpreter: set TRITON_INTERPRET=1 before importing rfkernels"
    )


def cuda_unavailable_reason(device: torch.device) -> str | None:
    """None if the CUDA extension can run on ``device``, else the reason why not."""
    if device.type != "cuda":
        return f"the CUDA backend needs CUDA tensors (got {device.type} tensors)"
    from . import _cuda_ext

    return _cuda_ext.unavailable_reason()


def _device_of(tensors) -> torch.device:
    for t in tensors:
        if isinstance(t, torch.Tensor):
            return t.device
    return torch.device("cpu")


def resolve_backend(backend: str | None, *tensors) -> str:
    """Return the concrete backend (``torch``/``triton``/``cuda``) for these tensors.

    Raises :class:`BackendUnavailableError` when an explicitly requested backend cannot run.
    """
    backend = _default_backend if backend is None else backend
    _validate_name(backend)
    device = _device_of(tensors)
    if backend == "auto":
        if device.type == "cuda":
            if cuda_unavailable_reason(device) is None:
                return "cuda"
            if triton_unavailable_reason(device) is None:
                return "triton"
        return "torch"
    if backend == "triton":
        reason = triton_unavailable_reason(device)
    elif backend == "cuda":
        reason = cuda_unavailable_reason(device)
    else:
        reason = None
    if reason is not None:
        raise BackendUnavailableError(f"backend={backend!r} is unavailable: {reason}")
    return backend


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """Concrete backends that can run on ``device`` in this process."""
    device = torch.device(device)
    out = ["torch"]
    if triton_unavailable_reason(device) is None:
        out.append("triton")
    if device.type == "cuda" and cuda_unavailable_reason(device) is None:
        out.append("cuda")
    return out
