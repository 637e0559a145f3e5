// CUDA kernel of the fused DDC op (FP32 and FP16, FP32 accumulation), and its plain launcher.
//
// Compiles without torch: it is linked into both the PyTorch extension and the TensorRT plugin.
//
// Work split: one thread block computes a tile of one input plane (n, c) for all five branches. The
// block first copies the input tile plus a halo of max(dilation) on each side into shared memory,
// zero-filling what falls outside the plane (the conv's zero padding), so every input element is
// read from global memory once per block (in 16-byte groups where possible) and the nine-tap loops
// need no bounds checks. Each thread
// then owns a few groups of kVec adjacent pixels and writes them branch by branch, directly at
// the shuffled channel c * 5 + b, with the residual read alongside.
//
// Why it is shaped this way (measured on an H200, docs/gpu-validation.md): the op moves 11 planes
// per input plane and computes little, so it lives on memory-level parallelism. Branch-outer loops
// keep the live registers low (one branch's nine weights at a time) for more resident blocks, and
// the unrolled pixel loop issues all of a thread's residual loads together. Where W allows, each
// group is 16 bytes (4 floats, 8 halves) moved as one access, which multiplies the bytes in flight
// per thread: at one element per access the first version reached 40 % (FP32) and 25 % (FP16) of
// copy bandwidth. Shared
// memory stores the tile with its columns de-interleaved by their residue mod kVec, so that when
// thread t reads column kVec * t + o the warp reads consecutive words: no bank conflicts.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "edgeseg/fused_ddc_index.h"
#include "edgeseg/fused_ddc_launch.h"

namespace edgeseg {
namespace fused_ddc {
namespace {

constexpr int kThreadsX = 32;  // one warp across W: coalesced loads and stores
constexpr int kThreadsY = 8;
constexpr int kRowIters = 2;   // rows per thread: the tile is kThreadsY * kRowIters rows high
constexpr int kTileH = kThreadsY * kRowIters;
constexpr int kMinBlocksPerSM = 4;  // caps registers at 64 per thread
constexpr int kMaxGridY = 65535;
constexpr size_t kDefaultSharedLimit = 48 * 1024;  // above this a kernel must opt in

// Pixel groups per thread along W: one-pixel groups take two, so that a tile is 64 columns wide.
template <int kVec>
constexpr int kColIters = kVec == 1 ? 2 : 1;
template <int kVec>
constexpr int kTileW = kThreadsX * kVec * kColIters<kVec>;  // output columns per block
// The 16-byte path's group width.
template <typename T>
constexpr int kWide = static_cast<int>(sizeof(uint4) / sizeof(T));

template <typename T>
__device__ __forceinline__ float to_float(T v) { return static_cast<float>(v); }
template <>
__device__ __forceinline__ float to_float<__half>(__half v) { return __half2float(v); }

template <typename T>
__device__ __forceinline__ float load(const T* p) { return to_float(*p); }

// kVec adjacent elements moved as one access: 16 bytes (float4 / eight halves), or one element.
template <typename T, int kVec>
struct Pack {
    static_assert(kVec * sizeof(T) == sizeof(uint4), "a wide access is 16 bytes");
    __device__ __forceinline__ static void load(const T* p, float* v) {
        const uint4 raw = *reinterpret_cast<const uint4*>(p);
        const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            if constexpr (sizeof(T) == 4) {
                v[i] = __uint_as_float(words[i]);
            } else {
                __half2 h;
                memcpy(&h, &words[i], sizeof(h));
                const float2 f = __half22float2(h);
                v[2 * i] = f.x;
                v[2 * i + 1] = f.y;
            }
        }
    }
    __device__ __forceinline__ static void store(T* p, const float* v) {
        uint32_t words[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            if constexpr (sizeof(T) == 4) {
                words[i] = __float_as_uint(v[i]);
            } else {
                const __half2 h = __floats2half2_rn(v[2 * i], v[2 * i + 1]);
                memcpy(&words[i], &h, sizeof(h));
            }
        }
        *reinterpret_cast<uint4*>(p) = make_uint4(words[0], words[1], words[2], words[3]);
    }
};
template <typename T>
struct Pack<T, 1> {
    __device__ __forceinline__ static void load(const T* p, float* v) { v[0] = to_float(*p); }
    __device__ __forceinline__ static void store(T* p, const float* v) { *p = static_cast<T>(v[0]); }
};
template <>
struct Pack<__half, 1> {
    __device__ __forceinline__ static void load(const __half* p, float* v) { v[0] = __half2float(*p); }
    __device__ __forceinline__ static void store(__half* p, const float* v) { *p = __float2half_rn(v[0]); }
};

// Columns of margin left and right of a tile: the halo rounded up to whole groups, so that the
// tile's rows load as whole 16-byte groups too.
__host__ __device__ constexpr int column_margin(int halo, int vec) { return (halo + vec - 1) / vec * vec; }

template <typename T, bool kResidual, int kVec>
__global__ void __launch_bounds__(kThreadsX * kThreadsY, kMinBlocksPerSM)
    fused_ddc_kernel(Shape s, int halo, const T* __restrict__ x, const T* __restrict__ weight,
                     const T* __restrict__ scale, const T* __restrict__ shift, const T* __restrict__ pooled,
                     const T* __restrict__ residual, T* __restrict__ y) {
    extern __shared__ float tile[];
    const int margin = column_margin(halo, kVec);
    const int tile_w = kTileW<kVec> + 2 * margin;  // a multiple of kVec
    const int tile_h = kTileH + 2 * halo;
    const int part = tile_w / kVec;  // words per residue class of a row (see the file comment)
    const int tiles_w = (s.w + kTileW<kVec> - 1) / kTileW<kVec>;
    const int oh0 = static_cast<int>(blockIdx.x / tiles_w) * kTileH;
    const int ow0 = static_cast<int>(blockIdx.x % tiles_w) * kTileW<kVec>;
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
            for (int q = threadIdx.x; q < part; q += blockDim.x) {
                // Group q of the row: columns iw .. iw + kVec - 1, wholly inside or outside the plane
                // (W and iw are multiples of kVec); element e is tile column kVec * q + e.
                const int iw = ow0 - margin + kVec * q;
                float v[kVec];
                if (row_ok && in_range(iw, s.w)) {
                    Pack<T, kVec>::load(plane + static_cast<int64_t>(ih) * s.w + iw, v);
                } else {
#pragma unroll
                    for (int e = 0; e < kVec; ++e) v[e] = 0.0f;
                }
#pragma unroll
                for (int e = 0; e < kVec; ++e) tile[i * tile_w + e * part + q] = v[e];
            }
        }
        __syncthreads();

