"""How the CUDA extension is built, written once for every build of ``csrc/``.

Read by setup.py (ahead-of-time build, ``RFKERNELS_BUILD_CUDA=1``), the JIT loader
(``rfkernels/_cuda_ext.py``), CI's build against the GPU machines' torch (``.ci/build_ext.py``), the
compile check (``.ci/compile_csrc.sh``, through ``python rfkernels/_build.py <what>``) and the host
emulation of the tests (``tests/helpers/cuda_host.py``).

Torch-free and free of package imports: setup.py loads this file by path, so a plain
``pip install -e .`` never imports torch (``rfkernels/__init__`` does).

Layout of ``csrc/`` (the include root: every ``#include "..."`` is relative to it):
``common/`` (device helpers, binding helpers, ``bindings.cpp`` = the module definition) and one folder
per op family with ``kernels.h`` (torch-free launchers), ``kernels.cu`` (+ further ``.cu`` files) and
``bind.cpp``. Sources are found by walking ``csrc/``: a new family folder is built without an edit here.
"""

from __future__ import annotations

import sys
from pathlib import Path

EXTENSION_NAME = "rfkernels_cuda"  # the JIT-built module (TORCH_EXTENSION_NAME)
AOT_EXTENSION_NAME = "rfkernels._C"  # the same module built ahead of time by setup.py
COMMON = "common"  # csrc/ folder shared by every family
MODULE_SOURCE = Path(COMMON) / "bindings.cpp"  # defines the Python module; marks a csrc/ tree
FAMILY_FILES = ("kernels.h", "kernels.cu", "bind.cpp")  # what every csrc/<family>/ holds
SOURCE_SUFFIXES = (".cu", ".cpp")
HEADER_SUFFIXES = (".h", ".cuh")
PACKAGE_DATA = tuple(f"**/*{s}" for s in SOURCE_SUFFIXES + HEADER_SUFFIXES)  # wheel: rfkernels/_csrc/**

CXX_FLAGS = ("-O3",)
NVCC_FLAGS = ("-O3", "--use_fast_math", "-lineinfo")
# The JIT and ahead-of-time builds target what torch picks (TORCH_CUDA_ARCH_LIST, else the visible
# GPUs); builds without a GPU (.ci/) target the GPU machines' H100/H200.
OFFLINE_ARCH = "90"
# The host emulation compiles the kernels' __host__ __device__ bodies for the CPU: only the C++ flags
# apply there. --use_fast_math and -lineinfo change device code only, so the emulation computes with
# IEEE division and square root (no flush-to-zero) and tests the arithmetic, not fast-math rounding.
HOST_FLAGS = ("-std=c++17", *CXX_FLAGS)


def find_csrc(package_dir: Path | None = None) -> Path:
    """``csrc/`` of a source checkout (editable install), else the copy a wheel ships as ``rfkernels/_csrc``."""
    here = Path(package_dir or Path(__file__).resolve().parent)
    for cand in (here.parent / "csrc", here / "_csrc"):
        if (cand / MODULE_SOURCE).is_file():
            return cand
    return here.parent / "csrc"


def _files(csrc: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in csrc.rglob("*") if p.is_file() and p.suffix in suffixes)


def sources(csrc: Path | None = None) -> list[Path]:
    """Every translation unit under ``csrc`` (``.cu`` and ``.cpp``, any folder depth), sorted."""
    return _files(csrc or find_csrc(), SOURCE_SUFFIXES)


def headers(csrc: Path | None = None) -> list[Path]:
    """Every header under ``csrc`` (``.h``, ``.cuh``), sorted."""
    return _files(csrc or find_csrc(), HEADER_SUFFIXES)


def include_dirs(csrc: Path | None = None) -> list[Path]:
    """The include path of every build: the ``csrc/`` root."""
    return [csrc or find_csrc()]


def families(csrc: Path | None = None) -> list[str]:
    """The op families ``csrc`` holds kernels for (folders with a ``kernels.cu``), sorted."""
    root = csrc or find_csrc()
    return sorted(p.parent.name for p in root.glob("*/kernels.cu") if p.parent.name != COMMON)


def object_stem(source: Path, csrc: Path | None = None) -> str:
    """A name for ``source``'s object file that is unique across folders: ``volrend/kernels.cu`` ->
    ``volrend_kernels`` (every family has a ``kernels.cu`` and a ``bind.cpp``)."""
    rel = Path(source).resolve().relative_to((csrc or find_csrc()).resolve())
    return "_".join(rel.with_suffix("").parts)


def _main(argv: list[str]) -> int:
    """``python rfkernels/_build.py <what>``: one value per line, for shell scripts."""
    values = {
        "name": lambda: [EXTENSION_NAME],
        "sources": lambda: [str(p) for p in sources()],
        "include-dirs": lambda: [str(p) for p in include_dirs()],
        "cxx-flags": lambda: list(CXX_FLAGS),
        "nvcc-flags": lambda: list(NVCC_FLAGS),
        "offline-arch": lambda: [OFFLINE_ARCH],
        "families": lambda: families(),
    }
    if len(argv) != 1 or argv[0] not in values:
        print(f"usage: python rfkernels/_build.py {{{'|'.join(values)}}}", file=sys.stderr)
        return 2
    print("\n".join(values[argv[0]]()))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
