"""The benchmark harness's own logic: the correctness gates, peer equality checks and the ratios it prints."""

import pytest
import torch

import benchmarks.__main__ as runner
from benchmarks.__main__ import add_ratios, pct_of_limit
from benchmarks.bench_hashgrid import ray_points
from benchmarks.common import Case, OursMismatch, PeerMismatch, check_peer, family_cases, reference_gate
from benchmarks.roofline import Traffic


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


def _double(be, x):
    """A stand-in op: the reference doubles; the "broken" backend is off by 1e-2 in one element."""
    out = 2 * x
    return out + (torch.arange(x.numel()).view_as(x) == 3) * 1e-2 if be == "broken" else out


def test_reference_gate_passes_equal_backends_and_rejects_values_or_gradients_that_differ():
    x = torch.rand(10, requires_grad=True)
    assert reference_gate("double", lambda be: _double(be, x), "torch") is None  # the reference itself
    assert reference_gate("double", lambda be: _double(be, x), "cuda", wrt=(x,))() == 0.0
    with pytest.raises(OursMismatch, match=r"double \[broken\]: output 0 differs from the torch reference"):
        reference_gate("double", lambda be: _double(be, x), "broken")()
    wrong_grad = lambda be: 2 * x if be == "torch" else 2 * x.detach() + (x - x.detach()) * 3  # noqa: E731
    with pytest.raises(OursMismatch, match="output 1 differs"):  # same values, gradient 3 instead of 2
        reference_gate("grad", wrong_grad, "cuda", wrt=(x,))()


def test_reference_gate_can_run_the_reference_in_float64_on_copies_of_the_inputs():
    x = torch.rand(10, requires_grad=True)

    def cancel(be, x):  # the reference loses x in float32 rounding; the "fused" one is exact
        return (x + 1e8) - 1e8 if be == "torch" else x * 1.0

    with pytest.raises(OursMismatch):
        reference_gate("cancel", cancel, "cuda", inputs=(x,))()
    assert reference_gate("cancel", cancel, "cuda", wrt=(x,), inputs=(x,), reference_dtype=torch.float64)() < 1e-6
    assert x.dtype == torch.float32 and x.grad is None  # the inputs themselves are untouched
    with pytest.raises(ValueError, match="must be one of `inputs`"):
        reference_gate("cancel", cancel, "cuda", wrt=(torch.rand(2),), inputs=(x,), reference_dtype=torch.float64)()


def test_a_case_failing_its_gate_is_an_error_row_and_the_run_exits_nonzero(monkeypatch, tmp_path):
    x = torch.rand(10)
    timed = []
    gate = reference_gate("double", lambda be: _double(be, x), "broken")
    bad = Case("double", "n=10", "broken", "fwd", lambda: timed.append(1), Traffic(80, 10), 10, check=gate)
    monkeypatch.setattr(runner, "family_cases", lambda fam, device, scale: [bad])
    monkeypatch.setattr(runner, "select_families", lambda only: ["volrend"])
    monkeypatch.setattr(runner, "copy_bandwidth_gbs", lambda device: 1.0)
    out = tmp_path / "r.json"
    assert runner.main(["--device", "cpu", "--reps", "1", "--out", str(out)]) == 1
    (row,) = runner.json.loads(out.read_text())["results"]
    assert row["error"].startswith("OursMismatch") and row["ms"] is None and not timed
    assert row["predicted_h200_ms"] == pytest.approx(80 / 4.8e12 * 1e3)


def test_fraction_of_the_h200_limit_only_for_a_gpu_measurement():
    row = {"ms": 2.0, "predicted_h200_ms": 0.5}
    assert pct_of_limit(row, torch.device("cpu")) is None
    assert pct_of_limit(row, torch.device("cuda")) == 25.0
    assert pct_of_limit({"ms": 2.0}, torch.device("cuda")) is None


def test_ray_points_lie_on_straight_rays_inside_the_cube():
    g = torch.Generator().manual_seed(0)
    pts = ray_points(512, torch.device("cpu"), g)
    assert pts.shape == (512, 3) and bool((pts >= 0).all() and (pts <= 1).all())
    ray = pts[:128].double()  # the first ray's samples, in order along it
    steps = ray[1:] - ray[:-1]
    direction = steps.sum(0) / steps.sum(0).norm()
    assert torch.allclose(torch.linalg.cross(steps, direction.expand_as(steps)), torch.zeros_like(steps), atol=1e-6)
    assert bool((steps @ direction >= -1e-7).all())  # sorted along the ray


class _FakeTcnn:
    """A stand-in for ``tinycudann``: ``Encoding`` evaluates the torch reference on its own table in
    the layout its config describes (the real one's contract); ``offset`` makes it wrong."""

    def __init__(self, offset=0.0):
        self.offset = offset

    def Encoding(self, n_input_dims, config, dtype):  # noqa: N802 - tcnn's name
        from rfkernels.hashgrid import make_layout, reference

        layout = make_layout(
            n_input_dims,
            config["n_levels"],
            config["n_features_per_level"],
            config["log2_hashmap_size"],
            config["base_resolution"],
            config["per_level_scale"],
        )
        offset = self.offset

        class Encoding(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.params = torch.nn.Parameter(torch.zeros(layout.n_params, dtype=dtype))

            def forward(self, x):
                return reference.encode(x, self.params, layout) + offset

        return Encoding()


def test_tcnn_peer_gets_our_table_is_checked_then_timed_in_three_phases():
    import rfkernels
    from benchmarks import bench_hashgrid as bh

    enc = rfkernels.HashGridEncoding(3, bh.L, bh.F, 10, 16, per_level_scale=1.5)
    x = torch.rand(64, 3)
    cases = bh._tcnn_cases(_FakeTcnn(), enc, x, "N=64")
    assert [c.mode for c in cases] == ["fwd", "fwd+bwd(table)", "fwd+bwd(table+x)"]
    assert {c.backend for c in cases} == {"tcnn"} and all(c.traffic.items == 64 for c in cases)
    for c in cases:
        c.fn()
    assert bh._tcnn_cases(_FakeTcnn(offset=1e-2), enc, x, "N=64") == []  # differs: not timed
