#include "variants/row_sources.h"

#include <algorithm>
#include <cmath>

#include "model/convert.h"
#include "quant/bnb.h"
#include "quant/llm_int8.h"

namespace qz {

namespace {

class FakeQuantRowSource final : public WeightRowSource {
  public:
    std::shared_ptr<const Model> model; // keeps the mapping alive
    const uint8_t* raw = nullptr;
    DType dtype = DType::F32;
    size_t rowBytes = 0;
    int64_t nRows = 0, nCols = 0; // the stored shape
    QuantSpec spec;
    GroupParams tensorParams;          // Granularity::Tensor
    std::vector<float> absmax, scales; // NF4 / FP4: per block
    std::vector<int32_t> outliers;     // LLM.int8()
    // A Conv1D weight (stored [in, out]) given by rows of [out, in]: the stored rows' per-row / per-group
    // parameters (absmax / zero-point by rows or groups), [stored row][group].
    bool conv1d = false;
    std::vector<GroupParams> groupParams;
    int64_t groupsPerRow = 0, groupLen = 0;

    int64_t rows() const override { return conv1d ? nCols : nRows; }
    int64_t cols() const override { return conv1d ? nRows : nCols; }
    bool transposed() const override { return conv1d; }
    uint64_t residentBytes() const override {
        return 4 * (absmax.capacity() + scales.capacity() + outliers.capacity()) +
               groupParams.capacity() * sizeof(GroupParams);
    }

    void readRows(int64_t r0, int64_t r1, float* x) const {
        for (int64_t r = r0; r < r1; ++r) // the type was checked when the source was made
            (void)convertToF32(dtype, raw + size_t(r) * rowBytes, uint64_t(nCols), x + (r - r0) * nCols);
    }

    void decodeRows(int64_t r0, int64_t r1, float* dst) const override {
        if (conv1d) {
            decodeTransposed(r0, r1, dst);
            return;
        }
        thread_local std::vector<float> x;
        const size_t n = size_t((r1 - r0) * nCols);
        if (x.size() < n) x.resize(n);
        readRows(r0, r1, x.data());
        switch (spec.method) {
        case QuantMethod::Nf4:
        case QuantMethod::Fp4: { // bnb.h: the code from the exact block absmax, the value from the block
                                 // scale
            const auto type = spec.method == QuantMethod::Nf4 ? bnb::FourBit::Nf4 : bnb::FourBit::Fp4;
            const auto& cb = bnb::codebook(type);
            const uint8_t zeroCode = bnb::quantize4(type, 0.0f);
            const size_t bs = size_t(std::max(1, spec.blockSize));
            const size_t base = size_t(r0) * size_t(nCols);
            for (size_t i = 0; i < n; ++i) {
                const size_t b = (base + i) / bs;
                const float amax = absmax[b];
                const uint8_t code =
                    !(amax > 0) || !std::isfinite(amax)
                        ? zeroCode
                        : bnb::quantize4(type, std::clamp(x[i] * (1.0f / amax), -1.0f, 1.0f));
                dst[i] = cb[code & 15] * scales[b];
            }
            return;
        }
        case QuantMethod::LlmInt8: // per output row: one row at a time is the same computation
            for (int64_t r = 0; r < r1 - r0; ++r)
                llmInt8QuantizeDequantize(x.data() + r * nCols, 1, nCols, false, outliers, dst + r * nCols);
            return;
        case QuantMethod::Absmax:
        case QuantMethod::ZeroPoint:
            break;
        }
        auto run = [&](size_t begin, size_t len, const GroupParams& p) {
            for (size_t i = begin; i < begin + len; ++i)
                dst[i] = dequantizeValue(p, quantizeValue(spec.method, spec.bits, p, x[i]));
        };
        if (spec.granularity == Granularity::Tensor) {
            run(0, n, tensorParams);
            return;
        }
        const int64_t g =
            spec.granularity == Granularity::Row ? nCols : std::min<int64_t>(spec.groupSize, nCols);
        for (int64_t r = 0; r < r1 - r0; ++r)
            for (int64_t k = 0; k * g < nCols; ++k) {
                const size_t begin = size_t(r * nCols + k * g), len = size_t(std::min(g, nCols - k * g));
                run(begin, len, computeGroupParams(spec.method, spec.bits, x.data() + begin, int64_t(len)));
            }
    }

