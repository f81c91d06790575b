"""Build tiny-cuda-nn's PyTorch bindings (encodings only) for sm_90 against the GPU machines' torch
2.11.0+cu130 on a machine without a GPU, as a wheel the device run can carry.

    python -m benchmarks.tcnn_wheel --tcnn SRC --fmt SRC [--cache DIR] [--jobs 1]

``SRC`` are git directories (or work trees) of NVlabs/tiny-cuda-nn and fmtlib/fmt (``fetch`` gives
bare mirrors: their HEAD is exported with ``git archive``). The torch headers and libraries come from
the cache ``.ci/build_ext.py`` fills (``$RFK_CI_CACHE``, default ``~/.cache/rfkernels-ci``); its helpers
are reused (loaded by path) for the flags torch's ``cpp_extension`` would use.

What is built, and why it differs from ``bindings/torch/setup.py`` (which imports a CUDA torch and
asks it for the GPU's compute capability, neither of which exists here):
- ``TCNN_NO_NETWORKS`` (the ``--no-networks`` option): the hash-grid peer needs the encodings only,
  and the networks need cutlass;
- no ``TCNN_RTC``: runtime kernel fusion needs NVRTC's header and library, which the CUDA toolkit here
  lacks; the encodings' kernels are compiled ahead of time either way;
- ``bindings.cpp`` includes ``c10/cuda/CUDAStream.h`` instead of ``ATen/cuda/CUDAUtils.h`` (which pulls
  in cuSPARSE/cuBLAS/cuSOLVER/cuDSS headers the toolkit here lacks; the bindings use only the
  guard and the current stream from it, both c10's);
- ``rtc_kernel.cu``'s non-RTC branch gets the one member it lacks, ``CudaRtcKernel::set`` (throwing,
  like that branch's constructor: no kernel object can exist without RTC); without it the module
  has an undefined symbol and does not import;
- the driver library is linked through a stub ``libcuda.so`` (soname ``libcuda.so.1``, no symbols):
  the driver is what the GPU machine provides at run time.

The wheel (``tinycudann-<version>+sm90.torch2110.cu130-cp3XX-...whl``) is written to
``$RFK_CI_CACHE/tcnn/``; it is never committed. Exit status 1 with the compiler's message on failure.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import io
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCH = 90
SOURCES_CU = ("src/cpp_api.cu", "src/common_host.cu", "src/encoding.cu", "src/object.cu", "src/rtc_kernel.cu")
SOURCES_CXX = ("bindings/torch/tinycudann/bindings.cpp", "dependencies/fmt/src/format.cc", "dependencies/fmt/src/os.cc")
TCNN_PATHS = (
    "CMakeLists.txt",
    "include",
    "src",
    "bindings/torch",
    "dependencies/pcg32",
    "dependencies/json",
    "dependencies/pybind11_json",
)
DEFINES = ("-DTCNN_PARAMS_UNALIGNED", "-DTCNN_NO_NETWORKS", "-DTCNN_HALF_PRECISION=1", f"-DTCNN_MIN_GPU_ARCH={ARCH}")
TCNN_NVCC = (
    "-std=c++17",
    "--extended-lambda",
    "--use_fast_math",
    "--expt-relaxed-constexpr",
    "-U__CUDA_NO_HALF_OPERATORS__",
    "-U__CUDA_NO_HALF_CONVERSIONS__",
    "-U__CUDA_NO_HALF2_OPERATORS__",
    "-Xcompiler=-Wno-float-conversion",
    "-Xcompiler=-fno-strict-aliasing",
)


def _build_ext():
    spec = importlib.util.spec_from_file_location("rfk_build_ext", ROOT / ".ci" / "build_ext.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def export_tree(src: Path, dest: Path, paths: tuple[str, ...]) -> None:
    """``paths`` of ``src`` (a work tree, or a bare git directory whose HEAD is exported) copied to
    ``dest`` (only these: a mirror may lack the objects of large files elsewhere, e.g. images)."""
    dest.mkdir(parents=True, exist_ok=True)
    if (src / ".git").exists() or not (src / "HEAD").is_file():
        for rel in paths:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-a", str(src / rel), str(dest / rel)], check=True)
        return
    cmd = ["git", "--git-dir", str(src), "archive", "HEAD", *paths]
    tar = subprocess.run(cmd, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(dest, filter="data")


CUDA_UTILS = "#include <ATen/cuda/CUDAUtils.h>"
STREAM_ONLY = "#include <c10/cuda/CUDAStream.h>\nnamespace at::cuda {\nusing namespace ::c10::cuda;\n}"


NO_RTC_CLEAR = "void CudaRtcKernel::clear() {}"
NO_RTC_SET = (
    "void CudaRtcKernel::set(CUfunction_attribute, int) {\n"
    '\tthrow std::runtime_error{"tiny-cuda-nn was not compiled with runtime compilation (RTC) support."};\n'
    "}"
)


def _replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"FAILED: {old!r} not found exactly once in {path.name}: update this script")
    path.write_text(text.replace(old, new))


def patch_sources(tree: Path) -> None:
    """The two source edits the module docstring lists."""
    _replace_once(tree / "bindings" / "torch" / "tinycudann" / "bindings.cpp", CUDA_UTILS, STREAM_ONLY)
    _replace_once(tree / "src" / "rtc_kernel.cu", NO_RTC_CLEAR, NO_RTC_CLEAR + "\n" + NO_RTC_SET)


def check_symbols(be, so: Path, torch_dir: Path, cuda: Path) -> None:
    """Every undefined symbol of ``so`` is defined by torch's libraries, cudart, the C/C++ runtime,
    Python or the driver (``cu*``, the GPU machine's ``libcuda.so.1``); ``PyInit__90_C`` exported."""
    libs = [*(torch_dir / "lib").glob("*.so*"), cuda / "lib64" / "libcudart.so"]
    libs += [
        p
        for p in map(
            be._system_lib, ("libstdc++.so", "libgcc_s.so.1", "libc.so.6", "libm.so.6", "ld-linux-x86-64.so.2")
        )
        if p
    ]
    provided = set().union(*(be._dyn_symbols(lib, defined=True) for lib in libs))
    unresolved = sorted(
        s
        for s in be._dyn_symbols(so, defined=False) - provided
        if not s.startswith(("Py", "_Py")) and not re.match(r"cu[A-Z]", s)
    )
    if unresolved:
        raise SystemExit("FAILED: undefined symbols nothing defines:\n    " + "\n    ".join(be._demangle(unresolved)))
    if f"PyInit__{ARCH}_C" not in be._dyn_symbols(so, defined=True):
        raise SystemExit(f"FAILED: PyInit__{ARCH}_C is not exported")


def tcnn_version(tree: Path) -> str:
    m = re.search(r"^\s*VERSION\s+(\S+)", (tree / "CMakeLists.txt").read_text(), re.M)
    if not m:
        raise SystemExit("FAILED: no VERSION in tiny-cuda-nn's CMakeLists.txt")
    return m.group(1)


def flags(be, torch_dir: Path, cuda: Path, tree: Path) -> tuple[list[str], list[str], list[str]]:
    """(c++ flags, nvcc flags, link flags) as torch's cpp_extension would pass for a CUDAExtension."""
    abi = be.cxx11_abi(torch_dir / "lib" / "libc10.so")
    incs = [tree / "include", tree / "dependencies", tree / "dependencies" / "fmt" / "include"]
    sys_incs = [
        torch_dir / "include",
        torch_dir / "include" / "torch" / "csrc" / "api" / "include",
        cuda / "include",
        Path(sysconfig.get_path("include", scheme="posix_prefix")),
    ]
    common = [
        f"-DTORCH_EXTENSION_NAME=_{ARCH}_C",
        "-DTORCH_API_INCLUDE_EXTENSION_H",
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
        *DEFINES,
        *(f"-I{d}" for d in incs),
    ]
    for d in sys_incs:
        common += ["-isystem", str(d)]
    cxx = common + ["-O3", "-fPIC", "-std=c++17"]
    # tcnn needs half operators: drop torch's -D__CUDA_NO_HALF*__ (setup.py undefines them after)
    torch_flags = be.common_nvcc_flags(torch_dir / "utils" / "cpp_extension.py")
    torch_nvcc = [f for f in torch_flags if "__CUDA_NO_HALF" not in f]
    nvcc = common + torch_nvcc + list(TCNN_NVCC) + ["-O3", "--compiler-options", "-fPIC"]
    nvcc += [f"-gencode=arch=compute_{ARCH},code=compute_{ARCH}", f"-gencode=arch=compute_{ARCH},code=sm_{ARCH}"]
    link = ["-shared", f"-L{torch_dir / 'lib'}", "-lc10", "-lc10_cuda", "-ltorch_cpu", "-ltorch_cuda", "-ltorch"]
    link += ["-ltorch_python", f"-L{cuda / 'lib64'}", "-lcudart"]
    return cxx, nvcc, link


def driver_stub(build: Path) -> Path:
    """A symbol-less ``libcuda.so`` with soname ``libcuda.so.1``: the link records the dependency and
    leaves the driver's symbols to the GPU machine's real library."""
    stub = build / "stub"
    stub.mkdir(exist_ok=True)
    (stub / "empty.c").write_text("")
    subprocess.run(
        ["cc", "-shared", "-o", str(stub / "libcuda.so"), "-Wl,-soname,libcuda.so.1", str(stub / "empty.c")],
        check=True,
    )
    return stub


def compile_all(tree: Path, build: Path, cxx, nvcc, jobs: int) -> list[Path]:
    def one(rel: str):
        obj = build / (rel.replace("/", "_") + ".o")
        cmd = (["nvcc", *nvcc] if rel.endswith(".cu") else ["c++", *cxx]) + ["-c", str(tree / rel), "-o", str(obj)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        print(f"  {rel:<44} {'ok' if r.returncode == 0 else f'FAILED (exit {r.returncode})'}", flush=True)
        return rel, obj, r

    failed, objs = [], []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for rel, obj, r in pool.map(one, SOURCES_CU + SOURCES_CXX):
            if r.returncode:
                print((r.stdout + r.stderr)[-6000:], flush=True)
                failed.append(rel)
            objs.append(obj)
    if failed:
        raise SystemExit(f"FAILED: {', '.join(failed)} did not compile")
    return objs


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def write_wheel(out_dir: Path, version: str, so: Path, tree: Path) -> Path:
    """A wheel with ``tinycudann/`` (the bindings' Python package) and ``tinycudann_bindings/_90_C``."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    full = f"{version}+sm{ARCH}.torch2110.cu130"
    dist = f"tinycudann-{full}.dist-info"
    files = {
        f"tinycudann_bindings/_{ARCH}_C{sysconfig.get_config_var('EXT_SUFFIX')}": so.read_bytes(),
        "tinycudann_bindings/__init__.py": b"",
    }
    for py in sorted((tree / "bindings" / "torch" / "tinycudann").glob("*.py")):
        files[f"tinycudann/{py.name}"] = py.read_bytes()
    files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: tinycudann\nVersion: {full}\n".encode()
    files[f"{dist}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: benchmarks.tcnn_wheel\nRoot-Is-Purelib: false\n"
        f"Tag: {tag}-{tag}-manylinux_2_28_x86_64\n"
    ).encode()
    record = [_record_line(n, d) for n, d in files.items()] + [f"{dist}/RECORD,,"]
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"tinycudann-{full}-{tag}-{tag}-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return wheel


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tcnn_wheel", description=__doc__.splitlines()[0])
    p.add_argument("--tcnn", type=Path, required=True, help="NVlabs/tiny-cuda-nn git directory or work tree")
    p.add_argument("--fmt", type=Path, required=True, help="fmtlib/fmt git directory or work tree")
    p.add_argument("--cache", type=Path, default=Path(os.environ.get("RFK_CI_CACHE", "~/.cache/rfkernels-ci")))
    p.add_argument("--jobs", type=int, default=1)
    args = p.parse_args(argv)
    be = _build_ext()
    cache = args.cache.expanduser()
    torch_dir = be.fetch_torch(cache)
    if torch_dir is None:
        print("SKIP: the torch 2.11.0 wheel is neither cached nor downloadable")
        return 0
    cuda = be.cuda_home()
    with tempfile.TemporaryDirectory(prefix="tcnn-build-") as tmp:
        tree, build = Path(tmp) / "tcnn", Path(tmp) / "build"
        export_tree(args.tcnn, tree, TCNN_PATHS)
        export_tree(args.fmt, tree / "dependencies" / "fmt", ("include", "src"))
        patch_sources(tree)
        build.mkdir()
        cxx, nvcc, link = flags(be, torch_dir, cuda, tree)
        objs = compile_all(tree, build, cxx, nvcc, args.jobs)
        so = build / f"_{ARCH}_C.so"
        stub = driver_stub(build)
        cmd = ["c++", *map(str, objs), "-o", str(so), *link, f"-L{stub}", "-Wl,--no-as-needed", "-lcuda"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            print(r.stdout + r.stderr)
            raise SystemExit("FAILED: link")
        check_symbols(be, so, torch_dir, cuda)
        wheel = write_wheel(cache / "tcnn", tcnn_version(tree), so, tree)
    print(f"wrote {wheel} ({wheel.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
