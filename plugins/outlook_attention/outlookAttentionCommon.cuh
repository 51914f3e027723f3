/*
 * Outlook attention: index math and per-element steps shared by the CUDA kernel and the
 * host reference (outlookAttentionHostRef.cpp). Nothing here knows about TensorRT.
 *
 * Layouts (channels last, contiguous):
 *   v    (B, H, W, C)               C = heads * headDim
 *   attn (B, h, w, heads * k^4)     h = ceil(H / s), w = ceil(W / s); logits, unscaled;
 *                                   last dim ((head * k*k) + outPos) * k*k + srcPos
 *   out  (B, H, W, C)
 *
 * Gather formulation: output pixel (y, x) sums, over every window (i, j) with
 * di = y + pad - i*s in [0, k) and dj = x + pad - j*s in [0, k), the softmax-weighted
 * sum of the k*k source pixels (i*s + ei - pad, j*s + ej - pad) of that window.
 *
 * One "tile" = batch b, head, a TY x TX block of output pixels (TY = CI*s, TX = CJ*s).
 * It needs the softmaxed attention of every window covering the tile (P, float) and the
 * v pixels those windows read (zero outside the image).
 */
#ifndef VOLO_OUTLOOK_ATTENTION_COMMON_CUH
#define VOLO_OUTLOOK_ATTENTION_COMMON_CUH

#include <cstdint>
#include <cstring>
#include <math.h>

#if defined(__CUDACC__)
#define VOLO_HD __host__ __device__ __forceinline__
#else
#define VOLO_HD inline
#endif

#if defined(__CUDA_ARCH__)
#define VOLO_UNROLL _Pragma("unroll")
#else
#define VOLO_UNROLL
#endif

