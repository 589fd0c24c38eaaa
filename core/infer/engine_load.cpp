// Weight loading for qz::Engine: name mapping (HF / GGUF), shape checks, overrides, GGUF Q/K
// un-permute (core/convert/README.md A.5), GPT-2 Conv1D transpose, RoPE frequencies.
#include <algorithm>
#include <cmath>

#include "infer/engine_impl.h"
#include "infer/ops.h"

namespace qz {

namespace {

struct Loader {
    const Model& model;
    const WeightOverrides* overrides;
    ProgressTracker& progress;
    bool gguf;
    std::unordered_map<std::string, InferWeightSlot>& slots;

    void remember(const std::string& name, std::vector<float>& dst, std::vector<int64_t> shape, bool conv1d) {
        if (dst.empty()) return;
        InferWeightSlot s;
        s.dst = &dst;
        s.shape = std::move(shape);
        s.conv1d = conv1d;
        slots[name] = std::move(s);
    }

    // Fetches a tensor as F32 with the given shape (outermost first). Missing: error if required, else
    // an empty vector.
    Result<std::vector<float>> get(const std::string& name, std::vector<int64_t> shape, bool required) {
        const TensorInfo* t = model.find(name);
        uint64_t numel = 1;
        for (int64_t d : shape) numel *= static_cast<uint64_t>(d);
        if (overrides) {
            auto it = overrides->find(name);
            if (it != overrides->end()) {
                if (t && t->shape != shape)
                    return makeError(model.path + ": tensor " + name + " has shape " + t->shapeString() +
                                     ", the evaluator expects another shape");
                if (it->second.size() != numel)
                    return makeError("override for " + name + " has " + std::to_string(it->second.size()) +
                                     " values, expected " + std::to_string(numel));
                if (!progress.advance(1, name)) return cancelledError();
                return it->second;
            }
        }
        if (!t) {
            if (required) return makeError(model.path + ": tensor " + name + " is missing");
            return std::vector<float>();
        }
        if (t->shape != shape) {
            TensorInfo want;
            want.shape = shape;
            return makeError(model.path + ": tensor " + name + " has shape " + t->shapeString() +
                             ", expected " + want.shapeString());
        }
        auto r = readTensorF32(model, *t);
        if (!r) return r.error();
        for (float v : *r)
            if (!std::isfinite(v)) return makeError(model.path + ": tensor " + name + " contains NaN or Inf");
        if (!progress.advance(1, name)) return cancelledError();
        return std::move(r).value();
    }

    Status linear(InferLinear& L, const std::string& wname, const std::string& bname, int nIn, int nOut,
                  bool conv1d, bool required, bool biasRequired) {
        L.name = wname;
        L.nIn = nIn;
        L.nOut = nOut;
        auto w = conv1d ? get(wname, {nIn, nOut}, required) : get(wname, {nOut, nIn}, required);
        if (!w) return w.error();
        L.w = std::move(w).value();
        remember(wname, L.w, conv1d ? std::vector<int64_t>{nIn, nOut} : std::vector<int64_t>{nOut, nIn}, conv1d);
        if (conv1d && !L.w.empty()) applyWeightTransforms(slots[wname], L.w);
        if (!bname.empty()) {
            auto b = get(bname, {nOut}, biasRequired);
            if (!b) return b.error();
            L.b = std::move(b).value();
            remember(bname, L.b, {nOut}, false);
        }
        return okStatus();
    }

