"""Parsers for the compiler's own report of one sm_90 kernel: ``ptxas -v`` text and PTX text.

Pure text in, plain data out (no compiler, torch or triton import), so the parsing is unit-tested on
small snippets (tests/ci/test_sm90_parse.py) and reused by the report (``tests/ci/sm90_report.py``).

PTX atomics: ``atom``/``red{.sem}{.scope}{.space}.op{...}.type``. The PTX ISA: "If the .sem qualifier
is absent, .relaxed is assumed by default" and the scope defaults to ``.gpu``; ``atomicAdd`` in CUDA
compiles to such an unqualified ``atom``/``red``, Triton's default ``sem="acq_rel"`` to
``atom.global.gpu.acq_rel``. The explicit ``.acquire``/``.release``/``.acq_rel`` orderings cost a
fence each on sm_90.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

ATOMIC_OPS = ("add", "and", "or", "xor", "cas", "exch", "inc", "dec", "min", "max")
SEMANTICS = ("relaxed", "acquire", "release", "acq_rel", "sc")
SCOPES = ("cta", "cluster", "gpu", "sys")
IMPLICIT_RELAXED = "relaxed(default)"  # no .sem qualifier: relaxed by the PTX ISA
ORDERED = ("acquire", "release", "acq_rel", "sc")  # semantics that order other memory operations


# ---------------------------------------------------------------------------------- ptxas -v
@dataclass(frozen=True)
class Resources:
    """What ``ptxas -v`` says about one entry function (bytes unless named otherwise)."""

    name: str  # the entry's (mangled) name
    registers: int
    spill_stores: int
    spill_loads: int
    stack: int  # stack frame: local arrays and spills live there
    smem: int  # static shared memory
    barriers: int

    @property
    def spill_bytes(self) -> int:
        return self.spill_stores + self.spill_loads


_ENTRY = re.compile(r"Compiling entry function '([^']+)'")
_PROPS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_BARRIERS = re.compile(r"used (\d+) barriers")
_SMEM = re.compile(r"(\d+) bytes smem")


def parse_ptxas(text: str) -> list[Resources]:
    """Every entry function of a ``ptxas -v`` log (nvcc ``-Xptxas -v`` or ptxas itself), in log order.

    Each entry's block runs from its ``Compiling entry function`` line to the next; a block without a
    ``Used N registers`` line is an error (a truncated or unexpected log must not read as 0 registers).
    """
    out = []
    blocks = _ENTRY.split(text)  # [before, name1, block1, name2, block2, ...]
    for name, block in zip(blocks[1::2], blocks[2::2]):
        used = _USED.search(block)
        if not used:
            raise ValueError(f"ptxas log: no 'Used N registers' line for {name}")
        props = _PROPS.search(block)
        stack, stores, loads = (int(g) for g in props.groups()) if props else (0, 0, 0)
        barriers = _BARRIERS.search(block)
        smem = _SMEM.search(block)
        out.append(
            Resources(
                name=name,
                registers=int(used.group(1)),
                spill_stores=stores,
                spill_loads=loads,
                stack=stack,
                smem=int(smem.group(1)) if smem else 0,
                barriers=int(barriers.group(1)) if barriers else 0,
            )
        )
    return out


# ---------------------------------------------------------------------------------- PTX
@dataclass(frozen=True)
class Atomic:
    """One ``atom``/``red`` instruction of the PTX."""

    instr: str  # "atom" | "red"
    op: str  # one of ATOMIC_OPS
    sem: str  # one of SEMANTICS, or IMPLICIT_RELAXED
    scope: str  # one of SCOPES ("gpu" when absent)
    space: str  # "global" | "shared" | "shared::cta" | "shared::cluster" | "generic"
    type: str  # e.g. "f32", "f16x2", "v2.f32"

    @property
    def ordered(self) -> bool:
        """True for an acquire/release/acq_rel/sc atomic (a fence on sm_90); relaxed ones are not."""
        return self.sem in ORDERED

    @property
    def accumulates(self) -> bool:
        """True for a read-modify-write that sums into memory (``add``; ``red`` is always one)."""
        return self.op == "add"

    def key(self) -> str:
        """``red.global.add.f32 relaxed(default)``: the summary form used in the report."""
        return f"{self.instr}.{self.space}.{self.op}.{self.type} {self.sem}"


@dataclass
class PtxFunction:
    """The atomics and fences of one PTX ``.entry`` (or ``.func``)."""

    name: str
    kind: str  # "entry" | "func"
    atomics: list[Atomic] = field(default_factory=list)
    fences: Counter = field(default_factory=Counter)  # "membar.gl" / "fence.acq_rel.gpu" -> count
    maxntid: int | None = None  # threads per block from __launch_bounds__ (.maxntid x, y, z)


_FUNC = re.compile(r"^\s*(?:\.visible\s+|\.weak\s+|\.extern\s+)*\.(entry|func)\s+(?:\([^)]*\)\s*)?([\w$]+)")
_INSTR = re.compile(r"^\s*\{?\s*(?:@!?%\w+\s+)?(atom|red|membar|fence)\b((?:\.[\w:]+)*)")
_MAXNTID = re.compile(r"^\s*\.maxntid\s+(\d+)\s*(?:,\s*(\d+))?\s*(?:,\s*(\d+))?")


def parse_atomic(instr: str, qualifiers: list[str]) -> Atomic:
    """``parse_atomic("red", ["relaxed", "gpu", "global", "add", "f32"])``; raises ValueError on an
    instruction without a known operation."""
    ops = [q for q in qualifiers if q in ATOMIC_OPS]
    if len(ops) != 1:
        raise ValueError(f"PTX {instr}.{'.'.join(qualifiers)}: expected one operation of {ATOMIC_OPS}")
    sem = next((q for q in qualifiers if q in SEMANTICS), IMPLICIT_RELAXED)
    scope = next((q for q in qualifiers if q in SCOPES), "gpu")
    space = next((q for q in qualifiers if q.startswith("shared") or q == "global"), "generic")
    after_op = qualifiers[qualifiers.index(ops[0]) + 1 :]
    # after the operation: optional .noftz and cache hints, an optional vector width, then the type
    type_parts = [q for q in after_op if q != "noftz" and not q.startswith(("L2::", "level::"))]
    return Atomic(instr, ops[0], sem, scope, space, ".".join(type_parts) or "?")


def parse_ptx(text: str) -> dict[str, PtxFunction]:
    """The atomics, fences and ``.maxntid`` of every function of a PTX module, by function name.

    Instructions are attributed to the function whose header precedes them; predicated (``@%p``) and
    inline-asm (``{ atom... }``) forms count like plain ones.
    """
    funcs: dict[str, PtxFunction] = {}
    cur: PtxFunction | None = None
    for line in text.splitlines():
        line = line.split("//", 1)[0]
        head = _FUNC.match(line)
        if head:
            cur = funcs.setdefault(head.group(2), PtxFunction(head.group(2), head.group(1)))
            continue
        if cur is None:
            continue
        ntid = _MAXNTID.match(line)
        if ntid:
            cur.maxntid = 1
            for g in ntid.groups():
                cur.maxntid *= int(g) if g else 1
            continue
        m = _INSTR.match(line)
        if not m:
            continue
        instr, quals = m.group(1), [q for q in m.group(2).split(".") if q]
        if instr in ("atom", "red"):
            cur.atomics.append(parse_atomic(instr, quals))
        else:
            cur.fences[".".join([instr, *quals])] += 1
    return funcs


def summarize_atomics(atomics: list[Atomic]) -> dict[str, int]:
    """``{"red.global.add.f32 relaxed(default)": 16, ...}``, sorted by key (the report's form)."""
    return dict(sorted(Counter(a.key() for a in atomics).items()))


def short_name(demangled: str) -> str:
    """A kernel's readable name from its demangled signature: the ``void`` return type (every kernel's),
    the parameter list and anonymous namespaces (their tag depends on the file's path) dropped.
    ``void rfk::(anonymous namespace)::k<8>(float*)`` -> ``rfk::k<8>``."""
    name = demangled.replace("(anonymous namespace)::", "").removeprefix("void ")
    if name.endswith(")"):
        depth = 0
        for i in range(len(name) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(name[i], 0)
            if depth == 0:
                name = name[:i]
                break
    return name.strip()


def split_template(name: str) -> tuple[str, str]:
    """``rfk::k<8, true>`` -> (``rfk::k``, ``<8, true>``); a name without template arguments -> (name, "")."""
    if not name.endswith(">"):
        return name, ""
    depth = 0
    for i in range(len(name) - 1, -1, -1):
        depth += {">": 1, "<": -1}.get(name[i], 0)
        if depth == 0:
            return name[:i], name[i:]
    return name, ""
