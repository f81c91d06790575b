"""Few-view reconstruction of a capture all around an object, in a chosen space, side by side.

One run = one (space, number of views) pair: the scene is loaded with ``space`` forced (``ndc`` is
what the LLFF loader always did before the space was decided from the cameras; ``contract`` is what
it decides for an inward-looking capture), the mip-NeRF 360 few-view split of ReconFusion
(:func:`reconfusion.data.scene.mipnerf360_protocol_ids`, computed once from the cameras so both spaces
train and test on the same views) is applied, ``reconfusion.reconstruct.train`` and ``evaluate`` run,
and one JSON record is written to ``OUT/<space>_<N>views.json``. ``--renders DIR`` saves the test
renders (render | ground truth | error) there, outside the repository: captures without a licence to
ship (milk) must not be committed::

    OMP_NUM_THREADS=1 python -m benchmarks.fewview_360 ../shared/data/milk --views 9 --space contract \\
        --factor 2 --iterations 5000 --out benchmarks/results/fewview_milk --renders /tmp/milk_renders

``python -m benchmarks.fewview_360 --table OUT`` prints the markdown table of the records in ``OUT``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

METRIC_KEYS = ("psnr", "ssim")


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_split_scene(path: str, n_views: int, space: str, factor: int | None):
    """The scene in ``space`` with the mip-NeRF 360 split of its cameras -> (scene, decided space choice)."""
    from reconfusion.data.llff import load_llff
    from reconfusion.data.scene import mipnerf360_protocol_ids

    decided = load_llff(path, factor=factor)  # the loader's own decision, recorded beside the forced space
    train, test = mipnerf360_protocol_ids(decided.c2w, n_views)
    scene = decided if space == decided.space else load_llff(path, factor=factor, space=space)
    return scene.replace(train_ids=train, test_ids=test), decided


def run(
    path: str,
    n_views: int,
    space: str,
    factor: int | None,
    preset: str,
    iterations: int,
    out: str,
    renders: str | None,
    overrides: dict | None = None,
    tag: str = "",
    background: str | None = None,
) -> dict:
    import torch

    import rfkernels
    from reconfusion.config import get_preset, with_overrides
    from reconfusion.evaluation import evaluate
    from reconfusion.reconstruct import train

    scene, decided = load_split_scene(path, n_views, space, factor)
    if background:
        scene = scene.replace(background=background)
    cfg = with_overrides(get_preset(preset).replace(iterations=iterations), overrides or {})
    name = f"{space}_{n_views}views" + (f"_{tag}" if tag else "")
    print(
        f"scene {scene.name}: {scene.n_images} images {scene.width}x{scene.height}, space {scene.space} "
        f"(decided: {decided.space}, {decided.space_reason}); train {scene.train_ids}, test {scene.test_ids}",
        flush=True,
    )
    t0 = time.time()
    result = train(scene, cfg, None, progress_bar=False)
    train_s = time.time() - t0
    render_dir = os.path.join(renders, name) if renders else None
    res = evaluate(result.model, scene, render_dir, log=lambda s: None, progress_bar=False)
    record = {
        "scene": scene.name,
        "space": scene.space,
        "decided_space": decided.space,
        "decided_reason": decided.space_reason,
        "n_views": n_views,
        "train_ids": scene.train_ids,
        "test_ids": scene.test_ids,
        "split": "mip-NeRF 360 (ReconFusion): every 8th image held out, training views spread around the orbit",
        "factor": factor,
        "resolution": [scene.width, scene.height],
        "preset": preset,
        "iterations": iterations,
        "background": scene.background,
        "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in (overrides or {}).items()},
        "mean": {k: res["mean"][k] for k in METRIC_KEYS},
        "per_view": [{"view": v["view"], **{k: v[k] for k in METRIC_KEYS}} for v in res["per_view"]],
        "train_seconds": round(train_s, 1),
        "threads": torch.get_num_threads(),
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU",
        "rfkernels_backend": cfg.backend or rfkernels.get_backend(),
    }
    os.makedirs(out, exist_ok=True)
    dest = os.path.join(out, f"{name}.json")
    with open(dest, "w") as f:
        json.dump(record, f, indent=2)
    m = record["mean"]
    print(
        f"{space} {n_views} views: PSNR {m['psnr']:.2f} dB SSIM {m['ssim']:.3f} ({train_s:.0f} s) -> {dest}", flush=True
    )
    return record


def table(out: str) -> str:
    """Markdown: one row per number of views, PSNR / SSIM per run kind (the record's file name without
    its ``_<N>views`` part: the space, then any tag), from the records in ``out``."""
    cells = {}
    for path in sorted(Path(out).glob("*_*views*.json")):
        r = json.loads(path.read_text())
        kind = path.stem.replace(f"_{r['n_views']}views", "")
        cells[r["n_views"], kind] = f"{r['mean']['psnr']:.2f} / {r['mean']['ssim']:.3f}"
    kinds = sorted({k for _, k in cells})
    lines = ["| Views | " + " | ".join(f"{k} PSNR / SSIM" for k in kinds) + " |", "|---:|" + "---:|" * len(kinds)]
    for n in sorted({n for n, _ in cells}):
        lines.append(f"| {n} | " + " | ".join(cells.get((n, k), "–") for k in kinds) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scene", nargs="?", help="LLFF-layout scene folder")
    p.add_argument("--views", type=int, default=9)
    p.add_argument("--space", default="contract", choices=("ndc", "contract", "box"))
    p.add_argument("--factor", type=int, default=None, help="images_<factor>/ (default: the mip-NeRF 360 factor)")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--iterations", type=int, default=5000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", action="append", default=[], help="config override key=value (repeatable)")
    p.add_argument("--background", default=None, choices=("white", "black", "learned"), help="override the scene's")
    p.add_argument("--tag", default="", help="suffix of the record's file name (runs with overrides)")
    p.add_argument("--out", default="benchmarks/results/fewview_milk")
    p.add_argument("--renders", default=None, help="folder for the test renders (outside the repository)")
    p.add_argument("--table", default=None, metavar="OUT", help="print the table of the records in OUT and exit")
    a = p.parse_args(argv)
    if a.table:
        print(table(a.table))
        return 0
    if not a.scene:
        p.error("scene is required unless --table is given")
    import torch

    from reconfusion.config import parse_overrides
    from reconfusion.data.llff import protocol_factor

    torch.set_num_threads(a.threads)
    factor = a.factor if a.factor is not None else protocol_factor(a.scene, "contract")
    run(
        a.scene,
        a.views,
        a.space,
        factor,
        a.preset,
        a.iterations,
        a.out,
        a.renders,
        parse_overrides(a.set),
        a.tag,
        a.background,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
