"""No import circle anywhere: rfkernels, reconfusion and benchmarks, read from source with ast."""

import importlib
import sys

import pytest

from tests.helpers.import_graph import find_cycle, import_graph
from tests.helpers.paths import ROOT

PACKAGES = ("rfkernels", "reconfusion", "benchmarks")


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycles(package):
    graph = import_graph(ROOT / package, package)
    assert len(graph) > 3, f"{package}: the graph found almost no modules"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_graph_sees_the_modules_it_should():
    graph = import_graph(ROOT / "rfkernels", "rfkernels")
    assert "rfkernels._dispatch" in graph and "rfkernels.hashgrid.module" in graph
    graph = import_graph(ROOT / "reconfusion", "reconfusion")
    assert "reconfusion.app.cli" in graph and "reconfusion.reconstruct" in graph["reconfusion.app.runs"]


def test_cycle_finder_finds_cycles(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import x\n")
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "__init__.py").write_text("from .mod import y\n")
    (pkg / "sub" / "mod.py").write_text("def f():\n    from . import y\n")  # a lazy import is still an edge
    assert find_cycle(import_graph(pkg, "pkg")) == ["pkg.sub", "pkg.sub.mod", "pkg.sub"]
    (pkg / "sub" / "mod.py").write_text("y = 2\n")
    assert find_cycle(import_graph(pkg, "pkg")) is None


def test_every_rfkernels_module_imports():
    for name in import_graph(ROOT / "rfkernels", "rfkernels"):
        if name.endswith("__main__") or (name.endswith(".triton") and importlib.util.find_spec("triton") is None):
            continue
        importlib.import_module(name)
    assert "rfkernels" in sys.modules
