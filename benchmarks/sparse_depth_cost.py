"""The sparse-depth term's cost, measured inside one run: steps with and without it interleaved.

On a shared machine two runs side by side see different loads, so the term is switched on every
other step of one run (``every=2``) and the per-step cost is the difference of the median step
times of the two kinds of step (the first ``--skip`` steps, compile warm-up, excluded). Matching,
triangulation and the targets are timed once, uncached. The fraction reported is what the term
adds to a ``--full``-iteration run (5000, the issue's measure) without it::

    OMP_NUM_THREADS=1 python -m benchmarks.sparse_depth_cost horns --views 3 --iterations 400 \\
        --out benchmarks/results/fewview_horns/sparse_depth_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch


def main(argv=None) -> int:
    from reconfusion.app.quality_benchmark import load_pair, resolve_scene
    from reconfusion.config import SPARSE_DEPTH_WEIGHT, get_preset, parse_overrides, resolve, with_overrides
    from reconfusion.losses.terms import sparse_depth_term
    from reconfusion.reconstruct import train

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scene")
    p.add_argument("--views", type=int, default=3)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--iterations", type=int, default=400, help="steps timed (half of them with the term)")
    p.add_argument("--skip", type=int, default=40, help="first steps left out (compile warm-up)")
    p.add_argument("--full", type=int, default=5000, help="run length the fraction refers to")
    p.add_argument("--set", action="append", default=[], help="config override key=value (repeatable)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="JSON file to write")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    scene, _, split, _ = load_pair(resolve_scene(a.scene), a.views)
    overrides = {"sparse_depth_weight": SPARSE_DEPTH_WEIGHT, **parse_overrides(a.set)}
    cfg = with_overrides(
        get_preset(a.preset).replace(iterations=a.iterations, eval_every=0, checkpoint_every=0), overrides
    )
    t = time.perf_counter()
    term = sparse_depth_term(resolve(cfg, scene.space), scene, None, log=lambda s: None)
    setup_s = time.perf_counter() - t
    if term is None:
        raise SystemExit(f"{scene.name}: no sparse-depth targets; nothing to time")
    term.every = 2  # on even steps only

    stamps = []
    t_start = time.perf_counter()
    train(
        scene,
        cfg.replace(sparse_depth_weight=0.0),
        None,
        extra_terms=[term],
        callbacks=[lambda info: stamps.append((info.iteration, time.perf_counter()))],
        progress_bar=False,
        log=lambda s: None,
    )
    steps = [(it, t1 - t0) for (_, t0), (it, t1) in zip([(None, t_start), *stamps[:-1]], stamps) if it >= a.skip]
    on = statistics.median(dt for it, dt in steps if it % 2 == 0)
    off = statistics.median(dt for it, dt in steps if it % 2 == 1)
    extra = setup_s + a.full * (on - off)
    rec = {
        "scene": scene.name,
        "views": a.views,
        "preset": a.preset,
        "split": split,
        "train_ids": scene.train_ids,
        "resolution": [scene.width, scene.height],
        "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
        "timed_steps": len(steps),
        "setup_seconds": setup_s,  # matching + triangulation + targets, uncached
        "step_seconds_with_term": on,
        "step_seconds_without_term": off,
        "full_iterations": a.full,
        "extra_fraction_of_full_run": extra / (a.full * off),
        "setup_fraction_of_full_run": setup_s / (a.full * off),
        "threads": a.threads,
        "loadavg_end": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(rec, indent=1))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rec, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
