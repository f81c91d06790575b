"""Proposal sampling: Zip-NeRF's resampling chain (S uniform s-bins -> S proposal intervals -> S/2
NeRF intervals, single jitter, interval edges; S = 64 is Zip-NeRF's) and the interlevel losses (S/2
fine intervals against an S-bin proposal, outer and blurred), forward + backward, every backend
checked against the torch reference then timed; 4096 and 65536 rays x S = 64 / 128 / 256 (``all``).
nerfacc 0.5.3's ``importance_sampling`` beside our midpoint sampling on the same histograms when it
is installed (CUDA only), checked equal before it is timed."""

from __future__ import annotations

import torch

import rfkernels

from . import roofline
from .common import Case, backends_for, check_peer, nerfacc_or_none, reference_gate


def _histogram(R, S, device):
    """Sorted s-space edges [R, S+1] on [0, 1] and peaky weights [R, S] (a surface per ray)."""
    bins = torch.sort(torch.rand(R, S + 1, device=device), -1).values
    bins[:, 0], bins[:, -1] = 0.0, 1.0
    center = torch.rand(R, 1, device=device)
    mid = 0.5 * (bins[:, 1:] + bins[:, :-1])
    weights = torch.exp(-(((mid - center) / 0.05) ** 2)) * (bins[:, 1:] - bins[:, :-1]) * 10
    return bins, weights


def _nerfacc_cases(nerfacc, bins, weights, n, R, traffic) -> list[Case]:
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
    out = [Case("sample_pdf", size, "nerfacc", "fwd", peer, traffic, R, "rays")]
    ours = lambda be: rfkernels.sample_pdf(bins, weights, n, mode="midpoint", histogram_padding=0.0, backend=be)  # noqa: E731
    for be in backends_for(bins.device):
        check = reference_gate(f"sample_pdf {size}", ours, be, atol=1e-5, rtol=1e-4)
        out.append(Case("sample_pdf", size, be, "fwd", lambda be=be: ours(be), traffic, R, "rays", check=check))
    return out


SIZES = {
    "tiny": [(1 << 6, 64)],
    "one": [(1 << 16, 64)],
    "all": [(R, S) for R in (1 << 12, 1 << 16) for S in (64, 128, 256)],
}


def cases(device: torch.device, scale: str) -> list[Case]:
    rfkernels.set_validation(False)  # value checks sync the device; measure the kernels
    nerfacc = nerfacc_or_none()
    return [c for R, S in SIZES[scale] for c in _cases_for(R, S, device, nerfacc)]


def _seeded(g: torch.Generator, fn):
    """``fn(backend)`` with the jitter generator reseeded first: every backend draws the same jitter,
    so the gate compares the same function."""

    def call(be, *inputs):
        g.manual_seed(0)
        return fn(be, *inputs)

    return call


def _cases_for(R: int, S: int, device: torch.device, nerfacc) -> list[Case]:
    S0, S1, S2 = S, S, S // 2
    g = torch.Generator(device=device).manual_seed(0)
    bins0 = torch.linspace(0, 1, S0 + 1, device=device).expand(R, S0 + 1).contiguous()
    w0 = _histogram(R, S0, device)[1]
    backends = backends_for(device)
    bins1, w1 = _histogram(R, S1, device)
    t_f, w_f = _histogram(R, S2, device)
    tp, wp = _histogram(R, S1, device)
    wp.requires_grad_()
    chain = f"R={R} {S0}->{S1}->{S2}"

    def resample_chain(be):
        e1 = rfkernels.sample_pdf(bins0, w0, S1, mode="single_jitter", return_edges=True, generator=g, backend=be)
        return rfkernels.sample_pdf(e1, w1, S2, mode="single_jitter", return_edges=True, generator=g, backend=be)

    def one(be):
        return rfkernels.sample_pdf(bins1, w1, S1, mode="single_jitter", return_edges=True, generator=g, backend=be)

    def blurred(be):
        return rfkernels.sample_pdf(bins1, w1, S1, return_edges=True, blur_halfwidth=0.01, generator=g, backend=be)

    def loss(blur):
        return lambda be, *levels: rfkernels.interlevel_loss(*levels, blur_halfwidth=blur, backend=be)

    one_traffic = roofline.sample_pdf(R, S1, S1, return_edges=True)
    chain_traffic = roofline.sample_pdf(R, S0, S1, return_edges=True) + roofline.sample_pdf(
        R, S1, S2, return_edges=True
    )
    loss_traffic = roofline.interlevel_loss(R, S2, S1)
    levels = (t_f, w_f, tp, wp)
    rows = [  # (op, size, mode, call(backend, *inputs) -> outputs, traffic, inputs)
        ("sample_pdf", chain, "fwd", resample_chain, chain_traffic, ()),
        ("sample_pdf", f"R={R} S={S1} n={S1} edges", "fwd", one, one_traffic, ()),
        ("sample_pdf", f"R={R} S={S1} n={S1} blur", "fwd", blurred, one_traffic, ()),
        ("interlevel_loss", f"R={R} S={S2} P={S1} outer", "fwd+bwd", loss(None), loss_traffic, levels),
        ("interlevel_loss", f"R={R} S={S2} P={S1} blur", "fwd+bwd", loss(0.03), loss_traffic, levels),
    ]
    out = []
    for be in backends:
        for op, size, mode, call, traffic, inputs in rows:
            if inputs:  # the losses: forward + backward to the proposal weights

                def fn(be=be, call=call, inputs=inputs):
                    torch.autograd.grad(call(be, *inputs).sum(), wp)

                # the fused kernels accumulate in float64, as the float64 reference does; on peaky
                # histograms the float32 reference's gradients are the less accurate ones
                gate = dict(wrt=(wp,), inputs=inputs, reference_dtype=torch.float64, atol=1e-5, rtol=1e-4)
            else:
                fn = lambda be=be, call=call: call(be)  # noqa: E731
                gate = dict(atol=1e-5, rtol=1e-4)
            check = reference_gate(f"{op} {size}", _seeded(g, call), be, **gate)
            out.append(Case(op, size, be, mode, fn, traffic, R, "rays", check=check))
    out += _nerfacc_cases(nerfacc, bins1, w1, S1, R, roofline.sample_pdf(R, S1, S1, return_edges=False))
    return out
