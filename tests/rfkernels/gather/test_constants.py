"""The gather kernel constants named in csrc/gather/kernels.h equal the Python side's
(rfkernels/gather/contract.py): reduction codes and the packed-camera stride, read from the CUDA
header through the host emulation (the header compiled by nvcc, not parsed)."""

import ctypes

import pytest

from rfkernels.gather import CAM_STRIDE, REDUCE_CODE
from rfkernels.gather.contract import REDUCE_MAX, REDUCE_MEAN, REDUCE_MEAN_VAR, REDUCE_NONE
from tests.helpers import cuda_host

pytestmark = pytest.mark.skipif(cuda_host.nvcc_missing_reason() is not None, reason="nvcc not on PATH")


def _cuda_constants() -> tuple[list[int], int, int]:
    reduce, stride, k_offset = (ctypes.c_int * 4)(), ctypes.c_int(), ctypes.c_int()
    cuda_host.load("gather").host_gather_constants(reduce, ctypes.byref(stride), ctypes.byref(k_offset))
    return list(reduce), stride.value, k_offset.value


def test_reduce_codes_match():
    reduce, _, _ = _cuda_constants()  # kGatherNone, kGatherMean, kGatherMeanVar, kGatherMax
    assert reduce == [REDUCE_NONE, REDUCE_MEAN, REDUCE_MEAN_VAR, REDUCE_MAX]
    assert dict(zip(("none", "mean", "mean_var", "max"), reduce)) == REDUCE_CODE


def test_camera_stride_matches():
    _, stride, k_offset = _cuda_constants()
    assert stride == CAM_STRIDE
    assert k_offset + 6 == CAM_STRIDE  # [R|t] (12 floats), then the two rows of K_feat (6) end the camera
