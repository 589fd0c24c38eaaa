#include "teach/teach.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/fp16.h"
#include "exl2/exl2_optimize.h"
#include "ggml/block_types.h"
#include "ggml/dequantize.h"
#include "ggml/kquants.h"
#include "gptq/gptq_calib.h"
#include "gptq/gptq_quant.h"
#include "infer/engine.h"
#include "model/convert.h"
#include "quant/simple_quant.h"

namespace qz::teach {

Result<std::vector<float>> readTensorWindow(const Model& model, const TensorInfo& t, int64_t row0,
                                            int64_t rows, int64_t col0, int64_t cols) {
    const int64_t tRows = t.rows(), tCols = t.cols();
    if (row0 < 0 || rows <= 0 || col0 < 0 || cols <= 0 || row0 > tRows || rows > tRows - row0 ||
        col0 > tCols || cols > tCols - col0)
        return makeError(t.name + ": window rows " + std::to_string(row0) + "+" + std::to_string(rows) +
                         ", columns " + std::to_string(col0) + "+" + std::to_string(cols) +
                         " is outside the tensor " + t.shapeString());
    if (static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols) > (1u << 24))
        return makeError(t.name + ": window too large for a teaching view");
    const auto rowBytes = bytesFor(t.dtype, static_cast<uint64_t>(tCols));
    if (!rowBytes || *rowBytes == 0 || !canConvertToF32(t.dtype))
        return makeError(t.name + ": cannot read a row of type " + std::string(dtypeName(t.dtype)));
    const std::span<const uint8_t> raw = model.rawBytes(t);
    std::vector<float> row(static_cast<size_t>(tCols));
    std::vector<float> out(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r) {
        const uint64_t off = static_cast<uint64_t>(row0 + r) * *rowBytes;
        if (off > raw.size() || *rowBytes > raw.size() - off)
            return makeError(t.name + ": row beyond the tensor's bytes");
        if (auto s = convertToF32(t.dtype, raw.data() + off, static_cast<uint64_t>(tCols), row.data()); !s)
            return makeError(t.name + ": " + s.error().message);
        std::copy_n(row.data() + col0, cols, out.data() + r * cols);
    }
    return out;
}

// ---- 1 ----

namespace {
void finishLine(SchemeLine& s, const std::vector<float>& x) {
    double sum = 0, mx = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        const double e = static_cast<double>(x[i]) - s.dequantized[i];
        sum += e * e;
        mx = std::max(mx, std::fabs(e));
    }
    s.mse = x.empty() ? 0 : sum / static_cast<double>(x.size());
    s.maxAbsError = mx;
}
} // namespace

Result<NumberLine> numberLine(const float* x, int64_t n, int bits) {
    if (bits < 2 || bits > 8) return makeError("number line: bits must be 2..8");
    if (n <= 0 || n > (1 << 20)) return makeError("number line: 1 .. 2^20 values");
    NumberLine r;
    r.bits = bits;
    r.values.assign(x, x + n);
    for (int k = 0; k < 2; ++k) {
        const QuantMethod m = k == 0 ? QuantMethod::Absmax : QuantMethod::ZeroPoint;
        SchemeLine& s = k == 0 ? r.absmax : r.zeroPoint;
        s.name = k == 0 ? "absmax" : "zero-point";
        const GroupParams p = computeGroupParams(m, bits, x, n);
        s.scale = p.scale;
        s.zero = p.zero;
        const int32_t half = 1 << (bits - 1);
        s.codeMin = k == 0 ? -(half - 1) : -half;
        s.codeMax = half - 1;
        s.rangeLo = dequantizeValue(p, s.codeMin);
        s.rangeHi = dequantizeValue(p, s.codeMax);
        s.codes.resize(static_cast<size_t>(n));
        s.dequantized.resize(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) {
            const int32_t q = quantizeValue(m, bits, p, x[i]);
            // The unclamped code (quantizeValue's expression before its clamp): was this value clipped?
            const float raw = k == 0 ? p.scale * x[i] : p.scale * x[i] + static_cast<float>(p.zero);
            if (std::nearbyint(raw) != static_cast<float>(q)) ++s.clipped;
            s.codes[i] = q;
            s.dequantized[i] = dequantizeValue(p, q);
        }
        finishLine(s, r.values);
    }
    return r;
}

