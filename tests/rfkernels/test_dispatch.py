"""The implementation registry (rfkernels._dispatch) and the package's import graph."""
import ast
import sys
import types
from pathlib import Path

import pytest
import torch

import rfkernels
from rfkernels import _dispatch

from tests.helpers.paths import ROOT  # noqa: E402
FAMILIES = ("volrend", "sampling", "hashgrid", "gather")


# ----------------------------------------------------------------------------------------- registry
def test_every_family_registers_three_backends():
    for fam in FAMILIES:
        assert _dispatch.implementation(fam, "torch", torch.zeros(1)) is not None
        entry = _dispatch._FAMILIES[fam]
        assert set(entry.backends) == {"triton", "cuda"}, fam


def test_unknown_names_raise():
    x = torch.zeros(1)
    with pytest.raises(ValueError, match="backend must be one of"):
        _dispatch.implementation("volrend", "cdua", x)  # no silent fallback to cuda
    with pytest.raises(ValueError, match="unknown op family 'volrender'"):
        _dispatch.implementation("volrender", "torch", x)
    with pytest.raises(ValueError, match="backend must be one of"):
        rfkernels.distortion_loss(torch.rand(2, 3), torch.zeros(2, 3), torch.ones(2, 3), backend="Torch")
    with pytest.raises(ValueError, match="fused backends are"):
        _dispatch.register("volrend", "torch", object(), override=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_unavailable_backend_message_unchanged():
    with pytest.raises(rfkernels.BackendUnavailableError, match="backend='cuda' is unavailable: .*CUDA tensors"):
        _dispatch.implementation("volrend", "cuda", torch.zeros(1))


class _CountingVolrend:
    """A stand-in volrend backend: the reference math through the VolrendKernels contract."""

    def __init__(self):
        import tests.rfkernels.volrend.cuda_host as host  # same signatures as the CUDA backend

        self.host, self.calls = host, []

    def __getattr__(self, name):
        fn = getattr(self.host, name)
        return lambda *a: self.calls.append(name) or fn(*a)


def test_registered_plugs_in_and_restores():
    from tests.helpers import cuda_host

    if cuda_host.nvcc_missing_reason():
        pytest.skip("needs nvcc for the host emulation")
    before = _dispatch._FAMILIES["volrend"].backends["cuda"]
    fake = _CountingVolrend()
    x = torch.rand(4, 5, requires_grad=True)
    ts = torch.linspace(0, 1, 6).expand(4, 6)
    with pytest.raises(ValueError, match="override=True"):
        _dispatch.register("volrend", "cuda", fake)
    with _dispatch.registered("volrend", "cuda", fake, available=lambda d: None):
        out = rfkernels.render_weights(x, ts[:, :-1], ts[:, 1:], backend="cuda")[0]
        out.sum().backward()
    assert fake.calls == ["composite_forward", "composite_backward"]
    assert _dispatch._FAMILIES["volrend"].backends["cuda"] is before
    ref = rfkernels.render_weights(x, ts[:, :-1], ts[:, 1:], backend="torch")[0]
    torch.testing.assert_close(out, ref)


def test_contract_is_checked_on_first_use():
    broken = types.SimpleNamespace(composite_forward=None)  # lacks the other three functions
    with _dispatch.registered("volrend", "cuda", broken, available=lambda d: None):
        with pytest.raises(TypeError, match="VolrendKernels: missing .*composite_backward"):
            _dispatch.implementation("volrend", "cuda", torch.zeros(1))


def test_version_spelled_once():
    import importlib.metadata as md

    text = (ROOT / "setup.py").read_text()
    assert '"0.1.0"' not in text and "_version.py" in text
    assert rfkernels.__version__ == rfkernels.info()["rfkernels"]
    try:
        installed = md.version("rfkernels")
    except md.PackageNotFoundError:
        installed = None
    assert installed in (None, rfkernels.__version__)


# ------------------------------------------------------------------------------------- import graph
def _bound_names(tree: ast.Module) -> set[str]:
    """Names a module binds at top level (what ``from module import name`` can take from it)."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for tgt in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(tgt) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def import_graph(package_dir: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package modules it imports (any import statement, also inside functions).
    ``from pkg import x`` is an edge to ``pkg.x`` when x is a submodule (also a compiled one, such as
    ``_C``, which is not followed: it imports nothing of ours), and to ``pkg`` when x is a name
    bound in ``pkg/__init__.py``."""
    modules = {}
    for path in package_dir.rglob("*.py"):
        rel = path.relative_to(package_dir.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        modules[".".join(parts)] = (path, rel.name == "__init__")
    bound = {name: _bound_names(ast.parse(path.read_text())) for name, (path, is_pkg) in modules.items() if is_pkg}
    graph = {}
    for name, (path, is_pkg) in modules.items():
        here = name if is_pkg else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                # `from pkg import mod` imports mod; `from pkg import name` needs pkg/__init__
                targets = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
                if any(a.name in bound.get(base, ()) for a in node.names) or base not in bound:
                    targets.append(base)
            for t in targets:
                while t and t not in modules:  # `import a.b.c` / `from a import name` -> longest module
                    t = t.rpartition(".")[0]
                if t and t.startswith(package) and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    color, stack = {}, []

    def visit(n):
        color[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if color.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in color:
                found = visit(m)
                if found:
                    return found
        color[n] = 2
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in color:
            found = visit(n)
            if found:
                return found
    return None


def test_no_import_cycles_in_rfkernels():
    graph = import_graph(ROOT / "rfkernels", "rfkernels")
    assert "rfkernels._dispatch" in graph and "rfkernels.hashgrid.module" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


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


def test_every_module_imports():
    import importlib

    for name in import_graph(ROOT / "rfkernels", "rfkernels"):
        if name.endswith("__main__") or (name.endswith(".triton") and importlib.util.find_spec("triton") is None):
            continue
        importlib.import_module(name)
    assert "rfkernels" in sys.modules
