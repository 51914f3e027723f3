/*
 * Host (CPU) replay of the outlook-attention kernels, compiled from the same index code
 * (outlookAttentionCommon.cuh) with a plain C++ compiler. Used by the tests to check the tiling,
 * window ranges and staging against the PyTorch reference without a GPU. The VOLO path replays
 * FP32 and FP16 (inputs converted to float at staging, output rounded to half once, as on the GPU),
 * and so do the tiled and direct paths.
 *
 *   g++ -std=c++17 -O2 -shared -fPIC outlookAttentionHostRef.cpp -o libvolo_outlook_hostref.so
 */
#include "outlookAttentionCommon.cuh"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace
{

template <int32_t VEC>
struct HostLoadVec
{
    void operator()(float const* p, float (&o)[VEC]) const
    {
        for (int32_t i = 0; i < VEC; ++i)
        {
            o[i] = p[i];
        }
    }
};

//! Element loader of the replay: float, or IEEE half bits converted like __half2float.
template <typename T>
struct HostLd
{
    T const* p;
    float operator()(int64_t i) const
    {
        if constexpr (std::is_same_v<T, uint16_t>)
        {
            return volo::halfBitsToFloat(p[i]);
        }
        else
        {
            return p[i];
        }
    }
};

template <typename T>
T hostFromFloat(float x)
{
    if constexpr (std::is_same_v<T, uint16_t>)
    {
        return volo::floatToHalfBits(x);
    }
    else
    {
        return x;
    }
}

//! Tiled kernel replay; T = float or IEEE half bits (staged values converted exactly to float,
//! output rounded once, as the kernel's loadVec / storeVec do).
template <typename T, int32_t VEC, int32_t KT>
bool tiledImpl(T const* v, T const* attn, T* out, volo::OutlookShape const& sh, volo::TilePlan const& plan)
{
    HostLd<T> const ldV{v};
    HostLd<T> const ldA{attn};
    std::vector<float> sP(static_cast<size_t>(plan.pFloats));
    std::vector<float> sV(static_cast<size_t>(plan.vElems));
    int32_t const s = sh.stride;
    int32_t const ty = plan.ci * s;
    int32_t const tx = plan.cj * s;
    int32_t const k = sh.k;
    int32_t const kk = k * k;
    int32_t const nv = sh.headDim / VEC;
    HostLoadVec<VEC> const loadVec;
    for (int32_t b = 0; b < sh.batch; ++b)
    {
        for (int32_t tile = 0; tile < plan.tilesY * plan.tilesX; ++tile)
        {
            for (int32_t head = 0; head < sh.heads; ++head)
            {
                int32_t const y0 = (tile / plan.tilesX) * ty;
                int32_t const x0 = (tile % plan.tilesX) * tx;
                volo::TileGeom const g = volo::makeTile(sh, y0, x0, ty, tx);
                // The plan's smem sizes must bound every tile (the kernel has no such check).
                if (static_cast<int64_t>(g.nwy) * g.nwx * kk * kk > plan.pFloats
                    || static_cast<int64_t>(g.rh) * g.rw * sh.headDim > plan.vElems)
                {
                    return false;
                }
                // Poison the staging buffers: every value read must have been staged.
                std::fill(sP.begin(), sP.end(), 1e30F);
                std::fill(sV.begin(), sV.end(), 1e30F);
                int32_t const nLogits = g.nwy * g.nwx * kk * kk;
                for (int32_t e = 0; e < nLogits; ++e)
                {
                    sP[static_cast<size_t>(e)] = ldA(volo::logitIndex(sh, g, b, head, e));
                }
                for (int32_t t = 0; t < g.rh * g.rw * nv; ++t)
                {
                    int64_t const src = volo::vRegionIndex(sh, g, b, head, VEC, t);
                    for (int32_t i = 0; i < VEC; ++i)
                    {
                        sV[static_cast<size_t>(t) * VEC + i] = src >= 0 ? ldV(src + i) : 0.F;
                    }
                }
                for (int32_t r = 0; r < g.nwy * g.nwx * kk; ++r)
                {
                    volo::softmaxRow(sP.data() + r * kk, kk, sh.scale);
                }
                for (int32_t t = 0; t < ty * tx * nv; ++t)
                {
                    int32_t dy = 0;
                    int32_t dx = 0;
                    int32_t cv = 0;
                    volo::decodeTask(t, plan.ci, plan.cj, s, nv, dy, dx, cv);
                    int32_t const y = y0 + dy;
                    int32_t const x = x0 + dx;
                    if (y >= sh.height || x >= sh.width)
                    {
                        continue;
                    }
                    float acc[VEC];
                    volo::accumulatePixel<VEC, KT>(sh, g, sP.data(), sV.data(), y, x, cv * VEC, acc, loadVec);
                    int64_t const dst = ((static_cast<int64_t>(b) * sh.height + y) * sh.width + x) * sh.channels
                        + static_cast<int64_t>(head) * sh.headDim + cv * VEC;
                    for (int32_t i = 0; i < VEC; ++i)
                    {
                        out[dst + i] = hostFromFloat<T>(acc[i]);
                    }
                }
            }
        }
    }
    return true;
}

//! One block of the VOLO kernel: same staging (chunk by chunk), softmax rows and cell threads.
template <typename T>
bool voloBlock(T const* v, T const* attn, T* out, volo::OutlookShape const& sh, volo::VoloPlan const& plan, int32_t b,
    int32_t tile, int32_t head, std::vector<float>& sP, std::vector<float>& sV)
{
    using namespace volo;
    int32_t cy0 = 0;
    int32_t cx0 = 0;
    voloTileOrigin(plan, tile, cy0, cx0);
    int32_t const y0 = cy0 * kVoloStride;
    int32_t const x0 = cx0 * kVoloStride;
    int32_t const nCells = plan.tcy * plan.tcx;
    // Poison: every value the cell threads read must have been staged.
    std::fill(sP.begin(), sP.end(), 1e30F);
    std::fill(sV.begin(), sV.end(), 1e30F);
    // v staging exactly as the kernel's lanes do it (every warp-row, lane and step): anything the
    // mapping misses stays poisoned and is caught when a cell thread reads it.
    HostLd<T> const ldV{v + voloImageBase(sh, b, head)};
    int32_t const steps = (plan.rw + 3) >> 2;
    for (int32_t ry = 0; ry < plan.rh; ++ry)
    {
        int32_t const rowOff = voloRowOffset(sh, y0, x0, ry);
        for (int32_t lane = 0; lane < 32; ++lane)
        {
            VoloStageLane const l = voloStageLane(lane);
            for (int32_t k = 0; k < kVoloColSteps; ++k)
            {
                int32_t const gx = x0 - kVoloPad + l.col0 + 4 * k;
                bool const inside = rowOff >= 0 && gx >= 0 && gx < sh.width && k < steps;
                size_t const dst = static_cast<size_t>(voloStageDst(plan, ry, l, k));
                if (dst + kVoloCg > sV.size())
                {
                    return false;
                }
                for (int32_t i = 0; i < kVoloCg; ++i)
                {
                    sV[dst + i] = inside ? ldV(rowOff + voloStageSrc(sh, l, k) + i) : 0.F;
                }
            }
        }
    }
    if (static_cast<int64_t>(nCells) * kVoloPPerCell > plan.pFloats)
    {
        return false;
    }
    for (int32_t slot = 0; slot < nCells * kVoloRows; ++slot)
    {
        voloStageRow(sh, plan, cy0, cx0, slot, HostLd<T>{attn + voloAttnBase(sh, b, head)}, sP.data());
    }
    for (int32_t tid = 0; tid < plan.threads; ++tid)
    {
        int32_t mL = 0;
        int32_t nL = 0;
        int32_t cg = 0;
        if (!voloThreadCell(plan, tid, mL, nL, cg))
        {
            continue;
        }
        float acc[2][2][4];
        voloCellAccumulate(sP.data(), sV.data(), plan.rws, plan.tcx, mL, nL, cg, acc);
        for (int32_t py = 0; py < 2; ++py)
        {
            for (int32_t px = 0; px < 2; ++px)
            {
                int32_t const y = y0 + 2 * mL + py;
                int32_t const x = x0 + 2 * nL + px;
                if (y >= sh.height || x >= sh.width)
                {
                    continue;
                }
                int64_t const dst
                    = voloImageBase(sh, b, head) + ((y * sh.width + x) * sh.channels + cg * kVoloCg);
                for (int32_t c = 0; c < kVoloCg; ++c)
                {
                    if (std::fabs(acc[py][px][c]) > 1e29F)
                    {
                        return false; // read a poisoned (unstaged) value
                    }
                    out[dst + c] = hostFromFloat<T>(acc[py][px][c]);
                }
            }
        }
    }
    return true;
}

template <typename T>
bool voloImpl(void const* v, void const* attn, void* out, volo::OutlookShape const& sh, volo::VoloPlan const& plan)
{
    std::vector<float> sP(static_cast<size_t>(plan.pFloats));
    std::vector<float> sV(static_cast<size_t>(plan.rh) * plan.rws * volo::kVoloHeadDim);
    for (int32_t b = 0; b < sh.batch; ++b)
    {
        for (int32_t tile = 0; tile < plan.tilesY * plan.tilesX; ++tile)
        {
            for (int32_t head = 0; head < sh.heads; ++head)
            {
                if (!voloBlock(static_cast<T const*>(v), static_cast<T const*>(attn), static_cast<T*>(out), sh, plan,
                        b, tile, head, sP, sV))
                {
                    return false;
                }
            }
        }
    }
    return true;
}

bool makeShape(int batch, int height, int width, int channels, int attnH, int attnW, int k, int pad, int stride,
    int heads, float scale, volo::OutlookShape& sh)
{
    if (batch <= 0 || height <= 0 || width <= 0 || channels <= 0 || k <= 0 || pad < 0 || stride <= 0 || heads <= 0
        || channels % heads != 0 || attnH != volo::ceilDiv(height, stride) || attnW != volo::ceilDiv(width, stride))
    {
        return false;
    }
    sh = volo::OutlookShape{batch, height, width, channels, attnH, attnW, k, pad, stride, heads, channels / heads, scale};
    return true;
}

} // namespace

