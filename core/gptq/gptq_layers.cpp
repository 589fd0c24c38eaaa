#include "gptq/gptq_layers.h"

#include <climits>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <unistd.h>

#include "common/safe_file.h"

namespace qz::gptq {

size_t LayerPlan::layerCount() const {
    size_t n = 0;
    for (const auto& b : blocks)
        for (const auto& g : b) n += g.size();
    return n;
}

Result<LayerPlan> planLayers(const Model& model) {
    const std::string arch = model.architecture;
    std::string blockPrefix;
    std::vector<std::vector<std::string>> groups;
    bool conv1d = false;
    // Mixture of experts (README.md D.6): the experts' module names under "<moe>experts.E.".
    std::string moe;
    std::vector<std::vector<std::string>> expertGroups;  // [gate, up], [down]
    // GPTQModel's module groups (README.md D.1); qwen3 and the Gemma families name their modules as llama
    // does (their q/k and sandwich norms are not quantized); phi3's fused modules as AutoGPTQ's phi3.py.
    if (arch == "llama" || arch == "mistral" || arch == "qwen2" || arch == "qwen3" || arch == "gemma2" ||
        arch == "gemma3_text") {
        blockPrefix = "model.layers.";
        groups = {{"self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj"},
                  {"self_attn.o_proj"},
                  {"mlp.up_proj", "mlp.gate_proj"},
                  {"mlp.down_proj"}};
    } else if (arch == "phi3") {
        blockPrefix = "model.layers.";
        groups = {{"self_attn.qkv_proj"}, {"self_attn.o_proj"}, {"mlp.gate_up_proj"}, {"mlp.down_proj"}};
    } else if (arch == "qwen3_moe" || arch == "mixtral") {
        blockPrefix = "model.layers.";
        groups = {{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}, {"self_attn.o_proj"}, {}, {}};
        if (arch == "mixtral") {
            moe = "block_sparse_moe.";
            expertGroups = {{"w1", "w3"}, {"w2"}};
        } else {
            moe = "mlp.";
            expertGroups = {{"gate_proj", "up_proj"}, {"down_proj"}};
        }
    } else if (arch == "gpt2") {
        blockPrefix = model.find("transformer.h.0.attn.c_attn.weight") ? "transformer.h." : "h.";
        groups = {{"attn.c_attn"}, {"attn.c_proj"}, {"mlp.c_fc"}, {"mlp.c_proj"}};
        conv1d = true;
    } else {
        return makeError("GPTQ: architecture '" + arch +
                         "' is not supported (llama, mistral, qwen2, qwen3, qwen3_moe, mixtral, gemma2, gemma3 (text), "
                         "phi3, gpt2 are)");
    }
    LayerPlan plan;
    // Experts: counted in block 0 (experts.0 .. the first index without a tensor); every block must have
    // exactly as many (the engine checks the count against config.json).
    auto expertCount = [&](const std::string& bp) {
        int n = 0;
        while (n < (1 << 20) && model.find(bp + moe + "experts." + std::to_string(n) + "." + expertGroups[0][0] + ".weight"))
            ++n;
        return n;
    };
    if (!moe.empty()) {
        plan.experts = expertCount(blockPrefix + "0.");
        if (plan.experts == 0)
            return makeError("GPTQ: " + model.path + " lacks " + blockPrefix + "0." + moe + "experts.0." +
                             expertGroups[0][0] + ".weight");
    }
    auto makeLayer = [&](const std::string& prefix, LinearLayer& L) -> Status {
        L.prefix = prefix;
        L.weightName = L.prefix + ".weight";
        const TensorInfo* t = model.find(L.weightName);
        if (!t) return makeError("GPTQ: " + model.path + " lacks " + L.weightName);
        if (t->shape.size() != 2) return makeError("GPTQ: " + L.weightName + " is not 2-D");
        const int64_t o = conv1d ? t->shape[1] : t->shape[0], i = conv1d ? t->shape[0] : t->shape[1];
        if (o <= 0 || i <= 0 || o > INT32_MAX || i > INT32_MAX)
            return makeError("GPTQ: " + L.weightName + " has an unusable shape");
        if (model.find(L.prefix + ".bias")) L.biasName = L.prefix + ".bias";
        L.conv1d = conv1d;
        L.out = static_cast<int>(o);
        L.in = static_cast<int>(i);
        return okStatus();
    };
    for (int b = 0;; ++b) {
        const std::string bp = blockPrefix + std::to_string(b) + ".";
        if (!model.find(bp + groups[0][0] + ".weight")) break;
        if (!moe.empty() && expertCount(bp) != plan.experts)
            return makeError("GPTQ: " + model.path + ": block " + std::to_string(b) + " has " +
                             std::to_string(expertCount(bp)) + " experts, block 0 has " + std::to_string(plan.experts));
        std::vector<std::vector<LinearLayer>> blk;
        for (size_t gi = 0; gi < groups.size(); ++gi) {
            std::vector<LinearLayer> grp;
            for (const auto& m : groups[gi]) {
                LinearLayer L;
                if (auto s = makeLayer(bp + m, L); !s) return s.error();
                L.inputName = bp + groups[gi][0] + ".weight";
                grp.push_back(std::move(L));
            }
            // The experts' groups take the places of the dense FFN's: [gate, up] of every expert, then
            // [down] of every expert (GPTQModel: experts.#.gate_proj:0, up_proj:0, down_proj:1).
            if (!moe.empty() && gi >= 2)
                for (int e = 0; e < plan.experts; ++e) {
                    const std::string ep = bp + moe + "experts." + std::to_string(e) + ".";
                    for (const auto& m : expertGroups[gi - 2]) {
                        LinearLayer L;
                        if (auto s = makeLayer(ep + m, L); !s) return s.error();
                        L.inputName = ep + expertGroups[gi - 2][0] + ".weight";
                        L.expert = e;
                        grp.push_back(std::move(L));
                    }
                }
            blk.push_back(std::move(grp));
        }
        plan.blocks.push_back(std::move(blk));
    }
    if (plan.blocks.empty()) return makeError("GPTQ: no decoder blocks found in " + model.path);
    return plan;
}

namespace {
const char kMagic[8] = {'Q', 'Z', 'G', 'P', 'T', 'Q', 'L', '1'};

template <class T>
bool readVec(std::ifstream& f, std::vector<T>& v, size_t n) {
    v.resize(n);
    return n == 0 || static_cast<bool>(f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(T))));
}
}  // namespace

