"""Slow: nerfstudio 1.1.5 on rfkernels, as a user runs it. The packages of requirements-nerfstudio.txt
are installed with --no-deps into a temporary folder (wheels cached in ~/.cache/rfkernels-ci/wheels;
the installed torch is never touched), fern is exported with ``reconfusion export-nerfstudio``, and
``python -m rfkernels.compat $(which ns-train) <method> --machine.device-type cpu`` trains 5
iterations of nerfacto and of instant-ngp (our OccGridEstimator: real nerfacc has no CPU path).
Two things nerfstudio needs are missing offline with a CPU torch, and a sitecustomize in the test's
PYTHONPATH supplies them: torchvision's compiled ops (a CUDA build: its meta registrations are
skipped) and LPIPS's AlexNet weights (an evaluation metric, replaced by a zero metric)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT, SHARED_DATA

pytestmark = pytest.mark.slow

WHEELS = Path.home() / ".cache" / "rfkernels-ci" / "wheels"
REQUIREMENTS = ROOT / "requirements-nerfstudio.txt"
FERN = SHARED_DATA / "fern"
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


def _pip(*args):
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def nerfstudio_env(tmp_path_factory):
    """(PYTHONPATH, ns-train path, exported fern): packages from the wheel cache (filled from the index
    on first use), installed with --no-deps into a temporary target."""
    if not FERN.is_dir():
        pytest.skip(f"shared fern scene not found at {FERN}")
    WHEELS.mkdir(parents=True, exist_ok=True)
    req = ["--no-deps", "--only-binary", ":all:", "-r", str(REQUIREMENTS)]
    target = tmp_path_factory.mktemp("nerfstudio")
    done = _pip("install", "-q", "--no-index", "--find-links", str(WHEELS), "--target", str(target), *req)
    if done.returncode != 0:  # not all cached yet: fetch the wheels (no dependencies) and retry
        fetched = _pip("download", "-q", "-d", str(WHEELS), *req)
        if fetched.returncode != 0:
            pytest.skip(f"nerfstudio's wheels are neither cached nor downloadable: {fetched.stderr[-300:]}")
        done = _pip("install", "-q", "--no-index", "--find-links", str(WHEELS), "--target", str(target), *req)
    assert done.returncode == 0, done.stderr[-2000:]
    shim = tmp_path_factory.mktemp("shim")
    (shim / "sitecustomize.py").write_text(SITECUSTOMIZE)
    scene = tmp_path_factory.mktemp("fern_ns") / "fern"
    from reconfusion.app.cli import main

    assert main(["export-nerfstudio", str(FERN), str(scene)]) == 0
    return os.pathsep.join([str(shim), str(target), str(ROOT)]), target / "bin" / "ns-train", scene


# instant-ngp's defaults (a 4-level 128^3 occupancy grid, steps of 1/1000 of the box diagonal to a far
# plane at 1000) put thousands of samples on each ray: minutes per iteration on one CPU thread
NGP_ON_A_CPU = ["--pipeline.model.grid-resolution", "32", "--pipeline.model.grid-levels", "1"]
NGP_ON_A_CPU += ["--pipeline.model.render-step-size", "0.05", "--pipeline.model.far-plane", "8"]


@pytest.mark.parametrize("method,options", [("nerfacto", []), ("instant-ngp", NGP_ON_A_CPU)])
def test_ns_train_runs_on_rfkernels(nerfstudio_env, method, options, tmp_path):
    pythonpath, ns_train, scene = nerfstudio_env
    env = {**os.environ, "PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1"}
    env.pop("RFKERNELS_COMPAT", None)
    steps = ["--steps-per-eval-image", "1000", "--steps-per-eval-batch", "1000"]
    steps += ["--steps-per-eval-all-images", "100000", "--steps-per-save", "100000"]
    cmd = [sys.executable, "-m", "rfkernels.compat", str(ns_train), method, "--machine.device-type", "cpu"]
    cmd += ["--vis", "tensorboard", "--max-num-iterations", "5", *steps, *options]
    cmd += ["--pipeline.datamanager.train-num-rays-per-batch", "256", "--output-dir", str(tmp_path / "out")]
    cmd += ["nerfstudio-data", "--data", str(scene)]
    run = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    assert "Training Finished" in log
    assert list((tmp_path / "out").rglob("config.yml"))
