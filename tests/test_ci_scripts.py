"""The CI scripts under .ci/ must fail when what they check is broken (a check that cannot fail is
worse than none): compile_csrc.sh on a broken or uncompilable .cu, build_ext.py on a binding error."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / ".ci"
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")

GOOD_CU = "__global__ void k(float* x) { x[threadIdx.x] = 1.0f; }\n"
BAD_CU = "__global__ void k(float* x) { x[threadIdx.x] = 1.0f }\n"  # missing ';'


def _compile(files, **env):
    e = {**os.environ, **env}
    return subprocess.run(["bash", str(CI / "compile_csrc.sh"), *map(str, files)], env=e, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


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
