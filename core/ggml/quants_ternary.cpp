#include "ggml/quants_ternary.h"

#include <cmath>

#include "common/fp16.h"
#include "ggml/block_types.h"

namespace qz::ggml {

namespace {

float blockAbsMax(const float* x) {
    float amax = 0.0f;
    for (int j = 0; j < QK_K; ++j) amax = std::max(amax, std::fabs(x[j]));
    return amax;
}

inline int trit(float v, float id) { return static_cast<int>(std::lroundf(v * id)) + 1; }

// ceil(q * 256 / 243): the base-3 number as a fraction of 3^5, in 8 bits
inline uint8_t scaleTrits(uint8_t q) { return static_cast<uint8_t>((static_cast<uint16_t>(q) * 256 + 242) / 243); }

}  // namespace

void quantizeRowsTQ1_0(const float* x, uint8_t* dst, int64_t nrows, int64_t ncols, const float*) {
    auto* y = reinterpret_cast<BlockTQ1_0*>(dst);
    const int64_t nb = nrows * ncols / QK_K;
    for (int64_t i = 0; i < nb; ++i) {
        const float d = blockAbsMax(x);
        const float id = d != 0.f ? 1.0f / d : 0.0f;
        y[i].d = fp32ToFp16(d);
        // 5 trits per byte: 32 bytes over 160 weights, then 16 bytes over 80 weights
        for (int m = 0; m < 32; ++m) {
            uint8_t q = 0;
            for (int n = 0; n < 5; ++n) q = static_cast<uint8_t>(q * 3 + trit(x[m + n * 32], id));
            y[i].qs[m] = scaleTrits(q);
        }
        x += 160;
        for (int m = 0; m < 16; ++m) {
            uint8_t q = 0;
            for (int n = 0; n < 5; ++n) q = static_cast<uint8_t>(q * 3 + trit(x[m + n * 16], id));
            y[i].qs[32 + m] = scaleTrits(q);
        }
        x += 80;
        // 4 trits per byte over the last 16 weights, the first in the most significant trit
        for (int j = 0; j < 4; ++j) {
            uint8_t q = 0;
            for (int m = 0; m < 4; ++m) q = static_cast<uint8_t>(q * 3 + trit(x[j + m * 4], id));
            y[i].qh[j] = scaleTrits(static_cast<uint8_t>(q * 3));
        }
        x += 16;
    }
}

void quantizeRowsTQ2_0(const float* x, uint8_t* dst, int64_t nrows, int64_t ncols, const float*) {
    auto* y = reinterpret_cast<BlockTQ2_0*>(dst);
    const int64_t nb = nrows * ncols / QK_K;
    for (int64_t i = 0; i < nb; ++i) {
        const float d = blockAbsMax(x);
        const float id = d != 0.f ? 1.0f / d : 0.0f;
        y[i].d = fp32ToFp16(d);
        for (int j = 0; j < 64; j += 32) {
            for (int m = 0; m < 32; ++m) {
                int q = 0;
                for (int n = 0; n < 4; ++n) q += (trit(x[m + n * 32], id) & 3) << (2 * n);
                y[i].qs[j + m] = static_cast<uint8_t>(q);
            }
            x += 128;
        }
    }
}

}  // namespace qz::ggml
