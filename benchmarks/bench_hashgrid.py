"""Hash-grid encoding: forward, forward+backward (table), forward+backward (table + points) per
backend vs the torch reference; L=16, F=2, T=2^19, D=3, float32 and float16 tables. On CUDA a
``torch.compile``d reference is the second baseline at N = 2^20 (tiny-cuda-nn has no installable
wheel), checked equal to the reference before it is timed."""

from __future__ import annotations

import torch

import rfkernels
from rfkernels.hashgrid import encode as grid_encode
from rfkernels.hashgrid import reference

from .common import Case, backends_for, check_peer

L, F, D = 16, 2, 3
SIZES = {"tiny": ([1 << 8], 12), "one": ([1 << 20], 19), "all": ([1 << 18, 1 << 19, 1 << 20, 1 << 21], 19)}


def _modes(encode, params, x):
    """The three timed phases of one encoder callable ``encode(points) -> [N, L*F]``."""
    xg = x.detach().clone().requires_grad_()

    def fwd():
        with torch.no_grad():
            return encode(x)

    def fwd_bwd_table():
        params.grad = None
        encode(x).sum().backward()

    def fwd_bwd_points():
        params.grad = None
        encode(xg).sum().backward()

    return [("fwd", fwd), ("fwd+bwd(table)", fwd_bwd_table), ("fwd+bwd(table+x)", fwd_bwd_points)]


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


def cases(device: torch.device, scale: str) -> list[Case]:
    sizes, T = SIZES[scale]
    rfkernels.set_validation(False)
    out = []
    for dtype in (torch.float32, torch.float16):
        enc = rfkernels.HashGridEncoding(D, L, F, T, 16, per_level_scale=1.5, dtype=dtype, device=device)
        tname = "f32" if dtype == torch.float32 else "f16"
        for N in sizes:
            x = torch.rand(N, D, device=device)
            fwd_bytes = 4 * N * (D + L * F)  # compulsory traffic only (table gathers hit cache)
            bwd_bytes = fwd_bytes + 4 * N * L * F + enc.params.numel() * (4 + enc.params.element_size())
            size = f"N=2^{N.bit_length() - 1} L={L} F={F} T=2^{T} {tname}"
            encoders = []
            for be in backends_for(device):
                encoders.append((be, lambda pts, be=be, enc=enc: grid_encode(pts, enc.params, enc.layout, backend=be)))
            if device.type == "cuda" and N == 1 << 20:  # one size: each new shape recompiles (~tens of s)
                peer = _compiled_peer(enc, x, size)
                if peer is not None:
                    encoders.append(("torch.compile", peer))
            for be, encode in encoders:
                for mode, fn in _modes(encode, enc.params, x):
                    nbytes = fwd_bytes if mode == "fwd" else bwd_bytes + (8 * N * D if "x" in mode else 0)
                    out.append(Case("hash_grid_encode", size, be, mode, fn, nbytes, N, "points"))
    return out
