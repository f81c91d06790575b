// The PyTorch extension module. Each op family binds its launchers in csrc/bind_<family>.cpp
// (the only files that include torch headers besides this one); kernels stay in torch-free .cu files.
#include <torch/extension.h>

void rfk_bind_volrend(pybind11::module_& m);
void rfk_bind_hashgrid(pybind11::module_& m);
void rfk_bind_gather(pybind11::module_& m);
void rfk_bind_sampling(pybind11::module_& m);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "rfkernels CUDA kernels";
    rfk_bind_volrend(m);
    rfk_bind_hashgrid(m);
    rfk_bind_gather(m);
    rfk_bind_sampling(m);
}