    // Experts of one kind stacked into L (rows e·rows .. of a [nExpert·rows][cols] matrix): a GGUF
    // 3-D tensor [nExpert][rows][cols] as it is, or the HF per-expert tensors [rows][cols] (names[e]).
    Status experts(InferLinear& L, std::vector<std::string>& observed, const std::string& ggufName,
                   const std::vector<std::string>& hfNames, int nExpert, int rows, int cols) {
        L.nIn = cols;
        L.nOut = nExpert * rows;
        observed.clear();
        if (gguf) {
            L.name = ggufName;
            auto w = get(ggufName, {nExpert, rows, cols}, true);
            if (!w) return w.error();
            L.w = std::move(w).value();
            remember(ggufName, L.w, {nExpert, rows, cols}, false);
            for (int e = 0; e < nExpert; ++e) observed.push_back(ggufName + "#" + std::to_string(e));
            return okStatus();
        }
        const size_t per = static_cast<size_t>(rows) * static_cast<size_t>(cols);
        L.name = hfNames.empty() ? std::string() : hfNames[0];
        L.w.assign(per * static_cast<size_t>(nExpert), 0.0f);
        for (int e = 0; e < nExpert; ++e) {
            auto w = get(hfNames[e], {rows, cols}, true);
            if (!w) return w.error();
            std::copy(w->begin(), w->end(), L.w.begin() + static_cast<std::ptrdiff_t>(per * e));
            InferWeightSlot sl;
            sl.dst = &L.w;
            sl.shape = {rows, cols};
            sl.offset = per * static_cast<size_t>(e);
            slots[hfNames[e]] = std::move(sl);
            observed.push_back(hfNames[e]);
        }
        return okStatus();
    }

