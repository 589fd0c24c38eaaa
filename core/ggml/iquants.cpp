// What the i-quant quantizers share (the code-book lattices with their neighbour lists, the imatrix weights,
// the AVX2 choice), and MXFP4; the families are in iquants_iq2_iq3.cpp and iquants_iq1.cpp. Algorithms and
// facts: core/ggml/README-iquants.md. Every float expression keeps ggml's operand order (the project
// builds with -ffp-contract=off), which is what makes the output bytes identical to llama.cpp's.
#include "ggml/iquants.h"

#include <cstdlib>

#include "ggml/iq_grids.h"
#include "ggml/iquants_shared.h"

namespace qz::ggml {

namespace iq {

namespace {

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

} // namespace

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

bool detectAvx2() {
    if (const char* env = std::getenv("QZ_NO_AVX2"); env && *env && *env != '0') return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
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

float sumSquares(const float* x) {
    float s = 0;
    for (int i = 0; i < QK; ++i)
        s += x[i] * x[i];
    return s;
}

} // namespace iq

namespace {

using namespace iq;

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

} // namespace

void quantizeRowsMXFP4(const float* s, uint8_t* d, int64_t nr, int64_t nc, const float*) {
    const int64_t n = nr * nc;
    for (int64_t i = 0; i < n / 32; ++i)
        mxfp4Block(s + 32 * i, d + 17 * i);
}

bool iquantRequiresImatrix(DType type) {
    return type == DType::IQ2_XXS || type == DType::IQ2_XS || type == DType::IQ1_S;
}

} // namespace qz::ggml