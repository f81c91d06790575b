"""The sm_90 compiler report of every kernel, as a committed table and a CI gate (no GPU needed).

    python -m tests.ci.sm90_report [--out-dir benchmarks/results] [--also-triton DIR] [--variants FILE]

1. Triton: every kernel variant the tests launch (recorded in the interpreter, ``tests/ci/triton_sm90.py``)
   compiled for sm_90 with ``triton.compile`` and ``ptxas -v`` (this triton, and each ``--also-triton``);
2. CUDA: every ``csrc/**/*.cu`` compiled with nvcc as the JIT build does (``rfkernels/_build.py`` flags
   and torch's ``COMMON_NVCC_FLAGS``, sm_90) with ``-Xptxas -v``, its PTX kept;
3. one row per compiled kernel: registers, spill stores/loads, stack frame, shared memory, threads per
   block, resident warps per SM, the atomics by instruction and semantics, the fences (PTX), and the
   rules it breaks (``tests/ci/sm90_gate.py``);
4. writes ``sm90_report.json`` (every row) and ``sm90_report.md`` (one line per kernel, then every
   failing variant) into ``--out-dir``; both sorted and free of dates and paths, so an unchanged tree
   and compiler give identical files.

Exit status 1 when a row breaks a rule or a compile fails; the files are written either way.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.ci import sm90_gate
from tests.ci.sm90_parse import parse_ptx, parse_ptxas, short_name, split_template, summarize_atomics

ROOT = Path(__file__).resolve().parents[2]
REPORT = "sm90_report"
DEFAULT_OUT = ROOT / "benchmarks" / "results"
ROW_ORDER = ("backend", "family", "source", "kernel", "variant", "signature", "compiler")


# ---------------------------------------------------------------------------------- CUDA
def _build():
    sys.path.insert(0, str(ROOT / ".ci"))
    try:
        import build_ext  # rfkernels/_build.py loaded by path, the JIT flags
    finally:
        sys.path.remove(str(ROOT / ".ci"))
    return build_ext.BUILD


def default_threads(csrc: Path) -> int:
    """Threads per block of a CUDA kernel without ``__launch_bounds__``: ``kThreads`` of common.cuh."""
    m = re.search(r"constexpr int kThreads = (\d+);", (csrc / "common" / "common.cuh").read_text())
    if not m:
        raise SystemExit("FAILED: csrc/common/common.cuh defines no 'constexpr int kThreads = N;'")
    return int(m.group(1))


def nvcc_flags(build) -> list[str]:
    """The device flags of the JIT build for one sm_90 GPU (rfkernels/_build.py + torch's common ones)."""
    from torch.utils.cpp_extension import COMMON_NVCC_FLAGS

    arch = build.OFFLINE_ARCH
    return ["-std=c++17", *COMMON_NVCC_FLAGS, *build.NVCC_FLAGS, f"-gencode=arch=compute_{arch},code=sm_{arch}"]


def _demangle(names: list[str]) -> list[str]:
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def cuda_rows(csrc: Path, nvcc: str = "nvcc") -> tuple[list[dict], list[str]]:
    """One row per ``__global__`` kernel of every ``.cu`` under ``csrc``, and the sources that failed."""
    build = _build()
    flags = nvcc_flags(build)
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    release = re.search(r"release ([\d.]+), V([\d.]+)", out)
    version = f"nvcc {release.group(2)}" if release else "nvcc (unknown version)"
    threads = default_threads(csrc)
    rows, failed = [], []
    for src in (s for s in build.sources(csrc) if s.suffix == ".cu"):
        rel = src.relative_to(csrc.parent).as_posix()
        with tempfile.TemporaryDirectory() as keep:
            cmd = [nvcc, "-c", *flags, "-Xptxas", "-v", f"-I{csrc}", "--keep", "--keep-dir", keep]
            proc = subprocess.run([*cmd, str(src), "-o", str(Path(keep) / "unit.o")], capture_output=True, text=True)
            if proc.returncode:
                print(proc.stdout + proc.stderr)
                failed.append(rel)
                continue
            ptx = parse_ptx(next(Path(keep).glob("*.ptx")).read_text())
        resources = parse_ptxas(proc.stdout + proc.stderr)
        names = _demangle([r.name for r in resources])
        for res, demangled in zip(resources, names):
            func = ptx[res.name]
            kernel, template = split_template(short_name(demangled))
            rows.append(
                {
                    "backend": "cuda",
                    "compiler": version,
                    "family": src.relative_to(csrc).parts[0],
                    "source": rel,
                    "kernel": kernel,
                    "variant": template,
                    "signature": "",
                    "threads": func.maxntid or threads,
                    "smem": res.smem,
                    "atomics": summarize_atomics(func.atomics),
                    "fences": dict(sorted(func.fences.items())),
                    "registers": res.registers,
                    "spill_stores": res.spill_stores,
                    "spill_loads": res.spill_loads,
                    "stack": res.stack,
                }
            )
        print(f"  {rel}: {len(resources)} kernels")
    return rows, failed


# ---------------------------------------------------------------------------------- Triton
def triton_rows(specs: list[dict], triton_dirs: list[str | None]) -> tuple[list[dict], int]:
    """Rows of every recorded variant compiled with each triton (None: this one); and the number of
    compilers that failed on some variant."""
    from tests.ci import triton_sm90

    rows, failures = [], 0
    with tempfile.TemporaryDirectory() as d:
        for i, tdir in enumerate(triton_dirs):
            out = os.path.join(d, f"rows{i}.json")
            rc = triton_sm90.compile_in_fresh_process(specs, None, tdir, out)
            failures += rc != 0
            if os.path.exists(out):
                rows += json.loads(Path(out).read_text())
    return rows, failures


# ---------------------------------------------------------------------------------- table
def finish_rows(rows: list[dict]) -> list[dict]:
    """Each row with its class, resident warps, register cap and violations; sorted, keys in order."""
    out = []
    for row in rows:
        cls = sm90_gate.kernel_class(row["family"])
        target = sm90_gate.target_warps(row)
        row = {
            **row,
            "class": cls.name if cls else None,
            "warps_per_sm": sm90_gate.resident_warps(row["registers"], row["threads"], row["smem"]),
            "target_warps_per_sm": target,
            "register_cap": sm90_gate.register_cap(row["threads"], target, row["smem"]) if cls else None,
            "violations": sm90_gate.violations(row),
        }
        out.append({k: row[k] for k in sorted(row, key=_key_order)})
    return sorted(out, key=lambda r: tuple(str(r[k]) for k in ROW_ORDER))


def _key_order(k: str) -> tuple[int, str]:
    return (ROW_ORDER.index(k), "") if k in ROW_ORDER else (len(ROW_ORDER), k)


def report(rows: list[dict], compilers: list[str], flags: list[str]) -> dict:
    return {
        "generated_by": "python -m tests.ci.sm90_report",
        "target": "sm_90 (H100/H200)",
        "compilers": sorted(compilers),
        "cuda_flags": flags,
        "limits": {
            "registers_per_sm": sm90_gate.REGS_PER_SM,
            "max_warps_per_sm": sm90_gate.MAX_WARPS_PER_SM,
            "max_blocks_per_sm": sm90_gate.MAX_BLOCKS_PER_SM,
            "register_alloc_unit_per_warp": sm90_gate.REG_ALLOC_UNIT,
            "smem_per_sm": sm90_gate.SMEM_PER_SM,
        },
        "classes": [
            {"name": c.name, "families": list(c.families), "min_warps_per_sm": c.min_warps, "why": c.why}
            for c in sm90_gate.CLASSES
        ],
        "stated_floors": [
            {"backend": f.backend, "kernel": f.kernel, "min_warps_per_sm": f.min_warps, "why": f.why}
            for f in sm90_gate.BELOW_CLASS_TARGET
        ],
        "rows": rows,
        "failing_rows": sum(bool(r["violations"]) for r in rows),
    }


def _status(failing: int, floor) -> str:
    if failing:
        return f"**FAIL** ({failing})"
    return "ok (stated floor)" if floor else "ok"


def _fmt_counts(counts: dict[str, int]) -> str:
    return "; ".join(f"{n}x {k}" for k, n in counts.items()) or "-"


def markdown(rep: dict) -> str:
    """One line per (backend, kernel, compiler): worst case over its variants; then every failing row."""
    groups: dict[tuple, list[dict]] = {}
    for r in rep["rows"]:
        groups.setdefault((r["backend"], r["source"], r["kernel"], r["compiler"]), []).append(r)
    lines = [
        "# sm_90 compiler report (H100/H200)",
        "",
        f"Generated by `{rep['generated_by']}` (do not edit); every row in `{REPORT}.json`. Compilers: "
        + ", ".join(rep["compilers"])
        + ".",
        "",
        "Occupancy targets (resident warps per SM of 64; registers allocated per warp in units of 256, 65536 per SM):",
        "",
    ]
    for c in rep["classes"]:
        fam = ", ".join(c["families"])
        lines.append(f"- **{c['name']}** ({fam}): >= {c['min_warps_per_sm']} warps/SM, {c['why']}")
    if rep.get("stated_floors"):
        lines += ["", "Kernels below their class's target today, each held at a stated floor (a ratchet) and why:", ""]
        for f in rep["stated_floors"]:
            lines.append(f"- {f['backend']} `{f['kernel']}`: >= {f['min_warps_per_sm']} warps/SM: {f['why']}")
    lines += [
        "",
        "| backend | kernel | compiler | variants | threads | registers (max) | warps/SM (min) | target | "
        "spill B | stack B | smem B | atomics | fences | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (backend, source, kernel, compiler), rows in groups.items():
        atomics: dict[str, int] = {}
        fences: dict[str, int] = {}
        for r in rows:
            for k, n in r["atomics"].items():
                atomics[k] = max(atomics.get(k, 0), n)
            for k, n in r["fences"].items():
                fences[k] = max(fences.get(k, 0), n)
        failing = sum(bool(r["violations"]) for r in rows)
        threads = sorted({r["threads"] for r in rows})
        lines.append(
            f"| {backend} | `{kernel}` ({source}) | {compiler} | {len(rows)} | {'/'.join(map(str, threads))} | "
            f"{max(r['registers'] for r in rows)} | {min(r['warps_per_sm'] for r in rows)} | "
            f"{rows[0]['target_warps_per_sm']} | {max(r['spill_stores'] + r['spill_loads'] for r in rows)} | "
            f"{max(r['stack'] for r in rows)} | {max(r['smem'] for r in rows)} | "
            f"{_fmt_counts(dict(sorted(atomics.items())))} | {_fmt_counts(dict(sorted(fences.items())))} | "
            f"{_status(failing, sm90_gate.stated_floor(backend, kernel))} |"
        )
    lines += ["", f"## Failing variants ({rep['failing_rows']})", ""]
    for r in rep["rows"]:
        if r["violations"]:
            var = f" [{r['variant']}]" if r["variant"] else ""
            lines.append(f"- {r['backend']} `{r['kernel']}`{var} ({r['compiler']}): " + "; ".join(r["violations"]))
    if not rep["failing_rows"]:
        lines.append("None.")
    return "\n".join(lines) + "\n"


README_BEGIN = "<!-- sm90-report: generated by python -m tests.ci.sm90_report -->"
README_END = "<!-- /sm90-report -->"


def readme_table(rep: dict) -> str:
    """The README's summary: one line per (family, backend), the worst case over kernels, variants and
    compilers, between the markers that ``update_readme`` replaces."""
    groups: dict[tuple, list[dict]] = {}
    for r in rep["rows"]:
        groups.setdefault((r["family"], r["backend"]), []).append(r)
    lines = [
        README_BEGIN,
        "| family | backend | kernels (variants) | registers, max | warps/SM, min (target) | spill B, max | "
        "accumulation atomics | failing variants |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (family, backend), rows in sorted(groups.items()):
        sems = sorted({k.split(" ", 1)[1] for r in rows for k in r["atomics"] if k.split(".")[2].startswith("add")})
        targets = sorted({str(r["target_warps_per_sm"]) for r in rows})
        lines.append(
            f"| {family} | {backend} | {len({r['kernel'] for r in rows})} ({len(rows)}) | "
            f"{max(r['registers'] for r in rows)} | {min(r['warps_per_sm'] for r in rows)} ({'/'.join(targets)}) | "
            f"{max(r['spill_stores'] + r['spill_loads'] for r in rows)} | {', '.join(sems) or '-'} | "
            f"{sum(bool(r['violations']) for r in rows)} |"
        )
    return "\n".join([*lines, README_END])


def update_readme(rep: dict, readme: Path) -> bool:
    """Replace the block between the markers in ``readme`` (True), or leave a README without them (False)."""
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        return False
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    readme.write_text(head + readme_table(rep) + tail)
    return True


def write(rep: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in ((f"{REPORT}.json", json.dumps(rep, indent=1) + "\n"), (f"{REPORT}.md", markdown(rep))):
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out_dir / name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.ci.sm90_report", description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    p.add_argument("--also-triton", action="append", default=[], metavar="DIR", help="another triton (repeatable)")
    p.add_argument("--variants", default=None, help="recorded Triton variants (JSON) instead of recording them")
    p.add_argument("--csrc", type=Path, default=ROOT / "csrc")
    p.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="JSON",
        help="fail when this committed report, made with the same compilers, has other rows (CI: stale record)",
    )
    p.add_argument("pytest_args", nargs="*", help="tests to record (default: every registered op family's)")
    a = p.parse_args(argv)
    from tests.ci import triton_sm90

    with tempfile.TemporaryDirectory() as d:
        path = a.variants or os.path.join(d, "variants.json")
        record_rc = 0
        if not a.variants:
            record_rc = triton_sm90.record(a.pytest_args or triton_sm90.default_tests(), path)
            if not os.path.exists(path):
                print(f"FAILED: recording the Triton variants (pytest exit {record_rc}, nothing recorded)")
                return 1
            if record_rc not in (0, 5):  # the variants launched before a failure are still compiled
                print(
                    f"FAILED: a Triton test failed while recording (pytest exit {record_rc}): variants may be missing"
                )
        specs = json.loads(Path(path).read_text())
    trows, tfail = triton_rows(specs, [None, *a.also_triton])
    crows, cfail = cuda_rows(a.csrc.resolve(), os.environ.get("NVCC", "nvcc"))
    rows = finish_rows(trows + crows)
    rep = report(rows, sorted({r["compiler"] for r in rows}), nvcc_flags(_build()))
    write(rep, a.out_dir)
    if a.out_dir.resolve() == DEFAULT_OUT.resolve() and update_readme(rep, ROOT / "README.md"):
        print("README.md: the sm_90 summary table updated")
    print(markdown(rep))
    print(f"wrote {a.out_dir / REPORT}.json and .md: {len(rows)} kernels, {rep['failing_rows']} failing the gate")
    if cfail:
        print(f"FAILED: nvcc failed on {', '.join(cfail)}")
    stale = compare(rep, json.loads(a.compare.read_text())) if a.compare else []
    for line in stale:
        print(line)
    return 1 if rep["failing_rows"] or tfail or cfail or stale or record_rc not in (0, 5) else 0


def compare(new: dict, committed: dict) -> list[str]:
    """Why ``committed`` is not the record of this tree (empty when it is, or when it was made with
    other compiler versions, which change registers by themselves: then only a note)."""
    if new["compilers"] != committed["compilers"]:
        print(f"note: the committed report is from {committed['compilers']}, this run {new['compilers']}: not compared")
        return []

    def keyed(rep):
        return {tuple(str(r[k]) for k in ROW_ORDER): r for r in rep["rows"]}

    old, cur = keyed(committed), keyed(new)
    diffs = [f"  new: {k[0]} {k[3]} [{k[4]}] ({k[6]})" for k in cur.keys() - old.keys()]
    diffs += [f"  gone: {k[0]} {k[3]} [{k[4]}] ({k[6]})" for k in old.keys() - cur.keys()]
    diffs += [f"  changed: {k[0]} {k[3]} [{k[4]}] ({k[6]})" for k in cur.keys() & old.keys() if cur[k] != old[k]]
    if not diffs:
        return []
    return [
        f"FAILED: the committed {REPORT}.json is stale; regenerate it with python -m tests.ci.sm90_report:"
    ] + sorted(diffs)


if __name__ == "__main__":
    sys.exit(main())
