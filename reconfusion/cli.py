"""``reconfusion`` command line: reconstruct, evaluate, render-video, demo, benchmark, train-prior.

Every user error (missing files, bad data, too few views, unknown preset) ends with one line
``reconfusion: error: ...`` on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from .config import BACKENDS

DEMO_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo", "fern")
DEMO_FACTOR = 32  # the embedded copy: images_32/ (126x94), i.e. the protocol's 8x images resized by 4
DEMO_VIEWS = 3


class CLIError(Exception):
    pass


def _ids(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(t) for t in text.replace(",", " ").split()]
    except ValueError as exc:
        raise CLIError(f"view ids must be integers separated by commas, got {text!r}") from exc


def _device(name: str):
    """``auto | cpu | cuda | cuda:<i>`` -> a usable ``torch.device`` (rfkernels runs on CPU and CUDA)."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind, _, index = name.partition(":")
    if name == "cpu" or (kind == "cuda" and (not index or index.isdigit())):
        if kind == "cuda" and not torch.cuda.is_available():
            raise CLIError(f"--device {name} asked for but no CUDA GPU is available (use --device cpu)")
        if index and int(index) >= torch.cuda.device_count():
            raise CLIError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
        return torch.device(name)
    raise CLIError(f"--device must be auto, cpu, cuda or cuda:<index>, got {name!r}")


def _at_least(flag: str, value, lo: int):
    if value is not None and value < lo:
        raise CLIError(f"{flag} must be >= {lo}, got {value}")
    return value


def _check_out_dir(out: str | None, flag: str = "--out") -> None:
    if out and os.path.exists(out) and not os.path.isdir(out):
        raise CLIError(f"{flag} {out} is an existing file; give a folder for the results")


def _check_common(a) -> None:
    """Validate the common options before any data is read or a model trained."""
    _at_least("--threads", getattr(a, "threads", 0), 0)
    _device(a.device)
    if hasattr(a, "frames") and not getattr(a, "no_video", False):
        _at_least("--frames", a.frames, 1)
    _at_least("--fps", getattr(a, "fps", None), 1)


def shared_fern() -> str | None:
    """``../shared/data/fern`` beside the project checkout (or $RECONFUSION_DATA/fern), if present."""
    env = os.environ.get("RECONFUSION_DATA")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the project checkout
    for cand in ([os.path.join(env, "fern")] if env else []) + [os.path.join(os.path.dirname(root), "shared", "data", "fern")]:
        if os.path.isfile(os.path.join(cand, "poses_bounds.npy")):
            return cand
    return None


def _load(data: str, fmt: str, downscale: float, factor: int | None, views: int | None,
          train_ids, test_ids, strategy: str):
    from .data import detect_format, load_scene, select_views
    from .data.llff import default_factor

    llff = (fmt if fmt != "auto" else detect_format(data)) == "llff"
    if factor is not None and not llff:
        raise CLIError("--factor applies to LLFF scenes only (use --downscale)")
    if llff and factor is None:
        factor = default_factor(data)  # images_8/, else the images_<k>/ folder there is
    kw = {"factor": factor} if factor is not None else {}
    scene = load_scene(data, format=fmt, downscale=downscale, **kw)
    if views is None and train_ids is None:
        raise CLIError("pass --views N or --train-ids")
    scene = select_views(scene, n_views=views, train_ids=train_ids, test_ids=test_ids, strategy=strategy)
    info = {"path": os.path.abspath(data), "format": fmt, "downscale": downscale, "factor": factor}
    return scene, info


def _config(preset: str, iterations: int | None, batch: int | None, backend: str | None):
    """The preset with the command line's overrides (derived settings are resolved by ``train``)."""
    from .config import get_preset

    cfg = get_preset(preset)
    kw = {"iterations": _at_least("--iterations", iterations, 1), "batch_rays": _at_least("--batch-rays", batch, 1),
          "backend": backend}
    return cfg.replace(**{k: v for k, v in kw.items() if v is not None})


