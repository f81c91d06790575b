"""End-to-end NeRF training step, side by side: the proposal-network NeRF of
``examples/nerfacc_prop_lego.py`` (two proposal hash-grid fields + a hash-grid radiance field,
proposal sampling, volume rendering, photometric + proposal losses, backward, two Adam steps) run
with three stacks, one model code:

* ``rfkernels``: the example as written (``rfkernels.compat`` nerfacc + tcnn APIs), backend ``auto``;
* ``rfkernels backend=torch``: the same under ``rfkernels.use_backend("torch")``, plain PyTorch ops
  (timed only where ``auto`` resolves to another backend: on a CPU it is the same computation);
* ``nerfacc 0.5.3 + torch hash grid``: the real nerfacc's ``PropNetEstimator`` and ``rendering``
  with the compat tcnn fields on the torch backend. nerfacc's two CUDA-only kernels
  (``importance_sampling``, ``searchsorted``) are replaced by the compat ones on a CPU, as the
  example's test does; on CUDA nothing is replaced.

    python -m benchmarks.train_step [--scale tiny|one] [--steps 8] [--device cpu] [--out FILE]

One step = everything between two consecutive ray batches (``sample_rays`` calls), which ends with
the loss read on the host, so on CUDA the device work is inside it. Every stack first runs two
untimed steps; then the stacks run in turn, twice (``ROUNDS``), each run's first step dropped, and
the median of a stack's steps is reported. The cameras orbit the scene and the
images are random (the cost does not depend on their content: every ray gets the same sample counts).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import rfkernels
from rfkernels._dispatch import resolve_backend
from rfkernels.compat import nerfacc as compat_nerfacc
from rfkernels.compat import tcnn as compat_tcnn

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "nerfacc_prop_lego.py"
# rays, proposal samples, samples, field levels: "tiny" is the example's CPU setting; "one" is
# nerfacc's examples/train_ngp_nerf_prop.py (4096 rays, 256 + 96 proposal samples, 48 samples)
SCALES = {
    "tiny": dict(n_rays=256, prop_samples=(32, 16), num_samples=16, n_levels=8),
    "one": dict(n_rays=4096, prop_samples=(256, 96), num_samples=48, n_levels=16),
}
ROUNDS = 2  # timed runs per stack, alternating between stacks


def load_example():
    """``examples/nerfacc_prop_lego.py`` as a fresh module (its globals are patched per stack)."""
    spec = importlib.util.spec_from_file_location("nerfacc_prop_lego_bench", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def real_nerfacc():
    """The installed nerfacc 0.5.3 (not our compat layer), or None with the reason printed."""
    try:
        mod = importlib.import_module("nerfacc")
    except ImportError as exc:
        print(f"[train_step] nerfacc not installed ({exc}): its row is skipped")
        return None
    if mod is compat_nerfacc or getattr(mod, "__version__", None) != "0.5.3":
        print("[train_step] the importable nerfacc is not nerfacc 0.5.3: its row is skipped")
        return None
    return mod


def orbit_data(n_views: int, size: int, device: torch.device):
    """(images [V, size, size, 3] random, c2w [V, 4, 4] on a radius-4 orbit looking at the origin,
    focal): what ``load_lego`` returns, without the files."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n_views, size, size, 3, generator=g)
    angles = torch.arange(n_views) * (2 * math.pi / n_views)
    eye = torch.stack([4 * torch.cos(angles), 4 * torch.sin(angles), torch.full_like(angles, 1.5)], -1)
    back = eye / eye.norm(dim=-1, keepdim=True)  # the camera looks down -z: z points away from the scene
    right = torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0]).expand_as(back), back)
    right = right / right.norm(dim=-1, keepdim=True)
    up = torch.linalg.cross(back, right)
    c2w = torch.eye(4).repeat(n_views, 1, 1)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, up, back, eye
    focal = 0.5 * size / math.tan(0.5 * 0.69)  # lego's camera_angle_x
    return images.to(device), c2w.to(device), focal


@contextlib.contextmanager
def patched(module, **attrs):
    """Set ``module.<name> = value`` for the block, then restore."""
    saved = {k: getattr(module, k) for k in attrs}
    try:
        for k, v in attrs.items():
            setattr(module, k, v)
        yield
    finally:
        for k, v in saved.items():
            setattr(module, k, v)


def step_seconds(example, data, steps: int, device: torch.device, **kw) -> tuple[list[float], list[float]]:
    """(seconds of ``steps`` steps, losses) of ``example.train``: the intervals between consecutive
    ``sample_rays`` calls, after a first step that is not timed (and one more step run to close the
    last interval)."""
    stamps: list[float] = []
    original = example.sample_rays

    def stamped(*args, **kwargs):
        stamps.append(time.perf_counter())
        return original(*args, **kwargs)

    with patched(example, sample_rays=stamped):
        losses = example.train(data, steps=steps + 2, device=device, **kw)
    return [b - a for a, b in zip(stamps[1:-1], stamps[2:])], losses