    Status vec(std::vector<float>& out, const std::string& name, int n, bool required) {
        auto r = get(name, {n}, required);
        if (!r) return r.error();
        out = std::move(r).value();
        remember(name, out, {n}, false);
        return okStatus();
    }
};

// GGUF rows [H][hd/2][2] -> HF rows [H][2][hd/2] (inverse of convert's permute, core/convert/README.md A.5):
// hf_row[h·hd + j·hd/2 + i] = gguf_row[h·hd + 2i + j].
void unpermuteRows(std::vector<float>& data, int rows, int cols, int nHeads) {
    if (data.empty()) return;
    const int hd = rows / nHeads;
    std::vector<float> out(data.size());
    for (int h = 0; h < nHeads; ++h)
        for (int i = 0; i < hd / 2; ++i)
            for (int j = 0; j < 2; ++j) {
                const size_t src = static_cast<size_t>(h * hd + 2 * i + j) * cols;
                const size_t dst = static_cast<size_t>(h * hd + j * (hd / 2) + i) * cols;
                std::copy_n(data.begin() + src, cols, out.begin() + dst);
            }
    data = std::move(out);
}

}  // namespace

void applyWeightTransforms(const InferWeightSlot& slot, std::vector<float>& values) {
    if (values.empty()) return;
    if (slot.conv1d && slot.shape.size() == 2) {  // [in][out] -> [out][in]
        const int64_t nIn = slot.shape[0], nOut = slot.shape[1];
        std::vector<float> t(values.size());
        for (int64_t i = 0; i < nIn; ++i)
            for (int64_t o = 0; o < nOut; ++o) t[static_cast<size_t>(o * nIn + i)] = values[static_cast<size_t>(i * nOut + o)];
        values = std::move(t);
    }
    if (slot.addOne)
        for (float& v : values) v += 1.0f;
    if (slot.unpermuteHeads > 0) {
        const int rows = static_cast<int>(slot.shape[0]);
        const int cols = slot.shape.size() == 2 ? static_cast<int>(slot.shape[1]) : 1;
        unpermuteRows(values, rows, cols, slot.unpermuteHeads);
    }
}

namespace {

#define QZ_TRY(expr)                  \
    do {                              \
        auto _st = (expr);            \
        if (!_st) return _st.error(); \
    } while (0)

Status loadLlama(Loader& ld, Engine::Impl& e) {
    const auto& hp = e.hp;
    const int nq = hp.nHead * hp.headDim, nkv = hp.nHeadKv * hp.headDim;
    const bool g = ld.gguf;
    {
        auto r = ld.get(g ? "token_embd.weight" : "model.embed_tokens.weight", {hp.nVocab, hp.nEmbd}, true);
        if (!r) return r.error();
        e.tokEmbd = std::move(r).value();
        e.tokEmbdName = g ? "token_embd.weight" : "model.embed_tokens.weight";
        ld.remember(e.tokEmbdName, e.tokEmbd, {hp.nVocab, hp.nEmbd}, false);
    }
    QZ_TRY(ld.vec(e.outNorm, g ? "output_norm.weight" : "model.norm.weight", hp.nEmbd, true));
    QZ_TRY(ld.linear(e.output, g ? "output.weight" : "lm_head.weight", "", hp.nEmbd, hp.nVocab, false, false, false));
    if (!e.output.present()) e.output.name = e.tokEmbdName;

    e.layers.resize(hp.nLayer);
    const std::string hfMoe = hp.archName == "mixtral" ? "block_sparse_moe." : "mlp.";
    for (int l = 0; l < hp.nLayer; ++l) {
        InferLayer& L = e.layers[l];
        const std::string p = g ? "blk." + std::to_string(l) + "." : "model.layers." + std::to_string(l) + ".";
        auto n = [&](const char* gg, const char* hf) { return p + (g ? gg : hf); };
        QZ_TRY(ld.vec(L.attnNorm, n("attn_norm.weight", "input_layernorm.weight"), hp.nEmbd, true));
        if (hp.gemma) {
            QZ_TRY(ld.vec(L.postAttnNorm, n("post_attention_norm.weight", "post_attention_layernorm.weight"),
                          hp.nEmbd, true));
            QZ_TRY(ld.vec(L.ffnNorm, n("ffn_norm.weight", "pre_feedforward_layernorm.weight"), hp.nEmbd, true));
            QZ_TRY(ld.vec(L.postFfnNorm, n("post_ffw_norm.weight", "post_feedforward_layernorm.weight"), hp.nEmbd,
                          true));
        } else {
            QZ_TRY(ld.vec(L.ffnNorm, n("ffn_norm.weight", "post_attention_layernorm.weight"), hp.nEmbd, true));
        }
        if (hp.qkNorm) {
            QZ_TRY(ld.vec(L.qNorm, n("attn_q_norm.weight", "self_attn.q_norm.weight"), hp.headDim, true));
            QZ_TRY(ld.vec(L.kNorm, n("attn_k_norm.weight", "self_attn.k_norm.weight"), hp.headDim, true));
        }
        if (hp.fused) {
            QZ_TRY(ld.linear(L.qkv, n("attn_qkv.weight", "self_attn.qkv_proj.weight"), "", hp.nEmbd, nq + 2 * nkv,
                             false, true, false));
        } else {
            QZ_TRY(ld.linear(L.q, n("attn_q.weight", "self_attn.q_proj.weight"),
                             n("attn_q.bias", "self_attn.q_proj.bias"), hp.nEmbd, nq, false, true, false));
            QZ_TRY(ld.linear(L.k, n("attn_k.weight", "self_attn.k_proj.weight"),
                             n("attn_k.bias", "self_attn.k_proj.bias"), hp.nEmbd, nkv, false, true, false));
            QZ_TRY(ld.linear(L.v, n("attn_v.weight", "self_attn.v_proj.weight"),
                             n("attn_v.bias", "self_attn.v_proj.bias"), hp.nEmbd, nkv, false, true, false));
        }
        QZ_TRY(ld.linear(L.o, n("attn_output.weight", "self_attn.o_proj.weight"),
                         n("attn_output.bias", "self_attn.o_proj.bias"), nq, hp.nEmbd, false, true, false));
        if (hp.nExpert > 0) {
            const int E = hp.nExpert, F = hp.nFfExpert;
            QZ_TRY(ld.linear(L.router, g ? p + "ffn_gate_inp.weight" : p + hfMoe + "gate.weight", "", hp.nEmbd, E,
                             false, true, false));
            std::vector<std::string> hg, hu, hd;
            for (int x = 0; x < E && !g; ++x) {
                const std::string ex = p + hfMoe + "experts." + std::to_string(x) + ".";
                const bool mx = hp.archName == "mixtral";
                hg.push_back(ex + (mx ? "w1.weight" : "gate_proj.weight"));
                hu.push_back(ex + (mx ? "w3.weight" : "up_proj.weight"));
                hd.push_back(ex + (mx ? "w2.weight" : "down_proj.weight"));
            }
            QZ_TRY(ld.experts(L.gateExps, L.gateExpNames, p + "ffn_gate_exps.weight", hg, E, F, hp.nEmbd));
            QZ_TRY(ld.experts(L.upExps, L.upExpNames, p + "ffn_up_exps.weight", hu, E, F, hp.nEmbd));
            QZ_TRY(ld.experts(L.downExps, L.downExpNames, p + "ffn_down_exps.weight", hd, E, hp.nEmbd, F));
        } else if (hp.fused) {
            QZ_TRY(ld.linear(L.up, n("ffn_up.weight", "mlp.gate_up_proj.weight"), "", hp.nEmbd, 2 * hp.nFf, false,
                             true, false));
            QZ_TRY(ld.linear(L.down, n("ffn_down.weight", "mlp.down_proj.weight"), "", hp.nFf, hp.nEmbd, false,
                             true, false));
        } else {
            QZ_TRY(ld.linear(L.gate, n("ffn_gate.weight", "mlp.gate_proj.weight"),
                             n("ffn_gate.bias", "mlp.gate_proj.bias"), hp.nEmbd, hp.nFf, false, true, false));
            QZ_TRY(ld.linear(L.up, n("ffn_up.weight", "mlp.up_proj.weight"), n("ffn_up.bias", "mlp.up_proj.bias"),
                             hp.nEmbd, hp.nFf, false, true, false));
            QZ_TRY(ld.linear(L.down, n("ffn_down.weight", "mlp.down_proj.weight"),
                             n("ffn_down.bias", "mlp.down_proj.bias"), hp.nFf, hp.nEmbd, false, true, false));
        }
        if (hp.gemma && !g) {
            // HF Gemma multiplies by 1 + w (core/convert/README.md B); the engine holds 1 + w as a GGUF does.
            for (const char* nm : {"input_layernorm.weight", "post_attention_layernorm.weight",
                                   "pre_feedforward_layernorm.weight", "post_feedforward_layernorm.weight",
                                   "self_attn.q_norm.weight", "self_attn.k_norm.weight"}) {
                auto it = ld.slots.find(p + nm);
                if (it == ld.slots.end()) continue;
                it->second.addOne = true;
                applyWeightTransforms(it->second, *it->second.dst);
            }
        }
        if (g && !hp.neoxGguf && !hp.fused) {
            // ggml's RoPE pairs adjacent rows for llama: undo convert's permute so rotate-half applies.
            // (The other families' GGUFs keep HF's layout: llama.cpp runs them with NEOX = rotate-half RoPE.)
            for (auto [lin, heads] : {std::pair{&L.q, hp.nHead}, std::pair{&L.k, hp.nHeadKv}}) {
                for (const std::string& nm : {lin->name, n(lin == &L.q ? "attn_q.bias" : "attn_k.bias", "")}) {
                    auto it = ld.slots.find(nm);
                    if (it == ld.slots.end()) continue;  // absent bias
                    it->second.unpermuteHeads = heads;
                    applyWeightTransforms(it->second, *it->second.dst);
                }
            }
        }
    }
    if (hp.gemma && !g) {
        auto it = ld.slots.find("model.norm.weight");
        if (it != ld.slots.end()) {
            it->second.addOne = true;
            applyWeightTransforms(it->second, *it->second.dst);
        }
    }

    // RoPE frequencies (infer/ops.h).
    const int half = hp.nRot / 2;
    e.ropeInvFreq = ropeBaseFrequencies(hp);
    std::vector<float> factors;
    if (g) {
        auto r = ld.get("rope_freqs.weight", {half}, false);
        if (!r) return r.error();
        factors = std::move(r).value();
    } else {
        factors = llama3RopeFactors(hp, e.ropeInvFreq);
    }
    for (int i = 0; i < half && !factors.empty(); ++i) {
        if (!(factors[i] > 0)) return makeError(ld.model.path + ": rope frequency factors must be positive");
        e.ropeInvFreq[i] /= factors[i];
    }
    if (hp.ropeThetaSwa > 0) {  // gemma3's sliding layers: the local base, no scaling
        InferHParams local = hp;
        local.ropeTheta = hp.ropeThetaSwa;
        e.ropeInvFreqSwa = ropeBaseFrequencies(local);
    }
    return okStatus();
}

Status loadGpt2(Loader& ld, Engine::Impl& e) {
    const auto& hp = e.hp;
    const bool g = ld.gguf;
    std::string pre;
    if (!g) pre = ld.model.find("transformer.wte.weight") ? "transformer." : "";
    {
        e.tokEmbdName = g ? "token_embd.weight" : pre + "wte.weight";
        auto r = ld.get(e.tokEmbdName, {hp.nVocab, hp.nEmbd}, true);
        if (!r) return r.error();
        e.tokEmbd = std::move(r).value();
        ld.remember(e.tokEmbdName, e.tokEmbd, {hp.nVocab, hp.nEmbd}, false);
        auto pr = ld.get(g ? "position_embd.weight" : pre + "wpe.weight", {hp.nCtxTrain, hp.nEmbd}, true);
        if (!pr) return pr.error();
        e.posEmbd = std::move(pr).value();
        ld.remember(g ? "position_embd.weight" : pre + "wpe.weight", e.posEmbd, {hp.nCtxTrain, hp.nEmbd}, false);
    }
    QZ_TRY(ld.vec(e.outNorm, g ? "output_norm.weight" : pre + "ln_f.weight", hp.nEmbd, true));
    QZ_TRY(ld.vec(e.outNormB, g ? "output_norm.bias" : pre + "ln_f.bias", hp.nEmbd, true));
    if (g) QZ_TRY(ld.linear(e.output, "output.weight", "", hp.nEmbd, hp.nVocab, false, false, false));
    if (!e.output.present()) e.output.name = e.tokEmbdName;

    e.layers.resize(hp.nLayer);
    const int d = hp.nEmbd;
    for (int l = 0; l < hp.nLayer; ++l) {
        InferLayer& L = e.layers[l];
        const std::string p = g ? "blk." + std::to_string(l) + "." : pre + "h." + std::to_string(l) + ".";
        auto n = [&](const char* gg, const char* hf) { return p + (g ? gg : hf); };
        QZ_TRY(ld.vec(L.attnNorm, n("attn_norm.weight", "ln_1.weight"), d, true));
        QZ_TRY(ld.vec(L.attnNormB, n("attn_norm.bias", "ln_1.bias"), d, true));
        QZ_TRY(ld.vec(L.ffnNorm, n("ffn_norm.weight", "ln_2.weight"), d, true));
        QZ_TRY(ld.vec(L.ffnNormB, n("ffn_norm.bias", "ln_2.bias"), d, true));
        const bool conv = !g;
        QZ_TRY(ld.linear(L.qkv, n("attn_qkv.weight", "attn.c_attn.weight"), n("attn_qkv.bias", "attn.c_attn.bias"),
                         d, 3 * d, conv, true, true));
        QZ_TRY(ld.linear(L.o, n("attn_output.weight", "attn.c_proj.weight"), n("attn_output.bias", "attn.c_proj.bias"),
                         d, d, conv, true, true));
        QZ_TRY(ld.linear(L.up, n("ffn_up.weight", "mlp.c_fc.weight"), n("ffn_up.bias", "mlp.c_fc.bias"),
                         d, hp.nFf, conv, true, true));
        QZ_TRY(ld.linear(L.down, n("ffn_down.weight", "mlp.c_proj.weight"), n("ffn_down.bias", "mlp.c_proj.bias"),
                         hp.nFf, d, conv, true, true));
    }
    return okStatus();
}

}  // namespace

Status loadEngineWeights(const Model& model, const EngineOptions& options, ProgressFn progress,
                         Engine::Impl& impl) {
    const auto& hp = impl.hp;
    // Rough unit count for progress: one per tensor read.
    const bool hfExperts = hp.nExpert > 0 && model.format != ModelFormat::Gguf;
    const double units = 4.0 + static_cast<double>(hp.nLayer) * (13.0 + (hfExperts ? 3.0 * hp.nExpert : 0.0));
    ProgressTracker tracker(std::move(progress), units);
    Loader ld{model, options.overrides, tracker, model.format == ModelFormat::Gguf, impl.slots};
    try {
        return hp.arch == InferArch::Gpt2 ? loadGpt2(ld, impl) : loadLlama(ld, impl);
    } catch (const std::bad_alloc&) {
        return makeError(model.path + ": not enough memory to hold the weights as F32");
    }
}

}  // namespace qz
