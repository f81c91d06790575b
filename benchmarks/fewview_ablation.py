"""Few-view ablation: held-out PSNR at fixed iteration counts for config overrides.

Wall-clock time on a shared machine is noise, so a run is judged by held-out PSNR / SSIM after a
fixed number of iterations (evaluated in the middle of training by a per-step callback of
``reconfusion.reconstruct.train``); the training iterations/s (evaluation excluded) and the load average are
recorded beside them. One JSON line per run is appended to ``--out``::

    nice -n 10 python -m benchmarks.fewview_ablation fern --views 3 --eval-at 750,1500 \\
        --set freq_reg_fraction=0.5 --tag freq0.5 --out ablation.jsonl

The scene split is ``reconfusion benchmark``'s (:func:`reconfusion.app.quality_benchmark.load_pair`).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch


def _summary(m: dict) -> dict:
    """Mean PSNR / SSIM of an evaluation and each test view's PSNR (which views fail)."""
    return {
        "psnr": m["mean"]["psnr"],
        "ssim": m["mean"]["ssim"],
        "psnr_per_view": {str(v["view"]): round(v["psnr"], 3) for v in m["per_view"]},
    }


def main(argv=None) -> int:
    from reconfusion.app.quality_benchmark import load_pair, resolve_scene
    from reconfusion.config import get_preset, parse_overrides, with_overrides
    from reconfusion.evaluation import evaluate
    from reconfusion.reconstruct import train

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scene")
    p.add_argument("--views", type=int, default=3)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--iterations", type=int, default=1500)
    p.add_argument("--eval-at", default="750,1500", help="iteration counts to evaluate at")
    p.add_argument("--set", action="append", default=[], help="config override key=value (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="default")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="JSON-lines file to append to")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    scene, _, split, _ = load_pair(resolve_scene(a.scene), a.views)
    overrides = parse_overrides(a.set)
    cfg = with_overrides(
        get_preset(a.preset).replace(iterations=a.iterations, seed=a.seed, eval_every=0, checkpoint_every=0), overrides
    )
    eval_at = sorted(int(x) for x in a.eval_at.split(","))
    metrics, eval_seconds = {}, [0.0]

    def probe(step):  # after the optimizer step: step.iteration + 1 updates done; the last is evaluated after train()
        done = step.iteration + 1
        if done in eval_at and done < a.iterations:
            t = time.time()
            m = evaluate(step.model, scene, None, chunk=cfg.eval_chunk, log=lambda s: None, progress_bar=False)
            metrics[done] = _summary(m)
            print(json.dumps({"tag": a.tag, "iteration": done, **metrics[done]}), flush=True)  # a long run's progress
            step.model.train()
            eval_seconds[0] += time.time() - t

    t0 = time.time()
    res = train(scene, cfg, None, callbacks=[probe], progress_bar=False, log=lambda s: None)
    train_seconds = time.time() - t0 - eval_seconds[0]
    if a.iterations in eval_at:
        m = evaluate(res.model, scene, None, chunk=cfg.eval_chunk, log=lambda s: None, progress_bar=False)
        metrics[a.iterations] = _summary(m)
    rec = {
        "tag": a.tag,
        "scene": scene.name,
        "views": a.views,
        "seed": a.seed,
        "iterations": a.iterations,
        "preset": a.preset,
        "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
        "metrics": {str(k): v for k, v in sorted(metrics.items())},
        "train_seconds": train_seconds,
        "it_per_s": a.iterations / train_seconds,
        "loadavg_end": os.getloadavg()[0],
        "threads": a.threads,
        "split": split,
        "train_ids": scene.train_ids,
        "test_ids": scene.test_ids,
        "resolution": [scene.width, scene.height],
    }
    with open(a.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(json.dumps(rec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
