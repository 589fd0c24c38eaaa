// i-quant and MXFP4 block quantizers; algorithms and facts: core/ggml/README-iquants.md.
// Every float expression keeps ggml's operand order (the project builds with -ffp-contract=off), which
// is what makes the output bytes identical to llama.cpp's.
#include "ggml/iquants.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "common/fp16.h"
#include "ggml/iq_grids.h"
#include "ggml/quant_helpers.h"

namespace qz::ggml {

namespace {

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

// levelOf: maps a code-book byte to its field l (0..levels-1).
template <class Elem, class LevelOf>
Lattice buildLattice(const Elem* grid, int size, int dim, int bits, int levels, int mapSize, int nwant,
                     LevelOf levelOf) {
    Lattice lat;
    lat.dim = dim;
    lat.bits = bits;
    lat.size = size;
    lat.pos.resize(static_cast<size_t>(size) * dim);
    lat.fld.resize(static_cast<size_t>(size) * dim);
    lat.map.assign(mapSize, -1);
    for (int g = 0; g < size; ++g) {
        int index = 0;
        for (int k = 0; k < dim; ++k) {
            const int l = levelOf(grid[g * dim + k]);
            lat.pos[static_cast<size_t>(g) * dim + k] = static_cast<int8_t>(2 * l + 1);
            lat.fld[static_cast<size_t>(g) * dim + k] = static_cast<int8_t>(l);
            index |= l << (bits * k);
        }
        lat.map[index] = g;
    }
    // Off-grid vectors whose fields are all < levels (the only ones the quantizers form).
    std::vector<int> dist(size);
    int fields[8];
    const int nvec = [&] {
        int n = 1;
        for (int k = 0; k < dim; ++k)
            n *= levels;
        return n;
    }();
    for (int v = 0; v < nvec; ++v) {
        int index = 0, t = v;
        for (int k = 0; k < dim; ++k, t /= levels) {
            fields[k] = 2 * (t % levels) + 1;
            index |= (t % levels) << (bits * k);
        }
        if (lat.map[index] >= 0) continue;
        for (int g = 0; g < size; ++g) {
            const int8_t* p = lat.point(g);
            int d2 = 0;
            for (int k = 0; k < dim; ++k)
                d2 += (p[k] - fields[k]) * (p[k] - fields[k]);
            dist[g] = d2;
        }
        // the nwant smallest distinct distances
        int shells[4] = {};
        int nsh = 0;
        for (int g = 0; g < size; ++g) {
            const int d = dist[g];
            int at = 0;
            while (at < nsh && shells[at] < d)
                ++at;
            if (at < nsh && shells[at] == d) continue;
            if (at >= nwant) continue;
            for (int m = std::min(nsh, nwant - 1); m > at; --m)
                shells[m] = shells[m - 1];
            shells[at] = d;
            nsh = std::min(nsh + 1, nwant);
        }
        const size_t start = lat.neighbours.size();
        lat.map[index] = -static_cast<int32_t>(start + 1);
        const size_t codeAt = lat.codes.size();
        lat.neighbours.push_back(0);
        lat.neighbours.push_back(static_cast<uint16_t>(codeAt & 0xFFFF));
        lat.neighbours.push_back(static_cast<uint16_t>(codeAt >> 16));
        for (int s = 0; s < nsh; ++s)
            for (int g = 0; g < size; ++g)
                if (dist[g] == shells[s]) lat.neighbours.push_back(static_cast<uint16_t>(g));
        const size_t n = lat.neighbours.size() - start - 3;
        lat.neighbours[start] = static_cast<uint16_t>(n);
        const size_t npad = (n + kLanes - 1) / kLanes * kLanes;
        lat.codes.resize(codeAt + npad, 0);
        for (size_t j = 0; j < n; ++j) {
            const int8_t* p = lat.fields(lat.neighbours[start + 3 + j]);
            int code = 0;
            for (int k = 0; k < dim; ++k)
                code |= p[k] << (bits * k);
            lat.codes[codeAt + j] = static_cast<uint16_t>(code);
        }
    }
    return lat;
}

int iq2Level(uint8_t b) {
    return b == 8 ? 0 : b == 25 ? 1 : 2;
}
int iq3xxsLevel(uint8_t b) {
    return b == 62 ? 7 : (b / 4 - 1) / 2;
}
int iq3sLevel(uint8_t b) {
    return (b - 1) / 2;
}
int iq1Level(int8_t v) {
    return v + 1;
}

// Map sizes and shell counts: upstream ggml-quants.c iq2xs_init_impl / iq3xs_init_impl (README-iquants.md).
constexpr int kMap2 = 43692, kMap3 = 4096;

const Lattice& latticeIQ2XXS() {
    static const Lattice l = buildLattice(&iqgrid::kIQ2XXS[0][0], 256, 8, 2, 3, kMap2, 2, iq2Level);
    return l;
}
const Lattice& latticeIQ2XS() {
    static const Lattice l = buildLattice(&iqgrid::kIQ2XS[0][0], 512, 8, 2, 3, kMap2, 2, iq2Level);
    return l;
}
const Lattice& latticeIQ2S() {
    static const Lattice l = buildLattice(&iqgrid::kIQ2S[0][0], 1024, 8, 2, 3, kMap2, 1, iq2Level);
    return l;
}
const Lattice& latticeIQ1() {
    static const Lattice l = buildLattice(&iqgrid::kIQ1S[0][0], 2048, 8, 2, 3, kMap2, 3, iq1Level);
    return l;
}
const Lattice& latticeIQ3XXS() {
    static const Lattice l = buildLattice(&iqgrid::kIQ3XXS[0][0], 256, 4, 3, 8, kMap3, 2, iq3xxsLevel);
    return l;
}
const Lattice& latticeIQ3S() {
    static const Lattice l = buildLattice(&iqgrid::kIQ3S[0][0], 512, 4, 3, 8, kMap3, 3, iq3sLevel);
    return l;
}

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
// entries, indexed by the packed code shifted right by bits*i: vpermps reads the low 3 bits, which are field i
// for 3-bit fields; for 2-bit fields the third bit belongs to field i+1, so the table holds the 4 terms twice.
// The first minimum is found as "minimum value (min skips NaN lanes, as the scalar strict < does),
// then the first position holding it", which is the scalar scan's answer.
template <int Dim>
__attribute__((target("avx2"))) int firstMinAvx2(const NeighbourList& nl, const float* q, const float* x,
                                                 const float* w, float scale) {
    constexpr int bits = fieldBits(Dim);
    __m256 t[Dim];
    // scale*q_l, l = 0..7 (2-bit fields: l = 0..3 twice)
    const __m256 ql = bits == 2 ? _mm256_broadcast_ps(reinterpret_cast<const __m128*>(q)) : _mm256_loadu_ps(q);
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

bool detectAvx2() {
    if (const char* env = std::getenv("QZ_NO_AVX2"); env && *env && *env != '0') return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
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

// Even-parity sign folding of 8 values (README-iquants.md "Signs"): xval = |x|, except that with an
// odd number of negatives the element with the smallest w*x^2 keeps its sign. Returns the 7-bit index.
uint8_t foldSigns8(const float* xb, const float* weight, float* xval) {
    int nflip = 0;
    uint8_t s = 0;
    for (int i = 0; i < 8; ++i) {
        if (xb[i] >= 0) {
            xval[i] = xb[i];
        } else {
            xval[i] = -xb[i];
            ++nflip;
            s = static_cast<uint8_t>(s | (1 << i));
        }
    }
    if (nflip % 2) {
        int imin = 0;
        float mn = weight[0] * xb[0] * xb[0];
        for (int i = 1; i < 8; ++i) {
            const float ax = weight[i] * xb[i] * xb[i];
            if (ax < mn) {
                mn = ax;
                imin = i;
            }
        }
        xval[imin] = -xval[imin];
        s = static_cast<uint8_t>(s ^ (1 << imin));
    }
    return static_cast<uint8_t>(s & 127);
}

// w[i] = qw[i] * sqrt(sigma2 + x[i]*x[i]) (n a multiple of 8): the imatrix weights of every i-quant.
// sqrt is correctly rounded in both forms, so the lanes give the scalar bits.
void imatrixWeightsPortable(const float* x, const float* qw, float sigma2, int n, float* w) {
    for (int i = 0; i < n; ++i)
        w[i] = qw[i] * std::sqrt(sigma2 + x[i] * x[i]);
}
#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2"))) void imatrixWeightsAvx2(const float* x, const float* qw, float sigma2, int n,
                                                        float* w) {
    const __m256 s2 = _mm256_set1_ps(sigma2);
    for (int i = 0; i < n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        _mm256_storeu_ps(w + i, _mm256_mul_ps(_mm256_loadu_ps(qw + i),
                                              _mm256_sqrt_ps(_mm256_add_ps(s2, _mm256_mul_ps(v, v)))));
    }
}
#endif
void imatrixWeights(const float* x, const float* qw, float sigma2, int n, float* w) {
#if defined(__x86_64__) || defined(__i386__)
    static const bool avx2 = detectAvx2();
    if (avx2) return imatrixWeightsAvx2(x, qw, sigma2, n, w);
#endif
    imatrixWeightsPortable(x, qw, sigma2, n, w);
}

// r[i] = sqrt(w[i]) (n a multiple of 8; correctly rounded either way).
void sqrtAllPortable(const float* w, int n, float* r) {
    for (int i = 0; i < n; ++i)
        r[i] = std::sqrt(w[i]);
}
#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2"))) void sqrtAllAvx2(const float* w, int n, float* r) {
    for (int i = 0; i < n; i += 8)
        _mm256_storeu_ps(r + i, _mm256_sqrt_ps(_mm256_loadu_ps(w + i)));
}
#endif
void sqrtAll(const float* w, int n, float* r) {
#if defined(__x86_64__) || defined(__i386__)
    static const bool avx2 = detectAvx2();
    if (avx2) return sqrtAllAvx2(w, n, r);
#endif
    sqrtAllPortable(w, n, r);
}

// The prologue of the even-sign-parity types (IQ2_XXS, IQ2_XS, IQ3_XXS) for one group of n weights (a
// multiple of 8): waux = √weight, |x| with the signs folded per 8 (foldSigns8), and the largest |x|.
float foldGroup(const float* xb, const float* weight, int n, float* waux, float* xval, uint8_t* signs) {
    sqrtAll(weight, n, waux);
    for (int k = 0; k < n / 8; ++k)
        signs[k] = foldSigns8(xb + 8 * k, weight + 8 * k, xval + 8 * k);
    float max = xval[0];
    for (int i = 1; i < n; ++i)
        max = std::max(max, xval[i]);
    return max;
}

// Plain signs (IQ2_S, IQ3_S): all 8 bits stored.
uint8_t plainSigns8(const float* xb, float* xval) {
    uint8_t s = 0;
    for (int i = 0; i < 8; ++i) {
        if (xb[i] >= 0) {
            xval[i] = xb[i];
        } else {
            xval[i] = -xb[i];
            s = static_cast<uint8_t>(s | (1 << i));
        }
    }
    return s;
}

float sumSquares(const float* x) {
    float s = 0;
    for (int i = 0; i < QK; ++i)
        s += x[i] * x[i];
    return s;
}

// Fields at inverse scale id: L[i] = clamp(nearest_int(0.5f*(id*xval[i] - 1)), 0, kMaxQ-1), n a multiple
// of 8.
inline void fieldsPortable(int n, int kMaxQ, float id, const float* xval, int8_t* L) {
    for (int i = 0; i < n; ++i)
        L[i] = static_cast<int8_t>(clampi(nearest_int(0.5f * (id * xval[i] - 1)), 0, kMaxQ - 1));
}

// fitScale's products: wxq[i] = w*xval*q, wqq[i] = w*q*q, q = 2L+1 (ggml's operand order).
inline void fitProductsPortable(int n, const float* weight, const float* xval, const int8_t* L, float* wxq,
                                float* wqq) {
    for (int i = 0; i < n; ++i) {
        const float w = weight[i];
        const float q = 2 * L[i] + 1;
        wxq[i] = w * xval[i] * q;
        wqq[i] = w * q * q;
    }
}

#if defined(__x86_64__) || defined(__i386__)
// The same per-lane operations, 8 values at a time (nearest_int's 1.5*2^23 trick on the float bits).
__attribute__((target("avx2"))) inline void fieldsAvx2(int n, int kMaxQ, float id, const float* xval,
                                                       int8_t* L) {
    const __m256 vid = _mm256_set1_ps(id), one = _mm256_set1_ps(1.f), half = _mm256_set1_ps(0.5f),
                 magic = _mm256_set1_ps(12582912.f);
    const __m256i mant = _mm256_set1_epi32(0x007fffff), off = _mm256_set1_epi32(0x00400000),
                  hi = _mm256_set1_epi32(kMaxQ - 1), lo = _mm256_setzero_si256();
    for (int c = 0; c < n; c += 8) {
        const __m256 v =
            _mm256_mul_ps(half, _mm256_sub_ps(_mm256_mul_ps(vid, _mm256_loadu_ps(xval + c)), one));
        __m256i l =
            _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(_mm256_add_ps(v, magic)), mant), off);
        l = _mm256_min_epi32(_mm256_max_epi32(l, lo), hi);
        const __m128i l16 = _mm_packs_epi32(_mm256_castsi256_si128(l), _mm256_extracti128_si256(l, 1));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(L + c), _mm_packs_epi16(l16, l16));
    }
}

