#include "calib/imatrix.h"

#include <algorithm>
#include <cstring>

#include "convert/hf_to_gguf.h"
#include "gguf/gguf_writer.h"
#include "infer/text_tokens.h"

namespace qz {

std::vector<float> ImatrixData::importance(const std::string& name) const {
    auto it = entries.find(name);
    if (it == entries.end()) return {};
    std::vector<float> v(it->second.sum2.size(), 1.0f);
    if (!it->second.expertCounts.empty()) {
        const auto& c = it->second.expertCounts;
        const size_t nIn = v.size() / c.size();
        for (size_t x = 0; x < c.size(); ++x)
            for (size_t j = 0; j < nIn && c[x] > 0; ++j)
                v[x * nIn + j] = static_cast<float>(it->second.sum2[x * nIn + j]) / static_cast<float>(c[x]);
        return v;
    }
    if (it->second.count > 0)
        for (size_t i = 0; i < v.size(); ++i)
            v[i] = static_cast<float>(it->second.sum2[i]) / static_cast<float>(it->second.count);
    return v;
}

Result<std::unique_ptr<ImatrixCollector>> ImatrixCollector::create(const Model& model, bool processOutput) {
    std::unique_ptr<ImatrixCollector> c(new ImatrixCollector());
    c->m_processOutput = processOutput;
    auto keep = [&](const std::string& gguf) {
        if (!processOutput && (gguf == "output.weight" || gguf == "token_embd.weight")) return std::string();
        return gguf;
    };
    if (model.format == ModelFormat::Gguf) {
        for (const auto& t : model.tensors) {
            c->m_names[t.name] = keep(t.name);
            if (t.shape.size() == 3 && t.name.find("_exps.") != std::string::npos && t.shape[0] > 0 &&
                t.shape[0] <= 4096)
                for (int64_t x = 0; x < t.shape[0]; ++x)
                    c->m_experts[t.name + "#" + std::to_string(x)] = {t.name, static_cast<int>(x),
                                                                      static_cast<int>(t.shape[0])};
        }
    } else {
        auto plan = planHfToGguf(model);
        if (!plan) return plan.error();
        for (const auto& t : plan->tensors) {
            for (size_t x = 0; x < t.stacked.size(); ++x)
                if (t.stacked[x] < model.tensors.size())
                    c->m_experts[model.tensors[t.stacked[x]].name] = {t.ggufName, static_cast<int>(x),
                                                                      static_cast<int>(t.stacked.size())};
            if (!t.stacked.empty() || t.source >= model.tensors.size()) continue;
            c->m_names[model.tensors[t.source].name] = keep(t.ggufName);
        }
    }
    return c;
}

void ImatrixCollector::add(const std::string& weightName, const float* x, int64_t nTokens, int64_t nIn) {
    if (auto ex = m_experts.find(weightName); ex != m_experts.end()) {
        if (nTokens <= 0 || nIn <= 0) return;
        const ExpertOf& eo = ex->second;
        ImatrixEntry& e = m_data.entries[eo.gguf];
        if (e.sum2.empty()) {
            e.sum2.assign(static_cast<size_t>(nIn) * static_cast<size_t>(eo.nExpert), 0.0);
            e.expertCounts.assign(static_cast<size_t>(eo.nExpert), 0);
        }
        if (e.expertCounts.size() != static_cast<size_t>(eo.nExpert) ||
            e.sum2.size() != static_cast<size_t>(nIn) * e.expertCounts.size()) {
            if (m_error.empty()) m_error = eo.gguf + ": expert input width changed";
            return;
        }
        double* s = e.sum2.data() + static_cast<size_t>(eo.expert) * static_cast<size_t>(nIn);
        for (int64_t t = 0; t < nTokens; ++t) {
            const float* row = x + t * nIn;
            for (int64_t j = 0; j < nIn; ++j) s[j] += static_cast<double>(row[j]) * static_cast<double>(row[j]);
        }
        e.expertCounts[static_cast<size_t>(eo.expert)] += nTokens;
        e.count += nTokens;
        return;
    }
    auto it = m_names.find(weightName);
    std::string name;
    if (it == m_names.end()) {
        // A name the plan does not know (should not happen): keep the model's own name.
        name = weightName;
    } else {
        name = it->second;
    }
    if (name.empty() || nTokens <= 0 || nIn <= 0) return;
    ImatrixEntry& e = m_data.entries[name];
    if (!e.add(x, nTokens, nIn) && m_error.empty())
        m_error = name + ": input width changed from " + std::to_string(e.sum2.size()) + " to " + std::to_string(nIn);
}

LinearObserver ImatrixCollector::observer() {
    return [this](const std::string& name, const float* x, int64_t nTokens, int64_t nIn) {
        add(name, x, nTokens, nIn);
    };
}

Status collectImatrix(Engine& engine, ImatrixCollector& collector, std::span<const int32_t> tokens, int nCtx,
                      int nChunks, bool addBos, int32_t bosId, ProgressFn progress, const calib::LayeredPassParams& pass) {
    if (nCtx < 2) return makeError("imatrix: the context must be at least 2 tokens");
    if (nCtx > engine.nCtxMax())
        return makeError("imatrix: context " + std::to_string(nCtx) + " exceeds the engine's " +
                         std::to_string(engine.nCtxMax()));
    const int64_t avail = static_cast<int64_t>(tokens.size()) / nCtx;
    if (avail < 1)
        return makeError("imatrix: the text has " + std::to_string(tokens.size()) + " tokens, fewer than one chunk of " +
                         std::to_string(nCtx));
    const int chunks = static_cast<int>(nChunks > 0 ? std::min<int64_t>(nChunks, avail) : avail);
    std::vector<std::vector<int32_t>> seqs(static_cast<size_t>(chunks));
    for (int c = 0; c < chunks; ++c) {
        seqs[c].assign(tokens.begin() + static_cast<int64_t>(c) * nCtx, tokens.begin() + static_cast<int64_t>(c + 1) * nCtx);
        if (addBos && bosId >= 0) seqs[c][0] = bosId;
    }
    // The LM head's input is observed only when the collector keeps it, on each chunk's last token.
    calib::LayeredPassParams lp = pass;
    lp.head = collector.wantsOutput() ? calib::HeadInput::LastToken : calib::HeadInput::None;
    auto run = calib::runLayered(engine, seqs, collector.observer(), lp, progress);
    if (!run) return run.error().cancelled ? run.error() : makeError("imatrix: " + run.error().message);
    if (!collector.error().empty()) return makeError("imatrix: " + collector.error());
    collector.data().chunkCount += chunks;
    collector.data().chunkSize = nCtx;
    if (progress) progress({1.0, "done"});
    return okStatus();
}

Result<ImatrixData> computeImatrix(const Model& model, std::string_view text, const ImatrixParams& params,
                                   ProgressFn progress, const WeightOverrides* overrides) {
    auto collector = ImatrixCollector::create(model, params.processOutput);
    if (!collector) return collector.error();
    auto in = tokenizeForPerplexity(model, text);
    if (!in) return in.error();
    EngineOptions opt;
    opt.threads = params.threads;
    opt.overrides = overrides;
    opt.nCtx = params.nCtx;
    ProgressFn loadProgress, runProgress;
    if (progress) {
        loadProgress = [&](const ProgressInfo& p) { return progress({0.1 * p.fraction, "loading " + p.step}); };
        runProgress = [&](const ProgressInfo& p) { return progress({0.1 + 0.9 * p.fraction, p.step}); };
    }
    auto engine = Engine::load(model, opt, loadProgress);
    if (!engine) return engine.error();
    calib::LayeredPassParams pass;
    pass.stateType = params.stateType;
    pass.maxStateMemory = params.maxStateMemory;
    pass.spillDir = params.spillDir;
    if (auto st = collectImatrix(**engine, **collector, in->tokens, params.nCtx, params.nChunks, in->params.addBos,
                                 in->params.bosId, runProgress, pass);
        !st)
        return st.error();
    ImatrixData data = std::move((*collector)->data());
    if (!params.datasetName.empty()) data.datasets.push_back(params.datasetName);
    return data;
}

Status writeImatrixGguf(const ImatrixData& data, const std::string& path) {
    if (data.entries.empty()) return makeError(path + ": the imatrix has no entries");
    GgufWriter w(path);
    if (auto st = w.setKv("general.type", GgufValue::string("imatrix")); !st) return st;
    if (auto st = w.setKv("imatrix.datasets", GgufValue::stringArray(data.datasets)); !st) return st;
    if (auto st = w.setKv("imatrix.chunk_count", GgufValue::u32(static_cast<uint32_t>(data.chunkCount))); !st)
        return st;
    if (auto st = w.setKv("imatrix.chunk_size", GgufValue::u32(static_cast<uint32_t>(data.chunkSize))); !st)
        return st;
    for (const auto& [name, e] : data.entries) {
        const auto nMat = static_cast<int64_t>(e.expertCounts.size());
        if (nMat > 0) {  // experts: ne [nIn, nExpert] and [1, nExpert]
            if (auto st = w.addTensor(name + ".in_sum2", {static_cast<int64_t>(e.sum2.size()) / nMat, nMat},
                                      DType::F32);
                !st)
                return st;
            if (auto st = w.addTensor(name + ".counts", {1, nMat}, DType::F32); !st) return st;
            continue;
        }
        if (auto st = w.addTensor(name + ".in_sum2", {static_cast<int64_t>(e.sum2.size())}, DType::F32); !st)
            return st;
        if (auto st = w.addTensor(name + ".counts", {1}, DType::F32); !st) return st;
    }
    if (auto st = w.begin(); !st) return st;
    for (const auto& [name, e] : data.entries) {
        std::vector<float> s(e.sum2.begin(), e.sum2.end());
        if (auto st = w.writeTensorData({reinterpret_cast<const uint8_t*>(s.data()), s.size() * sizeof(float)}); !st)
            return st;
        if (!e.expertCounts.empty()) {
            std::vector<float> c(e.expertCounts.begin(), e.expertCounts.end());
            if (auto st = w.writeTensorData({reinterpret_cast<const uint8_t*>(c.data()), c.size() * sizeof(float)});
                !st)
                return st;
            continue;
        }
        const float cnt = static_cast<float>(e.count);
        if (auto st = w.writeTensorData({reinterpret_cast<const uint8_t*>(&cnt), sizeof(float)}); !st) return st;
    }
    return w.finish();
}

}  // namespace qz