    // Conv1D: rows [o0, o1) of the transpose [out, in]. Stored row i (input feature i) contributes its
    // values o0 .. o1 (one contiguous read per stored row; the type is one value per element), each
    // quantized with the parameters the method gives it in the stored layout (quantizeDequantize on
    // [in, out]: per tensor, per stored row, per group along a stored row, NF4 / FP4 blocks in stored
    // order; LLM.int8() per output feature, i.e. per row of the transpose).
    void decodeTransposed(int64_t o0, int64_t o1, float* dst) const {
        const int64_t nr = o1 - o0, nIn = nRows, nOut = nCols;
        const size_t esize = traits(dtype).typeSize;
        thread_local std::vector<float> x, xt;
        if (x.size() < size_t(nr)) x.resize(size_t(nr));
        const bool int8 = spec.method == QuantMethod::LlmInt8;
        if (int8 && xt.size() < size_t(nr * nIn)) xt.resize(size_t(nr * nIn));
        const bool fourBit = isBnbFourBit(spec.method);
        const auto type = spec.method == QuantMethod::Nf4 ? bnb::FourBit::Nf4 : bnb::FourBit::Fp4;
        const auto& cb = bnb::codebook(type);
        const uint8_t zeroCode = fourBit ? bnb::quantize4(type, 0.0f) : 0;
        const size_t bs = size_t(std::max(1, spec.blockSize));
        for (int64_t i = 0; i < nIn; ++i) {
            (void)convertToF32(dtype, raw + size_t(i) * rowBytes + size_t(o0) * esize, uint64_t(nr),
                               x.data());
            for (int64_t o = o0; o < o1; ++o) {
                const float v = x[size_t(o - o0)];
                float y;
                if (int8) {
                    xt[size_t((o - o0) * nIn + i)] = v;
                    continue;
                }
                if (fourBit) {
                    const size_t b = (size_t(i) * size_t(nOut) + size_t(o)) / bs;
                    const float amax = absmax[b];
                    const uint8_t code =
                        !(amax > 0) || !std::isfinite(amax)
                            ? zeroCode
                            : bnb::quantize4(type, std::clamp(v * (1.0f / amax), -1.0f, 1.0f));
                    y = cb[code & 15] * scales[b];
                } else {
                    const GroupParams& p = spec.granularity == Granularity::Tensor
                                               ? tensorParams
                                               : groupParams[size_t(i * groupsPerRow + o / groupLen)];
                    y = dequantizeValue(p, quantizeValue(spec.method, spec.bits, p, v));
                }
                dst[size_t((o - o0) * nIn + i)] = y;
            }
        }
        if (int8) // per output feature: one row of the transpose at a time is the same computation
            for (int64_t r = 0; r < nr; ++r)
                llmInt8QuantizeDequantize(xt.data() + r * nIn, 1, nIn, false, outliers, dst + r * nIn);
    }
};

} // namespace

bool readableByRows(const TensorInfo& t) {
    if (t.shape.size() != 2 || !canConvertToF32(t.dtype)) return false;
    // A Conv1D weight is read by contiguous pieces of its stored rows: one value per element.
    return !weightInputIsRows(t.name) || traits(t.dtype).blockSize == 1;
}

Result<std::shared_ptr<const WeightRowSource>>
fakeQuantRowSource(const std::shared_ptr<const Model>& original, size_t index, const QuantSpec& spec,
                   const std::vector<int32_t>& outlierFeatures) {
    using Ptr = std::shared_ptr<const WeightRowSource>;
    if (auto st = spec.validate(); !st) return st.error();
    if (index >= original->tensors.size()) return makeError("tensor index out of range");
    const TensorInfo& t = original->tensors[index];
    if (!readableByRows(t)) return Ptr();
    const int64_t rows = t.shape[0], cols = t.shape[1];
    const auto& tr = traits(t.dtype);
    const auto rowBytes = bytesFor(t.dtype, uint64_t(std::max<int64_t>(cols, 0)));
    uint64_t total = 0;
    if (rows <= 0 || cols <= 0 || cols % tr.blockSize != 0 || !rowBytes ||
        __builtin_mul_overflow(*rowBytes, uint64_t(rows), &total) || total != t.nbytes)
        return Ptr();
    auto s = std::make_shared<FakeQuantRowSource>();
    s->model = original;
    s->raw = original->rawBytes(t).data();
    s->dtype = t.dtype;
    s->rowBytes = size_t(*rowBytes);
    s->nRows = rows;
    s->nCols = cols;
    s->spec = spec;
    s->conv1d = weightInputIsRows(t.name);
    if (isBnbFourBit(spec.method)) {
        auto x = readTensorF32(*original, t);
        if (!x) return x.error();
        bnb::FourBitParams p;
        p.type = spec.method == QuantMethod::Nf4 ? bnb::FourBit::Nf4 : bnb::FourBit::Fp4;
        p.blockSize = spec.blockSize;
        p.doubleQuant = spec.doubleQuant;
        bnb::FourBitTensor q = bnb::quantize4bit(x->data(), int64_t(x->size()), p);
        s->absmax = std::move(q.absmax);
        s->scales = std::move(q.scales);
    } else if (spec.method == QuantMethod::LlmInt8) {
        s->outliers = outlierFeatures;
    } else if (spec.granularity == Granularity::Tensor) {
        // The whole tensor's min and max (simple_quant.cpp quantizeDequantize), one row at a time.
        std::vector<float> row(static_cast<size_t>(cols));
        float lo = 0, hi = 0;
        for (int64_t r = 0; r < rows; ++r) {
            s->readRows(r, r + 1, row.data());
            if (r == 0) lo = hi = row[0];
            for (float v : row) {
                lo = std::min(lo, v);
                hi = std::max(hi, v);
            }
        }
        const float extremes[2] = {lo, hi};
        s->tensorParams = computeGroupParams(spec.method, spec.bits, extremes, 2);
    } else if (s->conv1d) {
        // Per stored row or per group along a stored row (simple_quant.cpp quantizeDequantize): the
        // parameters of every group, as a quantized file holds its scales (8 bytes per group).
        const int64_t g =
            spec.granularity == Granularity::Row ? cols : std::min<int64_t>(spec.groupSize, cols);
        s->groupLen = g;
        s->groupsPerRow = (cols + g - 1) / g;
        try {
            s->groupParams.resize(size_t(rows) * size_t(s->groupsPerRow));
        } catch (const std::bad_alloc&) {
            return makeError(t.name + ": out of memory for its group parameters");
        }
        std::vector<float> row(static_cast<size_t>(cols));
        for (int64_t r = 0; r < rows; ++r) {
            s->readRows(r, r + 1, row.data());
            for (int64_t k = 0; k < s->groupsPerRow; ++k)
                s->groupParams[size_t(r * s->groupsPerRow + k)] =
                    computeGroupParams(spec.method, spec.bits, row.data() + k * g, std::min(g, cols - k * g));
        }
    }
    return Ptr(std::move(s));
}

} // namespace qz
