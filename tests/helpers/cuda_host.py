"""Host emulation of CUDA backends: compiles tests/rfkernels/<family>/host.cu with nvcc into a shared
library whose functions run the kernels' per-ray (or per-point) bodies in a CPU loop, and exposes
them with the same signatures as ``rfkernels/<family>/cuda.py``. This tests the CUDA arithmetic on
machines without a GPU; launch configuration and atomics are only exercised on a real GPU. Include path
and C++ flags are the extension's (``rfkernels/_build.py``: ``HOST_FLAGS``, ``include_dirs``)."""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from rfkernels import _build

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
_cache: dict[str, ctypes.CDLL] = {}


def nvcc_missing_reason() -> str | None:
    return None if shutil.which("nvcc") else "nvcc not found"


def load(family: str) -> ctypes.CDLL:
    """Build (once per source hash) and load tests/rfkernels/<family>/host.cu (csrc/ on the include path)."""
    if family in _cache:
        return _cache[family]
    src = TESTS / "rfkernels" / family / "host.cu"
    digest = hashlib.sha1(src.read_bytes())
    csrc = ROOT / "csrc"
    for f in _build.sources(csrc) + _build.headers(csrc):
        digest.update(f.relative_to(csrc).as_posix().encode() + b"\0" + f.read_bytes())
    flags = [*_build.HOST_FLAGS, *(f"-I{d}" for d in _build.include_dirs(csrc))]
    digest.update("\0".join(flags).encode())
    out = Path(tempfile.gettempdir()) / f"rfk_host_{family}_{digest.hexdigest()[:12]}.so"
    if not out.exists():
        tmp = out.with_suffix(".tmp.so")
        cmd = ["nvcc", *flags, "-shared", "-Xcompiler", "-fPIC", str(src), "-o", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"nvcc failed for {src}:\n{proc.stderr}")
        tmp.rename(out)
    _cache[family] = ctypes.CDLL(str(out))
    return _cache[family]


def ptr(t):
    """Raw pointer of a contiguous CPU tensor, or NULL for None/empty."""
    if t is None or t.numel() == 0:
        return ctypes.c_void_p(0)
    assert t.is_contiguous() and t.device.type == "cpu"
    return ctypes.c_void_p(t.data_ptr())
