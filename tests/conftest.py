"""Shared test fixtures: the device, the fused backends available here, random-input helpers.

On a machine without a GPU, Triton kernels run in the interpreter (``TRITON_INTERPRET=1`` is set
here before any kernel module is imported); CUDA-backend tests are skipped.
"""

import importlib
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# the tiny preset compiles the torch hash grid (~20 s per new shape, cold): tests run it eagerly,
# tests/rfkernels/test_compile.py lifts the veto for what it checks
os.environ.setdefault("RFKERNELS_TORCH_COMPILE", "0")

from rfkernels import _dispatch  # noqa: E402
from tests.helpers.backends import DEVICE, backend_unavailable_reason  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """``cuda`` marker: every test run with the real CUDA backend (``fused_backend`` = "cuda") gets it,
    so ``-m cuda`` selects the GPU checks; tests marked ``cuda`` skip where no GPU is visible."""
    no_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("fused_backend") == "cuda":
            item.add_marker(pytest.mark.cuda)
        if item.get_closest_marker("cuda") is not None and not torch.cuda.is_available():
            item.add_marker(no_gpu)


@pytest.fixture
def device():
    return DEVICE


def _host_only(device: torch.device):
    return None if device.type == "cpu" else "the CUDA host emulation runs on CPU tensors"


@pytest.fixture(params=["triton", "cuda", "cuda-host"])
def fused_backend(request):
    """Each fused backend that can run here (triton: GPU or interpreter; cuda: GPU + extension),
    plus "cuda-host": the family's csrc/ family code per-item code compiled with nvcc for the CPU and
    plugged in as its cuda backend (tests the CUDA arithmetic without a GPU). The test module names
    its op family in ``FAMILY`` (e.g. ``"volrend"``); emulation lives in tests/rfkernels/<family>/cuda_host.py and
    is registered through the public registry (``_dispatch.registered``) for the test's duration."""
    if request.param != "cuda-host":
        reason = backend_unavailable_reason(request.param)
        if reason:
            pytest.skip(f"{request.param} unavailable: {reason}")
        yield request.param
        return
    from tests.helpers import cuda_host

    family = getattr(request.module, "FAMILY", None)
    if family is None:
        pytest.skip("no host emulation for this module")
    if DEVICE.type != "cpu" or cuda_host.nvcc_missing_reason():
        pytest.skip("host emulation runs on CPU tensors with nvcc present")
    importlib.import_module(f"rfkernels.{family}")  # registers the family
    host = importlib.import_module(f"tests.rfkernels.{family}.cuda_host")
    with _dispatch.registered(family, "cuda", host, available=_host_only):
        yield "cuda"


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for the module: on a shared 2-core machine, OpenMP barriers of tiny ops
    make 2 threads much slower than 1. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def seed():
    """A fresh seed per test run (printed on failure) so inputs differ between runs."""
    s = int.from_bytes(os.urandom(4), "little")
    torch.manual_seed(s)
    return s


@pytest.fixture(autouse=True)
def _validation_restored():
    """Value validation is process-wide state: the benchmarks' entry points turn it off for timing and
    some tests do on purpose; every test starts with it on and leaves it as it found it."""
    from rfkernels import _checks

    before = _checks.validation_enabled()
    _checks.set_validation(True)
    yield
    _checks.set_validation(before)
