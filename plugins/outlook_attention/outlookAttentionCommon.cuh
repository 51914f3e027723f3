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

} // namespace volo

#endif // VOLO_OUTLOOK_ATTENTION_COMMON_CUH
