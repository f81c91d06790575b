"""``reconfusion`` command line: reconstruct, evaluate, render-video, demo, benchmark, train-prior,
export-nerfstudio.

Every user error (missing files, bad data, too few views, unknown preset) ends with one line
``reconfusion: error: ...`` on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..config import BACKENDS
from ..data import FORMATS
from .runs import (
    DEMO_DATA,
    DEMO_FACTOR,
    DEMO_VIEWS,
    USER_ERRORS,
    CLIError,
    at_least,
    check_out_dir,
    load_split_scene,
    make_config,
    parse_ids,
    print_results,
    run_reconstruction,
    shared_fern,
    the_work,
    torch_device,
)


def _check_common(a) -> None:
    """Validate the common options before any data is read or a model trained."""
    at_least("--threads", getattr(a, "threads", 0), 0)
    torch_device(a.device)
    if hasattr(a, "frames") and not getattr(a, "no_video", False):
        at_least("--frames", a.frames, 1)
    at_least("--fps", getattr(a, "fps", None), 1)


# ----------------------------------------------------------------------------------- commands
def cmd_reconstruct(a) -> int:
    _check_common(a)
    cfg = make_config(a.preset, a.iterations, a.batch_rays, a.backend, a.set, a.sparse_depth)
    check_out_dir(a.out)
    if a.resume:
        from ..checkpoint import resumable_checkpoint

        if resumable_checkpoint(a.out) is None:
            raise CLIError(f"--resume: no checkpoint to resume in {a.out} (run without --resume to start)")
    scene, info = load_split_scene(
        a.data,
        a.format,
        a.downscale,
        a.factor,
        a.views,
        parse_ids(a.train_ids),
        parse_ids(a.test_ids),
        a.strategy,
        a.space,
    )
    device = torch_device(a.device)
    extra = ()
    if a.prior:  # the diffusion sample loss (reconfusion.prior.sample_loss)
        from ..prior.sample_loss import prior_loss_term

        extra = (
            prior_loss_term(
                a.prior,
                scene,
                every=a.prior_every,
                weight=a.prior_weight,
                device=device,
                steps=a.prior_steps,
                guidance=a.prior_guidance,
                lpips=a.lpips_weights,
                lpips_weight=a.prior_lpips_weight,
            ),
        )
        print(f"diffusion prior {a.prior}: sample loss every {a.prior_every} iterations")
    run_reconstruction(
        scene, info, cfg, a.out, device, a.resume, a.lpips_weights, not a.no_video, a.frames, a.quiet, extra
    )
    return 0


def cmd_train_prior(a) -> int:
    from ..prior.train import run

    return run(a)


def _checkpoint_scene(a):
    """Model + the scene it was trained on (data path from the checkpoint unless --data)."""
    from ..data import load_scene
    from ..reconstruct import load_checkpoint

    _check_common(a)
    device = torch_device(a.device)
    model, cfg, info = load_checkpoint(a.checkpoint, device, backend=a.backend)
    meta, data = info["scene"], info["scene"].get("data", {})
    path = a.data or data.get("path")
    if not path:
        raise CLIError("the checkpoint does not record its data: pass --data PATH")
    kw = {"factor": data["factor"]} if data.get("factor") is not None else {}
    if data.get("space"):  # a space the run chose by --space
        kw["space"] = data["space"]
    scene = load_scene(path, format=data.get("format", "auto"), downscale=data.get("downscale", 1.0), **kw)
    scene = scene.replace(train_ids=meta["train_ids"], test_ids=meta["test_ids"])
    return model, cfg, scene, device


def cmd_evaluate(a) -> int:
    from ..evaluation import evaluate
    from ..reconstruct import checkpoint_dir

    out = a.out or os.path.join(os.path.dirname(os.path.abspath(checkpoint_dir(a.checkpoint))), "eval")
    check_out_dir(out)
    model, cfg, scene, device = _checkpoint_scene(a)
    with the_work():
        res = evaluate(model, scene, out, device=device, lpips_path=a.lpips_weights, progress_bar=not a.quiet)
    print_results(res, out)
    return 0


def cmd_render_video(a) -> int:
    from ..reconstruct import checkpoint_dir
    from ..video import check_video_path, render_video

    if a.out and os.path.isdir(a.out):
        raise CLIError(f"--out {a.out} is a folder; give a video file path (.mp4 or .gif)")
    out = a.out or os.path.join(os.path.dirname(os.path.abspath(checkpoint_dir(a.checkpoint))), "video.mp4")
    try:
        check_video_path(out)
    except ValueError as exc:
        raise CLIError(f"--out: {exc}") from None
    check_out_dir(os.path.dirname(os.path.abspath(out)), "--out's folder")
    model, cfg, scene, device = _checkpoint_scene(a)
    with the_work():
        path = render_video(model, scene, out, n_frames=a.frames, fps=a.fps, device=device, progress_bar=not a.quiet)
    print(f"video: {path}")
    return 0


def cmd_export_nerfstudio(a) -> int:
    """Any scene reconfusion reads -> a nerfstudio folder (transforms.json + images/)."""
    from ..data import load_scene
    from ..data.export_nerfstudio import export_nerfstudio

    if a.downscale <= 0:
        raise CLIError(f"--downscale must be > 0, got {a.downscale}")
    scene = load_scene(a.scene, format=a.format, downscale=a.downscale)
    path = export_nerfstudio(scene, a.out, overwrite=a.overwrite)
    print(f"wrote {path} ({scene.images.shape[0]} frames)")
    return 0


def cmd_demo(a) -> int:
    """3-view fern with the tiny preset: shared data if present (images_8 resized by 4), else the
    embedded copy (the same images, already resized)."""
    _check_common(a)
    cfg = make_config("tiny", a.iterations, None, a.backend, a.set, a.sparse_depth)
    check_out_dir(a.out)
    if a.data:
        data, factor, downscale = a.data, 8, 4.0
    elif shared_fern() and not a.embedded:
        data, factor, downscale = shared_fern(), 8, 4.0
    else:
        data, factor, downscale = DEMO_DATA, DEMO_FACTOR, 1.0
    print(f"demo data: {data} (LLFF fern, Mildenhall et al. 2019)")
    scene, info = load_split_scene(data, "llff", downscale, factor, DEMO_VIEWS, None, None, "even")
    run_reconstruction(
        scene, info, cfg, a.out, torch_device(a.device), False, a.lpips_weights, not a.no_video, a.frames, a.quiet
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reconfusion", description="Few-view NeRF reconstruction on rfkernels.")
    sub = p.add_subparsers(dest="command", required=True)

    def runtime(q):
        q.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
        q.add_argument(
            "--backend",
            default=None,
            choices=BACKENDS,
            help="rfkernels backend of every op (default: auto, or $RFKERNELS_BACKEND)",
        )
        q.add_argument(
            "--threads",
            type=int,
            default=0,
            help="CPU threads for torch (0 = torch's default; 1 is faster on a busy machine)",
        )

    def settings(q):
        q.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="config override, repeatable; dotted keys reach nested settings "
            "(e.g. --set occlusion_weight=0.02 --set field.dir_degree=3); values parse as JSON",
        )
        q.add_argument(
            "--sparse-depth",
            choices=("on", "off"),
            default=None,
            help="depth from the training views' triangulated features (needs opencv-python-headless): "
            "on = the preset's weight, or config.SPARSE_DEPTH_WEIGHT where the preset has it off; "
            "default: the preset's; --set sparse_depth_weight=W sets the weight",
        )

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
    r.add_argument("--strategy", default="auto", help="view selection: auto | even | farthest | orbit")
    r.add_argument(
        "--space",
        default="auto",
        choices=("auto", "ndc", "contract", "box"),
        help="scene space of an LLFF-layout capture (default: decided from the cameras and printed)",
    )
    r.add_argument("--preset", default="tiny", help="tiny | base")
    r.add_argument("--iterations", type=int, default=None)
    r.add_argument("--batch-rays", type=int, default=None)
    r.add_argument(
        "--factor",
        type=int,
        default=None,
        help="LLFF images_<factor> (default 8, or the images_<k>/ folder the scene has)",
    )
    r.add_argument("--downscale", type=float, default=1.0, help="extra image downscale")
    r.add_argument("--out", required=True)
    r.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    common(r)
    settings(r)
    r.add_argument("--prior", default=None, help="a saved diffusion prior directory: turns the sample loss on")
    r.add_argument("--prior-every", type=int, default=10, help="sample loss every k iterations")
    r.add_argument("--prior-weight", type=float, default=1.0, help="sample loss weight (x 1 / number of views)")
    r.add_argument("--prior-steps", type=int, default=10, help="DDIM steps per sample")
    r.add_argument("--prior-guidance", type=float, default=3.0, help="classifier-free guidance scale")
    r.add_argument(
        "--prior-lpips-weight",
        type=float,
        default=None,
        help="LPIPS weight in the sample loss (default 0.25 on NDC scenes, 0 otherwise; needs --lpips-weights)",
    )
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
    settings(d)
    # One thread: the tiny preset's ops are small, so a second thread barely helps on an idle
    # 2-core machine and slows training ~6x when the cores are shared (measured here).
    d.set_defaults(frames=30, threads=1)
    d.set_defaults(fn=cmd_demo)

    x = sub.add_parser("export-nerfstudio", help="write any scene reconfusion reads as a nerfstudio transforms.json")
    x.add_argument("scene", help="scene folder or .npz bundle (any format reconfusion reads)")
    x.add_argument("out", help="output folder (transforms.json + images/)")
    x.add_argument("--format", default="auto", choices=FORMATS, help="input format (default: detected)")
    x.add_argument("--downscale", type=float, default=1.0, help="resize the images by this factor")
    x.add_argument("--overwrite", action="store_true", help="replace an existing transforms.json in OUT")
    x.set_defaults(fn=cmd_export_nerfstudio)

    from .quality_benchmark import add_parser as benchmark_parser

    settings(benchmark_parser(sub))

    from ..prior.train import build_parser as prior_parser

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
        try:
            at_least("--threads", getattr(args, "threads", 0), 0)
            if getattr(args, "threads", 0):
                import torch

                torch.set_num_threads(args.threads)
            return args.fn(args)
        # user errors, and a ValueError from checking the input before the work (inside the work,
        # runs.the_work turns any other ValueError into a WorkError, shown with its traceback)
        except (*USER_ERRORS, ValueError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"reconfusion: error: {msg}", file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        print("reconfusion: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
