"""Iterations/s and peak memory of ``reconfusion reconstruct`` (the CLI, in this process).

    python -m benchmarks.reconstruct_rate --preset base --iterations 300 --out recon.json

Runs the CLI on the embedded 3-view fern (images_32, 126x94; the only copy that travels with the
repository) for a fixed number of iterations, then writes iterations/s (training time only, warm-up
and kernel compilation included), the projected time of the preset's full run, peak CUDA memory and
the CLI's results.json to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.reconstruct_rate", description=__doc__)
    p.add_argument("--preset", default="base")
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--device", default="auto")
    p.add_argument("--downscale", type=float, default=1.0, help="extra image downscale (dry runs on a CPU)")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    from reconfusion.app.cli import main as cli
    from reconfusion.app.runs import DEMO_DATA, DEMO_FACTOR, DEMO_VIEWS
    from reconfusion.config import get_preset

    run_dir = tempfile.mkdtemp(prefix="rfk-recon-")
    args = [
        "reconstruct",
        "--data",
        DEMO_DATA,
        "--factor",
        str(DEMO_FACTOR),
        "--views",
        str(DEMO_VIEWS),
        "--downscale",
        str(a.downscale),
        "--preset",
        a.preset,
        "--iterations",
        str(a.iterations),
        "--device",
        a.device,
        "--no-video",
        "--quiet",
        "--out",
        run_dir,
    ]
    cuda = torch.cuda.is_available() and a.device != "cpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    rc = cli(args)
    wall = time.perf_counter() - t0
    if rc:
        return rc
    res = json.loads((Path(run_dir) / "results.json").read_text())
    it_s = a.iterations / res["train_seconds"]
    full = get_preset(a.preset).iterations
    out = {
        "command": "reconfusion " + " ".join(args[:-2]),
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "preset": a.preset,
        "iterations": a.iterations,
        "train_seconds": res["train_seconds"],
        "iterations_per_s": it_s,
        "full_run_iterations": full,
        "full_run_projected_minutes": full / it_s / 60,
        "peak_cuda_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "wall_seconds": wall,
        "results": res,
    }
    tmp = Path(f"{a.out}.tmp")  # a run cut short never leaves a half-written file at --out
    tmp.write_text(json.dumps(out, indent=2))
    tmp.replace(a.out)
    print(
        f"{a.preset}: {it_s:.2f} it/s over {a.iterations} iterations (warm-up included); full run of {full} "
        f"iterations ~{out['full_run_projected_minutes']:.1f} min; peak CUDA memory "
        f"{out['peak_cuda_memory_mb'] if cuda else 'n/a (CPU)'} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
