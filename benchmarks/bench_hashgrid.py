"""Hash-grid encoding: forward, forward+backward (table), forward+backward (table + points) per
backend, each checked against the torch reference before it is timed; L=16, F=2, T=2^19, D=3,
float32 and float16 tables, at 2^18 and 2^20 points (``all``) drawn two ways: uniform in the cube,
and along random rays (``rays``: consecutive points on one ray, as a NeRF batch orders them, so
neighbouring threads share coarse-level corners). With a half table, the half feature-major output
(what the MLP after the encoding consumes) when the encoder offers it. On CUDA, tiny-cuda-nn's
``tcnn.Encoding`` beside ours when ``tinycudann`` imports (``python -m benchmarks.tcnn_wheel``
builds a wheel), its table loaded with ours (the same layout) and checked equal before it is timed;
with
``RFK_BENCH_COMPILE=1``, a ``torch.compile``d reference is a second baseline at N = 2^20 (compiled
per shape and dtype, so opt-in and last), checked equal to the reference before it is timed."""

from __future__ import annotations

import inspect
import os

import torch

import rfkernels
from rfkernels.hashgrid import encode as grid_encode
from rfkernels.hashgrid import reference

from . import roofline
from .common import Case, backends_for, check_peer, reference_gate

L, F, D = 16, 2, 3
SAMPLES_PER_RAY = 128
SIZES = {"tiny": ([1 << 8], 12), "one": ([1 << 20], 19), "all": ([1 << 18, 1 << 20], 19)}
DISTRIBUTIONS = ("uniform", "rays")
# the half / feature-major output option of the encoder (absent from older rfkernels: then no such case)
HALF_OUTPUT = {"output_layout", "output_dtype"} <= set(inspect.signature(grid_encode).parameters)


def ray_points(N: int, device: torch.device, generator: torch.Generator) -> torch.Tensor:
    """``[N, D]`` points on ``N / SAMPLES_PER_RAY`` random rays through the unit cube (each ray the
    chord between two uniform points), sorted along each ray and stored ray after ray."""
    per_ray = min(SAMPLES_PER_RAY, N)
    R = N // per_ray
    a = torch.rand(R, 1, D, device=device, generator=generator)
    b = torch.rand(R, 1, D, device=device, generator=generator)
    t = torch.sort(torch.rand(R, per_ray, 1, device=device, generator=generator), dim=1).values
    return (a + t * (b - a)).reshape(R * per_ray, D)


def points(N: int, distribution: str, device: torch.device) -> torch.Tensor:
    g = torch.Generator(device=device).manual_seed(N)
    if distribution == "rays":
        return ray_points(N, device, g)
    return torch.rand(N, D, device=device, generator=g)


def _modes(encode, params, x):
    """The three timed phases of one encoder callable ``encode(points) -> [N, L*F]``."""
    xg = x.detach().clone().requires_grad_()

    def fwd():
        with torch.no_grad():
            return encode(x)

    def fwd_bwd_table():
        params.grad = None
        encode(x).float().sum().backward()

    def fwd_bwd_points():
        params.grad = None
        encode(xg).float().sum().backward()

    return [("fwd", fwd, None, ()), ("fwd+bwd(table)", fwd_bwd_table, "table", (params,))] + [
        ("fwd+bwd(table+x)", fwd_bwd_points, "table+x", (params, xg))
    ]


def _compiled_peer(enc, x, size):
    """``torch.compile(reference.encode)`` on this table, or None (with the reason) if it differs."""
    compiled = torch.compile(reference.encode, dynamic=False)
    layout = enc.layout
    fn = lambda pts: compiled(pts, enc.params, layout)  # noqa: E731
    try:
        with torch.no_grad():
            err = check_peer(f"torch.compile hash grid {size}", reference.encode(x, enc.params, layout), fn(x))
        print(f"[bench_hashgrid] torch.compile reference equal to the reference on {size} (max abs err {err:.2g})")
        return fn
    except Exception as exc:  # PeerMismatch, or the peer failed to run: report, time the rest
        print(f"[bench_hashgrid] torch.compile peer not timed: {exc}")
    return None


def tcnn_or_none():
    """The ``tinycudann`` module when it imports (CUDA only), else None (the reason printed)."""
    if not torch.cuda.is_available():
        return None
    try:
        import tinycudann

        return tinycudann
    except Exception as exc:  # not installed, or its extension does not load: time the rest
        print(f"[bench_hashgrid] tiny-cuda-nn unavailable: {type(exc).__name__}: {exc}")
        return None