Status saveLayerRecord(const std::string& path, const LayerRecord& rec) {
    const LayerResult& r = rec.result;
    nlohmann::json j = {{"name", rec.name},       {"rows", r.rows},         {"cols", r.cols},
                        {"bits", r.bits},         {"groupSize", r.groupSize}, {"nGroups", r.nGroups},
                        {"loss", r.loss},         {"dampUsed", r.dampUsed}, {"relErr", rec.relErr},
                        {"relErrRtn", rec.relErrRtn}, {"seconds", rec.seconds}, {"tokens", rec.tokens},
                        {"fallback", rec.fallback}};
    const std::string js = j.dump();
    OutputFile f;  // unique O_EXCL temporary, fsync + rename; errors name the file and errno
    if (auto s = f.open(path); !s) return s;
    const uint32_t n = static_cast<uint32_t>(js.size());
    auto put = [&](const void* p, size_t bytes) { return f.write(p, bytes); };
    auto putVec = [&](const auto& v) { return put(v.data(), v.size() * sizeof(v[0])); };
    for (auto s : {put(kMagic, 8), put(&n, 4), put(js.data(), js.size()), putVec(r.codes), putVec(r.scales),
                   putVec(r.zeros), putVec(r.gIdx)})
        if (!s) return s;
    if (auto s = f.commit(); !s) return s;
    return okStatus();
}

Result<LayerRecord> loadLayerRecord(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return makeError("cannot open " + path);
    char magic[8];
    uint32_t n = 0;
    if (!f.read(magic, 8) || std::memcmp(magic, kMagic, 8) != 0 || !f.read(reinterpret_cast<char*>(&n), 4) ||
        n > (1u << 20))
        return makeError(path + ": not a GPTQ layer record");
    std::string js(n, '\0');
    if (!f.read(js.data(), n)) return makeError(path + ": truncated");
    LayerRecord rec;
    try {
        const auto j = nlohmann::json::parse(js);
        rec.name = j.at("name").get<std::string>();
        LayerResult& r = rec.result;
        // get<int>() on a non-integer (e.g. 1e300) would be an out-of-range float conversion.
        auto intField = [&](const char* key) {
            const auto& v = j.at(key);
            if (!v.is_number_integer()) throw std::runtime_error(std::string(key) + " is not an integer");
            const int64_t x = v.get<int64_t>();
            if (x < INT32_MIN || x > INT32_MAX) throw std::runtime_error(std::string(key) + " is out of range");
            return static_cast<int>(x);
        };
        r.rows = intField("rows");
        r.cols = intField("cols");
        r.bits = intField("bits");
        r.groupSize = intField("groupSize");
        r.nGroups = intField("nGroups");
        r.loss = j.at("loss").get<double>();
        r.dampUsed = j.at("dampUsed").get<double>();
        rec.relErr = j.at("relErr").get<double>();
        rec.relErrRtn = j.at("relErrRtn").get<double>();
        rec.seconds = j.at("seconds").get<double>();
        if (j.contains("tokens")) {
            if (!j["tokens"].is_number_integer()) throw std::runtime_error("tokens is not an integer");
            rec.tokens = j["tokens"].get<int64_t>();
        }
        if (j.contains("fallback")) rec.fallback = j.at("fallback").get<bool>();
    } catch (const std::exception& e) {
        return makeError(path + ": bad header: " + e.what());
    }
    LayerResult& r = rec.result;
    if (r.rows <= 0 || r.cols <= 0 || r.rows > (1 << 20) || r.cols > (1 << 20) || r.nGroups <= 0 || r.nGroups > r.cols ||
        (r.bits != 2 && r.bits != 3 && r.bits != 4 && r.bits != 8))
        return makeError(path + ": bad dimensions");
    const size_t rc = static_cast<size_t>(r.rows) * r.cols, gr = static_cast<size_t>(r.nGroups) * r.rows;
    // The arrays must be exactly what is left of the file before anything is allocated for them
    // (rows and cols of 2^20 would ask for a terabyte).
    const auto here = f.tellg();
    f.seekg(0, std::ios::end);
    const auto end = f.tellg();
    f.seekg(here);
    if (here < 0 || end < here ||
        static_cast<uint64_t>(end - here) != rc + 8 * uint64_t{gr} + 4 * static_cast<uint64_t>(r.cols))
        return makeError(path + ": size does not match its header");
    if (!readVec(f, r.codes, rc) || !readVec(f, r.scales, gr) || !readVec(f, r.zeros, gr) || !readVec(f, r.gIdx, r.cols))
        return makeError(path + ": truncated");
    if (f.peek() != std::char_traits<char>::eof()) return makeError(path + ": trailing bytes");
    const int maxq = (1 << r.bits) - 1;
    for (uint8_t c : r.codes)
        if (c > maxq) return makeError(path + ": code out of range");
    for (int32_t g : r.gIdx)
        if (g < 0 || g >= r.nGroups) return makeError(path + ": g_idx out of range");
    return rec;
}

}  // namespace qz::gptq
