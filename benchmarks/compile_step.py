"""Compiled vs eager training steps, side by side in one run (issue 22): ``torch.compile(fullgraph=True)``
of the loss computation (forward, every active loss term; the backward is the compiled graph's too)
against the same code run eagerly, for

* ``reconfusion tiny`` / ``reconfusion base``: one training step of that preset on the embedded fern
  demo scene (``cfg.batch_rays`` rays, deterministic sampling so both runs do the same work);
* ``nerfacc prop example``: examples/nerfacc_prop_lego.py's step through ``rfkernels.compat``
  (two proposal fields, the radiance field, ``PropNetEstimator.sampling``, ``rendering``, MSE) on
  random rays through the scene's box.

A step = loss, backward, optimizer step. Each variant runs ``--warmup`` untimed steps (the compiled
one compiles there), then ``--steps`` timed steps; the median is reported with the eager / compiled
ratio and the first compiled call's time (the compile cost). ``--mode reduce-overhead`` compiles with
CUDA graphs on a GPU (static shapes: every step here has them); ``--variants eager`` times eager only
(the GPU check's dry run on a CPU, where compiling would take minutes).

    python -m benchmarks.compile_step [--backend torch] [--steps 10] [--out benchmarks/results/compile_step_cpu.json]
    python -m benchmarks.compile_step --device cuda --backend auto --models "reconfusion base" --mode reduce-overhead
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

import rfkernels

ROOT = Path(__file__).resolve().parents[1]


def _reconfusion_step(
    device: torch.device, preset: str = "tiny"
) -> tuple[Callable, tuple, torch.optim.Optimizer, Callable]:
    """(loss function, its arguments, optimizer, what to run before each step) for ``preset``."""
    from reconfusion.app.runs import DEMO_DATA, DEMO_FACTOR
    from reconfusion.config import get_preset
    from reconfusion.data import load_scene
    from reconfusion.losses.terms import LossContext, config_terms
    from reconfusion.reconstruct import build_model, make_optimizer

    scene = load_scene(DEMO_DATA, factor=DEMO_FACTOR)  # the embedded fern (126x94 images)
    cfg = get_preset(preset).replace(depth_smoothness_weight=0.0)  # unseen-view patches: a second render
    model = build_model(cfg, scene).to(device)
    terms = [t for t in config_terms(model.cfg, scene, None, lambda _m: None) if t.active(0)]
    g = torch.Generator().manual_seed(0)
    rays = scene.view_rays(0)
    pick = torch.randint(0, len(rays), (model.cfg.batch_rays,), generator=g)
    rays, target = rays[pick].to(device), torch.rand(model.cfg.batch_rays, 3, generator=g).to(device)

    def loss(rays, target):
        out = model(rays, progress=0.5)
        ctx = LossContext(model, scene, 0, model.cfg, device, 0.5, out, target)
        values = [(t.weight, t.compute(ctx)) for t in terms]
        return sum(w * v for w, v in values if v is not None)

    return loss, (rays, target), make_optimizer(model, model.cfg), lambda: None


def _prop_example_step(
    device: torch.device, n_rays: int = 256
) -> tuple[Callable, tuple, torch.optim.Optimizer, Callable]:
    sys.path.insert(0, str(ROOT / "examples"))
    example = importlib.import_module("nerfacc_prop_lego")
    from rfkernels.compat import nerfacc

    torch.manual_seed(0)
    props = torch.nn.ModuleList([example.ProposalField(5, 12, 128), example.ProposalField(5, 12, 256)]).to(device)
    field = example.RadianceField(8).to(device)
    estimator = nerfacc.PropNetEstimator(None)
    g = torch.Generator().manual_seed(0)
    origins = (torch.randn(n_rays, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, 4.0])).to(device)
    dirs = torch.nn.functional.normalize(
        torch.randn(n_rays, 3, generator=g) * 0.2 + torch.tensor([0.0, 0.0, -1.0]), dim=-1
    )
    dirs, target = dirs.to(device), torch.rand(n_rays, 3, generator=g).to(device)

    def loss(origins, dirs, target):
        def points(t_starts, t_ends):
            return origins[:, None] + dirs[:, None] * ((t_starts + t_ends) / 2)[..., None]

        t_starts, t_ends = estimator.sampling(
            prop_sigma_fns=[lambda s, e, p=p: p.density(points(s, e)) for p in props],
            prop_samples=[64, 32],
            num_samples=32,
            n_rays=n_rays,
            near_plane=2.0,
            far_plane=6.0,
            sampling_type="lindisp",
            stratified=False,
            requires_grad=True,
        )
        rgb, _, _, _ = nerfacc.rendering(
            t_starts,
            t_ends,
            rgb_sigma_fn=lambda s, e, _ri: field(points(s, e), dirs[:, None].expand(-1, s.shape[1], -1)),
            render_bkgd=torch.ones(3, device=device),
        )
        return torch.nn.functional.mse_loss(rgb, target)

    params = list(field.parameters()) + list(props.parameters())
    # the estimator keeps each step's proposal histograms for its update (the example's
    # update_every_n_steps): cleared before a step, as that update does, so the compiled graph is reused
    return loss, (origins, dirs, target), torch.optim.Adam(params, lr=1e-3, eps=1e-15), estimator.prop_cache.clear


def _time_steps(loss_fn, args, opt, before_step, warmup: int, steps: int) -> tuple[float, list[float]]:
    """-> (first call seconds, timed step seconds)."""

    def step():
        before_step()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(*args)
        loss.backward()
        opt.step()
        float(loss.detach())  # the loss on the host ends the step (and any device work)
        return time.perf_counter() - t0

    first = step()
    for _ in range(warmup - 1):
        step()
    return first, [step() for _ in range(steps)]


def measure(
    name: str,
    build: Callable,
    device: torch.device,
    warmup: int,
    steps: int,
    mode: str = "default",
    variants: tuple[str, ...] = ("eager", "compiled"),
) -> dict:
    """One model's row: per variant the first call's seconds and the median step; the ratio when both ran.
    ``mode`` is torch.compile's (``default``, ``reduce-overhead`` = CUDA graphs, ``max-autotune``)."""
    row = {"model": name, "mode": mode}
    for variant in variants:
        loss_fn, args, opt, before_step = build(device)  # a fresh model per variant: the same starting weights
        if variant == "compiled":
            loss_fn = torch.compile(loss_fn, fullgraph=True, mode=None if mode == "default" else mode)
        first, times = _time_steps(loss_fn, args, opt, before_step, warmup, steps)
        row[f"{variant}_first_s"] = round(first, 3)
        row[f"{variant}_step_ms"] = round(1e3 * statistics.median(times), 2)
    line = " ".join(f"{v} {row[f'{v}_step_ms']:9.1f} ms" for v in variants)
    if len(variants) == 2:
        row["eager_over_compiled"] = round(row["eager_step_ms"] / row["compiled_step_ms"], 3)
        line += f"  ratio {row['eager_over_compiled']:.2f}  (compile + first step {row['compiled_first_s']:.1f} s)"
    print(f"{name:22s} {line}", flush=True)
    return row


