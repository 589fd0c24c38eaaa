// Activation encoding, dispatch and quantizedLinear (README.md D). Weight rows are unpacked by
// vec_dot_unpack.cpp (which also has the portable kernels); vec_dot_avx2.cpp has the AVX2 kernels.
#include "ggml/vec_dot.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/fp16.h"
#include "common/parallel.h"
#include "ggml/block_types.h"
#include "ggml/quant_helpers.h"
#include "ggml/vec_dot_impl.h"

namespace qz::ggml {

namespace {

// x86's float -> int32 conversion (cvtps2dq / cvttss2si): out of range, infinity and NaN give INT32_MIN.
inline int32_t x86ToInt32(float v) {
    if (!(std::fabs(v) < 2147483648.0f)) return INT32_MIN;
    return static_cast<int32_t>(v);
}

// Round half to even (_mm256_round_ps with _MM_ROUND_NEAREST): adding and removing 1.5·2^23 rounds
// exactly so for |v| < 2^22, where the sum's unit is 1; larger values go to nearbyint (slow, rare).
inline float roundHalfEven(float v) {
    if (std::fabs(v) < 4194304.f) return (v + 12582912.f) - 12582912.f;
    return std::nearbyint(v);
}

// ggml-cpu's AVX encoder (upstream ggml-cpu/arch/x86/quants.c:302-398 quantize_row_q8_0, 400-502 q8_1):
// scale by 127/max, _mm256_round_ps(nearest even), cvtps_epi32, saturating packs to int8.
template <bool WithSum> void encodeQ8Avx(const float* x, uint8_t* dst, int64_t nb) {
    constexpr size_t bs = WithSum ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0);
    constexpr size_t qsOff = WithSum ? 4 : 2;
    for (int64_t i = 0; i < nb; ++i, x += 32, dst += bs) {
        float maxAbs = 0.f;
        for (int j = 0; j < 32; ++j) {
            const float a = std::fabs(x[j]);
            maxAbs = a > maxAbs ? a : maxAbs; // maxps keeps the second operand on NaN: not modelled
        }
        const float d = maxAbs / 127.f;
        const uint16_t dh = fp32ToFp16(d);
        std::memcpy(dst, &dh, 2);
        const float id = maxAbs != 0.0f ? 127.f / maxAbs : 0.0f;
        uint32_t sum = 0; // the SIMD sum adds int32 lanes with wrap-around
        for (int j = 0; j < 32; ++j) {
            const int32_t v = x86ToInt32(roundHalfEven(x[j] * id));
            sum += static_cast<uint32_t>(v);
            dst[qsOff + j] = static_cast<uint8_t>(static_cast<int8_t>(std::clamp(v, -128, 127)));
        }
        if constexpr (WithSum) {
            const uint16_t sh = fp32ToFp16(d * static_cast<float>(static_cast<int32_t>(sum)));
            std::memcpy(dst + 2, &sh, 2);
        }
    }
}

// ggml's reference encoder (upstream ggml-quants.c:276-300 quantize_row_q8_0_ref, 302-335 q8_1_ref):
// scale by 1/d, roundf, converted to int8 as x86 does (cvttss2si, low byte).
template <bool WithSum> void encodeQ8Ref(const float* x, uint8_t* dst, int64_t nb) {
    constexpr size_t bs = WithSum ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0);
    constexpr size_t qsOff = WithSum ? 4 : 2;
    for (int64_t i = 0; i < nb; ++i, x += 32, dst += bs) {
        float amax = 0.f;
        for (int j = 0; j < 32; ++j)
            amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127;
        const float id = d != 0.f ? 1.0f / d : 0.0f;
        const uint16_t dh = fp32ToFp16(d);
        std::memcpy(dst, &dh, 2);
        int sum = 0;
        for (int j = 0; j < 32; ++j) {
            const int8_t q = static_cast<int8_t>(static_cast<uint8_t>(x86ToInt32(std::round(x[j] * id))));
            dst[qsOff + j] = static_cast<uint8_t>(q);
            sum += q;
        }
        if constexpr (WithSum) {
            const uint16_t sh = fp32ToFp16(static_cast<float>(sum) * d);
            std::memcpy(dst + 2, &sh, 2);
        }
    }
}

