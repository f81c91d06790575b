"""The import graph of a package from its source (ast, nothing imported) and a cycle finder."""

from __future__ import annotations

import ast
from pathlib import Path


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
                return stack[stack.index(m) :] + [m]
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
