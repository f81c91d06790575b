"""Build the real CUDA extension against the GPU machines' torch (2.11.0+cu130) without a GPU.

    python .ci/build_ext.py [--csrc DIR] [--cache DIR] [--jobs 2] [--keep DIR]

1. Fetches the ``torch==2.11.0`` manylinux_2_28 wheel once (``pip download --no-deps``) into
   ``$RFK_CI_CACHE`` (default ``~/.cache/rfkernels-ci``) and extracts only ``torch/include``,
   ``torch/lib``, ``torch/version.py`` and ``torch/utils/cpp_extension.py`` (torch is never
   installed). If the index is unreachable it prints a ``SKIP`` line and exits 0.
2. Checks the layout of ``csrc/`` (``common/`` and, per family, ``kernels.h``, ``kernels.cu``,
   ``bind.cpp``), then compiles every ``.cu`` under it with nvcc and every ``.cpp`` with c++ using the
   flags the JIT build (``rfkernels/_cuda_ext.py`` -> ``torch.utils.cpp_extension.load``) uses on one
   sm_90 GPU: sources, include path, extension name and ``extra_*cflags`` from ``rfkernels/_build.py``
   (loaded by path: no torch, no rfkernels import) and ``COMMON_NVCC_FLAGS`` from the wheel's
   ``cpp_extension.py`` (parsed, not copied); links the ``.so`` as ``load`` does.
3. Checks the ``.so``: no undefined ``rfk`` symbol, every undefined symbol is defined by torch's
   libraries, cudart, the C/C++ runtime or Python, ``PyInit_<name>`` is exported, and every
   function the Python side calls on the module (``module().<fn>(`` in ``rfkernels/``) is bound.

Exit status 1 (with the compiler's or checker's message) on any failure.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TORCH_VERSION = "2.11.0"
TORCH_LOCAL = "+cu130"


def _load_build():
    """rfkernels/_build.py by path (the rfkernels package imports torch; this script never does)."""
    spec = importlib.util.spec_from_file_location("rfkernels_build", ROOT / "rfkernels" / "_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = _load_build()
ARCH = BUILD.OFFLINE_ARCH  # H100/H200: what _get_cuda_arch_flags returns for one visible sm_90 device


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------- torch 2.11 headers + libraries
def fetch_torch(cache: Path) -> Path | None:
    """Path of the extracted ``torch/`` (include, lib, version.py, cpp_extension.py), or None."""
    root = cache / f"torch-{TORCH_VERSION}"
    marker = root / ".complete"
    if marker.is_file():
        return root / "torch"
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob(f"torch-{TORCH_VERSION}-*manylinux_2_28_x86_64.whl"))
    if not found:
        pyver = f"{sys.version_info.major}{sys.version_info.minor}"
        log(f"downloading torch=={TORCH_VERSION} (manylinux_2_28_x86_64, cp{pyver}, ~530 MB) into {wheels}")
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            "manylinux_2_28_x86_64",
            "--python-version",
            pyver,
            "-d",
            str(wheels),
            f"torch=={TORCH_VERSION}",
        ]
        r = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(wheels.glob(f"torch-{TORCH_VERSION}-*manylinux_2_28_x86_64.whl"))
        if r.returncode != 0 or not found:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no wheel"]
            log(f"SKIP: torch=={TORCH_VERSION} wheel unavailable (index unreachable?): {tail[0]}")
            return None
    wheel = found[-1]
    if root.exists():
        shutil.rmtree(root)
    keep = ("torch/include/", "torch/lib/", "torch/version.py", "torch/utils/cpp_extension.py")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(root, [n for n in zf.namelist() if n.startswith(keep)])
    marker.write_text(wheel.name)
    wheel.unlink()  # only the extracted headers and libraries are used (~1 GB); saves ~530 MB
    return root / "torch"


def check_version(torch_dir: Path) -> str:
    m = re.search(r"__version__\s*=\s*'([^']+)'", (torch_dir / "version.py").read_text())
    version = m.group(1) if m else "?"
    if version != TORCH_VERSION + TORCH_LOCAL:
        raise SystemExit(f"FAILED: expected torch {TORCH_VERSION}{TORCH_LOCAL}, the wheel says {version}")
    return version


# ---------------------------------------------------------------- layout, flags as the JIT build makes them
def check_layout(csrc: Path) -> list[str]:
    """The op families of ``csrc``; fails unless it has the module source and every family folder
    (a folder other than ``common/``) holds the files every family has."""
    problems = [] if (csrc / BUILD.MODULE_SOURCE).is_file() else [f"{BUILD.MODULE_SOURCE} is missing"]
    folders = sorted(p for p in csrc.iterdir() if p.is_dir() and p.name != BUILD.COMMON)
    for folder in folders:
        missing = [f for f in BUILD.FAMILY_FILES if not (folder / f).is_file()]
        if missing:
            problems.append(f"{folder.name}/ lacks {', '.join(missing)}")
    if problems:
        raise SystemExit(f"FAILED: {csrc} does not have the csrc/ layout (rfkernels/_build.py): " + "; ".join(problems))
    return [p.name for p in folders]


def common_nvcc_flags(cpp_extension: Path) -> list[str]:
    """``COMMON_NVCC_FLAGS`` of that torch's cpp_extension.py; also checks it still adds -std=c++17."""
    src = cpp_extension.read_text()
    tree = ast.parse(src)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "COMMON_NVCC_FLAGS" for t in node.targets):
            flags = ast.literal_eval(node.value)
            break
    else:
        raise SystemExit(f"FAILED: COMMON_NVCC_FLAGS not found in {cpp_extension}")
    if "cflags = common_cflags + ['-fPIC', '-std=c++17'] + extra_cflags" not in src:
        raise SystemExit(f"FAILED: {cpp_extension} no longer builds C++ with -std=c++17: update this script")
    return flags


