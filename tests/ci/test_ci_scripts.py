"""The CI scripts under .ci/ must fail when what they check is broken (a check that cannot fail is
worse than none): compile_csrc.sh on a broken or uncompilable .cu, build_ext.py on a binding error."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT  # noqa: E402

CI = ROOT / ".ci"
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")

GOOD_CU = "__global__ void k(float* x) { x[threadIdx.x] = 1.0f; }\n"
BAD_CU = "__global__ void k(float* x) { x[threadIdx.x] = 1.0f }\n"  # missing ';'


def _compile(files, **env):
    e = {**os.environ, **env}
    return subprocess.run(
        ["bash", str(CI / "compile_csrc.sh"), *map(str, files)],
        env=e,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def cu_files(tmp_path):
    good, bad = tmp_path / "good.cu", tmp_path / "bad.cu"
    good.write_text(GOOD_CU)
    bad.write_text(BAD_CU)
    return good, bad


@needs_nvcc
def test_compile_csrc_passes_on_valid_cu(cu_files):
    r = _compile([cu_files[0]])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "registers" in r.stdout  # ptxas -v report kept


@needs_nvcc
def test_compile_csrc_fails_on_syntax_error(cu_files):
    r = _compile(list(cu_files))  # the good file first: a later failure must still fail the run
    assert r.returncode != 0
    assert "FAILED:" in r.stdout and "bad.cu" in r.stdout
    assert "error" in r.stdout  # the compiler's own message is shown


@pytest.mark.parametrize("nvcc", ["false", "fake", "missing"])
def test_compile_csrc_fails_without_working_nvcc(cu_files, tmp_path, nvcc):
    if nvcc == "fake":
        fake = tmp_path / "nvcc"
        fake.write_text("#!/bin/sh\necho 'nvcc fatal   : Unknown option'\nexit 1\n")
        fake.chmod(0o755)
        nvcc = str(fake)
    elif nvcc == "missing":
        nvcc = str(tmp_path / "no-such-nvcc")
    r = _compile([cu_files[0]], NVCC=nvcc)
    assert r.returncode != 0, r.stdout
    assert "FAILED" in r.stdout


# ---------------------------------------------------------------- .ci/build_ext.py
def _build_ext_module():
    sys.path.insert(0, str(CI))
    try:
        import build_ext
    finally:
        sys.path.remove(str(CI))
    return build_ext


def test_build_ext_reads_flags_and_calls_from_the_sources():
    """The flags are rfkernels/_build.py's (the JIT build's), loaded without importing rfkernels, and
    the bound-function list comes from the Python side: some for every registered family."""
    import rfkernels  # noqa: F401 - registers every family
    from rfkernels import _build, _dispatch

    be = _build_ext_module()
    assert be.BUILD is not _build and be.BUILD.__file__ == _build.__file__
    assert (be.BUILD.EXTENSION_NAME, be.BUILD.NVCC_FLAGS) == (_build.EXTENSION_NAME, _build.NVCC_FLAGS)
    assert "--use_fast_math" in be.BUILD.NVCC_FLAGS
    calls = be.python_calls()
    for family in _dispatch.families():
        assert any(c.startswith(family) for c in calls), (family, calls)


def test_build_ext_checks_the_csrc_layout(tmp_path):
    """Every csrc family folder holds kernels.h, kernels.cu and bind.cpp; a folder that lacks one fails."""
    import rfkernels  # noqa: F401
    from rfkernels import _dispatch

    be = _build_ext_module()
    csrc = tmp_path / "csrc"
    shutil.copytree(ROOT / "csrc", csrc)
    assert sorted(be.check_layout(csrc)) == sorted(_dispatch.families())
    (csrc / "gather" / "bind.cpp").unlink()
    with pytest.raises(SystemExit, match="gather/ lacks bind.cpp"):
        be.check_layout(csrc)


def test_build_ext_skips_cleanly_without_the_index(tmp_path):
    env = {**os.environ, "RFK_CI_CACHE": str(tmp_path), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path)}
    r = subprocess.run(
        [sys.executable, str(CI / "build_ext.py")], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "\nSKIP: torch==2.11.0 wheel unavailable" in r.stdout, r.stdout


def _cached_torch():
    cache = Path(os.environ.get("RFK_CI_CACHE", Path.home() / ".cache" / "rfkernels-ci"))
    if not (cache / "torch-2.11.0" / ".complete").is_file() or shutil.which("nvcc") is None:
        pytest.skip("torch 2.11.0 headers not in the CI cache (run .ci/build_ext.py once) or no nvcc")


@pytest.mark.slow
@pytest.mark.parametrize("breakage", ["typo", "unbound", "undefined"])
def test_build_ext_fails_on_binding_errors(tmp_path, breakage):
    """A typo in a binding fails with g++'s message; a function the Python side calls that no
    binding registers, and a launcher declared and called but never defined, fail the .so checks."""
    _cached_torch()
    csrc = tmp_path / "csrc"
    shutil.copytree(ROOT / "csrc", csrc)
    bind, cu = csrc / "volrend" / "bind.cpp", csrc / "volrend" / "kernels.cu"
    text = bind.read_text()
    if breakage == "typo":
        assert "rfk::composite_forward(" in text
        bind.write_text(text.replace("rfk::composite_forward(", "rfk::composite_forwrd(", 1))
    elif breakage == "unbound":
        line = next(ln for ln in text.splitlines() if 'm.def("volrend_distortion_backward"' in ln)
        bind.write_text(text.replace(line + "\n", ""))
    else:
        assert "cudaError_t distortion_backward(" in cu.read_text()
        cu.write_text(
            cu.read_text().replace("cudaError_t distortion_backward(", "cudaError_t distortion_backward_x(", 1)
        )
    r = subprocess.run(
        [sys.executable, str(CI / "build_ext.py"), "--csrc", str(csrc)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert r.returncode != 0, r.stdout
    expect = {
        "typo": ["volrend/bind.cpp:", "error:", "composite_forwrd"],
        "unbound": ["does not bind: volrend_distortion_backward"],
        "undefined": ["undefined rfk symbols", "rfk::distortion_backward"],
    }[breakage]
    out = r.stdout + r.stderr  # compiler output on stdout, the final FAILED line on stderr
    for e in expect:
        assert e in out, (e, out[-3000:])


# ---------------------------------------------------------------- .ci/gpu_check.sh, benchmarks
def _fake_nvidia_smi(tmp_path, script: str) -> dict:
    """An environment whose PATH starts with a fake ``nvidia-smi`` running ``script`` (sh)."""
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text("#!/bin/sh\n" + script)
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}


@pytest.mark.slow
def test_gpu_check_dry_runs_end_to_end(tmp_path):
    """The device script end to end without a GPU: a fake nvidia-smi answers its query, the device is
    the CPU, every stage (the opt-in compile peer too) runs the device's commands and succeeds, in the
    order the device runs them, and the outputs and summary exist."""
    import json

    env = _fake_nvidia_smi(tmp_path, "echo 'NVIDIA H200, 143771 MiB, 580.159.03'\n")
    env.update(OUT=str(tmp_path / "out"), RFK_GPU_BUDGET_S="400")
    r = subprocess.run(
        ["bash", str(CI / "gpu_check.sh"), "--dry", "--with-compile"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry"] and summary["budget_s"] == 400
    envd = summary["env"]
    assert envd["torch"] and envd["date"] and envd["device"] == "cpu" and envd["torch_cuda_arch_list"] == "9.0"
    assert envd["nvidia_smi"] == "NVIDIA H200, 143771 MiB, 580.159.03"
    names = [s["name"] for s in summary["stages"]]
    assert [n for n in names if n != "nerfacc"] == ["build", "ops", "prior", "recon", "tests", "graphs", "compile"]
    assert names.count("nerfacc") == 1  # the background build's result, recorded once it finished
    assert all(s["status"] == "ok" for s in summary["stages"]), summary["stages"]
    ops = json.loads((out / "bench_ops.json").read_text())
    timed = [r["op"] for r in ops["results"]]
    assert set(timed) >= {"volume_render", "hash_grid_encode", "sample_pdf", "gather[none]"}
    assert timed[0] == "hash_grid_encode"  # the headline op first
    assert json.loads((out / "recon.json").read_text())["iterations"] == 2
    assert (out / "bench_compile.json").is_file() and (out / "bench_prior.json").is_file()
    assert json.loads((out / "compile_step.json").read_text())["rows"][0]["model"] == "reconfusion tiny"
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and not [f for f in files if f.endswith(".tmp") or f.startswith(".")], files


def test_gpu_check_modes_set_the_same_variables():
    """The GPU and the dry branch of the mode switch assign the same variables (a name misspelt in the
    GPU branch, which CI never runs, fails here), and the GPU branch's nerfacc probe is valid Python."""
    import shlex

    text = (CI / "gpu_check.sh").read_text()
    switch = text[text.index('if [ "$DRY" = 1 ]; then\n  DEVICE=') :]
    dry, gpu = switch.split("\nelse\n", 1)
    gpu = gpu.split("\nfi\n", 1)[0]

    def assigned(block):
        values = {}
        for line in block.splitlines():
            for word in shlex.split(line, comments=True):
                m = re.fullmatch(r"([A-Z_]+)=(.*)", word)
                if m:
                    values[m.group(1)] = m.group(2)
        return values

    dry_vars, gpu_vars = assigned(dry), assigned(gpu)
    assert set(dry_vars) == set(gpu_vars) >= {"DEVICE", "SCALE", "RECON", "NERFACC_PROBE", "EXPECT_CUDA"}
    assert gpu_vars["DEVICE"] == "cuda"
    compile(gpu_vars["NERFACC_PROBE"], "NERFACC_PROBE", "exec")


