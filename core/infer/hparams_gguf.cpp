// Hyper-parameters from GGUF metadata (core/gguf/README.md A.2, core/tokenizer/README.md A.3).
#include <cmath>

#include "gguf/gguf_file.h"
#include "gguf/gguf_reader.h"
#include "infer/hparams.h"

namespace qz {

namespace {

Status need(const GgufFile& f, const std::string& key, int64_t lo, int64_t hi, int& out, int def = -1) {
    const GgufValue* v = f.find(key);
    if (!v) {
        if (def < 0) return makeError(f.path + ": GGUF key " + key + " is missing");
        out = def;
        return okStatus();
    }
    auto i = v->toInt();
    if (!i) return makeError(f.path + ": GGUF key " + key + " is not an integer");
    if (*i < lo || *i > hi) return makeError(f.path + ": GGUF key " + key + " = " + std::to_string(*i) + " out of range");
    out = static_cast<int>(*i);
    return okStatus();
}

Status real(const GgufFile& f, const std::string& key, float def, float& out) {
    const GgufValue* v = f.find(key);
    if (!v) {
        out = def;
        return okStatus();
    }
    auto d = v->toDouble();
    if (!d || !std::isfinite(*d)) return makeError(f.path + ": GGUF key " + key + " is not a finite number");
    out = static_cast<float>(*d);
    return okStatus();
}

#define QZ_TRY(expr)                  \
    do {                              \
        auto _st = (expr);            \
        if (!_st) return _st.error(); \
    } while (0)

// The newer families' keys, read as llama.cpp's loader reads them (core/infer/README.md).
Status readFamilyGguf(const GgufFile& f, const std::string& arch, const std::string& path, InferHParams& hp) {
    const std::string a = arch + ".";
    hp.qkNorm = arch == "qwen3" || arch == "qwen3moe" || arch == "gemma3";
    hp.neoxGguf = arch != "llama" && arch != "mistral";  // llama.cpp runs these with NEOX RoPE
    hp.fused = arch == "phi3";
    if (f.find(a + "expert_count")) {
        QZ_TRY(need(f, a + "expert_count", 0, 4096, hp.nExpert));
        if (hp.nExpert > 0) {
            QZ_TRY(need(f, a + "expert_used_count", 1, hp.nExpert, hp.nExpertUsed));
            // qwen3moe: the experts' width; llama (Mixtral): feed_forward_length is the experts' width.
            QZ_TRY(need(f, a + "expert_feed_forward_length", 1, 4 << 20, hp.nFfExpert, hp.nFf));
            hp.expertNormTopK = true;  // llama.cpp renormalises for llama (Mixtral) and qwen3moe
        }
    }
    if (arch == "qwen3moe" && hp.nExpert == 0) return makeError(path + ": qwen3moe without expert_count");
    if (arch == "gemma2" || arch == "gemma3") {
        hp.gemma = true;
        // llama.cpp's scale: 1/sqrt(n_embd/n_head) for the 27B models (46 resp. 62 layers), else
        // 1/sqrt(key_length) (src/llama-model.cpp, LLM_ARCH_GEMMA2 / GEMMA3 hyper-parameters).
        const bool big = (arch == "gemma2" && hp.nLayer == 46) || (arch == "gemma3" && hp.nLayer == 62);
        hp.attnScale = 1.0f / std::sqrt(static_cast<float>(big ? hp.nEmbd / hp.nHead : hp.headDim));
        QZ_TRY(real(f, a + "final_logit_softcapping", 0.0f, hp.finalSoftcap));
        if (arch == "gemma2") QZ_TRY(real(f, a + "attn_logit_softcapping", 0.0f, hp.attnSoftcap));
        if (hp.finalSoftcap < 0 || hp.attnSoftcap < 0) return makeError(path + ": negative soft-capping");
        // Absent: llama.cpp's gemma2 defaults to 4096 (src/models/gemma2.cpp load_arch_hparams), gemma3 to none.
        QZ_TRY(need(f, a + "attention.sliding_window", 0, 1 << 24, hp.slidingWindow, arch == "gemma2" ? 4096 : 0));
        if (hp.slidingWindow > 0) {
            // llama.cpp's layer patterns: gemma2 every 2nd, gemma3 5 of every 6 layers slide.
            const int pattern = arch == "gemma2" ? 2 : 6;
            hp.layerSliding.assign(hp.nLayer, 0);
            for (int l = 0; l < hp.nLayer; ++l) hp.layerSliding[l] = l % pattern < pattern - 1;
        }
        if (arch == "gemma3") {
            QZ_TRY(real(f, a + "rope.freq_base_swa", 10000.0f, hp.ropeThetaSwa));
            if (!(hp.ropeThetaSwa > 0)) return makeError(path + ": rope.freq_base_swa must be > 0");
        }
    }
    return okStatus();
}

}  // namespace

Result<InferHParams> readInferHParamsGguf(const Model& model) {
    std::shared_ptr<const GgufFile> own;
    const GgufFile* fp = ggufOf(model);
    if (!fp) {  // a Model built by hand: parse the file itself
        auto fr = GgufFile::open(model.path);
        if (!fr) return fr.error();
        own = *fr;
        fp = own.get();
    }
    const GgufFile& f = *fp;
    auto arch = f.getString("general.architecture");
    if (!arch) return makeError(model.path + ": GGUF has no general.architecture");
    InferHParams hp;
    hp.archName = *arch;
    const std::string a = *arch + ".";
    constexpr int kMax = 1 << 20;
    if (*arch == "gpt2") {
        hp.arch = InferArch::Gpt2;
    } else if (*arch == "llama" || *arch == "mistral" || *arch == "qwen2" || *arch == "qwen3" ||
               *arch == "qwen3moe" || *arch == "gemma2" || *arch == "gemma3" || *arch == "phi3") {
        hp.arch = InferArch::Llama;
    } else {
        return makeError(model.path + ": architecture \"" + *arch + "\" is not supported by the evaluator (" +
                         std::string(kEngineArchs) + " are)");
    }
    QZ_TRY(need(f, a + "embedding_length", 1, kMax, hp.nEmbd));
    QZ_TRY(need(f, a + "block_count", 1, 4096, hp.nLayer));
    QZ_TRY(need(f, a + "feed_forward_length", 1, 4 * kMax, hp.nFf));
    QZ_TRY(need(f, a + "attention.head_count", 1, 4096, hp.nHead));
    QZ_TRY(need(f, a + "attention.head_count_kv", 1, 4096, hp.nHeadKv, hp.nHead));
    QZ_TRY(need(f, a + "context_length", 1, 1 << 24, hp.nCtxTrain));
    if (hp.nHead % hp.nHeadKv != 0) return makeError(model.path + ": attention heads not a multiple of KV heads");
    int hd = 0;
    QZ_TRY(need(f, a + "attention.key_length", 1, 65536, hd, 0));
    if (hd == 0) {
        if (hp.nEmbd % hp.nHead != 0) return makeError(model.path + ": embedding length not a multiple of heads");
        hd = hp.nEmbd / hp.nHead;
    }
    hp.headDim = hd;
    if (hp.arch == InferArch::Gpt2) {
        if (hd * hp.nHead != hp.nEmbd) return makeError(model.path + ": GPT-2 head size mismatch");
        QZ_TRY(real(f, a + "attention.layer_norm_epsilon", 1e-5f, hp.normEps));
        hp.nRot = 0;
    } else {
        QZ_TRY(real(f, a + "attention.layer_norm_rms_epsilon", 1e-5f, hp.normEps));
        QZ_TRY(real(f, a + "rope.freq_base", 10000.0f, hp.ropeTheta));
        QZ_TRY(need(f, a + "rope.dimension_count", 2, hd, hp.nRot, hd));
        if (hp.nRot != hd && *arch != "phi3")
            return makeError(model.path + ": partial rotary embeddings are not supported");
        if (hp.nRot % 2 != 0) return makeError(model.path + ": odd rotary dimension");
        if (auto st = f.getString(a + "rope.scaling.type"); st && *st != "none") {
            if (*st != "linear") return makeError(model.path + ": rope scaling \"" + *st + "\" is not supported");
            float factor = 1.0f;
            QZ_TRY(real(f, a + "rope.scaling.factor", 1.0f, factor));
            if (!(factor > 0)) return makeError(model.path + ": rope scaling factor must be > 0");
            hp.ropeLinearScale = factor;
        }
    }
    if (hp.arch == InferArch::Llama) QZ_TRY(readFamilyGguf(f, *arch, model.path, hp));
    int bos = -1;
    QZ_TRY(need(f, "tokenizer.ggml.bos_token_id", 0, 1 << 26, bos, 0));
    hp.bosId = f.find("tokenizer.ggml.bos_token_id") ? bos : -1;
    const std::string tokModel = f.getString("tokenizer.ggml.model").value_or("");
    // llama.cpp: add_bos_token if present, else true for SPM ("llama") vocabularies.
    hp.addBos = f.getBool("tokenizer.ggml.add_bos_token").value_or(tokModel == "llama");

    const TensorInfo* emb = model.find("token_embd.weight");
    if (!emb || emb->shape.size() != 2 || emb->shape[1] != hp.nEmbd || emb->shape[0] < 1 ||
        emb->shape[0] > (1 << 24))
        return makeError(model.path + ": token_embd.weight missing or of the wrong shape");
    hp.nVocab = static_cast<int>(emb->shape[0]);
    return hp;
}

}  // namespace qz
