#include "quant/code_view.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "quant/bnb.h"
#include "quant/llm_int8.h"

namespace qz {

namespace {

std::string fmt(const char* f, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

// torch's _Formatter (torch/_tensor_str.py) with default print options: one format for every element.
struct TorchFormatter {
    bool floating = true, intMode = true, sci = false;
    size_t width = 1;

    std::string raw(double v) const {
        if (!floating) return fmt("%.0f", v);
        if (sci) return fmt("%.4e", v);
        if (intMode) {
            std::string s = fmt("%.0f", v);
            if (std::isfinite(v)) s += ".";
            return s;
        }
        return fmt("%.4f", v);
    }
    std::string format(double v) const {
        std::string s;
        if (std::isnan(v))
            s = "nan";
        else if (std::isinf(v))
            s = v > 0 ? "inf" : "-inf";
        else
            s = raw(v);
        return s.size() < width ? std::string(width - s.size(), ' ') + s : s;
    }
    void fit(const std::vector<double>& shown) {
        if (!floating) {
            for (double v : shown)
                width = std::max(width, raw(v).size());
            return;
        }
        std::vector<double> nz;
        for (double v : shown)
            if (std::isfinite(v) && v != 0) nz.push_back(v);
        if (nz.empty()) return;
        double lo = INFINITY, hi = 0;
        for (double v : nz) {
            lo = std::min(lo, std::fabs(v));
            hi = std::max(hi, std::fabs(v));
            if (v != std::ceil(v)) intMode = false;
        }
        if (intMode) {
            sci = hi / lo > 1000.0 || hi > 1.0e8;
            for (double v : nz)
                width = std::max(width, sci ? fmt("%.4e", v).size() : fmt("%.0f", v).size() + 1);
        } else {
            sci = hi / lo > 1000.0 || hi > 1.0e8 || lo < 1.0e-4;
            for (double v : nz)
                width = std::max(width, (sci ? fmt("%.4e", v) : fmt("%.4f", v)).size());
        }
    }
};

constexpr int64_t kEdge = 3, kThreshold = 1000, kLineWidth = 80;

// value(i) gives element i (row-major); only the printed elements are read, so the summarised print of
// a large tensor touches 36 values.
template <typename Get>
std::string torchFormatT(const Get& value, int64_t rows, int64_t cols, TorchDType dtype, bool oneDim) {
    if (rows < 0 || cols < 0) return "tensor(?)";
    if (oneDim) rows = std::min<int64_t>(rows, 1);
    const bool summarize = rows * cols > kThreshold;
    auto pick = [&](int64_t n) {
        std::vector<int64_t> idx;
        if (summarize && n > 2 * kEdge) {
            for (int64_t i = 0; i < kEdge; ++i)
                idx.push_back(i);
            for (int64_t i = n - kEdge; i < n; ++i)
                idx.push_back(i);
        } else {
            for (int64_t i = 0; i < n; ++i)
                idx.push_back(i);
        }
        return idx;
    };
    const auto ri = pick(rows), ci = pick(cols);
    TorchFormatter f;
    f.floating = dtype == TorchDType::Float32;
    std::vector<double> shown;
    for (int64_t r : ri)
        for (int64_t c : ci)
            shown.push_back(static_cast<double>(value(r * cols + c)));
    f.fit(shown);
    const std::string prefix = "tensor(";
    const int64_t indent = static_cast<int64_t>(prefix.size());
    auto vectorStr = [&](int64_t r, int64_t ind) {
        std::vector<std::string> data;
        for (size_t k = 0; k < ci.size(); ++k) {
            if (summarize && cols > 2 * kEdge && k == static_cast<size_t>(kEdge)) data.push_back(" ...");
            data.push_back(f.format(static_cast<double>(value(r * cols + ci[k]))));
        }
        const int64_t perLine = std::max<int64_t>(1, (kLineWidth - ind) / static_cast<int64_t>(f.width + 2));
        std::string s = "[";
        for (size_t i = 0; i < data.size(); ++i) {
            if (i > 0)
                s += (static_cast<int64_t>(i) % perLine == 0) ? ",\n" + std::string(ind + 1, ' ') : ", ";
            s += data[i];
        }
        return s + "]";
    };
    std::string body;
    if (oneDim) {
        body = vectorStr(0, indent);
    } else {
        body = "[";
        for (size_t k = 0; k < ri.size(); ++k) {
            if (k > 0) body += ",\n" + std::string(indent + 1, ' ');
            if (summarize && rows > 2 * kEdge && k == static_cast<size_t>(kEdge))
                body += "...,\n" + std::string(indent + 1, ' ');
            body += vectorStr(ri[k], indent + 1);
        }
        body += "]";
    }
    std::string suffix;
    if (dtype == TorchDType::Int8) suffix = ", dtype=torch.int8";
    if (dtype == TorchDType::UInt8) suffix = ", dtype=torch.uint8";
    return prefix + body + suffix + ")";
}

} // namespace

std::string torchFormat(std::span<const float> values, int64_t rows, int64_t cols, TorchDType dtype,
                        bool oneDim) {
    if (static_cast<int64_t>(values.size()) < rows * cols) return "tensor(?)";
    return torchFormatT([&](int64_t i) { return values[static_cast<size_t>(i)]; }, rows, cols, dtype, oneDim);
}

std::string torchFormat(std::span<const int32_t> values, int64_t rows, int64_t cols, TorchDType dtype,
                        bool oneDim) {
    if (static_cast<int64_t>(values.size()) < rows * cols) return "tensor(?)";
    return torchFormatT([&](int64_t i) { return values[static_cast<size_t>(i)]; }, rows, cols, dtype, oneDim);
}

Result<CodeWindow> makeCodeWindow(const QuantSpec& spec, const float* x, int64_t rows, int64_t cols,
                                  const CodeWindowRequest& req, bool oneDim) {
    if (auto st = spec.validate(); !st) return st.error();
    if (!x || rows <= 0 || cols <= 0) return makeError("codes: empty tensor");
    if (req.rows < 1 || req.cols < 1) return makeError("codes: the window needs at least one row and column");
    const int64_t n = rows * cols;
    CodeWindow w;
    w.spec = spec;
    w.tensorRows = rows;
    w.tensorCols = cols;
    w.oneDim = oneDim && rows == 1;
    w.row0 = std::clamp<int64_t>(req.row0, 0, rows - 1);
    w.col0 = std::clamp<int64_t>(req.col0, 0, cols - 1);
    w.rows = std::min(req.rows, rows - w.row0);
    w.cols = std::min(req.cols, cols - w.col0);
    const int64_t m = w.rows * w.cols;
    w.original.resize(m);
    w.dequantized.resize(m);
    w.codes.resize(m);
    w.keptFp16.assign(m, 0);
    w.group.resize(m);

    // Where the codes are independent per stored row (row / group scales; LLM.int8() of an [out × in]
    // weight), only the rows shown are quantized: the window's and the ones the torch print reads (the
    // first and last kEdge of a summarised tensor). Otherwise (per-tensor scale, 4-bit blocks that cross
    // rows, Conv1D's per-column scales) the whole tensor. slot[r] = row r's place in deq / codes.
    const bool rowWise = !isBnbFourBit(spec.method) &&
                         (spec.method == QuantMethod::LlmInt8 ? !req.inputIsRows
                                                              : spec.granularity != Granularity::Tensor);
    std::vector<int64_t> slot;
    int64_t kept = rows;
    if (rowWise) {
        slot.assign(static_cast<size_t>(rows), -1);
        kept = 0;
        auto need = [&](int64_t r) {
            if (r >= 0 && r < rows && slot[static_cast<size_t>(r)] < 0) slot[static_cast<size_t>(r)] = kept++;
        };
        for (int64_t r = w.row0; r < w.row0 + w.rows; ++r)
            need(r);
        if (req.torchText) {
            const bool summarize = n > kThreshold && rows > 2 * kEdge && !(oneDim && rows == 1);
            for (int64_t r = 0; r < rows; ++r)
                if (!summarize || r < kEdge || r >= rows - kEdge) need(r);
        }
    }
    std::vector<float> deq(static_cast<size_t>(kept * cols));
    std::vector<int8_t> codes(static_cast<size_t>(kept * cols));
    // Element e (row-major index into the tensor) -> index into deq / codes.
    auto at = [&](int64_t e) -> size_t {
        return rowWise ? static_cast<size_t>(slot[static_cast<size_t>(e / cols)] * cols + e % cols)
                       : static_cast<size_t>(e);
    };
    // Quantizes the kept rows one by one (rowWise) with fn(x of the row, 1 row, out, codes).
    auto quantizeRows = [&](auto&& fn) {
        for (int64_t r = 0; r < rows; ++r)
            if (slot[static_cast<size_t>(r)] >= 0) {
                const size_t o = static_cast<size_t>(slot[static_cast<size_t>(r)] * cols);
                fn(x + r * cols, deq.data() + o, codes.data() + o);
            }
    };
    // Group of each window element: key -> index in w.groups.
    std::map<int64_t, int32_t> groupIndex;
    auto groupOf = [&](int64_t key, auto&& make) -> int32_t {
        auto it = groupIndex.find(key);
        if (it != groupIndex.end()) return it->second;
        CodeGroup g = make();
        g.index = key;
        w.groups.push_back(std::move(g));
        const auto idx = static_cast<int32_t>(w.groups.size() - 1);
        groupIndex[key] = idx;
        return idx;
    };
    auto minmax = [](const float* v, int64_t len, CodeGroup& g) {
        g.lo = g.hi = v[0];
        g.absmax = 0;
        for (int64_t i = 0; i < len; ++i) {
            g.lo = std::min(g.lo, v[i]);
            g.hi = std::max(g.hi, v[i]);
            g.absmax = std::max(g.absmax, std::fabs(v[i]));
        }
    };

    if (isBnbFourBit(spec.method)) {
        bnb::FourBitParams p;
        p.type = spec.method == QuantMethod::Nf4 ? bnb::FourBit::Nf4 : bnb::FourBit::Fp4;
        p.blockSize = spec.blockSize;
        p.doubleQuant = spec.doubleQuant;
        const bnb::FourBitTensor q = bnb::quantize4bit(x, n, p);
        bnb::dequantize4bit(q, p, n, deq.data());
        for (int64_t i = 0; i < n; ++i)
            codes[i] = static_cast<int8_t>(q.codes[i]);
        const auto& cb = bnb::codebook(p.type);
        w.codeBook.assign(cb.begin(), cb.end());
        for (int64_t r = 0; r < w.rows; ++r)
            for (int64_t c = 0; c < w.cols; ++c) {
                const int64_t e = (w.row0 + r) * cols + w.col0 + c, b = e / p.blockSize;
                w.group[w.at(r, c)] = groupOf(b, [&] {
                    CodeGroup g;
                    const int64_t first = b * p.blockSize, last = std::min(n, first + p.blockSize) - 1;
                    g.label = "block " + std::to_string(b) + " (elements " + std::to_string(first) + ".." +
                              std::to_string(last) + ")";
                    minmax(x + first, last - first + 1, g);
                    g.absmax = q.absmax[static_cast<size_t>(b)];
                    g.scale = q.scales[static_cast<size_t>(b)];
                    return g;
                });
            }
    } else if (spec.method == QuantMethod::LlmInt8) {
        const bool inRows = req.inputIsRows;
        const int64_t nIn = inRows ? rows : cols;
        if (rowWise)
            quantizeRows([&](const float* xr, float* o, int8_t* c) {
                llmInt8QuantizeDequantize(xr, 1, cols, false, req.outlierFeatures, o, c);
            });
        else
            llmInt8QuantizeDequantize(x, rows, cols, inRows, req.outlierFeatures, deq.data(), codes.data());
        const auto rowmax = llmInt8RowMax(x, rows, cols, inRows, req.outlierFeatures);
        std::vector<uint8_t> isOutlier(static_cast<size_t>(nIn), 0);
        for (int32_t j : req.outlierFeatures)
            if (j >= 0 && j < nIn && !isOutlier[j]) {
                isOutlier[j] = 1;
                ++w.outlierFeatures;
            }
        for (int64_t r = 0; r < w.rows; ++r)
            for (int64_t c = 0; c < w.cols; ++c) {
                const int64_t sr = w.row0 + r, sc = w.col0 + c;
                const int64_t o = inRows ? sc : sr, i = inRows ? sr : sc;
                w.keptFp16[w.at(r, c)] = isOutlier[i];
                w.group[w.at(r, c)] = groupOf(o, [&] {
                    CodeGroup g;
                    g.label = "output " + std::to_string(o) + (inRows ? " (column " : " (row ") +
                              std::to_string(o) + ")";
                    g.absmax = rowmax[o];
                    g.scale = rowmax[o] > 0 ? 127.0f / rowmax[o] : 0.0f;
                    return g;
                });
            }
    } else {
        if (rowWise)
            quantizeRows([&](const float* xr, float* o, int8_t* c) {
                quantizeDequantize(spec, xr, 1, cols, o, c);
            });
        else
            quantizeDequantize(spec, x, rows, cols, deq.data(), codes.data());
        const int64_t g = spec.granularity == Granularity::Row     ? cols
                          : spec.granularity == Granularity::Group ? std::min<int64_t>(spec.groupSize, cols)
                                                                   : n;
        const int64_t groupsPerRow = (cols + g - 1) / g;
        for (int64_t r = 0; r < w.rows; ++r)
            for (int64_t c = 0; c < w.cols; ++c) {
                const int64_t sr = w.row0 + r, sc = w.col0 + c;
                const int64_t key = spec.granularity == Granularity::Tensor ? 0 : sr * groupsPerRow + sc / g;
                w.group[w.at(r, c)] = groupOf(key, [&] {
                    CodeGroup cg;
                    const float* begin = x;
                    int64_t len = n;
                    if (spec.granularity == Granularity::Tensor) {
                        cg.label = "tensor";
                    } else {
                        const int64_t k = sc / g;
                        begin = x + sr * cols + k * g;
                        len = std::min(g, cols - k * g);
                        cg.label = "row " + std::to_string(sr);
                        if (spec.granularity == Granularity::Group)
                            cg.label += " group " + std::to_string(k) + " (cols " + std::to_string(k * g) +
                                        ".." + std::to_string(k * g + len - 1) + ")";
                    }
                    minmax(begin, len, cg);
                    // The quantizer's own parameter function on the group's extremes (as quantizeDequantize).
                    const float ext[2] = {cg.lo, cg.hi};
                    const GroupParams p = computeGroupParams(spec.method, spec.bits, ext, 2);
                    cg.scale = p.scale;
                    cg.zero = p.zero;
                    return cg;
                });
            }
    }
    for (int64_t r = 0; r < w.rows; ++r)
        for (int64_t c = 0; c < w.cols; ++c) {
            const int64_t e = (w.row0 + r) * cols + w.col0 + c;
            w.original[w.at(r, c)] = x[e];
            w.dequantized[w.at(r, c)] = deq[at(e)];
            w.codes[w.at(r, c)] = codes[at(e)];
        }
    if (req.torchText) {
        const TorchDType codeType = isBnbFourBit(spec.method) ? TorchDType::UInt8 : TorchDType::Int8;
        w.torchOriginal =
            torchFormatT([&](int64_t i) { return x[i]; }, rows, cols, TorchDType::Float32, oneDim);
        w.torchCodes = torchFormatT([&](int64_t i) { return codes[at(i)]; }, rows, cols, codeType, oneDim);
        w.torchDequantized =
            torchFormatT([&](int64_t i) { return deq[at(i)]; }, rows, cols, TorchDType::Float32, oneDim);
    }
    return w;
}

std::string describeGroup(const CodeWindow& w, const CodeGroup& g) {
    const QuantSpec& s = w.spec;
    std::string t = g.label + ": ";
    if (isBnbFourBit(s.method)) {
        t += "absmax " + fmt("%.6g", g.absmax);
        if (s.doubleQuant) t += ", decoded (double-quantized) scale " + fmt("%.6g", g.scale);
        t += "; x ≈ code_value[q] · " + fmt("%.6g", g.scale);
        return t;
    }
    if (s.method == QuantMethod::LlmInt8) {
        t += "rowmax (SCB) " + fmt("%.6g", g.absmax) + ", scale = 127 / rowmax = " + fmt("%.6g", g.scale);
        return t;
    }
    const int qmax = (1 << (s.bits - 1)) - 1;
    if (s.method == QuantMethod::Absmax) {
        t += "scale = " + std::to_string(qmax) + " / max|X| = " + fmt("%.6g", g.scale) + " (max|X| " +
             fmt("%.6g", g.absmax) + "), zero-point 0";
    } else {
        t += "scale = " + std::to_string((1 << s.bits) - 1) + " / (max − min) = " + fmt("%.6g", g.scale) +
             " (min " + fmt("%.6g", g.lo) + ", max " + fmt("%.6g", g.hi) + "), zero-point " +
             std::to_string(g.zero);
    }
    return t;
}

std::string codeWindowText(const CodeWindow& w, const std::string& tensorName) {
    const QuantSpec& s = w.spec;
    std::string t = tensorName + " [" + std::to_string(w.tensorRows) + " x " + std::to_string(w.tensorCols) +
                    "], " + s.describe() + "\n";
    t += "window: rows " + std::to_string(w.row0) + ".." + std::to_string(w.row0 + w.rows - 1) + ", cols " +
         std::to_string(w.col0) + ".." + std::to_string(w.col0 + w.cols - 1) + "\n";
    if (s.method == QuantMethod::Absmax)
        t += "q = clamp(round(scale · x)), x̂ = q / scale\n";
    else if (s.method == QuantMethod::ZeroPoint)
        t += "q = clamp(round(scale · x + zp)), x̂ = (q − zp) / scale\n";
    else if (isBnbFourBit(s.method))
        t += "q = nearest code-book index of x / absmax, x̂ = code_value[q] · scale\n";
    else
        t += "q = round(x · 127 / rowmax) per output feature; outlier features kept in fp16 (code 0, marked "
             "*); " +
             std::to_string(w.outlierFeatures) + " outlier feature(s) in the tensor\n";
    t += "scales:\n";
    for (const CodeGroup& g : w.groups)
        t += "  " + describeGroup(w, g) + "\n";
    if (!w.codeBook.empty()) {
        t += "code book:";
        for (size_t i = 0; i < w.codeBook.size(); ++i)
            t += " " + std::to_string(i) + ":" + fmt("%.4f", w.codeBook[i]);
        t += "\n";
    }
    const TorchDType codeType = isBnbFourBit(s.method) ? TorchDType::UInt8 : TorchDType::Int8;
    std::vector<float> err(w.original.size());
    for (size_t i = 0; i < err.size(); ++i)
        err[i] = w.dequantized[i] - w.original[i];
    t += "\nOriginal (window):\n" +
         torchFormat(std::span<const float>(w.original), w.rows, w.cols, TorchDType::Float32, w.oneDim);
    t += "\nCodes (window):\n" +
         torchFormat(std::span<const int32_t>(w.codes), w.rows, w.cols, codeType, w.oneDim);
    bool anyFp16 = false;
    for (uint8_t k : w.keptFp16)
        anyFp16 = anyFp16 || k;
    if (anyFp16) {
        t += "\nKept in fp16 (window, * = outlier feature):\n";
        for (int64_t r = 0; r < w.rows; ++r) {
            t += "  ";
            for (int64_t c = 0; c < w.cols; ++c)
                t += w.keptFp16[w.at(r, c)] ? "*" : ".";
            t += "\n";
        }
    }
    t += "\nDequantized (window):\n" +
         torchFormat(std::span<const float>(w.dequantized), w.rows, w.cols, TorchDType::Float32, w.oneDim);
    t += "\nError = dequantized − original (window):\n" +
         torchFormat(std::span<const float>(err), w.rows, w.cols, TorchDType::Float32, w.oneDim) + "\n";
    if (!w.torchOriginal.empty()) {
        t += "\nWhole tensor, as the notebook prints it:\nOriginal weights:\n" + w.torchOriginal + "\n";
        t += std::string(methodName(s.method)) + " quantized weights:\n" + w.torchCodes + "\n";
        t += "Dequantized weights:\n" + w.torchDequantized + "\n";
    }
    return t;
}

} // namespace qz