// ---- 2 ----

namespace {
void scaleMinK4(int j, const uint8_t* q, int& sc,
                int& m) { // core/ggml/README.md B.3: 6-bit scale/min packing
    if (j < 4) {
        sc = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}
} // namespace

Result<SuperBlock> decodeSuperBlock(DType type, const uint8_t* block) {
    SuperBlock b;
    b.type = type;
    b.codes.assign(ggml::QK_K, 0);
    using namespace ggml;
    switch (type) {
    case DType::Q2_K: {
        BlockQ2_K x;
        std::memcpy(&x, block, sizeof x);
        b.subBlocks = 16, b.subSize = 16, b.scaleBits = 4, b.codeBits = 2, b.hasMins = true;
        b.d = fp16ToFp32(x.d), b.dmin = fp16ToFp32(x.dmin);
        for (int j = 0; j < 16; ++j) {
            b.scaleCodes.push_back(x.scales[j] & 0xF);
            b.minCodes.push_back(x.scales[j] >> 4);
        }
        // element e = 128·half + 32·j + p: bits 2j..2j+1 of qs[32·half + p]
        for (int e = 0; e < QK_K; ++e) {
            const int half = e / 128, j = (e % 128) / 32, p = e % 32;
            b.codes[e] = (x.qs[32 * half + p] >> (2 * j)) & 3;
        }
        break;
    }
    case DType::Q3_K: {
        BlockQ3_K x;
        std::memcpy(&x, block, sizeof x);
        b.subBlocks = 16, b.subSize = 16, b.scaleBits = 6, b.codeBits = 3, b.hasMins = false,
        b.codeOffset = 4;
        b.d = fp16ToFp32(x.d);
        for (int j = 0; j < 16; ++j) { // low 4 bits in scales[0..7] (two per byte), high 2 in scales[8..11]
            const int lo = j < 8 ? (x.scales[j] & 0xF) : (x.scales[j - 8] >> 4);
            const int hi = (x.scales[8 + j % 4] >> (2 * (j / 4))) & 3;
            b.scaleCodes.push_back((lo | (hi << 4)) - 32);
        }
        // low two bits as Q2_K, the third bit in hmask[p], bit 4·half + j
        for (int e = 0; e < QK_K; ++e) {
            const int half = e / 128, j = (e % 128) / 32, p = e % 32;
            const int lo = (x.qs[32 * half + p] >> (2 * j)) & 3;
            const int hi = (x.hmask[p] >> (4 * half + j)) & 1;
            b.codes[e] = lo | (hi << 2);
        }
        break;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
        const bool five = type == DType::Q5_K;
        BlockQ5_K x5{};
        BlockQ4_K x4{};
        const uint8_t *scales, *qs, *qh = nullptr;
        uint16_t d16, dmin16;
        if (five) {
            std::memcpy(&x5, block, sizeof x5);
            scales = x5.scales, qs = x5.qs, qh = x5.qh, d16 = x5.d, dmin16 = x5.dmin;
        } else {
            std::memcpy(&x4, block, sizeof x4);
            scales = x4.scales, qs = x4.qs, d16 = x4.d, dmin16 = x4.dmin;
        }
        b.subBlocks = 8, b.subSize = 32, b.scaleBits = 6, b.codeBits = five ? 5 : 4, b.hasMins = true;
        b.d = fp16ToFp32(d16), b.dmin = fp16ToFp32(dmin16);
        for (int j = 0; j < 8; ++j) {
            int sc, m;
            scaleMinK4(j, scales, sc, m);
            b.scaleCodes.push_back(sc);
            b.minCodes.push_back(m);
        }
        // sub-blocks 2k and 2k+1 share qs[32k .. 32k+31]: low and high nibble; Q5_K's fifth bit: qh[p] bit s
        for (int e = 0; e < QK_K; ++e) {
            const int s = e / 32, p = e % 32;
            int q = (qs[32 * (s / 2) + p] >> (4 * (s % 2))) & 0xF;
            if (five) q |= ((qh[p] >> s) & 1) << 4;
            b.codes[e] = q;
        }
        break;
    }
    case DType::Q6_K: {
        BlockQ6_K x;
        std::memcpy(&x, block, sizeof x);
        b.subBlocks = 16, b.subSize = 16, b.scaleBits = 8, b.codeBits = 6, b.hasMins = false,
        b.codeOffset = 32;
        b.d = fp16ToFp32(x.d);
        for (int j = 0; j < 16; ++j)
            b.scaleCodes.push_back(x.scales[j]);
        // element e = 128·half + 32·k + p: low nibble of ql[64·half + p (+32 for k odd)] (high nibble for
        // k ≥ 2), top two bits at 2k of qh[32·half + p]
        for (int e = 0; e < QK_K; ++e) {
            const int half = e / 128, k = (e % 128) / 32, p = e % 32;
            const int lo = (x.ql[64 * half + p + 32 * (k % 2)] >> (4 * (k / 2))) & 0xF;
            const int hi = (x.qh[32 * half + p] >> (2 * k)) & 3;
            b.codes[e] = lo | (hi << 4);
        }
        break;
    }
    default:
        return makeError("super-block view: " + std::string(dtypeName(type)) +
                         " is not Q2_K, Q3_K, Q4_K, Q5_K or Q6_K");
    }
    const size_t size = traits(type).typeSize;
    b.bytes.assign(block, block + size);
    for (int j = 0; j < b.subBlocks; ++j) {
        b.subScale.push_back(b.d * static_cast<float>(b.scaleCodes[j]));
        b.subMin.push_back(b.hasMins ? b.dmin * static_cast<float>(b.minCodes[j]) : 0.0f);
    }
    b.fromFields.resize(QK_K);
    for (int e = 0; e < QK_K; ++e) {
        const int s = e / b.subSize;
        const float v = b.subScale[s] * static_cast<float>(b.codes[e] - b.codeOffset);
        b.fromFields[e] = b.hasMins ? v - b.subMin[s] : v;
    }
    b.dequantized.resize(QK_K);
    if (!ggml::dequantize(type, block, b.dequantized.data(), QK_K))
        return makeError("super-block view: no dequantizer");
    return b;
}

Result<SuperBlock> openSuperBlock(DType type, const float* x) {
    std::vector<uint8_t> block(traits(type).typeSize > 0 ? traits(type).typeSize : 1);
    switch (type) {
    case DType::Q2_K:
        ggml::quantizeRowsQ2_K(x, block.data(), 1, ggml::QK_K, nullptr);
        break;
    case DType::Q3_K:
        ggml::quantizeRowsQ3_K(x, block.data(), 1, ggml::QK_K, nullptr);
        break;
    case DType::Q4_K:
        ggml::quantizeRowsQ4_K(x, block.data(), 1, ggml::QK_K, nullptr);
        break;
    case DType::Q5_K:
        ggml::quantizeRowsQ5_K(x, block.data(), 1, ggml::QK_K, nullptr);
        break;
    case DType::Q6_K:
        ggml::quantizeRowsQ6_K(x, block.data(), 1, ggml::QK_K, nullptr);
        break;
    default:
        return makeError("super-block view: " + std::string(dtypeName(type)) +
                         " is not Q2_K, Q3_K, Q4_K, Q5_K or Q6_K");
    }
    auto b = decodeSuperBlock(type, block.data());
    if (!b) return b;
    b->weights.assign(x, x + ggml::QK_K);
    double sum = 0, mx = 0;
    for (int e = 0; e < ggml::QK_K; ++e) {
        const double err = static_cast<double>(x[e]) - b->dequantized[e];
        sum += err * err;
        mx = std::max(mx, std::fabs(err));
    }
    b->mse = sum / ggml::QK_K;
    b->maxAbsError = mx;
    return b;
}

// ---- 3 ----

std::vector<float> syntheticHessian(int cols, int samples, uint64_t seed) {
    std::vector<double> H(static_cast<size_t>(cols) * cols, 0.0);
    uint64_t s = seed;
    auto next = [&s] { // splitmix64
        uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    };
    auto uniform = [&] { return (static_cast<double>(next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); };
    std::vector<double> xs(static_cast<size_t>(cols));
    for (int n = 0; n < samples; ++n) {
        double prev = 0;
        for (int k = 0; k < cols; ++k) {
            const double g =
                std::sqrt(-2.0 * std::log(uniform())) * std::cos(2.0 * M_PI * uniform()); // Box-Muller
            prev = 0.8 * prev + g;
            xs[k] = prev * (k % 5 == 0 ? 3.0 : 1.0);
        }
        for (int i = 0; i < cols; ++i)
            for (int j = 0; j < cols; ++j)
                H[static_cast<size_t>(i) * cols + j] += xs[i] * xs[j];
    }
    std::vector<float> out(H.size());
    for (size_t i = 0; i < H.size(); ++i)
        out[i] = static_cast<float>(2.0 * H[i] / std::max(1, samples));
    return out;
}

Result<std::vector<float>> calibrationHessian(const Model& model, const std::string& weightName, int64_t col0,
                                              int cols, const std::string& textPath, int samples, int seqLen,
                                              ProgressFn progress) {
    const TensorInfo* t = model.find(weightName);
    if (!t) return makeError(weightName + ": no such tensor");
    if (t->shape.size() != 2) return makeError(weightName + ": not a matrix");
    if (cols < 1 || cols > 256 || col0 < 0 || col0 > t->cols() - cols)
        return makeError(weightName + ": columns " + std::to_string(col0) + "+" + std::to_string(cols) +
                         " outside the tensor " + t->shapeString());
    const int layer = layerIndexOf(weightName);
    if (layer < 0) return makeError(weightName + ": not a linear weight of a decoder block");
    if (samples < 1 || samples > 4096 || seqLen < 2 || seqLen > 8192)
        return makeError("calibration: 1..4096 rows of 2..8192 tokens");
    auto tokens = gptq::tokenizeTextFile(model, textPath);
    if (!tokens) return tokens.error();
    auto windows = gptq::calibrationWindows(*tokens, {samples, seqLen, 0});
    if (!windows) return windows.error();
    EngineOptions eo;
    eo.nCtx = seqLen;
    auto eng = Engine::load(model, eo);
    if (!eng) return eng.error();
    if (!(*eng)->hasWeight(weightName))
        return makeError(weightName + ": the engine does not use this tensor");
    (*eng)->setLayerLimit(layer + 1);
    std::vector<double> H(static_cast<size_t>(cols) * cols, 0.0);
    int64_t count = 0;
    std::string problem;
    (*eng)->setObserver([&](const std::string& name, const float* x, int64_t nTok, int64_t nIn) {
        if (name != weightName || !problem.empty()) return;
        if (nIn != t->cols()) {
            problem = weightName + ": its input has " + std::to_string(nIn) + " features but its rows " +
                      std::to_string(t->cols()) + " values (stored as [in × out])";
            return;
        }
        for (int64_t k = 0; k < nTok; ++k) {
            const float* v = x + k * nIn + col0;
            for (int i = 0; i < cols; ++i)
                for (int j = 0; j < cols; ++j)
                    H[static_cast<size_t>(i) * cols + j] += double(v[i]) * double(v[j]);
        }
        count += nTok;
    });
    const size_t nw = windows->size();
    for (size_t w = 0; w < nw; ++w) {
        if (progress && !progress({static_cast<double>(w) / static_cast<double>(nw), "calibration"}))
            return cancelledError();
        (*eng)->reset();
        if (auto s = (*eng)->eval((*windows)[w], 0, nullptr); !s) return s.error();
        if (!problem.empty()) return makeError(problem);
    }
    if (count == 0)
        return makeError(weightName + ": the engine never used this weight on the calibration text");
    std::vector<float> out(H.size());
    for (size_t i = 0; i < H.size(); ++i)
        out[i] = static_cast<float>(2.0 * H[i] / static_cast<double>(count));
    return out;
}

Result<GptqTrace> traceGptq(const float* W, int rows, int cols, const std::vector<float>& H, int bits,
                            double dampPercent) {
    gptq::QuantConfig c;
    c.bits = bits;
    c.groupSize = -1;
    c.sym = true;
    c.dampPercent = dampPercent;
    if (auto s = gptq::validateConfig(c); !s) return s.error();
    if (rows <= 0 || cols <= 0 || rows > 256 || cols > 256)
        return makeError("GPTQ steps: 1..256 rows and columns");
    if (H.size() != static_cast<size_t>(cols) * cols)
        return makeError("GPTQ steps: the Hessian does not match the slice");
    GptqTrace t;
    t.rows = rows, t.cols = cols, t.bits = bits;
    t.original.assign(W, W + static_cast<size_t>(rows) * cols);
    auto U = gptq::dampedInverseCholeskyUpper(H, cols, dampPercent, &t.damp);
    if (!U) return U.error();
    t.hinv = std::move(*U);
    const int maxq = c.maxq();
    t.scale.resize(rows), t.zero.resize(rows);
    for (int r = 0; r < rows; ++r)
        gptq::findParams(W + static_cast<size_t>(r) * cols, cols, 1, c, t.scale[r], t.zero[r]);
    // Dead input features (H_jj = 0) are zeroed, as quantizeLayerGptq does.
    std::vector<float> w = t.original;
    for (int j = 0; j < cols; ++j)
        if (H[static_cast<size_t>(j) * cols + j] == 0)
            for (int r = 0; r < rows; ++r)
                w[static_cast<size_t>(r) * cols + j] = 0;
    t.codes.assign(static_cast<size_t>(rows) * cols, 0);
    t.dequantized.assign(t.codes.size(), 0);
    t.colError.assign(t.codes.size(), 0);
    t.working.reserve(cols + 1);
    t.working.push_back(w);
    std::vector<float> err(rows);
    for (int j = 0; j < cols; ++j) {
        // The same float operations as quantizeLayerGptq's inner loop (one block holding every column).
        const float d = t.hinv[static_cast<size_t>(j) * cols + j];
        for (int r = 0; r < rows; ++r) {
            const size_t i = static_cast<size_t>(r) * cols + j;
            float qf = std::nearbyint(w[i] / t.scale[r]) + t.zero[r];
            qf = qf < 0 ? 0 : (qf > static_cast<float>(maxq) ? static_cast<float>(maxq) : qf);
            const float q = t.scale[r] * (qf - t.zero[r]);
            t.codes[i] = static_cast<uint8_t>(qf);
            t.dequantized[i] = q;
            t.colError[i] = w[i] - q;
            err[r] = (w[i] - q) / d;
        }
        for (int k = j; k < cols; ++k) {
            const float h = t.hinv[static_cast<size_t>(j) * cols + k];
            if (h == 0) continue;
            for (int r = 0; r < rows; ++r) {
                const size_t i = static_cast<size_t>(r) * cols + k;
                w[i] -= h * err[r];
            }
        }
        t.working.push_back(w);
    }
    const gptq::LayerResult rtn = gptq::quantizeLayerRtn(W, rows, cols, c);
    t.rtnDequantized.resize(t.codes.size());
    for (int r = 0; r < rows; ++r)
        for (int k = 0; k < cols; ++k) {
            const size_t i = static_cast<size_t>(r) * cols + k;
            t.rtnDequantized[i] =
                rtn.scales[r] * (static_cast<float>(rtn.codes[i]) - static_cast<float>(rtn.zeros[r]));
        }
    t.gptqOutputError = gptq::relativeOutputError(W, t.dequantized, rows, cols, H, 1);
    t.rtnOutputError = gptq::relativeOutputError(W, t.rtnDequantized, rows, cols, H, 1);
    return t;
}

// ---- 4 ----

Result<std::vector<Exl2Module>> exl2Allocation(const std::vector<exl2::ModuleMeasurement>& measurement,
                                               const std::vector<int>& strategy,
                                               const std::vector<int64_t>& numel) {
    if (strategy.size() != measurement.size() || numel.size() != measurement.size())
        return makeError("EXL2 allocation: " + std::to_string(measurement.size()) + " modules measured, " +
                         std::to_string(strategy.size()) + " choices, " + std::to_string(numel.size()) +
                         " sizes");
    std::vector<Exl2Module> out;
    out.reserve(measurement.size());
    for (size_t m = 0; m < measurement.size(); ++m) {
        const auto& mm = measurement[m];
        if (numel[m] <= 0) return makeError("EXL2 allocation: " + mm.key + " has no weights");
        if (strategy[m] < 0 || static_cast<size_t>(strategy[m]) >= mm.options.size())
            return makeError("EXL2 allocation: " + mm.key + ": chosen option out of range");
        Exl2Module mod;
        mod.key = mm.key;
        mod.numel = numel[m];
        mod.chosen = strategy[m];
        const bool attn = mm.key.size() >= 9 && mm.key.compare(mm.key.size() - 9, 9, "self_attn") == 0;
        static const char* attnSlots[] = {"q_proj", "k_proj", "v_proj", "o_proj"};
        static const char* mlpSlots[] = {"gate_proj", "up_proj", "down_proj"};
        for (const auto& o : mm.options) {
            Exl2Candidate c;
            c.totalBits = o.totalBits;
            c.bpw = static_cast<double>(o.totalBits) / static_cast<double>(numel[m]);
            c.error = 1.0 - o.accuracy;
            for (size_t i = 0; i < o.qp.size(); ++i) {
                if (i) c.setting += ", ";
                const size_t nSlots = attn ? 4 : 3;
                if (i < nSlots) c.setting += std::string(attn ? attnSlots[i] : mlpSlots[i]) + " ";
                c.setting += o.qp[i].desc();
            }
            mod.options.push_back(std::move(c));
        }
        for (auto& a : mod.options) {
            a.pareto = true;
            for (const auto& b : mod.options)
                if (&a != &b && b.totalBits <= a.totalBits && b.error < a.error) {
                    a.pareto = false;
                    break;
                }
        }
        out.push_back(std::move(mod));
    }
    return out;
}

Result<exl2::ExportResult> optimizeMeasurement(std::vector<exl2::ModuleMeasurement> measurement,
                                               const std::vector<int64_t>& numel, double targetBpw,
                                               uint64_t seed, int annealIterations, ProgressFn progress) {
    if (numel.size() != measurement.size())
        return makeError("EXL2: " + std::to_string(measurement.size()) + " modules measured, " +
                         std::to_string(numel.size()) + " sizes");
    if (!(targetBpw > 0 && targetBpw <= 32))
        return makeError("EXL2: target bits per weight must be in (0, 32]");
    if (annealIterations < 1) return makeError("EXL2: at least one proposal per temperature");
    int64_t total = 0;
    for (int64_t n : numel) {
        if (n <= 0 || n > (int64_t(1) << 50) - total) return makeError("EXL2: module sizes out of range");
        total += n;
    }
    std::vector<std::vector<exl2::OptOption>> slots;
    for (const auto& mm : measurement) {
        slots.emplace_back();
        for (const auto& o : mm.options)
            slots.back().push_back({o.totalBits, 1.0 - o.accuracy});
    }
    exl2::OptimizeParams op;
    op.budget = static_cast<int64_t>(static_cast<double>(total) * targetBpw);
    op.seed = seed;
    op.iterations = annealIterations;
    auto opt = exl2::optimizeStrategy(slots, op, std::move(progress));
    if (!opt) {
        if (opt.error().cancelled) return opt.error();
        return makeError("EXL2: target " + std::to_string(targetBpw) + " bpw: " + opt.error().message);
    }
    exl2::ExportResult r;
    r.measurement = std::move(measurement);
    r.measurementReused = true;
    r.strategy = opt->choice;
    r.targetBpw = targetBpw;
    r.achievedBpw = static_cast<double>(opt->bits) / static_cast<double>(total);
    r.errorNorm = opt->norm;
    return r;
}

} // namespace qz::teach