// quantize_row_q8_K_ref (upstream ggml-quants.c:2768-2805); ggml leaves bsums unwritten for an
// all-zero block, we write zeros there.
void encodeQ8K(const float* x, BlockQ8_K* y, int64_t nb) {
    for (int64_t i = 0; i < nb; ++i, x += QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < QK_K; ++j) {
            const float ax = std::fabs(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (amax == 0.f) {
            std::memset(&y[i], 0, sizeof(BlockQ8_K));
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; ++j) {
            const int v = nearest_int(iscale * x[j]);
            y[i].qs[j] = static_cast<int8_t>(std::min(127, v));
        }
        for (int j = 0; j < QK_K / 16; ++j) {
            int sum = 0;
            for (int k = 0; k < 16; ++k)
                sum += y[i].qs[j * 16 + k];
            y[i].bsums[j] = static_cast<int16_t>(sum);
        }
        y[i].d = 1 / iscale;
    }
}

bool detectAvx() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx");
#else
    return false;
#endif
}

} // namespace

bool vecDotSupported(DType t) {
    switch (t) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q8_0:
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
    case DType::IQ2_XXS:
    case DType::IQ2_XS:
    case DType::IQ2_S:
    case DType::IQ3_XXS:
    case DType::IQ3_S:
    case DType::IQ1_S:
    case DType::IQ1_M:
    case DType::IQ4_NL:
    case DType::IQ4_XS:
    case DType::TQ1_0:
    case DType::TQ2_0:
    case DType::MXFP4:
        return true;
    default:
        return false;
    }
}

DType vecDotType(DType t) {
    switch (t) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
        return t;
    case DType::Q4_0:
    case DType::Q5_0:
    case DType::Q8_0:
    case DType::IQ4_NL:
    case DType::MXFP4:
        return DType::Q8_0;
    case DType::Q4_1:
    case DType::Q5_1:
    case DType::Q8_1:
        return DType::Q8_1;
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
    case DType::Q8_K:
    case DType::IQ2_XXS:
    case DType::IQ2_XS:
    case DType::IQ2_S:
    case DType::IQ3_XXS:
    case DType::IQ3_S:
    case DType::IQ1_S:
    case DType::IQ1_M:
    case DType::IQ4_XS:
    case DType::TQ1_0:
    case DType::TQ2_0:
        return DType::Q8_K;
    default:
        return DType::Count;
    }
}

size_t vecDotRowBytes(DType type, int64_t n) {
    const DType vd = vecDotType(type);
    if (vd == DType::Count || n < 0) return 0;
    const auto bytes = bytesFor(vd, static_cast<uint64_t>(n));
    if (!bytes || *bytes > SIZE_MAX) return 0;
    return static_cast<size_t>(*bytes);
}

ActivationEncoder defaultActivationEncoder() {
    static const ActivationEncoder e = detectAvx() ? ActivationEncoder::Avx : ActivationEncoder::Reference;
    return e;
}

bool quantizeActivationRowWith(ActivationEncoder enc, DType vdType, const float* x, void* dst, int64_t n) {
    const DType vd = vecDotType(vdType);
    if (vd == DType::Count || n < 0 || n % traits(vd).blockSize != 0) return false;
    auto* out = static_cast<uint8_t*>(dst);
    switch (vd) {
    case DType::F32:
        std::memcpy(out, x, static_cast<size_t>(n) * 4);
        break;
    case DType::F16:
        for (int64_t i = 0; i < n; ++i) {
            const uint16_t h = fp32ToFp16(x[i]);
            std::memcpy(out + 2 * i, &h, 2);
        }
        break;
    case DType::BF16:
        for (int64_t i = 0; i < n; ++i) {
            const uint16_t h = fp32ToBf16(x[i]);
            std::memcpy(out + 2 * i, &h, 2);
        }
        break;
    case DType::Q8_0:
        if (enc == ActivationEncoder::Avx && vecdot::haveAvx2())
            vecdot::encodeQ8_0Avx2(x, out, n / 32);
        else if (enc == ActivationEncoder::Avx)
            encodeQ8Avx<false>(x, out, n / 32);
        else
            encodeQ8Ref<false>(x, out, n / 32);
        break;
    case DType::Q8_1:
        if (enc == ActivationEncoder::Avx)
            encodeQ8Avx<true>(x, out, n / 32);
        else
            encodeQ8Ref<true>(x, out, n / 32);
        break;
    case DType::Q8_K:
        if (vecdot::haveAvx2())
            vecdot::encodeQ8KAvx2(x, reinterpret_cast<BlockQ8_K*>(out), n / QK_K);
        else
            encodeQ8K(x, reinterpret_cast<BlockQ8_K*>(out), n / QK_K);
        break;
    default:
        return false;
    }
    return true;
}

