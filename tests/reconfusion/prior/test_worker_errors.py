"""An unreadable example ends ``train-prior`` promptly with the file and the reason (exit status 2),
with 0, 1 or 2 DataLoader workers, every worker reaped and the last saved state kept; with
``--max-bad-examples N`` the first N are left out and logged. Each run is a separate process with a
timeout: a run that does not exit fails the test instead of hanging it (the hang was at the
interpreter's exit, waiting for workers that ignore SIGTERM, so it is invisible in-process)."""

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.helpers.paths import ROOT, SHARED_DATA
from tests.helpers.prior_formats import write_co3d, write_colmap

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "lego").is_dir(), reason="needs shared/data/lego")

# measured here: a 3-step tiny run in a fresh process takes 8-11 s, mostly importing torch
EXIT_WITHIN_S = 60


def _co3d(root):
    write_co3d(root, n=4, sequences=1)
    return f"co3d:{root / 'lego_cat'}", root / "lego_cat" / "100_seq" / "images" / "frame000002.png"


def _colmap(root):
    write_colmap(root, n=4)
    return f"colmap:{root}", root / "images" / "view_002.png"


SOURCES = {"co3d": _co3d, "colmap": _colmap}


def _run(data: str, out, *flags: str) -> subprocess.CompletedProcess:
    """``reconfusion train-prior`` in its own session; after it exits, no process of that session
    (a worker) may be left."""
    cmd = [
        sys.executable,
        "-m",
        "reconfusion",
        "train-prior",
        "--data",
        data,
        "--tiny",
        "--out",
        str(out),
        "--batch-size",
        "1",
        "--no-progress",
        "--device",
        "cpu",
        *flags,
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        out_text, err_text = proc.communicate(timeout=EXIT_WITHIN_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"train-prior did not exit within {EXIT_WITHIN_S} s: {' '.join(cmd)}")
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # every worker reaped
    return subprocess.CompletedProcess(cmd, proc.returncode, out_text, err_text)


@pytest.mark.parametrize("workers", [0, 1, 2])
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_missing_image_ends_the_run_with_its_name(source, workers, tmp_path):
    data, image = SOURCES[source](tmp_path / "data")
    image.unlink()
    res = _run(data, tmp_path / "run", "--steps", "3", "--num-workers", str(workers))
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last == f"reconfusion: error: image not found: {image}"


def test_the_last_saved_state_is_kept(tmp_path):
    data, image = _co3d(tmp_path / "data")
    run = tmp_path / "run"
    assert _run(data, run, "--steps", "1", "--num-workers", "1").returncode == 0
    saved = json.loads((run / "latest.json").read_text())
    files = sorted(p.relative_to(run) for p in (run / saved["dir"]).rglob("*"))
    image.unlink()
    res = _run(data, run, "--steps", "4", "--num-workers", "2")
    assert res.returncode == 2 and str(image) in res.stderr
    assert json.loads((run / "latest.json").read_text()) == saved
    assert sorted(p.relative_to(run) for p in (run / saved["dir"]).rglob("*")) == files


def test_bad_examples_up_to_the_limit_are_left_out_and_logged(tmp_path):
    data, image = _co3d(tmp_path / "data")
    image.unlink()
    res = _run(
        data, tmp_path / "run", "--steps", "40", "--num-workers", "1", "--max-bad-examples", "2", "--log-every", "1000"
    )
    assert res.returncode == 2
    logged = [line for line in res.stderr.splitlines() if line.startswith("bad example")]
    assert logged == [f"bad example {k} of at most 2 left out: image not found: {image}" for k in (1, 2)]
    assert res.stderr.strip().splitlines()[-1] == (
        f"reconfusion: error: image not found: {image} (3 bad examples, more than max_bad_examples=2)"
    )
