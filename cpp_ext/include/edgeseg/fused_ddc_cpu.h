// CPU kernel of the fused DDC op (FP32). Plain C++: no torch, no CUDA.
#pragma once

#include "edgeseg/fused_ddc_index.h"

namespace edgeseg {
namespace fused_ddc {

// y = shuffle(concat(relu(scale[b] * dwconv(x, weight[b], dilation[b]) + shift[b]) for b < 4,
//                    broadcast(pooled)), groups = 5) + residual
//
// All pointers are contiguous NCHW / row-major: x (n, c, h, w), weight (4, c, 3, 3), scale and
// shift (4, c), pooled (n, c), residual and y (n, 5c, h, w). residual may be null (no add).
// y is written exactly once per element. Work is split over the n * c input planes with OpenMP
// using `num_threads` threads (values below 1 run on one).
void forward_cpu(const Shape& shape, const float* x, const float* weight, const float* scale,
                 const float* shift, const float* pooled, const float* residual, float* y,
                 int num_threads);

}  // namespace fused_ddc
}  // namespace edgeseg
