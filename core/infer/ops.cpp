#include "infer/ops.h"

#include <cmath>

#include "common/fp16.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace qz {

namespace {

#if defined(__x86_64__) || defined(__i386__)
bool haveF16c() {
    static const bool yes = [] {
        unsigned a = 0, b = 0, c = 0, d = 0;
        // F16C (CPUID 1 ECX bit 29) and AVX (bit 28) with the OS's YMM state (OSXSAVE bit 27, XCR0 bits 1-2)
        if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 29)) || !(c & (1u << 28)) || !(c & (1u << 27)))
            return false;
        unsigned lo = 0, hi = 0;
        asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        return (lo & 6u) == 6u;
    }();
    return yes;
}

__attribute__((target("avx,f16c"))) void roundToFp16F16c(float* x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT)));
    for (; i < n; ++i)
        x[i] = fp16ToFp32(fp32ToFp16(x[i]));
}
#endif

}  // namespace

void roundToFp16(float* x, int64_t n) {
#if defined(__x86_64__) || defined(__i386__)
    if (haveF16c()) {
        roundToFp16F16c(x, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; ++i)
        x[i] = fp16ToFp32(fp32ToFp16(x[i]));
}

void rmsNormColumns(const float* x, int64_t nTok, int64_t dim, const float* g, float eps, float* out) {
    for (int64_t t = 0; t < nTok; ++t) {
        const float* xi = x + t * dim;
        double s = 0;
        for (int64_t i = 0; i < dim; ++i) s += static_cast<double>(xi[i]) * xi[i];
        const float scale = 1.0f / std::sqrt(static_cast<float>(s / dim) + eps);
        float* o = out + t * dim;
        for (int64_t i = 0; i < dim; ++i) o[i] = xi[i] * scale * g[i];
    }
}

void applyRopeColumns(float* m, int64_t nTok, int64_t ld, int nHeads, int hd, int nRot, int64_t pos0,
                      const std::vector<double>& invFreq, float linearScale) {
    const int half = nRot / 2;
    std::vector<float> cs(half), sn(half);
    for (int64_t t = 0; t < nTok; ++t) {
        const double pos = static_cast<double>(pos0 + t) / linearScale;
        for (int i = 0; i < half; ++i) {
            const double a = pos * invFreq[i];
            cs[i] = static_cast<float>(std::cos(a));
            sn[i] = static_cast<float>(std::sin(a));
        }
        float* col = m + t * ld;
        for (int h = 0; h < nHeads; ++h) {
            float* x = col + static_cast<size_t>(h) * hd;
            for (int i = 0; i < half; ++i) {
                const float x0 = x[i], x1 = x[i + half];
                x[i] = x0 * cs[i] - x1 * sn[i];
                x[i + half] = x1 * cs[i] + x0 * sn[i];
            }
        }
    }
}

std::vector<double> ropeBaseFrequencies(const InferHParams& hp) {
    const int half = hp.nRot / 2;
    std::vector<double> f(half > 0 ? half : 0);
    for (int i = 0; i < half; ++i) f[i] = std::pow(static_cast<double>(hp.ropeTheta), -2.0 * i / hp.nRot);
    return f;
}

std::vector<float> llama3RopeFactors(const InferHParams& hp, const std::vector<double>& base) {
    if (!hp.ropeLlama3) return {};
    const double lowWave = hp.llama3OrigCtx / hp.llama3LowFreq;
    const double highWave = hp.llama3OrigCtx / hp.llama3HighFreq;
    std::vector<float> factors(base.size());
    for (size_t i = 0; i < base.size(); ++i) {
        const double f = base[i];
        const double wave = 2 * M_PI / f;
        double nf;
        if (wave < highWave) {
            nf = f;
        } else if (wave > lowWave) {
            nf = f / hp.llama3Factor;
        } else {
            const double s = (hp.llama3OrigCtx / wave - hp.llama3LowFreq) / (hp.llama3HighFreq - hp.llama3LowFreq);
            nf = (1 - s) * f / hp.llama3Factor + s * f;
        }
        factors[i] = static_cast<float>(f / nf);
    }
    return factors;
}

}  // namespace qz
