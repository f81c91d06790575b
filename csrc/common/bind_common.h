// Glue shared by the csrc/<family>/bind.cpp files (the only files, with common/bindings.cpp, that include
// torch headers): argument checks, the device guard and stream, output allocation, optional pointers.
// Kernels stay in torch-free <family>/kernels.cu files and receive raw pointers, sizes and a stream.
#pragma once

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace rfk::bind {

// Makes `device` current for the launch (and for the allocations that follow).
using DeviceGuard = c10::cuda::CUDAGuard;

inline cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream(); }

// A launcher's cudaError_t -> a Python RuntimeError naming the op.
inline void check_cuda(cudaError_t err, const char* what) {
    TORCH_CHECK(err == cudaSuccess, what, " failed: ", cudaGetErrorString(err));
}

// Every tensor a kernel indexes must live on the guarded device (the kernels get raw pointers), be
// contiguous, have the expected dtype and, when numel >= 0, exactly numel entries.
inline void check_tensor(const torch::Tensor& t, const char* name, const torch::Device& device, torch::ScalarType dtype,
                         int64_t numel = -1) {
    TORCH_CHECK(t.is_cuda() && t.device() == device, name, " must be a CUDA tensor on ", device);
    TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
    TORCH_CHECK(t.scalar_type() == dtype, name, " must be ", dtype, ", got ", t.scalar_type());
    TORCH_CHECK(numel < 0 || t.numel() == numel, name, " must have ", numel, " elements, got ", t.numel());
}

inline void check_f32(const torch::Tensor& t, const char* name, const torch::Device& device, int64_t numel = -1) {
    check_tensor(t, name, device, torch::kFloat32, numel);
}

// Packed-ray offsets [R + 1] int64 (rfkernels/_packing.py); -> R.
inline int64_t check_offsets(const torch::Tensor& t, const char* name, const torch::Device& device) {
    TORCH_CHECK(t.is_cuda() && t.device() == device && t.is_contiguous() && t.scalar_type() == torch::kInt64 &&
                    t.dim() == 1 && t.numel() >= 1,
                name, " must be a contiguous 1-D int64 CUDA tensor [R + 1] on ", device);
    return t.numel() - 1;
}

// Optional inputs/outputs travel as empty tensors and reach the kernels as null pointers.
template <typename T = float>
inline const T* opt_ptr(const torch::Tensor& t) {
    return t.numel() ? t.data_ptr<T>() : nullptr;
}

template <typename T = float>
inline T* opt_mut_ptr(torch::Tensor& t) {
    return t.numel() ? t.data_ptr<T>() : nullptr;
}

// An output computed only when `need`: zero-filled (for atomics) or uninitialized, else empty.
inline torch::Tensor zeros_if(bool need, torch::IntArrayRef sizes, const torch::TensorOptions& opts) {
    return need ? torch::zeros(sizes, opts) : torch::empty({0}, opts);
}

inline torch::Tensor empty_if(bool need, torch::IntArrayRef sizes, const torch::TensorOptions& opts) {
    return need ? torch::empty(sizes, opts) : torch::empty({0}, opts);
}

// Self-registration of a family's Python bindings: common/bindings.cpp binds every family that used
// RFK_BIND_FAMILY (in name order), so a new family adds only its own <family>/bind.cpp.
using BindFn = void (*)(pybind11::module_&);

struct FamilyBinding {
    const char* name;
    BindFn bind;
};

inline std::vector<FamilyBinding>& family_bindings() {
    static std::vector<FamilyBinding> all;  // function-local: safe from static-initialization order
    return all;
}

struct RegisterFamily {
    RegisterFamily(const char* name, BindFn bind) { family_bindings().push_back({name, bind}); }
};

inline void bind_all_families(pybind11::module_& m) {
    auto all = family_bindings();
    std::sort(all.begin(), all.end(),
              [](const FamilyBinding& a, const FamilyBinding& b) { return std::strcmp(a.name, b.name) < 0; });
    for (const auto& f : all) f.bind(m);
}

}  // namespace rfk::bind

// RFK_BIND_FAMILY(volrend) { m.def("volrend_...", ...); }  -- defines and registers the family's binder.
#define RFK_BIND_FAMILY(family)                                                                  \
    static void rfk_bind_##family(pybind11::module_& m);                                         \
    static const ::rfk::bind::RegisterFamily rfk_register_##family(#family, &rfk_bind_##family); \
    static void rfk_bind_##family(pybind11::module_& m)
