// llama-quantize's per-tensor type selection, written from README.md C (LCnew behaviour), see mixes.h.
#include "ggml/mixes.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <numeric>
#include <regex>

namespace qz::ggml {

namespace {

using FT = FileType;

constexpr FileTypeInfo kFileTypes[] = {
    {FT::MOSTLY_Q4_0, "Q4_0", DType::Q4_0},         {FT::MOSTLY_Q4_1, "Q4_1", DType::Q4_1},
    {FT::MOSTLY_MXFP4_MOE, "MXFP4_MOE", DType::MXFP4}, {FT::MOSTLY_Q5_0, "Q5_0", DType::Q5_0},
    {FT::MOSTLY_Q5_1, "Q5_1", DType::Q5_1},         {FT::MOSTLY_IQ2_XXS, "IQ2_XXS", DType::IQ2_XXS},
    {FT::MOSTLY_IQ2_XS, "IQ2_XS", DType::IQ2_XS},   {FT::MOSTLY_IQ2_S, "IQ2_S", DType::IQ2_XS},
    {FT::MOSTLY_IQ2_M, "IQ2_M", DType::IQ2_S},      {FT::MOSTLY_IQ1_S, "IQ1_S", DType::IQ1_S},
    {FT::MOSTLY_IQ1_M, "IQ1_M", DType::IQ1_M},      {FT::MOSTLY_TQ1_0, "TQ1_0", DType::TQ1_0},
    {FT::MOSTLY_TQ2_0, "TQ2_0", DType::TQ2_0},      {FT::MOSTLY_Q2_K, "Q2_K", DType::Q2_K},
    {FT::MOSTLY_Q2_K_S, "Q2_K_S", DType::Q2_K},     {FT::MOSTLY_IQ3_XXS, "IQ3_XXS", DType::IQ3_XXS},
    {FT::MOSTLY_IQ3_S, "IQ3_S", DType::IQ3_S},      {FT::MOSTLY_IQ3_M, "IQ3_M", DType::IQ3_S},
    {FT::MOSTLY_IQ3_XS, "IQ3_XS", DType::IQ3_S},    {FT::MOSTLY_Q3_K_S, "Q3_K_S", DType::Q3_K},
    {FT::MOSTLY_Q3_K_M, "Q3_K_M", DType::Q3_K},     {FT::MOSTLY_Q3_K_L, "Q3_K_L", DType::Q3_K},
    {FT::MOSTLY_IQ4_NL, "IQ4_NL", DType::IQ4_NL},   {FT::MOSTLY_IQ4_XS, "IQ4_XS", DType::IQ4_XS},
    {FT::MOSTLY_Q4_K_S, "Q4_K_S", DType::Q4_K},     {FT::MOSTLY_Q4_K_M, "Q4_K_M", DType::Q4_K},
    {FT::MOSTLY_Q5_K_S, "Q5_K_S", DType::Q5_K},     {FT::MOSTLY_Q5_K_M, "Q5_K_M", DType::Q5_K},
    {FT::MOSTLY_Q6_K, "Q6_K", DType::Q6_K},         {FT::MOSTLY_Q8_0, "Q8_0", DType::Q8_0},
    {FT::MOSTLY_F16, "F16", DType::F16},            {FT::MOSTLY_BF16, "BF16", DType::BF16},
    {FT::ALL_F32, "F32", DType::F32},
};

enum class Cat { TokenEmbd, AttnQ, AttnV, AttnK, AttnQkv, AttnKvB, AttnOutput, FfnUp, FfnGate, FfnDown, Output, Other };

bool has(const std::string& s, const char* sub) { return s.find(sub) != std::string::npos; }

Cat category(const std::string& n) {
    if (n == "output.weight") return Cat::Output;
    if (n == "token_embd.weight" || n == "per_layer_token_embd.weight") return Cat::TokenEmbd;
    if (has(n, "attn_qkv.weight")) return Cat::AttnQkv;
    if (has(n, "attn_kv_b.weight")) return Cat::AttnKvB;
    if (has(n, "attn_v.weight")) return Cat::AttnV;
    if (has(n, "attn_k.weight")) return Cat::AttnK;
    if (has(n, "attn_q.weight")) return Cat::AttnQ;
    if (has(n, "attn_output.weight")) return Cat::AttnOutput;
    if (has(n, "ffn_up")) return Cat::FfnUp;
    if (has(n, "ffn_gate")) return Cat::FfnGate;
    if (has(n, "ffn_down")) return Cat::FfnDown;
    return Cat::Other;
}

bool isAttnVLike(Cat c) { return c == Cat::AttnV || c == Cat::AttnQkv || c == Cat::AttnKvB; }

int nDims(const std::vector<int64_t>& ne) {
    int n = static_cast<int>(ne.size());
    while (n > 1 && ne[n - 1] == 1) --n;
    return std::max(n, 1);
}

// tensor_allows_quantization; returns an empty string if allowed, else why not.
std::string whyNotQuantized(const MixTensor& t, const MixOptions& o) {
    const std::string& n = t.name;
    if (nDims(t.ne) < 2) return "1-D tensor";
    if (n.size() < 6 || n.compare(n.size() - 6, 6, "weight") != 0) return "not a weight";
    if (has(n, "_norm.weight")) return "norm";
    if (o.leaveOutputTensor && n == "output.weight") return "--leave-output-tensor";
    static const char* kNever[] = {
        "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
        "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
        "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
        "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
        "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
        "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
        "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos",
        ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd"};
    for (const char* s : kNever)
        if (has(n, s)) return std::string("never quantized (") + s + ")";
    if (n == "position_embd.weight" || n == "token_types.weight") return "never quantized (" + n + ")";
    return {};
}

std::string tname(DType t) { return std::string(dtypeName(t)); }

struct State {
    int nAttentionWv = 0, iAttentionWv = 0;
    int nFfn = 0, iFfnDown = 0, iFfnGate = 0, iFfnUp = 0;
    bool tied = true;
};

struct RuleCtx {
    const MixModelInfo& model;
    const MixOptions& opt;
    State& st;
    int nGqa;
    bool is70B;
    bool falcon;
    int nExpert;  // max(1, n_expert) as in layer_info
};

// llama_tensor_get_type_impl. `why` receives the reason when a rule changed the type.
Result<DType> mixRules(const RuleCtx& c, DType newType, const MixTensor& t, Cat cat, std::string& why) {
    const FT f = c.opt.ftype;
    const std::string& name = t.name;
    const int nExpertRaw = c.model.nExpert;
    auto layerInfo = [&](int iLayer, int nLayer) -> Result<std::pair<int, int>> {
        if (c.nExpert > 1) {
            int l = -1;
            if (std::sscanf(name.c_str(), "blk.%d.", &l) != 1)
                return makeError("Failed to determine layer for tensor " + name);
            if (l < 0 || l >= nLayer)
                return makeError("Bad layer " + std::to_string(l) + " for tensor " + name + ". Must be in [0, " +
                                 std::to_string(nLayer) + ")");
            iLayer = l;
        }
        return std::make_pair(iLayer, nLayer);
    };
    auto set = [&](DType t2, std::string r) {
        newType = t2;
        why = std::move(r);
    };
    auto umbText = [](int i, int n) {
        return "use_more_bits(" + std::to_string(i) + " of " + std::to_string(n) + ")";
    };
    const bool iq2Family = f == FT::MOSTLY_IQ2_XXS || f == FT::MOSTLY_IQ2_XS || f == FT::MOSTLY_IQ1_S ||
                           f == FT::MOSTLY_IQ2_S || f == FT::MOSTLY_IQ2_M || f == FT::MOSTLY_IQ1_M;
    const bool iq2sm = f == FT::MOSTLY_IQ2_S || f == FT::MOSTLY_IQ2_M;

    if (cat == Cat::Output || (c.st.tied && cat == Cat::TokenEmbd)) {
        const std::string who = cat == Cat::Output ? "output" : "tied token_embd (no output.weight)";
        if (c.opt.outputTensorType) {
            set(*c.opt.outputTensorType, who + ": --output-tensor-type");
        } else {
            const int64_t nx = t.ne.empty() ? 0 : t.ne[0];
            const int64_t qk = traits(newType).blockSize;
            if (f == FT::MOSTLY_MXFP4_MOE) set(DType::Q8_0, who + ": MXFP4_MOE -> Q8_0");
            else if (c.falcon) set(DType::Q8_0, who + ": falcon -> Q8_0");
            else if (nx % qk != 0) set(DType::Q8_0, who + ": ne[0] % " + std::to_string(qk) + " != 0 -> Q8_0");
            else if (f == FT::MOSTLY_IQ2_XXS || f == FT::MOSTLY_IQ2_XS || f == FT::MOSTLY_IQ3_XXS ||
                     f == FT::MOSTLY_IQ1_S || f == FT::MOSTLY_IQ2_S || f == FT::MOSTLY_IQ2_M || f == FT::MOSTLY_IQ1_M)
                set(DType::Q5_K, who + ": IQ mix -> Q5_K");
            else if (newType != DType::Q8_0) set(DType::Q6_K, who + " -> Q6_K");
            else why = who + ": Q8_0 mix keeps Q8_0";
        }
    } else if (f == FT::MOSTLY_MXFP4_MOE) {
        const bool bailingExpert =
            c.model.arch == "bailingmoe3" && (cat == Cat::FfnUp || cat == Cat::FfnGate || cat == Cat::FfnDown);
        if (t.ne.size() > 2 && t.ne[2] > 1 && (c.model.arch != "bailingmoe3" || bailingExpert))
            set(DType::MXFP4, "MoE expert tensor -> MXFP4");
        else
            set(DType::Q8_0, "MXFP4_MOE: non-expert tensor -> Q8_0");
    } else if (cat == Cat::TokenEmbd) {
        if (c.opt.tokenEmbeddingType) set(*c.opt.tokenEmbeddingType, "token_embd: --token-embedding-type");
        else if (f == FT::MOSTLY_IQ2_XXS || f == FT::MOSTLY_IQ2_XS || f == FT::MOSTLY_IQ1_S || f == FT::MOSTLY_IQ1_M)
            set(DType::Q2_K, "token_embd: IQ1/IQ2 mix -> Q2_K");
        else if (iq2sm || f == FT::MOSTLY_IQ3_XXS) set(DType::IQ3_S, "token_embd -> IQ3_S");
        else if (f == FT::MOSTLY_TQ1_0 || f == FT::MOSTLY_TQ2_0) set(DType::Q4_K, "token_embd: ternary mix -> Q4_K");
    } else if (iq2Family) {
        if (isAttnVLike(cat)) {
            if (c.nGqa >= 4 || nExpertRaw >= 4) set(DType::Q4_K, "attn_v: n_gqa >= 4 or n_expert >= 4 -> Q4_K");
            else set(iq2sm ? DType::IQ3_S : DType::Q2_K, "attn_v bump");
            ++c.st.iAttentionWv;
        } else if (nExpertRaw == 8 && cat == Cat::AttnK) {
            set(DType::Q4_K, "attn_k with 8 experts -> Q4_K");
        } else if (cat == Cat::FfnDown) {
            if (c.st.iFfnDown < c.st.nFfn / 8)
                set(iq2sm ? DType::IQ3_S : DType::Q2_K, "ffn_down: first n/8 layers bump");
            ++c.st.iFfnDown;
        } else if (cat == Cat::AttnOutput) {
            if (nExpertRaw == 8) set(DType::Q5_K, "attn_output with 8 experts -> Q5_K");
            else if (f == FT::MOSTLY_IQ1_S || f == FT::MOSTLY_IQ1_M) set(DType::IQ2_XXS, "attn_output -> IQ2_XXS");
            else if (iq2sm) set(DType::IQ3_S, "attn_output -> IQ3_S");
        }
    } else if (isAttnVLike(cat)) {
        const int i = c.st.iAttentionWv, n = c.st.nAttentionWv;
        const std::string lbl = cat == Cat::AttnV ? "attn_v" : cat == Cat::AttnQkv ? "attn_qkv (attn_v rule)"
                                                                                    : "attn_kv_b (attn_v rule)";
        if (f == FT::MOSTLY_Q2_K)
            set(c.nGqa >= 4 ? DType::Q4_K : DType::Q3_K, lbl + ": Q2_K mix, n_gqa " + std::to_string(c.nGqa));
        else if (f == FT::MOSTLY_Q2_K_S && c.nGqa >= 4) set(DType::Q4_K, lbl + ": n_gqa >= 4 -> Q4_K");
        else if (f == FT::MOSTLY_IQ3_XXS)
            set(c.nGqa >= 4 ? DType::Q4_K : !c.opt.hasImatrix ? DType::IQ3_S : DType::IQ3_XXS, lbl + ": IQ3_XXS mix");
        else if ((f == FT::MOSTLY_IQ3_XS || f == FT::MOSTLY_IQ3_S) && c.nGqa >= 4)
            set(DType::Q4_K, lbl + ": n_gqa >= 4 -> Q4_K");
        else if (f == FT::MOSTLY_IQ3_M) set(DType::Q4_K, lbl + ": IQ3_M -> Q4_K");
        else if (f == FT::MOSTLY_Q3_K_M)
            set(i < 2 ? DType::Q5_K : DType::Q4_K, lbl + ": Q3_K_M, index " + std::to_string(i) + (i < 2 ? " < 2" : " >= 2"));
        else if (f == FT::MOSTLY_Q3_K_L) set(DType::Q5_K, lbl + ": Q3_K_L -> Q5_K");
        else if ((f == FT::MOSTLY_IQ4_NL || f == FT::MOSTLY_IQ4_XS) && c.nGqa >= 4)
            set(DType::Q5_K, lbl + ": n_gqa >= 4 -> Q5_K");
        else if ((f == FT::MOSTLY_Q4_K_M || f == FT::MOSTLY_Q5_K_M) && useMoreBits(i, n))
            set(DType::Q6_K, lbl + ": " + umbText(i, n) + " -> Q6_K");
        else if (f == FT::MOSTLY_Q4_K_S && i < 4) set(DType::Q5_K, lbl + ": Q4_K_S, index " + std::to_string(i) + " < 4");
        if (c.is70B && (newType == DType::Q3_K || newType == DType::Q4_K))
            set(DType::Q5_K, lbl + ": 70B model -> Q5_K");
        if (nExpertRaw == 8) set(DType::Q8_0, lbl + ": 8 experts -> Q8_0");
        ++c.st.iAttentionWv;
    } else if (cat == Cat::AttnK) {
        if (nExpertRaw == 8) set(DType::Q8_0, "attn_k: 8 experts -> Q8_0");
        else if (f == FT::MOSTLY_IQ3_XS) set(DType::IQ3_XXS, "attn_k: IQ3_XS -> IQ3_XXS");
        else if (f == FT::MOSTLY_IQ3_XXS) set(DType::IQ2_S, "attn_k: IQ3_XXS -> IQ2_S");
    } else if (cat == Cat::AttnQ) {
        if (f == FT::MOSTLY_IQ3_XS) set(DType::IQ3_XXS, "attn_q: IQ3_XS -> IQ3_XXS");
        else if (f == FT::MOSTLY_IQ3_XXS) set(DType::IQ2_S, "attn_q: IQ3_XXS -> IQ2_S");
    } else if (cat == Cat::FfnDown) {
        auto li = layerInfo(c.st.iFfnDown, c.st.nFfn);
        if (!li) return li.error();
        const int i = li->first, n = li->second;
        const std::string at = "ffn_down layer " + std::to_string(i) + " of " + std::to_string(n) + ": ";
        if (f == FT::MOSTLY_Q2_K) set(DType::Q3_K, at + "Q2_K mix -> Q3_K");
        else if (f == FT::MOSTLY_Q2_K_S) {
            if (i < n / 8) set(DType::Q4_K, at + "i < n/8 -> Q4_K");
        } else if (f == FT::MOSTLY_IQ3_XXS && !c.opt.hasImatrix)
            set(i < n / 8 ? DType::Q4_K : DType::Q3_K, at + "IQ3_XXS without imatrix");
        else if (f == FT::MOSTLY_Q3_K_M)
            set(i < n / 16 ? DType::Q5_K : (!c.falcon || useMoreBits(i, n)) ? DType::Q4_K : DType::Q3_K,
                at + (i < n / 16 ? "i < n/16 -> Q5_K" : "Q3_K_M -> Q4_K"));
        else if (f == FT::MOSTLY_IQ3_M && (i < n / 8 || (nExpertRaw == 8 && useMoreBits(i, n))))
            set(DType::Q4_K, at + "IQ3_M -> Q4_K");
        else if (f == FT::MOSTLY_Q3_K_L) set(c.falcon ? DType::Q4_K : DType::Q5_K, at + "Q3_K_L bump");
        else if (f == FT::MOSTLY_Q4_K_M) {
            if (c.falcon)
                set(i < n / 16 ? DType::Q6_K : useMoreBits(i, n) ? DType::Q5_K : DType::Q4_K, at + "falcon Q4_K_M");
            else if (useMoreBits(i, n))
                set(DType::Q6_K, at + umbText(i, n) + " -> Q6_K");
        } else if (i < n / 8 && (f == FT::MOSTLY_IQ4_NL || f == FT::MOSTLY_IQ4_XS) && !c.opt.hasImatrix)
            set(DType::Q5_K, at + "i < n/8 without imatrix -> Q5_K");
        else if (f == FT::MOSTLY_Q5_K_M && useMoreBits(i, n))
            set(DType::Q6_K, at + umbText(i, n) + " -> Q6_K");
        else if (f == FT::MOSTLY_Q4_K_S && !c.falcon && i < n / 8)
            set(DType::Q5_K, at + "i < n/8 -> Q5_K");
        else if ((f == FT::MOSTLY_Q4_0 || f == FT::MOSTLY_Q5_0) && c.opt.hasImatrix && i < n / 8)
            set(f == FT::MOSTLY_Q4_0 ? DType::Q4_1 : DType::Q5_1, at + "imatrix and i < n/8 -> _1 variant");
        ++c.st.iFfnDown;
    } else if (cat == Cat::AttnOutput) {
        if (!c.falcon) {
            if (nExpertRaw == 8) {
                if (f == FT::MOSTLY_Q2_K || f == FT::MOSTLY_IQ3_XS || f == FT::MOSTLY_IQ3_XXS || f == FT::MOSTLY_Q3_K_S ||
                    f == FT::MOSTLY_Q3_K_M || f == FT::MOSTLY_IQ4_NL || f == FT::MOSTLY_Q4_K_S ||
                    f == FT::MOSTLY_Q4_K_M || f == FT::MOSTLY_IQ3_S || f == FT::MOSTLY_IQ3_M || f == FT::MOSTLY_IQ4_XS)
                    set(DType::Q5_K, "attn_output: 8 experts -> Q5_K");
            } else {
                if (f == FT::MOSTLY_Q2_K) set(DType::Q3_K, "attn_output: Q2_K mix -> Q3_K");
                else if (f == FT::MOSTLY_IQ3_XXS) set(DType::IQ3_S, "attn_output: IQ3_XXS mix -> IQ3_S");
                else if (f == FT::MOSTLY_Q3_K_M) set(DType::Q4_K, "attn_output: Q3_K_M -> Q4_K");
                else if (f == FT::MOSTLY_Q3_K_L) set(DType::Q5_K, "attn_output: Q3_K_L -> Q5_K");
                else if (f == FT::MOSTLY_IQ3_M) set(DType::Q4_K, "attn_output: IQ3_M -> Q4_K");
            }
        } else if (f == FT::MOSTLY_Q3_K_L) {
            set(DType::Q4_K, "attn_output: falcon Q3_K_L -> Q4_K");
        }
    } else if (cat == Cat::FfnGate || cat == Cat::FfnUp) {
        int& counter = cat == Cat::FfnGate ? c.st.iFfnGate : c.st.iFfnUp;
        auto li = layerInfo(counter, c.st.nFfn);
        if (!li) return li.error();
        const int i = li->first, n = li->second;
        if (f == FT::MOSTLY_IQ3_XS && i >= n / 8 && i < 7 * n / 8)
            set(DType::IQ3_XXS, std::string(cat == Cat::FfnGate ? "ffn_gate" : "ffn_up") + ": middle layers -> IQ3_XXS");
        ++counter;
    }
    // (The ATTENTION_QKV-only branch of llama-quant.cpp is unreachable: attn_qkv takes the attn_v branch.)
    return newType;
}

struct FallbackResult {
    DType type = DType::F32;
    bool applied = false;
    bool beyond = false;
    std::string why;
};

// tensor_type_fallback (LCnew), with QuantZoo's F16 where llama-quantize has none.
Result<FallbackResult> fallback(const MixTensor& t, DType target, bool strict) {
    FallbackResult r;
    r.type = target;
    const int64_t ncols = t.ne.empty() ? 0 : t.ne[0];
    const int64_t qk = traits(target).blockSize;
    if (ncols % qk == 0) return r;
    r.applied = true;
    const std::string head =
        "ne[0] = " + std::to_string(ncols) + " not divisible by " + std::to_string(qk) + " (" + tname(target) + ")";
    switch (target) {
    case DType::IQ1_S: case DType::IQ1_M: case DType::IQ2_XXS: case DType::IQ2_XS: case DType::IQ2_S:
    case DType::IQ3_XXS: case DType::IQ3_S: case DType::IQ4_XS: r.type = DType::IQ4_NL; break;
    case DType::Q2_K: case DType::Q3_K: case DType::TQ1_0: case DType::TQ2_0: r.type = DType::Q4_0; break;
    case DType::Q4_K: r.type = DType::Q5_0; break;
    case DType::Q5_K: r.type = DType::Q5_1; break;
    case DType::Q6_K: r.type = DType::Q8_0; break;
    default:
        if (strict)
            return makeError(t.name + ": no tensor type fallback is defined for type " + tname(target) + " (" + head + ")");
        r.type = DType::F16;
        r.beyond = true;
        r.why = head + "; llama-quantize has no fallback for " + tname(target) +
                " and refuses this model -> QuantZoo uses F16";
        return r;
    }
    if (ncols % traits(r.type).blockSize != 0) {
        r.why = head + " -> " + tname(r.type) + ", still not divisible -> F16";
        r.type = DType::F16;
    } else {
        r.why = head + " -> fallback " + tname(r.type);
    }
    return r;
}

bool requiresImatrix(const std::string& name, DType t, FT f) {
    if (name == "token_embd.weight" || name == "per_layer_token_embd.weight" || name == "output.weight") return false;
    switch (t) {
    case DType::IQ3_XXS: case DType::IQ2_XXS: case DType::IQ2_XS: case DType::IQ2_S: case DType::IQ1_M:
    case DType::IQ1_S: return true;
    case DType::Q2_K: return f == FT::MOSTLY_Q2_K_S;
    default: return false;
    }
}

// The layer number as sscanf("blk.%d.") reads it, or -1.
int blockLayer(const std::string& s) {
    if (s.compare(0, 4, "blk.") != 0) return -1;
    size_t i = 4;
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    bool neg = false;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    if (i >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i]))) return -1;
    long long v = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
        v = std::min<long long>(v * 10 + (s[i] - '0'), 1LL << 40);
        ++i;
    }
    if (neg) v = -v;
    return static_cast<int>(std::clamp<long long>(v, INT32_MIN, INT32_MAX));
}

}  // namespace

