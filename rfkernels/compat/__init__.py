"""Drop-in layers: nerfacc- and tiny-cuda-nn-shaped APIs on rfkernels' public ops (no kernels here).

    from rfkernels.compat import nerfacc, tcnn       # explicit
    import rfkernels.compat; rfkernels.compat.install()   # then `import nerfacc` / `import tinycudann`

``install()`` (or ``RFKERNELS_COMPAT=1`` in the environment, read when this package is imported)
registers :mod:`.nerfacc` (with its submodules) as ``nerfacc`` and :mod:`.tcnn` as ``tinycudann``
in ``sys.modules``.
"""

from __future__ import annotations

import os
import sys

from . import nerfacc, tcnn

ENV_VAR = "RFKERNELS_COMPAT"
_SUBMODULES = (
    "cameras",
    "data_specs",
    "estimators",
    "estimators.base",
    "estimators.occ_grid",
    "estimators.prop_net",
    "grid",
    "losses",
    "pack",
    "pdf",
    "scan",
    "volrend",
)


def _targets(which):
    names = {"nerfacc": ("nerfacc", nerfacc), "tinycudann": ("tinycudann", tcnn), "tcnn": ("tinycudann", tcnn)}
    unknown = [w for w in which if w not in names]
    if unknown:
        raise ValueError(f"`which` entries must be 'nerfacc' or 'tinycudann', got {unknown}")
    return [names[w] for w in which]


def install(which=("nerfacc", "tinycudann"), force: bool = True) -> None:
    """Register the compat layers in ``sys.modules`` so ``import nerfacc`` / ``import tinycudann``
    (and ``from nerfacc.estimators.prop_net import ...``) resolve to rfkernels. ``force=False``
    leaves an already-imported real package in place."""
    for name, mod in _targets(which):
        if not force and name in sys.modules and sys.modules[name] is not mod:
            continue
        sys.modules[name] = mod
        if mod is nerfacc:
            for sub in _SUBMODULES:
                sys.modules[f"nerfacc.{sub}"] = sys.modules[f"{nerfacc.__name__}.{sub}"]
        else:
            sys.modules[f"{name}.modules"] = mod


def uninstall() -> None:
    """Remove the registrations made by :func:`install` (a real package imported later is untouched)."""
    for key in [
        k
        for k, v in sys.modules.items()
        if v is nerfacc
        or v is tcnn
        or (k.startswith("nerfacc.") and getattr(v, "__name__", "").startswith(nerfacc.__name__))
    ]:
        del sys.modules[key]


if os.environ.get(ENV_VAR, "0").lower() not in ("", "0", "false", "no"):
    install()

__all__ = ["ENV_VAR", "install", "nerfacc", "tcnn", "uninstall"]
