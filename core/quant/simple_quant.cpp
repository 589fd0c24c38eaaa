#include "quant/simple_quant.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/parallel.h"
#include "quant/bnb.h"
#include "quant/llm_int8.h"

namespace qz {

Status QuantSpec::validate() const {
    if (isBnbFourBit(method)) {
        if (blockSize < 32 || blockSize > 4096 || (blockSize & (blockSize - 1)) != 0)
            return makeError("block size must be a power of two between 32 and 4096 (got " +
                             std::to_string(blockSize) + ")");
        return okStatus();
    }
    if (method == QuantMethod::LlmInt8) {
        if (!(threshold > 0) || !std::isfinite(threshold))
            return makeError("the outlier threshold must be a positive number");
        if (calibCtx < 1 || calibCtx > (1 << 20)) return makeError("calibration context must be 1..1048576 tokens");
        if (calibChunks < 1 || calibChunks > (1 << 20)) return makeError("calibration chunks must be 1..1048576");
        return okStatus();
    }
    if (bits < 2 || bits > 8) return makeError("bits must be between 2 and 8 (got " + std::to_string(bits) + ")");
    if (granularity == Granularity::Group && (groupSize < 1 || groupSize > (1 << 20)))
        return makeError("group size must be between 1 and 1048576 (got " + std::to_string(groupSize) + ")");
    return okStatus();
}

std::string QuantSpec::describe() const {
    if (isBnbFourBit(method))
        return std::string(methodName(method)) + " block " + std::to_string(blockSize) +
               (doubleQuant ? " + double quant" : "");
    if (method == QuantMethod::LlmInt8) {
        char t[32];
        std::snprintf(t, sizeof t, "%g", static_cast<double>(threshold));
        return "llm-int8 threshold " + std::string(t) + " (fp16 outlier columns, per-row int8)";
    }
    std::string s = std::string(methodName(method)) + " " + std::to_string(bits) + "-bit ";
    switch (granularity) {
    case Granularity::Tensor: return s + "per tensor";
    case Granularity::Row: return s + "per row";
    case Granularity::Group: return s + "per group of " + std::to_string(groupSize);
    }
    return s;
}

std::string_view methodName(QuantMethod m) {
    switch (m) {
    case QuantMethod::Absmax: return "absmax";
    case QuantMethod::ZeroPoint: return "zeropoint";
    case QuantMethod::Nf4: return "nf4";
    case QuantMethod::Fp4: return "fp4";
    case QuantMethod::LlmInt8: return "llm-int8";
    }
    return "?";
}

std::optional<QuantMethod> parseMethod(std::string_view s) {
    if (s == "absmax") return QuantMethod::Absmax;
    if (s == "zeropoint" || s == "zero-point") return QuantMethod::ZeroPoint;
    if (s == "nf4") return QuantMethod::Nf4;
    if (s == "fp4") return QuantMethod::Fp4;
    if (s == "llm-int8" || s == "llm.int8" || s == "llm.int8()" || s == "llmint8") return QuantMethod::LlmInt8;
    return std::nullopt;
}

bool isBnbFourBit(QuantMethod m) { return m == QuantMethod::Nf4 || m == QuantMethod::Fp4; }
bool needsCalibration(QuantMethod m) { return m == QuantMethod::LlmInt8; }

int effectiveBits(const QuantSpec& spec) {
    if (isBnbFourBit(spec.method)) return 4;
    if (spec.method == QuantMethod::LlmInt8) return 8;
    return spec.bits;
}

std::vector<float> codeValues(const QuantSpec& spec) {
    if (!isBnbFourBit(spec.method)) return {};
    const auto& cb = bnb::codebook(spec.method == QuantMethod::Nf4 ? bnb::FourBit::Nf4 : bnb::FourBit::Fp4);
    return {cb.begin(), cb.end()};
}

std::string_view granularityName(Granularity g) {
    switch (g) {
    case Granularity::Tensor: return "tensor";
    case Granularity::Row: return "row";
    case Granularity::Group: return "group";
    }
    return "?";
}

std::optional<Granularity> parseGranularity(std::string_view s) {
    if (s == "tensor") return Granularity::Tensor;
    if (s == "row" || s == "vector" || s == "channel") return Granularity::Row;
    if (s == "group") return Granularity::Group;
    return std::nullopt;
}

namespace {
inline int32_t qmin(int bits) { return -(1 << (bits - 1)); }
inline int32_t qmax(int bits) { return (1 << (bits - 1)) - 1; }
}  // namespace

GroupParams computeGroupParams(QuantMethod m, int bits, const float* x, int64_t n) {
    GroupParams p;
    if (m == QuantMethod::Absmax) {
        float amax = 0;
        for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
        // All-zero group: any scale reproduces it; keep 1 so that codes are 0 and nothing divides by 0.
        p.scale = amax > 0 ? static_cast<float>(qmax(bits)) / amax : 1.f;
        p.zero = 0;
    } else {
        float lo = x[0], hi = x[0];
        for (int64_t i = 1; i < n; ++i) {
            lo = std::min(lo, x[i]);
            hi = std::max(hi, x[i]);
        }
        float range = hi - lo;
        if (range == 0) range = 1;
        p.scale = static_cast<float>((1 << bits) - 1) / range;
        p.zero = static_cast<int32_t>(std::nearbyint(-p.scale * lo - static_cast<float>(1 << (bits - 1))));
    }
    return p;
}

int32_t quantizeValue(QuantMethod m, int bits, const GroupParams& p, float x) {
    if (m == QuantMethod::Absmax) {
        const auto q = static_cast<int32_t>(std::nearbyint(p.scale * x));
        return std::clamp(q, -qmax(bits), qmax(bits));  // |x| ≤ max, so this only guards rounding
    }
    const auto q = static_cast<int32_t>(std::nearbyint(p.scale * x + static_cast<float>(p.zero)));
    return std::clamp(q, qmin(bits), qmax(bits));
}

float dequantizeValue(const GroupParams& p, int32_t q) { return static_cast<float>(q - p.zero) / p.scale; }

void quantizeDequantize(const QuantSpec& spec, const float* x, int64_t rows, int64_t cols, float* out,
                        int8_t* codes) {
    const int64_t n = rows * cols;
    if (n <= 0) return;
    if (isBnbFourBit(spec.method)) {
        bnb::FourBitParams p;
        p.type = spec.method == QuantMethod::Nf4 ? bnb::FourBit::Nf4 : bnb::FourBit::Fp4;
        p.blockSize = spec.blockSize;
        p.doubleQuant = spec.doubleQuant;
        bnb::fakeQuantize4bit(p, x, n, out, codes);
        return;
    }
    if (spec.method == QuantMethod::LlmInt8) {
        llmInt8QuantizeDequantize(x, rows, cols, false, {}, out, codes);
        return;
    }
    auto runGroup = [&](int64_t begin, int64_t len, const GroupParams& p) {
        for (int64_t i = begin; i < begin + len; ++i) {
            const int32_t q = quantizeValue(spec.method, spec.bits, p, x[i]);
            if (codes) codes[i] = static_cast<int8_t>(q);
            out[i] = dequantizeValue(p, q);
        }
    };
    if (spec.granularity == Granularity::Tensor) {
        // Parameters need the whole tensor: reduce in parallel, then quantize in parallel.
        const int threads = defaultThreadCount();
        std::vector<float> los(threads, x[0]), his(threads, x[0]);
        parallelFor(static_cast<size_t>(n), [&](size_t b, size_t e, int t) {
            float lo = x[b], hi = x[b];
            for (size_t i = b; i < e; ++i) {
                lo = std::min(lo, x[i]);
                hi = std::max(hi, x[i]);
            }
            los[t] = lo;
            his[t] = hi;
        }, threads, 1 << 16);
        const float lo = *std::min_element(los.begin(), los.end());
        const float hi = *std::max_element(his.begin(), his.end());
        const float extremes[2] = {lo, hi};  // both methods only need the min and the max
        const GroupParams p = computeGroupParams(spec.method, spec.bits, extremes, 2);
        parallelFor(static_cast<size_t>(n), [&](size_t b, size_t e, int) {
            runGroup(static_cast<int64_t>(b), static_cast<int64_t>(e - b), p);
        }, threads, 1 << 16);
        return;
    }
    const int64_t g = spec.granularity == Granularity::Row ? cols : std::min<int64_t>(spec.groupSize, cols);
    const int64_t groupsPerRow = (cols + g - 1) / g;
    parallelFor(static_cast<size_t>(rows), [&](size_t r0, size_t r1, int) {
        for (size_t r = r0; r < r1; ++r) {
            for (int64_t k = 0; k < groupsPerRow; ++k) {
                const int64_t begin = static_cast<int64_t>(r) * cols + k * g;
                const int64_t len = std::min(g, cols - k * g);  // a last, shorter group if g ∤ cols
                runGroup(begin, len, computeGroupParams(spec.method, spec.bits, x + begin, len));
            }
        }
    }, 0, std::max<size_t>(1, static_cast<size_t>((1 << 15) / std::max<int64_t>(1, cols))));
}

uint64_t quantizedBytes(const QuantSpec& spec, int64_t rows, int64_t cols) {
    if (isBnbFourBit(spec.method)) {
        bnb::FourBitParams p;
        p.blockSize = spec.blockSize;
        p.doubleQuant = spec.doubleQuant;
        return bnb::fourBitBytes(rows * cols, p);
    }
    if (spec.method == QuantMethod::LlmInt8) return llmInt8Bytes(rows, cols, 0).total();
    const uint64_t n = static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols);
    uint64_t groups = 1;
    if (spec.granularity == Granularity::Row) groups = static_cast<uint64_t>(rows);
    if (spec.granularity == Granularity::Group) {
        const int64_t g = std::min<int64_t>(spec.groupSize, cols);
        groups = static_cast<uint64_t>(rows) * static_cast<uint64_t>((cols + g - 1) / g);
    }
    const uint64_t perGroup = 4 + (spec.method == QuantMethod::ZeroPoint ? 2 : 0);
    return (n * static_cast<uint64_t>(spec.bits) + 7) / 8 + groups * perGroup;
}

}  // namespace qz
