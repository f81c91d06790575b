"""Proposal sampling: Zip-NeRF's resampling chain on 2^16 rays (64 uniform s-bins -> 64 proposal
intervals -> 32 NeRF intervals, single jitter, interval edges) and the interlevel losses (32 fine
intervals against a 64-bin proposal, outer and blurred), forward + backward, every backend vs the
torch reference; nerfacc 0.5.3's ``importance_sampling`` beside our midpoint sampling on the same
histograms when it is installed (CUDA only), checked equal before it is timed."""

from __future__ import annotations

import torch

import rfkernels

from .common import Case, backends_for, check_peer, nerfacc_or_none


def _histogram(R, S, device):
    """Sorted s-space edges [R, S+1] on [0, 1] and peaky weights [R, S] (a surface per ray)."""
    bins = torch.sort(torch.rand(R, S + 1, device=device), -1).values
    bins[:, 0], bins[:, -1] = 0.0, 1.0
    center = torch.rand(R, 1, device=device)
    mid = 0.5 * (bins[:, 1:] + bins[:, :-1])
    weights = torch.exp(-(((mid - center) / 0.05) ** 2)) * (bins[:, 1:] - bins[:, :-1]) * 10
    return bins, weights


def _nerfacc_cases(nerfacc, bins, weights, n, R, nbytes) -> list[Case]:
    """nerfacc.importance_sampling (0.5 API, non-stratified: u_k = (k + 0.5) / n) beside our
    ``mode="midpoint"`` with no histogram padding: the same function, checked equal before timing."""
    if nerfacc is None:
        return []
    from nerfacc.data_specs import RayIntervals
    from nerfacc.pdf import importance_sampling

    def peer():
        cdfs = torch.cat([torch.zeros_like(weights[:, :1]), torch.cumsum(weights, -1)], -1)
        return importance_sampling(RayIntervals(vals=bins), cdfs, n, stratified=False)[1].vals

    size = f"R={R} S={bins.shape[1] - 1} n={n} midpoint"
    try:
        ours = rfkernels.sample_pdf(bins, weights, n, mode="midpoint", histogram_padding=0.0, backend="torch")
        err = check_peer(f"nerfacc importance_sampling {size}", ours, peer(), atol=1e-5, rtol=1e-4)
        print(f"[bench_sampling] nerfacc equal to ours on {size} (max abs err {err:.2g})")
    except Exception as exc:  # PeerMismatch, or the peer failed to run: report, time the rest
        print(f"[bench_sampling] nerfacc peer not timed: {exc}")
        return []
    out = [Case("sample_pdf", size, "nerfacc", "fwd", peer, nbytes, R, "rays")]
    for be in backends_for(bins.device):
        out.append(
            Case(
                "sample_pdf",
                size,
                be,
                "fwd",
                lambda be=be: rfkernels.sample_pdf(
                    bins, weights, n, mode="midpoint", histogram_padding=0.0, backend=be
                ),
                nbytes,
                R,
                "rays",
            )
        )
    return out


SIZES = {"tiny": [1 << 6], "one": [1 << 16], "all": [1 << 16, 1 << 18]}


def cases(device: torch.device, scale: str) -> list[Case]:
    rfkernels.set_validation(False)  # value checks sync the device; measure the kernels
    nerfacc = nerfacc_or_none()
    return [c for R in SIZES[scale] for c in _cases_for(R, device, nerfacc)]


def _cases_for(R: int, device: torch.device, nerfacc) -> list[Case]:
    S0, S1, S2 = 64, 64, 32
    g = torch.Generator(device=device).manual_seed(0)
    bins0 = torch.linspace(0, 1, S0 + 1, device=device).expand(R, S0 + 1).contiguous()
    w0 = _histogram(R, S0, device)[1]
    backends = backends_for(device)
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
    # read edges + weights, write n samples
    out += _nerfacc_cases(nerfacc, bins1, w1, S1, R, 4 * R * ((S1 + 1) + S1 + S1))
    return out
