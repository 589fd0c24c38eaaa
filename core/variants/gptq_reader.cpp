#include "variants/gptq_reader.h"

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/fp16.h"
#include "gptq/gptq_pack.h"
#include "quant/llm_int8.h"

namespace qz {

namespace fs = std::filesystem;

namespace {

// The quantization config: quantize_config.json, else config.json's quantization_config.
Result<nlohmann::json> readQuantConfig(const std::string& folder) {
    for (const char* name : {"quantize_config.json", "config.json"}) {
        const std::string p = (fs::path(folder) / name).string();
        std::error_code ec;
        if (!fs::is_regular_file(p, ec)) continue;
        auto text = readSmallFile(p, 4u << 20);
        if (!text) return text.error();
        if (auto st = checkJsonDepth(*text, p); !st) return st.error();
        auto j = nlohmann::json::parse(*text, nullptr, false);
        if (j.is_discarded() || !j.is_object()) return makeError(p + ": not a JSON object");
        if (std::string(name) == "config.json") {
            auto it = j.find("quantization_config");
            if (it == j.end() || !it->is_object()) continue;
            return *it;
        }
        return j;
    }
    return makeError(folder + ": no quantize_config.json and no quantization_config in config.json");
}

bool isGptqConfig(const nlohmann::json& j) {
    auto it = j.find("quant_method");
    return it != j.end() && it->is_string() && it->get<std::string>() == "gptq";
}

// The module prefix of a weight name ("x.weight" -> "x"), or empty.
std::string modulePrefix(const std::string& weightName) {
    static const std::string kSuffix = ".weight";
    if (weightName.size() <= kSuffix.size() ||
        weightName.compare(weightName.size() - kSuffix.size(), kSuffix.size(), kSuffix))
        return {};
    return weightName.substr(0, weightName.size() - kSuffix.size());
}

bool checkedMul(uint64_t a, uint64_t b, uint64_t& out) {
    return !__builtin_mul_overflow(a, b, &out);
}

} // namespace

bool looksLikeGptqFolder(const std::string& path) {
    std::error_code ec;
    if (!fs::is_directory(path, ec)) return false;
    auto j = readQuantConfig(path);
    return j && isGptqConfig(*j);
}

Result<GptqFolder> openGptqFolder(const std::string& path) {
    auto cfg = readQuantConfig(path);
    if (!cfg) return cfg.error();
    if (!isGptqConfig(*cfg)) return makeError(path + ": quant_method is not \"gptq\"");
    GptqFolder f;
    // README.md D.4: bits ∈ {2, 3, 4, 8}, group_size −1 or > 0.
    auto bits = cfg->find("bits");
    if (bits == cfg->end() || !bits->is_number_integer())
        return makeError(path + ": quantization config has no integer \"bits\"");
    f.bits = bits->get<int>();
    if (f.bits != 2 && f.bits != 3 && f.bits != 4 && f.bits != 8)
        return makeError(path + ": bits " + std::to_string(f.bits) + " (2, 3, 4 or 8 expected)");
    auto gs = cfg->find("group_size");
    if (gs == cfg->end() || !gs->is_number_integer())
        return makeError(path + ": quantization config has no integer \"group_size\"");
    const int64_t g = gs->get<int64_t>();
    if (g != -1 && (g <= 0 || g > (int64_t(1) << 30)))
        return makeError(path + ": group_size " + std::to_string(g));
    f.groupSize = int(g);
    auto fmt = cfg->find("checkpoint_format");
    if (fmt != cfg->end() && fmt->is_string()) {
        const std::string s = fmt->get<std::string>();
        if (s == "gptq_v2")
            f.v1 = false;
        else if (s != "gptq")
            return makeError(path + ": checkpoint_format \"" + printableText(s) + "\" is not gptq / gptq_v2");
    }
    auto m = openModel(path);
    if (!m) return m.error();
    f.model = std::move(*m);
    return f;
}

namespace {

uint32_t wordAt(const uint8_t* base, size_t i) {
    uint32_t w;
    std::memcpy(&w, base + 4 * i, 4);
    return w;
}

// One quantized linear of the folder, checked: qweight stays in the mapped file, the zero points, scales
// and group indices (one value per group and output, or per input) are held unpacked.
class GptqLinear final : public WeightRowSource {
  public:
    int bits = 4;
    int64_t out = 0, in = 0;
    const uint8_t* qweight = nullptr;   // [in·bits/32][out] words, little-endian
    std::shared_ptr<const Model> model; // keeps the mapping alive
    std::vector<int32_t> zeros;         // [G][out]
    std::vector<float> scales;          // [G][out]
    std::vector<int32_t> gidx;          // [in]
    bool conv1d = false;                // the original stores the weight [in, out] (README.md D.1)

