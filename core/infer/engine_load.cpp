// Weight loading for qz::Engine: name mapping (HF / GGUF), shape and type checks, overrides, GGUF Q/K
// row order (core/convert/README.md A.5), GPT-2 Conv1D transpose, RoPE frequencies. 2-D weights stay in
// the mapped file as stored (engine_impl.h StoredMatrix); small tensors are widened to F32.
#include <algorithm>
#include <cmath>

#include "infer/engine_impl.h"
#include "infer/ops.h"
#include "model/convert.h"

namespace qz {

namespace {

uint64_t numelOf(const std::vector<int64_t>& shape) {
    uint64_t n = 1;
    for (int64_t d : shape) n *= static_cast<uint64_t>(d);
    return n;
}

Status checkFinite(const std::string& what, std::span<const float> v) {
    for (float x : v)
        if (!std::isfinite(x)) return makeError(what + " contains NaN or Inf");
    return okStatus();
}

struct Loader {
    const Model& model;
    const WeightOverrides* overrides;
    const WeightSources* sources;
    ProgressTracker& progress;
    bool gguf;
    std::unordered_map<std::string, InferWeightSlot>& slots;

    // A Conv1D weight that a transposed source replaces after load (Engine::load): not read now.
    bool transposedSourceFor(const std::string& name) const {
        if (!sources) return false;
        auto it = sources->find(name);
        return it != sources->end() && it->second && it->second->transposed();
    }

    const std::vector<float>* overrideFor(const std::string& name) const {
        if (!overrides) return nullptr;
        auto it = overrides->find(name);
        return it == overrides->end() ? nullptr : &it->second;
    }

    Status checkShape(const TensorInfo* t, const std::string& name, const std::vector<int64_t>& shape) const {
        if (!t || t->shape == shape) return okStatus();
        TensorInfo want;
        want.shape = shape;
        return makeError(model.path + ": tensor " + name + " has shape " + t->shapeString() + ", expected " +
                         want.shapeString());
    }

    // A small tensor as F32 with the given shape (outermost first). Missing: error if required, else an
    // empty vector. Remembered as a slot of its own when present.
    Result<std::vector<float>> get(const std::string& name, std::vector<int64_t> shape, bool required) {
        const TensorInfo* t = model.find(name);
        if (auto st = checkShape(t, name, shape); !st) return st.error();
        const uint64_t numel = numelOf(shape);
        if (const auto* ov = overrideFor(name)) {
            if (ov->size() != numel)
                return makeError("override for " + name + " has " + std::to_string(ov->size()) +
                                 " values, expected " + std::to_string(numel));
            if (auto st = checkFinite("override for " + name, *ov); !st) return st.error();
            if (!progress.advance(1, name)) return cancelledError();
            return *ov;
        }
        if (!t) {
            if (required) return makeError(model.path + ": tensor " + name + " is missing");
            return std::vector<float>();
        }
        auto r = readTensorF32(model, *t);
        if (!r) return r.error();
        if (auto st = checkFinite(model.path + ": tensor " + name, *r); !st) return st.error();
        if (!progress.advance(1, name)) return cancelledError();
        return std::move(r).value();
    }

    void remember(const std::string& name, std::vector<float>& dst, std::vector<int64_t> shape) {
        if (dst.empty()) return;
        InferWeightSlot s;
        s.dst = &dst;
        s.shape = std::move(shape);
        if (const TensorInfo* t = model.find(name); t && !overrideFor(name)) {
            s.srcBytes = model.rawBytes(*t).data();
            s.srcType = t->dtype;
        }
        slots[name] = std::move(s);
    }