def _print_results(res: dict, out_dir: str | None) -> None:
    m = res["mean"]
    extra = f"  LPIPS {m['lpips']:.3f}" if "lpips" in m else ""
    print(f"held-out views {res['test_ids']} ({res['resolution'][0]}x{res['resolution'][1]}): "
          f"PSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.3f}{extra}")
    if out_dir:
        print(f"results: {os.path.join(out_dir, 'results.json')}")


def _run_reconstruction(scene, info, cfg, out: str, device, resume: bool, lpips: str | None,
                        video: bool, frames: int, quiet: bool, extra_losses=()) -> dict:
    from .reconstruct import check_backend, evaluate, train
    from .video import render_video

    check_backend(cfg.backend, device)
    os.makedirs(out, exist_ok=True)
    print(f"scene {scene.name}: {scene.n_images} images {scene.width}x{scene.height}, space {scene.space}, "
          f"train views {scene.train_ids}, test views {scene.test_ids}")
    print(f"preset {cfg.preset}: {cfg.iterations} iterations x {cfg.batch_rays} rays on {device}")
    t0 = time.time()
    result = train(scene, cfg, out, device=device, resume=resume, progress_bar=not quiet, data_info=info,
                   extra_losses=extra_losses)
    t_train = time.time() - t0
    res = evaluate(result.model, scene, out, device=device, lpips_path=lpips,
                   progress_bar=not quiet)
    res["train_seconds"] = t_train
    if video:
        res["video"] = render_video(result.model, scene, os.path.join(out, "video.mp4"), n_frames=frames,
                                    device=device, progress_bar=not quiet)
    res["total_seconds"] = time.time() - t0
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(res, f, indent=2)
    _print_results(res, out)
    print(f"training {t_train:.0f} s, total {res['total_seconds']:.0f} s" +
          (f"; video: {res['video']}" if video else ""))
    return res


# ----------------------------------------------------------------------------------- commands
def cmd_reconstruct(a) -> int:
    _check_common(a)
    _check_out_dir(a.out)
    cfg = _config(a.preset, a.iterations, a.batch_rays, a.backend)
    scene, info = _load(a.data, a.format, a.downscale, a.factor, a.views, _ids(a.train_ids), _ids(a.test_ids),
                        a.strategy)
    device = _device(a.device)
    extra = ()
    if a.prior:  # the diffusion sample loss (reconfusion.prior.sample_loss)
        from .prior.sample_loss import prior_extra_loss

        extra = (prior_extra_loss(a.prior, scene, every=a.prior_every, weight=a.prior_weight, device=device,
                                  steps=a.prior_steps, guidance=a.prior_guidance, lpips=a.lpips_weights,
                                  lpips_weight=a.prior_lpips_weight),)
        print(f"diffusion prior {a.prior}: sample loss every {a.prior_every} iterations")
    _run_reconstruction(scene, info, cfg, a.out, device, a.resume, a.lpips_weights,
                        not a.no_video, a.frames, a.quiet, extra)
    return 0


def cmd_train_prior(a) -> int:
    from .prior.train import run

    return run(a)


def _checkpoint_scene(a):
    """Model + the scene it was trained on (data path from the checkpoint unless --data)."""
    from .data import load_scene
    from .reconstruct import load_checkpoint

    _check_common(a)
    device = _device(a.device)
    model, cfg, info = load_checkpoint(a.checkpoint, device, backend=a.backend)
    meta, data = info["scene"], info["scene"].get("data", {})
    path = a.data or data.get("path")
    if not path:
        raise CLIError("the checkpoint does not record its data: pass --data PATH")
    kw = {"factor": data["factor"]} if data.get("factor") is not None else {}
    scene = load_scene(path, format=data.get("format", "auto"), downscale=data.get("downscale", 1.0), **kw)
    scene = scene.replace(train_ids=meta["train_ids"], test_ids=meta["test_ids"])
    return model, cfg, scene, device


