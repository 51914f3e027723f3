/*
 * Fused outlook-attention core for VOLO: scale + softmax + weighted unfold + fold in one kernel.
 *
 * VOLO kernel (k=3, stride 2, pad 1, head dim 32, compile-time geometry; see the VOLO section of
 * outlookAttentionCommon.cuh): one block per (tile of 2x2-pixel cells, head, image) stages the v
 * region as FP32 and each softmax row of the tile once, then one thread per (cell, 4 channels)
 * computes its 4 pixels from registers (25 + 27 128-bit shared loads, 324 FMAs).
 *
 * Tiled kernel (other shapes): one block per (batch, output tile, head). It stages in shared memory
 *   P  the softmaxed attention (float) of every window covering the tile, and
 *   vs the v pixels read by those windows (stored type, zero outside the image),
 * then each thread gathers VEC channels of one output pixel over the covering windows with
 * float accumulation. No atomics, no intermediate in global memory. Threads are ordered by
 * pixel class (y mod s, x mod s), so the lanes of a warp follow the same window pattern.
 *
 * Generic kernel: one thread per output element, softmax recomputed on the fly. Used only when
 * the tiled kernel's shared memory does not fit (very large k or head dim).
 *
 * Index math lives in outlookAttentionCommon.cuh, shared with the host reference.
 */
#include "outlookAttentionCommon.cuh"
#include "outlookAttentionKernel.h"