def cxx11_abi(lib: Path) -> int:
    """1 when torch's libc10 was built with the C++11 std::string ABI (its symbols mention __cxx11)."""
    out = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True, check=True).stdout
    return int("__cxx11" in out)


def cuda_home() -> Path:
    nvcc = os.environ.get("NVCC") or shutil.which("nvcc")
    if not nvcc:
        raise SystemExit("FAILED: nvcc not found")
    for cand in (os.environ.get("CUDA_HOME"), "/usr/local/cuda", str(Path(nvcc).resolve().parent.parent)):
        if cand and (Path(cand) / "include" / "cuda_runtime_api.h").is_file():
            return Path(cand)
    raise SystemExit("FAILED: CUDA headers not found (set CUDA_HOME)")


def build_flags(torch_dir: Path, cuda: Path, csrc: Path) -> dict:
    name = BUILD.EXTENSION_NAME
    abi = cxx11_abi(torch_dir / "lib" / "libc10.so")
    # load(extra_include_paths=...) comes first, as -I; torch's, CUDA's and Python's as -isystem
    own = [f"-I{d}" for d in BUILD.include_dirs(csrc)]
    includes = [
        torch_dir / "include",
        torch_dir / "include" / "torch" / "csrc" / "api" / "include",
        cuda / "include",
        Path(sysconfig.get_path("include", scheme="posix_prefix")),
    ]
    # _write_ninja_file_to_build_library: common_cflags, then per-language flags. The ABI define is
    # what that torch was built with (gcc's default, so the JIT build gets the same without it).
    common = [
        f"-DTORCH_EXTENSION_NAME={name}",
        "-DTORCH_API_INCLUDE_EXTENSION_H",
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
    ] + own
    for inc in includes:
        common += ["-isystem", str(inc)]
    cflags = common + ["-fPIC", "-std=c++17"] + list(BUILD.CXX_FLAGS)
    cuda_flags = (
        common
        + common_nvcc_flags(torch_dir / "utils" / "cpp_extension.py")
        + [
            f"-gencode=arch=compute_{ARCH},code=compute_{ARCH}",
            f"-gencode=arch=compute_{ARCH},code=sm_{ARCH}",
            "--compiler-options",
            "-fPIC",
        ]
        + list(BUILD.NVCC_FLAGS)
    )
    if not any(f.startswith("-std=") for f in cuda_flags):
        cuda_flags.append("-std=c++17")
    ldflags = [
        "-shared",
        f"-L{torch_dir / 'lib'}",
        "-lc10",
        "-lc10_cuda",
        "-ltorch_cpu",
        "-ltorch_cuda",
        "-ltorch",
        "-ltorch_python",
        f"-L{cuda / 'lib64'}",
        "-lcudart",
    ]
    return {"name": name, "cflags": cflags, "cuda_flags": cuda_flags, "ldflags": ldflags, "abi": abi}