    int64_t rows() const override { return out; }
    int64_t cols() const override { return in; }
    bool transposed() const override { return conv1d; }
    uint64_t residentBytes() const override {
        return 4 * (zeros.capacity() + scales.capacity() + gidx.capacity());
    }
    // Rows [n0, n1) of W [out][in] (README.md D.3): W[n][k] = scales[g][n]·(q[k][n] − z[g][n]), g = g_idx[k];
    // the loader's product is computed in fp16: the fp16 scale times the integer difference, rounded.
    void decodeRows(int64_t n0, int64_t n1, float* dst) const override {
        const uint32_t mask = (1u << bits) - 1u;
        for (int64_t k = 0; k < in; ++k) {
            const int64_t bit = k * bits, wr = bit / 32;
            const int off = int(bit % 32);
            const size_t g = size_t(gidx[size_t(k)]) * size_t(out);
            for (int64_t n = n0; n < n1; ++n) {
                uint32_t v = wordAt(qweight, size_t(wr * out + n)) >> off;
                if (off + bits > 32) v |= wordAt(qweight, size_t((wr + 1) * out + n)) << (32 - off);
                const int32_t q = int32_t(v & mask);
                dst[size_t((n - n0) * in + k)] =
                    fp16ToFp32(fp32ToFp16(scales[g + size_t(n)] * float(q - zeros[g + size_t(n)])));
            }
        }
    }
};

// The quantized linear `prefix` (.qweight / .qzeros / .scales / .g_idx), checked (README.md D.2, D.3).
// nullptr when the folder has no prefix.qweight.
Result<std::shared_ptr<GptqLinear>> gptqLinear(const GptqFolder& folder, const std::string& weightName,
                                               const std::string& prefix) {
    const Model& m = *folder.model;
    const std::string where = m.path + ": " + weightName;
    const TensorInfo* qw = m.find(prefix + ".qweight");
    if (!qw) return std::shared_ptr<GptqLinear>();
    const TensorInfo* qz = m.find(prefix + ".qzeros");
    const TensorInfo* sc = m.find(prefix + ".scales");
    const TensorInfo* gi = m.find(prefix + ".g_idx");
    if (!qz || !sc) return makeError(where + ": qweight without qzeros / scales");
    for (const TensorInfo* t : {qw, qz})
        if (t->dtype != DType::I32 || t->shape.size() != 2)
            return makeError(m.path + ": " + t->name + " is not a 2-D int32 tensor");
    if (sc->shape.size() != 2 ||
        (sc->dtype != DType::F16 && sc->dtype != DType::F32 && sc->dtype != DType::BF16))
        return makeError(m.path + ": " + sc->name + " is not a 2-D float tensor");
    if (gi && (gi->dtype != DType::I32 || gi->shape.size() != 1))
        return makeError(m.path + ": " + gi->name + " is not a 1-D int32 tensor");
    // README.md D.2: qweight [in·bits/32, out], qzeros [G, out·bits/32], scales [G, out], g_idx [in].
    const int bits = folder.bits;
    const int64_t out_ = qw->shape[1], packedRows = qw->shape[0], groups = sc->shape[0];
    if (out_ <= 0 || packedRows <= 0 || groups <= 0) return makeError(where + ": empty quantized tensor");
    if (out_ > (int64_t(1) << 24) || packedRows > (int64_t(1) << 24) || groups > (int64_t(1) << 24))
        return makeError(where + ": quantized tensor too large");
    const int64_t in = packedRows * 32 / bits;
    if ((packedRows * 32) % bits) return makeError(where + ": qweight rows do not hold whole values");
    if (sc->shape[1] != out_)
        return makeError(where + ": scales have " + std::to_string(sc->shape[1]) + " columns, qweight " +
                         std::to_string(out_));
    if (qz->shape[0] != groups || qz->shape[1] * 32 != out_ * bits)
        return makeError(where + ": qzeros shape does not match scales / qweight");
    if (gi && gi->shape[0] != in)
        return makeError(where + ": g_idx has " + std::to_string(gi->shape[0]) + " entries, expected " +
                         std::to_string(in));
    uint64_t numel = 0;
    if (!checkedMul(uint64_t(in), uint64_t(out_), numel) || numel > (uint64_t(1) << 34))
        return makeError(where + ": quantized tensor too large");
    if ((bits == 3 && (in % 32 || out_ % 32)) || in % 32)
        return makeError(where + ": input size " + std::to_string(in) + " is not a multiple of 32");
    if (bits != 3 && (out_ * bits) % 32) return makeError(where + ": output size does not pack into words");

    auto readI32 = [&](const TensorInfo* t) -> Result<std::vector<int32_t>> {
        auto raw = m.rawBytes(*t);
        uint64_t n = t->numel();
        if (raw.size() != n * 4) return makeError(m.path + ": " + t->name + " has the wrong byte size");
        std::vector<int32_t> v(n);
        std::memcpy(v.data(), raw.data(), raw.size());
        return v;
    };
    auto L = std::make_shared<GptqLinear>();
    L->bits = bits;
    L->out = out_;
    L->in = in;
    L->model = folder.model;
    {
        auto raw = m.rawBytes(*qw);
        if (raw.size() != numel * uint64_t(bits) / 8)
            return makeError(m.path + ": " + qw->name + " has the wrong byte size");
        L->qweight = raw.data();
    }
    auto qzv = readI32(qz);
    if (!qzv) return qzv.error();
    auto scv = readTensorF32(m, *sc);
    if (!scv) return scv.error();
    L->scales = std::move(*scv);
    L->gidx.resize(static_cast<size_t>(in));
    if (gi) {
        auto g = readI32(gi);
        if (!g) return g.error();
        L->gidx = std::move(*g);
        for (int32_t v : L->gidx)
            if (v < 0 || v >= groups)
                return makeError(where + ": g_idx entry " + std::to_string(v) + " outside 0.." +
                                 std::to_string(groups - 1));
    } else { // no g_idx: consecutive groups of group_size
        const int64_t gsz = folder.groupSize > 0 ? folder.groupSize : in;
        for (int64_t k = 0; k < in; ++k) {
            L->gidx[size_t(k)] = int32_t(k / gsz);
            if (L->gidx[size_t(k)] >= groups)
                return makeError(where + ": fewer groups than the group size implies");
        }
    }
    L->zeros = gptq::unpackQzeros(qzv->data(), int(groups), int(out_), bits, folder.v1); // [G][out]
    return L;
}

uint64_t gptqBytes(const Model& m, const std::string& prefix) {
    uint64_t b = 0;
    for (const char* suf : {".qweight", ".qzeros", ".scales", ".g_idx"})
        if (const TensorInfo* t = m.find(prefix + suf)) b += t->nbytes;
    return b;
}

} // namespace

Result<GptqTensor> readGptqWeight(const GptqFolder& folder, const std::string& weightName) {
    GptqTensor out;
    const Model& m = *folder.model;
    if (const TensorInfo* t = m.find(weightName)) { // stored unquantized
        auto v = readTensorF32(m, *t);
        if (!v) return v.error();
        out.found = true;
        out.values = std::move(*v);
        out.shape = t->shape;
        out.bytes = t->nbytes;
        return out;
    }
    const std::string prefix = modulePrefix(weightName);
    if (prefix.empty()) return out;
    auto L = gptqLinear(folder, weightName, prefix);
    if (!L) return L.error();
    if (!*L) return out;
    const int64_t out_ = (*L)->out, in = (*L)->in;
    std::vector<float> w(size_t(out_ * in));
    (*L)->decodeRows(0, out_, w.data());
    // Conv1D weights (GPT-2) are stored [in, out] in the original (README.md D.1).
    const bool inputIsRows = weightInputIsRows(weightName);
    if (inputIsRows) {
        out.values.resize(w.size());
        for (int64_t n = 0; n < out_; ++n)
            for (int64_t k = 0; k < in; ++k)
                out.values[size_t(k * out_ + n)] = w[size_t(n * in + k)];
    } else {
        out.values = std::move(w);
    }
    out.found = out.quantized = true;
    out.shape = inputIsRows ? std::vector<int64_t>{in, out_} : std::vector<int64_t>{out_, in};
    out.bytes = gptqBytes(m, prefix);
    return out;
}

Result<std::shared_ptr<const WeightRowSource>> gptqRowSource(const GptqFolder& folder,
                                                             const std::string& weightName) {
    if (folder.model->find(weightName)) return std::shared_ptr<const WeightRowSource>();
    const std::string prefix = modulePrefix(weightName);
    if (prefix.empty()) return std::shared_ptr<const WeightRowSource>();
    auto L = gptqLinear(folder, weightName, prefix);
    if (!L) return L.error();
    if (*L) (*L)->conv1d = weightInputIsRows(weightName); // rows of W [out, in]: the transpose of its layout
    return std::shared_ptr<const WeightRowSource>(std::move(*L));
}

Result<WeightOverrides> readGptqBlock(const GptqFolder& folder, const gptq::LayerPlan& plan, int block) {
    if (block < 0 || static_cast<size_t>(block) >= plan.blocks.size())
        return makeError("GPTQ folder: no decoder block " + std::to_string(block));
    const std::string where = folder.model ? folder.model->path : std::string("GPTQ folder");
    WeightOverrides out;
    for (const auto& g : plan.blocks[static_cast<size_t>(block)])
        for (const auto& L : g)
            for (const std::string& name : {L.weightName, L.biasName}) {
                if (name.empty()) continue;
                auto t = readGptqWeight(folder, name);
                if (!t) return t.error();
                if (!t->found || (name == L.weightName && !t->quantized))
                    return makeError(where + ": " + name + " is missing or not quantized");
                out[name] = std::move(t->values);
            }
    return out;
}

} // namespace qz
