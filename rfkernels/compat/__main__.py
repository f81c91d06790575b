"""Run an unmodified nerfacc / tiny-cuda-nn script on rfkernels, with no edit to it:

    python -m rfkernels.compat train.py --its-own args      # or: -m some.module args
    python -m rfkernels.compat $(which ns-train) nerfacto ...   # a console script is a script too

The compat layers are registered as ``nerfacc`` and ``tinycudann`` (:func:`rfkernels.compat.install`)
before the script runs as ``__main__``.

    python -m rfkernels.compat enable|disable|status [--user | --site DIR]

installs / removes / reports a startup hook (a .pth file in site-packages) so that any Python
process, ``ns-train`` included, switches when ``RFKERNELS_COMPAT=1`` is set (see
:mod:`rfkernels.compat.startup_hook`).
"""

from __future__ import annotations

import os
import runpy
import sys

from . import install
from .startup_hook import COMMANDS
from .startup_hook import main as hook_main


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        raise SystemExit(0 if argv else 2)
    if argv[0] in COMMANDS and not os.path.isfile(argv[0]):
        raise SystemExit(hook_main(argv[0], argv[1:]))
    install()
    if argv[0] == "-m":
        if len(argv) < 2:
            raise SystemExit("python -m rfkernels.compat: -m needs a module name")
        sys.argv = argv[1:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