template <typename T>
bool tiledDispatch(void const* v, void const* attn, void* out, volo::OutlookShape const& sh, volo::TilePlan const& plan,
    int vec)
{
    auto const* vt = static_cast<T const*>(v);
    auto const* at = static_cast<T const*>(attn);
    auto* ot = static_cast<T*>(out);
    bool const k3 = sh.k == 3;
    switch (vec)
    {
    case 4: return k3 ? tiledImpl<T, 4, 3>(vt, at, ot, sh, plan) : tiledImpl<T, 4, 0>(vt, at, ot, sh, plan);
    case 2: return k3 ? tiledImpl<T, 2, 3>(vt, at, ot, sh, plan) : tiledImpl<T, 2, 0>(vt, at, ot, sh, plan);
    default: return k3 ? tiledImpl<T, 1, 3>(vt, at, ot, sh, plan) : tiledImpl<T, 1, 0>(vt, at, ot, sh, plan);
    }
}

//! Tiled algorithm, dtype 0 = float32, 1 = IEEE half bits (smem sized for the dtype, like the launcher).
//! Returns 0 on success, 1 for bad arguments, 2 when no tile fits `smemBudget`, 3 when a tile needs
//! more staging than the plan reserved (a planning bug). Writes the chosen tile cells to
//! plan_out[0..1] when plan_out is not null.
extern "C" int volo_outlook_host_tiled(void const* v, void const* attn, void* out, int dtype, int batch, int height,
    int width, int channels, int attnH, int attnW, int k, int pad, int stride, int heads, float scale,
    long long smemBudget, int maxCells, int vec, int* planOut)
{
    volo::OutlookShape sh{};
    if (!makeShape(batch, height, width, channels, attnH, attnW, k, pad, stride, heads, scale, sh) || maxCells < 1
        || (vec != 1 && vec != 2 && vec != 4) || sh.headDim % vec != 0 || (dtype != 0 && dtype != 1))
    {
        return 1;
    }
    volo::TilePlan const plan = volo::planTiles(sh, dtype == 0 ? 4 : 2, smemBudget, maxCells);
    if (plan.smemBytes == 0)
    {
        return 2;
    }
    if (planOut != nullptr)
    {
        planOut[0] = plan.ci;
        planOut[1] = plan.cj;
    }
    bool const ok = dtype == 0 ? tiledDispatch<float>(v, attn, out, sh, plan, vec)
                               : tiledDispatch<uint16_t>(v, attn, out, sh, plan, vec);
    return ok ? 0 : 3;
}

