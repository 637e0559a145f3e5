// Plain launcher of the fused DDC CUDA kernel, shared by the PyTorch op (csrc/cuda/fused_ddc_op_cuda.cu)
// and the TensorRT plugin's enqueue (plugin/fusedDDCPlugin.cpp). No torch, no TensorRT: device
// pointers, a problem size and a stream.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "edgeseg/fused_ddc_index.h"

namespace edgeseg {
namespace fused_ddc {

// Element type of every tensor of one call (they all share it); accumulation is always FP32.
enum class DType { kFloat32, kFloat16 };

// Launches y = fused_ddc(x, weight, dilations, scale, shift, pooled, residual) on `stream`.
//
// Pointers are device pointers to contiguous NCHW / row-major tensors of `dtype` with the shapes of
// forward_cpu (fused_ddc_cpu.h); residual may be null. Returns the launch error (cudaSuccess when
// queued), e.g. cudaErrorInvalidValue when a tile with its dilation halo does not fit in the
// device's shared memory (dilations above ~100).
cudaError_t launch_forward_cuda(const Shape& shape, DType dtype, const void* x, const void* weight,
                                const void* scale, const void* shift, const void* pooled,
                                const void* residual, void* y, cudaStream_t stream);

// Dynamic shared memory (bytes) one thread block uses for these dilations: the input tile plus a
// halo of max(dilation) on every side, stored as FP32.
size_t shared_memory_bytes(const Shape& shape);

}  // namespace fused_ddc
}  // namespace edgeseg
