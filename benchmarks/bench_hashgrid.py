"""Hash-grid encoding: forward, forward+backward (table), forward+backward (table + points) per
backend vs the torch reference; L=16, F=2, T=2^19, D=3, float32 and float16 tables."""
from __future__ import annotations

import torch

import rfkernels
from rfkernels import _dispatch

from .common import Case

L, F, D = 16, 2, 3


def _modes(enc, x, be):
    xg = x.detach().clone().requires_grad_()

    def fwd():
        with torch.no_grad():
            return enc(x)

    def fwd_bwd_table():
        enc.params.grad = None
        enc(x).sum().backward()

    def fwd_bwd_points():
        enc.params.grad = None
        enc(xg).sum().backward()

    return [("fwd", fwd), ("fwd+bwd(table)", fwd_bwd_table), ("fwd+bwd(table+x)", fwd_bwd_points)]


def cases(device: torch.device, quick: bool) -> list[Case]:
    sizes, T = ([1 << 10], 14) if quick else ([1 << 18, 1 << 19, 1 << 20, 1 << 21], 19)
    backends = [b for b in ("torch", "triton", "cuda") if b in _dispatch.available_backends(device)]
    if device.type == "cpu":
        backends = ["torch"]  # the Triton interpreter is a correctness tool, not a benchmark
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
            for be in backends:
                enc.backend = be
                for mode, fn in _modes(enc, x, be):
                    nbytes = fwd_bytes if mode == "fwd" else bwd_bytes + (8 * N * D if "x" in mode else 0)
                    out.append(Case("hash_grid_encode", size, be, mode, fn, nbytes, N, "points"))
    return out