//! VOLO path (k=3, s=2, pad=1, head dim 32) of the CUDA launcher, dtype 0 = float32, 1 = IEEE half bits.
//! maxCells / smemBudget <= 0 mean the launcher's own limits. Returns 0 on success, 1 for bad arguments
//! or a shape outside the VOLO path, 2 when no tile fits, 3 when a block reads unstaged data.
//! plan_out (7 ints, may be null): tcy, tcx, tilesY, tilesX, threads, smem bytes, sP floats.
extern "C" int volo_outlook_host_volo(void const* v, void const* attn, void* out, int dtype, int batch, int height,
    int width, int channels, int attnH, int attnW, int k, int pad, int stride, int heads, float scale, int maxCells,
    long long smemBudget, int* planOut)
{
    volo::OutlookShape sh{};
    if (!makeShape(batch, height, width, channels, attnH, attnW, k, pad, stride, heads, scale, sh)
        || !volo::voloPathApplies(sh) || (dtype != 0 && dtype != 1))
    {
        return 1;
    }
    volo::VoloPlan const plan = volo::planVolo(sh, maxCells > 0 ? maxCells : volo::kVoloMaxCells,
        smemBudget > 0 ? smemBudget : volo::kVoloSmemBudget);
    if (plan.smemBytes == 0 || !volo::voloGridFits(sh, plan))
    {
        return 2;
    }
    if (planOut != nullptr)
    {
        int const vals[7] = {plan.tcy, plan.tcx, plan.tilesY, plan.tilesX, plan.threads,
            static_cast<int>(plan.smemBytes), plan.pFloats};
        std::copy(vals, vals + 7, planOut);
    }
    bool const ok = dtype == 0 ? voloImpl<float>(v, attn, out, sh, plan) : voloImpl<uint16_t>(v, attn, out, sh, plan);
    return ok ? 0 : 3;
}

