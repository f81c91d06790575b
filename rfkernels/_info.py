"""``rfkernels.info()`` / ``python -m rfkernels info``: versions, device, available backends."""

from __future__ import annotations

import importlib.metadata as md
import platform

import torch

from . import _dispatch
from ._version import __version__


def _version(pkg: str) -> str | None:
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return None


def info(build_cuda: bool = False) -> dict:
    """Versions, device and backend availability (with the reason for each unavailable one).

    ``build_cuda=True`` triggers the JIT build of the CUDA extension to report its real status.
    """
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if cuda and build_cuda:
        cuda_reason = _dispatch.cuda_unavailable_reason(device)
    elif cuda:
        cuda_reason = "not built yet (built on first CUDA use; `python -m rfkernels info --build`)"
    else:
        from ._cuda_ext import _static_reason

        cuda_reason = _static_reason()
    return {
        "rfkernels": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": _version("triton"),
        "xformers": _version("xformers"),
        "diffusers": _version("diffusers"),
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "triton_interpreter": _dispatch.triton_interpreter(),
        "default_backend": _dispatch.get_backend(),
        "backends": {
            "torch": "available",
            "triton": _dispatch.triton_unavailable_reason(device) or "available",
            "cuda": cuda_reason or "available",
        },
    }
