"""Multi-process prior training on the CPU (gloo, ``python -m torch.distributed.run``) and a run
interrupted by SIGTERM that resumes bit for bit."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers.paths import ROOT as PATHS_ROOT

ROOT = PATHS_ROOT
WORKER = ROOT / "tests" / "reconfusion" / "prior" / "ddp_worker.py"


def _env():
    return {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }


def _torchrun(out, report, steps):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(WORKER),
        str(out),
        str(report),
        str(steps),
    ]
    p = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return [json.loads((report / f"rank{r}.json").read_text()) for r in range(2)], [
        load_file(str(report / f"rank{r}.safetensors")) for r in range(2)
    ]


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_processes_stay_in_sync_on_disjoint_examples(tmp_path):
    (r0, r1), (p0, p1) = _torchrun(tmp_path / "out", tmp_path / "rep", 3)
    assert r0["step"] == r1["step"] == 3
    assert _equal(p0, p1)  # DDP: identical parameters on both ranks (gradient accumulation 2: no_sync path)
    e0, e1 = {tuple(e) for e in r0["examples"]}, {tuple(e) for e in r1["examples"]}
    # 3 steps x 2 micro-batches x 2 examples per rank, (epoch, position) pairs: no overlap
    assert len(e0) == len(e1) == 12 and not e0 & e1
    assert {e for e, _ in e0} == {0, 1}  # 4 global batches per epoch: the run crossed into epoch 1
    assert r0["losses"] != r1["losses"]  # each rank computed its own shard
    assert (tmp_path / "out" / "ema" / "model.safetensors").is_file()


def test_resumed_two_process_run_equals_the_uninterrupted_one(tmp_path):
    _, (full, _) = _torchrun(tmp_path / "a", tmp_path / "rep_a", 4)
    _torchrun(tmp_path / "b", tmp_path / "rep_b1", 2)
    (r0, r1), (p0, p1) = _torchrun(tmp_path / "b", tmp_path / "rep_b2", 4)
    assert r0["resumed_from"] == r1["resumed_from"] == 2 and r0["step"] == 4
    assert _equal(p0, full) and _equal(p1, full)


def _write_config(tmp_path, steps, num_workers=2):
    from tests.helpers.prior_formats import write_co3d, write_realestate

    data = tmp_path / "data"
    write_co3d(data / "co3d", n=4, sequences=2)
    write_realestate(data / "re10k", n=6)
    cfg = {
        "data": [
            {"format": "co3d", "path": str(data / "co3d"), "weight": 2.0},
            {"format": "realestate", "path": str(data / "re10k"), "weight": 1.0},
        ],
        "model": {"tiny": True, "tiny_latent_size": 8},
        "steps": steps,
        "batch_size": 2,
        "grad_accum": 2,
        "lr": 1e-3,
        "ema": 0.9,
        "checkpoint_every": 100,
        "log_every": 1,
        "num_workers": num_workers,
        "device": "cpu",
        "epoch_size": 64,
    }
    path = tmp_path / "run.json"
    path.write_text(json.dumps(cfg))
    return path


def _cli(config, out):
    return [
        sys.executable,
        "-m",
        "reconfusion",
        "train-prior",
        "--config",
        str(config),
        "--out",
        str(out),
        "--no-progress",
    ]


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs SIGTERM")
def test_sigterm_then_same_command_resumes_bit_for_bit(tmp_path):
    """CO3D + RealEstate10K fixtures mixed 2:1, 2 decoding workers: SIGTERM mid-run saves the state;
    the same command continues; the result equals an uninterrupted run's bit for bit."""
    from tests.helpers.prior_formats import LEGO

    if not LEGO.is_dir():
        pytest.skip("shared data (lego) not present")
    steps = 10
    config = _write_config(tmp_path, steps)
    ref = subprocess.run(
        _cli(config, tmp_path / "ref"), env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert ref.returncode == 0, ref.stderr[-3000:]
    assert "examples/s" in ref.stderr and "data wait" in ref.stderr
    rec = [json.loads(x) for x in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rec] == list(range(1, steps + 1)) and rec[-1]["examples_per_s"] > 0

    p = subprocess.Popen(_cli(config, tmp_path / "run"), env=_env(), cwd=ROOT, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in p.stderr:
        lines.append(line)
        if line.startswith("step 2/"):
            p.send_signal(signal.SIGTERM)
            break
    rest, _ = p.communicate(timeout=300)
    assert p.returncode == 0, "".join(lines) + (rest or "")
    state = json.loads((tmp_path / "run" / "latest.json").read_text())
    assert 2 <= state["step"] < steps, state
    again = subprocess.run(
        _cli(config, tmp_path / "run"), env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from {tmp_path / 'run'} at step {state['step']}" in again.stderr
    for name in ("last", "ema"):
        a = load_file(str(tmp_path / "ref" / name / "model.safetensors"))
        b = load_file(str(tmp_path / "run" / name / "model.safetensors"))
        assert _equal(a, b), name
    assert json.loads((tmp_path / "run" / "run.json").read_text())["steps"] == steps


def test_co3d_and_realestate_fixtures_train_from_a_config(tmp_path, caplog):
    """`reconfusion train-prior --config run.json` in-process: CO3D + RealEstate10K mixed 2:1, images
    decoded by 2 workers; throughput logged; the run config written; a restart with more steps resumes."""
    import logging

    from reconfusion.app.cli import main
    from tests.helpers.prior_formats import LEGO

    if not LEGO.is_dir():
        pytest.skip("shared data (lego) not present")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = _write_config(tmp_path, 3)
        with caplog.at_level(logging.INFO):
            assert main(["train-prior", "--config", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
        assert any("examples/s" in r.getMessage() and "data wait" in r.getMessage() for r in caplog.records)
        rec = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rec] == [1, 2, 3] and all(r["examples_per_s"] > 0 for r in rec)
        assert 0 <= rec[-1]["data_wait"] <= 1
        run = json.loads((tmp_path / "run" / "run.json").read_text())
        assert run["data"][0]["format"] == "co3d" and run["grad_accum"] == 2
        assert json.loads((tmp_path / "run" / "latest.json").read_text())["step"] == 3
        caplog.clear()
        with caplog.at_level(logging.INFO):
            assert (
                main(
                    [
                        "train-prior",
                        "--config",
                        str(config),
                        "--out",
                        str(tmp_path / "run"),
                        "--no-progress",
                        "--steps",
                        "4",
                        "--lr",
                        "5e-4",
                    ]
                )
                == 0
            )
        msgs = " ".join(r.getMessage() for r in caplog.records)
        assert "resumed from" in msgs and "at step 3" in msgs and "lr=0.0005 (saved 0.001)" in msgs
        assert json.loads((tmp_path / "run" / "latest.json").read_text())["step"] == 4
    finally:
        torch.set_num_threads(n)


def test_sigterm_saves_and_the_rerun_is_bit_for_bit(tmp_path):
    """In-process: SIGTERM (sent to this process at step 2) stops after that step with the state
    saved; running again continues; weights equal the uninterrupted run's bit for bit."""
    from reconfusion.data.index import SceneIndex
    from reconfusion.prior import ReconFusionPrior
    from reconfusion.prior.dataset import PriorExamples
    from reconfusion.prior.run_config import TrainConfig
    from reconfusion.prior.train import train_prior
    from tests.helpers.prior_scenes import synthetic_scene

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = TrainConfig(steps=5, batch_size=2, lr=1e-3, ema=0.9, checkpoint_every=100, log_every=100, num_workers=0)

    def go(out, on_step=None):
        torch.manual_seed(0)
        prior = ReconFusionPrior.tiny(latent_size=8)
        ds = PriorExamples([SceneIndex.from_scene(synthetic_scene(5, 32, seed=i)) for i in range(2)], 32, 2, (1, 2))
        return train_prior(prior, ds, cfg, str(out), on_step=on_step)

    def kill_at_2(step, used, loss):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    try:
        ref = go(tmp_path / "ref")
        cut = go(tmp_path / "run", kill_at_2)
        assert cut.interrupted and cut.step == 2
        assert json.loads((tmp_path / "run" / "latest.json").read_text())["step"] == 2
        rest = go(tmp_path / "run")
        assert rest.resumed_from == 2 and not rest.interrupted and cut.losses + rest.losses == ref.losses
        for name in ("last", "ema"):
            assert _equal(
                load_file(str(tmp_path / "ref" / name / "model.safetensors")),
                load_file(str(tmp_path / "run" / name / "model.safetensors")),
            )
    finally:
        torch.set_num_threads(n)