# ---------------------------------------------------------------- compile + link
def _object_key(src: Path, csrc: Path, cmd: list[str], tool_version: str) -> str:
    """Content key of one object: the command (flags), the compiler, the source and every csrc header
    (a change to any header rebuilds everything; torch's headers are fixed by its version)."""
    h = hashlib.sha1("\0".join(cmd[1:] + [tool_version]).encode())
    for f in [src] + BUILD.headers(csrc):
        h.update(f.relative_to(csrc).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:20]


def compile_all(csrc: Path, build: Path, flags: dict, jobs: int, objcache: Path | None) -> list[Path]:
    """Compile every source (``jobs`` at a time); objects are reused from ``objcache`` by content key."""
    sources = BUILD.sources(csrc)
    nvcc = os.environ.get("NVCC") or shutil.which("nvcc")
    versions = {t: subprocess.run([t, "--version"], capture_output=True, text=True).stdout for t in (nvcc, "c++")}
    if objcache:
        objcache.mkdir(parents=True, exist_ok=True)

    def stem(src: Path) -> str:  # unique across family folders (every one has kernels.cu, bind.cpp)
        return BUILD.object_stem(src, csrc) + (".cuda" if src.suffix == ".cu" else "")

    def one(src: Path):
        obj = build / f"{stem(src)}.o"
        if src.suffix == ".cu":
            cmd = [nvcc, *flags["cuda_flags"], "-c", str(src), "-o", str(obj)]
        else:
            cmd = ["c++", *flags["cflags"], "-c", str(src), "-o", str(obj)]
        cached = objcache / f"{obj.stem}-{_object_key(src, csrc, cmd[:-4], versions[cmd[0]])}.o" if objcache else None
        t0 = time.perf_counter()
        if cached and cached.is_file():
            shutil.copyfile(cached, obj)
            os.utime(cached)  # most recently used
            return src, obj, None, time.perf_counter() - t0
        r = subprocess.run(cmd, capture_output=True, text=True)
        if cached and r.returncode == 0:
            shutil.copyfile(obj, cached)
        return src, obj, r, time.perf_counter() - t0

    failed, objects = [], []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for src, obj, r, dt in pool.map(one, sources):
            rel = src.relative_to(csrc).as_posix()
            if r is None:
                log(f"  {rel:<24} cached (same source, headers and flags)")
                objects.append(obj)
                continue
            status = "ok" if r.returncode == 0 else f"FAILED (exit {r.returncode})"
            log(f"  {rel:<24} {dt:6.1f} s  {status}")
            if r.returncode != 0:
                log((r.stdout + r.stderr).rstrip())
                failed.append(rel)
            objects.append(obj)
    if objcache:  # keep the 4 most recently used objects per source
        for src in sources:
            old = sorted(objcache.glob(f"{stem(src)}-*.o"), key=lambda p: p.stat().st_mtime, reverse=True)[4:]
            for p in old:
                p.unlink(missing_ok=True)
    if failed:
        raise SystemExit(f"FAILED: {len(failed)} source(s) did not compile: {', '.join(failed)}")
    return objects


def link(objects: list[Path], build: Path, flags: dict) -> Path:
    so = build / f"{flags['name']}.so"
    r = subprocess.run(["c++", *map(str, objects), *flags["ldflags"], "-o", str(so)], capture_output=True, text=True)
    if r.returncode != 0:
        log((r.stdout + r.stderr).rstrip())
        raise SystemExit("FAILED: link")
    return so


# ---------------------------------------------------------------- checks on the .so
def _dyn_symbols(lib: Path, defined: bool) -> set[str]:
    opt = "--defined-only" if defined else "--undefined-only"
    out = subprocess.run(["nm", "-D", opt, str(lib)], capture_output=True, text=True).stdout
    syms = set()
    for line in out.splitlines():
        parts = line.split()
        if not parts:
            continue
        if not defined and parts[0] in ("w", "v"):
            continue  # weak references need no definition
        syms.add(parts[-1].split("@")[0])
    return syms