    // A 2-D weight [rows][cols] (conv1d: stored [cols][rows], GPT-2's HF Conv1D) into M: a view of the
    // stored bytes, or owned F32 for an override or a Conv1D transpose.
    Status matrix(StoredMatrix& M, const std::string& name, int64_t rows, int64_t cols, bool conv1d,
                  bool required) {
        M = StoredMatrix();
        M.rows = rows;
        M.cols = cols;
        const std::vector<int64_t> shape = conv1d ? std::vector<int64_t>{cols, rows} : std::vector<int64_t>{rows, cols};
        const TensorInfo* t = model.find(name);
        if (auto st = checkShape(t, name, shape); !st) return st;
        InferWeightSlot slot;
        slot.matrix = &M;
        slot.shape = shape;
        slot.conv1d = conv1d;
        if (const auto* ov = overrideFor(name)) {
            if (ov->size() != numelOf(shape))
                return makeError("override for " + name + " has " + std::to_string(ov->size()) +
                                 " values, expected " + std::to_string(numelOf(shape)));
            if (auto st = checkFinite("override for " + name, *ov); !st) return st;
            assignWeight(slot, *ov);
        } else if (!t) {
            if (required) return makeError(model.path + ": tensor " + name + " is missing");
            return okStatus();
        } else if (conv1d && transposedSourceFor(name)) {
            // Its rows come from the source (set right after loading): no F32 copy of the file's values.
        } else if (conv1d) {
            // GPT-2's HF checkpoints only (at most 1.5B parameters): an F32 transposed copy.
            auto r = readTensorF32(model, *t);
            if (!r) return r.error();
            if (auto st = checkFinite(model.path + ": tensor " + name, *r); !st) return st;
            assignWeight(slot, std::move(r).value());
        } else {
            if (!storedTypeSupported(t->dtype))
                return makeError(model.path + ": tensor " + name + " has type " + std::string(dtypeName(t->dtype)) +
                                 ", which the evaluator cannot compute with");
            const auto& tr = traits(t->dtype);
            const auto rowBytes = bytesFor(t->dtype, static_cast<uint64_t>(cols));
            uint64_t total = 0;
            if (cols % tr.blockSize != 0 || !rowBytes ||
                __builtin_mul_overflow(*rowBytes, static_cast<uint64_t>(rows), &total) || total != t->nbytes)
                return makeError(model.path + ": tensor " + name + ": " + std::to_string(t->nbytes) +
                                 " bytes do not hold " + std::to_string(rows) + " rows of " + std::to_string(cols) +
                                 " " + std::string(tr.name) + " values");
            M.type = t->dtype;
            M.view = model.rawBytes(*t).data();
            M.rowStride = static_cast<size_t>(*rowBytes);
        }
        if (t) {
            slot.srcBytes = model.rawBytes(*t).data();
            slot.srcType = t->dtype;
        }
        slots[name] = std::move(slot);
        if (!progress.advance(1, name)) return cancelledError();
        return okStatus();
    }

    // The experts of one kind: HF per-expert tensors [rows][cols] (hfNames[e]), each a matrix of its
    // own, or a GGUF 3-D tensor [nExpert][rows][cols] viewed expert by expert (one slot for the tensor).
    Status experts(std::vector<InferLinear>& out, const std::string& ggufName, const std::vector<std::string>& hfNames,
                   int nExpert, int rows, int cols) {
        out.assign(static_cast<size_t>(nExpert), InferLinear());
        if (!gguf) {
            for (int x = 0; x < nExpert; ++x)
                if (auto st = linear(out[x], hfNames[x], "", cols, rows, false, true, false); !st) return st;
            return okStatus();
        }
        for (int x = 0; x < nExpert; ++x) {
            out[x].name = ggufName + "#" + std::to_string(x);
            out[x].nIn = cols;
            out[x].nOut = rows;
            out[x].w.rows = rows;
            out[x].w.cols = cols;
        }
        const std::vector<int64_t> shape{nExpert, rows, cols};
        const TensorInfo* t = model.find(ggufName);
        if (auto st = checkShape(t, ggufName, shape); !st) return st;
        InferWeightSlot slot;
        slot.shape = shape;
        for (auto& L : out) slot.experts.push_back(&L.w);
        if (const auto* ov = overrideFor(ggufName)) {
            if (ov->size() != numelOf(shape))
                return makeError("override for " + ggufName + " has " + std::to_string(ov->size()) +
                                 " values, expected " + std::to_string(numelOf(shape)));
            if (auto st = checkFinite("override for " + ggufName, *ov); !st) return st;
            assignWeight(slot, *ov);
        } else {
            if (!t) return makeError(model.path + ": tensor " + ggufName + " is missing");
            if (!storedTypeSupported(t->dtype))
                return makeError(model.path + ": tensor " + ggufName + " has type " +
                                 std::string(dtypeName(t->dtype)) + ", which the evaluator cannot compute with");
            const auto& tr = traits(t->dtype);
            const auto rowBytes = bytesFor(t->dtype, static_cast<uint64_t>(cols));
            uint64_t total = 0;
            if (cols % tr.blockSize != 0 || !rowBytes ||
                __builtin_mul_overflow(*rowBytes, static_cast<uint64_t>(rows) * static_cast<uint64_t>(nExpert),
                                       &total) ||
                total != t->nbytes)
                return makeError(model.path + ": tensor " + ggufName + ": " + std::to_string(t->nbytes) +
                                 " bytes do not hold " + std::to_string(nExpert) + " × " + std::to_string(rows) +
                                 " rows of " + std::to_string(cols) + " " + std::string(tr.name) + " values");
            const uint8_t* base = model.rawBytes(*t).data();
            for (int x = 0; x < nExpert; ++x) {
                StoredMatrix& M = out[x].w;
                M.type = t->dtype;
                M.view = base + static_cast<size_t>(*rowBytes) * static_cast<size_t>(rows) * static_cast<size_t>(x);
                M.rowStride = static_cast<size_t>(*rowBytes);
            }
        }
        if (t) {
            slot.srcBytes = model.rawBytes(*t).data();
            slot.srcType = t->dtype;
        }
        slots[ggufName] = std::move(slot);
        if (!progress.advance(1, ggufName)) return cancelledError();
        return okStatus();
    }