std::span<const FileTypeInfo> fileTypes() { return kFileTypes; }

const FileTypeInfo* fileTypeInfo(FileType t) {
    for (const auto& i : kFileTypes)
        if (i.ftype == t) return &i;
    return nullptr;
}

std::optional<FileType> fileTypeFromName(std::string_view name) {
    std::string up;
    for (char ch : name) up.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(ch))));
    if (up == "Q4_K") return FT::MOSTLY_Q4_K_M;
    if (up == "Q3_K") return FT::MOSTLY_Q3_K_M;
    if (up == "Q5_K") return FT::MOSTLY_Q5_K_M;
    for (const auto& i : kFileTypes)
        if (i.name == up) return i.ftype;
    if (!up.empty() && up.size() < 4 && std::all_of(up.begin(), up.end(), [](char ch) { return std::isdigit(ch); })) {
        const int v = std::stoi(up);
        for (const auto& i : kFileTypes)
            if (static_cast<int>(i.ftype) == v) return i.ftype;
    }
    return std::nullopt;
}

bool useMoreBits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

bool llamaTensorLess(const std::string& a, const std::string& b) {
    const int la = blockLayer(a), lb = blockLayer(b);
    if (la != lb) return la < lb;
    return a < b;
}

void sortLlamaOrder(std::vector<MixTensor>& tensors) {
    std::stable_sort(tensors.begin(), tensors.end(),
                     [](const MixTensor& x, const MixTensor& y) { return llamaTensorLess(x.name, y.name); });
}

