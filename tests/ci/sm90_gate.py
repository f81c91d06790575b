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
  resident warps per SM (below) at its block size, or, for a kernel listed in ``BELOW_CLASS_TARGET``
  with the reason it cannot meet its class yet, at least the floor stated there (today's value: a
  ratchet, so registers cannot grow; the debt is printed in the report).

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


@dataclass(frozen=True)
class StatedFloor:
    """A kernel that misses its class's target today, the resident warps it must keep, and why."""

    backend: str
    kernel: str
    min_warps: int
    why: str


# Each floor is the kernel's lowest resident warps over its compiled variants when it was stated: a
# variant that needs more registers fails the gate. Remove an entry when its kernel meets its class.
BELOW_CLASS_TARGET = (
    StatedFloor(
        "cuda",
        "rfk::hashgrid_bwd_kernel",
        24,
        "D >= 3 with F = 8 keeps 2^D corner weights and an 8-wide gradient row live across the corner loop; "
        "a 64-register cap (__launch_bounds__) spills 68-104 B per thread in the scatter loop (ptxas)",
    ),
    StatedFloor(
        "cuda",
        "rfk::hashgrid_dbl_kernel",
        16,
        "the double backward (second-order losses only, not the training step) carries D x F derivative "
        "terms per corner; a 64-register cap spills 24-360 B at D = 3 with F >= 4 and at D = 4 (ptxas)",
    ),
    StatedFloor(
        "triton",
        "_hashgrid_dbl_kernel",
        16,
        "as the CUDA double backward: D x F derivative terms per corner, second-order losses only",
    ),
    StatedFloor(
        "triton",
        "_hashgrid_kernel",
        24,
        "triton 3.6 allocates 68 registers to the D = 3, F = 8 backward (3.9: 64, within the target)",
    ),
    StatedFloor(
        "triton",
        "_gather_bwd_kernel",
        16,
        "channel counts not divisible by 16 and the deterministic fixed-point variants need 96-128 registers "
        "even at one element per thread; meeting 32 warps needs a restructured backward (32-bit offsets from "
        "a per-view base, fewer scatter tiles live at once)",
    ),
)


def stated_floor(backend: str, kernel: str) -> StatedFloor | None:
    """The stated floor of ``kernel`` (None: it must meet its class's target)."""
    return next((f for f in BELOW_CLASS_TARGET if (f.backend, f.kernel) == (backend, kernel)), None)


def target_warps(row: dict) -> int | None:
    """The resident warps per SM ``row``'s kernel must allow: its stated floor, else its class's target."""
    floor = stated_floor(row.get("backend", ""), row.get("kernel", ""))
    if floor is not None:
        return floor.min_warps
    cls = kernel_class(row["family"])
    return cls.min_warps if cls else None


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
    target = target_warps(row)
    if cls is None:
        out.append(f"no occupancy class states a target for family {row['family']!r} (tests/ci/sm90_gate.py CLASSES)")
    elif warps < target:
        cap = register_cap(row["threads"], target, row["smem"])
        what = f"the {cls.name} target" if target == cls.min_warps else "its stated floor (BELOW_CLASS_TARGET)"
        out.append(
            f"{row['registers']} registers at {row['threads']} threads/block leave {warps} warps/SM, "
            f"below {what} of {target} (at most {cap} registers)"
        )
    return out


def _ordered_accumulation(key: str) -> bool:
    """``key`` is sm90_parse.Atomic.key(): ``"<instr>.<space>.<op>.<type> <sem>"``."""
    instr, sem = key.split(" ", 1)
    return instr.split(".")[2] == "add" and sem in ORDERED
