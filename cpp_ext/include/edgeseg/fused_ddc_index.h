// Index math of the fused DDC op (DESIGN.md section 4), shared by the CPU and the CUDA kernel.
//
// Everything here is a small inline function usable from host and device code, so the CPU tests
// exercise exactly the tap / padding / shuffle arithmetic that the GPU kernel runs. The header
// needs no CUDA: EDGESEG_HD expands to plain `inline` when a host compiler (g++) reads it.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define EDGESEG_HD __host__ __device__ __forceinline__
#else
#define EDGESEG_HD inline
#endif

namespace edgeseg {
namespace fused_ddc {

// Four depthwise 3x3 conv branches plus the pooled branch; the pooled branch makes the output
// channel count 5 * C and the channel shuffle use 5 groups.
constexpr int kConvBranches = 4;
constexpr int kBranches = kConvBranches + 1;
constexpr int kPoolBranch = kConvBranches;
constexpr int kTaps = 3;  // kernel size of each depthwise conv (3x3)

// Problem size: x is (n, c, h, w), y and the residual are (n, kBranches * c, h, w).
struct Shape {
    int64_t n;
    int64_t c;
    int h;
    int w;
    int dilation[kConvBranches];
};

// Input coordinate read by tap k (0, 1, 2) for output coordinate o. padding == dilation keeps
// the output the size of the input, so tap 1 is the output position itself.
EDGESEG_HD int tap_index(int o, int k, int dilation) { return o + (k - 1) * dilation; }

// Zero padding: a tap outside [0, size) contributes nothing. One unsigned compare covers both
// ends (a negative index wraps to a huge unsigned value).
EDGESEG_HD bool in_range(int i, int size) { return static_cast<unsigned>(i) < static_cast<unsigned>(size); }

// Output columns [lo, hi) whose three taps all fall inside [0, size): the branch-free interior.
// With size <= 2 * dilation the interior is empty (lo == hi) and every column is a border.
EDGESEG_HD void interior_range(int size, int dilation, int& lo, int& hi) {
    lo = dilation < size ? dilation : size;
    hi = size - dilation > lo ? size - dilation : lo;
}

// Channel shuffle with kBranches groups applied to concat(branch_0 .. branch_4):
// view(N, 5, C, H, W).transpose(1, 2) puts channel c of branch b at output channel c * 5 + b.
EDGESEG_HD int64_t shuffled_channel(int64_t c, int branch) { return c * kBranches + branch; }

// Offset of plane (n, channel) in a contiguous NCHW tensor with `channels` channels.
EDGESEG_HD int64_t plane_offset(int64_t n, int64_t channel, int64_t channels, int64_t plane_size) {
    return (n * channels + channel) * plane_size;
}

// Offset of the 3x3 kernel of (branch, c) in the (4, C, 3, 3) weight tensor.
EDGESEG_HD int64_t weight_offset(int branch, int64_t c, int64_t channels) {
    return (branch * channels + c) * (kTaps * kTaps);
}

// Offset of (branch, c) in the (4, C) scale / shift tensors and of (n, c) in the (N, C) pooled one.
EDGESEG_HD int64_t vector_offset(int64_t row, int64_t c, int64_t channels) { return row * channels + c; }

// Largest of the four dilations: the halo a tile needs on each side.
EDGESEG_HD int max_dilation(const int* dilation) {
    int m = dilation[0];
    for (int b = 1; b < kConvBranches; ++b) m = dilation[b] > m ? dilation[b] : m;
    return m;
}

}  // namespace fused_ddc
}  // namespace edgeseg