template <typename T>
void directImpl(void const* v, void const* attn, void* out, volo::OutlookShape const& sh)
{
    HostLd<T> const ldV{static_cast<T const*>(v)};
    HostLd<T> const ldA{static_cast<T const*>(attn)};
    auto* o = static_cast<T*>(out);
    int64_t idx = 0;
    for (int32_t b = 0; b < sh.batch; ++b)
    {
        for (int32_t y = 0; y < sh.height; ++y)
        {
            for (int32_t x = 0; x < sh.width; ++x)
            {
                for (int32_t c = 0; c < sh.channels; ++c)
                {
                    o[idx++] = hostFromFloat<T>(volo::outlookElementDirect(sh, b, y, x, c, ldV, ldA));
                }
            }
        }
    }
}

//! Direct algorithm of the generic kernel (one output element at a time), dtype as above. Returns 0 or 1.
extern "C" int volo_outlook_host_direct(void const* v, void const* attn, void* out, int dtype, int batch, int height,
    int width, int channels, int attnH, int attnW, int k, int pad, int stride, int heads, float scale)
{
    volo::OutlookShape sh{};
    if (!makeShape(batch, height, width, channels, attnH, attnW, k, pad, stride, heads, scale, sh)
        || (dtype != 0 && dtype != 1))
    {
        return 1;
    }
    if (dtype == 0)
    {
        directImpl<float>(v, attn, out, sh);
    }
    else
    {
        directImpl<uint16_t>(v, attn, out, sh);
    }
    return 0;
}
