"""Backend choice and the implementation registry: the one place a backend name becomes code.

Names: ``"auto" | "torch" | "triton" | "cuda"``. ``auto`` resolves to ``cuda`` when the compiled
extension is available and the tensors live on a CUDA device, else ``triton`` for CUDA tensors,
else ``torch``; for meta tensors (shapes, no data) to a fused backend, whose registered operator's
fake implementation gives the output shapes of every layout (:mod:`rfkernels._operators`).
The process-wide default comes from :func:`set_backend` or the ``RFKERNELS_BACKEND`` environment
variable. Triton kernels also run on CPU tensors when ``TRITON_INTERPRET=1`` is set
*before* ``rfkernels`` is imported (this is how CI checks them); ``auto`` never picks the interpreter.

Registry. Each op family makes one call, at the end of its ``__init__.py``::

    _dispatch.register_family("volrend", VolrendKernels, torch=Reference(), fused=Fused,
                              triton="rfkernels.volrend.triton", cuda="rfkernels.volrend.cuda")

- ``VolrendKernels`` is the family's contract: a ``typing.Protocol`` listing the forward/backward
  functions (and their signatures) every fused backend provides; ``triton``/``cuda`` name modules
  (imported on first use) or objects that satisfy it (checked when first loaded).
- ``torch`` is the family's op-level reference implementation (differentiated by autograd);
  ``fused(kernels, backend_name)`` wraps a contract implementation into the same op-level interface (the
  family's ``torch.autograd.Function`` classes live there).
- The family's public functions validate, then call ``implementation(family, backend, *tensors)``
  and use what it returns; they never compare backend names.

:func:`register` adds or replaces one fused backend (``override=True`` to replace);
:func:`registered` does the same for a ``with`` block and restores the previous entry (tests use it
to plug in the CUDA host emulation, with ``available=`` saying on which devices it runs).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import importlib
import importlib.util
import os
import typing
from collections.abc import Callable
from typing import Any

import torch

from . import _cuda_ext
from ._errors import BackendUnavailableError

BACKENDS = ("auto", "torch", "triton", "cuda")
FUSED = ("triton", "cuda")
_default_backend = os.environ.get("RFKERNELS_BACKEND", "auto")
# use_backend's scoped choice: a ContextVar, so threads and asyncio tasks each see their own scope
_scoped_backend: contextvars.ContextVar[str | None] = contextvars.ContextVar("rfkernels_backend", default=None)

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "available_backends",
    "families",
    "fused_kernels",
    "get_backend",
    "implementation",
    "register",
    "register_family",
    "registered",
    "resolve_backend",
    "set_backend",
    "use_backend",
]


def set_backend(backend: str) -> None:
    """Set the process-wide default backend used when an op is called with ``backend=None``."""
    global _default_backend
    _validate_name(backend)
    _preload(backend)
    _default_backend = backend


def get_backend() -> str:
    """The backend an op called with ``backend=None`` uses: the innermost :func:`use_backend` scope,
    else the process-wide default (``"auto"`` unless changed by :func:`set_backend` or
    ``$RFKERNELS_BACKEND``)."""
    scoped = _scoped_choice()
    return _default_backend if scoped is None else scoped


@torch.compiler.assume_constant_result
def _scoped_choice() -> str | None:
    """The innermost :func:`use_backend` choice. Dynamo cannot trace ``ContextVar.get``: while compiling,
    the choice in effect is read once and baked into the graph (a backend is fixed per compiled graph)."""
    return _scoped_backend.get()


@contextlib.contextmanager
def use_backend(backend: str | None):
    """``with rfkernels.use_backend("triton"): ...``: every op called with ``backend=None`` inside the
    block (in this thread or task) uses ``backend``; nested scopes restore the outer one on exit.
    ``None`` leaves the current choice in place (so a caller can pass an optional setting through)."""
    if backend is None:
        yield
        return
    _validate_name(backend)
    _preload(backend)
    token = _scoped_backend.set(backend)
    try:
        yield
    finally:
        _scoped_backend.reset(token)


def _preload(backend: str) -> None:
    """Load ``backend``'s kernels of every family now instead of on first use: ``torch.compile``
    cannot import a module while it traces, so a model compiled inside ``use_backend("triton")`` finds
    them loaded. A backend that cannot be imported here is left to fail on use, with its reason."""
    for fam in _FAMILIES.values() if backend in FUSED else ():
        if backend in fam.backends:
            with contextlib.suppress(ImportError):
                _adapted(fam, backend)


def _validate_name(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


# ----------------------------------------------------------------------------------- availability
def triton_interpreter() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.cache
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
    if device.type in ("cuda", "meta"):  # meta: the registered operator's fake implementation runs
        return None
    if device.type == "cpu" and triton_interpreter():
        return None
    return (
        f"Triton kernels need CUDA tensors (got {device.type} tensors); on CPU they run only in "
        "the interpreter: set TRITON_INTERPRET=1 before importing rfkernels"
    )


def cuda_unavailable_reason(device: torch.device) -> str | None:
    """None if the CUDA extension can run on ``device``, else the reason why not."""
    if device.type == "meta":  # shapes only: the registered operator's fake implementation runs
        return None
    if device.type != "cuda":
        return f"the CUDA backend needs CUDA tensors (got {device.type} tensors)"
    return _cuda_ext.unavailable_reason()


_DEFAULT_AVAILABILITY: dict[str, Callable[[torch.device], str | None]] = {
    "triton": triton_unavailable_reason,
    "cuda": cuda_unavailable_reason,
}


def _device_of(tensors) -> torch.device:
    for t in tensors:
        if isinstance(t, torch.Tensor):
            return t.device
    return torch.device("cpu")


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """Concrete backends that can run on ``device`` in this process."""
    device = torch.device(device)
    out = ["torch"]
    if triton_unavailable_reason(device) is None:
        out.append("triton")
    if device.type == "cuda" and cuda_unavailable_reason(device) is None:
        out.append("cuda")
    return out


# --------------------------------------------------------------------------------------- registry
@dataclasses.dataclass
class _Entry:
    """One fused backend of one family: its kernels (a module path until first use) and where it runs."""

    kernels: Any  # an object satisfying the family contract, or a module path imported on first use
    available: Callable[[torch.device], str | None]
    adapted: Any = None  # family.fused(kernels, name), built on first use
    adapted_kernels: Any = None  # the loaded contract object behind `adapted`


@dataclasses.dataclass
class _Family:
    name: str
    contract: type  # typing.Protocol of the fused forward/backward functions
    torch: Any  # op-level reference implementation
    fused: Callable[[Any, str], Any]  # (kernels, backend name) -> op-level implementation
    backends: dict[str, _Entry] = dataclasses.field(default_factory=dict)


_FAMILIES: dict[str, _Family] = {}


def _check_fused_name(backend: str) -> None:
    if backend not in FUSED:
        raise ValueError(f"fused backends are {FUSED} (`torch` is the family's reference), got {backend!r}")


def register_family(name: str, contract: type, *, torch: Any, fused: Callable[[Any, str], Any], **kernels: Any) -> None:
    """Declare op family ``name``: its contract (a Protocol), its reference implementation, the adapter
    that turns contract implementations into op-level ones, and its fused backends
    (``triton=..., cuda=...``: module paths or objects). Re-registering a family replaces it."""
    _FAMILIES[name] = _Family(name, contract, torch, fused)
    for backend, impl in kernels.items():
        register(name, backend, impl, override=True)


def _family(name: str) -> _Family:
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown op family {name!r}; registered: {sorted(_FAMILIES)}") from None


def register(
    family: str,
    backend: str,
    kernels: Any,
    *,
    available: Callable[[torch.device], str | None] | None = None,
    override: bool = False,
) -> None:
    """Register ``kernels`` (an object or module path satisfying the family contract) as ``backend``
    (``"triton"`` or ``"cuda"``) of ``family``. ``available(device)`` returns None when it can run on
    ``device``, else the reason (default: the backend's usual requirements). Replacing an existing
    entry needs ``override=True``."""
    fam = _family(family)
    _check_fused_name(backend)
    if backend in fam.backends and not override:
        raise ValueError(f"{family!r} already has a {backend!r} backend; pass override=True to replace it")
    fam.backends[backend] = _Entry(kernels, available or _DEFAULT_AVAILABILITY[backend])


@contextlib.contextmanager
def registered(
    family: str, backend: str, kernels: Any, *, available: Callable[[torch.device], str | None] | None = None
):
    """``register(..., override=True)`` for the duration of a ``with`` block, then restore."""
    fam = _family(family)
    previous = fam.backends.get(backend)
    register(family, backend, kernels, available=available, override=True)
    try:
        yield
    finally:
        if previous is None:
            fam.backends.pop(backend, None)
        else:
            fam.backends[backend] = previous


def _missing_members(obj: Any, contract: type) -> list[str]:
    names = [n for n in vars(contract) if not n.startswith("_")]
    names += [n for n in typing.get_type_hints(contract) if n not in names]
    return [n for n in names if not hasattr(obj, n)]


def _adapted(fam: _Family, backend: str) -> Any:
    entry = fam.backends[backend]
    if entry.adapted is None:
        kernels = importlib.import_module(entry.kernels) if isinstance(entry.kernels, str) else entry.kernels
        missing = _missing_members(kernels, fam.contract)
        if missing:
            raise TypeError(
                f"{fam.name} backend {backend!r} ({kernels!r}) does not satisfy "
                f"{fam.contract.__name__}: missing {missing}"
            )
        entry.adapted = fam.fused(kernels, backend)
        entry.adapted_kernels = kernels
    return entry.adapted


def fused_kernels(family: str, backend: str) -> Any:
    """The contract object registered as fused ``backend`` of ``family`` (loaded on first use). The
    registered torch operators (:mod:`rfkernels._operators`) take the backend as a string argument
    and turn it into kernels here, so :func:`registered` replacements reach them too."""
    fam = _family(family)
    _check_fused_name(backend)
    if backend not in fam.backends:
        raise BackendUnavailableError(f"the {family!r} op family has no {backend!r} implementation registered")
    _adapted(fam, backend)
    return fam.backends[backend].adapted_kernels


def _reason(fam: _Family | None, backend: str, device: torch.device) -> str | None:
    if fam is None:
        return _DEFAULT_AVAILABILITY[backend](device)
    if backend not in fam.backends:
        return f"the {fam.name!r} op family has no {backend!r} implementation registered"
    return fam.backends[backend].available(device)


def resolve_backend(backend: str | None, *tensors, family: str | None = None) -> str:
    """Return the concrete backend (``torch``/``triton``/``cuda``) for these tensors.

    Raises ``ValueError`` for an unknown name and :class:`BackendUnavailableError` when an
    explicitly requested backend cannot run (for ``family``'s registered implementations if given).
    """
    backend = get_backend() if backend is None else backend
    _validate_name(backend)
    fam = _family(family) if family is not None else None
    device = _device_of(tensors)
    if backend == "auto":
        if device.type == "meta" and fam is not None:  # shapes of every layout from a fused op's fake
            for name in FUSED:
                if name in fam.backends:
                    return name
        if device.type == "cuda":
            for name in ("cuda", "triton"):
                if _reason(fam, name, device) is None:
                    return name
        return "torch"
    if backend == "torch":
        return backend
    reason = _reason(fam, backend, device)
    if reason is not None:
        raise BackendUnavailableError(f"backend={backend!r} is unavailable: {reason}")
    return backend


def implementation(family: str, backend: str | None, *tensors) -> Any:
    """The op-level implementation of ``family`` for ``backend`` on the device of ``tensors``:
    the family's reference for ``torch``, its fused adapter around the registered kernels otherwise.
    Raises like :func:`resolve_backend`."""
    name = resolve_backend(backend, *tensors, family=family)
    fam = _family(family)
    return fam.torch if name == "torch" else _adapted(fam, name)


def families() -> list[str]:
    """Names of the registered op families, in registration order (``import rfkernels`` registers
    every family); scripts and benchmarks read them here instead of listing them."""
    return list(_FAMILIES)