namespace volo
{

//! 4 consecutive floats (16-byte aligned): one 128-bit access on the device.
VOLO_HD void load4(float const* p, float (&o)[4])
{
#if defined(__CUDA_ARCH__)
    float4 const q = *reinterpret_cast<float4 const*>(p);
    o[0] = q.x;
    o[1] = q.y;
    o[2] = q.z;
    o[3] = q.w;
#else
    for (int32_t i = 0; i < 4; ++i)
    {
        o[i] = p[i];
    }
#endif
}

VOLO_HD void store4(float* p, float const (&v)[4])
{
#if defined(__CUDA_ARCH__)
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
#else
    for (int32_t i = 0; i < 4; ++i)
    {
        p[i] = v[i];
    }
#endif
}

//! 2^x: one MUFU.EX2 on the device (ex2.approx.ftz, max 2 ulp), exp2f on the host.
VOLO_HD float fastExp2(float x)
{
#if defined(__CUDA_ARCH__)
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
#else
    return exp2f(x);
#endif
}

//! 1/x: MUFU.RCP on the device (rcp.approx.ftz, 1 ulp), exact division on the host.
VOLO_HD float fastRcp(float x)
{
#if defined(__CUDA_ARCH__)
    float y;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
#else
    return 1.F / x;
#endif
}

//! a / b for 0 <= a < 2^10 and 0 < b < 2^10 with inv = 1/b: exact (the float error of (a + 0.5) * inv
//! is below 2^-13, far inside the 0.5/b margin), one FFMA + F2I instead of an integer division.
VOLO_HD int32_t divSmall(int32_t a, float inv)
{
    return static_cast<int32_t>((static_cast<float>(a) + 0.5F) * inv);
}

//! IEEE half <-> float on the host (bit patterns), for the FP16 replay. Round to nearest even.
inline float halfBitsToFloat(uint16_t h)
{
    uint32_t const sign = static_cast<uint32_t>(h & 0x8000U) << 16;
    uint32_t const exp = (h >> 10) & 0x1FU;
    uint32_t const man = h & 0x3FFU;
    float f = 0.F;
    if (exp == 0)
    {
        f = ldexpf(static_cast<float>(man), -24);
    }
    else if (exp == 31)
    {
        f = man != 0 ? NAN : INFINITY;
    }
    else
    {
        f = ldexpf(static_cast<float>(man | 0x400U), static_cast<int>(exp) - 25);
    }
    return sign != 0 ? -f : f;
}

inline uint16_t floatToHalfBits(float f)
{
    uint32_t x = 0;
    memcpy(&x, &f, 4);
    uint16_t const sign = static_cast<uint16_t>((x >> 16) & 0x8000U);
    float const a = fabsf(f);
    if (a != a)
    {
        return static_cast<uint16_t>(sign | 0x7E00U);
    }
    if (a >= 65520.F)
    {
        return static_cast<uint16_t>(sign | 0x7C00U);
    }
    if (a < 6.103515625e-05F) // subnormal half: multiples of 2^-24, rint = nearest even
    {
        return static_cast<uint16_t>(sign | static_cast<uint16_t>(rintf(a * 16777216.F)));
    }
    int e = 0;
    float const m = frexpf(a, &e); // a = m * 2^e, m in [0.5, 1)
    float const q = rintf(m * 2048.F); // 11 significant bits
    uint32_t mant = static_cast<uint32_t>(q);
    if (mant == 2048U)
    {
        mant = 1024U;
        ++e;
    }
    uint32_t const exp = static_cast<uint32_t>(e + 14);
    return static_cast<uint16_t>(sign | (exp << 10) | (mant & 0x3FFU));
}

//! floor(a / b) for b > 0 and any sign of a.
VOLO_HD int32_t floorDiv(int32_t a, int32_t b)
{
    int32_t const q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

//! ceil(a / b) for b > 0 and any sign of a.
VOLO_HD int32_t ceilDiv(int32_t a, int32_t b)
{
    return -floorDiv(-a, b);
}

struct OutlookShape
{
    int32_t batch;
    int32_t height;
    int32_t width;
    int32_t channels;
    int32_t attnH;
    int32_t attnW;
    int32_t k;
    int32_t pad;
    int32_t stride;
    int32_t heads;
    int32_t headDim;
    float scale;
};

//! Windows (along one axis) that cover at least one pixel of [p0, p1]: [lo, hi], empty when hi < lo.
VOLO_HD void windowRange(int32_t p0, int32_t p1, int32_t pad, int32_t k, int32_t s, int32_t n, int32_t& lo, int32_t& hi)
{
    lo = ceilDiv(p0 + pad - k + 1, s);
    lo = lo < 0 ? 0 : lo;
    hi = floorDiv(p1 + pad, s);
    hi = hi > n - 1 ? n - 1 : hi;
}

//! Upper bound of the windows covering a span of `span` consecutive pixels (any position).
VOLO_HD int32_t maxWindowsPerSpan(int32_t span, int32_t k, int32_t s)
{
    return (span + k - 2) / s + 1;
}

struct TileGeom
{
    int32_t y0, x0;   // first output pixel of the tile
    int32_t wy0, wx0; // first covering window
    int32_t nwy, nwx; // covering windows (0 when no window covers the tile)
    int32_t ry0, rx0; // v region origin (pixel of source position 0 of window (wy0, wx0))
    int32_t rh, rw;   // v region size
};

//! Geometry of the tile whose first pixel is (y0, x0) and size ty x tx (may extend past the image).
VOLO_HD TileGeom makeTile(OutlookShape const& sh, int32_t y0, int32_t x0, int32_t ty, int32_t tx)
{
    TileGeom g;
    g.y0 = y0;
    g.x0 = x0;
    int32_t const y1 = (y0 + ty - 1 < sh.height - 1) ? y0 + ty - 1 : sh.height - 1;
    int32_t const x1 = (x0 + tx - 1 < sh.width - 1) ? x0 + tx - 1 : sh.width - 1;
    int32_t hiY = 0;
    int32_t hiX = 0;
    windowRange(y0, y1, sh.pad, sh.k, sh.stride, sh.attnH, g.wy0, hiY);
    windowRange(x0, x1, sh.pad, sh.k, sh.stride, sh.attnW, g.wx0, hiX);
    g.nwy = hiY >= g.wy0 ? hiY - g.wy0 + 1 : 0;
    g.nwx = hiX >= g.wx0 ? hiX - g.wx0 + 1 : 0;
    if (g.nwy == 0 || g.nwx == 0)
    {
        g.nwy = 0;
        g.nwx = 0;
    }
    g.ry0 = g.wy0 * sh.stride - sh.pad;
    g.rx0 = g.wx0 * sh.stride - sh.pad;
    g.rh = g.nwy > 0 ? (g.nwy - 1) * sh.stride + sh.k : 0;
    g.rw = g.nwx > 0 ? (g.nwx - 1) * sh.stride + sh.k : 0;
    return g;
}

//! Number of attention values one window holds for one head (k^4).
VOLO_HD int32_t attnPerHead(OutlookShape const& sh)
{
    return sh.k * sh.k * sh.k * sh.k;
}

//! Step 1: global index of logit `e` of the tile (e in [0, nwy*nwx*k^4)); smem P index is `e`.
VOLO_HD int64_t logitIndex(OutlookShape const& sh, TileGeom const& g, int32_t b, int32_t head, int32_t e)
{
    int32_t const kkkk = attnPerHead(sh);
    int32_t const w = e / kkkk;
    int32_t const r = e - w * kkkk;
    int32_t const wy = g.wy0 + w / g.nwx;
    int32_t const wx = g.wx0 + w % g.nwx;
    return ((static_cast<int64_t>(b) * sh.attnH + wy) * sh.attnW + wx) * (static_cast<int64_t>(sh.heads) * kkkk)
        + static_cast<int64_t>(head) * kkkk + r;
}

//! Step 2: in-place scaled softmax of one row of k*k logits.
VOLO_HD void softmaxRow(float* row, int32_t kk, float scale)
{
    float m = row[0] * scale;
    for (int32_t i = 1; i < kk; ++i)
    {
        m = fmaxf(m, row[i] * scale);
    }
    float sum = 0.F;
    for (int32_t i = 0; i < kk; ++i)
    {
        float const e = expf(row[i] * scale - m);
        row[i] = e;
        sum += e;
    }
    float const inv = 1.F / sum;
    for (int32_t i = 0; i < kk; ++i)
    {
        row[i] *= inv;
    }
}

//! Step 3: v region element `t` = (pixel, channel vector of `vec`): global offset of its first
//! channel, or -1 when the pixel lies outside the image (stored as zeros). smem offset is t*vec.
VOLO_HD int64_t vRegionIndex(OutlookShape const& sh, TileGeom const& g, int32_t b, int32_t head, int32_t vec, int32_t t)
{
    int32_t const nv = sh.headDim / vec;
    int32_t const px = t / nv;
    int32_t const cv = t - px * nv;
    int32_t const gy = g.ry0 + px / g.rw;
    int32_t const gx = g.rx0 + px % g.rw;
    if (gy < 0 || gy >= sh.height || gx < 0 || gx >= sh.width)
    {
        return -1;
    }
    return ((static_cast<int64_t>(b) * sh.height + gy) * sh.width + gx) * sh.channels
        + static_cast<int64_t>(head) * sh.headDim + static_cast<int64_t>(cv) * vec;
}

//! Step 4: task `t` of a ci x cj-cell tile -> output pixel and channel vector. Tasks are ordered
//! by pixel class (y mod s, x mod s) so that the lanes of a warp see the same window pattern.
VOLO_HD void decodeTask(int32_t t, int32_t ci, int32_t cj, int32_t s, int32_t nv, int32_t& dy, int32_t& dx, int32_t& cv)
{
    cv = t % nv;
    int32_t const p = t / nv;
    int32_t const cells = ci * cj;
    int32_t const cls = p / cells;
    int32_t const cell = p - cls * cells;
    dy = (cell / cj) * s + cls / s;
    dx = (cell % cj) * s + cls % s;
}

//! Step 4: accumulate output pixel (y, x), channels [c0, c0+VEC) of the head, from smem P / vs.
//! `loadVec(ptr, float (&)[VEC])` converts VEC consecutive stored values to float.
template <int32_t VEC, int32_t KT, typename T, typename LoadVec>
VOLO_HD void accumulatePixel(OutlookShape const& sh, TileGeom const& g, float const* P, T const* vs, int32_t y,
    int32_t x, int32_t c0, float (&acc)[VEC], LoadVec loadVec)
{
    int32_t const k = KT > 0 ? KT : sh.k;
    int32_t const kk = k * k;
    int32_t const s = sh.stride;
    int32_t const hd = sh.headDim;
    int32_t iLo = 0;
    int32_t iHi = 0;
    int32_t jLo = 0;
    int32_t jHi = 0;
    windowRange(y, y, sh.pad, k, s, sh.attnH, iLo, iHi);
    windowRange(x, x, sh.pad, k, s, sh.attnW, jLo, jHi);
    for (int32_t v = 0; v < VEC; ++v)
    {
        acc[v] = 0.F;
    }
    for (int32_t i = iLo; i <= iHi; ++i)
    {
        int32_t const di = y + sh.pad - i * s;
        int32_t const wi = i - g.wy0;
        for (int32_t j = jLo; j <= jHi; ++j)
        {
            int32_t const dj = x + sh.pad - j * s;
            int32_t const wj = j - g.wx0;
            float const* prow = P + (static_cast<int32_t>(wi * g.nwx + wj) * kk + di * k + dj) * kk;
            T const* vwin = vs + ((wi * s) * g.rw + wj * s) * hd + c0;
VOLO_UNROLL
            for (int32_t ei = 0; ei < (KT > 0 ? KT : k); ++ei)
            {
VOLO_UNROLL
                for (int32_t ej = 0; ej < (KT > 0 ? KT : k); ++ej)
                {
                    float const p = prow[ei * k + ej];
                    float vv[VEC];
                    loadVec(vwin + (ei * g.rw + ej) * hd, vv);
VOLO_UNROLL
                    for (int32_t v = 0; v < VEC; ++v)
                    {
                        acc[v] = fmaf(p, vv[v], acc[v]);
                    }
                }
            }
        }
    }
}

//! Direct form (no staging), one output element: used by the generic kernel and as a host check.
//! `ld(index)` returns the float value of element `index` of v or attn.
template <typename LdV, typename LdA>
VOLO_HD float outlookElementDirect(OutlookShape const& sh, int32_t b, int32_t y, int32_t x, int32_t c, LdV ldV, LdA ldA)
{
    int32_t const k = sh.k;
    int32_t const kk = k * k;
    int32_t const s = sh.stride;
    int32_t const head = c / sh.headDim;
    int32_t iLo = 0;
    int32_t iHi = 0;
    int32_t jLo = 0;
    int32_t jHi = 0;
    windowRange(y, y, sh.pad, k, s, sh.attnH, iLo, iHi);
    windowRange(x, x, sh.pad, k, s, sh.attnW, jLo, jHi);
    float acc = 0.F;
    for (int32_t i = iLo; i <= iHi; ++i)
    {
        int32_t const di = y + sh.pad - i * s;
        for (int32_t j = jLo; j <= jHi; ++j)
        {
            int32_t const dj = x + sh.pad - j * s;
            int64_t const row = ((static_cast<int64_t>(b) * sh.attnH + i) * sh.attnW + j) * sh.heads * kk * kk
                + (static_cast<int64_t>(head) * kk + di * k + dj) * kk;
            float m = ldA(row) * sh.scale;
            for (int32_t e = 1; e < kk; ++e)
            {
                m = fmaxf(m, ldA(row + e) * sh.scale);
            }
            float sum = 0.F;
            float dot = 0.F;
            for (int32_t ei = 0; ei < k; ++ei)
            {
                int32_t const sy = i * s + ei - sh.pad;
                for (int32_t ej = 0; ej < k; ++ej)
                {
                    int32_t const sx = j * s + ej - sh.pad;
                    float const e = expf(ldA(row + ei * k + ej) * sh.scale - m);
                    sum += e;
                    if (sy >= 0 && sy < sh.height && sx >= 0 && sx < sh.width)
                    {
                        dot = fmaf(e, ldV(((static_cast<int64_t>(b) * sh.height + sy) * sh.width + sx) * sh.channels + c),
                            dot);
                    }
                }
            }
            acc += dot / sum;
        }
    }
    return acc;
}

//! Tile plan chosen by the launcher (host) and replayed by the host reference.
struct TilePlan
{
    int32_t ci;            // windows-cells per tile along y (tile height = ci * s)
    int32_t cj;            // along x
    int32_t tilesY;        // tiles per image along y
    int32_t tilesX;        // along x
    int32_t pFloats;       // smem floats reserved for P
    int32_t vElems;        // smem elements reserved for the v region
    int64_t smemBytes;     // total dynamic smem (0 = plan does not fit: use the generic kernel)
};

//! Choose the largest tile (<= maxCells cells per side) whose smem fits `smemBudget`, with tiles
//! balanced so that the last tile of a row is not mostly empty.
VOLO_HD TilePlan planTiles(OutlookShape const& sh, int32_t elemBytes, int64_t smemBudget, int32_t maxCells)
{
    TilePlan plan{0, 0, 0, 0, 0, 0, 0};
    int32_t const s = sh.stride;
    int32_t const cellsY = ceilDiv(sh.height, s);
    int32_t const cellsX = ceilDiv(sh.width, s);
    for (int32_t limit = maxCells; limit >= 1; --limit)
    {
        int32_t const ty = ceilDiv(cellsY, limit);
        int32_t const tx = ceilDiv(cellsX, limit);
        int32_t const ci = ceilDiv(cellsY, ty);
        int32_t const cj = ceilDiv(cellsX, tx);
        int64_t const nwy = maxWindowsPerSpan(ci * s, sh.k, s);
        int64_t const nwx = maxWindowsPerSpan(cj * s, sh.k, s);
        int64_t const pFloats = nwy * nwx * attnPerHead(sh);
        int64_t const rh = (nwy - 1) * s + sh.k;
        int64_t const rw = (nwx - 1) * s + sh.k;
        int64_t const vElems = rh * rw * sh.headDim;
        // v region after P, aligned to 16 bytes.
        int64_t const pBytes = (pFloats * 4 + 15) / 16 * 16;
        int64_t const bytes = pBytes + vElems * elemBytes;
        if (bytes <= smemBudget)
        {
            plan.ci = ci;
            plan.cj = cj;
            plan.tilesY = ty;
            plan.tilesX = tx;
            plan.pFloats = static_cast<int32_t>(pBytes / 4);
            plan.vElems = static_cast<int32_t>(vElems);
            plan.smemBytes = bytes;
            return plan;
        }
    }
    return plan;
}


// ---------------------------------------------------------------------------------------------
// VOLO path: compile-time geometry k = 3, stride 2, padding 1, head dim 32 (every VOLO outlooker).
//
// A tile is TCY x TCX "cells"; cell (m, n) = output pixels (2m..2m+1, 2n..2n+1). Pixel 2m is covered
// by window m (di = 1); pixel 2m+1 by windows m (di = 2) and m+1 (di = 0). So a cell needs exactly
// 9 softmax rows ("cell rows" r = ry*3 + rx, ry/rx in {0,1,2}) of the 4 windows (m+a, n+b),
// a = voloWinOff(ry), b = voloWinOff(rx), out position d = (voloOutPos(ry), voloOutPos(rx)), adds row r to
// output pixel (2m + voloPix(ry), 2n + voloPix(rx)). Every (window, d) row belongs to exactly one cell,
// so each softmax is computed once. Its sources are the 5 x 5 v pixels at rows 2m-1..2m+3, columns
// 2n-1..2n+3 (region rows/cols 2m'..2m'+4 of the tile's region, which starts one pixel up-left).
//
// Block = (tile, head, image): grid (tiles per image, heads, batch). Shared memory (float):
//   sP [cell][r][ei][4]   softmax row r of the cell, source row ei, source cols 0..2 + a zero pad
//                         (one 16-byte load per (r, ei)); rows of windows outside the grid are 0;
//   sV [ry][rx][32]       v region ((2*TCY+3) x (2*TCX+3) pixels of this head), FP32, 0 outside;
//                         rows padded to kVoloRowPixels (20) pixels (the staging steps 4 columns).
// Thread = (cell, channel group of 4): lanes 8c..8c+7 share a cell, so a quarter warp reads one
// pixel's 128 contiguous bytes of sV (conflict-free) and one broadcast 16-byte sP entry.
// ---------------------------------------------------------------------------------------------

constexpr int32_t kVoloK = 3;
constexpr int32_t kVoloStride = 2;
constexpr int32_t kVoloPad = 1;
constexpr int32_t kVoloHeadDim = 32;
constexpr int32_t kVoloCg = 4;                           // channels per thread
constexpr int32_t kVoloLanes = kVoloHeadDim / kVoloCg;   // threads per cell (8)
constexpr int32_t kVoloRows = 9;                         // softmax rows per cell
constexpr int32_t kVoloPPerCell = kVoloRows * 3 * 4;     // floats of sP per cell (108)
constexpr int32_t kVoloMaxCells = 7;                     // tile side limit (416 threads, 72 registers, 2 blocks/SM)
constexpr int64_t kVoloSmemBudget = 100 * 1024;          // dynamic smem per block (opt-in above 48 KiB)
constexpr int32_t kVoloColSteps = (2 * kVoloMaxCells + 3 + 3) / 4; // 4-column staging steps per v row (5)
constexpr int32_t kVoloRowPixels = 4 * kVoloColSteps;    // sV row stride (20 pixels >= 2 * 7 + 3)

//! Cell-row tables (index ry or rx): window offset, out position in the window, pixel in the cell.
VOLO_HD int32_t voloWinOff(int32_t q)
{
    return q == 2 ? 1 : 0;
}
VOLO_HD int32_t voloOutPos(int32_t q)
{
    return q == 0 ? 1 : (q == 1 ? 2 : 0);
}
VOLO_HD int32_t voloPix(int32_t q)
{
    return q == 0 ? 0 : 1;
}

//! True for the shapes of the VOLO path (the launcher also needs aligned pointers). Offsets within one
//! (image, head) are 32-bit: one image of v or attn must stay below 2^30 elements.
VOLO_HD bool voloPathApplies(OutlookShape const& sh)
{
    int64_t const imageV = static_cast<int64_t>(sh.height) * sh.width * sh.channels;
    int64_t const imageA = static_cast<int64_t>(sh.attnH) * sh.attnW * sh.heads * 81;
    return sh.k == kVoloK && sh.stride == kVoloStride && sh.pad == kVoloPad && sh.headDim == kVoloHeadDim
        && imageV < (int64_t{1} << 30) && imageA < (int64_t{1} << 30);
}

//! Element offset of (image b, head) in v / out (channel 0 of the head at pixel (0, 0)).
VOLO_HD int64_t voloImageBase(OutlookShape const& sh, int32_t b, int32_t head)
{
    return static_cast<int64_t>(b) * sh.height * sh.width * sh.channels + static_cast<int64_t>(head) * kVoloHeadDim;
}

//! Element offset of (image b, head) in attn (logit 0 of the head in window (0, 0)).
VOLO_HD int64_t voloAttnBase(OutlookShape const& sh, int32_t b, int32_t head)
{
    return static_cast<int64_t>(b) * sh.attnH * sh.attnW * sh.heads * 81 + static_cast<int64_t>(head) * 81;
}

struct VoloPlan
{
    int32_t tcy;        // cells per tile along y
    int32_t tcx;        // along x
    int32_t tilesY;     // tiles per image along y
    int32_t tilesX;     // along x
    int32_t rh;         // v region rows (2*tcy + 3)
    int32_t rw;         // v region cols
    int32_t rws;        // sV row stride in pixels (kVoloRowPixels: every staging step stores unconditionally)
    int32_t threads;    // block size: tcy*tcx*8 rounded up to a warp
    int32_t pFloats;    // sP floats (tcy*tcx*108)
    int64_t smemBytes;  // sP + sV bytes (0: no tile fits)
    float invTcx;       // 1 / tcx, for divSmall
    float invTilesX;    // 1 / tilesX, for divSmall (tiles per image < 2^10)
};

//! Largest balanced tile (<= maxCells cells per side) whose shared memory fits smemBudget.
VOLO_HD VoloPlan planVolo(OutlookShape const& sh, int32_t maxCells, int64_t smemBudget)
{
    VoloPlan plan{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.F, 0.F};
    int32_t const cellsY = ceilDiv(sh.height, kVoloStride);
    int32_t const cellsX = ceilDiv(sh.width, kVoloStride);
    for (int32_t limit = maxCells; limit >= 1; --limit)
    {
        int32_t const ty = ceilDiv(cellsY, limit);
        int32_t const tx = ceilDiv(cellsX, limit);
        int32_t const cy = ceilDiv(cellsY, ty);
        int32_t const cx = ceilDiv(cellsX, tx);
        int32_t const rh = 2 * cy + 3;
        int32_t const rw = 2 * cx + 3;
        int32_t const rws = kVoloRowPixels;
        int64_t const pFloats = static_cast<int64_t>(cy) * cx * kVoloPPerCell;
        int64_t const bytes = (pFloats + static_cast<int64_t>(rh) * rws * kVoloHeadDim) * 4;
        if (bytes <= smemBudget)
        {
            if (static_cast<int64_t>(ty) * tx >= 1024) // smaller tiles only mean more of them
            {
                return plan;
            }
            int32_t const threads = cy * cx * kVoloLanes;
            plan = VoloPlan{cy, cx, ty, tx, rh, rw, rws, (threads + 31) / 32 * 32, static_cast<int32_t>(pFloats),
                bytes, 1.F / cx, 1.F / tx};
            return plan;
        }
    }
    return plan;
}

//! The VOLO grid is (tiles per image, heads, batch): y and z are limited to 65535.
VOLO_HD bool voloGridFits(OutlookShape const& sh, VoloPlan const& plan)
{
    return plan.tilesY * plan.tilesX < 1024 && sh.heads <= 65535 && sh.batch <= 65535;
}

//! Tile index (blockIdx.x) -> first cell (cy0, cx0) of the tile.
VOLO_HD void voloTileOrigin(VoloPlan const& plan, int32_t tile, int32_t& cy0, int32_t& cx0)
{
    int32_t const tileY = divSmall(tile, plan.invTilesX);
    cy0 = tileY * plan.tcy;
    cx0 = (tile - tileY * plan.tilesX) * plan.tcx;
}

//! Stage softmax row `slot` (= cell * 9 + r, cell = m' * tcx + n') of tile (cy0, cx0) into sP.
//! `ldA(index)` returns logit `index` (32-bit, from voloAttnBase of this image and head) as float. Exponentials in base 2 of pre-scaled logits:
//! one FMUL, FMNMX, FADD and MUFU.EX2 per logit, one MUFU.RCP per row.
template <typename LdA>
VOLO_HD void voloStageRow(
    OutlookShape const& sh, VoloPlan const& plan, int32_t cy0, int32_t cx0, int32_t slot, LdA ldA, float* sP)
{
    int32_t const cell = slot / kVoloRows;
    int32_t const r = slot - cell * kVoloRows;
    int32_t const ry = r / 3;
    int32_t const rx = r - ry * 3;
    int32_t const mL = divSmall(cell, plan.invTcx);
    int32_t const nL = cell - mL * plan.tcx;
    int32_t const wy = cy0 + mL + voloWinOff(ry);
    int32_t const wx = cx0 + nL + voloWinOff(rx);
    float* dst = sP + static_cast<int32_t>(slot) * 12;
    float p[9];
    if (wy < sh.attnH && wx < sh.attnW)
    {
        int32_t const d = voloOutPos(ry) * 3 + voloOutPos(rx);
        int32_t const row = (wy * sh.attnW + wx) * (sh.heads * 81) + d * 9;
        float const scale = sh.scale * 1.4426950408889634F; // log2(e)
        float m = -INFINITY;
VOLO_UNROLL
        for (int32_t e = 0; e < 9; ++e)
        {
            p[e] = ldA(row + e) * scale;
            m = fmaxf(m, p[e]);
        }
        float sum = 0.F;
VOLO_UNROLL
        for (int32_t e = 0; e < 9; ++e)
        {
            p[e] = fastExp2(p[e] - m);
            sum += p[e];
        }
        float const inv = fastRcp(sum);
VOLO_UNROLL
        for (int32_t e = 0; e < 9; ++e)
        {
            p[e] *= inv;
        }
    }
    else
    {
VOLO_UNROLL
        for (int32_t e = 0; e < 9; ++e)
        {
            p[e] = 0.F;
        }
    }
VOLO_UNROLL
    for (int32_t ei = 0; ei < 3; ++ei)
    {
        float const q[4] = {p[ei * 3], p[ei * 3 + 1], p[ei * 3 + 2], 0.F};
        store4(dst + ei * 4, q);
    }
}

//! v staging: region row `ry` of tile origin (y0, x0). Returns the offset (from voloImageBase) of
//! pixel (y0 - 1 + ry, x0), or -1 for a row outside the image (staged as zeros). Region column rx is
//! pixel x0 - 1 + rx; columns outside the image are zeros too.
VOLO_HD int32_t voloRowOffset(OutlookShape const& sh, int32_t y0, int32_t x0, int32_t ry)
{
    int32_t const gy = y0 - kVoloPad + ry;
    if (gy < 0 || gy >= sh.height)
    {
        return -1;
    }
    return (gy * sh.width + x0) * sh.channels;
}

//! v staging lane mapping (kernel and replay): lane -> 4-channel chunk (0..7) and first column (0..3);
//! step k of a lane covers region column col0 + 4k. The sV offset (floats) of that chunk in row ry,
//! and the global offset relative to voloRowOffset (pixel x0 - 1 + rx).
struct VoloStageLane
{
    int32_t chunk;
    int32_t col0;
};

VOLO_HD VoloStageLane voloStageLane(int32_t lane)
{
    return VoloStageLane{lane & 7, lane >> 3};
}

VOLO_HD int32_t voloStageDst(VoloPlan const& plan, int32_t ry, VoloStageLane l, int32_t k)
{
    return (ry * plan.rws + l.col0 + 4 * k) * kVoloHeadDim + l.chunk * kVoloCg;
}

VOLO_HD int32_t voloStageSrc(OutlookShape const& sh, VoloStageLane l, int32_t k)
{
    return (l.col0 + 4 * k - kVoloPad) * sh.channels + l.chunk * kVoloCg;
}

//! Cell thread mapping (kernel and replay): thread tid -> cell (m', n') of the tile, channel group cg.
//! Returns false for the padding threads past the last cell.
VOLO_HD bool voloThreadCell(VoloPlan const& plan, int32_t tid, int32_t& mL, int32_t& nL, int32_t& cg)
{
    int32_t const cell = tid / kVoloLanes;
    cg = tid - cell * kVoloLanes;
    mL = divSmall(cell, plan.invTcx);
    nL = cell - mL * plan.tcx;
    return cell < plan.tcy * plan.tcx;
}

//! The 4 output pixels of cell (mL, nL), channels [4*cg, 4*cg+4): acc[py][px][c].
//! Source rows sr = 0..4 of the cell's 5 x 5 v block are loaded once (5 x 16 bytes each) and used by
//! every softmax row whose window covers them: 27 sP loads, 25 sV loads, 324 FMAs per thread.
VOLO_HD void voloCellAccumulate(float const* sP, float const* sV, int32_t rws, int32_t tcx, int32_t mL, int32_t nL,
    int32_t cg, float (&acc)[2][2][4])
{
VOLO_UNROLL
    for (int32_t i = 0; i < 16; ++i)
    {
        acc[i >> 3][(i >> 2) & 1][i & 3] = 0.F;
    }
    float const* pCell = sP + (mL * tcx + nL) * kVoloPPerCell;
    float const* vBase = sV + ((2 * mL) * rws + 2 * nL) * kVoloHeadDim + cg * kVoloCg;
VOLO_UNROLL
    for (int32_t sr = 0; sr < 5; ++sr)
    {
        // Columns 0..2 serve the rows of windows n (rx = 0, 1), columns 2..4 those of window n+1 (rx = 2):
        // the second group reuses column 2 and the registers of columns 0..1 (12 live v registers, not 20).
        float v[5][4];
VOLO_UNROLL
        for (int32_t sc = 0; sc < 3; ++sc)
        {
            load4(vBase + (sr * rws + sc) * kVoloHeadDim, v[sc]);
        }
VOLO_UNROLL
        for (int32_t rx = 0; rx < 3; ++rx)
        {
            if (rx == 2)
            {
VOLO_UNROLL
                for (int32_t sc = 3; sc < 5; ++sc)
                {
                    load4(vBase + (sr * rws + sc) * kVoloHeadDim, v[sc]);
                }
            }
VOLO_UNROLL
            for (int32_t ry = 0; ry < 3; ++ry)
            {
                int32_t const ei = sr - 2 * voloWinOff(ry);
                if (ei < 0 || ei > 2)
                {
                    continue;
                }
                float w[4];
                load4(pCell + ((ry * 3 + rx) * 3 + ei) * 4, w);
                float(&a)[4] = acc[voloPix(ry)][voloPix(rx)];
VOLO_UNROLL
                for (int32_t ej = 0; ej < 3; ++ej)
                {
                    float const(&vv)[4] = v[2 * voloWinOff(rx) + ej];
VOLO_UNROLL
                    for (int32_t c = 0; c < 4; ++c)
                    {
                        a[c] = fmaf(w[ej], vv[c], a[c]);
                    }
                }
            }
        }
    }
}

} // namespace volo

#endif // VOLO_OUTLOOK_ATTENTION_COMMON_CUH