__attribute__((target("avx2"))) inline void fitProductsAvx2(int n, const float* weight, const float* xval,
                                                            const int8_t* L, float* wxq, float* wqq) {
    const __m256i one = _mm256_set1_epi32(1);
    for (int c = 0; c < n; c += 8) {
        const __m256i l = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(L + c)));
        const __m256 q = _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_add_epi32(l, l), one));
        const __m256 w = _mm256_loadu_ps(weight + c);
        _mm256_storeu_ps(wxq + c, _mm256_mul_ps(_mm256_mul_ps(w, _mm256_loadu_ps(xval + c)), q));
        _mm256_storeu_ps(wqq + c, _mm256_mul_ps(_mm256_mul_ps(w, q), q));
    }
}
#endif

// The helpers below come in two instantiations: Avx2 = true is only inlined into functions compiled for
// AVX2 (gridSearchAvx2), where the AVX2 kernels are called directly and can be inlined; Avx2 = false
// dispatches at run time.
template <bool Avx2>
__attribute__((always_inline)) inline void fieldsT(int n, int kMaxQ, float id, const float* xval, int8_t* L) {
#if defined(__x86_64__) || defined(__i386__)
    if constexpr (Avx2) {
        fieldsAvx2(n, kMaxQ, id, xval, L);
    } else {
        static const bool avx2 = detectAvx2();
        if (avx2)
            fieldsAvx2(n, kMaxQ, id, xval, L);
        else
            fieldsPortable(n, kMaxQ, id, xval, L);
    }
#else
    fieldsPortable(n, kMaxQ, id, xval, L);
#endif
}

