"""Proposal sampling: Zip-NeRF's resampling chain on 2^16 rays (64 uniform s-bins -> 64 proposal
intervals -> 32 NeRF intervals, single jitter, interval edges) and the interlevel losses (32 fine
intervals against a 64-bin proposal, outer and blurred), forward + backward, every backend vs the
torch reference; nerfacc's ``importance_sampling`` as a peer when it is installed."""
from __future__ import annotations

import importlib.util

import torch

import rfkernels
from rfkernels import _dispatch

from .common import Case


def _histogram(R, S, device):
    """Sorted s-space edges [R, S+1] on [0, 1] and peaky weights [R, S] (a surface per ray)."""
    bins = torch.sort(torch.rand(R, S + 1, device=device), -1).values
    bins[:, 0], bins[:, -1] = 0.0, 1.0
    center = torch.rand(R, 1, device=device)
    mid = 0.5 * (bins[:, 1:] + bins[:, :-1])
    weights = torch.exp(-((mid - center) / 0.05) ** 2) * (bins[:, 1:] - bins[:, :-1]) * 10
    return bins, weights


def _nerfacc_case(bins, weights, n, size, R):
    """nerfacc.pdf.importance_sampling (0.5 API) on the same padded histograms, or None."""
    if importlib.util.find_spec("nerfacc") is None:
        return None
    try:
        from nerfacc.data_specs import RayIntervals
        from nerfacc.pdf import importance_sampling

        def fn():
            w = weights + 0.01
            cdfs = torch.cat([torch.zeros_like(w[:, :1]), torch.cumsum(w, -1)], -1)
            cdfs = cdfs / cdfs[:, -1:]
            return importance_sampling(RayIntervals(vals=bins), cdfs, n, stratified=True)

        fn()
    except Exception as exc:  # another nerfacc API: report and skip the peer
        print(f"[bench_sampling] nerfacc peer skipped: {exc}")
        return None
    return Case("sample_pdf", size, "nerfacc", "fwd", fn, 0, R, "rays")


def cases(device: torch.device, quick: bool) -> list[Case]:
    R = 1 << 10 if quick else 1 << 16
    S0, S1, S2 = 64, 64, 32
    g = torch.Generator(device=device).manual_seed(0)
    bins0 = torch.linspace(0, 1, S0 + 1, device=device).expand(R, S0 + 1).contiguous()
    w0 = _histogram(R, S0, device)[1]
    backends = [b for b in ("torch", "triton", "cuda") if b in _dispatch.available_backends(device)]
    if device.type == "cpu":
        backends = ["torch"]  # the Triton interpreter is a correctness tool, not a benchmark
    rfkernels.set_validation(False)  # value checks sync the device; measure the kernels
    bins1, w1 = _histogram(R, S1, device)
    t_f, w_f = _histogram(R, S2, device)
    tp, wp = _histogram(R, S1, device)
    wp.requires_grad_()
    chain = f"R={R} {S0}->{S1}->{S2}"
    out = []
    for be in backends:
        def resample_chain(be=be):
            e1 = rfkernels.sample_pdf(bins0, w0, S1, mode="single_jitter", return_edges=True, generator=g, backend=be)
            return rfkernels.sample_pdf(e1, w1, S2, mode="single_jitter", return_edges=True, generator=g, backend=be)

        def one(be=be):
            return rfkernels.sample_pdf(bins1, w1, S1, mode="single_jitter", return_edges=True, generator=g, backend=be)

        def blurred(be=be):
            return rfkernels.sample_pdf(bins1, w1, S1, return_edges=True, blur_halfwidth=0.01, generator=g, backend=be)

        def loss(blur, be=be):
            def fn():
                val = rfkernels.interlevel_loss(t_f, w_f, tp, wp, blur_halfwidth=blur, backend=be)
                torch.autograd.grad(val.sum(), wp)
            return fn

        # minimal traffic: read edges + weights, write the new edges (fp32)
        one_bytes = 4 * R * ((S1 + 1) + S1 + (S1 + 1))
        loss_bytes = 4 * R * (2 * (S2 + 1) + 2 * S2 + 3 * (S1 + 1) + 3 * S1 + 1)
        out += [
            Case("sample_pdf", chain, be, "fwd", resample_chain, 2 * one_bytes, R, "rays"),
            Case("sample_pdf", f"R={R} S={S1} n={S1} edges", be, "fwd", one, one_bytes, R, "rays"),
            Case("sample_pdf", f"R={R} S={S1} n={S1} blur", be, "fwd", blurred, one_bytes, R, "rays"),
            Case("interlevel_loss", f"R={R} S={S2} P={S1} outer", be, "fwd+bwd", loss(None), loss_bytes, R, "rays"),
            Case("interlevel_loss", f"R={R} S={S2} P={S1} blur", be, "fwd+bwd", loss(0.03), loss_bytes, R, "rays"),
        ]
    peer = _nerfacc_case(bins1, w1, S1, f"R={R} S={S1} n={S1} edges", R)
    if peer is not None:
        out.append(peer)
    return out
