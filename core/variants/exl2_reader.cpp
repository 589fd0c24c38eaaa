#include "variants/exl2_reader.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/fp16.h"
#include "infer/hparams.h"

namespace qz {

namespace fs = std::filesystem;

namespace {

Result<nlohmann::json> readQuantConfig(const std::string& folder) {
    const std::string p = (fs::path(folder) / "config.json").string();
    auto text = readSmallFile(p, 4u << 20);
    if (!text) return text.error();
    if (auto st = checkJsonDepth(*text, p); !st) return st.error();
    auto j = nlohmann::json::parse(*text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return makeError(p + ": not a JSON object");
    auto it = j.find("quantization_config");
    if (it == j.end() || !it->is_object()) return makeError(p + ": no quantization_config");
    return *it;
}

bool isExl2Config(const nlohmann::json& j) {
    auto it = j.find("quant_method");
    return it != j.end() && it->is_string() && it->get<std::string>() == "exl2";
}

std::string modulePrefix(const std::string& weightName) {
    static const std::string kSuffix = ".weight";
    if (weightName.size() <= kSuffix.size() ||
        weightName.compare(weightName.size() - kSuffix.size(), kSuffix.size(), kSuffix))
        return {};
    return weightName.substr(0, weightName.size() - kSuffix.size());
}

uint32_t wordAt(const uint8_t* base, size_t i) {
    uint32_t w;
    std::memcpy(&w, base + 4 * i, 4);
    return w;
}

float fp16Round(float x) {
    return fp16ToFp32(fp32ToFp16(x));
}

// One quantized linear, checked (README.md E.2). q_weight and q_scale stay in the mapped file.
class Exl2Linear final : public WeightRowSource {
  public:
    struct Group {
        int bits = 0;
        int64_t qStart = 0;   // first q_weight row
        int64_t rowStart = 0; // first stored (permuted) input row
        int64_t rows = 0;
        float maxScale = 0; // fp16(q_scale_max · 1/256)
    };
    std::shared_ptr<const Model> model;
    int64_t out = 0, in = 0, width = 0;
    const uint8_t* qweight = nullptr; // [qrows][width] int32
    const uint8_t* qscale = nullptr;  // [G][width/8] int32
    std::vector<Group> groups;
    std::vector<int32_t> perm; // stored row j holds input perm[j] (perm = argsort(q_invperm))
    uint64_t bytes = 0;

    int64_t rows() const override { return out; }
    int64_t cols() const override { return in; }
    uint64_t residentBytes() const override {
        return groups.capacity() * sizeof(Group) + perm.capacity() * sizeof(int32_t);
    }

    // README.md E.2-E.4: stored row j of group g, column n: the value at bits [i·b, i·b + b) of the
    // column's little-endian word stream over the group's q_weight rows (i = j − rowStart), minus 2^(b−1),
    // times scale[g][n] = fp16(fp16((qs + 1)²)·maxScale[g]) (qs the 4-bit q_scale), rounded to fp16.
    void decodeRows(int64_t n0, int64_t n1, float* dst) const override {
        const int64_t nr = n1 - n0;
        thread_local std::vector<float> scale;
        if (scale.size() < size_t(nr)) scale.resize(size_t(nr));
        for (size_t gi = 0; gi < groups.size(); ++gi) {
            const Group& g = groups[gi];
            for (int64_t n = n0; n < n1; ++n) {
                const uint32_t w = wordAt(qscale, size_t(int64_t(gi) * (width / 8) + n / 8));
                const int qs = int((w >> (4 * (n % 8))) & 15u) + 1;
                scale[size_t(n - n0)] = fp16Round(fp16Round(float(qs * qs)) * g.maxScale);
            }
            const uint32_t mask = (1u << g.bits) - 1u;
            const int qzero = 1 << (g.bits - 1);
            for (int64_t i = 0; i < g.rows; ++i) {
                const int64_t bit = i * g.bits, wr = g.qStart + bit / 32;
                const int off = int(bit % 32);
                const int64_t k = perm[size_t(g.rowStart + i)];
                for (int64_t n = n0; n < n1; ++n) {
                    uint32_t v = wordAt(qweight, size_t(wr * width + n)) >> off;
                    if (off + g.bits > 32) v |= wordAt(qweight, size_t((wr + 1) * width + n)) << (32 - off);
                    const int q = int(v & mask);
                    dst[size_t((n - n0) * in + k)] = fp16Round(float(q - qzero) * scale[size_t(n - n0)]);
                }
            }
        }
    }
};

Result<std::shared_ptr<Exl2Linear>> exl2Linear(const Exl2Folder& folder, const std::string& weightName,
                                               int64_t out, int64_t in) {
    const Model& m = *folder.model;
    const std::string prefix = modulePrefix(weightName);
    if (prefix.empty()) return std::shared_ptr<Exl2Linear>();
    const TensorInfo* qw = m.find(prefix + ".q_weight");
    if (!qw) return std::shared_ptr<Exl2Linear>();
    const std::string where = m.path + ": " + prefix;
    const TensorInfo* qs = m.find(prefix + ".q_scale");
    const TensorInfo* qsm = m.find(prefix + ".q_scale_max");
    const TensorInfo* qg = m.find(prefix + ".q_groups");
    const TensorInfo* qi = m.find(prefix + ".q_invperm");
    if (!qs || !qsm || !qg || !qi)
        return makeError(where + ": q_weight without q_scale / q_scale_max / q_groups / q_invperm");
    auto expect = [&](const TensorInfo* t, DType dt, size_t dims, const char* what) -> Status {
        if (t->dtype != dt || t->shape.size() != dims)
            return makeError(m.path + ": " + t->name + " is not " + what);
        uint64_t bytes = 0;
        if (__builtin_mul_overflow(t->numel(), uint64_t(traits(dt).typeSize), &bytes) ||
            m.rawBytes(*t).size() != bytes)
            return makeError(m.path + ": " + t->name + " has the wrong byte size");
        return okStatus();
    };
    if (auto st = expect(qw, DType::I32, 2, "a 2-D int32 tensor"); !st) return st.error();
    if (auto st = expect(qs, DType::I32, 2, "a 2-D int32 tensor"); !st) return st.error();
    if (auto st = expect(qsm, DType::F16, 1, "a 1-D float16 tensor"); !st) return st.error();
    if (auto st = expect(qg, DType::I16, 1, "a 1-D int16 tensor"); !st) return st.error();
    if (auto st = expect(qi, DType::I32, 1, "a 1-D int32 tensor"); !st) return st.error();
    const int64_t qrows = qw->shape[0], width = qw->shape[1], G = qs->shape[0];
    if (out <= 0 || in <= 0 || in > 65536 || out > (int64_t(1) << 24))
        return makeError(where + ": shape [" + std::to_string(out) + ", " + std::to_string(in) +
                         "] cannot be an EXL2 linear (at most 65536 inputs)");
    if (width != (out + 31) / 32 * 32)
        return makeError(where + ": q_weight has " + std::to_string(width) + " columns, expected " +
                         std::to_string((out + 31) / 32 * 32) + " (" + std::to_string(out) +
                         " outputs padded to 32)");
    if (qs->shape[1] * 8 != width)
        return makeError(where + ": q_scale has " + std::to_string(qs->shape[1]) + " columns, q_weight " +
                         std::to_string(width) + " (8 scales per word)");
    if (G <= 0 || G > in || qsm->shape[0] != G || qg->shape[0] != 2 * G)
        return makeError(where + ": " + std::to_string(G) + " scale rows, " + std::to_string(qsm->shape[0]) +
                         " q_scale_max entries, " + std::to_string(qg->shape[0]) + " q_groups entries");
    if (qi->shape[0] != in)
        return makeError(where + ": q_invperm has " + std::to_string(qi->shape[0]) + " entries, the weight " +
                         std::to_string(in) + " inputs");
    if (qrows <= 0 || qrows > in) // at most 8 bits: in·8/32 rows
        return makeError(where + ": q_weight has " + std::to_string(qrows) + " rows for " +
                         std::to_string(in) + " inputs");
    auto L = std::make_shared<Exl2Linear>();
    L->model = folder.model;
    L->out = out;
    L->in = in;
    L->width = width;
    L->qweight = m.rawBytes(*qw).data();
    L->qscale = m.rawBytes(*qs).data();
    const uint8_t* gr = m.rawBytes(*qg).data();
    const uint8_t* mx = m.rawBytes(*qsm).data();
    auto i16 = [&](int64_t i) {
        int16_t v;
        std::memcpy(&v, gr + 2 * i, 2);
        return int64_t(uint16_t(v));
    };
    int64_t row = 0, prevBits = 99;
    for (int64_t g = 0; g < G; ++g) {
        Exl2Linear::Group grp;
        grp.bits = int(i16(2 * g));
        grp.qStart = i16(2 * g + 1);
        const int64_t qEnd = g + 1 < G ? i16(2 * g + 3) : qrows;
        const std::string gw = where + ": group " + std::to_string(g);
        if (grp.bits != 2 && grp.bits != 3 && grp.bits != 4 && grp.bits != 5 && grp.bits != 6 &&
            grp.bits != 8)
            return makeError(gw + " has " + std::to_string(grp.bits) + " bits (2, 3, 4, 5, 6 or 8)");
        if (grp.bits > prevBits) // README.md E.2: non-increasing bit order
            return makeError(gw + " (" + std::to_string(grp.bits) + " bits) follows a " +
                             std::to_string(prevBits) + "-bit group");
        prevBits = grp.bits;
        if (grp.qStart < 0 || grp.qStart > qEnd || qEnd > qrows)
            return makeError(gw + ": q_weight rows [" + std::to_string(grp.qStart) + ", " +
                             std::to_string(qEnd) + ") outside [0, " + std::to_string(qrows) + "]");
        if (((qEnd - grp.qStart) * 32) % grp.bits)
            return makeError(gw + ": its q_weight rows do not hold whole " + std::to_string(grp.bits) +
                             "-bit values");
        grp.rows = (qEnd - grp.qStart) * 32 / grp.bits;
        grp.rowStart = row;
        row += grp.rows;
        if (row > in)
            return makeError(where + ": the groups cover more than the " + std::to_string(in) + " inputs");
        uint16_t h;
        std::memcpy(&h, mx + 2 * g, 2);
        const float smax = fp16ToFp32(h);
        if (!std::isfinite(smax)) return makeError(gw + ": q_scale_max is not finite");
        grp.maxScale = fp16Round(smax * (1.0f / 256.0f));
        L->groups.push_back(grp);
    }
    if (row != in)
        return makeError(where + ": the groups cover " + std::to_string(row) + " inputs, the weight has " +
                         std::to_string(in));
    L->perm.assign(size_t(in), -1);
    const uint8_t* ip = m.rawBytes(*qi).data();
    for (int64_t k = 0; k < in; ++k) {
        int32_t j;
        std::memcpy(&j, ip + 4 * k, 4);
        if (j < 0 || j >= in || L->perm[size_t(j)] >= 0)
            return makeError(where + ": q_invperm is not a permutation of 0.." + std::to_string(in - 1));
        L->perm[size_t(j)] = int32_t(k);
    }
    L->bytes = qw->nbytes + qs->nbytes + qsm->nbytes + qg->nbytes + qi->nbytes;
    return L;
}

// A fused weight of the original (phi3) read from the linears the folder splits it into: part i holds rows
// [row0[i], row0[i] + rows of part i) of the fused tensor.
class Exl2Fused final : public WeightRowSource {
  public:
    std::vector<std::shared_ptr<const Exl2Linear>> parts;
    std::vector<int64_t> row0;
    int64_t out = 0, in = 0;
    uint64_t bytes = 0;

    int64_t rows() const override { return out; }
    int64_t cols() const override { return in; }
    uint64_t residentBytes() const override {
        uint64_t b = 0;
        for (const auto& p : parts)
            b += p->residentBytes();
        return b;
    }
    void decodeRows(int64_t r0, int64_t r1, float* dst) const override {
        for (size_t i = 0; i < parts.size(); ++i) {
            const int64_t lo = std::max(r0, row0[i]), hi = std::min(r1, row0[i] + parts[i]->out);
            if (lo < hi) parts[i]->decodeRows(lo - row0[i], hi - row0[i], dst + (lo - r0) * in);
        }
    }
};

// The weight's quantized form: one linear, or the parts of a fused weight. nullptr when the folder does not
// store it quantized (no q_weight under its name, none of its parts).
Result<std::shared_ptr<const WeightRowSource>> quantizedWeight(const Exl2Folder& folder,
                                                               const std::string& weightName, int64_t out,
                                                               int64_t in, uint64_t* bytes) {
    using Ptr = std::shared_ptr<const WeightRowSource>;
    auto sp = folder.split.find(weightName);
    if (sp == folder.split.end()) {
        auto L = exl2Linear(folder, weightName, out, in);
        if (!L) return L.error();
        if (*L) *bytes = (*L)->bytes;
        return Ptr(std::move(*L));
    }
    const std::string where = folder.model->path + ": " + weightName;
    auto F = std::make_shared<Exl2Fused>();
    F->out = out;
    F->in = in;
    int64_t row = 0;
    std::string missing;
    for (const Exl2Part& part : sp->second) {
        auto L = exl2Linear(folder, part.weightName, part.rows, in);
        if (!L) return L.error();
        if (!*L) {
            missing = part.weightName;
            continue;
        }
        F->row0.push_back(row);
        row += part.rows;
        F->bytes += (*L)->bytes;
        F->parts.push_back(std::move(*L));
    }
    if (F->parts.empty()) return Ptr();
    if (!missing.empty())
        return makeError(where + " is stored split (core/exl2/README.md E.8), but " + missing +
                         " has no q_weight");
    if (row != out)
        return makeError(where + ": its parts have " + std::to_string(row) + " rows, the original " +
                         std::to_string(out));
    *bytes = F->bytes;
    return Ptr(std::move(F));
}

} // namespace

bool looksLikeExl2Folder(const std::string& path) {
    std::error_code ec;
    if (!fs::is_directory(path, ec)) return false;
    auto j = readQuantConfig(path);
    return j && isExl2Config(*j);
}

Result<Exl2Folder> openExl2Folder(const std::string& path, const Model& original) {
    auto cfg = readQuantConfig(path);
    if (!cfg) return cfg.error();
    if (!isExl2Config(*cfg)) return makeError(path + ": quant_method is not \"exl2\"");
    Exl2Folder f;
    if (auto b = cfg->find("bits"); b != cfg->end() && b->is_number()) {
        f.bits = b->get<double>();
        if (!std::isfinite(f.bits) || f.bits < 0 || f.bits > 32) f.bits = 0;
    }
    if (auto h = cfg->find("head_bits"); h != cfg->end() && h->is_number_integer()) {
        const int64_t v = h->get<int64_t>();
        f.headBits = v > 0 && v <= 16 ? int(v) : 0;
    }
    auto m = openModel(path);
    if (!m) return m.error();
    f.model = std::move(*m);
    // phi3: the fused weights' parts as exllamav2 splits them (README.md E.8), with the original's sizes.
    // An original the engine cannot describe has no fused weights to map.
    if (auto hp = readInferHParams(original); hp && hp->fused) {
        const int64_t q = int64_t(hp->nHead) * hp->headDim, kv = int64_t(hp->nHeadKv) * hp->headDim;
        for (int l = 0; l < hp->nLayer; ++l) {
            const std::string b = hp->hfPrefix + "layers." + std::to_string(l) + ".";
            f.split[b + "self_attn.qkv_proj.weight"] = {{b + "self_attn.q_proj.weight", q},
                                                        {b + "self_attn.k_proj.weight", kv},
                                                        {b + "self_attn.v_proj.weight", kv}};
            f.split[b + "mlp.gate_up_proj.weight"] = {{b + "mlp.gate_proj.weight", hp->nFf},
                                                      {b + "mlp.up_proj.weight", hp->nFf}};
        }
    }
    return f;
}

Result<Exl2Tensor> readExl2Weight(const Exl2Folder& folder, const std::string& weightName, int64_t out,
                                  int64_t in) {
    Exl2Tensor r;
    const Model& m = *folder.model;
    if (const TensorInfo* t = m.find(weightName)) { // stored unquantized (fp16)
        auto v = readTensorF32(m, *t);
        if (!v) return v.error();
        r.found = true;
        r.values = std::move(*v);
        r.bytes = t->nbytes;
        return r;
    }
    uint64_t bytes = 0;
    auto S = quantizedWeight(folder, weightName, out, in, &bytes);
    if (!S) return S.error();
    if (!*S) return r;
    r.values.resize(size_t(out) * size_t(in));
    (*S)->decodeRows(0, out, r.values.data());
    r.found = r.quantized = true;
    r.bytes = bytes;
    return r;
}

Result<std::shared_ptr<const WeightRowSource>>
exl2RowSource(const Exl2Folder& folder, const std::string& weightName, int64_t out, int64_t in) {
    if (folder.model->find(weightName)) return std::shared_ptr<const WeightRowSource>();
    uint64_t bytes = 0;
    return quantizedWeight(folder, weightName, out, in, &bytes);
}

} // namespace qz