// Snap the n values (groups of lat.dim) at inverse scale id: fields, then the map; off-grid groups go to
// the best neighbour at `scale`. onGrid[k] (optional) tells whether group k was on the grid.
template <bool Avx2>
__attribute__((always_inline)) inline void snapAllT(const Lattice& lat, int n, int kMaxQ, float id,
                                                    float scale, const float* xval, const float* waux,
                                                    int8_t* L, bool* onGrid) {
    fieldsT<Avx2>(n, kMaxQ, id, xval, L);
    for (int k = 0; k < n / lat.dim; ++k) {
        int8_t* Lk = L + lat.dim * k;
        const int gi = lat.map[packFields(Lk, lat.dim, lat.bits)];
        if (onGrid) onGrid[k] = gi >= 0;
        if (gi < 0)
            findBestNeighbourT<Avx2>(lat, neighboursOf(lat, gi), xval + lat.dim * k, waux + lat.dim * k,
                                     scale, Lk);
    }
}
inline void snapAll(const Lattice& lat, int n, int kMaxQ, float id, float scale, const float* xval,
                    const float* waux, int8_t* L, bool* onGrid) {
    snapAllT<false>(lat, n, kMaxQ, id, scale, xval, waux, L, onGrid);
}

// Snap one group (dim values); returns whether it was on the grid.
template <bool Avx2>
__attribute__((always_inline)) inline bool snapGroupT(const Lattice& lat, int kMaxQ, float id, float scale,
                                                      const float* xval, const float* waux, int8_t* L) {
    fieldsPortable(lat.dim, kMaxQ, id, xval, L);
    const int gi = lat.map[packFields(L, lat.dim, lat.bits)];
    if (gi >= 0) return true;
    findBestNeighbourT<Avx2>(lat, neighboursOf(lat, gi), xval, waux, scale, L);
    return false;
}

