"""The committed sm_90 report (benchmarks/results/sm90_report.json, made by ``python -m tests.ci.sm90_report``)
passes the gate and is a record of every kernel in the tree (no compiler, no GPU: CI's report step
recompiles and compares; these read the committed files)."""

import json
import re

import pytest

from tests.ci import sm90_gate, sm90_report
from tests.helpers.paths import ROOT

JSON = ROOT / "benchmarks" / "results" / "sm90_report.json"
MD = ROOT / "benchmarks" / "results" / "sm90_report.md"


@pytest.fixture(scope="module")
def report():
    return json.loads(JSON.read_text())


def test_committed_report_passes_the_gate(report):
    """0 spills, no non-relaxed accumulation atomic, every kernel at or above its occupancy target,
    re-judged here with the gate's current rules (not the verdicts stored in the file)."""
    failing = [
        f"{r['backend']} {r['kernel']} [{r['variant']}] ({r['compiler']}): {'; '.join(v)}"
        for r in report["rows"]
        if (v := sm90_gate.violations(r))
    ]
    assert not failing, "\n".join(failing)


def test_stated_floors_are_tight(report):
    """Each stated floor names a kernel of the report and equals its lowest resident warps: a floor
    below today's value would let registers grow unnoticed, one for a kernel now at its class target
    should be removed."""
    for f in sm90_gate.BELOW_CLASS_TARGET:
        rows = [r for r in report["rows"] if (r["backend"], r["kernel"]) == (f.backend, f.kernel)]
        assert rows, f"stated floor for {f.kernel} ({f.backend}): no such kernel in the report"
        assert min(r["warps_per_sm"] for r in rows) == f.min_warps, f


def test_committed_report_lists_every_kernel_of_the_tree(report):
    """Every launched ``@triton.jit`` kernel (``name[grid](...)``) under rfkernels/<family>/ and every
    ``__global__`` kernel under csrc/<family>/, for each registered family, has rows (a kernel added
    without regenerating the report fails here)."""
    import rfkernels  # noqa: F401 - registers every family
    from rfkernels import _dispatch

    triton, cuda = set(), set()
    for family in _dispatch.families():
        for py in (ROOT / "rfkernels" / family).rglob("*.py"):
            text = py.read_text()
            jit = re.findall(r"@triton\.jit[^\n]*\n(?:@[^\n]*\n)*def (\w+)", text)
            triton |= {k for k in jit if re.search(rf"\b{k}\[", text)}
        for cu in (ROOT / "csrc" / family).rglob("*.cu"):
            bounds = r"__launch_bounds__\((?:[^()]|\([^()]*\))*\)\s*"  # its arguments may call a function
            cuda |= set(re.findall(rf"__global__\s+void\s+(?:{bounds})?(\w+)", cu.read_text()))
    rows = {"triton": set(), "cuda": set()}
    for r in report["rows"]:
        rows[r["backend"]].add(re.sub(r"<.*", "", r["kernel"]).split("::")[-1])
    assert triton and cuda
    assert not triton - rows["triton"], f"Triton kernels the report never compiled: {sorted(triton - rows['triton'])}"
    assert not cuda - rows["cuda"], f"CUDA kernels missing from the report: {sorted(cuda - rows['cuda'])}"


def test_committed_markdown_is_the_json_rendered(report):
    """The .md is generated from the .json (same rows, same verdicts), not edited by hand."""
    assert MD.read_text() == sm90_report.markdown(report)
    assert report["rows"] == sm90_report.finish_rows(report["rows"])  # sorted, verdicts current


def test_readme_shows_the_committed_summary(report):
    """The README's performance section holds the summary rendered from the committed report."""
    assert sm90_report.readme_table(report) in (ROOT / "README.md").read_text()
