"""Build (JIT, ninja) and load the CUDA extension compiled from ``csrc/``.

Order of preference: an ahead-of-time build installed as ``rfkernels._C`` (``RFKERNELS_BUILD_CUDA=1
pip install --no-build-isolation -e .``), else a JIT build with ``torch.utils.cpp_extension.load``
on first CUDA use, cached under ``$RFKERNELS_CACHE`` (default ``~/.cache/rfkernels``) keyed by a
hash of the sources, torch and CUDA versions. Sources and flags come from ``rfkernels/_build.py``. A
failed build is remembered for the process and its log path is part of the error raised when
``backend="cuda"`` is requested.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import threading
from pathlib import Path

import torch

from . import _build
from ._errors import BackendUnavailableError

CSRC = _build.find_csrc()
_lock = threading.Lock()
_module = None
_error: str | None = None


def _unit_sources(build_dir: Path) -> list[Path]:
    """One file per source, ``<build_dir>/units/<object stem><suffix>``, that includes it from the
    csrc/ root: ``cpp_extension.load`` names objects by file name alone, and every family folder has
    a ``kernels.cu`` and a ``bind.cpp``."""
    units = build_dir / "units"
    units.mkdir(parents=True, exist_ok=True)
    out = []
    for src in _build.sources(CSRC):
        unit = units / f"{_build.object_stem(src, CSRC)}{src.suffix}"
        text = f'#include "{src.relative_to(CSRC).as_posix()}"\n'
        if not unit.is_file() or unit.read_text() != text:
            unit.write_text(text)
        out.append(unit)
    return out


def _cache_dir() -> Path:
    digest = hashlib.sha1()
    for src in _build.sources(CSRC) + _build.headers(CSRC):
        digest.update(src.relative_to(CSRC).as_posix().encode())
        digest.update(src.read_bytes())
    digest.update(torch.__version__.encode())
    digest.update(str(torch.version.cuda).encode())
    root = Path(os.environ.get("RFKERNELS_CACHE", Path.home() / ".cache" / "rfkernels"))
    return root / f"build-{digest.hexdigest()[:16]}"


def _static_reason() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to torch (torch.cuda.is_available() is False)"
    if torch.version.cuda is None:
        return f"this torch build ({torch.__version__}) has no CUDA support; install a CUDA build of torch"
    return None


def _load():
    global _module, _error
    try:
        from . import _C  # type: ignore[attr-defined]  # ahead-of-time build

        _module = _C
        return
    except ImportError:
        pass
    from torch.utils import cpp_extension

    if cpp_extension.CUDA_HOME is None and shutil.which("nvcc") is None:
        _error = "nvcc was not found (set CUDA_HOME or put nvcc on PATH) to JIT-build csrc/"
        return
    build_dir = _cache_dir()
    build_dir.mkdir(parents=True, exist_ok=True)
    log = build_dir / "build.log"
    print(
        f"[rfkernels] building the CUDA extension in {build_dir} (first use only, ~1 min)...",
        file=sys.stderr,
        flush=True,
    )
    try:
        _module = cpp_extension.load(
            name=_build.EXTENSION_NAME,
            sources=[str(s) for s in _unit_sources(build_dir)],
            extra_include_paths=[str(p) for p in _build.include_dirs(CSRC)],
            extra_cflags=list(_build.CXX_FLAGS),
            extra_cuda_cflags=list(_build.NVCC_FLAGS),
            build_directory=str(build_dir),
            verbose=False,
        )
    except Exception as exc:  # compiler errors arrive as RuntimeError with the ninja output
        log.write_text(str(exc))
        _error = f"building the CUDA extension failed; the log is at {log}"


def unavailable_reason() -> str | None:
    """None when the extension is (or can be) loaded; else why not and how to fix it."""
    reason = _static_reason()
    if reason:
        return reason
    with _lock:
        if _module is None and _error is None:
            _load()
    return _error


def module():
    """The loaded extension module (builds it on first call); raises if unavailable."""
    reason = unavailable_reason()
    if reason:
        raise BackendUnavailableError(f"the CUDA backend is unavailable: {reason}")
    return _module
