"""How good the few-view triangulated points are: their depth against a dense-view model's rendered depth.

Settings compared: SIFT image enlargement and the epipolar band of :func:`reconfusion.geometry.triangulate_views`.

The points of a few-view split (:func:`reconfusion.geometry.triangulate_views`) are compared with the
expected depth that a model trained on every non-test view renders along the same pixel rays, in
the renderer's ``s`` units and as a relative error of the metric depth (NDC: ``z = near / (1 - s)``
for the linear spacing). One JSON record per run::

    python -m benchmarks.sparse_points_check fern --views 3 --dense-iterations 1500 --settings 1:0,2:0,2:1 \\
        --out benchmarks/results/fewview_horns/points_vs_dense_fern.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def _depth_errors(scene, model, points, cfg) -> dict:
    """Statistics of the points' target ``s`` against the model's rendered expected ``s``."""
    from reconfusion.losses.sparse_depth import depth_targets
    from reconfusion.render import render_rays

    targets = depth_targets(scene, points, cfg.spacing, cfg.sparse_depth_min_sigma)
    out = render_rays(model, targets.rays, outputs=("depth", "opacity"))
    # the expected s of the ray's termination given that it terminates (the renderer's depth is not
    # divided by the opacity: light that reaches the learned background counts as s = 0 there)
    opacity = out["opacity"].double()
    rendered = out["depth"].double() / opacity.clamp_min(1e-6)
    s = targets.s.double()
    ds = (rendered - s).abs()
    stats = {
        "targets": len(targets),
        "opacity_median": float(opacity.median()),
        "abs_s_median": float(ds.median()),
        "abs_s_p90": float(ds.quantile(0.9)),
        "s_bias_median": float((rendered - s).median()),
    }
    if scene.space == "ndc" and cfg.spacing == "linear":
        z_pred, z_pt = 1.0 / (1.0 - rendered).clamp_min(1e-6), 1.0 / (1.0 - s)
        rel = ((z_pred - z_pt) / z_pt).abs()
        stats.update(
            rel_depth_median=float(rel.median()),
            rel_depth_p90=float(rel.quantile(0.9)),
            within_5pct=float((rel < 0.05).double().mean()),
        )
    return stats


def main(argv=None) -> int:
    from reconfusion.app.quality_benchmark import load_pair, resolve_scene
    from reconfusion.config import get_preset, resolve
    from reconfusion.evaluation import evaluate
    from reconfusion.geometry import RejectionRules, triangulate_views
    from reconfusion.reconstruct import train

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scene")
    p.add_argument("--views", type=int, default=3)
    p.add_argument("--dense-iterations", type=int, default=1500)
    p.add_argument(
        "--settings", default="1:0,2:0,2:1", help="matching settings to compare: upsample:epipolar_px, comma-separated"
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    few, _, split, _ = load_pair(resolve_scene(a.scene), a.views)
    dense = few.replace(train_ids=[i for i in range(few.images.shape[0]) if i not in set(few.test_ids)])
    cfg = get_preset("tiny").replace(iterations=a.dense_iterations, eval_every=0, checkpoint_every=0)
    t0 = time.time()
    model = train(dense, cfg, None, progress_bar=False, log=lambda s: None).model
    seconds = time.time() - t0
    quality = evaluate(model, dense, None, chunk=cfg.eval_chunk, log=lambda s: None, progress_bar=False)["mean"]
    rcfg = resolve(cfg, few.space)
    rules = RejectionRules(rcfg.sparse_depth_max_reprojection_px, rcfg.sparse_depth_min_angle_deg)
    per_setting = {}
    for item in a.settings.split(","):
        up, epipolar_px = int(item.split(":")[0]), float(item.split(":")[1])
        t = time.time()
        points = triangulate_views(few, rules, upsample=up, epipolar_px=epipolar_px)
        seconds_points = time.time() - t
        errors = _depth_errors(few, model, points, rcfg)
        per_setting[f"upsample_{up}_epipolar_{epipolar_px:g}px"] = {
            "points": points.stats["kept_points"],
            "seconds": seconds_points,
            **errors,
        }
    record = {
        "scene": few.name,
        "views": a.views,
        "train_ids": few.train_ids,
        "split": split,
        "dense_model": {
            "train_ids": dense.train_ids,
            "iterations": a.dense_iterations,
            "preset": "tiny",
            "test_psnr": quality["psnr"],
            "test_ssim": quality["ssim"],
            "train_seconds": seconds,
        },
        "points": per_setting,
    }
    with open(a.out, "w") as f:
        json.dump(record, f, indent=1)
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