def _tcnn_cases(tcnn, enc, x, size) -> list[Case]:
    """``tcnn.Encoding`` with this table's configuration and values (tcnn's own layout, which ours
    copies), checked equal to the reference on ``x``, then its three phases; [] if it differs."""
    config = {
        "otype": "HashGrid",
        "n_levels": L,
        "n_features_per_level": F,
        "log2_hashmap_size": enc.layout.log2_hashmap_size,
        "base_resolution": enc.layout.base_resolution,
        "per_level_scale": enc.layout.per_level_scale,
    }
    try:
        module = tcnn.Encoding(D, config, dtype=enc.params.dtype)
        with torch.no_grad():
            module.params.copy_(enc.params.to(module.params.dtype))
        tol = dict(atol=1e-3, rtol=1e-2) if enc.params.element_size() == 2 else dict(atol=1e-4, rtol=1e-3)
        with torch.no_grad():
            err = check_peer(f"tcnn {size}", reference.encode(x, enc.params, enc.layout), module(x), **tol)
        print(f"[bench_hashgrid] tcnn equal to the reference on {size} (max abs err {err:.2g})")
    except Exception as exc:  # PeerMismatch, or tcnn refused the configuration: report, time the rest
        print(f"[bench_hashgrid] tcnn peer not timed: {type(exc).__name__}: {exc}")
        return []
    N, elem = x.shape[0], module.params.element_size()
    return [
        Case("hash_grid_encode", size, "tcnn", mode, fn, traffic, N, "points")
        for mode, fn, backward, _ in _modes(module, module.params, x)
        for traffic in [roofline.hash_grid_encode(N, L, F, D, module.params.numel(), elem, elem, backward)]
    ]


def _outputs(table_dtype: torch.dtype) -> list[tuple[str, dict, int]]:
    """(label, encode keyword arguments, output bytes per feature) of the outputs timed for a table."""
    out = [("", {}, 4)]
    if HALF_OUTPUT and table_dtype == torch.float16:
        out.append((" out=f16 feature-major", {"output_layout": "feature_major", "output_dtype": torch.float16}, 2))
    return out


def _encoder_cases(enc, x, size, out_kw, out_bytes, device) -> list[Case]:
    """Every timed phase of every backend of ours on one (table, points, output) combination."""
    N = x.shape[0]
    elem = enc.params.element_size()
    tol = dict(atol=1e-3, rtol=1e-2) if elem == 2 or out_bytes == 2 else dict(atol=1e-4, rtol=1e-3)
    out = []
    for be in backends_for(device):
        encode = lambda pts, be=be: grid_encode(pts, enc.params, enc.layout, backend=be, **out_kw)  # noqa: E731
        for mode, fn, backward, wrt in _modes(encode, enc.params, x):
            pts = wrt[1] if len(wrt) > 1 else x
            call = lambda b, pts=pts: grid_encode(pts, enc.params, enc.layout, backend=b, **out_kw)  # noqa: E731
            check = reference_gate(f"hash_grid_encode {size} {mode}", call, be, wrt=wrt, **tol)
            traffic = roofline.hash_grid_encode(N, L, F, D, enc.params.numel(), elem, out_bytes, backward)
            out.append(Case("hash_grid_encode", size, be, mode, fn, traffic, N, "points", check=check))
    return out


def _compiled_cases(enc, x, size) -> list[Case]:
    """The torch.compile peer's timed phases (none when it differs from the reference)."""
    peer = _compiled_peer(enc, x, size)
    if peer is None:
        return []
    N, elem = x.shape[0], enc.params.element_size()
    return [
        Case("hash_grid_encode", size, "torch.compile", mode, fn, traffic, N, "points")
        for mode, fn, backward, _ in _modes(peer, enc.params, x)
        for traffic in [roofline.hash_grid_encode(N, L, F, D, enc.params.numel(), elem, 4, backward)]
    ]


def cases(device: torch.device, scale: str) -> list[Case]:
    sizes, T = SIZES[scale]
    rfkernels.set_validation(False)
    out, compiled = [], []
    tcnn = tcnn_or_none()
    for dtype in (torch.float32, torch.float16):
        enc = rfkernels.HashGridEncoding(D, L, F, T, 16, per_level_scale=1.5, dtype=dtype, device=device)
        tname = "f32" if dtype == torch.float32 else "f16"
        for N in sizes:
            for dist in DISTRIBUTIONS:
                x = points(N, dist, device)
                base = f"N=2^{N.bit_length() - 1} {dist} L={L} F={F} T=2^{T} {tname}"
                for label, out_kw, out_bytes in _outputs(dtype):
                    out += _encoder_cases(enc, x, base + label, out_kw, out_bytes, device)
                if tcnn is not None:
                    out += _tcnn_cases(tcnn, enc, x, base)
                want_peer = device.type == "cuda" and N == 1 << 20 and dist == "uniform"
                if want_peer and os.environ.get("RFK_BENCH_COMPILE") == "1":
                    compiled += _compiled_cases(enc, x, base)
    return out + compiled  # the compiled peer last: its compilation is the slowest part of a run