// sumqx = sum w*xval*q, sumq2 = sum w*q*q in ggml's order (products side by side, the sums sequential).
template <bool Avx2>
__attribute__((always_inline)) inline void fitScaleT(int n, const float* weight, const float* xval,
                                                     const int8_t* L, float& sumqx, float& sumq2) {
    alignas(32) float wxq[32], wqq[32];
#if defined(__x86_64__) || defined(__i386__)
    if constexpr (Avx2) {
        fitProductsAvx2(n, weight, xval, L, wxq, wqq);
    } else {
        static const bool avx2 = detectAvx2();
        if (avx2)
            fitProductsAvx2(n, weight, xval, L, wxq, wqq);
        else
            fitProductsPortable(n, weight, xval, L, wxq, wqq);
    }
#else
    fitProductsPortable(n, weight, xval, L, wxq, wqq);
#endif
    sumqx = 0;
    sumq2 = 0;
    for (int i = 0; i < n; ++i) {
        sumqx += wxq[i];
        sumq2 += wqq[i];
    }
}
inline void fitScale(int n, const float* weight, const float* xval, const int8_t* L, float& sumqx,
                     float& sumq2) {
    fitScaleT<false>(n, weight, xval, L, sumqx, sumq2);
}

// The grid search shared by IQ2_XS, IQ2_S, IQ3_XXS and IQ3_S (README-iquants.md "Scale search"):
// n values in groups of lat.dim, trial inverse scales (base + is*step)/max for is in [-nis, nis];
// afterwards the off-grid groups (all groups when reSnapAll) are snapped again at the best scale and
// the scale refit. Returns the scale (may be negative only in theory); L gets the fields.
template <bool Avx2>
__attribute__((always_inline)) inline float
gridSearchT(const Lattice& lat, int n, int kMaxQ, int nis, float step, bool reSnapAll, float max,
            const float* weight, const float* waux, const float* xval, int8_t* L) {
    int8_t Laux[32];
    bool onGrid[8], onGridAux[8];
    const int ng = n / lat.dim;
    float best = 0;
    float scale = max / (2 * kMaxQ - 1);
    for (int k = 0; k < ng; ++k)
        onGrid[k] = !reSnapAll;
    for (int is = -nis; is <= nis; ++is) {
        const float id = (2 * kMaxQ - 1 + is * step) / max;
        const float thisScale = 1 / id;
        snapAllT<Avx2>(lat, n, kMaxQ, id, thisScale, xval, waux, Laux, onGridAux);
        float sumqx, sumq2;
        fitScaleT<Avx2>(n, weight, xval, Laux, sumqx, sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            std::memcpy(L, Laux, n);
            for (int k = 0; k < ng; ++k)
                onGrid[k] = onGridAux[k];
        }
    }
    int notOnGrid = 0;
    for (int k = 0; k < ng; ++k)
        if (!onGrid[k]) ++notOnGrid;
    if (notOnGrid > 0 && scale > 0) {
        const float id = 1 / scale;
        for (int k = 0; k < ng; ++k) {
            if (!reSnapAll && onGrid[k]) continue;
            int8_t* Lk = L + lat.dim * k;
            snapGroupT<Avx2>(lat, kMaxQ, id, scale, xval + lat.dim * k, waux + lat.dim * k, Lk);
        }
        float sumqx, sumq2;
        fitScaleT<Avx2>(n, weight, xval, L, sumqx, sumq2);
        if (sumq2 > 0) scale = sumqx / sumq2;
    }
    return scale;
}

