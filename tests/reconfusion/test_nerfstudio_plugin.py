"""The nerfstudio method plugin's registration (fast): setup.py declares the ``nerfstudio.method_configs``
entry point, it names an object the plugin module defines, the installed distribution (when its
metadata declares the group) agrees, the object is a ``MethodSpecification`` when nerfstudio is
installed, and no module outside ``reconfusion/nerfstudio/`` imports nerfstudio."""

import ast
import importlib.metadata
import importlib.util

import pytest

from tests.helpers.paths import ROOT

GROUP = "nerfstudio.method_configs"
PLUGIN = ROOT / "reconfusion" / "nerfstudio"


def declared_entry_points() -> dict[str, str]:
    """setup.py's ``entry_points[GROUP]`` as ``{name: "module:attr"}`` (read from its syntax tree)."""
    for node in ast.walk(ast.parse((ROOT / "setup.py").read_text())):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == GROUP:
                    specs = ast.literal_eval(value)
                    return dict((part.strip() for part in spec.split("=", 1)) for spec in specs)
    return {}


def test_setup_declares_the_method_and_the_module_defines_it():
    declared = declared_entry_points()
    assert list(declared) == ["reconfusion-fewview"]
    module, _, attr = declared["reconfusion-fewview"].partition(":")
    spec = importlib.util.find_spec(module)  # imports the parent package only: no nerfstudio
    assert spec is not None and spec.origin is not None
    tree = ast.parse(open(spec.origin).read())
    assigned = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    assert attr in assigned


def test_installed_metadata_agrees_with_setup():
    try:
        installed = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=GROUP)}
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - depends on the environment
        installed = {}
    if "reconfusion-fewview" not in installed:
        pytest.skip("the installed rfkernels metadata has no nerfstudio entry point (reinstall: pip install -e .)")
    assert installed["reconfusion-fewview"] == declared_entry_points()["reconfusion-fewview"]


def test_entry_point_loads_a_method_specification():
    if importlib.util.find_spec("nerfstudio") is None:
        pytest.skip("nerfstudio is not installed (pip install --no-deps -r requirements-nerfstudio.txt)")
    from nerfstudio.plugins.types import MethodSpecification

    value = declared_entry_points()["reconfusion-fewview"]
    spec = importlib.metadata.EntryPoint("reconfusion-fewview", value, GROUP).load()
    assert isinstance(spec, MethodSpecification)
    assert spec.config.method_name == "reconfusion-fewview"


def _imports_nerfstudio(path) -> bool:
    text = path.read_text()
    if "nerfstudio" not in text:  # most files: no parse needed
        return False
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "nerfstudio" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "nerfstudio":
            return True
    return False


def test_only_the_plugin_modules_import_nerfstudio():
    """The library works without nerfstudio: only the plugin's modules (never its ``__init__``) import it."""
    files = [*(ROOT / "reconfusion").rglob("*.py"), *(ROOT / "rfkernels").rglob("*.py")]
    importers = {p.relative_to(ROOT).as_posix() for p in files if _imports_nerfstudio(p)}
    plugin = {p.relative_to(ROOT).as_posix() for p in PLUGIN.glob("*.py") if p.name != "__init__.py"}
    assert "reconfusion/nerfstudio/method.py" in importers  # the scan sees the plugin's own imports
    assert importers <= plugin, sorted(importers - plugin)
