"""Packaging and dispatch: setup.py never imports torch and ships csrc/, the build description
(rfkernels/_build.py) matches csrc/ and the registry, info() reports backends, benchmark smoke."""

import json
import subprocess
import sys

import pytest
import torch

import rfkernels
from rfkernels import _build, _dispatch
from tests.helpers.paths import ROOT  # noqa: E402


@pytest.fixture
def no_torch_env(tmp_path):
    """An environment in which a meta-path hook makes any `import torch` fail."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch imported at build time')\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    return {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}


def test_setup_py_does_not_import_torch(no_torch_env):
    out = subprocess.run(
        [sys.executable, "setup.py", "--name", "--version"], cwd=ROOT, env=no_torch_env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "rfkernels" in out.stdout


def test_wheel_ships_every_csrc_file_as_rfkernels_csrc(no_torch_env, tmp_path):
    """What a wheel's build_py copies: csrc/ with its folders under rfkernels/_csrc (a non-editable
    install JIT-builds from there, and _build.find_csrc finds it), without importing torch."""
    lib = tmp_path / "lib"
    out = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(lib)],
        cwd=ROOT,
        env=no_torch_env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    csrc = ROOT / "csrc"
    shipped = lib / "rfkernels" / "_csrc"
    files = {p.relative_to(csrc) for p in _build.sources(csrc) + _build.headers(csrc)}
    assert {p.relative_to(shipped) for p in shipped.rglob("*") if p.is_file() and p.suffix != ".py"} == files
    assert _build.find_csrc(lib / "rfkernels") == shipped


def test_build_finds_every_family_in_csrc_and_the_registry():
    """csrc/ has a folder for every registered family (and no other), and each source gets an object
    name of its own (cpp_extension.load names objects by file name; every family has kernels.cu)."""
    csrc = _build.find_csrc()
    assert csrc == ROOT / "csrc"
    assert _build.families(csrc) == sorted(_dispatch.families())
    sources = _build.sources(csrc)
    assert {p.relative_to(csrc).as_posix() for p in sources} >= {
        f"{f}/{name}" for f in _dispatch.families() for name in ("kernels.cu", "bind.cpp")
    } | {"common/bindings.cpp"}
    stems = [_build.object_stem(p, csrc) for p in sources]
    assert len(set(stems)) == len(stems), stems


def test_info_reports_backends():
    info = rfkernels.info()
    assert set(info["backends"]) == {"torch", "triton", "cuda"}
    assert info["backends"]["torch"] == "available"
    out = subprocess.run([sys.executable, "-m", "rfkernels", "info"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and json.loads(out.stdout)["torch"] == torch.__version__


def test_auto_picks_torch_on_cpu():
    assert _dispatch.resolve_backend("auto", torch.zeros(1)) == "torch"
    assert "torch" in rfkernels.available_backends("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_unavailable_reason_mentions_gpu():
    reason = _dispatch.cuda_unavailable_reason(torch.device("cpu"))
    assert "CUDA" in reason


def test_triton_on_cpu_without_interpreter_says_how(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    reason = _dispatch.triton_unavailable_reason(torch.device("cpu"))
    assert reason and "TRITON_INTERPRET=1" in reason


def test_benchmark_runner_quick(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "volrend", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "TRITON_INTERPRET": "0"},
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["env"]["torch"] == torch.__version__ and report["copy_bandwidth_gb_per_s"] > 0
    ops = {(r["op"], r["mode"]) for r in report["results"]}
    assert ("volume_render", "fwd+bwd") in ops and all(r["ms"] > 0 for r in report["results"])
