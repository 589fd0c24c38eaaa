#include "exl2/exl2_quant.h"

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QZ_EXL2_X86 1
#else
#define QZ_EXL2_X86 0
#endif

#include "common/fp16.h"
#include "common/parallel.h"

namespace qz::exl2 {

namespace {

using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic>; // column-major
using RowMatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using StrideMapF = Eigen::Map<RowMatF, 0, Eigen::OuterStride<>>;
using ConstStrideMapF = Eigen::Map<const RowMatF, 0, Eigen::OuterStride<>>;

constexpr int kPGrid = 96;
constexpr float kMinP = 0.70f, kMaxP = 1.20f, kNorm = 3.5f;
constexpr float kRound = 12582912.0f; // 1.5·2^23: (x + c) − c rounds |x| < 2^22 to an integer, ties to even

inline float fp16RoundInline(float p) {
    uint32_t u;
    std::memcpy(&u, &p, 4);
    const uint32_t s = u & 0x80000000u, a = u & 0x7FFFFFFFu;
    uint32_t r;
    if (a >= 0x38800000u) { // |p| >= 2^-14: a normal half (or overflow)
        if (a >= 0x477FF000u)
            r = a > 0x7F800000u ? a : 0x7F800000u; // NaN kept, >= 65520 -> inf
        else
            r = (a + 0xFFFu + ((a >> 13) & 1u)) & ~0x1FFFu; // keep 10 mantissa bits, RNE
    } else {                                                // half subnormal: a multiple of 2^-24, RNE
        float f;
        std::memcpy(&f, &a, 4);
        f = (f + 0.75f) - 0.75f; // ulp(0.75) = 2^-24
        std::memcpy(&r, &f, 4);
    }
    r |= s;
    float out;
    std::memcpy(&out, &r, 4);
    return out;
}

inline float rintSmall(float x) {
    return (x + kRound) - kRound;
} // exact rint for |x| < 2^22

// The candidate p values, in fp32 as the kernel evaluates them: p_i = min_p·(1 − i/96) + max_p·(i/96).
const std::vector<float>& pGrid() {
    static const std::vector<float> g = [] {
        std::vector<float> v(kPGrid + 1);
        for (int i = 0; i <= kPGrid; ++i) {
            const float pi = static_cast<float>(i) / static_cast<float>(kPGrid);
            v[i] = kMinP * (1.0f - pi) + kMaxP * pi;
        }
        return v;
    }();
    return g;
}

// acc[n] += |clamp(rint(w[n]/s[n]), lo, hi)·s[n] − w[n]|^3.5 for n < cnt.
void pErrScalar(const float* w, const float* s, float* acc, int cnt, float lo, float hi) {
    for (int n = 0; n < cnt; ++n) {
        float x = w[n] / s[n];
        x = std::min(std::max(x, lo - 1.0f), hi + 1.0f);
        float q = rintSmall(x);
        q = std::min(std::max(q, lo), hi);
        const float e = std::fabs(q * s[n] - w[n]);
        acc[n] += e * e * e * std::sqrt(e);
    }
}

#if QZ_EXL2_X86
__attribute__((target("avx2"))) void pErrAvx2(const float* w, const float* s, float* acc, int cnt, float lo,
                                              float hi) {
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    const __m256 absMask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    int n = 0;
    for (; n + 8 <= cnt; n += 8) {
        const __m256 wv = _mm256_loadu_ps(w + n), sv = _mm256_loadu_ps(s + n);
        __m256 q = _mm256_round_ps(_mm256_div_ps(wv, sv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        q = _mm256_min_ps(_mm256_max_ps(q, vlo), vhi);
        const __m256 e = _mm256_and_ps(_mm256_sub_ps(_mm256_mul_ps(q, sv), wv), absMask);
        const __m256 e3 = _mm256_mul_ps(_mm256_mul_ps(e, e), e);
        _mm256_storeu_ps(acc + n,
                         _mm256_add_ps(_mm256_loadu_ps(acc + n), _mm256_mul_ps(e3, _mm256_sqrt_ps(e))));
    }
    if (n < cnt) pErrScalar(w + n, s + n, acc + n, cnt - n, lo, hi);
}
bool haveAvx2() {
    static const bool yes = [] {
        if (const char* env = std::getenv("QZ_NO_AVX2"); env && *env && *env != '0') return false;
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") != 0;
    }();
    return yes;
}
#endif

void pErr(const float* w, const float* s, float* acc, int cnt, float lo, float hi) {
#if QZ_EXL2_X86
    if (haveAvx2()) return pErrAvx2(w, s, acc, cnt, lo, hi);
#endif
    pErrScalar(w, s, acc, cnt, lo, hi);
}

#if QZ_EXL2_X86
// W[r][n0..n1) −= Σ_k P[r][k]·E[k][n0..n1) for r in [0, rows): W rows at stride ldw, P [rows][gr], E [gr][*]
// at stride lde (the group's scaled errors). 4 rows × 16 columns per register tile, AVX2 + FMA.
__attribute__((target("avx2,fma"))) void trailingAvx2(float* W, int64_t ldw, int rows, const float* P, int gr,
                                                      const float* E, int64_t lde, int cols) {
    constexpr int kCB = 256; // column block: E block gr × 256 stays in L2
    std::vector<float> Eb(static_cast<size_t>(gr) * kCB);
    for (int c0 = 0; c0 < cols; c0 += kCB) {
        const int cw = std::min(kCB, cols - c0);
        for (int k = 0; k < gr; ++k)
            std::memcpy(&Eb[static_cast<size_t>(k) * kCB], E + k * lde + c0, cw * 4);
        const int c16 = cw / 16 * 16;
        int r = 0;
        for (; r + 4 <= rows; r += 4) {
            const float* p0 = P + static_cast<size_t>(r) * gr;
            const float* p1 = p0 + gr;
            const float* p2 = p1 + gr;
            const float* p3 = p2 + gr;
            for (int n = 0; n < c16; n += 16) {
                __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00,
                       a30 = a00, a31 = a00;
                const float* e = Eb.data() + n;
                for (int k = 0; k < gr; ++k, e += kCB) {
                    const __m256 e0 = _mm256_loadu_ps(e), e1 = _mm256_loadu_ps(e + 8);
                    __m256 h = _mm256_broadcast_ss(p0 + k);
                    a00 = _mm256_fmadd_ps(h, e0, a00);
                    a01 = _mm256_fmadd_ps(h, e1, a01);
                    h = _mm256_broadcast_ss(p1 + k);
                    a10 = _mm256_fmadd_ps(h, e0, a10);
                    a11 = _mm256_fmadd_ps(h, e1, a11);
                    h = _mm256_broadcast_ss(p2 + k);
                    a20 = _mm256_fmadd_ps(h, e0, a20);
                    a21 = _mm256_fmadd_ps(h, e1, a21);
                    h = _mm256_broadcast_ss(p3 + k);
                    a30 = _mm256_fmadd_ps(h, e0, a30);
                    a31 = _mm256_fmadd_ps(h, e1, a31);
                }
                float* w0 = W + static_cast<int64_t>(r) * ldw + c0 + n;
                float* w1 = w0 + ldw;
                float* w2 = w1 + ldw;
                float* w3 = w2 + ldw;
                _mm256_storeu_ps(w0, _mm256_sub_ps(_mm256_loadu_ps(w0), a00));
                _mm256_storeu_ps(w0 + 8, _mm256_sub_ps(_mm256_loadu_ps(w0 + 8), a01));
                _mm256_storeu_ps(w1, _mm256_sub_ps(_mm256_loadu_ps(w1), a10));
                _mm256_storeu_ps(w1 + 8, _mm256_sub_ps(_mm256_loadu_ps(w1 + 8), a11));
                _mm256_storeu_ps(w2, _mm256_sub_ps(_mm256_loadu_ps(w2), a20));
                _mm256_storeu_ps(w2 + 8, _mm256_sub_ps(_mm256_loadu_ps(w2 + 8), a21));
                _mm256_storeu_ps(w3, _mm256_sub_ps(_mm256_loadu_ps(w3), a30));
                _mm256_storeu_ps(w3 + 8, _mm256_sub_ps(_mm256_loadu_ps(w3 + 8), a31));
            }
        }
        // Leftover rows (all columns) and leftover columns (all rows): plain loops.
        for (int rr = 0; rr < rows; ++rr) {
            const int nStart = rr < r ? c16 : 0;
            if (nStart >= cw) continue;
            const float* pr = P + static_cast<size_t>(rr) * gr;
            float* wr = W + static_cast<int64_t>(rr) * ldw + c0;
            for (int n = nStart; n < cw; ++n) {
                float acc = 0;
                for (int k = 0; k < gr; ++k)
                    acc += pr[k] * Eb[static_cast<size_t>(k) * kCB + n];
                wr[n] -= acc;
            }
        }
    }
}

// rows[j][n0..n1) −= u[j]·e[n0..n1) for j in [0, cnt) (the in-group update), vectorized with AVX2.
__attribute__((target("avx2"))) void rankOneAvx2(float* W, int64_t ldw, const float* u, int cnt,
                                                 const float* e, int n0, int n1) {
    for (int j = 0; j < cnt; ++j) {
        const float h = u[j];
        float* rj = W + j * ldw;
        for (int n = n0; n < n1; ++n)
            rj[n] -= h * e[n];
    }
}
bool haveAvx2Fma() {
    static const bool yes = [] {
        if (const char* env = std::getenv("QZ_NO_AVX2"); env && *env && *env != '0') return false;
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }();
    return yes;
}
#endif

void rankOneScalar(float* W, int64_t ldw, const float* u, int cnt, const float* e, int n0, int n1) {
    for (int j = 0; j < cnt; ++j) {
        const float h = u[j];
        float* rj = W + j * ldw;
        for (int n = n0; n < n1; ++n)
            rj[n] -= h * e[n];
    }
}

// dst[c][r] = src[r][c] for src [rows][cols] row-major, in 32 × 32 tiles, row blocks over threads.
void transposeBlocked(const float* src, int rows, int cols, float* dst, int threads) {
    constexpr int kT = 32;
    const int rowBlocks = (rows + kT - 1) / kT;
    parallelFor(
        static_cast<size_t>(rowBlocks),
        [&](size_t b0, size_t b1, int) {
            for (size_t rb = b0; rb < b1; ++rb) {
                const int r0 = static_cast<int>(rb) * kT, r1 = std::min(rows, r0 + kT);
                for (int c0 = 0; c0 < cols; c0 += kT) {
                    const int c1 = std::min(cols, c0 + kT);
                    for (int r = r0; r < r1; ++r) {
                        const float* s = src + static_cast<size_t>(r) * cols;
                        for (int c = c0; c < c1; ++c)
                            dst[static_cast<size_t>(c) * rows + r] = s[c];
                    }
                }
            }
        },
        threads, 4);
}

// Column chunks for the threads: boundaries on multiples of 16 columns.
std::vector<int> columnChunks(int out, int threads) {
    int t = std::max(1, threads);
    if (out < 64) t = 1;
    t = std::min(t, std::max(1, out / 32));
    std::vector<int> b(t + 1, 0);
    for (int i = 1; i < t; ++i)
        b[i] = static_cast<int>(static_cast<int64_t>(out) * i / t) / 16 * 16;
    b[t] = out;
    return b;
}

void runChunks(const std::vector<int>& bounds, int threads, const std::function<void(int, int)>& fn) {
    const size_t nChunks = bounds.size() - 1;
    parallelFor(
        nChunks,
        [&](size_t b, size_t e, int) {
            for (size_t c = b; c < e; ++c)
                fn(bounds[c], bounds[c + 1]);
        },
        threads, 1);
}

// find_params for the group rows [a, b) of Wt [in][out] (row-major, stride out).
struct GroupScales {
    std::vector<uint8_t> qs;   // [out], 1..16
    std::vector<float> scale;  // [out], the decoded fp16 scale
    uint16_t qsm = 0;          // q_scale_max, fp16
    std::vector<float> colErr; // workspace: [97][out] p-search errors per column
};

void findParams(const float* Wt, int out, int a, int b, int bits, const std::vector<int>& bounds, int threads,
                GroupScales& gp, std::vector<float>& stw) {
    const float maxq = static_cast<float>((1 << bits) - 1);
    const float qzero = static_cast<float>(1 << (bits - 1));
    const float halfMaxq = maxq / 2.0f; // exact (x.5)
    gp.qs.resize(out);
    gp.scale.resize(out);
    stw.resize(out);
    std::vector<float> base(out);
    // xmax per column
    runChunks(bounds, threads, [&](int n0, int n1) {
        float* bs = base.data();
        for (int n = n0; n < n1; ++n)
            bs[n] = 0.0f;
        for (int k = a; k < b; ++k) {
            const float* row = Wt + static_cast<size_t>(k) * out;
            for (int n = n0; n < n1; ++n) {
                const float v = std::fabs(row[n]);
                bs[n] = v > bs[n] ? v : bs[n];
            }
        }
        for (int n = n0; n < n1; ++n)
            bs[n] = (bs[n] + 1e-12f) / halfMaxq;
    });
    float smax = 0.0f;
    for (int n = 0; n < out; ++n)
        smax = std::max(smax, base[n]);
    smax *= 1.0f; // scale_range
    for (int n = 0; n < out; ++n) {
        float t = std::sqrt(base[n] / smax) * 16.0f;
        t = std::nearbyint(t); // torch.round: half to even
        t = std::min(std::max(t, 1.0f), 16.0f);
        gp.qs[n] = static_cast<uint8_t>(t);
        const float tw = t / 16.0f;
        stw[n] = (tw * tw) * smax;
    }
    // p-search: Σ over rows and columns of |err|^3.5 for each of the 97 p values.
    const std::vector<float>& grid = pGrid();
    const size_t nChunks = bounds.size() - 1;
    // Each column's error per p (summed over the group's rows in fp32), then the columns summed in double in
    // column order: the choice does not depend on the number of threads.
    std::vector<float>& colErr = gp.colErr;
    colErr.resize(static_cast<size_t>(kPGrid + 1) * out);
    const float lo = -qzero, hi = maxq - qzero;
    parallelFor(
        nChunks,
        [&](size_t cb, size_t ce, int) {
            constexpr int kTile = 256;
            std::vector<float> sp(kTile);
            for (size_t c = cb; c < ce; ++c) {
                const int n0 = bounds[c], n1 = bounds[c + 1];
                for (int t0 = n0; t0 < n1; t0 += kTile) {
                    const int cnt = std::min(kTile, n1 - t0);
                    for (int i = 0; i <= kPGrid; ++i) {
                        const float p = grid[i];
                        float* acc = colErr.data() + static_cast<size_t>(i) * out + t0;
                        for (int n = 0; n < cnt; ++n) {
                            sp[n] = stw[t0 + n] * p;
                            acc[n] = 0.0f;
                        }
                        for (int k = a; k < b; ++k)
                            pErr(Wt + static_cast<size_t>(k) * out + t0, sp.data(), acc, cnt, lo, hi);
                    }
                }
            }
        },
        threads, 1);
    int best = 0;
    double bestErr = 0;
    for (int i = 0; i <= kPGrid; ++i) {
        double e = 0;
        const float* acc = colErr.data() + static_cast<size_t>(i) * out;
        for (int n = 0; n < out; ++n)
            e += acc[n];
        if (i == 0 || e < bestErr) {
            bestErr = e;
            best = i;
        }
    }
    // best_p = max_p·pif + min_p·(1 − pif) with pif = best/96, fp32 (adaptivegptq.py find_params).
    const float pif = static_cast<float>(best) / static_cast<float>(kPGrid);
    const float bestP = kMaxP * pif + kMinP * (1.0f - pif);
    const float qsmF = smax * bestP;
    gp.qsm = fp32ToFp16(qsmF);
    for (int n = 0; n < out; ++n)
        gp.scale[n] = groupScale(gp.qs[n], gp.qsm);
}

Status checkWeights(const float* W, int out, int in) {
    const size_t total = static_cast<size_t>(out) * in;
    for (size_t i = 0; i < total; ++i)
        if (!std::isfinite(W[i]))
            return makeError("EXL2: weight [" + std::to_string(i / in) + "][" + std::to_string(i % in) +
                             "] is not finite");
    return okStatus();
}

// The shared quantizer: Hinv == nullptr -> RTN (no error feedback).
Result<QuantizedLinear> quantizeImpl(const float* W, int out, int in, const std::vector<int32_t>& perm,
                                     const float* U, const QParams& qp, const std::function<bool()>& cancel,
                                     int threads) {
    if (!W) return makeError("EXL2: no weights");
    if (out <= 0 || in <= 0)
        return makeError("EXL2: empty layer (" + std::to_string(out) + " x " + std::to_string(in) + ")");
    auto plan = planGroups(qp, in);
    if (!plan) return plan.error();
    if (auto s = checkWeights(W, out, in); !s) return s.error();
    if (threads <= 0) threads = defaultThreadCount();

    QuantizedLinear q;
    q.in = in;
    q.out = out;
    q.qp = qp;
    q.groups = std::move(plan.value());
    q.perm = perm;
    q.invperm.assign(in, 0);
    for (int k = 0; k < in; ++k)
        q.invperm[perm[k]] = k;
    const int G = static_cast<int>(q.groups.size());
    q.codes.assign(static_cast<size_t>(in) * out, 0);
    q.qscale.assign(static_cast<size_t>(G) * out, 0);
    q.qscaleMax.assign(G, 0);

    // Wt [in][out] in stored (permuted) row order: a blocked transpose, then whole rows moved.
    std::vector<float> Wt(static_cast<size_t>(in) * out);
    {
        std::vector<float> T(static_cast<size_t>(in) * out);
        transposeBlocked(W, out, in, T.data(), threads);
        parallelFor(
            static_cast<size_t>(in),
            [&](size_t k0, size_t k1, int) {
                for (size_t k = k0; k < k1; ++k)
                    std::memcpy(&Wt[k * out], &T[static_cast<size_t>(perm[k]) * out], sizeof(float) * out);
            },
            threads, 64);
    }
    const auto bounds = columnChunks(out, threads);
    int maxRows = 0;
    for (const auto& g : q.groups)
        maxRows = std::max(maxRows, g.rows);
    std::vector<float> err(static_cast<size_t>(maxRows) * out);
    GroupScales gp;
    std::vector<float> stw, panel;
    std::atomic<bool> overflow{false};
#if QZ_EXL2_X86
    const bool fast = haveAvx2Fma();
#else
    const bool fast = false;
#endif

    for (int gi = 0; gi < G; ++gi) {
        if (cancel && cancel()) return cancelledError();
        const auto& grp = q.groups[gi];
        const int a = grp.firstRow, b = grp.firstRow + grp.rows, bits = grp.bits;
        findParams(Wt.data(), out, a, b, bits, bounds, threads, gp, stw);
        if ((gp.qsm & 0x7C00u) == 0x7C00u)
            return makeError(
                "EXL2: group " + std::to_string(gi) +
                ": the weights are too large for EXL2's fp16 group scale (q_scale_max overflows)");
        std::copy(gp.qs.begin(), gp.qs.end(), q.qscale.begin() + static_cast<size_t>(gi) * out);
        q.qscaleMax[gi] = gp.qsm;
        const float maxq = static_cast<float>((1 << bits) - 1);
        const float qzero = static_cast<float>(1 << (bits - 1));
        if (fast && U && b < in) { // panel[r − b][k] = U[a + k][r]: the trailing update's left factor
            const int gr = b - a;
            panel.resize(static_cast<size_t>(in - b) * gr);
            for (int k = 0; k < gr; ++k) {
                const float* src = U + static_cast<size_t>(a + k) * in;
                for (int r = b; r < in; ++r)
                    panel[static_cast<size_t>(r - b) * gr + k] = src[r];
            }
        }
        runChunks(bounds, threads, [&](int n0, int n1) {
            const float* scale = gp.scale.data();
            for (int c = a; c < b; ++c) {
                float* row = Wt.data() + static_cast<size_t>(c) * out;
                uint16_t* codes = q.codes.data() + static_cast<size_t>(c) * out;
                float* e = err.data() + static_cast<size_t>(c - a) * out;
                const float d = U ? U[static_cast<size_t>(c) * in + c] : 1.0f;
                for (int n = n0; n < n1; ++n) {
                    const float w = row[n];
                    float x = w / scale[n];
                    // Clamp first (|x| < 2^22 for the rounding trick); a NaN (0/0: a zero scale from an
                    // all-zero group, whose q_scale_max underflows fp16) takes the code qzero, as any code
                    // dequantizes to 0 there.
                    x = x > -qzero - 1.0f ? x : (x == x ? -qzero - 1.0f : 0.0f);
                    x = x < maxq - qzero + 1.0f ? x : maxq - qzero + 1.0f;
                    x = rintSmall(x) + qzero;
                    x = std::min(std::max(x, 0.0f), maxq);
                    codes[n] = static_cast<uint16_t>(x);
                    const float deq = fp16RoundInline((x - qzero) * scale[n]);
                    if (std::isinf(deq)) overflow = true;
                    e[n] = (w - deq) / d;
                }
                if (!U) continue;
                float* next = Wt.data() + static_cast<size_t>(c + 1) * out;
                const float* urow = U + static_cast<size_t>(c) * in + c + 1;
#if QZ_EXL2_X86
                if (fast) {
                    rankOneAvx2(next, out, urow, b - c - 1, e, n0, n1);
                    continue;
                }
#endif
                rankOneScalar(next, out, urow, b - c - 1, e, n0, n1);
            }
            if (U && b < in) {
                // W[b.., n0..n1) −= U[a..b, b..)ᵀ · E[a..b, n0..n1)
#if QZ_EXL2_X86
                if (fast) {
                    trailingAvx2(Wt.data() + static_cast<size_t>(b) * out + n0, out, in - b, panel.data(),
                                 b - a, err.data() + n0, out, n1 - n0);
                    return;
                }
#endif
                StrideMapF Wr(Wt.data() + static_cast<size_t>(b) * out + n0, in - b, n1 - n0,
                              Eigen::OuterStride<>(out));
                ConstStrideMapF Ub(U + static_cast<size_t>(a) * in + b, b - a, in - b,
                                   Eigen::OuterStride<>(in));
                ConstStrideMapF E(err.data() + n0, b - a, n1 - n0, Eigen::OuterStride<>(out));
                Wr.noalias() -= Ub.transpose() * E;
            }
        });
        if (overflow)
            return makeError("EXL2: group " + std::to_string(gi) +
                             ": a dequantized weight overflows fp16 (the weights are too large for EXL2)");
    }
    return q;
}

// In-place lower Cholesky factor of A (only the lower triangle is read and written), blocked right-looking
// with the panel solve and the trailing update split over threads. False if A is not positive definite.
// cancel() (optional) is polled between blocks; *cancelled is then set and false returned.
bool choleskyLowerInPlace(MatD& A, int threads, const std::function<bool()>& cancel, bool* cancelled) {
    const Eigen::Index n = A.rows();
    constexpr Eigen::Index nb = 128;
    for (Eigen::Index k0 = 0; k0 < n; k0 += nb) {
        if (cancel && cancel()) {
            *cancelled = true;
            return false;
        }
        const Eigen::Index kb = std::min(nb, n - k0);
        {
            Eigen::Ref<MatD> A11 = A.block(k0, k0, kb, kb);
            Eigen::LLT<Eigen::Ref<MatD>, Eigen::Lower> llt(A11);
            if (llt.info() != Eigen::Success) return false;
        }
        for (Eigen::Index i = 0; i < kb; ++i)
            if (!(A(k0 + i, k0 + i) > 0) || !std::isfinite(A(k0 + i, k0 + i))) return false;
        const Eigen::Index s = k0 + kb, m = n - s;
        if (m == 0) break;
        const auto L11 = A.block(k0, k0, kb, kb);
        // A21 := A21·L11⁻ᵀ by fixed chunks of 64 rows, one solve per chunk whichever thread runs it: the
        // solves' shapes, and so their rounding, do not depend on the thread count.
        const Eigen::Index rowChunks = (m + 63) / 64;
        parallelFor(
            static_cast<size_t>(rowChunks),
            [&](size_t c0, size_t c1, int) {
                for (size_t c = c0; c < c1; ++c) {
                    const Eigen::Index r0 = static_cast<Eigen::Index>(c) * 64, r1 = std::min(m, r0 + 64);
                    auto X = A.block(s + r0, k0, r1 - r0, kb);
                    L11.transpose().triangularView<Eigen::Upper>().solveInPlace<Eigen::OnTheRight>(X);
                }
            },
            threads, 2);
        // A22 −= A21·A21ᵀ on the lower triangle, by column blocks interleaved over threads.
        const Eigen::Index nBlocks = (m + nb - 1) / nb;
        const int T = static_cast<int>(std::max<Eigen::Index>(1, std::min<Eigen::Index>(threads, nBlocks)));
        parallelFor(
            static_cast<size_t>(T),
            [&](size_t t0, size_t t1, int) {
                for (size_t t = t0; t < t1; ++t)
                    for (Eigen::Index blk = static_cast<Eigen::Index>(t); blk < nBlocks; blk += T) {
                        const Eigen::Index j0 = blk * nb, jw = std::min(nb, m - j0);
                        A.block(s + j0, s + j0, m - j0, jw).noalias() -=
                            A.block(s + j0, k0, m - j0, kb) * A.block(s + j0, k0, jw, kb).transpose();
                    }
            },
            T, 1);
    }
    return true;
}

} // namespace

float fp16Round(float x) {
    return fp16RoundInline(x);
}

float groupScale(uint8_t qscale, uint16_t qscaleMaxFp16) {
    // q_scale_max·(1/256) in fp16 (the loader's w["q_scale_max"] *= 1/256 on a half tensor), then
    // fp16(qs²)·that, rounded to fp16 (dq_scale's __hmul).
    const float msc = fp16RoundInline(fp16ToFp32(qscaleMaxFp16) * (1.0f / 256.0f));
    return fp16RoundInline(static_cast<float>(static_cast<int>(qscale) * qscale) * msc);
}

Result<std::vector<QuantizedLinear::Group>> planGroups(const QParams& qp, int in) {
    if (auto s = validateQParams(qp); !s) return s.error();
    if (in <= 0) return makeError("EXL2: the layer has no input features");
    if (in % 32 != 0)
        return makeError("EXL2: input features (" + std::to_string(in) + ") must be a multiple of 32");
    if (in > 65536)
        return makeError(
            "EXL2: input features (" + std::to_string(in) +
            ") above 65536 cannot be stored (the loader keeps the permutation as 16-bit values)");
    const std::vector<int> gpb = qp.groupsPerBits(in);
    std::vector<QuantizedLinear::Group> groups;
    int row = 0, qRow = 0;
    for (size_t j = 0; j < qp.bits.size(); ++j) {
        const int bits = qp.bits[j];
        const int gs = qp.groupSize.at(bits);
        for (int g = 0; g < gpb[j]; ++g) {
            if (row >= in) break;
            const int rows = std::min(gs, in - row);
            if ((static_cast<int64_t>(rows) * bits) % 32 != 0)
                return makeError("EXL2: a group of " + std::to_string(rows) + " rows at " +
                                 std::to_string(bits) + " bits does not fill whole 32-bit words (" +
                                 qp.desc() + ", " + std::to_string(in) + " input features)");
            if (qRow > 65535) return makeError("EXL2: q_weight is too tall for q_groups' 16-bit row numbers");
            groups.push_back({bits, row, rows, qRow});
            row += rows;
            qRow += rows * bits / 32;
        }
    }
    if (row != in)
        return makeError("EXL2: the setting " + qp.desc() + " covers " + std::to_string(row) + " of " +
                         std::to_string(in) + " input rows");
    return groups;
}

Result<PreparedHessian> prepareHessian(std::vector<float> H, int n, const std::function<bool()>& cancel,
                                       int threads) {
    if (n <= 0) return makeError("EXL2: empty Hessian");
    if (H.size() != static_cast<size_t>(n) * n)
        return makeError("EXL2: Hessian has " + std::to_string(H.size()) + " values, expected " +
                         std::to_string(n) + "²");
    for (size_t i = 0; i < H.size(); ++i)
        if (!std::isfinite(H[i]))
            return makeError("EXL2: Hessian entry [" + std::to_string(i / n) + "][" + std::to_string(i % n) +
                             "] is not finite");
    if (threads <= 0) threads = defaultThreadCount();
    PreparedHessian r;
    r.n = n;
    r.perm = actOrderPerm(H, n);
    auto diag = [&](int i) { return H[static_cast<size_t>(i) * n + i]; };

    double mean = 0;
    for (int i = 0; i < n; ++i)
        mean += diag(i);
    mean /= n;
    const double damp = std::max(0.12 * mean, 1e-5);

    // R·H_perm·R (R reverses the order): element (i, j) = H[q[i]][q[j]], q[i] = perm[n−1−i].
    std::vector<int32_t> qidx(n);
    for (int i = 0; i < n; ++i)
        qidx[i] = r.perm[n - 1 - i];
    MatD A(n, n);
    bool ok = false;
    for (int attempt = 1; attempt <= 10; ++attempt) {
        if (cancel && cancel()) return cancelledError();
        parallelFor(
            static_cast<size_t>(n),
            [&](size_t j0, size_t j1, int) {
                for (size_t j = j0; j < j1; ++j) {
                    const float* col = H.data() + static_cast<size_t>(qidx[j]) * n; // H symmetric: row q[j]
                    for (int i = 0; i < n; ++i)
                        A(i, static_cast<Eigen::Index>(j)) = col[qidx[i]];
                    A(static_cast<Eigen::Index>(j), static_cast<Eigen::Index>(j)) += attempt * damp;
                }
            },
            threads, 64);
        bool cancelled = false;
        if (!choleskyLowerInPlace(A, threads, cancel, &cancelled)) {
            if (cancelled) return cancelledError();
            continue;
        }
        r.damp = attempt * damp;
        r.dampTries = attempt;
        ok = true;
        break;
    }
    if (!ok)
        return makeError(
            "EXL2: the Hessian is not invertible (Cholesky failed with the damp added 10 times, damp " +
            std::to_string(damp) + ")");
    if (cancel && cancel()) return cancelledError();
    H.clear();
    H.shrink_to_fit();

    // X = L⁻¹ (lower) by blocks of columns: X[j0.., j0..j1) solves L[j0.., j0..]·Y = [I; 0], each block in a
    // per-thread double workspace, written straight into U = R·X·R (U[i][j] = X(n−1−i, n−1−j), upper) as
    // float, so no second n × n double matrix is needed.
    r.hinv.assign(static_cast<size_t>(n) * n, 0.0f);
    constexpr int kBlock = 64;
    const int nBlocks = (n + kBlock - 1) / kBlock;
    // Blocks interleaved over threads (the first blocks are the most expensive).
    const int T = std::max(1, std::min(threads, nBlocks));
    std::atomic<bool> finite{true}, stop{false};
    parallelFor(
        static_cast<size_t>(T),
        [&](size_t t0, size_t t1, int) {
            MatD Y;
            for (size_t t = t0; t < t1; ++t)
                for (int blk = static_cast<int>(t); blk < nBlocks; blk += T) {
                    if (t == 0 && cancel && cancel()) stop = true; // only one thread polls
                    if (stop.load(std::memory_order_relaxed)) return;
                    const int j0 = blk * kBlock, w = std::min(kBlock, n - j0), m = n - j0;
                    Y.setZero(m, w);
                    for (int i = 0; i < w; ++i)
                        Y(i, i) = 1.0;
                    A.bottomRightCorner(m, m).triangularView<Eigen::Lower>().solveInPlace(Y);
                    for (int jj = 0; jj < w; ++jj) {
                        const int col = n - 1 - (j0 + jj); // U column
                        for (int ii = jj; ii < m; ++ii) {
                            const double v = Y(ii, jj);
                            if (!std::isfinite(v)) finite = false;
                            r.hinv[static_cast<size_t>(n - 1 - (j0 + ii)) * n + col] = static_cast<float>(v);
                        }
                    }
                }
        },
        T, 1);
    A.resize(0, 0);
    if (stop) return cancelledError();
    if (!finite) return makeError("EXL2: the inverse Hessian factor has non-finite values");
    return r;
}

Result<QuantizedLinear> quantizeLinear(const float* W, int out, int in, const PreparedHessian& h,
                                       const QParams& qp, const std::function<bool()>& cancel, int threads) {
    if (h.n != in || h.perm.size() != static_cast<size_t>(in) ||
        h.hinv.size() != static_cast<size_t>(in) * static_cast<size_t>(std::max(in, 0)))
        return makeError("EXL2: the prepared Hessian (" + std::to_string(h.n) +
                         " inputs) does not match the layer (" + std::to_string(in) + " inputs)");
    std::vector<char> seen(in, 0);
    for (int32_t p : h.perm) {
        if (p < 0 || p >= in || seen[p])
            return makeError("EXL2: the prepared Hessian's permutation is invalid");
        seen[p] = 1;
    }
    return quantizeImpl(W, out, in, h.perm, h.hinv.data(), qp, cancel, threads);
}

Result<QuantizedLinear> quantizeLinearRtn(const float* W, int out, int in, const QParams& qp, int threads) {
    if (in <= 0) return makeError("EXL2: the layer has no input features");
    std::vector<int32_t> perm(in);
    std::iota(perm.begin(), perm.end(), 0);
    return quantizeImpl(W, out, in, perm, nullptr, qp, {}, threads);
}

Result<QuantizedLinear> quantizeLinearRtn(const float* W, int out, int in, const QParams& qp, int threads,
                                          const std::vector<int32_t>& perm) {
    if (in <= 0) return makeError("EXL2: the layer has no input features");
    if (perm.size() != static_cast<size_t>(in))
        return makeError("EXL2: the permutation does not match the layer");
    std::vector<char> seen(in, 0);
    for (int32_t p : perm) {
        if (p < 0 || p >= in || seen[p]) return makeError("EXL2: the permutation is invalid");
        seen[p] = 1;
    }
    return quantizeImpl(W, out, in, perm, nullptr, qp, {}, threads);
}

std::vector<int32_t> actOrderPerm(const std::vector<float>& H, int n) {
    std::vector<int32_t> perm(std::max(n, 0));
    std::iota(perm.begin(), perm.end(), 0);
    if (n <= 0 || H.size() < static_cast<size_t>(n) * n) return perm;
    auto diag = [&](int i) { // NaN sorts last (prepareHessian rejects it anyway)
        const float d = H[static_cast<size_t>(i) * n + i];
        return std::isnan(d) ? -std::numeric_limits<float>::infinity() : d;
    };
    std::stable_sort(perm.begin(), perm.end(), [&](int x, int y) { return diag(x) > diag(y); });
    return perm;
}

std::vector<float> dequantize(const QuantizedLinear& q) {
    // Rows decoded into [in (original order)][out], then one blocked transpose to [out][in].
    std::vector<float> T(static_cast<size_t>(q.out) * q.in, 0.0f);
    parallelFor(
        q.groups.size(),
        [&](size_t g0, size_t g1, int) {
            std::vector<float> scale(q.out);
            for (size_t gi = g0; gi < g1; ++gi) {
                const auto& g = q.groups[gi];
                for (int n = 0; n < q.out; ++n)
                    scale[n] = groupScale(q.qscale[gi * q.out + n], q.qscaleMax[gi]);
                const float qzero = static_cast<float>(1 << (g.bits - 1));
                for (int k = g.firstRow; k < g.firstRow + g.rows; ++k) {
                    const uint16_t* codes = q.codes.data() + static_cast<size_t>(k) * q.out;
                    float* dst = T.data() + static_cast<size_t>(q.perm[k]) * q.out;
                    for (int n = 0; n < q.out; ++n)
                        dst[n] = fp16RoundInline((static_cast<float>(codes[n]) - qzero) * scale[n]);
                }
            }
        },
        0, 1);
    std::vector<float> W(static_cast<size_t>(q.out) * q.in);
    transposeBlocked(T.data(), q.in, q.out, W.data(), 0);
    return W;
}

double relativeOutputError(const float* W, const std::vector<float>& What, int out, int in,
                           const std::vector<float>& H, int threads) {
    using RowMatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::Map<const RowMatF> Hm(H.data(), in, in);
    const RowMatD Hd = Hm.cast<double>();
    const int chunk = 64;
    const int nChunks = (out + chunk - 1) / chunk;
    std::vector<double> num(nChunks, 0.0), den(nChunks, 0.0);
    parallelFor(
        static_cast<size_t>(nChunks),
        [&](size_t c0, size_t c1, int) {
            for (size_t c = c0; c < c1; ++c) {
                const int r0 = static_cast<int>(c) * chunk, nr = std::min(chunk, out - r0);
                Eigen::Map<const RowMatF> Wb(W + static_cast<size_t>(r0) * in, nr, in);
                Eigen::Map<const RowMatF> Qb(What.data() + static_cast<size_t>(r0) * in, nr, in);
                const RowMatD Wd = Wb.cast<double>();
                const RowMatD D = Wd - Qb.cast<double>();
                num[c] = ((D * Hd).cwiseProduct(D)).sum();
                den[c] = ((Wd * Hd).cwiseProduct(Wd)).sum();
            }
        },
        threads, 1);
    const double a = std::accumulate(num.begin(), num.end(), 0.0),
                 b = std::accumulate(den.begin(), den.end(), 0.0);
    return b > 0 ? a / b : 0.0;
}

PackedLinear pack(const QuantizedLinear& q) {
    PackedLinear p;
    const int G = static_cast<int>(q.groups.size());
    p.outPad = (static_cast<int64_t>(q.out) + 31) / 32 * 32;
    p.qRows = 0;
    for (const auto& g : q.groups)
        p.qRows += static_cast<int64_t>(g.rows) * g.bits / 32;
    p.qWeight.assign(static_cast<size_t>(p.qRows * p.outPad), 0);
    for (const auto& g : q.groups) {
        const uint32_t pad = 1u << (g.bits - 1);
        for (int64_t n = 0; n < p.outPad; ++n) {
            for (int i = 0; i < g.rows; ++i) {
                const uint32_t v = n < q.out ? q.codes[static_cast<size_t>(g.firstRow + i) * q.out + n] : pad;
                const int64_t bit = static_cast<int64_t>(i) * g.bits;
                const int64_t word = g.qRow + bit / 32;
                const int shift = static_cast<int>(bit % 32);
                uint32_t* w0 =
                    reinterpret_cast<uint32_t*>(&p.qWeight[static_cast<size_t>(word * p.outPad + n)]);
                *w0 |= v << shift;
                if (shift + g.bits > 32) {
                    uint32_t* w1 = reinterpret_cast<uint32_t*>(
                        &p.qWeight[static_cast<size_t>((word + 1) * p.outPad + n)]);
                    *w1 |= v >> (32 - shift);
                }
            }
        }
    }
    const int64_t sw = p.outPad / 8;
    p.qScale.assign(static_cast<size_t>(G * sw), 0);
    for (int gi = 0; gi < G; ++gi)
        for (int64_t n = 0; n < p.outPad; ++n) {
            const uint32_t v =
                n < q.out ? static_cast<uint32_t>(q.qscale[static_cast<size_t>(gi) * q.out + n] - 1) & 15u
                          : 15u;
            uint32_t* w = reinterpret_cast<uint32_t*>(&p.qScale[static_cast<size_t>(gi * sw + n / 8)]);
            *w |= v << (4 * (n % 8));
        }
    p.qScaleMax = q.qscaleMax;
    p.qGroups.resize(2 * static_cast<size_t>(G));
    for (int gi = 0; gi < G; ++gi) {
        p.qGroups[2 * gi] = static_cast<int16_t>(q.groups[gi].bits);
        p.qGroups[2 * gi + 1] = static_cast<int16_t>(static_cast<uint16_t>(q.groups[gi].qRow));
    }
    p.qInvperm = q.invperm;
    return p;
}

} // namespace qz::exl2
