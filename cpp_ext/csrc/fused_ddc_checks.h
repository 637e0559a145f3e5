// Argument checks of torch.ops.edgeseg.fused_ddc, shared by its CPU and CUDA implementations.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>

#include <limits>

#include "edgeseg/fused_ddc_index.h"

namespace edgeseg {
namespace fused_ddc {

// Validates shapes / dtypes / devices of the op's arguments and returns the problem size.
// User mistakes raise through TORCH_CHECK (a Python RuntimeError naming the bad argument).
inline Shape check_args(const at::Tensor& x, const at::Tensor& weight, c10::IntArrayRef dilations,
                        const at::Tensor& scale, const at::Tensor& shift, const at::Tensor& pooled,
                        const std::optional<at::Tensor>& residual) {
    TORCH_CHECK(x.dim() == 4, "fused_ddc: x must be (N, C, H, W), got shape ", x.sizes());
    const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
    TORCH_CHECK(h <= std::numeric_limits<int>::max() / 2 && w <= std::numeric_limits<int>::max() / 2,
                "fused_ddc: H and W must fit in int32, got ", x.sizes());
    TORCH_CHECK(weight.sizes() == c10::IntArrayRef({kConvBranches, c, kTaps, kTaps}),
                "fused_ddc: weight must be (4, C, 3, 3) = (4, ", c, ", 3, 3), got ", weight.sizes());
    TORCH_CHECK(dilations.size() == kConvBranches, "fused_ddc: expected 4 dilations, got ", dilations.size());
    TORCH_CHECK(scale.sizes() == c10::IntArrayRef({kConvBranches, c}),
                "fused_ddc: scale must be (4, C) = (4, ", c, "), got ", scale.sizes());
    TORCH_CHECK(shift.sizes() == c10::IntArrayRef({kConvBranches, c}),
                "fused_ddc: shift must be (4, C) = (4, ", c, "), got ", shift.sizes());
    TORCH_CHECK(pooled.sizes() == c10::IntArrayRef({n, c}),
                "fused_ddc: pooled must be (N, C) = (", n, ", ", c, "), got ", pooled.sizes());
    if (residual.has_value()) {
        TORCH_CHECK(residual->sizes() == c10::IntArrayRef({n, kBranches * c, h, w}),
                    "fused_ddc: residual must be (N, 5C, H, W) = (", n, ", ", kBranches * c, ", ", h, ", ", w,
                    "), got ", residual->sizes());
    }
    for (const at::Tensor* t : {&weight, &scale, &shift, &pooled}) {
        TORCH_CHECK(t->scalar_type() == x.scalar_type() && t->device() == x.device(),
                    "fused_ddc: all tensors must share x's dtype and device (", x.scalar_type(), ", ",
                    x.device(), "), got ", t->scalar_type(), ", ", t->device());
    }
    if (residual.has_value()) {
        TORCH_CHECK(residual->scalar_type() == x.scalar_type() && residual->device() == x.device(),
                    "fused_ddc: residual must share x's dtype and device");
    }
    Shape s{n, c, static_cast<int>(h), static_cast<int>(w), {0, 0, 0, 0}};
    for (int b = 0; b < kConvBranches; ++b) {
        TORCH_CHECK(dilations[b] >= 1 && dilations[b] <= 1024, "fused_ddc: dilations must be in [1, 1024], got ",
                    dilations);
        s.dilation[b] = static_cast<int>(dilations[b]);
    }
    return s;
}

}  // namespace fused_ddc
}  // namespace edgeseg