MODELS = {
    "reconfusion tiny": _reconfusion_step,
    "reconfusion base": functools.partial(_reconfusion_step, preset="base"),
    "nerfacc prop example": _prop_example_step,
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="torch", choices=list(rfkernels.BACKENDS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--models", default="reconfusion tiny,nerfacc prop example", help=f"comma-separated, of {list(MODELS)}"
    )
    p.add_argument("--mode", default="default", choices=["default", "reduce-overhead", "max-autotune"])
    p.add_argument("--variants", default="eager,compiled", choices=["eager,compiled", "eager", "compiled"])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "compile_step_cpu.json"))
    a = p.parse_args(argv)
    unknown = [m for m in a.models.split(",") if m not in MODELS]
    if unknown:
        p.error(f"--models: unknown {unknown}; choose from {list(MODELS)}")
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    rows = []
    with rfkernels.use_backend(a.backend):
        for name in a.models.split(","):
            rows.append(measure(name, MODELS[name], device, a.warmup, a.steps, a.mode, tuple(a.variants.split(","))))
    record = {
        "benchmark": "compile_step",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "device": str(device) if device.type != "cpu" else f"cpu ({platform.processor() or platform.machine()})",
        "threads": a.threads,
        "backend": a.backend,
        "warmup": a.warmup,
        "steps": a.steps,
        "rows": rows,
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")  # replaced atomically: a killed run leaves the previous record
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
