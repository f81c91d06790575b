"""External check: nerfacc v0.5.3's own test files, unchanged, pass on the CPU through
``rfkernels.compat.install()`` (all 21). The files are not part of this repository: they are read
from ``$RFK_NERFACC_TESTS`` or the CI cache (``~/.cache/rfkernels-ci/nerfacc-v0.5.3-tests``), which
is filled by a shallow clone of the v0.5.3 tag when the network allows; otherwise the test skips.

They run in a subprocess from a temporary copy beside a ``conftest.py`` that installs the compat
layer and points their module-level ``device = "cuda:0"`` at the CPU (their only edit-free knob)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT

TAG = "v0.5.3"
REPO = "https://github.com/nerfstudio-project/nerfacc"
CACHE = Path(os.environ.get("RFK_CI_CACHE", Path.home() / ".cache" / "rfkernels-ci")) / f"nerfacc-{TAG}-tests"
EXPECTED = 21  # tests in nerfacc v0.5.3's tests/ folder

CONFTEST = """\
import rfkernels.compat

rfkernels.compat.install()


def pytest_collection_modifyitems(items):
    for item in items:  # the files pick their device in a module global
        if getattr(item.module, "device", None) == "cuda:0":
            item.module.device = "cpu"
"""


def _test_files() -> Path:
    """The folder holding nerfacc's test_*.py (cached; fetched once if missing), or skip."""
    given = os.environ.get("RFK_NERFACC_TESTS")
    if given:
        return Path(given)
    if not any(CACHE.glob("test_*.py")):
        tmp = CACHE.with_name(CACHE.name + ".clone")
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = ["git", "clone", "-q", "--depth", "1", "--branch", TAG, REPO, str(tmp)]
        try:
            subprocess.run(cmd, check=True, timeout=120, capture_output=True)
        except (OSError, subprocess.SubprocessError) as exc:
            pytest.skip(f"nerfacc {TAG} tests not cached in {CACHE} and not fetchable: {exc}")
        CACHE.mkdir(parents=True, exist_ok=True)
        for f in (tmp / "tests").glob("test_*.py"):
            shutil.copy(f, CACHE / f.name)
        shutil.rmtree(tmp, ignore_errors=True)
    return CACHE


@pytest.mark.slow
def test_nerfacc_own_tests_pass_through_install(tmp_path):
    src = _test_files()
    for f in src.glob("test_*.py"):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    tail = proc.stdout[-4000:]
    assert proc.returncode == 0, tail
    assert f"{EXPECTED} passed" in tail, tail
