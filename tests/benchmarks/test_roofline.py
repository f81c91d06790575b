"""The roofline model (benchmarks/roofline.py): traffic counted from sizes and dtypes, the predicted
H200 time from it, and every benchmark case carrying one."""

import importlib.util

import pytest
import torch

from benchmarks import roofline
from benchmarks.common import OP_FAMILIES, Case, family_cases
from benchmarks.roofline import Traffic


def test_prediction_is_the_slower_of_hbm_and_the_l2_yardstick():
    hbm_only = Traffic(hbm_bytes=48_000_000, items=1)
    assert hbm_only.predicted_ms == pytest.approx(1e3 * 48e6 / 4.8e12) and hbm_only.bound == "HBM"
    sectors = int(roofline.L2_SECTORS_PER_S)  # one second of gathers
    gathers = Traffic(hbm_bytes=1000, items=1, l2_gathers=sectors // 2, atomics=sectors - sectors // 2)
    assert gathers.predicted_ms == pytest.approx(1e3) and gathers.bound == "L2"
    # the yardstick: 5120 bytes/clock of L2 (A100 whitepaper) in 32-byte sectors at 1.98 GHz
    assert roofline.L2_SECTORS_PER_S == pytest.approx(160 * 1.98e9)


def test_traffic_adds_per_pass_and_refuses_different_items():
    a = Traffic(100, 10, l2_gathers=5, atomics=1)
    assert a + a == a.scaled(2) == Traffic(200, 10, 10, 2)
    assert a.per_item() == {"bytes_per_item": 10.0, "l2_gathers_per_item": 0.5, "atomics_per_item": 0.1}
    with pytest.raises(ValueError, match="10 and 11 items"):
        a + Traffic(1, 11)


def test_hash_grid_counts_one_gather_and_one_paired_atomic_per_corner():
    N, L, F, D, n_params = 1 << 10, 16, 2, 3, 1 << 20
    fwd = roofline.hash_grid_encode(N, L, F, D, n_params, param_bytes=2)
    assert fwd.l2_gathers == N * L * 8 and fwd.atomics == 0
    assert fwd.hbm_bytes == N * (4 * D + 4 * L * F)  # points in, fp32 features out
    table = roofline.hash_grid_encode(N, L, F, D, n_params, param_bytes=2, backward="table")
    assert table.atomics == N * L * 8 and table.l2_gathers == N * L * 8  # the forward's gathers only
    assert table.hbm_bytes - fwd.hbm_bytes == fwd.hbm_bytes + 2 * n_params * 2  # + zeroed, written-back table
    both = roofline.hash_grid_encode(N, L, F, D, n_params, param_bytes=2, backward="table+x")
    assert both.l2_gathers == 2 * N * L * 8 and both.hbm_bytes == table.hbm_bytes + 4 * N * D
    half = roofline.hash_grid_encode(N, L, F, D, n_params, param_bytes=2, out_bytes=2)
    assert fwd.hbm_bytes - half.hbm_bytes == 2 * N * L * F
    with pytest.raises(ValueError, match="more than one 32-byte sector"):
        roofline.hash_grid_encode(N, L, 8, D, n_params, param_bytes=8)
    with pytest.raises(ValueError, match="backward must be"):
        roofline.hash_grid_encode(N, L, F, D, n_params, param_bytes=2, backward="x")


def test_volume_render_and_sampling_bytes_follow_the_sizes():
    R, S, C = 4096, 64, 3
    fwd = roofline.volume_render(R, R * S, C, packed=False, backward=False)
    assert fwd.hbm_bytes == 4 * (R * S * (3 + C + 1) + R * (C + 2)) and fwd.l2_gathers == fwd.atomics == 0
    packed = roofline.volume_render(R, R * S, C, packed=True, backward=False)
    assert packed.hbm_bytes - fwd.hbm_bytes == 8 * (R + 1)
    assert roofline.volume_render(R, R * S, C, packed=False, backward=True).hbm_bytes > 2 * fwd.hbm_bytes
    assert roofline.sample_pdf(R, S, S, return_edges=True).hbm_bytes == 4 * R * (3 * S + 2)
    assert roofline.sample_pdf(R, S, S, return_edges=False).hbm_bytes == 4 * R * (3 * S + 1)


def test_gather_counts_texel_sectors_of_channels_last_maps():
    N, V, C, H, W = 100, 3, 64, 8, 8
    fwd = roofline.gather_features(N, V, C, H, W, reduce_width=V * C, backward=False)
    assert fwd.l2_gathers == N * V * 4 * (C * 4 // 32)  # 4 texels x 8 sectors of 64 fp32 channels
    bwd = roofline.gather_features(N, V, C, H, W, reduce_width=V * C, backward=True)
    assert bwd.atomics == fwd.l2_gathers and bwd.l2_gathers == fwd.l2_gathers


def test_a_case_given_a_byte_count_gets_an_hbm_only_traffic():
    case = Case("op", "n=4", "torch", "fwd", lambda: None, 400, 4)
    assert case.traffic == Traffic(400, 4) and case.bytes_moved == 400
    assert Case("op", "n=4", "torch", "fwd", lambda: None).traffic is None


@pytest.mark.parametrize("family", OP_FAMILIES)
def test_every_op_case_has_a_traffic_model_and_a_prediction(family):
    if importlib.util.find_spec(f"benchmarks.bench_{family}") is None:
        pytest.skip(f"benchmarks/bench_{family}.py does not exist yet (its family's owner adds it)")
    cases = family_cases(family, torch.device("cpu"), "tiny")
    assert cases
    for case in cases:
        assert case.traffic is not None, case.id
        assert case.traffic.items == case.items and case.traffic.predicted_ms > 0, case.id
        assert case.bytes_moved == case.traffic.hbm_bytes