def test_scripts_and_benchmarks_read_the_families_from_the_registry():
    """No CI script names an op family; the benchmarks' op families are the registry's, ``ops`` selects them."""
    import rfkernels  # noqa: F401 - registers every family
    from benchmarks.common import FAMILIES, OP_FAMILIES, select_families
    from rfkernels import _dispatch

    families = _dispatch.families()
    for script in (
        CI / "gpu_check.sh",
        CI / "compile_csrc.sh",
        CI / "build_ext.py",
        CI.parent / "tests/ci/triton_sm90.py",
        CI.parent / "tests/ci/sm90_report.py",
    ):
        text = script.read_text()
        if script.name == "gpu_check.sh":  # one name: the op benchmarked first, a registered family
            (first,) = [ln for ln in text.splitlines() if ln.startswith("OPS_ORDER=")]
            assert first.split("=", 1)[1].split(",")[0] in families, first
            text = text.replace(first, "")
        assert not [f for f in families if f in text], script
    assert OP_FAMILIES == tuple(families) and FAMILIES[: len(families)] == OP_FAMILIES
    assert select_families("ops") == families and select_families(None) == list(FAMILIES)
    with pytest.raises(ValueError, match="'bogus'"):
        select_families("ops,bogus")


def test_gpu_check_rejects_unknown_arguments_and_missing_gpu(tmp_path):
    # an nvidia-smi that finds no GPU, first on PATH (also on a GPU machine)
    env = _fake_nvidia_smi(tmp_path, "echo 'NVIDIA-SMI has failed'\nexit 9\n")
    env["OUT"] = str(tmp_path / "out")
    r = subprocess.run(["bash", str(CI / "gpu_check.sh"), "--bogus"], env=env, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "unknown argument" in r.stdout
    r = subprocess.run(["bash", str(CI / "gpu_check.sh")], env=env, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "use --dry" in r.stdout


def test_pytest_benchmark_runs_one_tiny_case(tmp_path):
    """``pytest benchmarks/ --benchmark-only`` on the CPU: one tiny torch case, JSON with bytes and GB/s."""
    import json

    pytest.importorskip("pytest_benchmark")
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "benchmarks/",
            "--benchmark-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rfk-only",
            "volrend",
            "--rfk-device",
            "cpu",
            "-k",
            "distortion_loss",
            "--benchmark-json",
            str(out),
            "--benchmark-max-time",
            "0.05",
            "--benchmark-min-rounds",
            "1",
            "--benchmark-warmup",
            "off",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    bench = json.loads(out.read_text())["benchmarks"]
    # one case: the tiny size of the op (benchmarks/bench_volrend.py), forward and backward
    assert len(bench) == 1 and re.fullmatch(r"distortion_loss R=\d+ S=\d+ fwd\+bwd", bench[0]["group"]), bench
    info = bench[0]["extra_info"]
    assert info["backend"] == "torch" and info["bytes_moved"] > 0 and 0 < info["pct_of_copy_bw"]
