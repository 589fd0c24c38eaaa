// AMX tile kernels for quantizedLinear (vec_dot_impl.h): 16 weight rows × 16 tokens per tile product.
//
// A tile product (TDPBSSD) adds exact int8 × int8 products into int32, so the integer of every block (for
// the K types: of every value times its integer sub-block scale, split in two int8 parts, and of the
// mins) is the same integer as in the scalar and AVX2 kernels; each block's integer then goes through the
// same float expression (dotB32Scalar / dotKScalar, lane by lane, no FMA), so the results are the same
// bits as vecDot's (README.md D.3, D.6). The activations of 16 tokens are packed once per call in the
// layout the B operand needs (4 consecutive elements of each token side by side); the weights of 16 rows
// are prepared once per row tile (Q8_0: read as stored; other 32-blocks: unpacked; K types: unpacked,
// scaled and split), nothing is kept between calls.
//
// Linux gives a process the tile state only after arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)
// (kernel Documentation/arch/x86/xstate.rst); the tile instructions are written as inline assembly
// (binutils >= 2.36), the float epilogue uses AVX-512 with target attributes, and everything is used
// only after haveAmx() checked the CPU and the OS at run time. QZ_NO_AMX=1 turns the path off.
#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/dtype.h"
#include "ggml/vec_dot_impl.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__linux__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define QZ_VECDOT_AMX 1
#else
#define QZ_VECDOT_AMX 0
#endif