float gridSearchPortable(const Lattice& lat, int n, int kMaxQ, int nis, float step, bool reSnapAll, float max,
                         const float* weight, const float* waux, const float* xval, int8_t* L) {
    return gridSearchT<false>(lat, n, kMaxQ, nis, step, reSnapAll, max, weight, waux, xval, L);
}
#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2"))) float gridSearchAvx2(const Lattice& lat, int n, int kMaxQ, int nis,
                                                     float step, bool reSnapAll, float max,
                                                     const float* weight, const float* waux,
                                                     const float* xval, int8_t* L) {
    return gridSearchT<true>(lat, n, kMaxQ, nis, step, reSnapAll, max, weight, waux, xval, L);
}
#endif
float gridSearch(const Lattice& lat, int n, int kMaxQ, int nis, float step, bool reSnapAll, float max,
                 const float* weight, const float* waux, const float* xval, int8_t* L) {
#if defined(__x86_64__) || defined(__i386__)
    static const bool avx2 = detectAvx2();
    if (avx2) return gridSearchAvx2(lat, n, kMaxQ, nis, step, reSnapAll, max, weight, waux, xval, L);
#endif
    return gridSearchPortable(lat, n, kMaxQ, nis, step, reSnapAll, max, weight, waux, xval, L);
}

int gridIndexOf(const Lattice& lat, const int8_t* L) {
    const int gi = lat.map[packFields(L, lat.dim, lat.bits)];
    return gi >= 0 ? gi : 0; // always on the grid here (ggml aborts otherwise)
}

// -------------------------------------------------------------------------------------------- IQ2_XXS
// layout: d @0, qs u16[32] @2 (per 32: u32 grid bytes, u32 signs | scale << 28)
void iq2xxsBlock(const float* xbl, const float* qwBlock, uint8_t* y) {
    const Lattice& lat = latticeIQ2XXS();
    constexpr int kMaxQ = 3;
    float scales[QK / 32], weight[32], xval[32], waux[32];
    int8_t L[32], Laux[32];
    uint8_t signs[4];
    uint32_t q2[16] = {};
    float maxScale = 0;
    const float sigma2 = sumSquares(xbl) / QK;
    for (int ib = 0; ib < QK / 32; ++ib) {
        const float* xb = xbl + 32 * ib;
        if (qwBlock) {
            imatrixWeights(xb, qwBlock + 32 * ib, sigma2, 32, weight);
        } else {
            for (int i = 0; i < 32; ++i)
                weight[i] = 1.f * std::sqrt(sigma2 + xb[i] * xb[i]);
        }
        const float max = foldGroup(xb, weight, 32, waux, xval, signs);
        if (max < kGroupMaxEps) {
            scales[ib] = 0;
            continue;
        }
        float scale = make_qp_quants(32, kMaxQ + 1, xval, reinterpret_cast<uint8_t*>(L), weight);
        const float effMax = scale * kMaxQ;
        if (effMax <= 0) {
            scales[ib] = 0;
            continue;
        }
        float best = 0;
        for (int is = -6; is <= 6; ++is) {
            const float id = (2 * kMaxQ - 1 + is * 0.1f) / effMax;
            const float thisScale = 1 / id;
            snapAll(lat, 32, kMaxQ, id, thisScale, xval, waux, Laux, nullptr);
            float sumqx, sumq2;
            fitScale(32, weight, xval, Laux, sumqx, sumq2);
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                scale = sumqx / sumq2;
                best = scale * sumqx;
                std::memcpy(L, Laux, 32);
            }
        }
        if (scale > 0) {
            const float id = 1 / scale;
            snapAll(lat, 32, kMaxQ, id, scale, xval, waux, L, nullptr);
            float sumqx, sumq2;
            fitScale(32, weight, xval, L, sumqx, sumq2);
            if (sumq2 > 0) scale = sumqx / sumq2;
        }
        if (scale < 0) {
            scale = -scale;
            for (int k = 0; k < 4; ++k)
                signs[k] = static_cast<uint8_t>(~signs[k] & 127);
        }
        for (int k = 0; k < 4; ++k) {
            q2[2 * ib] |= static_cast<uint32_t>(gridIndexOf(lat, L + 8 * k)) << (8 * k);
            q2[2 * ib + 1] |= static_cast<uint32_t>(signs[k]) << (7 * k);
        }
        scales[ib] = scale;
        maxScale = std::max(maxScale, scale);
    }
    std::memset(y, 0, 66);
    if (!maxScale) return;
    const float d = maxScale / 31;
    putHalf(y, fp32ToFp16(d));
    const float id = 1 / d;
    for (int ib = 0; ib < QK / 32; ++ib) {
        const int l = clampi(nearest_int(0.5f * (id * scales[ib] - 1)), 0, 15);
        q2[2 * ib + 1] |= static_cast<uint32_t>(l) << 28;
    }
    std::memcpy(y + 2, q2, 64);
}

