"""The correctness gate of the kernel benchmarks on a real fused backend: on the CPU, Triton in the
interpreter (``TRITON_INTERPRET=1``) takes the place of the GPU backends the gate checks on a device,
and every op's first gated case at the tiny scale passes it (values and gradients vs the torch reference)."""

import importlib

import pytest
import torch

from benchmarks.common import OP_FAMILIES
from rfkernels import _dispatch

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("family", OP_FAMILIES)
def test_the_first_case_of_every_op_passes_its_gate_on_triton(family, monkeypatch):
    if "triton" not in _dispatch.available_backends("cpu"):
        pytest.skip("Triton does not run here (set TRITON_INTERPRET=1)")
    if importlib.util.find_spec(f"benchmarks.bench_{family}") is None:
        pytest.skip(f"benchmarks/bench_{family}.py does not exist yet")
    bench = importlib.import_module(f"benchmarks.bench_{family}")
    monkeypatch.setattr(bench, "backends_for", lambda device: ["torch", "triton"])
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cases = [c for c in bench.cases(torch.device("cpu"), "tiny") if c.backend == "triton" and c.check]
        firsts = {c.op: c for c in reversed(cases)}  # the first gated triton case of each op
        assert firsts, f"no case of {family} is gated"
        for case in firsts.values():
            assert case.check() >= 0.0  # raises OursMismatch on a mismatch
    finally:
        torch.set_num_threads(n)