#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace volo
{
namespace
{

constexpr int32_t kMAX_THREADS = 512;
constexpr int32_t kMAX_TILE_CELLS = 8;
constexpr int64_t kSMEM_BUDGET = 48 * 1024;
constexpr int32_t kGENERIC_THREADS = 256;
constexpr int32_t kVERSION = 10100; // 1.1.0: VOLO path
constexpr int32_t kVOLO_MAX_CELLS = kVoloMaxCells;
static_assert(kVoloRowPixels >= 2 * kVOLO_MAX_CELLS + 3, "a row of the v region is one unrolled step");
constexpr int64_t kVOLO_SMEM_BUDGET = kVoloSmemBudget;
constexpr int32_t kVOLO_MAX_THREADS = (kVOLO_MAX_CELLS * kVOLO_MAX_CELLS * kVoloLanes + 31) / 32 * 32; // 416

template <int32_t BYTES>
using Chunk = std::conditional_t<BYTES == 16, uint4,
    std::conditional_t<BYTES == 8, uint2, std::conditional_t<BYTES == 4, uint32_t, uint16_t>>>;

__device__ __forceinline__ float toFloat(float x)
{
    return x;
}

__device__ __forceinline__ float toFloat(__half x)
{
    return __half2float(x);
}

template <typename T>
__device__ __forceinline__ T fromFloat(float x);

template <>
__device__ __forceinline__ float fromFloat<float>(float x)
{
    return x;
}

template <>
__device__ __forceinline__ __half fromFloat<__half>(float x)
{
    return __float2half_rn(x);
}

//! Loads VEC consecutive values (aligned to VEC * sizeof(T)) and converts them to float.
template <typename T, int32_t VEC>
struct LoadVec
{
    __device__ __forceinline__ void operator()(T const* p, float (&o)[VEC]) const
    {
        using C = Chunk<VEC * static_cast<int32_t>(sizeof(T))>;
        C const c = *reinterpret_cast<C const*>(p);
        if constexpr (std::is_same_v<T, __half> && VEC % 2 == 0)
        {
            __half2 const* h2 = reinterpret_cast<__half2 const*>(&c);
#pragma unroll
            for (int32_t i = 0; i < VEC / 2; ++i)
            {
                float2 const f = __half22float2(h2[i]);
                o[2 * i] = f.x;
                o[2 * i + 1] = f.y;
            }
        }
        else
        {
            T const* e = reinterpret_cast<T const*>(&c);
#pragma unroll
            for (int32_t i = 0; i < VEC; ++i)
            {
                o[i] = toFloat(e[i]);
            }
        }
    }
};

template <typename T, int32_t VEC>
__device__ __forceinline__ void storeVec(T* p, float const (&a)[VEC])
{
    using C = Chunk<VEC * static_cast<int32_t>(sizeof(T))>;
    C c;
    if constexpr (std::is_same_v<T, __half> && VEC % 2 == 0)
    {
        __half2* h2 = reinterpret_cast<__half2*>(&c);
#pragma unroll
        for (int32_t i = 0; i < VEC / 2; ++i)
        {
            h2[i] = __floats2half2_rn(a[2 * i], a[2 * i + 1]);
        }
    }
    else
    {
        T* e = reinterpret_cast<T*>(&c);
#pragma unroll
        for (int32_t i = 0; i < VEC; ++i)
        {
            e[i] = fromFloat<T>(a[i]);
        }
    }
    *reinterpret_cast<C*>(p) = c;
}

template <typename T, int32_t VEC, int32_t KT>
__global__ void __launch_bounds__(kMAX_THREADS, 2) outlookTiledKernel(T const* __restrict__ v,
    T const* __restrict__ attn, T* __restrict__ out, OutlookShape const sh, TilePlan const plan)
{
    using C = Chunk<VEC * static_cast<int32_t>(sizeof(T))>;
    extern __shared__ __align__(16) unsigned char smem[];
    float* sP = reinterpret_cast<float*>(smem);
    T* sV = reinterpret_cast<T*>(smem + static_cast<size_t>(plan.pFloats) * sizeof(float));

    int32_t const tilesPerImage = plan.tilesY * plan.tilesX;
    int32_t const b = static_cast<int32_t>(blockIdx.x) / tilesPerImage;
    int32_t const tile = static_cast<int32_t>(blockIdx.x) - b * tilesPerImage;
    int32_t const head = static_cast<int32_t>(blockIdx.y);
    int32_t const s = sh.stride;
    int32_t const ty = plan.ci * s;
    int32_t const tx = plan.cj * s;
    int32_t const y0 = (tile / plan.tilesX) * ty;
    int32_t const x0 = (tile % plan.tilesX) * tx;
    TileGeom const g = makeTile(sh, y0, x0, ty, tx);
    int32_t const k = KT > 0 ? KT : sh.k;
    int32_t const kk = k * k;
    int32_t const tid = static_cast<int32_t>(threadIdx.x);
    int32_t const nThreads = static_cast<int32_t>(blockDim.x);

    // Stage the logits of the covering windows (one head) and the v region they read.
    // Unrolled so that several independent global loads are in flight per thread.
    int32_t const nLogits = g.nwy * g.nwx * kk * kk;
#pragma unroll 4
    for (int32_t e = tid; e < nLogits; e += nThreads)
    {
        sP[e] = toFloat(attn[logitIndex(sh, g, b, head, e)]);
    }
    int32_t const nv = sh.headDim / VEC;
    int32_t const nVec = g.rh * g.rw * nv;
#pragma unroll 4
    for (int32_t t = tid; t < nVec; t += nThreads)
    {
        int64_t const src = vRegionIndex(sh, g, b, head, VEC, t);
        C c{};
        if (src >= 0)
        {
            c = *reinterpret_cast<C const*>(v + src);
        }
        *reinterpret_cast<C*>(sV + static_cast<int64_t>(t) * VEC) = c;
    }
    __syncthreads();

    // Scaled softmax over the source positions of every (window, output position) row.
    int32_t const nRows = g.nwy * g.nwx * kk;
    for (int32_t r = tid; r < nRows; r += nThreads)
    {
        softmaxRow(sP + r * kk, kk, sh.scale);
    }
    __syncthreads();

    // Gather: each task = one output pixel, VEC channels of this head.
    int32_t const nTasks = ty * tx * nv;
    LoadVec<T, VEC> const loadVec;
    for (int32_t t = tid; t < nTasks; t += nThreads)
    {
        int32_t dy = 0;
        int32_t dx = 0;
        int32_t cv = 0;
        decodeTask(t, plan.ci, plan.cj, s, nv, dy, dx, cv);
        int32_t const y = y0 + dy;
        int32_t const x = x0 + dx;
        if (y >= sh.height || x >= sh.width)
        {
            continue;
        }
        float acc[VEC];
        accumulatePixel<VEC, KT>(sh, g, sP, sV, y, x, cv * VEC, acc, loadVec);
        int64_t const dst = ((static_cast<int64_t>(b) * sh.height + y) * sh.width + x) * sh.channels
            + static_cast<int64_t>(head) * sh.headDim + cv * VEC;
        storeVec<T, VEC>(out + dst, acc);
    }
}

template <typename T>
struct GlobalLoad
{
    T const* p;
    __device__ __forceinline__ float operator()(int64_t i) const
    {
        return toFloat(p[i]);
    }
};

//! Stores 4 channels with one 16-byte (FP32) or 8-byte (FP16) store.
template <typename T>
__device__ __forceinline__ void store4Out(T* p, float const (&a)[4])
{
    if constexpr (std::is_same_v<T, __half>)
    {
        __half2 const h0 = __floats2half2_rn(a[0], a[1]);
        __half2 const h1 = __floats2half2_rn(a[2], a[3]);
        *reinterpret_cast<uint2*>(p)
            = make_uint2(*reinterpret_cast<uint32_t const*>(&h0), *reinterpret_cast<uint32_t const*>(&h1));
    }
    else
    {
        *reinterpret_cast<float4*>(p) = make_float4(a[0], a[1], a[2], a[3]);
    }
}

//! Stages the v region of the tile (this head) into sV as FP32. Warp w takes region rows w, w + warps,
//! ...; lane = (column offset 0..3, 4-channel chunk 0..7): a quarter warp fills one pixel's 128
//! contiguous bytes (conflict-free). All columns of a row are unrolled (rows are padded to a multiple
//! of kVoloRowPixels in sV, so every store is unconditional) and their loads are in flight together.
template <typename T>
__device__ __forceinline__ void voloStageV(
    T const* __restrict__ vImg, OutlookShape const& sh, VoloPlan const& plan, int32_t y0, int32_t x0, float* sV)
{
    using C = Chunk<kVoloCg * static_cast<int32_t>(sizeof(T))>;
    VoloStageLane const l = voloStageLane(static_cast<int32_t>(threadIdx.x) & 31);
    int32_t const warps = static_cast<int32_t>(blockDim.x) >> 5;
    int32_t const steps = (plan.rw + 3) >> 2;
#pragma unroll 1
    for (int32_t ry = static_cast<int32_t>(threadIdx.x) >> 5; ry < plan.rh; ry += warps)
    {
        int32_t const rowOff = voloRowOffset(sh, y0, x0, ry);
        float* dst = sV + voloStageDst(plan, ry, l, 0);
        // Step k reads p + 4k pixels (never dereferenced outside the image).
        T const* p = vImg + ((rowOff < 0 ? 0 : rowOff) + voloStageSrc(sh, l, 0));
        int32_t const step = 4 * sh.channels;
        // Columns inside the image and the region: a bit per step, computed once per row.
        uint32_t inside = 0;
#pragma unroll
        for (int32_t k = 0; k < kVoloColSteps; ++k)
        {
            int32_t const gx = x0 - kVoloPad + l.col0 + 4 * k;
            inside |= (rowOff >= 0 && static_cast<uint32_t>(gx) < static_cast<uint32_t>(sh.width) && k < steps)
                ? (1U << k) : 0U;
        }
        // Unconditional loads (a step outside the image reads the image's first pixel instead), then
        // a select: no predicated address arithmetic per step.
        C raw[kVoloColSteps];
#pragma unroll
        for (int32_t k = 0; k < kVoloColSteps; ++k)
        {
            bool const in = (inside >> k) & 1U;
            raw[k] = __ldg(reinterpret_cast<C const*>(in ? p + k * step : vImg));
            raw[k] = in ? raw[k] : C{};
        }
#pragma unroll
        for (int32_t k = 0; k < kVoloColSteps; ++k)
        {
            float f[kVoloCg];
            LoadVec<T, kVoloCg>{}(reinterpret_cast<T const*>(&raw[k]), f);
            store4(dst + 4 * k * kVoloHeadDim, f);
        }
    }
}

//! VOLO path (k=3, s=2, pad=1, head dim 32): see outlookAttentionCommon.cuh. One block per
//! (tile, head, image): stage sV and the tile's softmax rows, one barrier, then each thread computes
//! 4 channels of the 4 pixels of one cell from registers and stores them.
template <typename T>
__global__ void __launch_bounds__(kVOLO_MAX_THREADS, 2) outlookVoloKernel(T const* __restrict__ v,
    T const* __restrict__ attn, T* __restrict__ out, OutlookShape const sh, VoloPlan const plan)
{
    extern __shared__ __align__(16) unsigned char smem[];
    float* sP = reinterpret_cast<float*>(smem);
    float* sV = sP + plan.pFloats;
    // grid (tiles per image, heads, batch): no integer division
    int32_t const head = static_cast<int32_t>(blockIdx.y);
    int32_t const b = static_cast<int32_t>(blockIdx.z);
    int32_t cy0 = 0;
    int32_t cx0 = 0;
    voloTileOrigin(plan, static_cast<int32_t>(blockIdx.x), cy0, cx0);
    int32_t const y0 = cy0 * kVoloStride;
    int32_t const x0 = cx0 * kVoloStride;
    int32_t const tid = static_cast<int32_t>(threadIdx.x);
    int32_t const nCells = plan.tcy * plan.tcx;

    voloStageV<T>(v + voloImageBase(sh, b, head), sh, plan, y0, x0, sV);
    GlobalLoad<T> const ldA{attn + voloAttnBase(sh, b, head)};
#pragma unroll 1
    for (int32_t slot = tid; slot < nCells * kVoloRows; slot += static_cast<int32_t>(blockDim.x))
    {
        voloStageRow(sh, plan, cy0, cx0, slot, ldA, sP);
    }
    __syncthreads();

    int32_t mL = 0;
    int32_t nL = 0;
    int32_t cg = 0;
    if (!voloThreadCell(plan, tid, mL, nL, cg))
    {
        return;
    }
    float acc[2][2][4];
    voloCellAccumulate(sP, sV, plan.rws, plan.tcx, mL, nL, cg, acc);
    int32_t const y = y0 + 2 * mL;
    int32_t const x = x0 + 2 * nL;
    T* o = out + voloImageBase(sh, b, head) + ((y * sh.width + x) * sh.channels + cg * kVoloCg);
#pragma unroll
    for (int32_t py = 0; py < 2; ++py)
    {
#pragma unroll
        for (int32_t px = 0; px < 2; ++px)
        {
            if (y + py < sh.height && x + px < sh.width)
            {
                store4Out<T>(o + (py * sh.width + px) * sh.channels, acc[py][px]);
            }
        }
    }
}

template <typename T>
__global__ void __launch_bounds__(kGENERIC_THREADS, 4) outlookGenericKernel(
    T const* __restrict__ v, T const* __restrict__ attn, T* __restrict__ out, OutlookShape const sh, int64_t total)
{
    GlobalLoad<T> const ldV{v};
    GlobalLoad<T> const ldA{attn};
    for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
         idx += static_cast<int64_t>(gridDim.x) * blockDim.x)
    {
        int32_t const c = static_cast<int32_t>(idx % sh.channels);
        int64_t const pix = idx / sh.channels;
        int32_t const x = static_cast<int32_t>(pix % sh.width);
        int32_t const y = static_cast<int32_t>((pix / sh.width) % sh.height);
        int32_t const b = static_cast<int32_t>(pix / (static_cast<int64_t>(sh.width) * sh.height));
        out[idx] = fromFloat<T>(outlookElementDirect(sh, b, y, x, c, ldV, ldA));
    }
}

bool aligned(void const* p, int32_t bytes)
{
    return reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) == 0;
}