        // This thread's pixel groups: rows oh0 + ty + kThreadsY * r, columns ow0 + kVec * (tx + 32 k).
        bool active[kRowIters][kColIters<kVec>];
        int64_t pixel[kRowIters][kColIters<kVec>];
#pragma unroll
        for (int r = 0; r < kRowIters; ++r) {
#pragma unroll
            for (int k = 0; k < kColIters<kVec>; ++k) {
                const int oh = oh0 + threadIdx.y + kThreadsY * r;
                const int ow = ow0 + kVec * (threadIdx.x + kThreadsX * k);
                // With kVec > 1 the launcher made W a multiple of kVec: a group is wholly in or out.
                active[r][k] = oh < s.h && ow < s.w;
                pixel[r][k] = static_cast<int64_t>(oh) * s.w + ow;
            }
        }

#pragma unroll 1
        for (int br = 0; br < kBranches; ++br) {
            T* out = y + plane_offset(n, shuffled_channel(c, br), out_channels, plane_size);
            const T* res = kResidual ? residual + plane_offset(n, shuffled_channel(c, br), out_channels, plane_size)
                                     : nullptr;
            float k9[kTaps * kTaps];
            float a = 0.0f, b = 0.0f;
            int d = 0;
            const bool conv = br < kConvBranches;
            if (conv) {
#pragma unroll
                for (int t = 0; t < kTaps * kTaps; ++t) k9[t] = load(weight + weight_offset(br, c, s.c) + t);
                a = load(scale + vector_offset(br, c, s.c));
                b = load(shift + vector_offset(br, c, s.c));
                d = br == 0 ? s.dilation[0] : br == 1 ? s.dilation[1] : br == 2 ? s.dilation[2] : s.dilation[3];
            }
            const float pooled_value = conv ? 0.0f : load(pooled + vector_offset(n, c, s.c));

            float r_in[kRowIters][kColIters<kVec>][kVec];
            if (kResidual) {  // all of this thread's residual loads at once
#pragma unroll
                for (int r = 0; r < kRowIters; ++r)
#pragma unroll
                    for (int k = 0; k < kColIters<kVec>; ++k)
                        if (active[r][k]) Pack<T, kVec>::load(res + pixel[r][k], r_in[r][k]);
            }
#pragma unroll
            for (int r = 0; r < kRowIters; ++r) {
#pragma unroll
                for (int k = 0; k < kColIters<kVec>; ++k) {
                    if (!active[r][k]) continue;
                    float v[kVec];
#pragma unroll
                    for (int e = 0; e < kVec; ++e) v[e] = pooled_value;
                    if (conv) {
                        const int ty = threadIdx.y + kThreadsY * r + halo;
#pragma unroll
                        for (int e = 0; e < kVec; ++e) {
                            // Tile column of this pixel's centre tap: margin + kVec * (tx + 32 k) + e.
                            float acc = 0.0f;
#pragma unroll
                            for (int ky = 0; ky < kTaps; ++ky) {
                                const float* row = tile + tap_index(ty, ky, d) * tile_w;
#pragma unroll
                                for (int kx = 0; kx < kTaps; ++kx) {
                                    const int o = margin + e + (kx - 1) * d;  // >= 0: margin >= d
                                    acc += k9[ky * kTaps + kx] *
                                           row[(o % kVec) * part + o / kVec + threadIdx.x + kThreadsX * k];
                                }
                            }
                            v[e] = fmaxf(acc * a + b, 0.0f);
                        }
                    }
                    if (kResidual) {
#pragma unroll
                        for (int e = 0; e < kVec; ++e) v[e] += r_in[r][k][e];
                    }
                    Pack<T, kVec>::store(out + pixel[r][k], v);
                }
            }
        }
    }
}

