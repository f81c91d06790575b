"""Every benchmark case as a pytest-benchmark test (the cases of ``bench_<family>.py``, shared with
``python -m benchmarks``): one group per (op, size, mode), parametrized by backend and peer.

    pytest benchmarks/ --benchmark-only [--benchmark-json out.json] [--benchmark-compare]

Each timed call ends with ``torch.cuda.synchronize()`` on CUDA, so pytest-benchmark's wall-clock
rounds measure the device work. Each of our backends is first checked against the torch reference
(``case.check``: a mismatch fails the test before anything is timed). ``extra_info`` carries the
roofline (minimum bytes, L2 gathers, atomics, predicted H200 ms), the achieved GB/s and its fraction of
a device-to-device copy timed in the same session, and on a GPU the fraction of the H200 limit.
"""

import pytest
import torch

from benchmarks.common import FAMILIES, copy_bandwidth_gbs, family_cases, sync


def _device(config) -> torch.device:
    return torch.device(config.getoption("--rfk-device") or ("cuda" if torch.cuda.is_available() else "cpu"))


def pytest_generate_tests(metafunc):
    if "case" not in metafunc.fixturenames:
        return
    config = metafunc.config
    device = _device(config)
    scale = config.getoption("--rfk-scale") or ("tiny" if device.type == "cpu" else "all")
    only = config.getoption("--rfk-only")
    families = [f for f in (only.split(",") if only else FAMILIES) if f]
    cases = [c for fam in families for c in family_cases(fam, device, scale)]
    metafunc.parametrize("case", cases, ids=[c.id for c in cases])


@pytest.fixture(scope="session")
def copy_gbs(request):
    return copy_bandwidth_gbs(_device(request.config))


def test_case(benchmark, case, copy_gbs, request):
    device = _device(request.config)

    def run():
        case.fn()
        sync(device)

    if case.check is not None:
        benchmark.extra_info["max_abs_err_vs_reference"] = case.check()  # raises OursMismatch
    run()  # warm-up: JIT/Triton compilation, autotuning, allocator
    benchmark.group = case.group
    benchmark.extra_info.update(
        op=case.op,
        size=case.size,
        mode=case.mode,
        backend=case.backend,
        bytes_moved=case.bytes_moved,
        items=case.items,
        item_name=case.item_name,
        copy_gb_per_s=copy_gbs,
        **(case.traffic.record() if case.traffic else {}),
        **case.extra,
    )
    benchmark(run)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and case.bytes_moved:
        gbs = case.bytes_moved / stats.stats.median / 1e9
        benchmark.extra_info.update(gb_per_s=gbs, pct_of_copy_bw=100 * gbs / copy_gbs)
        if device.type == "cuda":
            benchmark.extra_info["pct_of_h200_limit"] = 100 * case.traffic.predicted_ms / (1e3 * stats.stats.median)
