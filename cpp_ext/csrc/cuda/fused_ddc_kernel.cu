// CUDA kernel of the fused DDC op (FP32 and FP16, FP32 accumulation), and its plain launcher.
//
// Compiles without torch: it is linked into both the PyTorch extension and the TensorRT plugin.
//
// Work split: one thread block computes a kTileH x kTileW tile of one input plane (n, c) for all five
// branches. The block first copies the input tile plus a halo of max(dilation) on each side into
// shared memory, zero-filling what falls outside the plane (that is the conv's zero padding), so
// every input element is read from global memory once per block and the nine-tap loops need no
// bounds checks. Each thread then produces its pixels' five outputs; for a fixed branch the threads
// of a warp write consecutive addresses of one output plane (coalesced NCHW), directly at the
// shuffled channel c * 5 + b, with the residual read once alongside.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "edgeseg/fused_ddc_index.h"
#include "edgeseg/fused_ddc_launch.h"

namespace edgeseg {
namespace fused_ddc {
namespace {

constexpr int kTileW = 64;    // output columns per block
constexpr int kTileH = 16;    // output rows per block
constexpr int kThreadsX = 32;  // one warp across W: coalesced loads and stores
constexpr int kThreadsY = 8;
constexpr int kMaxGridY = 65535;
constexpr size_t kDefaultSharedLimit = 48 * 1024;  // above this a kernel must opt in

template <typename T>
__device__ __forceinline__ float load(const T* p) { return static_cast<float>(*p); }
template <>
__device__ __forceinline__ float load<__half>(const __half* p) { return __half2float(*p); }

template <typename T>
__device__ __forceinline__ void store(T* p, float v) { *p = static_cast<T>(v); }
template <>
__device__ __forceinline__ void store<__half>(__half* p, float v) { *p = __float2half_rn(v); }

template <typename T, bool kResidual>
__global__ void __launch_bounds__(kThreadsX * kThreadsY)
    fused_ddc_kernel(Shape s, int halo, const T* __restrict__ x, const T* __restrict__ weight,
                     const T* __restrict__ scale, const T* __restrict__ shift, const T* __restrict__ pooled,
                     const T* __restrict__ residual, T* __restrict__ y) {
    extern __shared__ float tile[];
    const int tile_w = kTileW + 2 * halo;
    const int tile_h = kTileH + 2 * halo;
    const int tiles_w = (s.w + kTileW - 1) / kTileW;
    const int oh0 = static_cast<int>(blockIdx.x / tiles_w) * kTileH;
    const int ow0 = static_cast<int>(blockIdx.x % tiles_w) * kTileW;
    const int64_t plane_size = static_cast<int64_t>(s.h) * s.w;
    const int64_t out_channels = kBranches * s.c;

    // Grid-stride over planes: gridDim.y is capped at 65535, N * C is not.
    for (int64_t p = blockIdx.y; p < s.n * s.c; p += gridDim.y) {
        const int64_t n = p / s.c;
        const int64_t c = p % s.c;
        const T* plane = x + p * plane_size;

        __syncthreads();  // the previous plane's tile is no longer read
        for (int i = threadIdx.y; i < tile_h; i += blockDim.y) {
            const int ih = oh0 - halo + i;
            const bool row_ok = in_range(ih, s.h);
            for (int j = threadIdx.x; j < tile_w; j += blockDim.x) {
                const int iw = ow0 - halo + j;
                tile[i * tile_w + j] =
                    row_ok && in_range(iw, s.w) ? load(plane + static_cast<int64_t>(ih) * s.w + iw) : 0.0f;
            }
        }
        __syncthreads();

        float k[kConvBranches][kTaps * kTaps];
        float a[kConvBranches];
        float b[kConvBranches];
#pragma unroll
        for (int br = 0; br < kConvBranches; ++br) {
#pragma unroll
            for (int t = 0; t < kTaps * kTaps; ++t) k[br][t] = load(weight + weight_offset(br, c, s.c) + t);
            a[br] = load(scale + vector_offset(br, c, s.c));
            b[br] = load(shift + vector_offset(br, c, s.c));
        }
        const float pooled_value = load(pooled + vector_offset(n, c, s.c));

        for (int ty = threadIdx.y; ty < kTileH && oh0 + ty < s.h; ty += blockDim.y) {
            for (int tx = threadIdx.x; tx < kTileW && ow0 + tx < s.w; tx += blockDim.x) {
                const int64_t pixel = static_cast<int64_t>(oh0 + ty) * s.w + (ow0 + tx);
#pragma unroll
                for (int br = 0; br < kBranches; ++br) {
                    float v = pooled_value;
                    if (br < kConvBranches) {
                        const int d = s.dilation[br];
                        float acc = 0.0f;
#pragma unroll
                        for (int ky = 0; ky < kTaps; ++ky) {
                            const float* row = tile + tap_index(ty + halo, ky, d) * tile_w;
#pragma unroll
                            for (int kx = 0; kx < kTaps; ++kx) acc += k[br][ky * kTaps + kx] * row[tap_index(tx + halo, kx, d)];
                        }
                        v = fmaxf(acc * a[br] + b[br], 0.0f);
                    }
                    const int64_t off = plane_offset(n, shuffled_channel(c, br), out_channels, plane_size) + pixel;
                    if (kResidual) v += load(residual + off);
                    store(y + off, v);
                }
            }
        }
    }
}

template <typename T>
cudaError_t launch_typed(const Shape& s, const T* x, const T* weight, const T* scale, const T* shift,
                         const T* pooled, const T* residual, T* y, cudaStream_t stream) {
    if (s.n * s.c == 0 || s.h == 0 || s.w == 0) return cudaSuccess;
    const int halo = max_dilation(s.dilation);
    const size_t smem = shared_memory_bytes(s);
    auto kernel = residual != nullptr ? fused_ddc_kernel<T, true> : fused_ddc_kernel<T, false>;
    if (smem > kDefaultSharedLimit) {
        // Large dilations: opt in to more than 48 KiB; fails cleanly past the device's maximum.
        const cudaError_t err =
            cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
        if (err != cudaSuccess) return err;
    }
    const int64_t tiles = static_cast<int64_t>((s.h + kTileH - 1) / kTileH) * ((s.w + kTileW - 1) / kTileW);
    const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(std::min<int64_t>(s.n * s.c, kMaxGridY)));
    const dim3 block(kThreadsX, kThreadsY);
    kernel<<<grid, block, smem, stream>>>(s, halo, x, weight, scale, shift, pooled, residual, y);
    return cudaGetLastError();
}

}  // namespace

size_t shared_memory_bytes(const Shape& shape) {
    const int halo = max_dilation(shape.dilation);
    return static_cast<size_t>(kTileH + 2 * halo) * (kTileW + 2 * halo) * sizeof(float);
}

cudaError_t launch_forward_cuda(const Shape& shape, DType dtype, const void* x, const void* weight,
                                const void* scale, const void* shift, const void* pooled,
                                const void* residual, void* y, cudaStream_t stream) {
    switch (dtype) {
        case DType::kFloat32:
            return launch_typed(shape, static_cast<const float*>(x), static_cast<const float*>(weight),
                                static_cast<const float*>(scale), static_cast<const float*>(shift),
                                static_cast<const float*>(pooled), static_cast<const float*>(residual),
                                static_cast<float*>(y), stream);
        case DType::kFloat16:
            return launch_typed(shape, static_cast<const __half*>(x), static_cast<const __half*>(weight),
                                static_cast<const __half*>(scale), static_cast<const __half*>(shift),
                                static_cast<const __half*>(pooled), static_cast<const __half*>(residual),
                                static_cast<__half*>(y), stream);
    }
    return cudaErrorInvalidValue;
}

}  // namespace fused_ddc
}  // namespace edgeseg
