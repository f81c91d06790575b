"""Evaluation rendering: whole images and camera paths, fast and with a progress bar.

Rays are rendered in ``torch.inference_mode`` (no autograd bookkeeping, no version counters) in
chunks of ``chunk`` rays, keeping only the outputs asked for; the sampling is the deterministic
evaluation sampling of :meth:`ZipNeRF.forward` (``progress=None``), so the pixels are exactly
those of the model's forward pass in eval mode. One ``tqdm`` bar counts rays across all views of a call.
"""

from __future__ import annotations

import torch

import rfkernels

from .rays import RayBundle

OUTPUTS = ("rgb", "depth", "opacity")


def progress_bar(total: int, desc: str, enabled: bool = True, unit: str = "ray"):
    """A ``tqdm`` bar (disabled: a no-op one) counting ``total`` units."""
    from tqdm import tqdm

    return tqdm(
        total=total, desc=desc, unit=unit, unit_scale=True, dynamic_ncols=True, disable=not enabled, leave=False
    )


def render_rays(
    model, rays: RayBundle, chunk: int | None = None, device="cpu", outputs=("rgb", "depth"), bar=None
) -> dict:
    """Render ``rays`` (any device; moved to ``device`` chunk by chunk; ``chunk`` defaults to the
    model's ``cfg.eval_chunk``) -> ``{name: [R, ...]}`` (float32, on ``device``) for each name in
    ``outputs`` (``rgb`` clamped to [0, 1]). The rfkernels ops run on the model's ``cfg.backend``
    (``rfkernels.use_backend``; ``None`` keeps the caller's scope)."""
    bad = [o for o in outputs if o not in OUTPUTS]
    if bad:
        raise ValueError(f"`outputs` must be drawn from {OUTPUTS}, got {bad}")
    chunk = model.cfg.eval_chunk if chunk is None else chunk
    if chunk < 1:
        raise ValueError(f"`chunk` must be >= 1, got {chunk}")
    was_training = model.training
    model.eval()
    parts = {o: [] for o in outputs}
    try:
        with torch.inference_mode(), rfkernels.use_backend(model.cfg.backend):
            for i in range(0, len(rays), chunk):
                part = rays[i : i + chunk].to(device)
                n = len(part)
                if n < chunk < len(rays):  # the last chunk padded to the others' size: one shape for compiled paths
                    part = _pad_rays(part, chunk)
                o = model(part)
                if "rgb" in parts:
                    parts["rgb"].append(o.rgb[:n].float().clamp(0, 1))
                if "depth" in parts:
                    parts["depth"].append(o.depth[:n].float())
                if "opacity" in parts:
                    parts["opacity"].append(o.opacity[:n].float())
                if bar is not None:
                    bar.update(n)
    finally:
        model.train(was_training)
    return {k: torch.cat(v) if v else torch.zeros(0) for k, v in parts.items()}


def _pad_rays(rays: RayBundle, size: int) -> RayBundle:
    """``rays`` extended to ``size`` rays by repeating its last ray (rendered, then dropped)."""
    idx = torch.arange(size, device=rays.origins.device).clamp(max=len(rays) - 1)
    return rays[idx]


def render_image(
    model,
    rays: RayBundle,
    height: int,
    width: int,
    chunk: int | None = None,
    device="cpu",
    outputs=("rgb", "depth"),
    bar=None,
) -> dict:
    """:func:`render_rays` of one image's ``H * W`` rays -> ``{"rgb": [H, W, 3], "depth": [H, W], ...}`` on CPU."""
    if len(rays) != height * width:
        raise ValueError(f"`rays` must hold height * width = {height * width} rays, got {len(rays)}")
    out = render_rays(model, rays, chunk, device, outputs, bar)
    return {k: v.view(height, width, -1).squeeze(-1).cpu() for k, v in out.items()}


__all__ = ["OUTPUTS", "progress_bar", "render_image", "render_rays"]