template <typename T, int32_t VEC>
cudaError_t launchTiledK(void const* v, void const* attn, void* out, OutlookShape const& sh, TilePlan const& plan,
    cudaStream_t stream)
{
    int64_t const nBlocks = static_cast<int64_t>(sh.batch) * plan.tilesY * plan.tilesX;
    if (nBlocks > std::numeric_limits<int32_t>::max() || sh.heads > 65535)
    {
        return cudaErrorInvalidValue;
    }
    int32_t const tasks = plan.ci * plan.cj * sh.stride * sh.stride * (sh.headDim / VEC);
    int32_t const rounds = (tasks + kMAX_THREADS - 1) / kMAX_THREADS;
    int32_t threads = (tasks + rounds - 1) / rounds;
    threads = (threads + 31) / 32 * 32;
    threads = threads < 64 ? 64 : threads;
    dim3 const grid(static_cast<uint32_t>(nBlocks), static_cast<uint32_t>(sh.heads), 1);
    auto const* vt = static_cast<T const*>(v);
    auto const* at = static_cast<T const*>(attn);
    auto* ot = static_cast<T*>(out);
    size_t const smem = static_cast<size_t>(plan.smemBytes);
    if (sh.k == 3)
    {
        outlookTiledKernel<T, VEC, 3><<<grid, threads, smem, stream>>>(vt, at, ot, sh, plan);
    }
    else
    {
        outlookTiledKernel<T, VEC, 0><<<grid, threads, smem, stream>>>(vt, at, ot, sh, plan);
    }
    return cudaGetLastError();
}