// The 16-byte path needs W to be a multiple of the group, 16-byte aligned tensors, and planes at
// least half a tile wide (narrower ones would leave most threads idle): else one pixel per group.
template <typename T>
bool wide_fits(const Shape& s, const void* const* tensors, int count) {
    constexpr int kVec = kWide<T>;
    if (s.w % kVec != 0 || s.w < kTileW<kVec> / 2) return false;
    for (int i = 0; i < count; ++i) {
        if (tensors[i] != nullptr && reinterpret_cast<uintptr_t>(tensors[i]) % sizeof(uint4) != 0) return false;
    }
    return true;
}

template <int kVec>
size_t shared_bytes(const Shape& s) {
    const int halo = max_dilation(s.dilation);
    const int tile_w = kTileW<kVec> + 2 * column_margin(halo, kVec);
    return static_cast<size_t>(kTileH + 2 * halo) * tile_w * sizeof(float);
}

template <typename T, int kVec>
cudaError_t launch_vec(const Shape& s, const T* x, const T* weight, const T* scale, const T* shift,
                       const T* pooled, const T* residual, T* y, cudaStream_t stream) {
    const int halo = max_dilation(s.dilation);
    const size_t smem = shared_bytes<kVec>(s);
    auto kernel = residual != nullptr ? fused_ddc_kernel<T, true, kVec> : fused_ddc_kernel<T, false, kVec>;
    if (smem > kDefaultSharedLimit) {
        // Large dilations: opt in to more than 48 KiB; fails cleanly past the device's maximum.
        const cudaError_t err =
            cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
        if (err != cudaSuccess) return err;
    }
    const int64_t tiles =
        static_cast<int64_t>((s.h + kTileH - 1) / kTileH) * ((s.w + kTileW<kVec> - 1) / kTileW<kVec>);
    const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(std::min<int64_t>(s.n * s.c, kMaxGridY)));
    const dim3 block(kThreadsX, kThreadsY);
    kernel<<<grid, block, smem, stream>>>(s, halo, x, weight, scale, shift, pooled, residual, y);
    return cudaGetLastError();
}

template <typename T>
cudaError_t launch_typed(const Shape& s, const T* x, const T* weight, const T* scale, const T* shift,
                         const T* pooled, const T* residual, T* y, cudaStream_t stream) {
    if (s.n * s.c == 0 || s.h == 0 || s.w == 0) return cudaSuccess;
    const void* moved[] = {x, residual, y};  // the tensors read or written per pixel
    if (wide_fits<T>(s, moved, 3)) {
        return launch_vec<T, kWide<T>>(s, x, weight, scale, shift, pooled, residual, y, stream);
    }
    return launch_vec<T, 1>(s, x, weight, scale, shift, pooled, residual, y, stream);
}

}  // namespace

size_t shared_memory_bytes(const Shape& shape) {
    // The largest tile any dtype uses (FP16's 16-byte groups): what a caller must be able to grant.
    return shared_bytes<kWide<__half>>(shape);
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