def stack_context(stack: str, example, nerfacc, device: torch.device):
    """The patches and backend scope that make ``example`` run as ``stack``."""
    stack_patches = contextlib.ExitStack()
    if stack == "rfkernels":
        stack_patches.enter_context(patched(example, nerfacc=compat_nerfacc, tcnn=compat_tcnn))
    elif stack == "rfkernels backend=torch":
        stack_patches.enter_context(patched(example, nerfacc=compat_nerfacc, tcnn=compat_tcnn))
        stack_patches.enter_context(rfkernels.use_backend("torch"))
    else:
        stack_patches.enter_context(patched(example, nerfacc=nerfacc, tcnn=compat_tcnn))
        stack_patches.enter_context(rfkernels.use_backend("torch"))
        if device.type == "cpu":  # nerfacc's two CUDA-only kernels -> the compat ones
            prop_net = nerfacc.estimators.prop_net
            stack_patches.enter_context(
                patched(
                    prop_net,
                    importance_sampling=compat_nerfacc.importance_sampling,
                    searchsorted=compat_nerfacc.searchsorted,
                )
            )
    return stack_patches


def auto_backend(device: torch.device) -> str:
    """What ``auto`` resolves to for the hash grid (the op that dominates the step) on ``device``."""
    return resolve_backend("auto", torch.empty(0, device=device), family="hashgrid")


def stacks_for(device: torch.device, nerfacc) -> list[str]:
    """The stacks worth timing here (see the module docstring)."""
    out = ["rfkernels"]
    if auto_backend(device) != "torch":
        out.append("rfkernels backend=torch")
    if nerfacc is not None:
        out.append("nerfacc 0.5.3 + torch hash grid")
    return out


def _git_commit() -> str:
    def git(*args):
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "benchmarks", "rfkernels", "examples")
    return commit + ("+uncommitted" if dirty else "")


def _machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln),
        platform.processor() or "cpu",
    )
    return f"{model}, {os.cpu_count()} cores"


def run(scale: str, steps: int, device: torch.device) -> dict:
    """Time every stack; the report records machine, threads, date, commit and versions."""
    rfkernels.set_validation(False)  # value checks sync the device; time the training step
    cfg = SCALES[scale]
    example, nerfacc = load_example(), real_nerfacc()
    data = orbit_data(8, 50, device)
    report = {
        "benchmark": "train_step",
        "scale": scale,
        "config": {**cfg, "prop_samples": list(cfg["prop_samples"]), "steps_timed": ROUNDS * steps},
        "env": {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": _machine(device),
            "device": device.type,
            "threads": torch.get_num_threads(),
            "load_average_1min": os.getloadavg()[0],  # other processes on the machine at the start
            "commit": _git_commit(),
            "torch": torch.__version__,
            "nerfacc": getattr(nerfacc, "__version__", None),
            "rfkernels_auto_backend": auto_backend(device),
        },
        "results": [],
    }
    stacks = stacks_for(device, nerfacc)
    for stack in stacks:  # warm-up: one-time costs (first calls, allocator) land on no stack's timing
        with stack_context(stack, example, nerfacc, device):
            step_seconds(example, data, 1, device, **cfg)
    secs: dict[str, list[float]] = {stack: [] for stack in stacks}
    losses: dict[str, list[float]] = {}
    for _ in range(ROUNDS):  # alternate the stacks: a slow spell of a shared machine hits all of them
        for stack in stacks:
            with stack_context(stack, example, nerfacc, device):
                times, losses[stack] = step_seconds(example, data, steps, device, **cfg)
            secs[stack] += times
    for stack in stacks:
        row = {
            "stack": stack,
            "ms_per_step_median": 1e3 * statistics.median(secs[stack]),
            "ms_per_step_min": 1e3 * min(secs[stack]),
            "steps": len(secs[stack]),
            "rays_per_s": cfg["n_rays"] / statistics.median(secs[stack]),
            "final_loss": losses[stack][-1],
        }
        print(f"{stack:<34} {row['ms_per_step_median']:9.1f} ms/step (min {row['ms_per_step_min']:.1f})", flush=True)
        report["results"].append(row)
    base = report["results"][0]["ms_per_step_median"]
    for row in report["results"]:
        row["ms_over_rfkernels"] = row["ms_per_step_median"] / base  # > 1: rfkernels is faster
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_step", description=__doc__.splitlines()[0])
    p.add_argument("--scale", choices=tuple(SCALES), default=None, help="tiny (CPU default) | one (GPU default)")
    p.add_argument("--steps", type=int, default=8, help="timed steps per stack and round (after one dropped)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default: print only)")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    report = run(args.scale or ("tiny" if device.type == "cpu" else "one"), args.steps, device)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        tmp.replace(args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
