"""Metrics of a trained model over a scene's held-out views (``evaluate``), one view's render
(``render_view``), and :func:`periodic_evaluation`, the loop callback that evaluates every ``n`` steps."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import torch

from .data.scene import Scene
from .metrics import LPIPS_ABSENT, image_metrics
from .video import depth_image, save_image, side_by_side, to_uint8


def render_view(
    model: torch.nn.Module, scene: Scene, idx: int, chunk: int | None = None, device="cpu", bar=None
) -> dict:
    """Render training/test view ``idx`` (``chunk`` rays at a time, default the model's
    ``cfg.eval_chunk``) -> ``{"rgb": [H, W, 3], "depth": [H, W], "opacity": [H, W]}``."""
    from .render import render_image

    return render_image(
        model,
        scene.view_rays(idx),
        scene.height,
        scene.width,
        chunk,
        device,
        outputs=("rgb", "depth", "opacity"),
        bar=bar,
    )


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    scene: Scene,
    out_dir: str | None,
    *,
    chunk: int | None = None,
    device="cpu",
    lpips_path: str | None = None,
    log: Callable[[str], None] = print,
    progress_bar: bool = True,
) -> dict:
    """Metrics on ``scene.test_ids``; with ``out_dir``, writes ``results.json`` and per view
    ``test_<id>.png`` (render | ground truth | error) and ``depth_<id>.png``."""
    if not scene.test_ids:
        raise ValueError("scene has no test views to evaluate")
    lpips_fn = None
    if lpips_path:
        from .metrics import LPIPS

        lpips_fn = LPIPS(lpips_path, device=device)
    else:
        log(LPIPS_ABSENT)
    from .render import progress_bar as make_bar

    per_view, t0 = [], time.time()
    bar = make_bar(len(scene.test_ids) * scene.height * scene.width, "evaluate", progress_bar)
    for i in scene.test_ids:
        r = render_view(model, scene, i, chunk, device, bar)
        m = image_metrics(r["rgb"], scene.images[i], lpips_fn)
        per_view.append({"view": i, "image": scene.image_names[i], **m})
        if out_dir:
            save_image(os.path.join(out_dir, f"test_{i:03d}.png"), side_by_side(r["rgb"], scene.images[i]))
            save_image(os.path.join(out_dir, f"depth_{i:03d}.png"), to_uint8(depth_image(r["depth"])))
    bar.close()
    keys = [k for k in per_view[0] if k not in ("view", "image")]
    mean = {k: sum(v[k] for v in per_view) / len(per_view) for k in keys}
    results = {
        "scene": scene.name,
        "n_train_views": len(scene.train_ids),
        "train_ids": list(scene.train_ids),
        "test_ids": list(scene.test_ids),
        "resolution": [scene.width, scene.height],
        "mean": mean,
        "per_view": per_view,
        "lpips": "computed" if lpips_fn else LPIPS_ABSENT,
        "render_seconds": time.time() - t0,
    }
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
    return results


def periodic_evaluation(every: int, log: Callable[[str], None] = print):
    """A :func:`reconfusion.reconstruct.train` callback: held-out PSNR/SSIM every ``every`` steps
    (not at the last step: the caller evaluates the final model itself), then back to training mode."""

    def callback(step) -> None:
        done, scene = step.iteration + 1, step.scene
        if not (every and done % every == 0 and scene.test_ids and done < step.config.iterations):
            return
        m = evaluate(step.model, scene, None, device=step.device, log=lambda s: None, progress_bar=False)
        log(f"step {done}: held-out PSNR {m['mean']['psnr']:.2f} SSIM {m['mean']['ssim']:.3f}")
        step.model.train()

    return callback


__all__ = ["evaluate", "periodic_evaluation", "render_view"]
