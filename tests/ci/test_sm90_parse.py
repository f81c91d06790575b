"""The sm_90 report's parsing and gate on small ptxas / PTX snippets (no compiler, no GPU)."""

import pytest

from tests.ci.sm90_gate import BELOW_CLASS_TARGET, kernel_class, register_cap, resident_warps, violations
from tests.ci.sm90_parse import (
    IMPLICIT_RELAXED,
    parse_atomic,
    parse_ptx,
    parse_ptxas,
    short_name,
    split_template,
    summarize_atomics,
)

# nvcc -Xptxas -v (ptxas 13.0): a spilling kernel with a stack frame, one with static shared memory
PTXAS_LOG = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z6k_manyPdi' for 'sm_90'
ptxas info    : Function properties for _Z6k_manyPdi
    512 bytes stack frame, 24 bytes spill stores, 16 bytes spill loads
ptxas info    : Used 158 registers, used 0 barriers, 512 bytes cumulative stack size
ptxas info    : Compile time = 41.2 ms
ptxas info    : Compiling entry function '_Z6k_smemPfS_i' for 'sm_90'
ptxas info    : Function properties for _Z6k_smemPfS_i
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 16 registers, used 1 barriers, 2048 bytes smem
"""

# PTX as nvcc and Triton write it: a CUDA atomicAdd (no .sem), a predicated Triton acq_rel atomic,
# a relaxed red, inline-asm half2, a CAS, fences, launch bounds, a device function
PTX = """\
.visible .entry _Z1kPf(
\t.param .u64 _Z1kPf_param_0
)
.maxntid 128, 1, 1
{
\tatom.global.add.f32 \t%f5, [%rd11], %f4;
\t@%p1 atom.global.gpu.acq_rel.add.f32 %f6, [%rd12], %f1;
\t@!%p2 red.global.gpu.relaxed.add.v2.f32 [%rd3], {%f1, %f2};
\t{ atom.add.noftz.f16x2 %r2,[%rd1],%r1; }
\tmembar.gl;
\tatom.global.cas.b32 \t%r21, [%rd4], %r9, %r17;  // lock
\tfence.acq_rel.gpu;
\tredux.sync.add.s32 %r5, %r4, -1;  // a warp reduction, not an atomic
\tbar.sync 0;
}
.func helper()
{
\tred.shared.add.u32 [%r1], 1;
}
.visible .entry tri_kernel(
)
{
\tred.global.gpu.relaxed.add.f32 [%rd1], %f1;
\tred.global.gpu.relaxed.add.f32 [%rd2], %f2;
}
"""


def test_parse_ptxas_reads_every_entry():
    many, smem = parse_ptxas(PTXAS_LOG)
    assert (many.name, many.registers, many.stack, many.spill_stores, many.spill_loads) == (
        "_Z6k_manyPdi",
        158,
        512,
        24,
        16,
    )
    assert (many.spill_bytes, many.smem, many.barriers) == (40, 0, 0)
    assert (smem.name, smem.registers, smem.smem, smem.barriers, smem.spill_bytes) == ("_Z6k_smemPfS_i", 16, 2048, 1, 0)


def test_parse_ptxas_refuses_an_entry_without_registers():
    truncated = PTXAS_LOG.split("ptxas info    : Used 16")[0]
    with pytest.raises(ValueError, match="_Z6k_smemPfS_i"):
        parse_ptxas(truncated)


def test_parse_ptx_atomics_fences_and_launch_bounds():
    funcs = parse_ptx(PTX)
    k = funcs["_Z1kPf"]
    assert (k.kind, k.maxntid) == ("entry", 128)
    assert [a.key() for a in k.atomics] == [
        f"atom.global.add.f32 {IMPLICIT_RELAXED}",
        "atom.global.add.f32 acq_rel",
        "red.global.add.v2.f32 relaxed",
        f"atom.generic.add.f16x2 {IMPLICIT_RELAXED}",
        f"atom.global.cas.b32 {IMPLICIT_RELAXED}",
    ]
    assert [a.ordered for a in k.atomics] == [False, True, False, False, False]
    assert [a.accumulates for a in k.atomics] == [True, True, True, True, False]
    assert dict(k.fences) == {"membar.gl": 1, "fence.acq_rel.gpu": 1}
    assert funcs["helper"].kind == "func" and funcs["helper"].atomics[0].space == "shared"
    tri = funcs["tri_kernel"]
    assert tri.maxntid is None and not tri.fences
    assert summarize_atomics(tri.atomics) == {"red.global.add.f32 relaxed": 2}


@pytest.mark.parametrize(
    "quals, sem, scope, type_",
    [
        (["global", "add", "f32"], IMPLICIT_RELAXED, "gpu", "f32"),
        (["acq_rel", "gpu", "global", "add", "f64"], "acq_rel", "gpu", "f64"),
        (["sys", "global", "add", "noftz", "bf16x2"], IMPLICIT_RELAXED, "sys", "bf16x2"),
        (["relaxed", "cta", "shared::cta", "max", "s32"], "relaxed", "cta", "s32"),
    ],
)
def test_parse_atomic_qualifiers(quals, sem, scope, type_):
    a = parse_atomic("atom", quals)
    assert (a.sem, a.scope, a.type) == (sem, scope, type_)


def test_parse_atomic_needs_an_operation():
    with pytest.raises(ValueError, match="expected one operation"):
        parse_atomic("red", ["global", "f32"])


def test_short_name_drops_parameters_and_anonymous_namespaces():
    assert short_name("void rfk::(anonymous namespace)::k<8, true>(rfk::Args, float*)") == "rfk::k<8, true>"
    assert short_name("void rfk::f<(int)3>(float (*) [4])") == "rfk::f<(int)3>"
    assert short_name("tri_kernel") == "tri_kernel"
    assert split_template("rfk::k<8, rfk::T<2>>") == ("rfk::k", "<8, rfk::T<2>>")
    assert split_template("rfk::count_kernel") == ("rfk::count_kernel", "")


# ---------------------------------------------------------------------------------- occupancy
@pytest.mark.parametrize(
    "registers, threads, smem, warps",
    [
        (32, 256, 0, 64),  # 8 blocks of 8 warps: the SM's 64-warp limit
        (64, 256, 0, 32),  # 64 x 32 = 2048 registers per warp: 32 warps
        (65, 256, 0, 24),  # rounded up to 72 per thread: 28 warps by registers, 3 whole blocks of 8
        (128, 256, 0, 16),
        (128, 128, 0, 16),
        (235, 256, 0, 8),  # 240 per thread: 8 warps, one block
        (255, 1024, 0, 0),  # one 1024-thread block needs 261120 registers: does not fit
        (16, 32, 0, 32),  # 32 blocks per SM at most
        (32, 256, 100 * 1024, 16),  # shared memory: two blocks of 100 KiB (+1 KiB each) in 228 KiB
    ],
)
def test_resident_warps(registers, threads, smem, warps):
    assert resident_warps(registers, threads, smem) == warps


def test_register_cap_is_the_largest_that_meets_the_target():
    assert register_cap(256, 32) == 64 and register_cap(256, 16) == 128 and register_cap(128, 32) == 64
    assert register_cap(256, 24) == 80  # 3 blocks of 8 warps: 65536 / 24 / 32 = 85.3, in steps of 8
    assert resident_warps(register_cap(256, 24), 256) >= 24 > resident_warps(register_cap(256, 24) + 1, 256)


# ---------------------------------------------------------------------------------- rules
def _row(**kw):
    row = {"family": "volrend", "threads": 256, "registers": 40, "spill_stores": 0, "spill_loads": 0, "smem": 0}
    return {**row, "atomics": {}, "fences": {}, **kw}


def test_a_clean_row_passes():
    clean = _row(atomics={f"red.global.add.f32 {IMPLICIT_RELAXED}": 4, "atom.global.cas.b32 acq_rel": 1})
    assert violations({**clean, "fences": {"fence.proxy.async.shared::cta": 1}}) == []


@pytest.mark.parametrize(
    "row, expect",
    [
        (_row(spill_loads=8), "spills 0 B stores + 8 B loads"),
        (
            _row(atomics={"atom.global.add.f32 acq_rel": 16}),
            "non-relaxed accumulation atomics: 16 x atom.global.add.f32",
        ),
        (_row(atomics={"red.global.add.f64 release": 1}), "non-relaxed accumulation"),
        (_row(fences={"membar.gl": 2}), "memory fences: 2 x membar.gl"),
        (_row(fences={"fence.acq_rel.gpu": 1}), "memory fences: 1 x fence.acq_rel.gpu"),
        (_row(registers=136), "136 registers at 256 threads/block leave 8 warps/SM, below the ray stream target of 16"),
        (_row(family="hashgrid", threads=128, registers=72), "below the irregular gather target of 32 (at most 64"),
    ],
)
def test_each_rule_fails_its_row(row, expect):
    (msg,) = violations(row)
    assert expect in msg


def test_every_op_family_has_a_stated_class():
    import rfkernels  # noqa: F401 - registers every family
    from rfkernels import _dispatch

    for family in _dispatch.families():
        assert kernel_class(family) is not None, f"{family}: no occupancy class stated in tests/ci/sm90_gate.py"
    assert "no occupancy class states a target for family 'newfamily'" in violations(_row(family="newfamily"))[0]


def test_a_stated_floor_is_a_ratchet():
    """A kernel listed below its class's target passes at its floor and fails one register step past it."""
    floor = BELOW_CLASS_TARGET[0]
    fam = {"cuda": "hashgrid", "triton": "hashgrid"}[floor.backend]
    at_floor = _row(family=fam, backend=floor.backend, kernel=floor.kernel, threads=128)
    at_floor["registers"] = register_cap(128, floor.min_warps)
    assert violations(at_floor) == []
    grown = {**at_floor, "registers": at_floor["registers"] + 8}
    assert "below its stated floor (BELOW_CLASS_TARGET) of" in violations(grown)[0]
    # an unlisted kernel of the same family with the same registers is held to its class's target
    assert "irregular gather target" in violations({**at_floor, "kernel": "unlisted"})[0]


def test_stated_floors_are_below_their_class_and_explained():
    """A floor at or above its class's target is stale (remove it); every floor names its reason."""
    for f in BELOW_CLASS_TARGET:
        family = "gather" if "gather" in f.kernel else "hashgrid"
        assert f.min_warps < kernel_class(family).min_warps, f
        assert len(f.why) > 40, f
