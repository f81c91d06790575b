"""Occupancy-grid marching: ``traverse_grids`` per backend vs the torch reference, and the nerfacc
layer's ``OccGridEstimator.sampling`` (the Instant-NGP sampler) on the same grid; nerfacc 0.5.3 beside
both when installed (CUDA only), checked equal to ours before it is timed. Scene: nested 2**i boxes
around [-1, 1]^3 with random half-occupied binaries, rays from a sphere of radius 3 aimed near the
centre; step sqrt(3) * 2 / 1024 (nerfacc's examples), 4 levels of 128^3 (``one``/``all``).

Traffic model (roofline): per ray the origin, direction and planes in, offsets and terminate plane
out; per interval two floats out (and an int64 ray index); each visited cell is one sector gathered
in each of the two passes (count, fill), taking ``X + Y + Z`` cells per ray as the estimate."""

from __future__ import annotations

import math

import torch

import rfkernels
from rfkernels.compat import nerfacc as ours_nerfacc

from .common import Case, backends_for, check_peer, nerfacc_or_none, reference_gate
from .roofline import F32, Traffic

SIZES = {  # rays, levels, resolution
    "tiny": [(256, 2, 16)],
    "one": [(1 << 16, 4, 128)],
    "all": [(1 << 12, 4, 128), (1 << 16, 4, 128), (1 << 16, 1, 128)],
}
STEP = {"tiny": 2e-2, "one": math.sqrt(3) * 2 / 1024, "all": math.sqrt(3) * 2 / 1024}


def _scene(R, levels, res, device):
    g = torch.Generator().manual_seed(0)
    direction = torch.randn(R, 3, generator=g)
    origins = 3 * direction / direction.norm(dim=-1, keepdim=True)
    target = (torch.rand(R, 3, generator=g) * 2 - 1) * 0.5
    d = target - origins
    est = ours_nerfacc.OccGridEstimator([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0], resolution=res, levels=levels).to(device)
    est.binaries = (torch.rand(levels, res, res, res, generator=g) < 0.5).to(device)
    return origins.to(device), (d / d.norm(dim=-1, keepdim=True)).to(device), est


def traversal_traffic(R: int, N: int, res: int) -> Traffic:
    """Minimum traffic of one traversal of R rays giving N intervals (see the module docstring)."""
    per_ray = F32 * (3 + 3 + 2 + 1) + 8  # o, d, near, far, terminate in; offsets out
    return Traffic(R * per_ray + N * (2 * F32 + 8), R, l2_gathers=2 * R * 3 * res)


def _cases_for(R, levels, res, step, device, nerfacc) -> list[Case]:
    o, d, est = _scene(R, levels, res, device)
    size = f"R={R} L={levels} res={res}^3 step={step:.3g}"

    def traverse(be):
        out = rfkernels.traverse_grids(o, d, est.binaries, est.aabbs, step_size=step, backend=be)
        return out.t_starts, out.t_ends, out.offsets

    def sampling(be):
        with rfkernels.use_backend(be):
            return est.sampling(o, d, render_step_size=step)

    N = int(traverse("torch")[2][-1])
    traffic = traversal_traffic(R, N, res)
    runs = []
    for be in backends_for(device):
        gate = reference_gate(f"traverse {size}", traverse, be)
        runs.append(("traverse_grids", be, lambda be=be: traverse(be), gate))
        runs.append(("OccGridEstimator.sampling", be, lambda be=be: sampling(be), None))
    if nerfacc is not None:
        peer = nerfacc.OccGridEstimator(est.aabbs[0].tolist(), resolution=res, levels=levels).to(device)
        peer.binaries = est.binaries.clone()

        def peer_traverse():
            intervals, samples, _ = nerfacc.traverse_grids(o, d, est.binaries, est.aabbs, step_size=step)
            return intervals.vals[intervals.is_left], intervals.vals[intervals.is_right]

        def peer_sampling():
            return peer.sampling(o, d, render_step_size=step)

        for op, fn, mine in (
            ("traverse_grids", peer_traverse, lambda: traverse("torch")[:2]),
            ("OccGridEstimator.sampling", peer_sampling, lambda: sampling("torch")),
        ):
            try:
                with torch.no_grad():
                    err = check_peer(f"nerfacc {op} {size}", mine(), fn())
                runs.append((op, "nerfacc", fn, None))
                print(f"[bench_occgrid] nerfacc {op} equal to ours on {size} (max abs err {err:.2g})")
            except Exception as exc:  # PeerMismatch (float-edge steps), or the peer failed: report, time the rest
                print(f"[bench_occgrid] nerfacc {op} not timed: {exc}")
    return [Case(op, size, be, "fwd", fn, traffic, R, "rays", check=check) for op, be, fn, check in runs]


def cases(device: torch.device, scale: str) -> list[Case]:
    rfkernels.set_validation(False)  # value checks sync the device; measure the kernels
    nerfacc = nerfacc_or_none()
    out = []
    for R, levels, res in SIZES[scale]:
        out += _cases_for(R, levels, res, STEP[scale], device, nerfacc)
    return out
