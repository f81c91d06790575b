"""An opt-in startup hook that reaches unmodified console scripts (``ns-train``, ...).

``python -m rfkernels.compat enable`` writes :data:`HOOK_NAME` into a site-packages folder. Python
runs its one line at every interpreter start: when ``RFKERNELS_COMPAT`` is set (not ``""``, ``0``,
``false``, ``no``) it puts a finder first on ``sys.meta_path`` that, on the first ``import nerfacc``
or ``import tinycudann``, imports :mod:`rfkernels.compat` (which registers the compat layers under
those names) and hands back the compat module; otherwise it does nothing. Nothing is imported at
startup either way: the user site-packages is read before the one torch lives in, and a process
that never imports nerfacc / tinycudann should not pay for torch. ``disable`` removes the file,
``status`` reports it.
"""

from __future__ import annotations

import os
import site
import sysconfig

HOOK_NAME = "rfkernels_compat.pth"
# Run by the hook (in a fresh namespace) when the variable is set.
HOOK_SOURCE = """
import sys

class RfkernelsCompatFinder:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] not in ("nerfacc", "tinycudann"):
            return None
        import importlib.util
        import rfkernels.compat  # registers the compat layers in sys.modules (RFKERNELS_COMPAT is set)
        return importlib.util.spec_from_loader(name, cls) if name in sys.modules else None

    @staticmethod
    def create_module(spec):
        return sys.modules[spec.name]

    @staticmethod
    def exec_module(module):
        pass

sys.meta_path.insert(0, RfkernelsCompatFinder)
"""
# Lines of a .pth file that start with "import" are executed by the site module at startup.
HOOK_LINE = (
    f"import os; exec({HOOK_SOURCE!r}, {{}}) "
    "if os.environ.get('RFKERNELS_COMPAT', '0').lower() not in ('', '0', 'false', 'no') else None\n"
)


def site_dir(user: bool = False) -> str:
    """The interpreter's site-packages (``purelib``), or the user site-packages with ``user``."""
    return site.getusersitepackages() if user else sysconfig.get_paths()["purelib"]


def hook_path(directory: str | None = None, user: bool = False) -> str:
    return os.path.join(directory or site_dir(user), HOOK_NAME)


def enable(directory: str | None = None, user: bool = False) -> str:
    """Write the hook; returns its path. ``OSError`` (e.g. no write permission) names the folder."""
    path = hook_path(directory, user)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(HOOK_LINE)
    return path


def disable(directory: str | None = None, user: bool = False) -> str | None:
    """Remove the hook; returns the removed path, or ``None`` if there was none."""
    path = hook_path(directory, user)
    if not os.path.exists(path):
        return None
    os.remove(path)
    return path


def status(directory: str | None = None, user: bool = False) -> str:
    """One line: where the hook is (or would be) and whether it acts in this environment."""
    path = hook_path(directory, user)
    var = os.environ.get("RFKERNELS_COMPAT", "")
    active = var.lower() not in ("", "0", "false", "no")
    if not os.path.exists(path):
        return f"startup hook: not installed ({path})"
    ok = open(path).read() == HOOK_LINE
    state = "acts here (RFKERNELS_COMPAT set)" if active else "idle (set RFKERNELS_COMPAT=1 to switch)"
    return f"startup hook: installed at {path}, {state}" + ("" if ok else " [file differs: run enable again]")


def main(command: str, argv: list[str]) -> int:
    """``enable|disable|status [--user | --site DIR]``."""
    user, directory = "--user" in argv, None
    rest = [a for a in argv if a != "--user"]
    if rest[:1] == ["--site"] and len(rest) == 2:
        directory, rest = rest[1], []
    if rest or (user and directory):
        raise SystemExit(f"python -m rfkernels.compat {command}: options are --user or --site DIR, got {argv}")
    try:
        if command == "enable":
            print(f"startup hook written: {enable(directory, user)}; it acts only when RFKERNELS_COMPAT=1")
        elif command == "disable":
            removed = disable(directory, user)
            print(f"startup hook removed: {removed}" if removed else f"no startup hook at {hook_path(directory, user)}")
        else:
            print(status(directory, user))
    except OSError as exc:
        raise SystemExit(f"python -m rfkernels.compat {command}: {exc}") from None
    return 0


COMMANDS = ("enable", "disable", "status")
__all__ = ["COMMANDS", "HOOK_LINE", "HOOK_NAME", "disable", "enable", "hook_path", "main", "status"]
