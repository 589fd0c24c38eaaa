// Helper routines of ggml's reference quantizers, written from README.md B.4.
// Float evaluation order is significant: each expression is written in the order the reference
// evaluates it (a*b*c is (a*b)*c), and every accumulator is a float.
#include "ggml/quant_helpers.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace qz::ggml {

namespace {

inline int clampInt(int v, int lo, int hi) { return std::max(lo, std::min(hi, v)); }

// Weight used by make_qx_quants for element value xi.
inline float qxWeight(const float* qw, int i, int rmseType, float xi) {
    if (qw) return qw[i];
    switch (rmseType) {
    case 1: return xi * xi;
    case 2: return 1.f;
    case 3: return std::fabs(xi);
    default: return std::sqrt(std::fabs(xi));
    }
}

constexpr int kQxMaxN = 64;
constexpr int kQxCands = 19;  // lane 0: -nmax/max; lanes 1..18: is = -9..-1, 1..9

// The search, over vectors of W lanes (VF / VI: float / int32 vectors of W lanes). Inlined into the
// portable entry (W = 4, SSE2) and into the AVX2 one (W = 8: 3 vectors instead of 5 per element); the
// lanes' arithmetic is the same IEEE operations either way.
template <class VF, class VI, int W>
__attribute__((always_inline)) inline float qxSearchBody(int n, int nmax, const float* x, int8_t* L, const float* w,
                                                         float max) {
    constexpr int kVecs = (kQxCands + W - 1) / W;
    float isc[W * kVecs];
    isc[0] = static_cast<float>(-nmax) / max;
    int k = 1;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        isc[k++] = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
    }
    for (; k < W * kVecs; ++k) isc[k] = isc[0];  // padding lanes, never compared
    VF vis[kVecs], slx[kVecs], sl2[kVecs];
    for (int v = 0; v < kVecs; ++v) {
        std::memcpy(&vis[v], isc + W * v, sizeof(VF));
        slx[v] = VF{};
        sl2[v] = VF{};
    }
    const VI lo = VI{} - nmax;
    const VI hi = VI{} + (nmax - 1);
    for (int i = 0; i < n; ++i) {
        const float xi = x[i];
        const float wi = w[i];
        const float wx = wi * xi;
        for (int v = 0; v < kVecs; ++v) {
            const VF shifted = vis[v] * xi + 12582912.f;  // nearest_int(iscale * x[i])
            VI l = ((VI)shifted & 0x007fffff) - 0x00400000;
            l = l > hi ? hi : l;  // clampInt(l, -nmax, nmax - 1)
            l = l < lo ? lo : l;
            const VF fl = __builtin_convertvector(l, VF);
            slx[v] += wx * fl;       // w * x[i] * l
            sl2[v] += wi * fl * fl;  // w * l * l
        }
    }
    float sx[W * kVecs], s2[W * kVecs];
    for (int v = 0; v < kVecs; ++v) {
        std::memcpy(sx + W * v, &slx[v], sizeof(VF));
        std::memcpy(s2 + W * v, &sl2[v], sizeof(VF));
    }
    float scale = s2[0] != 0.f ? sx[0] / s2[0] : 0.0f;
    float best = scale * sx[0];
    int kept = 0;
    for (k = 1; k < kQxCands; ++k) {
        if (s2[k] > 0 && sx[k] * sx[k] > best * s2[k]) {
            scale = sx[k] / s2[k];
            best = scale * sx[k];
            kept = k;
        }
    }
    for (int i = 0; i < n; ++i) {
        const int l = nearest_int(isc[kept] * x[i]);
        L[i] = static_cast<int8_t>(nmax + clampInt(l, -nmax, nmax - 1));
    }
    return scale;
}

typedef float V4f __attribute__((vector_size(16)));
typedef int32_t V4i __attribute__((vector_size(16)));