// --------------------------------------------------------------------------------------------- IQ2_XS
// layout: d @0, qs u16[32] @2 (9-bit grid index | 7-bit signs << 9), scales[8] @66
void iq2xsBlock(const float* xbl, const float* qwBlock, uint8_t* y) {
    const Lattice& lat = latticeIQ2XS();
    constexpr int kMaxQ = 3;
    float scales[QK / 16], weight[16], xval[16], waux[16];
    int8_t L[16];
    uint8_t signs[2];
    uint16_t q2[32] = {};
    float maxScale = 0;
    const float sigma2 = sumSquares(xbl) / QK;
    for (int ib = 0; ib < QK / 16; ++ib) {
        const float* xb = xbl + 16 * ib;
        if (qwBlock) {
            imatrixWeights(xb, qwBlock + 16 * ib, sigma2, 16, weight);
        } else {
            for (int i = 0; i < 16; ++i)
                weight[i] = 1.f * std::sqrt(sigma2 + xb[i] * xb[i]);
        }
        const float max = foldGroup(xb, weight, 16, waux, xval, signs);
        std::memset(L, 0, 16);
        if (max < kGroupMaxEps) {
            scales[ib] = 0;
            continue;
        }
        float scale = gridSearch(lat, 16, kMaxQ, 9, 0.1f, false, max, weight, waux, xval, L);
        if (scale < 0) {
            scale = -scale;
            for (int k = 0; k < 2; ++k)
                signs[k] = static_cast<uint8_t>(~signs[k] & 127);
        }
        for (int k = 0; k < 2; ++k)
            q2[2 * ib + k] = static_cast<uint16_t>(gridIndexOf(lat, L + 8 * k) | (signs[k] << 9));
        scales[ib] = scale;
        maxScale = std::max(maxScale, scale);
    }
    std::memset(y, 0, 74);
    if (!maxScale) return;
    const float d = maxScale / 31;
    putHalf(y, fp32ToFp16(d));
    const float id = 1 / d;
    for (int ib = 0; ib < QK / 16; ++ib) {
        const int l = clampi(nearest_int(0.5f * (id * scales[ib] - 1)), 0, 15);
        y[66 + ib / 2] = static_cast<uint8_t>(y[66 + ib / 2] | (l << (4 * (ib % 2))));
    }
    std::memcpy(y + 2, q2, 64);
}

// ---------------------------------------------------------------------------------------------- IQ2_S
// layout: d @0, qs[32] low index bytes @2, signs[32] @34, qh[8] @66 (2 bits per 8), scales[8] @74
void iq2sBlock(const float* xbl, const float* qwBlock, uint8_t* y) {
    const Lattice& lat = latticeIQ2S();
    constexpr int kMaxQ = 3;
    float scales[QK / 16], weight[16], xval[16], waux[16];
    int8_t L[16];
    uint8_t signs[2];
    std::memset(y, 0, 82);
    float maxScale = 0;
    const float sigma2 = 2 * sumSquares(xbl) / QK;
    for (int ib = 0; ib < QK / 16; ++ib) {
        const float* xb = xbl + 16 * ib;
        if (qwBlock) {
            imatrixWeights(xb, qwBlock + 16 * ib, sigma2, 16, weight);
        } else {
            for (int i = 0; i < 16; ++i)
                weight[i] = 0.25f * sigma2 + xb[i] * xb[i];
        }
        sqrtAll(weight, 16, waux);
        for (int k = 0; k < 2; ++k)
            signs[k] = plainSigns8(xb + 8 * k, xval + 8 * k);
        float max = xval[0];
        for (int i = 1; i < 16; ++i)
            max = std::max(max, xval[i]);
        std::memset(L, 0, 16);
        if (max < 1e-8f) {
            scales[ib] = 0;
            continue;
        }
        float scale = gridSearch(lat, 16, kMaxQ, 9, 0.1f, false, max, weight, waux, xval, L);
        if (scale < 0) {
            scale = -scale;
            for (int k = 0; k < 2; ++k)
                signs[k] = static_cast<uint8_t>(~signs[k]);
        }
        for (int k = 0; k < 2; ++k) {
            const int gi = gridIndexOf(lat, L + 8 * k);
            const int i8 = 2 * ib + k;
            y[2 + i8] = static_cast<uint8_t>(gi & 255);
            y[66 + i8 / 4] = static_cast<uint8_t>(y[66 + i8 / 4] | ((gi >> 8) << (2 * (i8 % 4))));
            y[2 + 32 + i8] = signs[k];
        }
        scales[ib] = scale;
        maxScale = std::max(maxScale, scale);
    }
    if (!maxScale) return;
    const float d = maxScale / 31;
    putHalf(y, fp32ToFp16(d * 0.9875f));
    const float id = 1 / d;
    for (int ib = 0; ib < QK / 16; ++ib) {
        const int l = clampi(nearest_int(0.5f * (id * scales[ib] - 1)), 0, 15);
        y[74 + ib / 2] = static_cast<uint8_t>(y[74 + ib / 2] | (l << (4 * (ib % 2))));
    }
}

