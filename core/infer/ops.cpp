#include "infer/ops.h"

#include <cmath>

namespace qz {

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
