// IQ1_S and IQ1_M block quantizers, byte-identical to ggml's quantize_iq1_s / quantize_iq1_m; algorithms and
// facts: core/ggml/README-iquants.md. Every float expression keeps ggml's operand order (the project builds
// with -ffp-contract=off).
#include "common/fp16.h"
#include "ggml/iquants.h"
#include "ggml/iquants_shared.h"

namespace qz::ggml {

namespace {

using namespace iq;

// ----------------------------------------------------------------------------------------- IQ1_S / M
constexpr float kIQ1Delta = 0.125f;

// iq1_find_best_neighbour2: minimum of sum w*(scale*xg[l] - x)^2, first minimum wins (xg is x_p or x_m).
int iq1BestNeighbour(const Lattice& lat, const uint16_t* nb, const float* xb, const float* w, float scale,
                     const float* xg, int8_t* L) {
    const NeighbourList nl = listOf(lat, nb);
    const float q[8] = {xg[0], xg[1], xg[2], 0, 0, 0, 0, 0};
    const int at = firstMin<8>(nl, q, 3, xb, w, scale);
    const int gi = nl.ids[at < 0 ? 0 : at];
    std::memcpy(L, lat.fields(gi), 8);
    return gi;
}

// Ascending order of the block's values with their positions; ties keep index order (a stable sort,
// as glibc's merge-sort qsort; README-iquants.md "Sort ties").
void sortedOrderScalar(const float* xb, int n, int* idx) {
    for (int j = 0; j < n; ++j)
        idx[j] = j;
    // insertion sort (n <= 32): stable, no allocation
    for (int j = 1; j < n; ++j) {
        const int v = idx[j];
        int k = j;
        for (; k > 0 && xb[v] < xb[idx[k - 1]]; --k)
            idx[k] = idx[k - 1];
        idx[k] = v;
    }
}

typedef float V8f __attribute__((vector_size(32)));
typedef int32_t V8i __attribute__((vector_size(32)));

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi" // the vector helpers are always inlined
__attribute__((always_inline)) inline V8f loadV8(const float* p) {
    V8f v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// Bit t set when lane t of m is set (generic vector code: the same function serves the AVX2 and the
// portable instantiations).
__attribute__((always_inline)) inline unsigned laneBits(V8i m) {
#if defined(__SSE__)
    // the sign bits of the two halves (SSE movmskps, baseline on x86-64; one vmovmskps in AVX2 code)
    __m128 h[2];
    std::memcpy(h, &m, sizeof m);
    return static_cast<unsigned>(_mm_movemask_ps(h[0]) | (_mm_movemask_ps(h[1]) << 4));
#else
    const V8i w = {1, 2, 4, 8, 16, 32, 64, 128};
    V8i r = m & w;
    r |= __builtin_shufflevector(r, r, 4, 5, 6, 7, 0, 1, 2, 3);
    r |= __builtin_shufflevector(r, r, 2, 3, 0, 1, 6, 7, 4, 5);
    r |= __builtin_shufflevector(r, r, 1, 0, 3, 2, 5, 4, 7, 6);
    return static_cast<unsigned>(r[0]);
#endif
}

// The same order without branches: the position of x_j is #{i < j: x_i <= x_j} + #{i > j: x_i < x_j}, counted
// in lanes for 8 values j at once. N = 16 or 32 values; with a NaN (no order) the insertion sort decides.
template <int N> __attribute__((always_inline)) inline void sortedOrderBody(const float* xb, int* idx) {
    constexpr int NQ = N / 8;
    V8f x[NQ];
    V8i j[NQ], rank[NQ], nan = {};
    for (int q = 0; q < NQ; ++q) {
        x[q] = loadV8(xb + 8 * q);
        j[q] = V8i{0, 1, 2, 3, 4, 5, 6, 7} + 8 * q;
        rank[q] = V8i{};
        nan |= x[q] != x[q];
    }
    if (laneBits(nan)) return sortedOrderScalar(xb, N, idx);
    for (int i = 0; i < N; ++i) {
        const float xi = xb[i];
        for (int q = 0; q < NQ; ++q)
            rank[q] -= (j[q] > i) ? (xi <= x[q]) : (xi < x[q]);
    }
    for (int q = 0; q < NQ; ++q)
        for (int t = 0; t < 8; ++t)
            idx[rank[q][t]] = 8 * q + t;
}
#pragma GCC diagnostic pop

// Without AVX2 the ranking (its 256-bit vectors split into SSE halves) is slower than the insertion sort,
// which gives the same order.
template <int N> void sortedOrderPortable(const float* xb, int* idx) {
    sortedOrderScalar(xb, N, idx);
}
#if defined(__x86_64__) || defined(__i386__)
template <int N> __attribute__((target("avx2"))) void sortedOrderAvx2(const float* xb, int* idx) {
    sortedOrderBody<N>(xb, idx);
}
#endif
template <int N> void sortedOrder(const float* xb, int* idx) {
#if defined(__x86_64__) || defined(__i386__)
    static const bool avx2 = detectAvx2();
    if (avx2) return sortedOrderAvx2<N>(xb, idx);
#endif
    sortedOrderPortable<N>(xb, idx);
}

// ------------------------------------------------------------------ IQ1 split-point searches, vectorised
// Both IQ1 quantizers score every pair of split points (i1 <= i2) of the sorted sub-block and keep the
// first candidate, in (i1, i2, variant) order, with sumq2 > 0 && sumqx^2 > best*sumq2. The candidates'
// sums for 8 consecutive i2 are computed side by side with ggml's expressions (same operations per lane,
// so the same bits); then, with `best` as it stands, the 8 x nvar conditions are evaluated side by side.
// The reference scan only changes `best` at an accepted candidate, so a chunk where no condition holds is
// skipped exactly; otherwise the chunk is scanned one candidate after the other with the scalar test.
// kSplitSkip: in that scan a candidate whose condition was false under the chunk's starting best b0 is
// skipped as long as best >= b0: with sumq2 > 0, best*sumq2 >= b0*sumq2 (rounding is monotone), so the
// condition stays false. If best ever drops below b0 (rounding of scale*sumqx) every candidate is tested.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi" // the vector helpers are always inlined
struct SplitBest {
    float score = -FLT_MAX, scale = 0;
    int i1 = -1, i2 = -1, var = -1;
};

// The scalar scan of one chunk (lanes t = 0..nt-1 in order, variants v = 0..NV-1 within a lane), visiting
// only the candidates set in bits[v] while best >= b0 (kSplitSkip).
template <int NV>
// sc / scr: each candidate's scale sumqx/sumq2 and score scale*sumqx, computed side by side beforehand
// (IEEE division and product, so the same bits as the scalar code computes on acceptance).
__attribute__((always_inline)) inline void
scanChunk(const float (*sx)[8], const float (*s2)[8], const float (*sc)[8], const float (*scr)[8],
          const unsigned* bits, int nt, int i1, int t0, SplitBest& b) {
    const float b0 = b.score;
    unsigned all = 0;
    for (int v = 0; v < NV; ++v)
        all |= bits[v];
    for (int t = 0; t < nt; ++t) {
        const bool full = !(b.score >= b0);
        if (!full && !((all >> t) & 1)) continue;
        for (int v = 0; v < NV; ++v) {
            if (!full && !((bits[v] >> t) & 1)) continue;
            if (s2[v][t] > 0 && sx[v][t] * sx[v][t] > b.score * s2[v][t]) {
                b.scale = sc[v][t];
                b.score = scr[v][t];
                b.i1 = i1;
                b.i2 = t0 + t;
                b.var = v;
            }
        }
    }
}

// IQ1_S: sumx / sumw prefix sums over the sorted values (n + 1 entries, padded with 8 more), levels
// xp (variant 0, shift +1) and xm (variant 1, shift -1).
struct Iq1sSplit {
    const float* sumx;
    const float* sumw;
    int n;
    const float* xv[2];
};

// The candidates' sums of IQ1_S in ggml's expressions: one row i1 at a time, 8 values of i2 per chunk,
// or one candidate alone (the same operations, so the same bits as its lane).
struct Iq1sSums {
    static constexpr int kVariants = 2;
    const Iq1sSplit& a;
    float sx0, sw0, sxn, swn, sx1 = 0, sw1 = 0, ax[2] = {}, aw[2] = {};
    explicit Iq1sSums(const Iq1sSplit& s)
        : a(s), sx0(s.sumx[0]), sw0(s.sumw[0]), sxn(s.sumx[s.n]), swn(s.sumw[s.n]) {}
    __attribute__((always_inline)) void row(int i1) {
        sx1 = a.sumx[i1];
        sw1 = a.sumw[i1];
        for (int v = 0; v < 2; ++v) {
            const float* xx = a.xv[v];
            ax[v] = (sx1 - sx0) * xx[0];
            aw[v] = (sw1 - sw0) * xx[0] * xx[0];
        }
    }
    __attribute__((always_inline)) void chunk(int t0, V8f* vx, V8f* v2) const {
        const V8f x2 = loadV8(a.sumx + t0), w2 = loadV8(a.sumw + t0);
        for (int v = 0; v < 2; ++v) {
            const float* xx = a.xv[v];
            vx[v] = ax[v] + (x2 - sx1) * xx[1] + (sxn - x2) * xx[2];
            v2[v] = aw[v] + (w2 - sw1) * xx[1] * xx[1] + (swn - w2) * xx[2] * xx[2];
        }
    }
    __attribute__((always_inline)) void one(int i1, int i2, int v, float& vx, float& v2) const {
        const float* xx = a.xv[v];
        const float s1 = a.sumx[i1], w1 = a.sumw[i1], x2 = a.sumx[i2], w2 = a.sumw[i2];
        const float cx = (s1 - sx0) * xx[0], cw = (w1 - sw0) * xx[0] * xx[0];
        vx = cx + (x2 - s1) * xx[1] + (sxn - x2) * xx[2];
        v2 = cw + (w2 - w1) * xx[1] * xx[1] + (swn - w2) * xx[2] * xx[2];
    }
};

// IQ1_M: per-half prefix sums px[h] / pw[h] (17 entries, padded), constants as in the scalar form:
// txp[h] = tx[h]*p2, txm[h] = tx[h]*m2, twp[h] = tw[h]*p2*p2, twm[h] = tw[h]*m2*m2.
struct Iq1mSplit {
    const float* px[2];
    const float* pw[2];
    int n;
    float txp[2], txm[2], twp[2], twm[2];
    float cp1, cp2, cm1, cm2;
};

// IQ1_M's candidates: variant k = (first half x_m) * 2 + (second half x_m).
struct Iq1mSums {
    static constexpr int kVariants = 4;
    const Iq1mSplit& a;
    float p1[2] = {}, ap[2] = {}, am[2] = {};
    explicit Iq1mSums(const Iq1mSplit& s) : a(s) {}
    __attribute__((always_inline)) void row(int i1) {
        for (int h = 0; h < 2; ++h) {
            p1[h] = a.px[h][i1];
            ap[h] = a.twp[h] + a.pw[h][i1] * a.cp1;
            am[h] = a.twm[h] + a.pw[h][i1] * a.cm1;
        }
    }
    __attribute__((always_inline)) void chunk(int t0, V8f* vx, V8f* v2) const {
        V8f qxp[2], qxm[2], q2p[2], q2m[2];
        for (int h = 0; h < 2; ++h) {
            const V8f sxh = p1[h] + loadV8(a.px[h] + t0);
            const V8f pw2 = loadV8(a.pw[h] + t0);
            qxp[h] = a.txp[h] - sxh;
            qxm[h] = a.txm[h] - sxh;
            q2p[h] = ap[h] + pw2 * a.cp2;
            q2m[h] = am[h] + pw2 * a.cm2;
        }
        vx[0] = qxp[0] + qxp[1];
        vx[1] = qxp[0] + qxm[1];
        vx[2] = qxm[0] + qxp[1];
        vx[3] = qxm[0] + qxm[1];
        v2[0] = q2p[0] + q2p[1];
        v2[1] = q2p[0] + q2m[1];
        v2[2] = q2m[0] + q2p[1];
        v2[3] = q2m[0] + q2m[1];
    }
    __attribute__((always_inline)) void one(int i1, int i2, int k, float& vx, float& v2) const {
        float qx[2], q2[2];
        for (int h = 0; h < 2; ++h) {
            const bool m = h == 0 ? k >= 2 : (k & 1) != 0;
            const float sxh = a.px[h][i1] + a.px[h][i2];
            const float a2 = m ? a.twm[h] + a.pw[h][i1] * a.cm1 : a.twp[h] + a.pw[h][i1] * a.cp1;
            qx[h] = (m ? a.txm[h] : a.txp[h]) - sxh;
            q2[h] = a2 + a.pw[h][i2] * (m ? a.cm2 : a.cp2);
        }
        vx = qx[0] + qx[1];
        v2 = q2[0] + q2[1];
    }
};

// The reference scan (kept as the fallback of splitByMax): chunk by chunk with the acceptance test in
// lanes, see above.
template <class Sums> __attribute__((always_inline)) inline void splitScan(Sums s, int n, SplitBest& out) {
    constexpr int NV = Sums::kVariants;
    const V8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
    SplitBest b = out; // a local copy: stores to it cannot alias the inputs
    alignas(32) float sx[NV][8], s2[NV][8], sc[NV][8], scr[NV][8];
    for (int i1 = 0; i1 <= n; ++i1) {
        s.row(i1);
        for (int t0 = i1; t0 <= n; t0 += 8) {
            V8f vx[NV], v2[NV];
            s.chunk(t0, vx, v2);
            const V8i valid = (lane + t0) <= n;
            V8i cond[NV], any = {};
            for (int v = 0; v < NV; ++v) {
                cond[v] = valid & (v2[v] > 0) & (vx[v] * vx[v] > b.score * v2[v]);
                any |= cond[v];
            }
            if (!laneBits(any)) continue;
            unsigned bits[NV];
            for (int v = 0; v < NV; ++v) {
                bits[v] = laneBits(cond[v]);
                const V8f scale = vx[v] / v2[v], score = scale * vx[v];
                std::memcpy(sx[v], &vx[v], 32);
                std::memcpy(s2[v], &v2[v], 32);
                std::memcpy(sc[v], &scale, 32);
                std::memcpy(scr[v], &score, 32);
            }
            scanChunk<NV>(sx, s2, sc, scr, bits, std::min(8, n + 1 - t0), i1, t0, b);
        }
    }
    out = b;
}

// The split-point search by the largest ratio (README-iquants.md "IQ1 split points"). With r(c) = vx^2/v2
// of candidate c computed in lanes (relative error <= 2 ulp) and R its maximum, every candidate with
// r < L = R(1 - 2^-12) is left out of the scalar scan, provided that no r lies in the band
// [L(1 - 2^-18), L): then the first candidate at or above L is accepted whatever best was (best < its
// ratio by more than the rounding of the test), and no candidate below the band is accepted after it
// (best >= L(1 - 4 ulp) from then on). The scan of the remaining few (usually 1-3) candidates in order is
// therefore the reference's answer. All sums must lie in [2^-40, 2^40] (so that no product of the test
// overflows or leaves the normal range); otherwise, or with a candidate in the band, returns false and
// the caller runs splitScan.
constexpr float kSplitCut = 0x1p-12f, kSplitBand = 0x1p-18f, kSplitLo = 0x1p-40f, kSplitHi = 0x1p40f;

template <class Sums, int MaxChunks>
__attribute__((always_inline)) inline bool splitByMax(Sums s, int n, SplitBest& out) {
    constexpr int NV = Sums::kVariants;
    const V8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
    const V8f lo = {kSplitLo, kSplitLo, kSplitLo, kSplitLo, kSplitLo, kSplitLo, kSplitLo, kSplitLo};
    const V8f hi = lo * (kSplitHi / kSplitLo);
    const V8f none = lo * 0 - 1;
    // the ratios of a chunk (none where no candidate or sumq2 <= 0), and whether a sum is out of range
    auto ratios = [&](int t0, V8f* r, V8i& bad) __attribute__((always_inline)) {
        V8f vx[NV], v2[NV];
        s.chunk(t0, vx, v2);
        const V8i valid = (lane + t0) <= n;
        for (int v = 0; v < NV; ++v) {
            const V8i ok = valid & (v2[v] > 0);
            bad |= ok & ~((v2[v] >= lo) & (v2[v] <= hi) & (vx[v] <= hi) & (vx[v] >= -hi));
            r[v] = ok ? vx[v] * vx[v] / v2[v] : none;
        }
    };
    // pass 1: per chunk the largest ratio of each lane over the variants
    V8f cmax[MaxChunks];
    uint8_t ci1[MaxChunks], ct0[MaxChunks];
    V8f mx = none;
    V8i bad = {};
    int nc = 0;
    for (int i1 = 0; i1 <= n; ++i1) {
        s.row(i1);
        for (int t0 = i1; t0 <= n; t0 += 8) {
            V8f r[NV];
            ratios(t0, r, bad);
            V8f m = r[0];
            for (int v = 1; v < NV; ++v)
                m = m > r[v] ? m : r[v];
            cmax[nc] = m;
            mx = mx > m ? mx : m;
            ci1[nc] = static_cast<uint8_t>(i1);
            ct0[nc] = static_cast<uint8_t>(t0);
            ++nc;
        }
    }
    if (laneBits(bad)) return false;
    float rmax = mx[0];
    for (int t = 1; t < 8; ++t)
        rmax = std::max(rmax, mx[t]);
    if (!(rmax >= kSplitLo && rmax <= kSplitHi)) return false;
    const float cut = rmax - rmax * kSplitCut, low = cut - cut * kSplitBand;
    const V8f vcut = lo * 0 + cut, vlow = lo * 0 + low;
    // pass 2: the chunks holding a ratio >= low again, the scalar scan over those >= cut
    SplitBest b = out;
    V8i band = {};
    for (int k = 0; k < nc; ++k) {
        if (!laneBits(cmax[k] >= vlow)) continue;
        s.row(ci1[k]);
        V8f r[NV];
        V8i unused = {};
        ratios(ct0[k], r, unused);
        unsigned bits[NV];
        for (int v = 0; v < NV; ++v) {
            band |= (r[v] >= vlow) & (r[v] < vcut);
            bits[v] = laneBits(r[v] >= vcut);
        }
        for (int t = 0; t < 8; ++t)
            for (int v = 0; v < NV; ++v) {
                if (!((bits[v] >> t) & 1)) continue;
                float vx, v2;
                s.one(ci1[k], ct0[k] + t, v, vx, v2);
                if (v2 > 0 && vx * vx > b.score * v2) {
                    b.scale = vx / v2;
                    b.score = b.scale * vx;
                    b.i1 = ci1[k];
                    b.i2 = ct0[k] + t;
                    b.var = v;
                }
            }
    }
    if (laneBits(band)) return false;
    out = b;
    return true;
}

// Chunks of 8 values of i2 over all i1 for n sorted values.
constexpr int splitChunks(int n) {
    int c = 0;
    for (int i1 = 0; i1 <= n; ++i1)
        c += (n + 1 - i1 + 7) / 8;
    return c;
}

__attribute__((always_inline)) inline void iq1sSplitBody(const Iq1sSplit& a, SplitBest& out) {
    if (a.n == 32 && splitByMax<Iq1sSums, splitChunks(32)>(Iq1sSums(a), a.n, out)) return;
    splitScan(Iq1sSums(a), a.n, out);
}

__attribute__((always_inline)) inline void iq1mSplitBody(const Iq1mSplit& a, SplitBest& out) {
    if (a.n == 16 && splitByMax<Iq1mSums, splitChunks(16)>(Iq1mSums(a), a.n, out)) return;
    splitScan(Iq1mSums(a), a.n, out);
}
#pragma GCC diagnostic pop

// Without AVX2 the search by the largest ratio (with its divisions and selects split into SSE halves) is
// slower than the chunked scan, which gives the same answer: with QZ_NO_AVX2=1 the tests check the scan and
// the insertion sort, otherwise the search by the largest ratio and the ranking.
void iq1sSplitPortable(const Iq1sSplit& a, SplitBest& b) {
    splitScan(Iq1sSums(a), a.n, b);
}
void iq1mSplitPortable(const Iq1mSplit& a, SplitBest& b) {
    splitScan(Iq1mSums(a), a.n, b);
}
#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2"))) void iq1sSplitAvx2(const Iq1sSplit& a, SplitBest& b) {
    iq1sSplitBody(a, b);
}
__attribute__((target("avx2"))) void iq1mSplitAvx2(const Iq1mSplit& a, SplitBest& b) {
    iq1mSplitBody(a, b);
}
#endif
void iq1sSplit(const Iq1sSplit& a, SplitBest& b) {
#if defined(__x86_64__) || defined(__i386__)
    static const bool avx2 = detectAvx2();
    if (avx2) return iq1sSplitAvx2(a, b);
#endif
    iq1sSplitPortable(a, b);
}
void iq1mSplit(const Iq1mSplit& a, SplitBest& b) {
#if defined(__x86_64__) || defined(__i386__)
    static const bool avx2 = detectAvx2();
    if (avx2) return iq1mSplitAvx2(a, b);
#endif
    iq1mSplitPortable(a, b);
}

// layout: d @0, qs[32] @2, qh u16[8] @34 (3 index bits x 4 | scale << 12 | delta sign << 15)
void iq1sBlock(const float* xbl, const float* qwBlock, uint8_t* y) {
    const Lattice& lat = latticeIQ1();
    constexpr int bs = 32;
    const float xp[3] = {-1 + kIQ1Delta, kIQ1Delta, 1 + kIQ1Delta};
    const float xm[3] = {-1 - kIQ1Delta, -kIQ1Delta, 1 - kIQ1Delta};
    float scales[QK / bs], weight[bs], sumx[bs + 1 + 8] = {}, sumw[bs + 1 + 8] = {};
    int8_t L[bs], shifts[QK / bs];
    int idx[bs];
    uint16_t index[bs / 8];
    uint16_t qh[8] = {};
    std::memset(y, 0, 50);
    float maxScale = 0;
    const float sigma2 = 2 * sumSquares(xbl) / QK;
    for (int ib = 0; ib < QK / bs; ++ib) {
        const float* xb = xbl + bs * ib;
        if (qwBlock) {
            imatrixWeights(xb, qwBlock + bs * ib, sigma2, bs, weight);
        } else {
            for (int i = 0; i < bs; ++i)
                weight[i] = 1.f * std::sqrt(sigma2 + xb[i] * xb[i]);
        }
        float max = std::fabs(xb[0]);
        for (int i = 1; i < bs; ++i)
            max = std::max(max, std::fabs(xb[i]));
        if (max < 1e-12f) {
            scales[ib] = 0;
            shifts[ib] = 1;
            continue;
        }
        sortedOrder<bs>(xb, idx);
        sumx[0] = sumw[0] = 0;
        for (int j = 0; j < bs; ++j) {
            const int i = idx[j];
            sumx[j + 1] = sumx[j] + weight[i] * xb[i];
            sumw[j + 1] = sumw[j] + weight[i];
        }
        SplitBest sb;
        sb.scale = max;
        iq1sSplit(Iq1sSplit{sumx, sumw, bs, {xp, xm}}, sb);
        float scale = sb.scale;
        const int besti1 = sb.i1, besti2 = sb.i2;
        int bestShift = sb.var < 0 ? 0 : sb.var == 0 ? 1 : -1;
        if (besti1 < 0 || besti2 < 0 || bestShift == 0) {
            scales[ib] = 0;
            shifts[ib] = 1;
            continue;
        }
        for (int j = 0; j < besti1; ++j)
            L[idx[j]] = 0;
        for (int j = besti1; j < besti2; ++j)
            L[idx[j]] = 1;
        for (int j = besti2; j < bs; ++j)
            L[idx[j]] = 2;
        if (scale < 0) {
            for (int j = 0; j < bs; ++j)
                L[j] = static_cast<int8_t>(2 - L[j]);
            scale = -scale;
            bestShift = -bestShift;
        }
        bool allOnGrid = true;
        const float* xx = bestShift == 1 ? xp : xm;
        for (int k = 0; k < bs / 8; ++k) {
            const int u = packFields(L + 8 * k, 8, 2);
            int gi = lat.map[u];
            if (gi < 0) {
                allOnGrid = false;
                gi = iq1BestNeighbour(lat, neighboursOf(lat, gi), xb + 8 * k, weight + 8 * k, scale, xx,
                                      L + 8 * k);
            }
            index[k] = static_cast<uint16_t>(gi);
        }
        if (!allOnGrid) {
            float sumqx = 0, sumq2 = 0;
            for (int k = 0; k < bs / 8; ++k) {
                const int8_t* pg = lat.point(index[k]);
                for (int j = 0; j < 8; ++j) {
                    const float w = weight[8 * k + j];
                    const float q = xx[(pg[j] - 1) / 2];
                    sumqx += w * q * xb[8 * k + j];
                    sumq2 += w * q * q;
                }
            }
            if (sumqx > 0 && sumq2 > 0) scale = sumqx / sumq2;
        }
        uint16_t h = 0;
        for (int k = 0; k < bs / 8; ++k) {
            y[2 + (bs / 8) * ib + k] = static_cast<uint8_t>(index[k] & 255);
            h = static_cast<uint16_t>(h | ((index[k] >> 8) << (3 * k)));
        }
        qh[ib] = h;
        scales[ib] = scale;
        shifts[ib] = static_cast<int8_t>(bestShift);
        maxScale = std::max(maxScale, scale);
    }
    if (maxScale) {
        const float d = maxScale / 15;
        putHalf(y, fp32ToFp16(d * 1.125f));
        const float id = 1 / d;
        for (int ib = 0; ib < QK / bs; ++ib) {
            int l = clampi(nearest_int(0.5f * (id * scales[ib] - 1)), 0, 7);
            if (shifts[ib] == -1) l |= 8;
            qh[ib] = static_cast<uint16_t>(qh[ib] | (l << 12));
        }
    }
    std::memcpy(y + 34, qh, 16);
}

// layout: qs[32] @0, qh[16] @32 (per 16: idx highs bits 0-2 / 4-6, delta signs bits 3 / 7),
// scales[8] @48 = 4 x u16 (3-bit scale per 16 in bits 0-11, f16 super-scale nibbles in bits 12-15)
void iq1mBlock(const float* xbl, const float* qwBlock, uint8_t* y) {
    const Lattice& lat = latticeIQ1();
    constexpr int bs = 16;
    const float xp[3] = {-1 + kIQ1Delta, kIQ1Delta, 1 + kIQ1Delta};
    const float xm[3] = {-1 - kIQ1Delta, -kIQ1Delta, 1 - kIQ1Delta};
    const uint8_t masks[4] = {0x00, 0x80, 0x08, 0x88};
    float scales[QK / bs], weightAll[QK];
    int8_t L[bs], shifts[QK / bs];
    int idx[bs];
    uint16_t index[bs / 8];
    uint8_t* qs = y;
    uint8_t* qh = y + 32;
    uint16_t sc[4] = {};
    std::memset(y, 0, 56);
    float maxScale = 0;
    const float sigma2 = 2 * sumSquares(xbl) / QK;
    // the weights of the whole super-block, used by both passes
    if (qwBlock) {
        imatrixWeights(xbl, qwBlock, sigma2, QK, weightAll);
    } else {
        for (int i = 0; i < QK; ++i)
            weightAll[i] = xbl[i] * xbl[i];
    }
    for (int ib = 0; ib < QK / bs; ++ib) {
        const float* xb = xbl + bs * ib;
        const float* weight = weightAll + bs * ib;
        float max = std::fabs(xb[0]);
        for (int i = 1; i < bs; ++i)
            max = std::max(max, std::fabs(xb[i]));
        if (max < 1e-7f) {
            scales[ib] = 0;
            shifts[ib] = 0;
            continue;
        }
        sortedOrder<bs>(xb, idx);
        SplitBest sb;
        sb.scale = max;
        {
            // prefix sums per half (each half of 8 may use x_p or x_m), padded for 8-wide loads
            float px[2][bs + 1 + 8] = {}, pw[2][bs + 1 + 8] = {};
            for (int j = 0; j < bs; ++j) {
                const int i = idx[j];
                const int h = i < bs / 2 ? 0 : 1;
                px[h][j + 1] = px[h][j] + weight[i] * xb[i];
                px[1 - h][j + 1] = px[1 - h][j];
                pw[h][j + 1] = pw[h][j] + weight[i];
                pw[1 - h][j + 1] = pw[1 - h][j];
            }
            const float p2 = xp[2], m2 = xm[2];
            Iq1mSplit a{{px[0], px[1]}, {pw[0], pw[1]}, bs, {}, {}, {}, {}, 0, 0, 0, 0};
            for (int h = 0; h < 2; ++h) {
                a.txp[h] = px[h][bs] * p2;
                a.txm[h] = px[h][bs] * m2;
                a.twp[h] = pw[h][bs] * p2 * p2;
                a.twm[h] = pw[h][bs] * m2 * m2;
            }
            a.cp1 = xp[0] * xp[0] - xp[1] * xp[1];
            a.cp2 = xp[1] * xp[1] - xp[2] * xp[2];
            a.cm1 = xm[0] * xm[0] - xm[1] * xm[1];
            a.cm2 = xm[1] * xm[1] - xm[2] * xm[2];
            iq1mSplit(a, sb);
        }
        float scale = sb.scale;
        const int besti1 = sb.i1, besti2 = sb.i2;
        int bestK = sb.var;
        if (besti1 < 0 || besti2 < 0 || bestK < 0) {
            scales[ib] = 0;
            shifts[ib] = 0;
            continue;
        }
        for (int j = 0; j < besti1; ++j)
            L[idx[j]] = 0;
        for (int j = besti1; j < besti2; ++j)
            L[idx[j]] = 1;
        for (int j = besti2; j < bs; ++j)
            L[idx[j]] = 2;
        if (scale < 0) {
            for (int j = 0; j < bs; ++j)
                L[j] = static_cast<int8_t>(2 - L[j]);
            scale = -scale;
            bestK = 3 - bestK;
        }
        auto levels = [&](int k, int shift) -> const float* {
            if (k == 0) return shift < 2 ? xp : xm;
            return shift % 2 == 0 ? xp : xm;
        };
        bool allOnGrid = true;
        for (int k = 0; k < bs / 8; ++k) {
            const float* xx = levels(k, bestK);
            int gi = lat.map[packFields(L + 8 * k, 8, 2)];
            if (gi < 0) {
                allOnGrid = false;
                gi = iq1BestNeighbour(lat, neighboursOf(lat, gi), xb + 8 * k, weight + 8 * k, scale, xx,
                                      L + 8 * k);
            }
            index[k] = static_cast<uint16_t>(gi);
        }
        if (!allOnGrid) {
            float sx = 0, s2 = 0;
            for (int k = 0; k < bs / 8; ++k) {
                const float* xx = levels(k, bestK);
                const int8_t* pg = lat.point(index[k]);
                for (int j = 0; j < 8; ++j) {
                    const float w = weight[8 * k + j];
                    const float q = xx[(pg[j] - 1) / 2];
                    sx += w * q * xb[8 * k + j];
                    s2 += w * q * q;
                }
            }
            if (sx > 0 && s2 > 0) scale = sx / s2;
        }
        qs[2 * ib] = static_cast<uint8_t>(index[0] & 255);
        qs[2 * ib + 1] = static_cast<uint8_t>(index[1] & 255);
        qh[ib] = static_cast<uint8_t>((index[0] >> 8) | ((index[1] >> 8) << 4));
        scales[ib] = scale;
        shifts[ib] = static_cast<int8_t>(bestK);
        maxScale = std::max(maxScale, scale);
    }
    if (!maxScale) return;
    float d = maxScale / 15;
    const float id = 1 / d;
    float sx = 0, s2 = 0;
    for (int ib = 0; ib < QK / bs; ++ib) {
        const int l = clampi(nearest_int(0.5f * (id * scales[ib] - 1)), 0, 7);
        sc[ib / 4] = static_cast<uint16_t>(sc[ib / 4] | (l << (3 * (ib % 4))));
        qh[ib] = static_cast<uint8_t>(qh[ib] | masks[shifts[ib]]);
        const float* xb = xbl + bs * ib;
        const float* weight = weightAll + bs * ib;
        for (int k = 0; k < bs / 8; ++k) {
            const float* xx = k == 0 ? (shifts[ib] < 2 ? xp : xm) : (shifts[ib] % 2 == 0 ? xp : xm);
            const int gi = qs[2 * ib + k] + ((qh[ib] << (8 - 4 * k)) & 0x700);
            const int8_t* pg = lat.point(gi);
            for (int j = 0; j < 8; ++j) {
                const float w = weight[8 * k + j];
                const float q = xx[(pg[j] - 1) / 2] * (2 * l + 1);
                sx += w * q * xb[8 * k + j];
                s2 += w * q * q;
            }
        }
    }
    if (s2 > 0) d = sx / s2;
    const uint16_t h = fp32ToFp16(d * 1.1125f);
    sc[0] = static_cast<uint16_t>(sc[0] | ((h & 0x000F) << 12));
    sc[1] = static_cast<uint16_t>(sc[1] | ((h & 0x00F0) << 8));
    sc[2] = static_cast<uint16_t>(sc[2] | ((h & 0x0F00) << 4));
    sc[3] = static_cast<uint16_t>(sc[3] | (h & 0xF000));
    std::memcpy(y + 48, sc, 8);
}
} // namespace

void quantizeRowsIQ1_S(const float* s, uint8_t* d, int64_t nr, int64_t nc, const float* im) {
    rowsOf<iq1sBlock, 50>(s, d, nr, nc, im);
}
void quantizeRowsIQ1_M(const float* s, uint8_t* d, int64_t nr, int64_t nc, const float* im) {
    rowsOf<iq1mBlock, 56>(s, d, nr, nc, im);
}
} // namespace qz::ggml