// -------------------------------------------------------------------------------------------- IQ3_XXS
// layout: d @0, qs[64] grid bytes @2, 8 x u32 (4 x 7-bit signs | scale << 28) @66
void iq3xxsBlock(const float* xbl, const float* qwBlock, uint8_t* y) {
    const Lattice& lat = latticeIQ3XXS();
    constexpr int kMaxQ = 8;
    float scales[QK / 32], weight[32], xval[32], waux[32];
    int8_t L[32];
    uint8_t signs[4];
    uint8_t q3[64] = {};
    uint32_t scalesAndSigns[8] = {};
    float maxScale = 0;
    const float sigma2 = 2 * sumSquares(xbl) / QK;
    for (int ib = 0; ib < QK / 32; ++ib) {
        const float* xb = xbl + 32 * ib;
        if (qwBlock) {
            imatrixWeights(xb, qwBlock + 32 * ib, sigma2, 32, weight);
        } else {
            for (int i = 0; i < 32; ++i)
                weight[i] = xb[i] * xb[i];
        }
        const float max = foldGroup(xb, weight, 32, waux, xval, signs);
        std::memset(L, 0, 32);
        if (max < 1e-8f) {
            scales[ib] = 0;
            continue;
        }
        float scale = gridSearch(lat, 32, kMaxQ, 15, 0.2f, false, max, weight, waux, xval, L);
        if (scale < 0) {
            scale = -scale;
            for (int k = 0; k < 4; ++k)
                signs[k] = static_cast<uint8_t>(~signs[k] & 127);
        }
        for (int k = 0; k < 8; ++k)
            q3[8 * ib + k] = static_cast<uint8_t>(gridIndexOf(lat, L + 4 * k));
        scalesAndSigns[ib] =
            signs[0] | (signs[1] << 7) | (signs[2] << 14) | (static_cast<uint32_t>(signs[3]) << 21);
        scales[ib] = scale;
        maxScale = std::max(maxScale, scale);
    }
    std::memset(y, 0, 98);
    if (!maxScale) return;
    const float d = maxScale / 31;
    putHalf(y, fp32ToFp16(d * 1.0125f));
    const float id = 1 / d;
    for (int ib = 0; ib < QK / 32; ++ib) {
        const int l = clampi(nearest_int(0.5f * (id * scales[ib] - 1)), 0, 15);
        scalesAndSigns[ib] |= static_cast<uint32_t>(l) << 28;
    }
    std::memcpy(y + 2, q3, 64);
    std::memcpy(y + 66, scalesAndSigns, 32);
}

// ---------------------------------------------------------------------------------------------- IQ3_S
// layout: d @0, qs[64] @2, qh[8] @66 (9th index bit), signs[32] @74, scales[4] @106
void iq3sBlock(const float* xbl, const float* qwBlock, uint8_t* y) {
    const Lattice& lat = latticeIQ3S();
    constexpr int kMaxQ = 8;
    float scales[QK / 32], weight[32], xval[32], waux[32];
    int8_t L[32];
    uint8_t signs[4];
    std::memset(y, 0, 110);
    // ggml advances its qs / signs pointers only past sub-blocks that were not all zero, so a zero
    // sub-block shifts the later ones' index and sign bytes down (qh stays indexed by sub-block).
    int qsAt = 0, signsAt = 0;
    float maxScale = 0;
    const float sigma2 = 2 * sumSquares(xbl) / QK;
    for (int ib = 0; ib < QK / 32; ++ib) {
        const float* xb = xbl + 32 * ib;
        if (qwBlock) {
            imatrixWeights(xb, qwBlock + 32 * ib, sigma2, 32, weight);
        } else {
            for (int i = 0; i < 32; ++i)
                weight[i] = xb[i] * xb[i];
        }
        sqrtAll(weight, 32, waux);
        for (int k = 0; k < 4; ++k)
            signs[k] = plainSigns8(xb + 8 * k, xval + 8 * k);
        float max = xval[0];
        for (int i = 1; i < 32; ++i)
            max = std::max(max, xval[i]);
        std::memset(L, 0, 32);
        if (!max) {
            scales[ib] = 0;
            continue;
        }
        float scale = gridSearch(lat, 32, kMaxQ, 9, 0.2f, true, max, weight, waux, xval, L);
        if (scale < 0) {
            scale = -scale;
            for (int k = 0; k < 4; ++k)
                signs[k] = static_cast<uint8_t>(~signs[k]);
        }
        for (int k = 0; k < 8; ++k) {
            const int gi = gridIndexOf(lat, L + 4 * k);
            y[2 + qsAt + k] = static_cast<uint8_t>(gi & 255);
            y[66 + ib] = static_cast<uint8_t>(y[66 + ib] | ((gi >> 8) << k));
        }
        qsAt += 8;
        for (int k = 0; k < 4; ++k)
            y[74 + signsAt + k] = signs[k];
        signsAt += 4;
        scales[ib] = scale;
        maxScale = std::max(maxScale, scale);
    }
    if (!maxScale) return;
    const float d = maxScale / 31;
    putHalf(y, fp32ToFp16(d * 1.033f));
    const float id = 1 / d;
    for (int ib = 0; ib < QK / 32; ib += 2) {
        const int l1 = clampi(nearest_int(0.5f * (id * scales[ib] - 1)), 0, 15);
        const int l2 = clampi(nearest_int(0.5f * (id * scales[ib + 1] - 1)), 0, 15);
        y[106 + ib / 2] = static_cast<uint8_t>(l1 | (l2 << 4));
    }
}

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

