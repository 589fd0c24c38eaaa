// Internal to the i-quant quantizers (iquants.cpp: lattices, weights, MXFP4; iquants_iq2_iq3.cpp;
// iquants_iq1.cpp): the code-book lattices and their neighbour searches, the run-time AVX2 choice and the
// helpers every family uses. Algorithms and facts: core/ggml/README-iquants.md.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "ggml/quant_helpers.h"

namespace qz::ggml::iq {

constexpr int QK = kQK_K; // 256

inline int clampi(int v, int lo, int hi) {
    return std::max(lo, std::min(hi, v));
}
inline void putHalf(uint8_t* p, uint16_t h) {
    p[0] = static_cast<uint8_t>(h & 0xFF);
    p[1] = static_cast<uint8_t>(h >> 8);
}

// ------------------------------------------------------------------------------------------ lattices
// A code book seen by the quantizer (README-iquants.md "Lattices"): entry g is a vector of `dim`
// odd coordinates 2l+1 (l = 0..levels-1); `map` sends the packed field vector sum(l_k << bits*k) to
// the entry id, or, for a vector off the grid, to -(offset+1) of its neighbour list [n, id1..idn]:
// every entry in the `nwant` nearest distance shells, in (distance, id) order.
struct Lattice {
    int dim = 0, bits = 0, size = 0;
    std::vector<int8_t> pos;  // size * dim coordinates
    std::vector<int8_t> fld;  // size * dim fields l = (coordinate - 1) / 2
    std::vector<int32_t> map; // index -> id or -(offset+1)
    // concatenated lists [n, code offset low 16 bits, high 16 bits, id_1 .. id_n]
    std::vector<uint16_t> neighbours;
    // the lists' entries as packed fields sum(l_k << bits*k) (n padded to kLanes with 0): 2 bytes an entry,
    // so that the lists of the 2048-point IQ1 grid (~90 entries each) stay as small as the id lists
    std::vector<uint16_t> codes;
    const int8_t* point(int id) const { return pos.data() + static_cast<size_t>(id) * dim; }
    const int8_t* fields(int id) const { return fld.data() + static_cast<size_t>(id) * dim; }
};

constexpr size_t kLanes = 8;

// The lattices of the code books (built on first use, thread-safe).
const Lattice& latticeIQ2XXS();
const Lattice& latticeIQ2XS();
const Lattice& latticeIQ2S();
const Lattice& latticeIQ1();
const Lattice& latticeIQ3XXS();
const Lattice& latticeIQ3S();

// Whether the AVX2 kernels run: the CPU has AVX2 (CPUID) and QZ_NO_AVX2 is not set.
bool detectAvx2();

inline const uint16_t* neighboursOf(const Lattice& lat, int mapValue) {
    return lat.neighbours.data() + (-mapValue - 1);
}

struct NeighbourList {
    int n = 0;
    size_t npad = 0;
    const uint16_t* ids = nullptr;
    const uint16_t* codes = nullptr; // packed fields of neighbour j (padded to npad)
};
inline NeighbourList listOf(const Lattice& lat, const uint16_t* nb) {
    NeighbourList l;
    l.n = nb[0];
    l.npad = (static_cast<size_t>(l.n) + kLanes - 1) / kLanes * kLanes;
    l.ids = nb + 3;
    l.codes = lat.codes.data() + (static_cast<size_t>(nb[1]) | (static_cast<size_t>(nb[2]) << 16));
    return l;
}

// The neighbour searches (iq2/iq3_find_best_neighbour, iq1_find_best_neighbour2) minimise
// d2 = sum over i of w[i]*(scale*q - x[i])^2, accumulated in ggml's order (0 + t_0 + t_1 ..., t =
// (w*diff)*diff, diff = scale*q - x[i]), q the value of field l of coordinate i. Coordinate i takes at most 8
// values q_l, so each term t_i(l) is computed once into a table (the same operations, so the same bits), and
// a neighbour's d2 is the ordered sum of its coordinates' table entries: bit-identical to ggml's loop.
// terms[8 * i + l] = t_i(l); entries for l >= nq are 0 (never picked).
inline void termTable(int dim, int nq, const float* q, const float* x, const float* w, float scale,
                      float* terms) {
    for (int i = 0; i < dim; ++i) {
        for (int l = 0; l < nq; ++l) {
            const float diff = scale * q[l] - x[i];
            terms[8 * i + l] = w[i] * diff * diff;
        }
        for (int l = nq; l < 8; ++l)
            terms[8 * i + l] = 0;
    }
}

// Bits per field of the packed codes: 2 for the 8-dimensional grids (3 levels), 3 for the 4-dimensional ones.
constexpr int fieldBits(int dim) {
    return dim == 8 ? 2 : 3;
}

// Position in the list of the first minimum of d2 (ggml's "if (d2 < best)" scan from FLT_MAX; NaN never
// wins). -1 when no d2 is below FLT_MAX (ggml asserts there).
template <int Dim> int firstMinPortable(const NeighbourList& nl, const float* terms) {
    float best = FLT_MAX;
    int at = -1;
    for (int j = 0; j < nl.n; ++j) {
        float d2 = 0;
        for (int i = 0; i < Dim; ++i)
            d2 += terms[8 * i + ((nl.codes[j] >> (fieldBits(Dim) * i)) & ((1 << fieldBits(Dim)) - 1))];
        if (d2 < best) {
            best = d2;
            at = j;
        }
    }
    return at;
}

#if defined(__x86_64__) || defined(__i386__)
// AVX2: 8 neighbours per vector, the term of coordinate i picked by a lane permutation of its 8 table
// entries, indexed by the packed code shifted right by bits*i: vpermps reads the low 3 bits, which are field
// i for 3-bit fields; for 2-bit fields the third bit belongs to field i+1, so the table holds the 4 terms
// twice. The first minimum is found as "minimum value (min skips NaN lanes, as the scalar strict < does),
// then the first position holding it", which is the scalar scan's answer.
template <int Dim>
__attribute__((target("avx2"))) int firstMinAvx2(const NeighbourList& nl, const float* q, const float* x,
                                                 const float* w, float scale) {
    constexpr int bits = fieldBits(Dim);
    __m256 t[Dim];
    // scale*q_l, l = 0..7 (2-bit fields: l = 0..3 twice)
    const __m256 ql =
        bits == 2 ? _mm256_broadcast_ps(reinterpret_cast<const __m128*>(q)) : _mm256_loadu_ps(q);
    const __m256 sq = _mm256_mul_ps(_mm256_set1_ps(scale), ql);
    for (int i = 0; i < Dim; ++i) {
        const __m256 diff = _mm256_sub_ps(sq, _mm256_set1_ps(x[i]));
        t[i] = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(w[i]), diff), diff);
    }
    const __m256 inf = _mm256_set1_ps(INFINITY);
    if (nl.npad == 8) { // one vector (most lists of IQ2_S and IQ3): no round trip through memory
        __m256 acc = _mm256_setzero_ps();
        const __m256i c = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(nl.codes)));
        for (int i = 0; i < Dim; ++i)
            acc = _mm256_add_ps(acc, _mm256_permutevar8x32_ps(t[i], _mm256_srli_epi32(c, bits * i)));
        const __m256i pos = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        acc =
            _mm256_blendv_ps(inf, acc, _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(nl.n), pos)));
        __m256 mn = _mm256_min_ps(acc, _mm256_set1_ps(FLT_MAX));
        mn = _mm256_min_ps(mn, _mm256_permute2f128_ps(mn, mn, 1));
        mn = _mm256_min_ps(mn, _mm256_shuffle_ps(mn, mn, 0x4E));
        mn = _mm256_min_ps(mn, _mm256_shuffle_ps(mn, mn, 0xB1));
        if (!(_mm256_cvtss_f32(mn) < FLT_MAX)) return -1;
        const int m = _mm256_movemask_ps(_mm256_cmp_ps(acc, mn, _CMP_EQ_OQ));
        return m ? __builtin_ctz(static_cast<unsigned>(m)) : -1;
    }
    alignas(32) float d2[2048]; // a list never exceeds the largest grid (2048 entries)
    __m256 mn = _mm256_set1_ps(FLT_MAX);
    __m256i pos = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i step = _mm256_set1_epi32(8), n = _mm256_set1_epi32(nl.n);
    for (size_t j = 0; j < nl.npad; j += 8) {
        __m256 acc = _mm256_setzero_ps();
        const __m256i c =
            _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(nl.codes + j)));
        for (int i = 0; i < Dim; ++i)
            acc = _mm256_add_ps(acc, _mm256_permutevar8x32_ps(t[i], _mm256_srli_epi32(c, bits * i)));
        // padding lanes (position >= n) never win
        acc = _mm256_blendv_ps(inf, acc, _mm256_castsi256_ps(_mm256_cmpgt_epi32(n, pos)));
        _mm256_store_ps(d2 + j, acc);
        mn = _mm256_min_ps(acc, mn); // a NaN lane of acc leaves mn
        pos = _mm256_add_epi32(pos, step);
    }
    mn = _mm256_min_ps(mn, _mm256_permute2f128_ps(mn, mn, 1));
    mn = _mm256_min_ps(mn, _mm256_shuffle_ps(mn, mn, 0x4E));
    mn = _mm256_min_ps(mn, _mm256_shuffle_ps(mn, mn, 0xB1));
    if (!(_mm256_cvtss_f32(mn) < FLT_MAX)) return -1;
    for (size_t j = 0; j < nl.npad; j += 8) {
        const int m = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_load_ps(d2 + j), mn, _CMP_EQ_OQ));
        if (m) return static_cast<int>(j) + __builtin_ctz(static_cast<unsigned>(m));
    }
    return -1;
}

