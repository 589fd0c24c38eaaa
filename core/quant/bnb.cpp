#include "quant/bnb.h"

#include <algorithm>
#include <cmath>

#include "common/parallel.h"

namespace qz::bnb {

namespace {

// NF4 (QLoRA appendix E / bitsandbytes get_4bit_type("nf4")): quantiles of N(0,1), normalised to [-1, 1].
// Kept in double: the encoder's thresholds are the midpoints of these doubles (as in dQuantizeNF4).
constexpr double kNf4[16] = {
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0};

std::array<float, 16> makeNf4() {
    std::array<float, 16> c{};
    for (int i = 0; i < 16; ++i) c[i] = static_cast<float>(kNf4[i]);
    return c;
}

std::array<float, 16> makeFp4() {
    // 1 sign bit, 2 exponent bits, 1 mantissa bit; magnitudes {0, 0.0625, 8, 12, 4, 6, 2, 3} for codes
    // 0..7, divided by the largest (12) in float as torch's div_ does.
    const float raw[8] = {0.0f, 0.0625f, 8.0f, 12.0f, 4.0f, 6.0f, 2.0f, 3.0f};
    std::array<float, 16> c{};
    for (int i = 0; i < 8; ++i) {
        c[i] = raw[i] / 12.0f;
        c[i + 8] = -(raw[i] / 12.0f);  // code 8 is -0.0
    }
    return c;
}

// torch.linspace(start, end, steps) on the CPU in float32: the first half counts up from start, the
// second half down from end.
std::vector<float> linspaceF32(float start, float end, int steps) {
    std::vector<float> v(static_cast<size_t>(steps));
    const float step = (end - start) / static_cast<float>(steps - 1);
    const int halfway = steps / 2;
    for (int i = 0; i < steps; ++i)
        v[i] = i < halfway ? start + step * static_cast<float>(i) : end - step * static_cast<float>(steps - i - 1);
    return v;
}

std::array<float, 256> makeDynamicMap() {
    // create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for exponent i = 0..6,
    // 2^i + 1 boundaries linspace(0.1, 1), their 2^i midpoints scaled by 10^(i-6), with both signs;
    // then 0 and 1.0. 2·127 + 2 = 256 values, sorted.
    std::vector<float> data;
    for (int i = 0; i < 7; ++i) {
        const auto b = linspaceF32(0.1f, 1.0f, (1 << i) + 1);
        const float scale = static_cast<float>(std::pow(10.0, i - 6));
        std::vector<float> means(b.size() - 1);
        for (size_t k = 0; k + 1 < b.size(); ++k) means[k] = (b[k] + b[k + 1]) / 2.0f;
        for (float m : means) data.push_back(scale * m);
        for (float m : means) data.push_back(-scale * m);
    }
    data.push_back(0.0f);
    data.push_back(1.0f);
    std::sort(data.begin(), data.end());
    std::array<float, 256> out{};
    std::copy_n(data.begin(), 256, out.begin());
    return out;
}

struct Thresholds {
    std::array<float, 15> nf4;      // between kNf4[i] and kNf4[i+1]
    std::array<float, 7> fp4;       // between the sorted FP4 magnitudes
    std::array<uint8_t, 8> fp4Code; // sorted magnitude index -> code
};

Thresholds makeThresholds() {
    Thresholds t{};
    for (int i = 0; i < 15; ++i)
        t.nf4[i] = static_cast<float>((kNf4[i] + kNf4[i + 1]) / 2.0);
    const auto& fp4 = codebook(FourBit::Fp4);
    std::array<uint8_t, 8> order = {0, 1, 2, 3, 4, 5, 6, 7};
    std::sort(order.begin(), order.end(), [&](uint8_t a, uint8_t b) { return fp4[a] < fp4[b]; });
    t.fp4Code = order;
    for (int i = 0; i < 7; ++i)
        t.fp4[i] = static_cast<float>(
            (static_cast<double>(fp4[order[i]]) + static_cast<double>(fp4[order[i + 1]])) / 2.0);
    return t;
}

const Thresholds& thresholds() {
    static const Thresholds t = makeThresholds();
    return t;
}

}  // namespace

const std::array<float, 16>& codebook(FourBit type) {
    static const std::array<float, 16> nf4 = makeNf4();
    static const std::array<float, 16> fp4 = makeFp4();
    return type == FourBit::Nf4 ? nf4 : fp4;
}

const std::array<float, 256>& dynamicMap() {
    static const std::array<float, 256> map = makeDynamicMap();
    return map;
}

uint8_t quantize4(FourBit type, float u) {
    const Thresholds& t = thresholds();
    if (type == FourBit::Nf4) {
        uint8_t q = 0;
        for (int i = 0; i < 15; ++i) q += u > t.nf4[i];  // thresholds ascend: counts those below u
        return q;
    }
    const uint8_t sign = u < 0 ? 8 : 0;
    const float m = std::fabs(u);
    int k = 0;
    for (int i = 0; i < 7; ++i) k += m > t.fp4[i];
    return static_cast<uint8_t>(t.fp4Code[k] + sign);
}

uint8_t quantizeDynamic(float u) {
    const auto& map = dynamicMap();
    if (!(u >= -1.0f)) u = std::isnan(u) ? 0.0f : -1.0f;
    if (u > 1.0f) u = 1.0f;
    const auto it = std::lower_bound(map.begin(), map.end(), u);  // first entry >= u
    if (it == map.begin()) return 0;
    if (it == map.end()) return 255;
    const auto hi = static_cast<int>(it - map.begin());
    const float dLo = std::fabs(u - map[hi - 1]), dHi = std::fabs(u - map[hi]);
    return static_cast<uint8_t>(dHi < dLo ? hi : hi - 1);
}

int64_t blockCount(int64_t n, int blockSize) { return n <= 0 ? 0 : (n + blockSize - 1) / blockSize; }

void quantizeBlockwise8(const float* x, int64_t n, int blockSize, uint8_t* codes, float* absmax) {
    const int64_t nb = blockCount(n, blockSize);
    for (int64_t b = 0; b < nb; ++b) {
        const int64_t begin = b * blockSize, end = std::min<int64_t>(n, begin + blockSize);
        float amax = 0;
        for (int64_t i = begin; i < end; ++i) amax = std::max(amax, std::fabs(x[i]));
        absmax[b] = amax;
        const float inv = amax > 0 ? 1.0f / amax : 0.0f;  // all-zero block: every value codes 0.0
        for (int64_t i = begin; i < end; ++i) codes[i] = quantizeDynamic(std::clamp(x[i] * inv, -1.0f, 1.0f));
    }
}

void dequantizeBlockwise8(const uint8_t* codes, const float* absmax, int64_t n, int blockSize, float* out) {
    const auto& map = dynamicMap();
    for (int64_t i = 0; i < n; ++i) out[i] = map[codes[i]] * absmax[i / blockSize];
}

FourBitTensor quantize4bit(const float* x, int64_t n, const FourBitParams& params) {
    FourBitTensor q;
    const int bs = std::max(1, params.blockSize);
    const int64_t nb = blockCount(n, bs);
    q.codes.resize(static_cast<size_t>(std::max<int64_t>(0, n)));
    q.absmax.resize(static_cast<size_t>(nb));
    const uint8_t zeroCode = quantize4(params.type, 0.0f);
    parallelFor(static_cast<size_t>(nb), [&](size_t b0, size_t b1, int) {
        for (size_t b = b0; b < b1; ++b) {
            const int64_t begin = static_cast<int64_t>(b) * bs, end = std::min<int64_t>(n, begin + bs);
            float amax = 0;
            for (int64_t i = begin; i < end; ++i) amax = std::max(amax, std::fabs(x[i]));
            q.absmax[b] = amax;
            if (!(amax > 0) || !std::isfinite(amax)) {
                // All zero: the code of 0.0. Non-finite absmax (hostile data): nothing sensible to scale.
                for (int64_t i = begin; i < end; ++i) q.codes[i] = zeroCode;
                continue;
            }
            const float inv = 1.0f / amax;
            for (int64_t i = begin; i < end; ++i)
                q.codes[i] = quantize4(params.type, std::clamp(x[i] * inv, -1.0f, 1.0f));
        }
    }, 0, std::max<size_t>(1, static_cast<size_t>(4096 / bs)));

    if (!params.doubleQuant) {
        q.scales = q.absmax;
        return q;
    }
    double sum = 0;
    for (float a : q.absmax) sum += a;
    q.offset = nb > 0 ? static_cast<float>(sum / static_cast<double>(nb)) : 0.0f;
    std::vector<float> centred(q.absmax.size());
    for (size_t b = 0; b < centred.size(); ++b) centred[b] = q.absmax[b] - q.offset;
    q.qabsmax.resize(centred.size());
    q.absmax2.resize(static_cast<size_t>(blockCount(nb, kNestedBlock)));
    quantizeBlockwise8(centred.data(), nb, kNestedBlock, q.qabsmax.data(), q.absmax2.data());
    q.scales.resize(centred.size());
    dequantizeBlockwise8(q.qabsmax.data(), q.absmax2.data(), nb, kNestedBlock, q.scales.data());
    for (float& s : q.scales) s += q.offset;
    return q;
}

void dequantize4bit(const FourBitTensor& q, const FourBitParams& params, int64_t n, float* out) {
    const auto& cb = codebook(params.type);
    const int bs = std::max(1, params.blockSize);
    parallelFor(static_cast<size_t>(std::max<int64_t>(0, n)), [&](size_t i0, size_t i1, int) {
        for (size_t i = i0; i < i1; ++i) out[i] = cb[q.codes[i] & 15] * q.scales[i / bs];
    }, 0, 1 << 15);
}

std::vector<uint8_t> pack4bit(const FourBitTensor& q, FourBit type) {
    const size_t n = q.codes.size();
    std::vector<uint8_t> packed((n + 1) / 2);
    const uint8_t pad = quantize4(type, 0.0f);
    for (size_t j = 0; j < packed.size(); ++j) {
        const uint8_t lo = 2 * j + 1 < n ? q.codes[2 * j + 1] : pad;
        packed[j] = static_cast<uint8_t>((q.codes[2 * j] << 4) | (lo & 15));
    }
    return packed;
}

uint64_t fourBitBytes(int64_t n, const FourBitParams& params) {
    if (n <= 0) return 0;
    const auto nb = static_cast<uint64_t>(blockCount(n, std::max(1, params.blockSize)));
    const uint64_t codes = (static_cast<uint64_t>(n) + 1) / 2;
    if (!params.doubleQuant) return codes + 4 * nb;
    return codes + nb + 4 * ((nb + kNestedBlock - 1) / kNestedBlock) + 4;
}

void fakeQuantize4bit(const FourBitParams& params, const float* x, int64_t n, float* out, int8_t* codes) {
    if (n <= 0) return;
    const FourBitTensor q = quantize4bit(x, n, params);
    dequantize4bit(q, params, n, out);
    if (codes)
        for (int64_t i = 0; i < n; ++i) codes[i] = static_cast<int8_t>(q.codes[i]);
}

}  // namespace qz::bnb