float qxSearchPortable(int n, int nmax, const float* x, int8_t* L, const float* w, float max) {
    return qxSearchBody<V4f, V4i, 4>(n, nmax, x, L, w, max);
}

#if defined(__x86_64__) || defined(__i386__)
typedef float V8f __attribute__((vector_size(32)));
typedef int32_t V8i __attribute__((vector_size(32)));

// No FMA in the target: a contracted product would change the sums' bits.
__attribute__((target("avx2"))) float qxSearchAvx2(int n, int nmax, const float* x, int8_t* L, const float* w,
                                                   float max) {
    return qxSearchBody<V8f, V8i, 8>(n, nmax, x, L, w, max);
}

bool detectAvx2() {
    if (const char* env = std::getenv("QZ_NO_AVX2"); env && *env && *env != '0') return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}
#endif

// make_qx_quants' weighted scale search (rmse_type >= 1, one weight per element in w, n <= kQxMaxN):
// the first candidate iscale = -nmax/max and the 18 candidates is = -9..-1, 1..9 are evaluated side by
// side, several per vector (GCC/Clang vector extensions: 4 lanes with SSE2, 8 with AVX2 where the CPU has
// it; no FMA, -ffp-contract=off). Each lane accumulates its own sumlx and suml2 over i = 0..n-1 in the
// reference order, with the reference expressions ((w*x)*l and (w*l)*l) and the same nearest_int bit trick
// and clamp, so every lane's sums are bit-identical to the scalar loop's. The candidates are then compared
// one after the other in the reference order, and L is written once, for the candidate the reference
// keeps last.
float qxSearchWeighted(int n, int nmax, const float* x, int8_t* L, const float* w, float max) {
#if defined(__x86_64__) || defined(__i386__)
    static const bool avx2 = detectAvx2();
    if (avx2) return qxSearchAvx2(n, nmax, x, L, w, max);
#endif
    return qxSearchPortable(n, nmax, x, L, w, max);
}

}  // namespace

float make_qx_quants(int n, int nmax, const float* x, int8_t* L, int rmse_type, const float* qw) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = static_cast<float>(-nmax) / max;
    if (rmse_type == 0) {
        for (int i = 0; i < n; ++i) {
            const int l = nearest_int(iscale * x[i]);
            L[i] = static_cast<int8_t>(nmax + clampInt(l, -nmax, nmax - 1));
        }
        return 1 / iscale;
    }
    if (rmse_type >= 1 && n <= kQxMaxN) {
        if (qw) return qxSearchWeighted(n, nmax, x, L, qw, max);
        float w[kQxMaxN];
        for (int i = 0; i < n; ++i) w[i] = qxWeight(nullptr, i, rmse_type, x[i]);
        return qxSearchWeighted(n, nmax, x, L, w, max);
    }
    bool returnEarly = false;
    if (rmse_type < 0) {
        rmse_type = -rmse_type;
        returnEarly = true;
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = clampInt(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = static_cast<int8_t>(l + nmax);
        const float w = qxWeight(qw, i, rmse_type, x[i]);
        const float fl = static_cast<float>(l);
        sumlx += w * x[i] * fl;
        suml2 += w * fl * fl;
    }
    float scale = suml2 != 0.f ? sumlx / suml2 : 0.0f;
    if (returnEarly) return suml2 > 0 ? 0.5f * (scale + 1 / iscale) : 1 / iscale;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            const int l = clampInt(nearest_int(iscale * x[i]), -nmax, nmax - 1);
            const float w = qxWeight(qw, i, rmse_type, x[i]);
            const float fl = static_cast<float>(l);
            sumlx += w * x[i] * fl;
            suml2 += w * fl * fl;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                const int l = nearest_int(iscale * x[i]);
                L[i] = static_cast<int8_t>(nmax + clampInt(l, -nmax, nmax - 1));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

float make_q3_quants(int n, int nmax, const float* x, int8_t* L, bool do_rmse) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    const float iscale = static_cast<float>(-nmax) / max;
    if (do_rmse) {
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; ++i) {
            const int l = clampInt(nearest_int(iscale * x[i]), -nmax, nmax - 1);
            L[i] = static_cast<int8_t>(l);
            const float w = x[i] * x[i];
            const float fl = static_cast<float>(l);
            sumlx += w * x[i] * fl;
            suml2 += w * fl * fl;
        }
        for (int pass = 0; pass < 5; ++pass) {
            int changed = 0;
            for (int i = 0; i < n; ++i) {
                const float w = x[i] * x[i];
                const float li = static_cast<float>(L[i]);
                float slx = sumlx - w * x[i] * li;
                if (slx > 0) {
                    float sl2 = suml2 - w * li * li;
                    const int nl = clampInt(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                    if (nl != L[i]) {
                        const float fnl = static_cast<float>(nl);
                        slx += w * x[i] * fnl;
                        sl2 += w * fnl * fnl;
                        if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                            L[i] = static_cast<int8_t>(nl);
                            sumlx = slx;
                            suml2 = sl2;
                            ++changed;
                        }
                    }
                }
            }
            if (!changed) break;
        }
        for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
        return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
    }
    for (int i = 0; i < n; ++i) {
        const int l = clampInt(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = static_cast<int8_t>(l + nmax);
    }
    return 1 / iscale;
}