#endif

// q: the 8 values q_l (unused ones finite; their terms are never picked).
template <int Dim>
inline int firstMin(const NeighbourList& nl, const float* q, int nq, const float* x, const float* w,
                    float scale) {
#if defined(__x86_64__) || defined(__i386__)
    static const bool avx2 = detectAvx2();
    if (avx2) return firstMinAvx2<Dim>(nl, q, x, w, scale);
#endif
    alignas(32) float terms[8 * Dim];
    termTable(Dim, nq, q, x, w, scale, terms);
    return firstMinPortable<Dim>(nl, terms);
}

// iq2/iq3_find_best_neighbour: min of sum w*(scale*g - x)^2 over the list, first minimum wins;
// writes the fields of the winner to L. Avx2: called from code compiled for AVX2 (no dispatch).
template <bool Avx2>
__attribute__((always_inline)) inline int findBestNeighbourT(const Lattice& lat, const uint16_t* nb,
                                                             const float* xval, const float* w, float scale,
                                                             int8_t* L) {
    static constexpr float kOdd[8] = {1, 3, 5, 7, 9, 11, 13, 15};
    const NeighbourList nl = listOf(lat, nb);
    int at;
#if defined(__x86_64__) || defined(__i386__)
    if constexpr (Avx2)
        at = lat.dim == 8 ? firstMinAvx2<8>(nl, kOdd, xval, w, scale)
                          : firstMinAvx2<4>(nl, kOdd, xval, w, scale);
    else
#endif
        at = lat.dim == 8 ? firstMin<8>(nl, kOdd, 3, xval, w, scale)
                          : firstMin<4>(nl, kOdd, 8, xval, w, scale);
    const int gi = nl.ids[at < 0 ? 0 : at]; // no finite distance (NaN / huge inputs): ggml asserts
    std::memcpy(L, lat.fields(gi), static_cast<size_t>(lat.dim));
    return gi;
}

inline int packFields(const int8_t* L, int dim, int bits) {
    int u = 0;
    if (dim == 8) {
        for (int i = 0; i < 8; ++i)
            u |= L[i] << (bits * i);
    } else {
        for (int i = 0; i < 4; ++i)
            u |= L[i] << (bits * i);
    }
    return u;
}

// w[i] = qw[i] * sqrt(sigma2 + x[i]*x[i]) (n a multiple of 8): the imatrix weights of every i-quant.
void imatrixWeights(const float* x, const float* qw, float sigma2, int n, float* w);
// r[i] = sqrt(w[i]) (n a multiple of 8).
void sqrtAll(const float* w, int n, float* r);
// Sum of x[i]^2 over a super-block, in order.
float sumSquares(const float* x);

template <void (*Block)(const float*, const float*, uint8_t*), int Bytes>
void rowsOf(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix) {
    const int64_t nbl = ncols / QK;
    for (int64_t r = 0; r < nrows; ++r)
        for (int64_t b = 0; b < nbl; ++b)
            Block(src + r * ncols + b * QK, imatrix ? imatrix + b * QK : nullptr,
                  dst + (r * nbl + b) * Bytes);
}

} // namespace qz::ggml::iq