template <typename T>
cudaError_t launchVolo(void const* v, void const* attn, void* out, OutlookShape const& sh, VoloPlan const& plan,
    cudaStream_t stream)
{
    size_t const smem = static_cast<size_t>(plan.smemBytes);
    if (smem > 48 * 1024)
    {
        cudaError_t const st
            = cudaFuncSetAttribute(outlookVoloKernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
        if (st != cudaSuccess)
        {
            return st;
        }
    }
    dim3 const grid(static_cast<uint32_t>(plan.tilesY * plan.tilesX), static_cast<uint32_t>(sh.heads),
        static_cast<uint32_t>(sh.batch));
    outlookVoloKernel<T><<<grid, plan.threads, smem, stream>>>(
        static_cast<T const*>(v), static_cast<T const*>(attn), static_cast<T*>(out), sh, plan);
    return cudaGetLastError();
}

template <typename T>
cudaError_t launchTyped(
    void const* v, void const* attn, void* out, OutlookShape const& sh, int64_t total, cudaStream_t stream)
{
    int32_t const elem = static_cast<int32_t>(sizeof(T));
    if (voloPathApplies(sh) && aligned(v, 16) && aligned(out, kVoloCg * elem))
    {
        VoloPlan const vplan = planVolo(sh, kVOLO_MAX_CELLS, kVOLO_SMEM_BUDGET);
        if (vplan.smemBytes > 0 && voloGridFits(sh, vplan))
        {
            return launchVolo<T>(v, attn, out, sh, vplan, stream);
        }
    }
    TilePlan const plan = planTiles(sh, elem, kSMEM_BUDGET, kMAX_TILE_CELLS);
    if (plan.smemBytes > 0)
    {
        // Widest channel vector that divides the head dim and keeps every access aligned.
        for (int32_t vec : {16 / elem, 8 / elem, 4 / elem, 2 / elem})
        {
            if (vec < 1 || sh.headDim % vec != 0 || !aligned(v, vec * elem) || !aligned(out, vec * elem))
            {
                continue;
            }
            switch (vec * elem)
            {
            case 16: return launchTiledK<T, 16 / sizeof(T)>(v, attn, out, sh, plan, stream);
            case 8: return launchTiledK<T, 8 / sizeof(T)>(v, attn, out, sh, plan, stream);
            case 4: return launchTiledK<T, 4 / sizeof(T)>(v, attn, out, sh, plan, stream);
            default: break;
            }
        }
        if (aligned(v, elem) && aligned(out, elem))
        {
            return launchTiledK<T, 1>(v, attn, out, sh, plan, stream);
        }
        return cudaErrorMisalignedAddress;
    }
    int64_t blocks = (total + kGENERIC_THREADS - 1) / kGENERIC_THREADS;
    blocks = blocks > 65535 * 16 ? 65535 * 16 : blocks;
    outlookGenericKernel<T><<<static_cast<uint32_t>(blocks), kGENERIC_THREADS, 0, stream>>>(
        static_cast<T const*>(v), static_cast<T const*>(attn), static_cast<T*>(out), sh, total);
    return cudaGetLastError();
}

} // namespace
} // namespace volo

