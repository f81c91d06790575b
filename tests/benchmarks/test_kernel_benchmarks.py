"""The benchmark harness's own logic: peer equality checks and the ratios it prints."""

import pytest
import torch

from benchmarks.__main__ import add_ratios
from benchmarks.common import PeerMismatch, check_peer, family_cases


def test_check_peer_accepts_equal_and_rejects_different_outputs():
    a = torch.rand(100, 3)
    assert check_peer("x", (a, a[:, 0]), (a + 1e-7, a[:, 0].clone())) < 1e-6
    with pytest.raises(PeerMismatch, match="output 1 differs"):
        check_peer("x", (a, a[:, 0]), (a, a[:, 0] + 1e-2))


def test_ratios_are_ours_over_peer_and_speedup_over_torch():
    rows = [
        dict(op="vr", size="s", mode="fwd", backend=b, ms=ms)
        for b, ms in (("torch", 8.0), ("cuda", 1.0), ("nerfacc", 2.0))
    ]
    rows.append(dict(op="vr", size="other", mode="fwd", backend="cuda", ms=3.0))
    add_ratios(rows)
    torch_row, cuda_row, peer_row, other = rows
    assert cuda_row["speedup_vs_torch"] == 8.0 and cuda_row["ours_over_nerfacc"] == 0.5
    assert torch_row["ours_over_nerfacc"] == 4.0 and "ours_over_nerfacc" not in peer_row
    assert other["speedup_vs_torch"] is None and "ours_over_nerfacc" not in other


def test_family_cases_rejects_unknown_scale():
    with pytest.raises(ValueError, match="scale must be one of"):
        family_cases("volrend", torch.device("cpu"), "huge")