template <int N> void sortedOrderPortable(const float* xb, int* idx) {
    sortedOrderBody<N>(xb, idx);
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
template <class Sums>
__attribute__((always_inline)) inline void splitScan(Sums s, int n, SplitBest& out) {
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

void iq1sSplitPortable(const Iq1sSplit& a, SplitBest& b) {
    iq1sSplitBody(a, b);
}
void iq1mSplitPortable(const Iq1mSplit& a, SplitBest& b) {
    iq1mSplitBody(a, b);
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

// ---------------------------------------------------------------------------------------------- MXFP4
inline float e8m0Half(uint8_t e) {
    const uint32_t bits = e < 2 ? (0x00200000u << e) : (static_cast<uint32_t>(e - 1) << 23);
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

// layout: e @0 (E8M0), qs[16] @1 (low nibble element j, high nibble j + 16)
void mxfp4Block(const float* x, uint8_t* y) {
    static constexpr int8_t kv[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
    float amax = 0;
    for (int j = 0; j < 32; ++j)
        if (amax < std::fabs(x[j])) amax = std::fabs(x[j]);
    // (uint8_t) of a float goes through a 32-bit integer on x86, as in ggml's build
    const uint8_t e =
        amax > 0.0f ? static_cast<uint8_t>(static_cast<int>(std::floor(std::log2(amax)) - 2 + 127)) : 0;
    const float d = e8m0Half(e);
    auto best = [&](float v) {
        int bi = 0;
        float be = std::fabs(kv[0] * d - v);
        for (int i = 1; i < 16; ++i) {
            const float err = std::fabs(kv[i] * d - v);
            if (err < be) {
                bi = i;
                be = err;
            }
        }
        return bi;
    };
    y[0] = e;
    for (int j = 0; j < 16; ++j)
        y[1 + j] = static_cast<uint8_t>(best(x[j]) | (best(x[j + 16]) << 4));
}

template <void (*Block)(const float*, const float*, uint8_t*), int Bytes>
void rowsOf(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix) {
    const int64_t nbl = ncols / QK;
    for (int64_t r = 0; r < nrows; ++r)
        for (int64_t b = 0; b < nbl; ++b)
            Block(src + r * ncols + b * QK, imatrix ? imatrix + b * QK : nullptr,
                  dst + (r * nbl + b) * Bytes);
}

} // namespace

void quantizeRowsIQ2_XXS(const float* s, uint8_t* d, int64_t nr, int64_t nc, const float* im) {
    rowsOf<iq2xxsBlock, 66>(s, d, nr, nc, im);
}
void quantizeRowsIQ2_XS(const float* s, uint8_t* d, int64_t nr, int64_t nc, const float* im) {
    rowsOf<iq2xsBlock, 74>(s, d, nr, nc, im);
}
void quantizeRowsIQ2_S(const float* s, uint8_t* d, int64_t nr, int64_t nc, const float* im) {
    rowsOf<iq2sBlock, 82>(s, d, nr, nc, im);
}
void quantizeRowsIQ3_XXS(const float* s, uint8_t* d, int64_t nr, int64_t nc, const float* im) {
    rowsOf<iq3xxsBlock, 98>(s, d, nr, nc, im);
}
void quantizeRowsIQ3_S(const float* s, uint8_t* d, int64_t nr, int64_t nc, const float* im) {
    rowsOf<iq3sBlock, 110>(s, d, nr, nc, im);
}
void quantizeRowsIQ1_S(const float* s, uint8_t* d, int64_t nr, int64_t nc, const float* im) {
    rowsOf<iq1sBlock, 50>(s, d, nr, nc, im);
}
void quantizeRowsIQ1_M(const float* s, uint8_t* d, int64_t nr, int64_t nc, const float* im) {
    rowsOf<iq1mBlock, 56>(s, d, nr, nc, im);
}
void quantizeRowsMXFP4(const float* s, uint8_t* d, int64_t nr, int64_t nc, const float*) {
    const int64_t n = nr * nc;
    for (int64_t i = 0; i < n / 32; ++i)
        mxfp4Block(s + 32 * i, d + 17 * i);
}

bool iquantRequiresImatrix(DType type) {
    return type == DType::IQ2_XXS || type == DType::IQ2_XS || type == DType::IQ1_S;
}

} // namespace qz::ggml
