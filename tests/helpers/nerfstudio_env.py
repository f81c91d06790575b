"""nerfstudio 1.1.5 for the slow tests, installed as a user would: the packages of
requirements-nerfstudio.txt with ``--no-deps`` into a temporary folder (wheels cached in
~/.cache/rfkernels-ci/wheels; the installed torch is never touched), plus this checkout's package
metadata (``setup.py egg_info``), so that nerfstudio discovers the ``reconfusion-fewview`` entry point.

Two things nerfstudio needs are missing offline with a CPU torch, and a sitecustomize in the
PYTHONPATH supplies them: torchvision's compiled ops (a CUDA build: its meta registrations are
skipped) and LPIPS's AlexNet weights (an evaluation metric of nerfacto, replaced by a zero metric).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .paths import ROOT

WHEELS = Path.home() / ".cache" / "rfkernels-ci" / "wheels"
REQUIREMENTS = ROOT / "requirements-nerfstudio.txt"
SITECUSTOMIZE = """
import sys, types
import torch
sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
import torchmetrics.image.lpip as lpip

class NoLPIPS(torch.nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, a, b):
        return torch.zeros((), device=a.device)

lpip.LearnedPerceptualImagePatchSimilarity = NoLPIPS
"""


@dataclass
class NerfstudioEnv:
    pythonpath: str  # sitecustomize, package metadata, nerfstudio's packages, this checkout
    bin: Path  # ns-train, ns-eval, ...

    def command(self, script: str) -> list[str]:
        """``[python, <bin>/script]``: the console script run by this interpreter."""
        return [sys.executable, str(self.bin / script)]


def _pip(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=900)


def install_nerfstudio(root: Path) -> NerfstudioEnv | str:
    """Install into folders under ``root`` -> the environment, or why it cannot be had (a skip reason)."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    req = ["--no-deps", "--only-binary", ":all:", "-r", str(REQUIREMENTS)]
    target = root / "site"
    offline = ["install", "-q", "--no-index", "--find-links", str(WHEELS), "--target", str(target), *req]
    done = _pip(*offline)
    if done.returncode != 0:  # not all cached yet: fetch the wheels (no dependencies) and retry
        fetched = _pip("download", "-q", "-d", str(WHEELS), *req)
        if fetched.returncode != 0:
            return f"nerfstudio's wheels are neither cached nor downloadable: {fetched.stderr[-300:]}"
        done = _pip(*offline)
    if done.returncode != 0:
        raise RuntimeError(f"pip install --no-deps -r {REQUIREMENTS.name} failed:\n{done.stderr[-2000:]}")
    shim, meta = root / "shim", root / "meta"
    shim.mkdir()
    meta.mkdir()
    (shim / "sitecustomize.py").write_text(SITECUSTOMIZE)
    egg = subprocess.run(
        [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(meta)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if egg.returncode != 0:
        raise RuntimeError(f"setup.py egg_info failed:\n{egg.stderr[-2000:]}")
    paths = [shim, meta, target, ROOT]
    return NerfstudioEnv(":".join(str(p) for p in paths), target / "bin")


def nerfstudio_or_skip(root: Path, scene: Path) -> NerfstudioEnv:
    """:func:`install_nerfstudio` under ``root`` for a test on the shared ``scene``; skips the test (with
    the reason) when the scene or nerfstudio's wheels are not to be had."""
    import pytest

    if not scene.is_dir():
        pytest.skip(f"shared scene not found at {scene}")
    env = install_nerfstudio(root)
    if isinstance(env, str):
        pytest.skip(env)
    return env


__all__ = ["NerfstudioEnv", "SITECUSTOMIZE", "install_nerfstudio", "nerfstudio_or_skip"]