bool quantizeActivationRow(DType vdType, const float* x, void* dst, int64_t n) {
    return quantizeActivationRowWith(defaultActivationEncoder(), vdType, x, dst, n);
}

namespace {

using namespace vecdot;

// Per-thread scratch for one unpacked weight row (and, for the float types, the decoded activation).
struct Scratch {
    std::vector<UnpackedK> k, k2;
    std::vector<UnpackedB32> b32, b32b;
    std::vector<float> w, a;
};
Scratch& scratch() {
    thread_local Scratch s;
    return s;
}

// A weight row in its unpacked form, and the kernel over it.
struct RowKernel {
    DType type;
    Form form;
    bool avx2;
    int64_t n;

    // Unpacks `row` into s; returns the pointer the dot reads.
    const void* unpack(const uint8_t* row, Scratch& s, bool second = false) const {
        switch (form) {
        case Form::K: {
            const int64_t nb = n / QK_K;
            std::vector<UnpackedK>& buf = second ? s.k2 : s.k;
            if (static_cast<int64_t>(buf.size()) < nb) buf.resize(static_cast<size_t>(nb));
            unpackK(type, row, buf.data(), nb, avx2);
            return buf.data();
        }
        case Form::B32: {
            const int64_t nb = n / 32;
            std::vector<UnpackedB32>& buf = second ? s.b32b : s.b32;
            if (static_cast<int64_t>(buf.size()) < nb) buf.resize(static_cast<size_t>(nb));
            unpackB32(type, row, buf.data(), nb, avx2);
            return buf.data();
        }
        case Form::Float:
            if (type == DType::F32 || avx2) return row; // the AVX2 kernel converts as it goes
            if (static_cast<int64_t>(s.w.size()) < n) s.w.resize(static_cast<size_t>(n));
            decodeFloats(type, row, s.w.data(), n);
            return s.w.data();
        default:
            return nullptr;
        }
    }

    // acts[0..nt), nt <= kMaxTokens: encoded activation rows (for the float types: already decoded to
    // floats); out[t] is the dot with acts[t].
    void dot(const void* w, const void* const* acts, int nt, float* out) const {
        switch (form) {
        case Form::K: {
            const auto* uw = static_cast<const UnpackedK*>(w);
            const auto* ys = reinterpret_cast<const BlockQ8_K* const*>(acts);
            if (avx2)
                dotKAvx2(uw, ys, nt, n / QK_K, out, unpackedOffset(type) < 0, hasMins(type));
            else
                for (int t = 0; t < nt; ++t)
                    out[t] = dotKScalar(uw, ys[t], n / QK_K);
            break;
        }
        case Form::B32: {
            const auto* uw = static_cast<const UnpackedB32*>(w);
            const auto* ys = reinterpret_cast<const uint8_t* const*>(acts);
            const bool q81 = type == DType::Q4_1 || type == DType::Q5_1;
            if (avx2)
                dotB32Avx2(uw, ys, nt, n / 32, q81, out);
            else
                for (int t = 0; t < nt; ++t)
                    out[t] = dotB32Scalar(uw, ys[t], n / 32, q81);
            break;
        }
        case Form::Float: {
            const auto* fs = reinterpret_cast<const float* const*>(acts);
            if (avx2)
                dotFloatAvx2(type, w, fs, nt, n, out);
            else
                for (int t = 0; t < nt; ++t)
                    out[t] = dotF32Scalar(static_cast<const float*>(w), fs[t], n);
            break;
        }
        default:
            for (int t = 0; t < nt; ++t)
                out[t] = 0.f;
            break;
        }
    }
};

float vecDotWith(bool avx2, DType weightType, int64_t n, const void* wRow, const void* actRow) {
    if (!vecDotSupported(weightType) || n <= 0 || n % traits(weightType).blockSize != 0) return 0.f;
    const RowKernel k{weightType, formOf(weightType), avx2, n};
    Scratch& s = scratch();
    const void* w = k.unpack(static_cast<const uint8_t*>(wRow), s);
    const void* a = actRow;
    if (k.form == Form::Float && weightType != DType::F32) {
        if (static_cast<int64_t>(s.a.size()) < n) s.a.resize(static_cast<size_t>(n));
        decodeFloats(weightType, static_cast<const uint8_t*>(actRow), s.a.data(), n);
        a = s.a.data();
    }
    float out = 0.f;
    k.dot(w, &a, 1, &out);
    return out;
}

} // namespace

float vecDotScalar(DType weightType, int64_t n, const void* wRow, const void* actRow) {
    return vecDotWith(false, weightType, n, wRow, actRow);
}

