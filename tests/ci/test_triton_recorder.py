"""The sm_90 variant recorder picks the variant a real launch compiles: integers equal to 1 become
constants and multiples of 16 are marked divisible, except for ``do_not_specialize`` arguments."""

import os

import pytest
import torch

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("the recorder hooks Triton's interpreter (TRITON_INTERPRET=1)", allow_module_level=True)

from tests.ci.triton_sm90 import launch_variant  # noqa: E402


@triton.jit(do_not_specialize=["n"])
def _copy_kernel(src, dst, n, m, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n * m
    tl.store(dst + offs, tl.load(src + offs, mask=mask), mask=mask)


@pytest.mark.parametrize("n, m", [(1, 1), (32, 32), (7, 5)])
def test_do_not_specialize_arguments_stay_plain_integers(n, m):
    x = torch.zeros(64)
    spec, options = launch_variant(_copy_kernel, (x, torch.empty_like(x), n, m), {"BLOCK": 16, "num_warps": 2})
    assert options == {"num_warps": 2}
    assert spec["signature"]["n"] == "i32" and "n" not in spec["constexprs"] and "n" not in spec["divisible"]
    if m == 1:  # the JIT makes a 1 a constant...
        assert spec["signature"]["m"] == "constexpr" and spec["constexprs"]["m"] == 1
    else:
        assert spec["signature"]["m"] == "i32"
        assert ("m" in spec["divisible"]) == (m % 16 == 0)  # ...and marks multiples of 16
    assert spec["constexprs"]["BLOCK"] == 16 and "src" in spec["divisible"]