namespace qz::ggml::vecdot {

#if QZ_VECDOT_AMX

namespace {

// GCC 12 warns that the _mm512_undefined_* operands of some intrinsics (cvtepi32_ps, castsi256_si512) are
// "used uninitialized" (they are the intrinsics' deliberate don't-care operands).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#define QZ_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")))

// Tile registers. B32 types: 0 = C (16 × 16 int32), 1 = A (16 rows × 32 bytes), 2 = B (8 rows × 64 bytes).
// K types: 0, 1, 2 = C of the low parts, high parts and mins; 3, 5, 6 = A of those (16 × 64 bytes), 4 = B
// (16 rows × 64 bytes: 64 elements of 16 tokens).
#define QZ_TILE_LOAD(t, base, stride)                                                                   \
    asm volatile("tileloadd (%0,%1,1), %%tmm" #t ::"r"(base), "r"(static_cast<long>(stride)) : "memory")
#define QZ_TILE_STORE(t, base, stride)                                                                  \
    asm volatile("tilestored %%tmm" #t ", (%0,%1,1)" ::"r"(base), "r"(static_cast<long>(stride)) : "memory")
#define QZ_TILE_ZERO(t) asm volatile("tilezero %%tmm" #t ::)
#define QZ_TILE_DP(c, a, b) asm volatile("tdpbssd %%tmm" #b ", %%tmm" #a ", %%tmm" #c ::)

struct alignas(64) TileConfig {
    uint8_t palette = 1;
    uint8_t startRow = 0;
    uint8_t reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64);

void loadTiles(bool b32) {
    TileConfig c;
    for (int t = 0; t < 7; ++t) {
        c.rows[t] = 16;
        c.colsb[t] = 64;
    }
    if (b32) {
        c.colsb[1] = 32;
        c.rows[2] = 8;
    }
    asm volatile("ldtilecfg %0" ::"m"(c) : "memory");
}

// The tile configuration is per thread and other code in the process (llama.cpp's AMX kernels load theirs
// once per thread) may rely on it staying loaded: the row tiles keep the one they found and put it back.
struct TileScope {
    TileConfig saved;
    explicit TileScope(bool b32) {
        asm volatile("sttilecfg %0" : "=m"(saved)::"memory");
        loadTiles(b32);
    }
    ~TileScope() {
        if (saved.palette != 0)
            asm volatile("ldtilecfg %0" ::"m"(saved) : "memory");
        else
            asm volatile("tilerelease" ::: "memory");
    }
};

bool detectAmx() {
    if (const char* env = std::getenv("QZ_NO_AMX"); env && *env && *env != '0') return false;
    if (!haveAvx2()) return false;
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false; // OSXSAVE
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool tile = d & (1u << 24), int8 = d & (1u << 25);
    const bool avx512 = (b & (1u << 16)) && (b & (1u << 17)) && (b & (1u << 30)) && (b & (1u << 31));
    if (!tile || !int8 || !avx512) return false;
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    if (syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) != 0) return false;
    unsigned lo = 0, hi = 0;
    asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    // opmask, ZMM upper halves, ZMM16-31, tile config and tile data enabled by the OS
    return (lo & 0xE6u) == 0xE6u && (lo & 0x60000u) == 0x60000u;
}

// Per-thread scratch of the row tiles.
struct AmxScratch {
    std::vector<UnpackedK> k;
    std::vector<UnpackedB32> b32;
    std::vector<int8_t> aq, amn;
    std::vector<float> d, dmin;
    alignas(64) int32_t c[2 * 16 * 16];
    alignas(64) int32_t m[16 * 16];
    alignas(64) float out[16 * 16];
};
AmxScratch& amxScratch() {
    thread_local AmxScratch s;
    return s;
}

// Row r's 16 token results (out[16·r + t]) to Y.
void storeTile(const float* out, int64_t r0, int rows, int64_t t0, int tokens, float* Y, int64_t ldy) {
    for (int t = 0; t < tokens; ++t)
        for (int r = 0; r < rows; ++r)
            Y[r0 + r + (t0 + t) * ldy] = out[16 * r + t];
}

// A of block b: 16 rows of 32 bytes at aq + b·step, rows `stride` apart.
QZ_AVX512 void b32Tile(const AmxActs& a, int64_t nb, AmxScratch& s, const void* aq, size_t step, size_t stride,
                       int64_t r0, int64_t n, float* Y, int64_t ldy) {
    for (int64_t g = 0; g < a.groups; ++g) {
        __m512 sum[16];
        for (int r = 0; r < 16; ++r)
            sum[r] = _mm512_setzero_ps();
        const int8_t* pg = a.q.data() + g * a.groupBytes;
        for (int64_t b = 0; b < nb; ++b) {
            QZ_TILE_ZERO(0);
            QZ_TILE_LOAD(1, static_cast<const uint8_t*>(aq) + b * step, stride);
            QZ_TILE_LOAD(2, pg + b * 512, 64);
            QZ_TILE_DP(0, 1, 2);
            QZ_TILE_STORE(0, s.c, 64);
            const __m512 dy = _mm512_loadu_ps(a.d.data() + (g * a.nb + b) * 16);
            const float* dw = s.d.data() + b * 16;
            for (int r = 0; r < 16; ++r) {
                const __m512 is = _mm512_cvtepi32_ps(_mm512_load_si512(s.c + 16 * r));
                sum[r] = _mm512_add_ps(sum[r], _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(dw[r]), dy), is));
            }
        }
        for (int r = 0; r < 16; ++r)
            _mm512_store_ps(s.out + 16 * r, sum[r]);
        storeTile(s.out, r0, 16, 16 * g, static_cast<int>(std::min<int64_t>(16, n - 16 * g)), Y, ldy);
    }
}

// Per block: the low and high parts of value × scale (hi·128 + lo, README.md D.6) and the mins against 64
// elements at a time, then per row is = 128·hi + lo and the scalar kernel's float expression.
template <bool Mins>
QZ_AVX512 void kTile(const AmxActs& a, int64_t nb, AmxScratch& s, int64_t r0, int64_t n, float* Y, int64_t ldy) {
    for (int64_t g = 0; g < a.groups; ++g) {
        __m512 sum[16];
        for (int r = 0; r < 16; ++r)
            sum[r] = _mm512_setzero_ps();
        const int8_t* pg = a.q.data() + g * a.groupBytes;
        for (int64_t b = 0; b < nb; ++b) {
            const int8_t* pb = pg + b * 4096; // 64 rows of 64 bytes per block
            const int8_t* lo = s.aq.data() + b * 8192;
            const int8_t* mb = s.amn.data() + b * 4096;
            QZ_TILE_ZERO(0);
            QZ_TILE_ZERO(1);
            if constexpr (Mins) QZ_TILE_ZERO(2);
            for (int q = 0; q < 4; ++q) {
                QZ_TILE_LOAD(4, pb + q * 1024, 64);
                QZ_TILE_LOAD(3, lo + q * 1024, 64);
                QZ_TILE_LOAD(5, lo + 4096 + q * 1024, 64);
                QZ_TILE_DP(0, 3, 4);
                QZ_TILE_DP(1, 5, 4);
                if constexpr (Mins) {
                    QZ_TILE_LOAD(6, mb + q * 1024, 64);
                    QZ_TILE_DP(2, 6, 4);
                }
            }
            QZ_TILE_STORE(0, s.c, 64);
            QZ_TILE_STORE(1, s.c + 256, 64);
            if constexpr (Mins) QZ_TILE_STORE(2, s.m, 64);
            const __m512 yd = _mm512_loadu_ps(a.d.data() + (g * a.nb + b) * 16);
            for (int r = 0; r < 16; ++r) {
                const __m512i is = _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(s.c + 256 + 16 * r), 7),
                                                    _mm512_load_si512(s.c + 16 * r));
                const __m512i ms = Mins ? _mm512_load_si512(s.m + 16 * r) : _mm512_setzero_si512();
                const __m512 t2 = _mm512_mul_ps(_mm512_mul_ps(yd, _mm512_set1_ps(s.d[b * 16 + r])), _mm512_cvtepi32_ps(is));
                const __m512 t4 =
                    _mm512_mul_ps(_mm512_mul_ps(yd, _mm512_set1_ps(s.dmin[b * 16 + r])), _mm512_cvtepi32_ps(ms));
                sum[r] = _mm512_add_ps(sum[r], _mm512_sub_ps(t2, t4));
            }
        }
        for (int r = 0; r < 16; ++r)
            _mm512_store_ps(s.out + 16 * r, sum[r]);
        storeTile(s.out, r0, 16, 16 * g, static_cast<int>(std::min<int64_t>(16, n - 16 * g)), Y, ldy);
    }
}