std::vector<size_t> llamaOrder(const std::vector<std::string>& names) {
    std::vector<size_t> idx(names.size());
    std::iota(idx.begin(), idx.end(), size_t(0));
    std::stable_sort(idx.begin(), idx.end(), [&](size_t x, size_t y) { return llamaTensorLess(names[x], names[y]); });
    return idx;
}

Result<std::vector<MixChoice>> chooseTensorTypes(const MixModelInfo& model, const std::vector<MixTensor>& tensors,
                                                 const MixOptions& opt) {
    const FileTypeInfo* fi = fileTypeInfo(opt.ftype);
    if (!fi) return makeError("unknown file type " + std::to_string(static_cast<int>(opt.ftype)));
    const DType defaultType = fi->defaultType;

    std::vector<std::pair<std::regex, DType>> patterns;
    try {
        for (const auto& [re, t] : opt.tensorTypes) patterns.emplace_back(std::regex(re), t);
    } catch (const std::regex_error& e) {
        return makeError(std::string("invalid --tensor-type regular expression: ") + e.what());
    }

    State st;
    for (const auto& t : tensors) {
        const Cat c = category(t.name);
        if (isAttnVLike(c)) ++st.nAttentionWv;
        if (c == Cat::Output) st.tied = false;
    }
    st.nFfn = model.nLayer;
    const int nHeadKv = model.nHeadKv > 0 ? model.nHeadKv : model.nHead;
    RuleCtx ctx{model,
                opt,
                st,
                nHeadKv > 0 ? model.nHead / nHeadKv : 0,
                model.arch == "llama" && model.nLayer == 80 && model.nHead != nHeadKv,
                model.arch == "falcon",
                std::max(1, model.nExpert)};

    std::vector<MixChoice> out;
    out.reserve(tensors.size());
    try {
        for (const auto& t : tensors) {
            MixChoice ch;
            const std::string no = whyNotQuantized(t, opt);
            if (!no.empty()) {
                ch.type = t.type;
                ch.allowed = false;
                ch.reason = "kept as " + tname(t.type) + ": " + no;
                out.push_back(std::move(ch));
                continue;
            }
            const Cat cat = category(t.name);
            DType type = defaultType;
            std::string why;
            bool runFallback = false;
            bool userTypeNoFallback = false;  // llama-quantize applies no fallback to these user types
            if (opt.tokenEmbeddingType && cat == Cat::TokenEmbd) {
                type = *opt.tokenEmbeddingType;
                why = "--token-embedding-type " + tname(type);
                userTypeNoFallback = true;
            } else if (opt.outputTensorType && cat == Cat::Output) {
                type = *opt.outputTensorType;
                why = "--output-tensor-type " + tname(type);
                userTypeNoFallback = true;
            } else if (traits(defaultType).isQuantized) {
                bool manual = false;
                for (size_t k = 0; k < patterns.size(); ++k) {
                    if (std::regex_search(t.name, patterns[k].first)) {
                        type = patterns[k].second;
                        why = "--tensor-type " + opt.tensorTypes[k].first + "=" + tname(type);
                        manual = true;
                        break;
                    }
                }
                if (!manual && !opt.pure) {
                    auto r = mixRules(ctx, type, t, cat, why);
                    if (!r) return r.error();
                    type = *r;
                    if (why.empty()) why = "default type of " + std::string(fi->name);
                } else if (!manual) {
                    why = "--pure: default type of " + std::string(fi->name);
                }
                runFallback = true;
            } else {
                why = "default type of " + std::string(fi->name);
            }
            if (runFallback) {
                auto fb = fallback(t, type, opt.strictLlamaCpp);
                if (!fb) return fb.error();
                if (fb->applied) {
                    why += "; " + fb->why;
                    ch.fallback = true;
                    ch.beyondLlamaCpp = fb->beyond;
                    type = fb->type;
                }
            } else if (userTypeNoFallback && !t.ne.empty() && t.ne[0] % traits(type).blockSize != 0) {
                // llama-quantize would abort on this row size; find a type that fits.
                if (opt.strictLlamaCpp)
                    return makeError(t.name + ": ne[0] = " + std::to_string(t.ne[0]) + " is not a multiple of the " +
                                     tname(type) + " block size");
                auto fb = fallback(t, type, false);
                if (!fb) return fb.error();
                why += "; " + fb->why;
                ch.fallback = true;
                ch.beyondLlamaCpp = true;
                type = fb->type;
            }
            ch.type = type;
            ch.quantize = type != t.type;
            ch.requiresImatrix = requiresImatrix(t.name, type, opt.ftype);
            ch.reason = std::move(why);
            out.push_back(std::move(ch));
        }
    } catch (const std::exception& e) {
        return makeError(std::string("type selection failed: ") + e.what());
    }
    return out;
}

}  // namespace qz::ggml