float vecDot(DType weightType, int64_t n, const void* wRow, const void* actRow) {
    return vecDotWith(haveAvx2(), weightType, n, wRow, actRow);
}

const char* vecDotKernelName(DType t) {
    return vecDotSupported(t) && haveAvx2() ? "avx2" : "scalar";
}

// Fewer tokens than this go to the AVX2 kernels even with AMX (a tile product always computes 16).
constexpr int64_t kAmxMinTokens = 4;

const char* quantizedLinearKernelName(DType t) {
    if (!vecDotSupported(t) || !haveAvx2()) return "scalar";
    if (formOf(t) == Form::Float && haveAvx512()) return "avx512";
    return amxSupported(t) && haveAmx() ? "amx" : "avx2";
}

bool quantizedLinear(DType weightType, const uint8_t* W, size_t rowStride, int64_t nOut, int64_t nIn,
                     const float* X, int64_t n, float* Y, int64_t ldy, int threads) {
    if (!vecDotSupported(weightType) || nIn < 0 || nOut < 0 || n < 0) return false;
    if (nIn % traits(weightType).blockSize != 0) return false;
    const size_t actBytes = vecDotRowBytes(weightType, nIn);
    if (actBytes == 0 && nIn != 0) return false;
    if (nOut == 0 || n == 0) return true;
    const RowKernel k{weightType, formOf(weightType), haveAvx2(), nIn};
    // Activations, encoded once per token (the float types keep the decoded floats of their encoding).
    const bool floats = k.form == Form::Float;
    size_t stride = actBytes, total = 0;
    if (floats && __builtin_mul_overflow(static_cast<size_t>(nIn), size_t(4), &stride)) return false;
    if (__builtin_mul_overflow(stride, static_cast<size_t>(n), &total)) return false;
    // Allocated per product: a buffer kept by the thread between products measured slower (bench_vec_dot
    // BF16, AVX2 kernel, 4096 × 4096 × 128: 140 ms against 115 ms; the cause was not found).
    std::vector<uint8_t> actBuf(total);
    uint8_t* const actData = actBuf.data();
    const DType vd = vecDotType(weightType);
    parallelFor(
        static_cast<size_t>(n),
        [&](size_t j0, size_t j1, int) {
            std::vector<uint8_t> enc(floats ? actBytes : 0);
            for (size_t j = j0; j < j1; ++j) {
                uint8_t* dst = actData + j * stride;
                if (!floats) {
                    quantizeActivationRow(vd, X + j * nIn, dst, nIn);
                } else {
                    quantizeActivationRow(vd, X + j * nIn, enc.data(), nIn);
                    decodeFloats(vd, enc.data(), reinterpret_cast<float*>(dst), nIn);
                }
            }
        },
        threads);
    // Tokens in panels whose activations stay in L2 while the rows pass over them: the float types'
    // decoded activations are large (4 bytes per element) and re-decoding a row per panel is cheap; the
    // quantized types' encodings are small and their unpacking is not, so they take all tokens at once.
    const int64_t panel =
        floats ? std::max<int64_t>(kMaxTokens,
                                   (256 * 1024 / std::max<int64_t>(1, static_cast<int64_t>(stride))) /
                                       kMaxTokens * kMaxTokens)
               : n;
    // Rows [r0, r1) with the AVX2 or scalar kernels.
    auto rows = [&](size_t r0, size_t r1) {
            Scratch& s = scratch();
            for (int64_t p0 = 0; p0 < n; p0 += panel) {
                const int64_t p1 = std::min(n, p0 + panel);
                size_t i = r0;
                if (k.form == Form::K && k.avx2) { // pairs of rows share the activation loads
                    const bool sgn = unpackedOffset(weightType) < 0, mins = hasMins(weightType);
                    for (; i + 2 <= r1; i += 2) {
                        const auto* w0 = static_cast<const UnpackedK*>(k.unpack(W + i * rowStride, s));
                        const auto* w1 =
                            static_cast<const UnpackedK*>(k.unpack(W + (i + 1) * rowStride, s, true));
                        for (int64_t j0 = p0; j0 < p1; j0 += kMaxTokens) {
                            const int nt = static_cast<int>(std::min<int64_t>(kMaxTokens, p1 - j0));
                            const BlockQ8_K* ys[kMaxTokens];
                            float out0[kMaxTokens], out1[kMaxTokens];
                            for (int t = 0; t < nt; ++t)
                                ys[t] = reinterpret_cast<const BlockQ8_K*>(actData + (j0 + t) * stride);
                            dotK2Avx2(w0, w1, ys, nt, nIn / QK_K, out0, out1, sgn, mins);
                            for (int t = 0; t < nt; ++t) {
                                Y[i + (j0 + t) * ldy] = out0[t];
                                Y[i + 1 + (j0 + t) * ldy] = out1[t];
                            }
                        }
                    }
                }
                if (k.form == Form::B32 && k.avx2) {
                    const bool q81 = weightType == DType::Q4_1 || weightType == DType::Q5_1;
                    for (; i + 2 <= r1; i += 2) {
                        const auto* w0 = static_cast<const UnpackedB32*>(k.unpack(W + i * rowStride, s));
                        const auto* w1 =
                            static_cast<const UnpackedB32*>(k.unpack(W + (i + 1) * rowStride, s, true));
                        for (int64_t j0 = p0; j0 < p1; j0 += kMaxTokens) {
                            const int nt = static_cast<int>(std::min<int64_t>(kMaxTokens, p1 - j0));
                            const uint8_t* ys[kMaxTokens];
                            float out0[kMaxTokens], out1[kMaxTokens];
                            for (int t = 0; t < nt; ++t)
                                ys[t] = actData + (j0 + t) * stride;
                            dotB322Avx2(w0, w1, ys, nt, nIn / 32, q81, out0, out1);
                            for (int t = 0; t < nt; ++t) {
                                Y[i + (j0 + t) * ldy] = out0[t];
                                Y[i + 1 + (j0 + t) * ldy] = out1[t];
                            }
                        }
                    }
                }
                if (k.form == Form::Float && k.avx2 && haveAvx512()) { // 4 rows share the activations
                    for (; i + 4 <= r1; i += 4) {
                        const void* ws[4];
                        for (int r = 0; r < 4; ++r)
                            ws[r] = W + (i + r) * rowStride;
                        for (int64_t j0 = p0; j0 < p1; j0 += kMaxTokens) {
                            const int nt = static_cast<int>(std::min<int64_t>(kMaxTokens, p1 - j0));
                            const float* as[kMaxTokens];
                            float out[4 * kMaxTokens];
                            for (int t = 0; t < nt; ++t)
                                as[t] = reinterpret_cast<const float*>(actData + (j0 + t) * stride);
                            dotFloat4Avx512(weightType, ws, as, nt, nIn, out);
                            for (int t = 0; t < nt; ++t)
                                for (int r = 0; r < 4; ++r)
                                    Y[i + r + (j0 + t) * ldy] = out[r * kMaxTokens + t];
                        }
                    }
                }
                for (; i < r1; ++i) {
                    const void* w = k.unpack(W + i * rowStride, s);
                    for (int64_t j0 = p0; j0 < p1; j0 += kMaxTokens) {
                        const int nt = static_cast<int>(std::min<int64_t>(kMaxTokens, p1 - j0));
                        const void* acts[kMaxTokens];
                        float out[kMaxTokens];
                        for (int t = 0; t < nt; ++t)
                            acts[t] = actData + (j0 + t) * stride;
                        k.dot(w, acts, nt, out);
                        for (int t = 0; t < nt; ++t)
                            Y[i + (j0 + t) * ldy] = out[t];
                    }
                }
            }
    };
    // With AMX, tiles of 16 rows × 16 tokens (the same bits); the rows left over go the other way.
    if (k.avx2 && n >= kAmxMinTokens && nOut >= 16 && amxSupported(weightType) && haveAmx()) {
        thread_local AmxActs callerPacked; // the workers below use the caller's (a reference, not their own)
        AmxActs& packed = callerPacked;
        amxPackActs(weightType, actData, stride, n, nIn, packed);
        const int64_t tiles = nOut / 16;
        parallelFor(
            static_cast<size_t>(tiles),
            [&](size_t t0, size_t t1, int) {
                for (size_t t = t0; t < t1; ++t)
                    if (!amxRows16(weightType, W, rowStride, static_cast<int64_t>(16 * t), nIn, packed, n, Y, ldy))
                        rows(16 * t, 16 * t + 16);
            },
            threads);
        if (tiles * 16 < nOut) rows(static_cast<size_t>(tiles * 16), static_cast<size_t>(nOut));
        return true;
    }
    parallelFor(
        static_cast<size_t>(nOut), [&](size_t r0, size_t r1, int) { rows(r0, r1); },
        threads, 16);
    return true;
}

} // namespace qz::ggml
