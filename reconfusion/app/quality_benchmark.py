"""``reconfusion benchmark``: the few-view quality protocol as one command (reconstruction quality;
the kernels' speed is measured by ``python -m benchmarks``).

Every (scene, number of views) pair is reconstructed and evaluated into ``OUT/<scene>/<N>views/``
(``results.json`` as written by ``reconstruct``, plus the settings it ran with); a pair whose
``results.json`` already holds the same settings is reused, a pair interrupted during training
resumes from its checkpoint. Then ``OUT/benchmark.md`` and ``OUT/benchmark.json`` hold the table:
per-scene and mean PSNR / SSIM (LPIPS only with local weights, else "n/a"), train and render
times, the settings and versions, and, for LLFF scenes, the published LLFF 3-view averages.

Splits: forward-facing LLFF scenes follow RegNeRF / FreeNeRF / ReconFusion (8x images, test = every
8th image, N training views evenly spaced over the rest); captures in the LLFF layout that are not
forward-facing (the loader's space decision) follow ReconFusion's mip-NeRF 360 protocol (4x images or
the nearest there are, test = every 8th image, N training views of the rest spread evenly around the
orbit, :func:`reconfusion.data.scene.fewview_protocol_ids`). Blender scenes with the full 100-view train split
use DietNeRF's 8-view training ids (the first N of them); test views are the official test split
when loaded, else every 8th train-split image not among those 8 ids. Other scenes: every 8th image
held out, N training views by farthest-point sampling of the camera centres.
"""

from __future__ import annotations

import json
import os
import platform
import time

from .runs import CLIError, check_out_dir, make_config, run_reconstruction, torch_device

# Published LLFF averages over its 8 scenes, 3 input views, PSNR (as quoted by ReconFusion,
# arXiv 2312.02981, Table 1). Zip-NeRF and FreeNeRF use no learned prior; ReconFusion does.
PUBLISHED_LLFF_3VIEW_PSNR = {"Zip-NeRF": 17.23, "FreeNeRF": 19.63, "ReconFusion": 21.34}
DIETNERF_BLENDER_IDS = (26, 86, 2, 55, 75, 93, 16, 73)  # DietNeRF / FreeNeRF 8-view Blender split
LLFF_FACTOR = 8
METRICS = ("psnr", "ssim", "lpips")


class BenchmarkError(CLIError):
    pass


# ------------------------------------------------------------------------------------ scenes
def resolve_scene(arg: str) -> str:
    """A scene folder: ``arg`` itself if it exists, else ``$RECONFUSION_DATA/arg`` or
    ``../shared/data/arg`` beside the project checkout."""
    if os.path.exists(arg):
        return os.path.abspath(arg)
    roots = [os.environ["RECONFUSION_DATA"]] if os.environ.get("RECONFUSION_DATA") else []
    project = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
    roots.append(os.path.join(os.path.dirname(project), "shared", "data"))
    for root in roots:
        if os.path.exists(os.path.join(root, arg)):
            return os.path.abspath(os.path.join(root, arg))
    raise BenchmarkError(f"scene {arg!r} not found (a path, or a name under {' or '.join(roots)})")


def parse_views(text: str) -> list[int]:
    try:
        views = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError as exc:
        raise BenchmarkError(f"--views must be integers separated by commas, got {text!r}") from exc
    if not views or any(v < 1 for v in views):
        raise BenchmarkError(f"--views must list numbers of training views >= 1, got {text!r}")
    return sorted(set(views))


def blender_split(scene, n_views: int):
    """-> (train_ids, test_ids, split name) for a Blender scene (see the module docstring)."""
    from ..data import select_views

    if scene.n_images < 100:  # not the full train split: the generic split
        s = select_views(scene, n_views=n_views, strategy="farthest")
        return s.train_ids, s.test_ids, "blender: every 8th held out, farthest-point training views"
    if n_views > len(DIETNERF_BLENDER_IDS):
        raise BenchmarkError(
            f"--views {n_views}: the Blender few-view split has {len(DIETNERF_BLENDER_IDS)} training views at most"
        )
    train = sorted(DIETNERF_BLENDER_IDS[:n_views])
    test = scene.test_ids or [i for i in range(0, scene.n_images, 8) if i not in DIETNERF_BLENDER_IDS]
    name = "blender: DietNeRF 8-view ids " + (
        "(first N), official test split"
        if scene.test_ids
        else "(first N), every 8th train image not among them held out"
    )
    return train, sorted(test), name


