"""Peer libraries installed beside ours (nerfacc 0.5.3), loaded without our compat layer in the way."""

import importlib
import sys

import pytest

from rfkernels.compat import nerfacc as ours


def real_nerfacc():
    """The installed nerfacc (not our layer, even if install() ran), or skip."""
    saved = {k: sys.modules.pop(k) for k in [k for k in sys.modules if k == "nerfacc" or k.startswith("nerfacc.")]}
    try:
        mod = importlib.import_module("nerfacc")
    except ImportError as e:
        pytest.skip(f"nerfacc not installed ({e}); pip install --no-deps nerfacc==0.5.3")
    finally:
        real = {k: sys.modules[k] for k in list(sys.modules) if k == "nerfacc" or k.startswith("nerfacc.")}
        for k in real:
            del sys.modules[k]
        sys.modules.update(saved)
    if mod is ours or getattr(mod, "__version__", None) != "0.5.3":
        pytest.skip("nerfacc 0.5.3 is not the installed nerfacc")
    return mod, real
