"""pytest-benchmark front end options: ``pytest benchmarks/ --benchmark-only [--rfk-scale one]
[--rfk-only volrend,hashgrid] [--rfk-device cuda]``."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_addoption(parser):
    g = parser.getgroup("rfkernels benchmarks")
    g.addoption("--rfk-scale", default=None, help="tiny | one | all (default: all on CUDA, tiny on CPU)")
    g.addoption("--rfk-only", default=None, help="comma-separated families (default: all)")
    g.addoption("--rfk-device", default=None, help="cuda | cpu (default: cuda when available)")
