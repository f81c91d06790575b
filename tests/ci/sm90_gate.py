"""The sm_90 gate: occupancy arithmetic for H100/H200 and the rules every hot kernel must meet.

Rules (each row of the report is one compiled kernel variant, ``tests/ci/sm90_report.py``):

- **no spills**: ptxas spill stores + loads must be 0 (a spill is a local-memory round trip per use);
- **relaxed accumulation**: an ``atom``/``red`` that adds into memory must be relaxed (explicit
  ``.relaxed`` or no ``.sem``, which the PTX ISA defines as relaxed); an acquire/release/acq_rel one
  costs a fence, an error barrier and an L1 invalidate per instruction in the sm_90 SASS;
- **no memory fence**: no ``membar`` or ``fence.sc``/``fence.acq_rel`` (each orders all of the
  thread's memory traffic; none of these kernels publishes data to another block), ``fence.proxy``
  (async copies) excepted;
- **occupancy target**: the kernel's registers and shared memory must leave at least its class's
  resident warps per SM (below) at its block size.

sm_90 limits (H100 and H200, CUDA occupancy calculator, compute capability 9.0): 65536 32-bit
registers, 64 resident warps (2048 threads) and 32 resident blocks per SM; registers are allocated per
warp in units of 256 (so per thread in steps of 8), at most 255 per thread; 228 KiB of shared memory per
SM, with 1 KiB reserved per resident block.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.ci.sm90_parse import ORDERED

REGS_PER_SM = 65536
MAX_WARPS_PER_SM = 64
MAX_BLOCKS_PER_SM = 32
REG_ALLOC_UNIT = 256  # registers, per warp
MAX_REGS_PER_THREAD = 255
SMEM_PER_SM = 228 * 1024
SMEM_RESERVED_PER_BLOCK = 1024
WARP = 32


def resident_warps(registers: int, threads: int, smem: int = 0) -> int:
    """Warps per SM that fit with ``registers`` per thread, ``threads`` per block and ``smem`` bytes of
    shared memory per block (whole blocks only); 0 when one block does not fit."""
    if not 0 < threads <= 1024 or registers > MAX_REGS_PER_THREAD:
        return 0
    warps_per_block = -(-threads // WARP)
    regs_per_warp = -(-max(registers, 1) * WARP // REG_ALLOC_UNIT) * REG_ALLOC_UNIT
    by_regs = (REGS_PER_SM // regs_per_warp) // warps_per_block
    by_warps = MAX_WARPS_PER_SM // warps_per_block
    by_smem = SMEM_PER_SM // (smem + SMEM_RESERVED_PER_BLOCK)
    return min(by_regs, by_warps, by_smem, MAX_BLOCKS_PER_SM) * warps_per_block


def register_cap(threads: int, min_warps: int, smem: int = 0) -> int:
    """The most registers per thread that still leave ``min_warps`` resident warps per SM (0: none)."""
    return max(
        (r for r in range(1, MAX_REGS_PER_THREAD + 1) if resident_warps(r, threads, smem) >= min_warps), default=0
    )


@dataclass(frozen=True)
class KernelClass:
    name: str
    families: tuple[str, ...]  # rfkernels op families (rfkernels/<family>/, csrc/<family>/)
    min_warps: int  # resident warps per SM the kernel must allow (of MAX_WARPS_PER_SM)
    why: str

    @property
    def occupancy(self) -> float:
        return self.min_warps / MAX_WARPS_PER_SM


# Irregular gathers (hash-table corners, bilinear taps of feature maps) are latency-bound: each thread
# has a handful of independent loads to a random cache line, so the only way to keep enough of them in
# flight is more warps. Per-ray scans and streams read contiguous samples with coalesced, vectorizable
# loads and per-thread independent work (instruction-level parallelism), so half of that hides their
# latency; 16 warps is 4 per scheduler, the least that leaves a scheduler a ready warp while 3 wait.
CLASSES = (
    KernelClass(
        "irregular gather",
        ("hashgrid", "gather"),
        32,
        "random L2/HBM gathers with little ILP per thread: 50% occupancy (8 warps per scheduler) keeps them in flight",
    ),
    KernelClass(
        "ray stream",
        ("volrend", "sampling", "occgrid"),
        16,
        "coalesced per-ray streams and scans with ILP per thread: 25% occupancy (4 warps per scheduler)",
    ),
)


def kernel_class(family: str) -> KernelClass | None:
    """The class of ``family``'s kernels; None when none is stated (a violation of its own)."""
    return next((c for c in CLASSES if family in c.families), None)


def violations(row: dict) -> list[str]:
    """The rules one report row breaks (empty when it passes). ``row`` needs: family, threads,
    registers, spill_stores, spill_loads, smem, atomics and fences ({summary key: count}, see
    sm90_parse)."""
    out = []
    spill = row["spill_stores"] + row["spill_loads"]
    if spill:
        out.append(f"spills {row['spill_stores']} B stores + {row['spill_loads']} B loads")
    ordered = {k: n for k, n in row["atomics"].items() if _ordered_accumulation(k)}
    if ordered:
        out.append("non-relaxed accumulation atomics: " + ", ".join(f"{n} x {k}" for k, n in ordered.items()))
    fences = {k: n for k, n in row["fences"].items() if k.startswith("membar") or k.split(".")[1] in ORDERED}
    if fences:
        out.append("memory fences: " + ", ".join(f"{n} x {k}" for k, n in fences.items()))
    cls = kernel_class(row["family"])
    warps = resident_warps(row["registers"], row["threads"], row["smem"])
    if cls is None:
        out.append(f"no occupancy class states a target for family {row['family']!r} (tests/ci/sm90_gate.py CLASSES)")
    elif warps < cls.min_warps:
        cap = register_cap(row["threads"], cls.min_warps, row["smem"])
        out.append(
            f"{row['registers']} registers at {row['threads']} threads/block leave {warps} warps/SM, "
            f"below the {cls.name} target of {cls.min_warps} (at most {cap} registers)"
        )
    return out


def _ordered_accumulation(key: str) -> bool:
    """``key`` is sm90_parse.Atomic.key(): ``"<instr>.<space>.<op>.<type> <sem>"``."""
    instr, sem = key.split(" ", 1)
    return instr.split(".")[2] == "add" and sem in ORDERED