namespace {

// The scale search of make_qkx2/qkx3 (step 6 of B.4) for n <= kQkxMaxN, eight candidates `is` at a time
// (two vectors). Each lane computes its candidate's sums and error in the reference order with the
// reference expressions, so they are bit-identical to the scalar loop's. The reference updates `min` when
// it takes a candidate, and the following candidates depend on it: the lanes are examined in order, and
// when a taken candidate changes `min` (bitwise), the candidates after it are computed again from there.
constexpr int kQkxMaxN = 32;

template <class VF, class VI, int W>
__attribute__((always_inline)) inline void qkxSearchBody(int n, int nmax, const float* x, const float* w, uint8_t* L,
                                                         float sum_w, float sum_x, float max, float& min, float& scale,
                                                         float& best, float rmin, float rdelta, int nstep, bool use_mad) {
    constexpr int V = 8 / W;  // vectors per 8 candidates
    VF fls[kQkxMaxN][V];
    const VI hi = VI{} + nmax;
    const VI zero = VI{};
    const VI absMask = VI{} + 0x7fffffff;
    int is = 0;
    while (is <= nstep) {
        const int cnt = std::min(8, nstep - is + 1);
        float isc[8];
        for (int k = 0; k < 8; ++k)
            isc[k] = (rmin + rdelta * static_cast<float>(is + std::min(k, cnt - 1)) + static_cast<float>(nmax)) /
                     (max - min);
        VF vis[V], sl[V], sl2[V], sxl[V];
        for (int v = 0; v < V; ++v) {
            std::memcpy(&vis[v], isc + W * v, sizeof(VF));
            sl[v] = sl2[v] = sxl[v] = VF{};
        }
        for (int i = 0; i < n; ++i) {
            const float xm = x[i] - min;
            const float wi = w[i];
            const float xi = x[i];
            for (int v = 0; v < V; ++v) {
                const VF shifted = vis[v] * xm + 12582912.f;  // nearest_int(iscale * (x[i] - min))
                VI l = ((VI)shifted & 0x007fffff) - 0x00400000;
                l = l > hi ? hi : l;  // clampInt(l, 0, nmax)
                l = l < zero ? zero : l;
                const VF fl = __builtin_convertvector(l, VF);
                fls[i][v] = fl;
                const VF wfl = wi * fl;
                sl[v] += wfl;         // w * l
                sl2[v] += wfl * fl;   // w * l * l
                sxl[v] += wfl * xi;   // w * l * x[i]
            }
        }
        float a[8], b[8], c[8], ts[8], tm[8];
        bool ok[8];
        for (int v = 0; v < V; ++v) {
            std::memcpy(a + W * v, &sl[v], sizeof(VF));
            std::memcpy(b + W * v, &sl2[v], sizeof(VF));
            std::memcpy(c + W * v, &sxl[v], sizeof(VF));
        }
        for (int k = 0; k < 8; ++k) {
            const float sum_l = a[k], sum_l2 = b[k], sum_xl = c[k];
            const float D = sum_w * sum_l2 - sum_l * sum_l;
            ok[k] = D > 0;
            ts[k] = tm[k] = 0;
            if (ok[k]) {
                float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
                float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
                if (this_min > 0) {
                    this_min = 0;
                    this_scale = sum_xl / sum_l2;
                }
                ts[k] = this_scale;
                tm[k] = this_min;
            }
        }
        VF vts[V], vtm[V], verr[V];
        for (int v = 0; v < V; ++v) {
            std::memcpy(&vts[v], ts + W * v, sizeof(VF));
            std::memcpy(&vtm[v], tm + W * v, sizeof(VF));
            verr[v] = VF{};
        }
        for (int i = 0; i < n; ++i) {
            const float xi = x[i];
            const float wi = w[i];
            for (int v = 0; v < V; ++v) {
                VF diff = vts[v] * fls[i][v] + vtm[v] - xi;
                diff = use_mad ? (VF)((VI)diff & absMask) : diff * diff;
                verr[v] += wi * diff;
            }
        }
        float err[8];
        for (int v = 0; v < V; ++v) std::memcpy(err + W * v, &verr[v], sizeof(VF));
        int next = is + cnt;
        for (int k = 0; k < cnt; ++k) {
            if (!ok[k] || !(err[k] < best)) continue;
            for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(fls[i][k / W][k % W]);
            best = err[k];
            scale = ts[k];
            uint32_t oldBits, newBits;
            std::memcpy(&oldBits, &min, 4);
            std::memcpy(&newBits, &tm[k], 4);
            min = tm[k];
            if (oldBits != newBits) {
                next = is + k + 1;
                break;
            }
        }
        is = next;
    }
}

void qkxSearchPortable(int n, int nmax, const float* x, const float* w, uint8_t* L, float sum_w, float sum_x,
                       float max, float& min, float& scale, float& best, float rmin, float rdelta, int nstep,
                       bool use_mad) {
    qkxSearchBody<V4f, V4i, 4>(n, nmax, x, w, L, sum_w, sum_x, max, min, scale, best, rmin, rdelta, nstep, use_mad);
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2"))) void qkxSearchAvx2(int n, int nmax, const float* x, const float* w, uint8_t* L,
                                                   float sum_w, float sum_x, float max, float& min, float& scale,
                                                   float& best, float rmin, float rdelta, int nstep, bool use_mad) {
    qkxSearchBody<V8f, V8i, 8>(n, nmax, x, w, L, sum_w, sum_x, max, min, scale, best, rmin, rdelta, nstep, use_mad);
}
#endif

// One vector of 8 candidates with AVX2 (no FMA), two of 4 otherwise: the same per-lane operations.
void qkxSearch(int n, int nmax, const float* x, const float* w, uint8_t* L, float sum_w, float sum_x, float max,
               float& min, float& scale, float& best, float rmin, float rdelta, int nstep, bool use_mad) {
#if defined(__x86_64__) || defined(__i386__)
    static const bool avx2 = detectAvx2();
    if (avx2)
        return qkxSearchAvx2(n, nmax, x, w, L, sum_w, sum_x, max, min, scale, best, rmin, rdelta, nstep, use_mad);
#endif
    qkxSearchPortable(n, nmax, x, w, L, sum_w, sum_x, max, min, scale, best, rmin, rdelta, nstep, use_mad);
}

// Shared body of make_qkx2_quants / make_qkx3_quants. `x3` selects the qkx3 differences:
// null weights allowed (x^2 used) and the degenerate test max <= min instead of max == min.
float makeQkxQuants(bool x3, int n, int nmax, const float* x, const float* weights, uint8_t* L,
                    float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) {
    auto wAt = [&](int i) { return weights ? weights[i] : x[i] * x[i]; };
    float min = x[0], max = x[0];
    float sum_w = wAt(0);
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = wAt(i);
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (x3 ? (max <= min) : (max == min)) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = static_cast<float>(nmax) / (max - min);
    float scale = 1 / iscale;
    float best = 0;
    for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = static_cast<uint8_t>(clampInt(l, 0, nmax));
        float diff = scale * static_cast<float>(L[i]) + min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        best += wAt(i) * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    if (n <= kQkxMaxN) {
        float w[kQkxMaxN];
        for (int i = 0; i < n; ++i) w[i] = wAt(i);
        qkxSearch(n, nmax, x, w, L, sum_w, sum_x, max, min, scale, best, rmin, rdelta, nstep, use_mad);
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            const int l = clampInt(nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = static_cast<uint8_t>(l);
            const float w = wAt(i);
            const float fl = static_cast<float>(l);
            sum_l += w * fl;
            sum_l2 += w * fl * fl;
            sum_xl += w * fl * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * static_cast<float>(Laux[i]) + this_min - x[i];
                diff = use_mad ? std::fabs(diff) : diff * diff;
                err += wAt(i) * diff;
            }
            if (err < best) {
                for (int i = 0; i < n; ++i) L[i] = Laux[i];
                best = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

}  // namespace

float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) {
    return makeQkxQuants(false, n, nmax, x, weights, L, the_min, Laux, rmin, rdelta, nstep, use_mad);
}

float make_qkx3_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) {
    return makeQkxQuants(true, n, nmax, x, weights, L, the_min, Laux, rmin, rdelta, nstep, use_mad);
}

float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights) {
    float max = 0;
    for (int i = 0; i < n; ++i) max = std::max(max, x[i]);
    if (max < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = static_cast<float>(nmax) / max;
    for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(nearest_int(iscale * x[i]));
    const float scale = 1 / iscale;
    float best = 0;
    for (int i = 0; i < n; ++i) {
        const float diff = x[i] - scale * static_cast<float>(L[i]);
        best += quant_weights[i] * diff * diff;
    }
    for (int is = -4; is <= 4; ++is) {
        if (is == 0) continue;
        const float iscale_is = (0.1f * static_cast<float>(is) + static_cast<float>(nmax)) / max;
        const float scale_is = 1 / iscale_is;
        float mse = 0;
        for (int i = 0; i < n; ++i) {
            const int l = std::min(nmax, nearest_int(iscale_is * x[i]));
            const float diff = x[i] - scale_is * static_cast<float>(l);
            mse += quant_weights[i] * diff * diff;
        }
        if (mse < best) {
            best = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = std::min(nmax, nearest_int(iscale * x[i]));
        L[i] = static_cast<uint8_t>(l);
        const float w = quant_weights[i];
        const float fl = static_cast<float>(l);
        sumlx += w * x[i] * fl;
        suml2 += w * fl * fl;
    }
    for (int pass = 0; pass < 5; ++pass) {
        int changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = quant_weights[i];
            const float li = static_cast<float>(L[i]);
            float slx = sumlx - w * x[i] * li;
            float sl2 = suml2 - w * li * li;
            if (slx > 0 && sl2 > 0) {
                const int nl = std::min(nmax, nearest_int(x[i] * sl2 / slx));
                if (nl != L[i]) {
                    const float fnl = static_cast<float>(nl);
                    slx += w * x[i] * fnl;
                    sl2 += w * fnl * fnl;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = static_cast<uint8_t>(nl);
                        sumlx = slx;
                        suml2 = sl2;
                        ++changed;
                    }
                }
            }
        }
        if (!changed) break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

}  // namespace qz::ggml
