// CUDA implementation of torch.ops.edgeseg.fused_ddc (schema in csrc/fused_ddc_op.cpp): argument
// checks, then the plain launcher shared with the TensorRT plugin, on the current CUDA stream.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../fused_ddc_checks.h"
#include "edgeseg/fused_ddc_launch.h"

namespace edgeseg {
namespace fused_ddc {
namespace {

at::Tensor fused_ddc_cuda(const at::Tensor& x, const at::Tensor& weight, c10::IntArrayRef dilations,
                          const at::Tensor& scale, const at::Tensor& shift, const at::Tensor& pooled,
                          const std::optional<at::Tensor>& residual) {
    const Shape s = check_args(x, weight, dilations, scale, shift, pooled, residual);
    TORCH_INTERNAL_ASSERT(x.device().is_cuda());
    TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kHalf,
                "fused_ddc: the CUDA kernel supports float32 and float16, got ", x.scalar_type());
    const c10::cuda::CUDAGuard guard(x.device());
    const at::Tensor xc = x.contiguous(), wc = weight.contiguous(), sc = scale.contiguous(),
                     shc = shift.contiguous(), pc = pooled.contiguous();
    const at::Tensor rc = residual.has_value() ? residual->contiguous() : at::Tensor();
    at::Tensor y = at::empty({s.n, kBranches * s.c, s.h, s.w}, x.options());
    const DType dtype = x.scalar_type() == at::kHalf ? DType::kFloat16 : DType::kFloat32;
    const cudaError_t err = launch_forward_cuda(s, dtype, xc.const_data_ptr(), wc.const_data_ptr(),
                                                sc.const_data_ptr(), shc.const_data_ptr(), pc.const_data_ptr(),
                                                rc.defined() ? rc.const_data_ptr() : nullptr, y.mutable_data_ptr(),
                                                c10::cuda::getCurrentCUDAStream());
    TORCH_CHECK(err == cudaSuccess, "fused_ddc: CUDA launch failed (", cudaGetErrorString(err),
                "); shared memory needed: ", shared_memory_bytes(s), " bytes");
    return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(edgeseg, CUDA, m) { m.impl("fused_ddc", &fused_ddc_cuda); }

}  // namespace fused_ddc
}  // namespace edgeseg