def cmd_evaluate(a) -> int:
    from .reconstruct import checkpoint_dir, evaluate

    _check_out_dir(a.out)
    model, cfg, scene, device = _checkpoint_scene(a)
    out = a.out or os.path.join(os.path.dirname(os.path.abspath(checkpoint_dir(a.checkpoint))), "eval")
    res = evaluate(model, scene, out, device=device, lpips_path=a.lpips_weights,
                   progress_bar=not a.quiet)
    _print_results(res, out)
    return 0


def cmd_render_video(a) -> int:
    from .reconstruct import checkpoint_dir
    from .video import render_video

    if a.out and os.path.isdir(a.out):
        raise CLIError(f"--out {a.out} is a folder; give a video file path (.mp4 or .gif)")
    model, cfg, scene, device = _checkpoint_scene(a)
    out = a.out or os.path.join(os.path.dirname(os.path.abspath(checkpoint_dir(a.checkpoint))), "video.mp4")
    path = render_video(model, scene, out, n_frames=a.frames, fps=a.fps, device=device,
                        progress_bar=not a.quiet)
    print(f"video: {path}")
    return 0


def cmd_demo(a) -> int:
    """3-view fern with the tiny preset: shared data if present (images_8 resized by 4), else the
    embedded copy (the same images, already resized)."""
    _check_common(a)
    _check_out_dir(a.out)
    cfg = _config("tiny", a.iterations, None, a.backend)
    if a.data:
        data, factor, downscale = a.data, 8, 4.0
    elif shared_fern() and not a.embedded:
        data, factor, downscale = shared_fern(), 8, 4.0
    else:
        data, factor, downscale = DEMO_DATA, DEMO_FACTOR, 1.0
    print(f"demo data: {data} (LLFF fern, Mildenhall et al. 2019)")
    scene, info = _load(data, "llff", downscale, factor, DEMO_VIEWS, None, None, "even")
    _run_reconstruction(scene, info, cfg, a.out, _device(a.device), False, a.lpips_weights, not a.no_video,
                        a.frames, a.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reconfusion", description="Few-view NeRF reconstruction on rfkernels.")
    sub = p.add_subparsers(dest="command", required=True)

    def runtime(q):
        q.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
        q.add_argument("--backend", default=None, choices=BACKENDS,
                       help="rfkernels backend of every op (default: auto, or $RFKERNELS_BACKEND)")
        q.add_argument("--threads", type=int, default=0,
                       help="CPU threads for torch (0 = torch's default; 1 is faster on a busy machine)")

    def common(q, video=True):
        runtime(q)
        q.add_argument("--lpips-weights", default=None, help="local LPIPS weights (never downloaded)")
        if video:
            q.add_argument("--no-video", action="store_true", help="skip the path video")
            q.add_argument("--frames", type=int, default=60, help="video frames")
        q.add_argument("--quiet", action="store_true", help="no progress bar")

    r = sub.add_parser("reconstruct", help="optimize a NeRF from N posed views, evaluate on held-out views")
    r.add_argument("--data", required=True, help="scene folder (LLFF, Blender, nerfstudio) or .npz bundle")
    r.add_argument("--format", default="auto", help="auto | llff | blender | nerfstudio | npz | colmap")
    r.add_argument("--views", type=int, default=None, help="number of training views")
    r.add_argument("--train-ids", default=None, help="explicit training view ids, e.g. 1,10,19")
    r.add_argument("--test-ids", default=None, help="explicit held-out view ids")
    r.add_argument("--strategy", default="auto", help="view selection: auto | even | farthest")
    r.add_argument("--preset", default="tiny", help="tiny | base")
    r.add_argument("--iterations", type=int, default=None)
    r.add_argument("--batch-rays", type=int, default=None)
    r.add_argument("--factor", type=int, default=None,
                   help="LLFF images_<factor> (default 8, or the images_<k>/ folder the scene has)")
    r.add_argument("--downscale", type=float, default=1.0, help="extra image downscale")
    r.add_argument("--out", required=True)
    r.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    common(r)
    r.add_argument("--prior", default=None, help="a saved diffusion prior directory: turns the sample loss on")
    r.add_argument("--prior-every", type=int, default=10, help="sample loss every k iterations")
    r.add_argument("--prior-weight", type=float, default=1.0, help="sample loss weight (x 1 / number of views)")
    r.add_argument("--prior-steps", type=int, default=10, help="DDIM steps per sample")
    r.add_argument("--prior-guidance", type=float, default=3.0, help="classifier-free guidance scale")
    r.add_argument("--prior-lpips-weight", type=float, default=None,
                   help="LPIPS weight in the sample loss (default 0.25 on NDC scenes, 0 otherwise; needs --lpips-weights)")
    r.set_defaults(fn=cmd_reconstruct)

    e = sub.add_parser("evaluate", help="metrics + side-by-side images of a checkpoint on its held-out views")
    e.add_argument("--checkpoint", required=True, help="run folder (or its checkpoint/)")
    e.add_argument("--data", default=None, help="override the data path stored in the checkpoint")
    e.add_argument("--out", default=None)
    common(e, video=False)
    e.set_defaults(fn=cmd_evaluate)

    v = sub.add_parser("render-video", help="render a spiral/turntable video of a checkpoint")
    v.add_argument("--checkpoint", required=True)
    v.add_argument("--data", default=None)
    v.add_argument("--out", default=None, help="video path (.mp4, or .gif)")
    v.add_argument("--frames", type=int, default=60)
    v.add_argument("--fps", type=int, default=24)
    runtime(v)
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.set_defaults(fn=cmd_render_video)

    d = sub.add_parser("demo", help="3-view fern, tiny preset, CPU-friendly (a few minutes)")
    d.add_argument("--out", default="reconfusion_demo", help="results folder (default ./reconfusion_demo)")
    d.add_argument("--data", default=None, help="another LLFF scene folder (images_8 resized by 4)")
    d.add_argument("--embedded", action="store_true", help="use the embedded copy even if shared data exists")
    d.add_argument("--iterations", type=int, default=None)
    common(d)
    # One thread: the tiny preset's ops are small, so a second thread barely helps on an idle
    # 2-core machine and slows training ~6x when the cores are shared (measured here).
    d.set_defaults(frames=30, threads=1)
    d.set_defaults(fn=cmd_demo)

    from .benchmark import add_parser as benchmark_parser

    benchmark_parser(sub)

    from .prior.train import build_parser as prior_parser

    t = sub.add_parser("train-prior", help="train the multiview diffusion prior on posed scenes")
    prior_parser(t)
    t.set_defaults(fn=cmd_train_prior)
    return p


def keep_freed_memory() -> bool:
    """glibc only: keep freed heap memory in the process (``mallopt``: no trimming, big blocks from
    the heap rather than fresh ``mmap`` pages). Rendering allocates and frees the same large buffers
    chunk after chunk; returning them to the OS each time made page faults ~25% of a CPU
    evaluation's time here (``reconfusion evaluate``: 8 s of 30 s in the kernel, 1.4 s with this).
    A CLI process owns its heap, so the library never calls this. Returns whether it applied."""
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_trim_threshold, 2**31 - 1)) and bool(libc.mallopt(m_mmap_threshold, 2**30))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    try:
        from .data.scene import DataError
        from rfkernels import BackendUnavailableError

        try:
            _at_least("--threads", getattr(args, "threads", 0), 0)
            if getattr(args, "threads", 0):
                import torch

                torch.set_num_threads(args.threads)
            return args.fn(args)
        except (CLIError, DataError, ValueError, OSError, BackendUnavailableError, json.JSONDecodeError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"reconfusion: error: {msg}", file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        print("reconfusion: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
