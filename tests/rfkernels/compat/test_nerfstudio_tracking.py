"""Slow: nerfacto's first iterations on rfkernels track nerfstudio's own torch path.

The torch path is nerfstudio 1.1.5 as it runs on a CPU without tiny-cuda-nn: its torch hash grid and
MLPs, with nerfacc 0.5.2 (its pin, installed with --no-deps into a folder of its own). Ours is the
same command through ``python -m rfkernels.compat`` (the tcnn and nerfacc layers). The two build
different modules (tcnn's fused network vs nerfstudio's torch MLPs) with different initialisations,
so equal seeds cannot give equal losses; what can be asked is that ours differs from the torch path
no more than the torch path differs from itself under another seed. The measure: the mean absolute
difference of log photometric loss (``rgb_loss``, every step) between two runs, after a 5-step
moving average (single batches of 1024 rays are noisy)."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.nerfstudio_env import WHEELS, nerfstudio_or_skip
from tests.helpers.paths import SHARED_DATA

pytestmark = pytest.mark.slow

FERN = SHARED_DATA / "fern"
STEPS = 40
SMOOTH = 5
# Ours may differ from the torch path by up to twice the torch path's own seed-to-seed difference: a
# reseed draws the same initialisation distributions, ours draws tcnn's (another MLP and grid init),
# so a larger gap is expected; and one pair of seeds estimates that spread only roughly.
SLACK = 2.0

READ_LOSSES = """
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
acc.Reload()
print(json.dumps([e.value for e in acc.Scalars("Train Loss Dict/rgb_loss")]))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``{name: [rgb_loss per step]}`` for torch (seeds 42 and 43) and rfkernels (seed 42)."""
    root = tmp_path_factory.mktemp("nerfstudio")
    ns = nerfstudio_or_skip(root, FERN)
    nerfacc = root / "nerfacc052"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(nerfacc)]
    got = subprocess.run([*pip, "--no-index", "--find-links", str(WHEELS), "nerfacc==0.5.2"], capture_output=True)
    if got.returncode != 0 and subprocess.run([*pip, "nerfacc==0.5.2"], capture_output=True).returncode != 0:
        pytest.skip("nerfacc 0.5.2 (nerfstudio's pin) is neither cached nor downloadable")
    scene = root / "fern_ns"
    from reconfusion.app.cli import main

    assert main(["export-nerfstudio", str(FERN), str(scene)]) == 0
    torch_path = f"{nerfacc}{os.pathsep}{ns.pythonpath}"
    out = {}
    for name, seed, pythonpath, compat in [
        ("torch", 42, torch_path, []),
        ("torch_seed43", 43, torch_path, []),
        ("rfkernels", 42, ns.pythonpath, ["-m", "rfkernels.compat"]),
    ]:
        env = {**os.environ, "PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1"}
        env.pop("RFKERNELS_COMPAT", None)
        run_dir = root / name
        cmd = [sys.executable, *compat, str(ns.bin / "ns-train"), "nerfacto"]
        cmd += ["--machine.device-type", "cpu", "--machine.seed", str(seed), "--vis", "tensorboard"]
        cmd += ["--max-num-iterations", str(STEPS), "--logging.steps-per-log", "1", "--output-dir", str(run_dir)]
        cmd += ["--steps-per-eval-image", "100000", "--steps-per-eval-batch", "100000"]
        cmd += ["--steps-per-eval-all-images", "100000", "--steps-per-save", "100000"]
        cmd += ["--pipeline.datamanager.train-num-rays-per-batch", "1024", "nerfstudio-data", "--data", str(scene)]
        done = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        if name == "torch":  # the torch path really ran on nerfacc 0.5.2 without tcnn
            check = "import nerfacc, nerfstudio.utils.external as e; print(nerfacc.__version__, e.TCNN_EXISTS)"
            probe = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True)
            assert probe.stdout.split()[-2:] == ["0.5.2", "False"], probe.stdout + probe.stderr
        events = next(run_dir.rglob("events.out.tfevents.*")).parent
        read = subprocess.run([sys.executable, "-c", READ_LOSSES, str(events)], env=env, capture_output=True, text=True)
        assert read.returncode == 0, read.stderr[-2000:]
        out[name] = json.loads(read.stdout)
    return out


def _log_smoothed(losses):
    import math

    logs = [math.log(v) for v in losses]
    return [sum(logs[i : i + SMOOTH]) / SMOOTH for i in range(len(logs) - SMOOTH + 1)]


def _distance(a, b):
    a, b = _log_smoothed(a), _log_smoothed(b)
    return sum(abs(x - y) for x, y in zip(a, b)) / len(a)


def test_nerfacto_losses_track_the_torch_path(runs):
    assert all(len(v) == STEPS for v in runs.values()), {k: len(v) for k, v in runs.items()}
    ours, own = _distance(runs["rfkernels"], runs["torch"]), _distance(runs["torch_seed43"], runs["torch"])
    print(f"log-loss distance: rfkernels vs torch {ours:.3f}, torch seed 43 vs 42 {own:.3f}")
    first, last = _log_smoothed(runs["rfkernels"])[0], _log_smoothed(runs["rfkernels"])[-1]
    assert last < first  # it learns
    assert ours <= SLACK * own