extern "C" cudaError_t volo_outlook_attention(void const* v, void const* attn, void* out, int dtype, int batch,
    int height, int width, int channels, int attn_h, int attn_w, int kernel_size, int padding, int stride,
    int num_heads, float scale, cudaStream_t stream)
{
    using volo::ceilDiv;
    if (v == nullptr || attn == nullptr || out == nullptr)
    {
        return cudaErrorInvalidValue;
    }
    if ((dtype != VOLO_OUTLOOK_DTYPE_FP32 && dtype != VOLO_OUTLOOK_DTYPE_FP16) || batch <= 0 || height <= 0
        || width <= 0 || channels <= 0 || attn_h <= 0 || attn_w <= 0 || kernel_size <= 0 || padding < 0
        || stride <= 0 || num_heads <= 0 || channels % num_heads != 0 || !std::isfinite(scale))
    {
        return cudaErrorInvalidValue;
    }
    // k^4 * heads must fit in int32; attn must have one window per stride step (ceil mode).
    if (kernel_size > 64 || attn_h != ceilDiv(height, stride)
        || attn_w != ceilDiv(width, stride))
    {
        return cudaErrorInvalidValue;
    }
    int64_t const kkkk = static_cast<int64_t>(kernel_size) * kernel_size * kernel_size * kernel_size;
    int64_t const total = static_cast<int64_t>(batch) * height * width * channels;
    int64_t const attnTotal = static_cast<int64_t>(batch) * attn_h * attn_w * num_heads * kkkk;
    int64_t constexpr kMAX_ELEMS = int64_t{1} << 46;
    if (kkkk * num_heads > std::numeric_limits<int32_t>::max() || total > kMAX_ELEMS || attnTotal > kMAX_ELEMS)
    {
        return cudaErrorInvalidValue;
    }
    volo::OutlookShape const sh{batch, height, width, channels, attn_h, attn_w, kernel_size, padding, stride,
        num_heads, channels / num_heads, scale};
    if (dtype == VOLO_OUTLOOK_DTYPE_FP32)
    {
        return volo::launchTyped<float>(v, attn, out, sh, total, stream);
    }
    return volo::launchTyped<__half>(v, attn, out, sh, total, stream);
}

extern "C" int volo_outlook_kernel_version(void)
{
    return volo::kVERSION;
}