// One weight row's block for the K kernel: every value times its integer scale, v = (q - offset)·sc, split
// as v = 128·hi + lo with lo in 0..127 and hi in -128..127, and the mins as one int8 per value; chunk c of
// 64 values at lo + 1024·c (hi 4096 bytes further) and mins + 1024·c. The ranges hold by the formats of
// the types amxSupported lists: |v| <= 127·32 (IQ4_XS: |q| <= 127, |sc| <= 32; Q6_K: |q| <= 32,
// |sc| <= 128; Q2_K..Q5_K less) < 2^14, mins 0..63. The sub-blocks' scales are then inside the tile
// products, and per row is = 128·Σ hi·y + Σ lo·y exactly.
QZ_AVX512 void splitScaled(const UnpackedK& u, int offset, bool mins, int8_t* lo, int8_t* mn) {
    const __m512i off = _mm512_set1_epi8(static_cast<char>(offset));
    const __m512i low7 = _mm512_set1_epi16(127);
    for (int c = 0; c < 4; ++c) {
        const __m512i q = _mm512_sub_epi8(_mm512_loadu_si512(u.q + 64 * c), off);
        const int16_t* sc = u.sc + 4 * c;
        for (int h = 0; h < 2; ++h) {
            const __m512i w = _mm512_cvtepi8_epi16(h ? _mm512_extracti64x4_epi64(q, 1) : _mm512_castsi512_si256(q));
            const __m512i scv = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(sc[2 * h])),
                                                   _mm256_set1_epi16(sc[2 * h + 1]), 1);
            const __m512i v = _mm512_mullo_epi16(w, scv);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(lo + 1024 * c + 32 * h),
                                _mm512_cvtepi16_epi8(_mm512_and_si512(v, low7)));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(lo + 4096 + 1024 * c + 32 * h),
                                _mm512_cvtepi16_epi8(_mm512_srai_epi16(v, 7)));
        }
        if (mins) {
            const int16_t* m = u.mn + 4 * c;
            const __m512i mv = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_set_m128i(_mm_set1_epi8(static_cast<char>(m[1])),
                                                        _mm_set1_epi8(static_cast<char>(m[0])))),
                _mm256_set_m128i(_mm_set1_epi8(static_cast<char>(m[3])), _mm_set1_epi8(static_cast<char>(m[2]))), 1);
            _mm512_storeu_si512(mn + 1024 * c, mv);
        }
    }
}

// The fp16 at p as unpackB32's AVX2 path converts it (F16C).
QZ_AVX512 float halfAt(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

} // namespace

bool haveAmx() {
    static const bool yes = detectAmx();
    return yes;
}

bool amxSupported(DType t) {
    switch (t) {
    case DType::Q4_0:
    case DType::Q5_0:
    case DType::Q8_0:
    case DType::IQ4_NL:
    case DType::MXFP4:
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
    case DType::IQ4_XS:
        return true;
    default:
        return false;
    }
}