def load_pair(path: str, n_views: int):
    """-> (scene with its few-view split, data info for the checkpoint, split name, format)."""
    from ..data import detect_format, load_scene, select_views
    from ..data.llff import default_factor, protocol_factor
    from ..data.scene import fewview_protocol_ids

    fmt = detect_format(path)
    kw = {"factor": default_factor(path, LLFF_FACTOR)} if fmt == "llff" else {}
    scene = load_scene(path, format=fmt, **kw)  # an LLFF-layout capture: its space decided on load
    if fmt == "llff" and scene.space == "ndc" and kw["factor"] != LLFF_FACTOR:
        kw["factor"] = LLFF_FACTOR  # forward-facing: LLFF's resolution (resized from images/)
        scene = load_scene(path, format=fmt, **kw)
    if fmt == "llff" and scene.space != "ndc":  # a capture all around a scene: mip-NeRF 360's protocol
        factor = protocol_factor(path, scene.space)
        if factor != kw["factor"]:
            kw["factor"] = factor
            scene = load_scene(path, format=fmt, **kw)
        train, test, split = fewview_protocol_ids(scene, n_views)
        scene = scene.replace(train_ids=train, test_ids=test)
        split += f" (ReconFusion; images_{kw['factor']})"
    elif fmt == "llff":
        scene = select_views(scene, n_views=n_views, strategy="even")
        split = "llff: test every 8th image, N views evenly spaced over the rest (RegNeRF/FreeNeRF/ReconFusion)"
    elif fmt == "blender":
        train, test, split = blender_split(scene, n_views)
        scene = scene.replace(train_ids=train, test_ids=test)
    else:
        scene = select_views(scene, n_views=n_views, strategy="farthest")
        split = "every 8th image held out, farthest-point training views"
    info = {"path": path, "format": fmt, "downscale": 1.0, "factor": kw.get("factor")}
    return scene, info, split, fmt