def _system_lib(name: str) -> Path | None:
    out = subprocess.run(["c++", f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
    p = Path(out)
    return p.resolve() if p.is_absolute() and p.exists() else None


def _demangle(symbols: list[str]) -> list[str]:
    out = subprocess.run(["c++filt"], input="\n".join(symbols), capture_output=True, text=True).stdout.splitlines()
    return [f"{d}  ({m})" if d != m else m for d, m in zip(out, symbols)]


def python_calls() -> set[str]:
    """Every extension function the Python side calls: ``module().<fn>(`` in rfkernels/**.py."""
    names = set()
    for py in (ROOT / "rfkernels").rglob("*.py"):
        names |= set(re.findall(r"\bmodule\(\)\.(\w+)\s*\(", py.read_text()))
    if not names:
        raise SystemExit("FAILED: found no module().<fn>( call in rfkernels/: the pattern is out of date")
    return names


def check_so(so: Path, torch_dir: Path, cuda: Path, name: str) -> None:
    undefined = _dyn_symbols(so, defined=False)
    problems = []
    rfk = sorted(s for s in undefined if "rfk" in s)
    if rfk:
        problems.append("undefined rfk symbols (declared, never defined):\n    " + "\n    ".join(_demangle(rfk)))
    provided = set()
    libs = list((torch_dir / "lib").glob("*.so*")) + [cuda / "lib64" / "libcudart.so"]
    libs += [
        p
        for p in map(_system_lib, ("libstdc++.so", "libgcc_s.so.1", "libc.so.6", "libm.so.6", "ld-linux-x86-64.so.2"))
        if p
    ]
    for lib in libs:
        provided |= _dyn_symbols(lib, defined=True)
    unresolved = sorted(s for s in undefined - provided if not s.startswith(("Py", "_Py")))
    if unresolved:
        problems.append(
            "undefined symbols no torch/CUDA/C++ runtime library defines:\n    "
            + "\n    ".join(_demangle(unresolved)[:40])
        )
    if f"PyInit_{name}" not in _dyn_symbols(so, defined=True):
        problems.append(f"PyInit_{name} is not exported")
    data = so.read_bytes()
    calls = python_calls()
    missing = sorted(c for c in calls if b"\0" + c.encode() + b"\0" not in data)
    if missing:
        problems.append("functions the Python side calls but the module does not bind: " + ", ".join(missing))
    if problems:
        raise SystemExit("FAILED: " + "\n".join(problems))
    log(
        f"  {so.name}: {so.stat().st_size / 2**20:.1f} MiB, {len(undefined)} undefined symbols all resolved, "
        f"binds all {len(calls)} functions the Python side calls"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csrc", type=Path, default=ROOT / "csrc")
    p.add_argument(
        "--cache", type=Path, default=Path(os.environ.get("RFK_CI_CACHE", Path.home() / ".cache" / "rfkernels-ci"))
    )
    p.add_argument("--jobs", type=int, default=int(os.environ.get("RFK_CI_JOBS", "2")))
    p.add_argument("--keep", type=Path, default=None, help="build here and keep the objects and the .so")
    p.add_argument(
        "--no-object-cache",
        action="store_true",
        help="recompile every source (default: reuse "
        "objects from <cache>/objects when source, csrc headers, flags and compiler are unchanged)",
    )
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    torch_dir = fetch_torch(args.cache)
    if torch_dir is None:
        return 0
    version = check_version(torch_dir)
    cuda = cuda_home()
    csrc = args.csrc.resolve()
    families = check_layout(csrc)
    flags = build_flags(torch_dir, cuda, csrc)
    log(
        f"building {flags['name']}.so ({', '.join(families)}) against torch {version} headers ({torch_dir}), "
        f"CUDA {cuda}, sm_{ARCH}, _GLIBCXX_USE_CXX11_ABI={flags['abi']}, {args.jobs} jobs"
    )
    log("  c++  " + " ".join(f for f in flags["cflags"] if not f.startswith("/") and f != "-isystem"))
    log("  nvcc " + " ".join(f for f in flags["cuda_flags"] if not f.startswith("/") and f != "-isystem"))
    build = args.keep or Path(tempfile.mkdtemp(prefix="rfk-build-ext-"))
    build.mkdir(parents=True, exist_ok=True)
    try:
        objcache = None if args.no_object_cache else args.cache / "objects"
        objects = compile_all(csrc, build, flags, args.jobs, objcache)
        so = link(objects, build, flags)
        check_so(so, torch_dir, cuda, flags["name"])
    finally:
        if args.keep is None:
            shutil.rmtree(build, ignore_errors=True)
    log(f"extension built and checked in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