QZ_AVX512 void amxPackActs(DType weightType, const uint8_t* act, size_t stride, int64_t n, int64_t nIn, AmxActs& out) {
    const bool k = formOf(weightType) == Form::K;
    const int64_t bsElems = k ? QK_K : 32;
    const size_t blockBytes = k ? sizeof(BlockQ8_K) : sizeof(BlockQ8_0);
    const size_t qsOff = k ? offsetof(BlockQ8_K, qs) : 2;
    out.nb = nIn / bsElems;
    out.groups = (n + 15) / 16;
    out.groupBytes = static_cast<size_t>(nIn) * 16;
    const size_t qBytes = static_cast<size_t>(out.groups) * out.groupBytes;
    if (out.q.size() < qBytes) out.q.resize(qBytes);
    out.d.assign(static_cast<size_t>(out.groups * out.nb * 16), 0.f);
    const int64_t words = bsElems / 4;
    for (int64_t j = 0; j < n; ++j) {
        const int64_t g = j / 16, t = j % 16;
        const uint8_t* tok = act + static_cast<size_t>(j) * stride;
        int8_t* pg = out.q.data() + g * out.groupBytes;
        for (int64_t b = 0; b < out.nb; ++b) {
            const uint8_t* blk = tok + b * blockBytes;
            float d;
            if (k) {
                std::memcpy(&d, blk, 4);
            } else {
                uint16_t h;
                std::memcpy(&h, blk, 2);
                d = _cvtsh_ss(h);
            }
            out.d[static_cast<size_t>((g * out.nb + b) * 16 + t)] = d;
            for (int64_t w = 0; w < words; ++w)
                std::memcpy(pg + ((b * words + w) * 16 + t) * 4, blk + qsOff + 4 * w, 4);
        }
    }
    for (int64_t j = n; j < out.groups * 16; ++j) { // the last group's missing tokens
        int8_t* pg = out.q.data() + (j / 16) * out.groupBytes;
        for (int64_t w = 0; w < nIn / 4; ++w)
            std::memset(pg + (w * 16 + j % 16) * 4, 0, 4);
    }
}

bool amxRows16(DType t, const uint8_t* W, size_t rowStride, int64_t r0, int64_t nIn, const AmxActs& a, int64_t n,
               float* Y, int64_t ldy) {
    AmxScratch& s = amxScratch();
    if (formOf(t) == Form::B32) {
        const int64_t nb = nIn / 32;
        s.d.resize(static_cast<size_t>(nb * 16));
        if (t == DType::Q8_0) { // the values as stored are the A operand: no copy
            for (int r = 0; r < 16; ++r)
                for (int64_t b = 0; b < nb; ++b)
                    s.d[static_cast<size_t>(b * 16 + r)] = halfAt(W + (r0 + r) * rowStride + b * sizeof(BlockQ8_0));
            const TileScope tiles(true);
            b32Tile(a, nb, s, W + r0 * rowStride + 2, sizeof(BlockQ8_0), rowStride, r0, n, Y, ldy);
            return true;
        }
        s.b32.resize(static_cast<size_t>(16 * nb));
        s.aq.resize(static_cast<size_t>(nb * 512));
        for (int r = 0; r < 16; ++r) {
            UnpackedB32* u = s.b32.data() + r * nb;
            unpackB32(t, W + (r0 + r) * rowStride, u, nb, true);
            for (int64_t b = 0; b < nb; ++b) {
                std::memcpy(s.aq.data() + b * 512 + 32 * r, u[b].q, 32);
                s.d[static_cast<size_t>(b * 16 + r)] = u[b].d;
            }
        }
        const TileScope tiles(true);
        b32Tile(a, nb, s, s.aq.data(), 512, 32, r0, n, Y, ldy);
        return true;
    }
    const int64_t nb = nIn / QK_K;
    s.k.resize(static_cast<size_t>(16 * nb));
    for (int r = 0; r < 16; ++r)
        unpackK(t, W + (r0 + r) * rowStride, s.k.data() + r * nb, nb, true);
    const bool mins = hasMins(t);
    s.aq.resize(static_cast<size_t>(nb * 8192));
    s.amn.resize(mins ? static_cast<size_t>(nb * 4096) : 0);
    s.d.resize(static_cast<size_t>(nb * 16));
    s.dmin.resize(static_cast<size_t>(nb * 16));
    for (int r = 0; r < 16; ++r)
        for (int64_t b = 0; b < nb; ++b) {
            const UnpackedK& u = s.k[static_cast<size_t>(r * nb + b)];
            splitScaled(u, std::max(0, unpackedOffset(t)), mins, s.aq.data() + b * 8192 + r * 64,
                        mins ? s.amn.data() + b * 4096 + r * 64 : nullptr);
            s.d[static_cast<size_t>(b * 16 + r)] = u.d;
            s.dmin[static_cast<size_t>(b * 16 + r)] = u.dmin;
        }
    const TileScope tiles(false);
    mins ? kTile<true>(a, nb, s, r0, n, Y, ldy) : kTile<false>(a, nb, s, r0, n, Y, ldy);
    return true;
}

#else

bool haveAmx() {
    return false;
}
bool amxSupported(DType) {
    return false;
}
void amxPackActs(DType, const uint8_t*, size_t, int64_t, int64_t, AmxActs&) {}
bool amxRows16(DType, const uint8_t*, size_t, int64_t, int64_t, const AmxActs&, int64_t, float*, int64_t) {
    return false;
}

#endif

} // namespace qz::ggml::vecdot