# ------------------------------------------------------------------------------------ running
def settings(cfg, device: str, threads: int) -> dict:
    """What a pair's result depends on (compared on resume) and what the table reports."""
    import torch

    import rfkernels

    from .. import __version__

    return {
        "preset": cfg.preset,
        "iterations": cfg.iterations,
        "batch_rays": cfg.batch_rays,
        "seed": cfg.seed,
        "config": json.loads(cfg.to_json()),
        "device": str(device),
        "threads": threads or torch.get_num_threads(),
        "versions": {
            "reconfusion": __version__,
            "rfkernels": rfkernels.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "backend": cfg.backend or rfkernels.get_backend(),  # every op's backend
    }


def _same_settings(a: dict, b: dict) -> bool:
    """Whether two pairs' settings give the same result: the configs are compared as
    :class:`~reconfusion.config.Config` objects, so a field added since (at its default) changes nothing."""
    from ..config import Config, ConfigError

    if any(a.get(k) != b.get(k) for k in ("preset", "iterations", "batch_rays", "seed")):
        return False
    try:
        return Config.from_dict(a["config"]) == Config.from_dict(b["config"])
    except (KeyError, TypeError, ConfigError):  # missing, or keys this version does not know
        return False


def run_pair(path: str, n_views: int, cfg, out_dir: str, device, lpips: str | None, quiet: bool, sett: dict) -> dict:
    """Reconstruct + evaluate one pair into ``out_dir`` (or reuse its finished result)."""

    res_path = os.path.join(out_dir, "results.json")
    if os.path.isfile(res_path):
        with open(res_path) as f:
            res = json.load(f)
        if "benchmark" in res:  # finished by this command (else: stopped between training and the table)
            if not _same_settings(res["benchmark"]["settings"], sett):
                raise BenchmarkError(f"{out_dir} holds a result with other settings: use another --out")
            res["reused"] = True
            return res
    ckpt = os.path.join(out_dir, "checkpoint", "config.json")
    if os.path.isfile(ckpt):
        from ..config import Config
        from ..reconstruct import config_differences

        with open(ckpt) as f:
            saved = json.load(f)
        if config_differences(Config.from_dict(saved["config"]), cfg.replace(backend=None), saved["scene"]["space"]):
            raise BenchmarkError(f"{out_dir} holds a checkpoint with other settings: use another --out")
    scene, info, split, fmt = load_pair(path, n_views)
    res = run_reconstruction(scene, info, cfg, out_dir, device, os.path.isfile(ckpt), lpips, False, 0, quiet)
    res["benchmark"] = {
        "settings": sett,
        "split": split,
        "format": fmt,
        "n_views": n_views,
        "scene_path": path,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with open(res_path, "w") as f:
        json.dump(res, f, indent=2)
    res["reused"] = False
    return res


# ------------------------------------------------------------------------------------ table
def _fmt(v, digits):
    return "n/a" if v is None else f"{v:.{digits}f}"


def summarize(results: list[dict], views: list[int], sett: dict) -> dict:
    """Per-pair rows, per-view-count means over the scenes, and the published references."""
    rows = []
    for r in results:
        m = r["mean"]
        rows.append(
            {
                "scene": r["scene"],
                "views": r["benchmark"]["n_views"],
                "psnr": m["psnr"],
                "ssim": m["ssim"],
                "lpips": m.get("lpips"),
                "train_seconds": r.get("train_seconds"),
                "render_seconds": r.get("render_seconds"),
                "resolution": r["resolution"],
                "train_ids": r["train_ids"],
                "test_ids": r["test_ids"],
                "split": r["benchmark"]["split"],
                "format": r["benchmark"]["format"],
                "reused": r.get("reused", False),
            }
        )
    mean = {}
    for n in views:
        sel = [row for row in rows if row["views"] == n]
        if sel:
            mean[str(n)] = {
                k: (None if any(s[k] is None for s in sel) else sum(s[k] for s in sel) / len(sel))
                for k in METRICS + ("train_seconds", "render_seconds")
            }
            mean[str(n)]["n_scenes"] = len(sel)
    # The published averages are for forward-facing LLFF scenes; an LLFF-layout capture all around an
    # object follows the mip-NeRF 360 split and is not comparable with them.
    llff = bool(rows) and all(row["format"] == "llff" and row["split"].startswith("llff") for row in rows)
    published = (
        {
            "llff_3view_psnr": PUBLISHED_LLFF_3VIEW_PSNR,
            "source": "ReconFusion (arXiv 2312.02981), Table 1: means over the 8 LLFF scenes",
        }
        if llff
        else None
    )
    return {
        "settings": sett,
        "views": views,
        "pairs": rows,
        "mean": mean,
        "published": published,
        "scenes": sorted({row["scene"] for row in rows}),
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def markdown(summary: dict) -> str:
    """The tables: methods x (views x metrics) as in the papers, then per scene, then timing."""
    views, rows, s = summary["views"], summary["pairs"], summary["settings"]
    scenes = summary["scenes"]
    head = "| Method | " + " | ".join(f"{n}-view PSNR↑ | SSIM↑ | LPIPS↓" for n in views) + " |"
    sep = "|---|" + "---:|" * (3 * len(views))
    lines = [
        f"### Few-view benchmark: {', '.join(scenes)} ({len(scenes)} scene{'s' * (len(scenes) != 1)})",
        "",
        head,
        sep,
    ]
    if summary["published"]:
        for method, v in summary["published"]["llff_3view_psnr"].items():
            cells = [(f"{v:.2f}" if n == 3 else "–") + " | – | –" for n in views]
            lines.append(f"| {method} (published, all 8 LLFF scenes) | " + " | ".join(cells) + " |")
    ours = []
    for n in views:
        m = summary["mean"].get(str(n))
        ours.append(
            "– | – | –" if m is None else f"{_fmt(m['psnr'], 2)} | {_fmt(m['ssim'], 3)} | {_fmt(m['lpips'], 3)}"
        )
    lines.append(
        f"| ours, `{s['preset']}` {s['iterations']} it., no prior (mean of {', '.join(scenes)}) | "
        + " | ".join(ours)
        + " |"
    )
    lines += [
        "",
        "Per scene:",
        "",
        "| Scene | " + " | ".join(f"{n}-view PSNR↑ | SSIM↑ | LPIPS↓" for n in views) + " |",
        sep,
    ]
    for sc in scenes:
        cells = []
        for n in views:
            r = next((row for row in rows if row["scene"] == sc and row["views"] == n), None)
            cells.append(
                "– | – | –" if r is None else f"{_fmt(r['psnr'], 2)} | {_fmt(r['ssim'], 3)} | {_fmt(r['lpips'], 3)}"
            )
        lines.append(f"| {sc} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| Scene | Views | Resolution | Train views | Test views | Train s | Render s | Split |",
        "|---|---:|---|---|---|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scene']} | {r['views']} | {r['resolution'][0]}x{r['resolution'][1]} | {r['train_ids']} | "
            f"{r['test_ids']} | {_fmt(r['train_seconds'], 0)} | {_fmt(r['render_seconds'], 0)} | {r['split']} |"
        )
    v = s["versions"]
    lines += [
        "",
        f"Settings: preset `{s['preset']}`, {s['iterations']} iterations x {s['batch_rays']} rays, seed "
        f"{s['seed']}, device {s['device']}, {s['threads']} thread(s), rfkernels backend `{s['backend']}`; "
        f"reconfusion {v['reconfusion']}, rfkernels {v['rfkernels']}, torch {v['torch']}, Python {v['python']}. "
        "LPIPS: "
        + (
            "computed from local weights."
            if all(r["lpips"] is not None for r in rows)
            else "n/a (no local weights given; nothing is downloaded)."
        ),
    ]
    if summary["published"]:
        lines.append(
            "Published rows: " + summary["published"]["source"] + "; they cover all 8 LLFF scenes, "
            "ours only the scenes listed, so the means are not directly comparable."
        )
    return "\n".join(lines) + "\n"


def write_tables(summary: dict, out: str) -> tuple[str, str]:
    md, js = os.path.join(out, "benchmark.md"), os.path.join(out, "benchmark.json")
    with open(md, "w") as f:
        f.write(markdown(summary))
    with open(js, "w") as f:
        json.dump(summary, f, indent=2)
    return md, js


# ------------------------------------------------------------------------------------ command
def run(a) -> int:
    from tqdm import tqdm

    views = parse_views(a.views)
    paths = [resolve_scene(s) for s in a.scenes]
    names = [os.path.basename(os.path.normpath(p)) for p in paths]
    if len(set(names)) != len(names):
        raise BenchmarkError(f"scene names must differ (they name the output folders), got {names}")
    cfg = make_config(a.preset, a.iterations, a.batch_rays, a.backend, a.set, a.sparse_depth)
    device = torch_device(a.device)
    sett = settings(cfg, device, a.threads)
    check_out_dir(a.out)
    os.makedirs(a.out, exist_ok=True)
    pairs = [(p, n, v) for p, n in zip(paths, names) for v in views]
    results = []
    bar = tqdm(pairs, desc="benchmark", unit="pair", dynamic_ncols=True, disable=a.quiet)
    for path, name, v in bar:
        bar.set_postfix_str(f"{name} {v} views")
        res = run_pair(path, v, cfg, os.path.join(a.out, name, f"{v}views"), device, a.lpips_weights, a.quiet, sett)
        if res["reused"]:
            bar.write(f"{name} {v} views: reused {os.path.join(a.out, name, f'{v}views', 'results.json')}")
        results.append(res)
    md, js = write_tables(summarize(results, views, sett), a.out)
    print(open(md).read())
    print(f"tables: {md}, {js}")
    return 0


def add_parser(sub):
    """The ``benchmark`` subcommand's parser (the caller adds the shared ``--set``)."""
    from ..config import BACKENDS

    b = sub.add_parser(
        "benchmark",
        help="few-view quality benchmark: every (scene, views) pair, then a PSNR/SSIM "
        "table (kernel speed is `python -m benchmarks`)",
    )
    b.add_argument("scenes", nargs="+", help="scene folders (or names under ../shared/data / $RECONFUSION_DATA)")
    b.add_argument("--views", default="3,6,9", help="numbers of training views, e.g. 3,6,9")
    b.add_argument("--preset", default="tiny", help="tiny | base")
    b.add_argument("--iterations", type=int, default=None)
    b.add_argument("--batch-rays", type=int, default=None)
    b.add_argument("--out", default="benchmark", help="output folder (finished pairs in it are reused)")
    b.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    b.add_argument(
        "--backend",
        default=None,
        choices=BACKENDS,
        help="rfkernels backend of every op (default: auto, or $RFKERNELS_BACKEND)",
    )
    b.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")
    b.add_argument("--lpips-weights", default=None, help="local LPIPS weights (never downloaded)")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.set_defaults(fn=run)
    return b


__all__ = [
    "DIETNERF_BLENDER_IDS",
    "PUBLISHED_LLFF_3VIEW_PSNR",
    "BenchmarkError",
    "add_parser",
    "blender_split",
    "load_pair",
    "markdown",
    "parse_views",
    "resolve_scene",
    "run",
    "run_pair",
    "summarize",
    "write_tables",
]
