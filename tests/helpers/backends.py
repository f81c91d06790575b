"""Every backend of a family that can run in this process, for tests that compare all of them at once
(the policy and fuzz tests): ``torch``, ``triton`` (GPU or interpreter), ``cuda`` (a GPU with the
extension), else the CUDA host emulation of tests/rfkernels/<family>/cuda_host.py plugged in as ``cuda``."""

from __future__ import annotations

import contextlib
import importlib

import torch

from rfkernels import _dispatch
from tests.helpers import cuda_host

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def backend_unavailable_reason(name: str):
    """None if the fused backend ``name`` can run on DEVICE here, else why not."""
    return (_dispatch.triton_unavailable_reason if name == "triton" else _dispatch.cuda_unavailable_reason)(DEVICE)


@contextlib.contextmanager
def all_backends(family: str):
    """Yields the list of backend names runnable here for ``family`` (torch first)."""
    importlib.import_module(f"rfkernels.{family}")  # registers the family
    names = ["torch"]
    if _dispatch.triton_unavailable_reason(DEVICE) is None:
        names.append("triton")
    with contextlib.ExitStack() as stack:
        if _dispatch.cuda_unavailable_reason(DEVICE) is None:
            names.append("cuda")
        elif DEVICE.type == "cpu" and cuda_host.nvcc_missing_reason() is None:
            host = importlib.import_module(f"tests.rfkernels.{family}.cuda_host")
            stack.enter_context(_dispatch.registered(family, "cuda", host, available=lambda d: None))
            names.append("cuda")
        yield names
