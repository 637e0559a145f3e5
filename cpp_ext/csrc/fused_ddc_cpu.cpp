// CPU kernel of the fused DDC op: one pass over each input plane, every output element written once.
//
// Parallelism: OpenMP over the n * c input planes (each plane feeds five output planes that no other
// plane touches, so threads never share an output). Vectorisation: each output row is split into
// the padded borders, where taps are checked one by one, and the interior, where all nine taps are
// in range and the loop body is branch-free, so the compiler vectorises it over W.
#include <algorithm>
#include <cstdint>

#include "edgeseg/fused_ddc_cpu.h"

namespace edgeseg {
namespace fused_ddc {
namespace {

// The three input rows one output row reads, with the kernel rows that go with them. A row that
// falls in the zero padding is replaced by the output's own row with zero weights: the interior
// loop then needs no row check, and it reads only elements the centre row reads anyway.
struct RowTaps {
    const float* row[kTaps];
    float k[kTaps][kTaps];
};

inline RowTaps row_taps(const float* plane, const float* kernel, int oh, int h, int w, int dilation) {
    RowTaps t;
    for (int ky = 0; ky < kTaps; ++ky) {
        const int ih = tap_index(oh, ky, dilation);
        const bool valid = in_range(ih, h);
        t.row[ky] = plane + static_cast<int64_t>(valid ? ih : oh) * w;
        for (int kx = 0; kx < kTaps; ++kx) t.k[ky][kx] = valid ? kernel[ky * kTaps + kx] : 0.0f;
    }
    return t;
}

// One border column: taps checked against the zero padding individually.
inline float border_acc(const RowTaps& t, int ow, int w, int dilation) {
    float acc = 0.0f;
    for (int kx = 0; kx < kTaps; ++kx) {
        const int iw = tap_index(ow, kx, dilation);
        if (!in_range(iw, w)) continue;
        for (int ky = 0; ky < kTaps; ++ky) acc += t.k[ky][kx] * t.row[ky][iw];
    }
    return acc;
}

// One conv branch of one plane: writes relu(scale * dwconv + shift) (+ residual) into out.
template <bool kResidual>
void conv_branch_plane(const float* plane, const float* kernel, float scale, float shift, int dilation,
                       int h, int w, const float* residual, float* out) {
    int lo = 0;
    int hi = 0;
    interior_range(w, dilation, lo, hi);
    for (int oh = 0; oh < h; ++oh) {
        const RowTaps t = row_taps(plane, kernel, oh, h, w, dilation);
        const int64_t row = static_cast<int64_t>(oh) * w;
        float* y = out + row;
        const float* r = kResidual ? residual + row : nullptr;
        auto finish = [&](int ow, float acc) {
            const float v = std::max(acc * scale + shift, 0.0f);
            y[ow] = kResidual ? v + r[ow] : v;
        };
        for (int ow = 0; ow < lo; ++ow) finish(ow, border_acc(t, ow, w, dilation));
        // Local copies: the compiler cannot prove that y does not alias the struct members.
        const float* r0 = t.row[0];
        const float* r1 = t.row[1];
        const float* r2 = t.row[2];
        const float k00 = t.k[0][0], k01 = t.k[0][1], k02 = t.k[0][2];
        const float k10 = t.k[1][0], k11 = t.k[1][1], k12 = t.k[1][2];
        const float k20 = t.k[2][0], k21 = t.k[2][1], k22 = t.k[2][2];
        const int d = dilation;
#pragma omp simd
        for (int ow = lo; ow < hi; ++ow) {
            const float acc = k00 * r0[ow - d] + k01 * r0[ow] + k02 * r0[ow + d]
                            + k10 * r1[ow - d] + k11 * r1[ow] + k12 * r1[ow + d]
                            + k20 * r2[ow - d] + k21 * r2[ow] + k22 * r2[ow + d];
            const float v = std::max(acc * scale + shift, 0.0f);
            y[ow] = kResidual ? v + r[ow] : v;
        }
        for (int ow = hi; ow < w; ++ow) finish(ow, border_acc(t, ow, w, dilation));
    }
}

// The pooled branch: one value broadcast over the plane (+ residual).
template <bool kResidual>
void pool_branch_plane(float value, int64_t plane_size, const float* residual, float* out) {
#pragma omp simd
    for (int64_t i = 0; i < plane_size; ++i) out[i] = kResidual ? value + residual[i] : value;
}

template <bool kResidual>
void forward_impl(const Shape& s, const float* x, const float* weight, const float* scale, const float* shift,
                  const float* pooled, const float* residual, float* y, int num_threads) {
    const int64_t plane_size = static_cast<int64_t>(s.h) * s.w;
    const int64_t out_channels = kBranches * s.c;
    const int64_t planes = s.n * s.c;
    const int threads = num_threads > 0 ? num_threads : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t p = 0; p < planes; ++p) {
        const int64_t n = p / s.c;
        const int64_t c = p % s.c;
        const float* plane = x + p * plane_size;
        for (int b = 0; b < kConvBranches; ++b) {
            const int64_t off = plane_offset(n, shuffled_channel(c, b), out_channels, plane_size);
            const int64_t v = vector_offset(b, c, s.c);
            conv_branch_plane<kResidual>(plane, weight + weight_offset(b, c, s.c), scale[v], shift[v],
                                         s.dilation[b], s.h, s.w, kResidual ? residual + off : nullptr, y + off);
        }
        const int64_t off = plane_offset(n, shuffled_channel(c, kPoolBranch), out_channels, plane_size);
        pool_branch_plane<kResidual>(pooled[vector_offset(n, c, s.c)], plane_size,
                                     kResidual ? residual + off : nullptr, y + off);
    }
}

}  // namespace

void forward_cpu(const Shape& shape, const float* x, const float* weight, const float* scale,
                 const float* shift, const float* pooled, const float* residual, float* y,
                 int num_threads) {
    if (residual != nullptr) {
        forward_impl<true>(shape, x, weight, scale, shift, pooled, residual, y, num_threads);
    } else {
        forward_impl<false>(shape, x, weight, scale, shift, pooled, residual, y, num_threads);
    }
}

}  // namespace fused_ddc
}  // namespace edgeseg