    Status linear(InferLinear& L, const std::string& wname, const std::string& bname, int nIn, int nOut,
                  bool conv1d, bool required, bool biasRequired) {
        L.name = wname;
        L.nIn = nIn;
        L.nOut = nOut;
        if (auto st = matrix(L.w, wname, nOut, nIn, conv1d, required); !st) return st;
        if (!bname.empty()) {
            auto b = get(bname, {nOut}, biasRequired);
            if (!b) return b.error();
            L.b = std::move(b).value();
            remember(bname, L.b, {nOut});
        }
        return okStatus();
    }

    Status vec(std::vector<float>& out, const std::string& name, int n, bool required) {
        auto r = get(name, {n}, required);
        if (!r) return r.error();
        out = std::move(r).value();
        remember(name, out, {n});
        return okStatus();
    }
};

// GGUF rows [H][hd/2][2] -> HF rows [H][2][hd/2] (inverse of convert's permute, core/convert/README.md A.5):
// hf_row[h·hd + j·hd/2 + i] = gguf_row[h·hd + 2i + j].
std::vector<int32_t> unpermuteOrder(int rows, int nHeads) {
    std::vector<int32_t> order(static_cast<size_t>(rows));
    const int hd = rows / nHeads;
    for (int h = 0; h < nHeads; ++h)
        for (int i = 0; i < hd / 2; ++i)
            for (int j = 0; j < 2; ++j) order[static_cast<size_t>(h * hd + j * (hd / 2) + i)] = h * hd + 2 * i + j;
    return order;
}

}  // namespace

void assignWeight(const InferWeightSlot& slot, std::vector<float> values) {
    if (slot.conv1d && slot.shape.size() == 2) {  // [in][out] -> [out][in]
        const int64_t nIn = slot.shape[0], nOut = slot.shape[1];
        std::vector<float> t(values.size());
        for (int64_t i = 0; i < nIn; ++i)
            for (int64_t o = 0; o < nOut; ++o) t[static_cast<size_t>(o * nIn + i)] = values[static_cast<size_t>(i * nOut + o)];
        values = std::move(t);
    }
    if (slot.addOne)
        for (float& v : values) v += 1.0f;
    if (!slot.experts.empty()) {  // a GGUF 3-D expert tensor: one owned F32 matrix per expert
        const size_t per = values.size() / slot.experts.size();
        for (size_t x = 0; x < slot.experts.size(); ++x)
            slot.experts[x]->owned.assign(values.begin() + static_cast<std::ptrdiff_t>(x * per),
                                          values.begin() + static_cast<std::ptrdiff_t>((x + 1) * per));
        return;
    }
    if (slot.unpermuteHeads > 0 && slot.dst) {
        const auto order = unpermuteOrder(static_cast<int>(values.size()), slot.unpermuteHeads);
        std::vector<float> t(values.size());
        for (size_t i = 0; i < t.size(); ++i) t[i] = values[static_cast<size_t>(order[i])];
        values = std::move(t);
    }
    if (slot.matrix) {
        slot.matrix->owned = std::move(values);
        slot.matrix->source.reset();
    } else if (slot.dst)
        *slot.dst = std::move(values);
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
    e.tokEmbdName = g ? "token_embd.weight" : hp.hfPrefix + "embed_tokens.weight";
    QZ_TRY(ld.matrix(e.tokEmbd, e.tokEmbdName, hp.nVocab, hp.nEmbd, false, true));
    QZ_TRY(ld.vec(e.outNorm, g ? "output_norm.weight" : hp.hfPrefix + "norm.weight", hp.nEmbd, true));
    QZ_TRY(ld.linear(e.output, g ? "output.weight" : hp.hfHead, "", hp.nEmbd, hp.nVocab, false, false, false));
    if (!e.output.present()) e.output.name = e.tokEmbdName;

    e.layers.resize(hp.nLayer);
    const std::string hfMoe = hp.archName == "mixtral" ? "block_sparse_moe." : "mlp.";
    for (int l = 0; l < hp.nLayer; ++l) {
        InferLayer& L = e.layers[l];
        const std::string p = g ? "blk." + std::to_string(l) + "." : hp.hfPrefix + "layers." + std::to_string(l) + ".";
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
            QZ_TRY(ld.experts(L.gateExps, p + "ffn_gate_exps.weight", hg, E, F, hp.nEmbd));
            QZ_TRY(ld.experts(L.upExps, p + "ffn_up_exps.weight", hu, E, F, hp.nEmbd));
            QZ_TRY(ld.experts(L.downExps, p + "ffn_down_exps.weight", hd, E, hp.nEmbd, F));
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
                assignWeight(it->second, *it->second.dst);
            }
        }
        if (g && !hp.neoxGguf && !hp.fused) {
            // ggml's RoPE pairs adjacent rows for llama: undo convert's permute so rotate-half applies.
            // (The other families' GGUFs keep HF's layout: llama.cpp runs them with NEOX = rotate-half RoPE.)
            // The weights stay as stored: their outputs are read in HF's order (InferLinear::rowOrder).
            for (auto [lin, heads] : {std::pair{&L.q, hp.nHead}, std::pair{&L.k, hp.nHeadKv}}) {
                lin->rowOrder = unpermuteOrder(lin->nOut, heads);
                auto it = ld.slots.find(n(lin == &L.q ? "attn_q.bias" : "attn_k.bias", ""));
                if (it == ld.slots.end()) continue;  // absent bias
                it->second.unpermuteHeads = heads;
                assignWeight(it->second, *it->second.dst);
            }
        }
    }
    if (hp.gemma && !g) {
        auto it = ld.slots.find(hp.hfPrefix + "norm.weight");
        if (it != ld.slots.end()) {
            it->second.addOne = true;
            assignWeight(it->second, *it->second.dst);
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
    e.tokEmbdName = g ? "token_embd.weight" : pre + "wte.weight";
    QZ_TRY(ld.matrix(e.tokEmbd, e.tokEmbdName, hp.nVocab, hp.nEmbd, false, true));
    {
        const std::string posName = g ? "position_embd.weight" : pre + "wpe.weight";
        auto pr = ld.get(posName, {hp.nCtxTrain, hp.nEmbd}, true);
        if (!pr) return pr.error();
        e.posEmbd = std::move(pr).value();
        ld.remember(posName, e.posEmbd, {hp.nCtxTrain, hp.nEmbd});
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
    Loader ld{model, options.overrides, options.sources, tracker, model.format == ModelFormat::Gguf, impl.slots};
    try {
        return hp.arch == InferArch::Gpt2 ? loadGpt2(ld, impl) : loadLlama(ld, impl);
    } catch (const std::bad_alloc&) {
        return makeError(model.path + ": not enough memory to load the model");
    }
}

}  // namespace qz
