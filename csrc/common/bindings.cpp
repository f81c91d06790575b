// The PyTorch extension module. Each op family binds its launchers in csrc/<family>/bind.cpp with
// RFK_BIND_FAMILY (common/bind_common.h), which registers itself: nothing here changes for a new family.
// Those files (and this one) are the only ones that include torch headers; kernels stay in
// torch-free <family>/kernels.cu files (declared in <family>/kernels.h).
#include "common/bind_common.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "rfkernels CUDA kernels";
    rfk::bind::bind_all_families(m);
}
