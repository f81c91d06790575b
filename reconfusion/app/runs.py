"""One reconstruction run as the commands make it: device and config from the command line, the
scene and its few-view split, training, evaluation, the video and ``results.json``.

Shared by :mod:`.cli` (``reconstruct``, ``demo``) and :mod:`.quality_benchmark`. What counts as a
user error (reported by the CLI in one line, exit status 2) is :data:`USER_ERRORS`; anything else
raised while training or rendering is a bug and keeps its traceback (:func:`the_work`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time

from rfkernels import BackendUnavailableError

from ..config import ConfigError
from ..data.scene import DataError
from ..geometry.matching import GeometryDependencyError
from ..safe_io import CheckpointError, check_writable_dir

DEMO_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "demo", "fern")
DEMO_FACTOR = 32  # the embedded copy: images_32/ (126x94), i.e. the protocol's 8x images resized by 4
DEMO_VIEWS = 3


class CLIError(Exception):
    """A command-line argument the command cannot use."""


class WorkError(RuntimeError):
    """A ``ValueError`` raised inside the work itself (training, rendering): not the user's input,
    so it keeps its traceback (chained as ``__cause__``)."""


USER_ERRORS = (
    CLIError,
    ConfigError,
    DataError,
    CheckpointError,
    BackendUnavailableError,
    GeometryDependencyError,  # --sparse-depth on without OpenCV
    OSError,
    json.JSONDecodeError,
)


@contextlib.contextmanager
def the_work():
    """Around training and rendering: user errors pass through, any other ``ValueError`` becomes a
    :class:`WorkError` so the CLI shows its traceback instead of a one-line message."""
    try:
        yield
    except USER_ERRORS:
        raise
    except ValueError as exc:
        raise WorkError(f"{type(exc).__name__} while running: {exc}") from exc


# ----------------------------------------------------------------------------- arguments
def parse_ids(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(t) for t in text.replace(",", " ").split()]
    except ValueError as exc:
        raise CLIError(f"view ids must be integers separated by commas, got {text!r}") from exc


def torch_device(name: str):
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


def at_least(flag: str, value, lo: int):
    if value is not None and value < lo:
        raise CLIError(f"{flag} must be >= {lo}, got {value}")
    return value


def check_out_dir(out: str | None, flag: str = "--out") -> None:
    """Before any work: the output folder is writable (or can be created), else one
    :class:`~reconfusion.safe_io.OutputError` line naming ``flag``."""
    if out:
        check_writable_dir(out, flag)


def make_config(
    preset: str,
    iterations: int | None = None,
    batch: int | None = None,
    backend: str | None = None,
    overrides: list[str] = (),
    sparse_depth: str | None = None,
):
    """The preset with the command line's settings: the flags (``sparse_depth`` ``"on"``: the preset's
    sparse-depth weight, or :data:`~reconfusion.config.SPARSE_DEPTH_WEIGHT` where it is off; ``"off"``:
    0), then every ``--set key=value`` (dotted keys, validated against the config). Derived settings
    are resolved by ``train``."""
    from ..config import SPARSE_DEPTH_WEIGHT, get_preset, parse_overrides, with_overrides

    cfg = get_preset(preset)
    kw = {
        "iterations": at_least("--iterations", iterations, 1),
        "batch_rays": at_least("--batch-rays", batch, 1),
        "backend": backend,
    }
    if sparse_depth == "off":
        kw["sparse_depth_weight"] = 0.0
    elif sparse_depth == "on" and cfg.sparse_depth_weight == 0:
        kw["sparse_depth_weight"] = SPARSE_DEPTH_WEIGHT
    cfg = cfg.replace(**{k: v for k, v in kw.items() if v is not None})
    return with_overrides(cfg, parse_overrides(list(overrides))) if overrides else cfg


def shared_fern() -> str | None:
    """``../shared/data/fern`` beside the project checkout (or $RECONFUSION_DATA/fern), if present."""
    env = os.environ.get("RECONFUSION_DATA")
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    checkout = os.path.dirname(package)
    cands = ([os.path.join(env, "fern")] if env else []) + [
        os.path.join(os.path.dirname(checkout), "shared", "data", "fern")
    ]
    for cand in cands:
        if os.path.isfile(os.path.join(cand, "poses_bounds.npy")):
            return cand
    return None


def load_split_scene(
    data: str,
    fmt: str,
    downscale: float,
    factor: int | None,
    views: int | None,
    train_ids,
    test_ids,
    strategy: str,
    space: str = "auto",
):
    """-> (scene with its training / held-out views, the data info a checkpoint records)."""
    from ..data import detect_format, load_scene, select_views
    from ..data.llff import default_factor

    llff = (fmt if fmt != "auto" else detect_format(data)) == "llff"
    if factor is not None and not llff:
        raise CLIError("--factor applies to LLFF scenes only (use --downscale)")
    if llff and factor is None:
        factor = default_factor(data)  # images_8/, else the images_<k>/ folder there is
    kw = {"factor": factor} if factor is not None else {}
    if space != "auto":
        if not llff:  # the other formats say their space themselves (object-centric: box or contract)
            raise CLIError(f"--space applies to LLFF-layout scenes (poses_bounds.npy), not to {data}")
        kw["space"] = space
    scene = load_scene(data, format=fmt, downscale=downscale, **kw)
    if views is None and train_ids is None:
        raise CLIError("pass --views N or --train-ids")
    scene = select_views(scene, n_views=views, train_ids=train_ids, test_ids=test_ids, strategy=strategy)
    info = {"path": os.path.abspath(data), "format": fmt, "downscale": downscale, "factor": factor}
    if space != "auto":
        info["space"] = space  # evaluate / render-video reload the scene the same way
    return scene, info


# ----------------------------------------------------------------------------- the run
def print_results(res: dict, out_dir: str | None) -> None:
    m = res["mean"]
    extra = f"  LPIPS {m['lpips']:.3f}" if "lpips" in m else ""
    print(
        f"held-out views {res['test_ids']} ({res['resolution'][0]}x{res['resolution'][1]}): "
        f"PSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.3f}{extra}"
    )
    if out_dir:
        print(f"results: {os.path.join(out_dir, 'results.json')}")


def run_reconstruction(
    scene,
    info,
    cfg,
    out: str,
    device,
    resume: bool,
    lpips: str | None,
    video: bool,
    frames: int,
    quiet: bool,
    extra_terms=(),
) -> dict:
    """Train on ``scene``'s training views into ``out``, evaluate the held-out views, optionally
    render the path video; writes and returns ``results.json``'s content."""
    from ..evaluation import evaluate
    from ..reconstruct import check_backend, train
    from ..video import render_video

    check_backend(cfg.backend, device)
    os.makedirs(out, exist_ok=True)
    print(
        f"scene {scene.name}: {scene.n_images} images {scene.width}x{scene.height}, space {scene.space}"
        + (f" ({scene.space_reason})" if scene.space_reason else "")
        + ", "
        f"train views {scene.train_ids}, test views {scene.test_ids}"
    )
    print(f"preset {cfg.preset}: {cfg.iterations} iterations x {cfg.batch_rays} rays on {device}")
    t0 = time.time()
    with the_work():
        result = train(
            scene,
            cfg,
            out,
            device=device,
            resume=resume,
            progress_bar=not quiet,
            data_info=info,
            extra_terms=extra_terms,
        )
        t_train = time.time() - t0
        res = evaluate(result.model, scene, out, device=device, lpips_path=lpips, progress_bar=not quiet)
        res["train_seconds"] = t_train
        if video:
            res["video"] = render_video(
                result.model,
                scene,
                os.path.join(out, "video.mp4"),
                n_frames=frames,
                device=device,
                progress_bar=not quiet,
            )
    res["total_seconds"] = time.time() - t0
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(res, f, indent=2)
    print_results(res, out)
    print(
        f"training {t_train:.0f} s, total {res['total_seconds']:.0f} s" + (f"; video: {res['video']}" if video else "")
    )
    return res
