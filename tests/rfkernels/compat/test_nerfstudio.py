"""Slow: nerfstudio 1.1.5 on rfkernels, as a user runs it (installed by tests/helpers/nerfstudio_env.py:
``--no-deps`` into a temporary folder, the installed torch never touched): fern is exported with
``reconfusion export-nerfstudio``, and ``python -m rfkernels.compat $(which ns-train) <method>
--machine.device-type cpu`` trains 5 iterations of nerfacto and of instant-ngp (our
OccGridEstimator: real nerfacc has no CPU path)."""

import os
import subprocess
import sys

import pytest

from tests.helpers.nerfstudio_env import nerfstudio_or_skip
from tests.helpers.paths import SHARED_DATA

pytestmark = pytest.mark.slow

FERN = SHARED_DATA / "fern"


@pytest.fixture(scope="module")
def nerfstudio_env(tmp_path_factory):
    """(nerfstudio environment, exported fern)."""
    env = nerfstudio_or_skip(tmp_path_factory.mktemp("nerfstudio"), FERN)
    scene = tmp_path_factory.mktemp("fern_ns") / "fern"
    from reconfusion.app.cli import main

    assert main(["export-nerfstudio", str(FERN), str(scene)]) == 0
    return env, scene


# instant-ngp's defaults (a 4-level 128^3 occupancy grid, steps of 1/1000 of the box diagonal to a far
# plane at 1000) put thousands of samples on each ray: minutes per iteration on one CPU thread
NGP_ON_A_CPU = ["--pipeline.model.grid-resolution", "32", "--pipeline.model.grid-levels", "1"]
NGP_ON_A_CPU += ["--pipeline.model.render-step-size", "0.05", "--pipeline.model.far-plane", "8"]


@pytest.mark.parametrize("method,options", [("nerfacto", []), ("instant-ngp", NGP_ON_A_CPU)])
def test_ns_train_runs_on_rfkernels(nerfstudio_env, method, options, tmp_path):
    ns, scene = nerfstudio_env
    env = {**os.environ, "PYTHONPATH": ns.pythonpath, "OMP_NUM_THREADS": "1"}
    env.pop("RFKERNELS_COMPAT", None)
    steps = ["--steps-per-eval-image", "1000", "--steps-per-eval-batch", "1000"]
    steps += ["--steps-per-eval-all-images", "100000", "--steps-per-save", "100000"]
    cmd = [sys.executable, "-m", "rfkernels.compat", str(ns.bin / "ns-train"), method, "--machine.device-type", "cpu"]
    cmd += ["--vis", "tensorboard", "--max-num-iterations", "5", *steps, *options]
    cmd += ["--pipeline.datamanager.train-num-rays-per-batch", "256", "--output-dir", str(tmp_path / "out")]
    cmd += ["nerfstudio-data", "--data", str(scene)]
    run = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    assert "Training Finished" in log
    assert list((tmp_path / "out").rglob("config.yml"))
