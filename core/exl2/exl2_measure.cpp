#include "exl2/exl2_measure.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <map>
#include <set>
#include <unordered_map>
#include <span>
#include <unistd.h>

#include "common/file_util.h"
#include "common/fp16.h"
#include "common/parallel.h"

namespace qz::exl2 {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}


bool endsWith(const std::string& s, const std::string& t) {
    return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}

nlohmann::ordered_json optionsJson(const ModuleMeasurement& m, const std::vector<std::string>& names) {
    nlohmann::ordered_json arr = nlohmann::ordered_json::array();
    for (const auto& o : m.options) {
        nlohmann::ordered_json j;
        j["accuracy"] = o.accuracy;
        j["total_bits"] = o.totalBits;
        for (size_t s = 0; s < o.qp.size() && s < names.size(); ++s)
            j[names[s]] = qparamsToJsonValue(o.qp[s]);
        arr.push_back(std::move(j));
    }
    return arr;
}

// One module's options from JSON (measurement.json entry or a resume file).
Result<ModuleMeasurement> moduleFromJson(const nlohmann::json& arr, const ModuleRef& ref,
                                         const std::string& what) {
    const std::string ctx = what + ": " + ref.key;
    if (!arr.is_array() || arr.empty() || arr.size() > 10000)
        return makeError(ctx + ": expected a non-empty list of options");
    ModuleMeasurement mm;
    mm.key = ref.key;
    const auto names = ref.slotNames();
    for (size_t i = 0; i < arr.size(); ++i) {
        const auto& o = arr[i];
        const std::string oc = ctx + " option " + std::to_string(i);
        if (!o.is_object()) return makeError(oc + ": not an object");
        ModuleMeasurement::Option opt;
        if (!o.contains("accuracy") || !o["accuracy"].is_number())
            return makeError(oc + ": no numeric accuracy");
        opt.accuracy = o["accuracy"].get<double>();
        if (!std::isfinite(opt.accuracy) || opt.accuracy < 0 || opt.accuracy > 1)
            return makeError(oc + ": accuracy out of [0, 1]");
        if (!o.contains("total_bits") || !o["total_bits"].is_number_integer())
            return makeError(oc + ": no integer total_bits");
        opt.totalBits = o["total_bits"].get<int64_t>();
        int64_t expect = 0;
        for (size_t s = 0; s < names.size(); ++s) {
            if (!o.contains(names[s]) || !o[names[s]].is_object()) return makeError(oc + ": no " + names[s]);
            auto qp = qparamsFromJsonValue(o[names[s]]); // validated (validateQParams)
            if (!qp) return makeError(oc + " " + names[s] + ": " + qp.error().message);
            bool checked = false;
            for (size_t k = 0; k < ref.linears.size(); ++k) {
                if (ref.slotOf(k) != static_cast<int>(s)) continue;
                const LinearRef& L = ref.linears[k];
                if (!checked) { // every linear of a slot has the same shape
                    if (auto g = planGroups(*qp, L.in); !g)
                        return makeError(oc + " " + names[s] + ": " + g.error().message);
                    checked = true;
                }
                expect += qp->totalBits(L.in, L.out, !L.biasName.empty());
            }
            opt.qp.push_back(std::move(*qp));
        }
        if (opt.totalBits != expect)
            return makeError(oc + ": total_bits " + std::to_string(opt.totalBits) +
                             " does not match its settings (" + std::to_string(expect) + ")");
        mm.options.push_back(std::move(opt));
    }
    return mm;
}

} // namespace

namespace {
// A module measured option by option from fp16 row sources (every module but one with parts of a fused
// tensor, phi3's, which is measured from F32 copies).
bool measuredFromSources(const ModuleRef& m) { return ModuleRunner::sourceable(m); }

std::vector<std::string> slotNamesForKey(const std::string& key) {
    if (endsWith(key, ".self_attn")) return {"q_proj", "k_proj", "v_proj", "o_proj"};
    if (endsWith(key, ".block_sparse_moe")) return {"w1", "w3", "w2"}; // measure.py measure_moe_mlp
    return {"gate_proj", "up_proj", "down_proj"};
}
} // namespace

int64_t ModuleRef::numel() const {
    int64_t n = 0;
    for (const auto& l : linears)
        n += l.numel();
    return n;
}

int ModuleRef::hessianCount() const {
    int n = 0;
    for (size_t i = 0; i < linears.size(); ++i)
        n = std::max(n, hessianOf(i) + 1);
    return n;
}

std::vector<std::string> ModuleRef::slotNames() const { return slotNamesForKey(key); }

int64_t ModelPlan::decoderNumel() const {
    int64_t n = 0;
    for (const auto& m : modules)
        n += m.numel();
    return n;
}

Result<ModelPlan> planModel(const Model& model) {
    const std::string arch = model.architecture;
    const std::string supported = std::string(" (EXL2 export supports ") + kExl2Archs + ")";
    if (arch == "gpt2")
        return makeError("EXL2: exllamav2 does not support GPT-2 models (architecture gpt2)" + supported);
    if (arch == "gemma3_text")
        return makeError("EXL2: exllamav2 0.3.2 has no Gemma3ForCausalLM (text-only gemma3): it would load the "
                         "folder as a llama model, without Gemma's norms" + supported);
    if (arch == "gemma3")
        return makeError("EXL2: Gemma3ForConditionalGeneration (the multimodal gemma3) is not supported: its "
                         "vision tower and language_model.* tensors are not evaluated here" + supported);
    static const std::map<std::string, std::string> kArchString = {
        {"llama", "LlamaForCausalLM"},   {"mistral", "MistralForCausalLM"},     {"qwen2", "Qwen2ForCausalLM"},
        {"qwen3", "Qwen3ForCausalLM"},   {"qwen3_moe", "Qwen3MoeForCausalLM"}, {"mixtral", "MixtralForCausalLM"},
        {"gemma2", "Gemma2ForCausalLM"}, {"phi3", "Phi3ForCausalLM"}};
    auto archIt = kArchString.find(arch);
    if (archIt == kArchString.end())
        return makeError("EXL2: architecture '" + printableText(arch) + "' is not supported" + supported);
    if (model.format != ModelFormat::HuggingFaceFolder)
        return makeError("EXL2 export needs a Hugging Face model folder (config.json + safetensors)");
    auto hp = readInferHParams(model);
    if (!hp) return hp.error();
    ModelPlan plan;
    plan.hp = *hp;
    plan.exl2Arch = archIt->second;
    const InferHParams& h = plan.hp;
    const int qDim = h.nHead * h.headDim, kvDim = h.nHeadKv * h.headDim;
    auto checkIn = [&](const std::string& name, int in) -> Status {
        if (in % 32 != 0)
            return makeError("EXL2: " + name + " has " + std::to_string(in) +
                             " input features, not a multiple of 32 (EXL2 groups need it)");
        return okStatus();
    };
    auto linearRef = [&](const std::string& prefix, const std::string& slot, int out,
                         int in) -> Result<LinearRef> {
        LinearRef L;
        L.prefix = prefix;
        L.slot = slot;
        L.weightName = prefix + ".weight";
        L.out = out;
        L.in = in;
        const TensorInfo* t = model.find(L.weightName);
        if (!t) return makeError("EXL2: " + model.path + " lacks " + L.weightName);
        if (t->shape != std::vector<int64_t>{out, in})
            return makeError("EXL2: " + L.weightName + " has shape " + t->shapeString() + ", expected [" +
                             std::to_string(out) + ", " + std::to_string(in) + "]");
        if (auto s = checkIn(L.weightName, in); !s) return s.error();
        if (const TensorInfo* b = model.find(prefix + ".bias")) {
            if (b->shape != std::vector<int64_t>{out})
                return makeError("EXL2: " + prefix + ".bias has a wrong shape");
            L.biasName = prefix + ".bias";
        }
        return L;
    };
    // Rows of a fused tensor (phi3): each part becomes its own layer, named as exllamav2 names it.
    auto fusedParts = [&](const std::string& fused, const std::string& base,
                          const std::vector<std::pair<std::string, int>>& parts, int in,
                          std::vector<LinearRef>& out) -> Status {
        int rows = 0;
        for (const auto& p : parts)
            rows += p.second;
        const TensorInfo* t = model.find(fused);
        if (!t) return makeError("EXL2: " + model.path + " lacks " + fused);
        if (t->shape != std::vector<int64_t>{rows, in})
            return makeError("EXL2: " + fused + " has shape " + t->shapeString() + ", expected [" +
                             std::to_string(rows) + ", " + std::to_string(in) + "]");
        if (model.find(fused.substr(0, fused.size() - 7) + ".bias"))
            return makeError("EXL2: " + fused + " has a bias (not supported for fused layers)");
        if (auto s = checkIn(fused, in); !s) return s;
        int row0 = 0;
        for (const auto& p : parts) {
            LinearRef L;
            L.prefix = base + "." + p.first;
            L.slot = p.first;
            L.weightName = L.prefix + ".weight";
            L.out = p.second;
            L.in = in;
            L.srcName = fused;
            L.srcRow0 = row0;
            row0 += p.second;
            out.push_back(std::move(L));
        }
        return okStatus();
    };
    auto checkVec = [&](const std::string& name, int n) -> Status {
        const TensorInfo* t = model.find(name);
        if (!t) return makeError("EXL2: " + model.path + " lacks " + name);
        if (t->shape != std::vector<int64_t>{n})
            return makeError("EXL2: " + name + " has shape " + t->shapeString());
        return okStatus();
    };
    const bool mixtral = arch == "mixtral";
    for (int l = 0; l < h.nLayer; ++l) {
        const std::string lp = "model.layers." + std::to_string(l);
        for (int a = 0; a < 2; ++a) {
            ModuleRef m;
            m.layer = l;
            m.attn = a == 0;
            m.moe = !m.attn && h.nExpert > 0;
            m.key = lp + (m.attn ? ".self_attn" : m.moe ? ".block_sparse_moe" : ".mlp");
            m.normName = lp + (m.attn ? ".input_layernorm.weight"
                                      : h.gemma ? ".pre_feedforward_layernorm.weight"
                                                : ".post_attention_layernorm.weight");
            if (auto s = checkVec(m.normName, h.nEmbd); !s) return s.error();
            if (m.attn && h.fused) {
                if (auto s = fusedParts(lp + ".self_attn.qkv_proj.weight", lp + ".self_attn",
                                        {{"q_proj", qDim}, {"k_proj", kvDim}, {"v_proj", kvDim}}, h.nEmbd,
                                        m.linears);
                    !s)
                    return s.error();
                auto L = linearRef(lp + ".self_attn.o_proj", "o_proj", h.nEmbd, qDim);
                if (!L) return L.error();
                m.linears.push_back(std::move(*L));
            } else if (!m.attn && h.fused) {
                if (auto s = fusedParts(lp + ".mlp.gate_up_proj.weight", lp + ".mlp",
                                        {{"gate_proj", h.nFf}, {"up_proj", h.nFf}}, h.nEmbd, m.linears);
                    !s)
                    return s.error();
                auto L = linearRef(lp + ".mlp.down_proj", "down_proj", h.nEmbd, h.nFf);
                if (!L) return L.error();
                m.linears.push_back(std::move(*L));
            } else if (m.moe) {
                // Experts in exllamav2's names (architecture.py layer_keys_mixtral_mlp / _qwen3moe_mlp):
                // w1 = gate, w3 = up, w2 = down; the option table's slots are [gate, up, down].
                const std::string ex = lp + (mixtral ? ".block_sparse_moe.experts." : ".mlp.experts.");
                const int F = h.nFfExpert;
                for (int e = 0; e < h.nExpert; ++e) {
                    const std::string p = ex + std::to_string(e) + ".";
                    struct Spec {
                        const char *mx, *qw;
                        int slot, out, in;
                    };
                    const Spec specs[3] = {{"w1", "gate_proj", 0, F, h.nEmbd},
                                           {"w3", "up_proj", 1, F, h.nEmbd},
                                           {"w2", "down_proj", 2, h.nEmbd, F}};
                    for (const auto& s : specs) {
                        auto L = linearRef(p + (mixtral ? s.mx : s.qw), s.mx, s.out, s.in);
                        if (!L) return L.error();
                        if (!L->biasName.empty()) return makeError("EXL2: " + L->biasName + ": expert biases are not supported");
                        L->slotIdx = s.slot;
                        L->hessian = s.slot == 2 ? 1 + e : 0;
                        m.linears.push_back(std::move(*L));
                    }
                }
            } else {
                struct Spec {
                    const char* slot;
                    int out, in;
                };
                std::vector<Spec> specs;
                if (m.attn)
                    specs = {{"q_proj", qDim, h.nEmbd},
                             {"k_proj", kvDim, h.nEmbd},
                             {"v_proj", kvDim, h.nEmbd},
                             {"o_proj", h.nEmbd, qDim}};
                else
                    specs = {{"gate_proj", h.nFf, h.nEmbd},
                             {"up_proj", h.nFf, h.nEmbd},
                             {"down_proj", h.nEmbd, h.nFf}};
                const std::string base = m.attn ? lp + ".self_attn." : lp + ".mlp.";
                for (const auto& s : specs) {
                    auto L = linearRef(base + s.slot, s.slot, s.out, s.in);
                    if (!L) return L.error();
                    m.linears.push_back(std::move(*L));
                }
            }
            plan.modules.push_back(std::move(m));
        }
    }
    if (plan.modules.empty()) return makeError("EXL2: no decoder layers in " + model.path);
    plan.embedName = "model.embed_tokens.weight";
    const TensorInfo* emb = model.find(plan.embedName);
    if (!emb || emb->shape.size() != 2 || emb->shape[1] != h.nEmbd)
        return makeError("EXL2: " + model.path + " lacks a usable " + plan.embedName);
    plan.finalNormName = "model.norm.weight";
    if (auto s = checkVec(plan.finalNormName, h.nEmbd); !s) return s.error();
    if (model.find("lm_head.weight")) {
        auto L = linearRef("lm_head", "lm_head", static_cast<int>(emb->shape[0]), h.nEmbd);
        if (!L) return L.error();
        if (!L->biasName.empty()) return makeError("EXL2: lm_head.bias is not supported");
        plan.head = std::move(*L);
    }
    return plan;
}

Result<std::unique_ptr<ModuleRunner>> ModuleRunner::create(const Model& model, const ModelPlan& plan, int threads,
                                                           int maxLen) {
    std::unique_ptr<ModuleRunner> r(new ModuleRunner(plan, threads > 0 ? threads : defaultThreadCount()));
    EngineOptions eo;
    eo.threads = r->m_threads;
    eo.nCtx = std::max(1, maxLen);
    eo.kvF16 = false;           // F32 attention
    eo.ggmlGelu = false;        // the float tanh GELU (HF)
    eo.ggmlActivations = false; // F32 activations against the weights widened to F32
    auto e = Engine::load(model, eo);
    if (!e) return makeError("EXL2: " + e.error().message);
    r->m_engine = std::move(*e);
    return r;
}

ModuleRunner::~ModuleRunner() = default;

Result<States> ModuleRunner::embed(const std::vector<std::vector<int32_t>>& windows) const {
    States s;
    s.rows = static_cast<int>(windows.size());
    s.len = windows.empty() ? 0 : static_cast<int>(windows[0].size());
    s.dim = m_plan.hp.nEmbd;
    if (s.rows == 0 || s.len == 0) return makeError("EXL2: no calibration rows");
    s.data.resize(static_cast<size_t>(s.rows) * s.len * s.dim);
    for (int r = 0; r < s.rows; ++r) {
        if (static_cast<int>(windows[r].size()) != s.len) return makeError("EXL2: calibration rows differ in length");
        if (auto st = m_engine->embed(windows[r], 0, std::span<float>(s.row(r), static_cast<size_t>(s.len) * s.dim));
            !st)
            return makeError("EXL2: " + st.error().message);
    }
    return s;
}

Status ModuleRunner::embedInto(const std::vector<std::vector<int32_t>>& windows, calib::StateStore& states) const {
    const int dim = m_plan.hp.nEmbd;
    if (windows.empty() || windows[0].empty()) return makeError("EXL2: no calibration rows");
    const size_t len = windows[0].size();
    if (states.rows() != static_cast<int64_t>(windows.size()) ||
        states.rowValues() != static_cast<int64_t>(len) * dim)
        return makeError("EXL2: the state store does not fit the calibration rows");
    std::vector<float> row(len * static_cast<size_t>(dim));
    for (size_t r = 0; r < windows.size(); ++r) {
        if (windows[r].size() != len) return makeError("EXL2: calibration rows differ in length");
        if (auto st = m_engine->embed(windows[r], 0, row); !st) return makeError("EXL2: " + st.error().message);
        if (auto s = states.put(static_cast<int64_t>(r), row); !s) return s;
    }
    return okStatus();
}

Status ModuleRunner::install(const ModuleRef& m, const ModuleWeights& w) {
    if (w.w.size() != m.linears.size() || w.b.size() != m.linears.size())
        return makeError("EXL2: " + m.key + ": weights do not match the module");
    std::map<std::string, std::vector<float>> fused; // phi3: the parts put back together
    for (size_t i = 0; i < m.linears.size(); ++i) {
        const LinearRef& L = m.linears[i];
        if (w.w[i].size() != static_cast<size_t>(L.numel()))
            return makeError("EXL2: " + L.weightName + ": wrong number of values");
        if (!L.srcName.empty()) {
            auto& f = fused[L.srcName];
            const size_t at = static_cast<size_t>(L.srcRow0) * L.in;
            if (f.size() < at + w.w[i].size()) f.resize(at + w.w[i].size());
            std::copy(w.w[i].begin(), w.w[i].end(), f.begin() + static_cast<std::ptrdiff_t>(at));
            continue;
        }
        if (auto s = m_engine->setWeight(L.weightName, w.w[i]); !s) return makeError("EXL2: " + s.error().message);
        if (!L.biasName.empty())
            if (auto s = m_engine->setWeight(L.biasName, w.b[i]); !s) return makeError("EXL2: " + s.error().message);
    }
    for (const auto& [name, v] : fused)
        if (auto s = m_engine->setWeight(name, v); !s) return makeError("EXL2: " + s.error().message);
    return okStatus();
}

void Fp16Rows::decodeRows(int64_t r0, int64_t r1, float* dst) const {
    const uint16_t* src = m_v->data() + static_cast<size_t>(r0) * static_cast<size_t>(m_cols);
    const size_t n = static_cast<size_t>(r1 - r0) * static_cast<size_t>(m_cols);
    for (size_t i = 0; i < n; ++i)
        dst[i] = fp16ToFp32(src[i]);
}

bool ModuleRunner::sourceable(const ModuleRef& m) {
    for (const auto& L : m.linears)
        if (!L.srcName.empty()) return false;
    return true;
}

Status ModuleRunner::installSources(const ModuleRef& m,
                                    const std::vector<std::shared_ptr<const WeightRowSource>>& sources,
                                    const std::vector<std::vector<float>>& biases) {
    if (sources.size() != m.linears.size() || (!biases.empty() && biases.size() != m.linears.size()))
        return makeError("EXL2: " + m.key + ": sources do not match the module");
    for (size_t i = 0; i < m.linears.size(); ++i) {
        const LinearRef& L = m.linears[i];
        if (!L.srcName.empty())
            return makeError("EXL2: " + L.weightName + ": part of a fused tensor cannot be a row source");
        if (auto s = m_engine->setWeightSource(L.weightName, sources[i]); !s)
            return makeError("EXL2: " + s.error().message);
        if (!biases.empty() && !biases[i].empty() && !L.biasName.empty())
            if (auto s = m_engine->setWeight(L.biasName, biases[i]); !s) return makeError("EXL2: " + s.error().message);
    }
    return okStatus();
}

void ModuleRunner::release(const ModuleRef& m) {
    for (const auto& L : m.linears) {
        (void)m_engine->resetWeight(L.source());
        if (!L.biasName.empty()) (void)m_engine->resetWeight(L.biasName);
    }
}

Status ModuleRunner::setHead(const std::vector<float>* W) {
    if (m_plan.head.out == 0) return makeError("EXL2: the model has no lm_head of its own");
    if (!W) return m_engine->resetWeight(m_plan.head.weightName);
    return m_engine->setWeight(m_plan.head.weightName, *W);
}

Status ModuleRunner::headInputRow(const float* x, int len, float* out) const {
    const int dim = m_plan.hp.nEmbd, vocab = m_plan.hp.nVocab;
    constexpr int kChunk = 64; // tokens per head evaluation (bounds the logits' memory)
    std::vector<float> logits(static_cast<size_t>(kChunk) * vocab);
    for (int t0 = 0; t0 < len; t0 += kChunk) {
        const int n = std::min(kChunk, len - t0);
        const LinearObserver obs = [&](const std::string&, const float* xi, int64_t nTok, int64_t nIn) {
            if (nTok == n && nIn == dim) std::copy_n(xi, static_cast<size_t>(n) * dim, out + static_cast<size_t>(t0) * dim);
        };
        if (auto s = m_engine->head(std::span<const float>(x + static_cast<size_t>(t0) * dim, static_cast<size_t>(n) * dim),
                                    logits.data(), obs);
            !s)
            return makeError("EXL2: " + s.error().message);
    }
    return okStatus();
}

Status ModuleRunner::addNextTokenNll(const float* x, int len, const std::vector<int32_t>& window, double* nll,
                                     int64_t* count) const {
    const int dim = m_plan.hp.nEmbd;
    const int64_t vocab = m_plan.hp.nVocab;
    constexpr int kChunk = 64;
    std::vector<float> logits(static_cast<size_t>(kChunk) * vocab);
    for (int t0 = 0; t0 + 1 < len; t0 += kChunk) {
        const int n = std::min(kChunk, len - 1 - t0);
        if (auto s = m_engine->head(std::span<const float>(x + static_cast<size_t>(t0) * dim, static_cast<size_t>(n) * dim),
                                    logits.data());
            !s)
            return makeError("EXL2: " + s.error().message);
        for (int i = 0; i < n; ++i) {
            const float* l = logits.data() + static_cast<size_t>(i) * vocab;
            double mx = -INFINITY;
            for (int64_t v = 0; v < vocab; ++v)
                mx = std::max(mx, static_cast<double>(l[v]));
            double se = 0;
            for (int64_t v = 0; v < vocab; ++v)
                se += std::exp(l[v] - mx);
            const int32_t tgt = window[t0 + i + 1];
            *nll += mx + std::log(se) - l[tgt];
            ++*count;
        }
    }
    return okStatus();
}

Status ModuleRunner::forward(const ModuleRef& m, const ModuleWeights& w, const States& x, States* out,
                             const CaptureFn& capture) {
    if (x.dim != m_plan.hp.nEmbd) return makeError("EXL2: hidden states of the wrong width");
    if (out) {
        out->rows = x.rows;
        out->len = x.len;
        out->dim = x.dim;
        out->data.resize(x.data.size());
    }
    for (int r = 0; r < x.rows; ++r)
        if (auto s = forwardRow(m, w, x.row(r), x.len, out ? out->row(r) : nullptr, capture); !s) return s;
    return okStatus();
}

Status ModuleRunner::forwardRow(const ModuleRef& m, const ModuleWeights& w, const float* X, int len, float* Y,
                                const CaptureFn& capture) {
    const int dim = m_plan.hp.nEmbd;
    try {
        if (!w.w.empty())
            if (auto s = install(m, w); !s) return s;
        // The engine's names of the inputs the Hessians need (each reported once: q/k/v and gate/up share one).
        std::unordered_map<std::string, int> which;
        if (capture) {
            for (size_t i = 0; i < m.linears.size(); ++i) {
                const int h = m.hessianOf(i);
                bool seen = false;
                for (const auto& [n, k] : which)
                    seen = seen || k == h;
                if (!seen) which.emplace(m.linears[i].source(), h);
            }
            if (m.moe) { // every expert's w1/w3 input: the router's (all tokens)
                for (auto it = which.begin(); it != which.end();)
                    it = it->second == 0 ? which.erase(it) : std::next(it);
                which.emplace("model.layers." + std::to_string(m.layer) +
                                  (m_plan.hp.archName == "mixtral" ? ".block_sparse_moe.gate.weight" : ".mlp.gate.weight"),
                              0);
            }
        }
        const LinearObserver obs = [&](const std::string& name, const float* xi, int64_t nTok, int64_t nIn) {
            if (auto it = which.find(name); it != which.end()) capture(it->second, xi, nTok, nIn);
        };
        std::vector<float> S(X, X + static_cast<size_t>(len) * dim);
        const BlockStage stop = Y ? BlockStage::Complete : m.attn ? BlockStage::AttnOutInput : BlockStage::FfnOutInput;
        if (auto s = m_engine->forwardLayer(m.layer, S, 0, capture ? obs : LinearObserver{}, stop,
                                            m.attn ? BlockPart::Attention : BlockPart::FeedForward);
            !s)
            return makeError("EXL2: " + m.key + ": " + s.error().message);
        if (!Y) return okStatus();
        for (size_t i = 0; i < S.size(); ++i)
            if (!std::isfinite(S[i])) return makeError("EXL2: " + m.key + " produced a non-finite hidden state");
        std::copy(S.begin(), S.end(), Y);
    } catch (const std::bad_alloc&) {
        return makeError("EXL2: out of memory in " + m.key);
    }
    return okStatus();
}

Result<ModuleWeights> readModuleWeights(const Model& model, const ModuleRef& m) {
    ModuleWeights w;
    std::map<std::string, std::vector<float>> fused;
    for (const auto& L : m.linears) {
        std::vector<float> v;
        if (!L.srcName.empty()) {
            auto it = fused.find(L.srcName);
            if (it == fused.end()) {
                auto f = readTensorF32(model, *model.find(L.srcName));
                if (!f) return f.error();
                it = fused.emplace(L.srcName, std::move(*f)).first;
            }
            const size_t at = static_cast<size_t>(L.srcRow0) * L.in, n = static_cast<size_t>(L.numel());
            if (it->second.size() < at + n) return makeError("EXL2: " + L.srcName + " is too small");
            v.assign(it->second.begin() + static_cast<std::ptrdiff_t>(at),
                     it->second.begin() + static_cast<std::ptrdiff_t>(at + n));
        } else {
            auto r = readTensorF32(model, *model.find(L.weightName));
            if (!r) return r.error();
            v = std::move(*r);
        }
        w.w.push_back(std::move(v));
        std::vector<float> b;
        if (!L.biasName.empty()) {
            auto bv = readTensorF32(model, *model.find(L.biasName));
            if (!bv) return bv.error();
            b = std::move(*bv);
        }
        w.b.push_back(std::move(b));
    }
    return w;
}

std::vector<float> exl2Hessian(const calib::HessianAccumulator& acc) {
    std::vector<float> H = acc.finish(); // 2/rows · Σ xᵀx
    for (float& v : H)
        v *= 0.5f;
    return H;
}

double rowRelativeError(const float* a, const float* b, size_t n) {
    double d2 = 0, r2 = 0;
    for (size_t i = 0; i < n; ++i) {
        const double d = static_cast<double>(a[i]) - b[i];
        d2 += d * d;
        r2 += static_cast<double>(b[i]) * b[i];
    }
    return r2 > 0 ? std::sqrt(d2) / std::sqrt(r2) : (d2 > 0 ? 1.0 : 0.0);
}

double accuracyOf(const States& test, const States& ref) {
    double sum = 0;
    const size_t n = static_cast<size_t>(ref.len) * ref.dim;
    for (int r = 0; r < ref.rows; ++r)
        sum += rowRelativeError(test.row(r), ref.row(r), n);
    return std::max(1e-6, 1.0 - sum / std::max(1, ref.rows));
}

ReducedOptions reducedOptions(bool attn) {
    const QParamsReduced q = reduceQParams(attn ? attnOptions() : mlpOptions());
    return {q.perSlot, q.maps};
}

std::string moduleMeasurementJson(const ModuleMeasurement& m, const ModuleRef& ref) {
    return optionsJson(m, ref.slotNames()).dump(4);
}

std::string measurementJson(const std::vector<ModuleMeasurement>& m, int lastModuleIdx) {
    nlohmann::ordered_json j;
    j["measurement"] = nlohmann::ordered_json::object();
    for (const auto& mm : m)
        j["measurement"][mm.key] = optionsJson(mm, slotNamesForKey(mm.key));
    j["last_module_idx"] = lastModuleIdx;
    return j.dump(4);
}

Result<std::vector<ModuleMeasurement>> parseMeasurementJson(const std::string& text, const ModelPlan& plan,
                                                            const std::string& what) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text);
    } catch (const std::exception& e) {
        return makeError(what + ": not valid JSON: " + e.what());
    }
    if (!j.is_object() || !j.contains("measurement") || !j["measurement"].is_object())
        return makeError(what + ": no \"measurement\" object (not an exllamav2 measurement.json)");
    const auto& meas = j["measurement"];
    std::set<std::string> known;
    for (const auto& m : plan.modules)
        known.insert(m.key);
    for (auto it = meas.begin(); it != meas.end(); ++it)
        if (!known.count(it.key()))
            return makeError(what + ": module " + it.key() +
                             " is not in this model (a measurement of another model?)");
    std::vector<ModuleMeasurement> out;
    for (const auto& m : plan.modules) {
        if (!meas.contains(m.key)) return makeError(what + ": no measurement for " + m.key);
        auto mm = moduleFromJson(meas[m.key], m, what);
        if (!mm) return mm.error();
        out.push_back(std::move(*mm));
    }
    return out;
}

Result<std::vector<ModuleMeasurement>> readMeasurementJson(const std::string& path, const ModelPlan& plan) {
    auto text = readSmallFile(path, size_t{256} << 20);
    if (!text) return text.error();
    return parseMeasurementJson(*text, plan, path);
}

Result<std::vector<calib::HessianAccumulator>> accumulateHessians(ModuleRunner& runner, const ModuleRef& m,
                                                                  const ModuleWeights& w, calib::StateStore& x,
                                                                  int rows, int len,
                                                                  const std::function<bool()>& cancel) {
    const int nH = m.hessianCount();
    std::vector<int> dims(nH, 0);
    for (size_t i = 0; i < m.linears.size(); ++i)
        dims[m.hessianOf(i)] = m.linears[i].in;
    std::vector<calib::HessianAccumulator> acc;
    for (int d : dims)
        acc.emplace_back(d);
    std::vector<uint8_t> hit(nH);
    const CaptureFn capture = [&](int which, const float* xi, int64_t nTok, int64_t nIn) {
        if (which < 0 || which >= nH || nIn != acc[which].dim()) return;
        acc[which].add(xi, nTok, runner.threads());
        hit[which] = 1;
    };
    std::vector<float> xr(static_cast<size_t>(x.rowValues()));
    for (int row = 0; row < rows; ++row) {
        if (auto s = x.get(row, xr); !s) return s.error();
        std::fill(hit.begin(), hit.end(), 0);
        if (auto s = runner.forwardRow(m, w, xr.data(), len, nullptr, capture); !s) return s.error();
        // H = Σ xᵀx / the rows that fed it (adaptivegptq.py add_batch counts batches; an expert no token
        // of a row reached gets no batch from it).
        for (int k = 0; k < nH; ++k)
            if (hit[k]) acc[k].countSample(1);
        if (cancel && cancel()) return cancelledError();
    }
    return acc;
}

Result<std::vector<ModuleMeasurement>> measureModel(const Model& model, const ModelPlan& plan,
                                                    const std::vector<std::vector<int32_t>>& windows,
                                                    const MeasureParams& params, ProgressFn progress,
                                                    ModuleDoneFn onModule, int* resumedModules) {
    const ReducedOptions red[2] = {reducedOptions(true), reducedOptions(false)};
    for (const auto& r : red)
        if (r.optionIdx.empty()) return makeError("EXL2: empty candidate table");
    if (windows.empty() || windows[0].empty()) return makeError("EXL2: no calibration rows");
    const int rows = static_cast<int>(windows.size()), len = static_cast<int>(windows[0].size());
    auto runnerR = ModuleRunner::create(model, plan, params.threads, len);
    if (!runnerR) return runnerR.error();
    ModuleRunner& runner = **runnerR;
    const int dim = plan.hp.nEmbd;
    // The reference hidden states, held once: each module's reference output replaces its input row by row.
    calib::StateStore x;
    fs::path spillDir;
    {
        std::error_code ec;
        spillDir = params.spillDir.empty() ? fs::temp_directory_path(ec) : fs::path(params.spillDir);
        if (auto s = x.init(rows, len, dim, params.stateType, params.maxStateMemory, spillDir, "exl2-states"); !s)
            return makeError("EXL2: " + s.error().message);
    }
    if (params.stateBytes) *params.stateBytes = x.bytes();
    if (params.statesSpilled) *params.statesSpilled = x.spilled();
    if (auto s = runner.embedInto(windows, x); !s) return s.error();
    const size_t rowValues = static_cast<size_t>(x.rowValues());
    std::vector<float> xr(rowValues), yr(rowValues), yt(rowValues);

    // Progress units: per module 1 reference forward, 1 per quantization, 1 per option.
    double total = 0, done = 0;
    auto settingsOf = [&](const ModuleRef& m) {
        const auto& r = red[m.attn ? 0 : 1];
        double n = 0;
        if (measuredFromSources(m)) { // the options in table order, a slot quantized again when its setting changes
            std::vector<int> cur(r.slotParams.size(), -1);
            for (const auto& idx : r.optionIdx)
                for (size_t s = 0; s < cur.size(); ++s)
                    if (idx[s] != cur[s]) {
                        cur[s] = idx[s];
                        for (size_t i = 0; i < m.linears.size(); ++i)
                            n += m.slotOf(i) == static_cast<int>(s) ? 1 : 0;
                    }
            return n;
        }
        for (size_t i = 0; i < m.linears.size(); ++i) // every distinct setting of every linear
            n += r.slotParams[m.slotOf(i)].size();
        return n;
    };
    for (const auto& m : plan.modules)
        total += 1 + red[m.attn ? 0 : 1].optionIdx.size() + settingsOf(m);
    std::string step;
    auto report = [&](double units) {
        done += units;
        return !progress || progress(ProgressInfo{std::min(1.0, done / total), step});
    };
    if (resumedModules) *resumedModules = 0;

    std::vector<ModuleMeasurement> result;
    for (size_t mi = 0; mi < plan.modules.size(); ++mi) {
        const ModuleRef& m = plan.modules[mi];
        const auto t0 = Clock::now();
        const ReducedOptions& r = red[m.attn ? 0 : 1];
        const double moduleUnits = 1 + r.optionIdx.size() + settingsOf(m);
        // Evaluated from the model file (an F32 copy of a mixture of experts would be the whole layer's
        // experts); phi3's fused parts from an F32 copy of their weights.
        const bool bySources = measuredFromSources(m);
        ModuleWeights w;
        if (!bySources) {
            auto wr = readModuleWeights(model, m);
            if (!wr) return wr.error();
            w = std::move(*wr);
        }
        const std::string statePath =
            params.stateDir.empty() ? std::string()
                                    : (fs::path(params.stateDir) / ("measure." + m.key + ".json")).string();

        // Resumed: the reference forward only.
        std::error_code ec;
        if (!statePath.empty() && fs::exists(statePath, ec)) {
            auto text = readSmallFile(statePath, size_t{64} << 20);
            Result<ModuleMeasurement> mm = makeError("");
            if (text) {
                try {
                    mm = moduleFromJson(nlohmann::json::parse(*text), m, statePath);
                } catch (const std::exception& e) {
                    mm = makeError(statePath + ": " + e.what());
                }
            }
            if (mm && mm->options.size() == r.optionIdx.size()) {
                step = "measure: " + m.key + " (resumed)";
                for (int row = 0; row < rows; ++row) {
                    if (auto s = x.get(row, xr); !s) return s.error();
                    if (auto s = runner.forwardRow(m, w, xr.data(), len, yr.data()); !s) return s.error();
                    if (auto s = x.put(row, yr); !s) return s.error();
                }
                runner.release(m);
                if (resumedModules) ++*resumedModules;
                if (onModule) onModule(*mm, true, since(t0));
                result.push_back(std::move(*mm));
                if (!report(moduleUnits)) return cancelledError();
                continue;
            }
            fs::remove(statePath, ec); // damaged: measure again
        }

        // Reference forward + Hessians of the distinct inputs.
        step = "measure: " + m.key + " reference";
        auto cancelFn = [&] {
            return progress && !progress(ProgressInfo{std::min(1.0, done / total), step});
        };
        std::vector<calib::HessianAccumulator> acc;
        if (auto a = accumulateHessians(runner, m, w, x, rows, len, cancelFn); !a)
            return a.error();
        else
            acc = std::move(*a);
        if (!report(1)) return cancelledError();
        std::vector<std::unique_ptr<PreparedHessian>> prep;
        step = "measure: " + m.key + " Hessians";
        for (auto& a : acc) {
            auto p = prepareHessian(exl2Hessian(a), a.dim(), cancelFn, runner.threads());
            if (!p) return p.error().cancelled ? p.error() : makeError("EXL2: " + m.key + ": " + p.error().message);
            prep.push_back(std::make_unique<PreparedHessian>(std::move(*p)));
        }
        std::vector<calib::HessianAccumulator>().swap(acc);

        const size_t nLin = m.linears.size(), nSlots = r.slotParams.size(), nOptions = r.optionIdx.size();
        ModuleMeasurement mm;
        mm.key = m.key;
        for (size_t oi = 0; oi < nOptions; ++oi) {
            const auto& idx = r.optionIdx[oi];
            ModuleMeasurement::Option opt;
            for (size_t s = 0; s < nLin; ++s) {
                const LinearRef& L = m.linears[s];
                const int slot = m.slotOf(s);
                opt.totalBits += r.slotParams[slot][idx[slot]].totalBits(L.in, L.out, !L.biasName.empty());
            }
            for (size_t s = 0; s < nSlots; ++s)
                opt.qp.push_back(r.slotParams[s][idx[s]]);
            mm.options.push_back(std::move(opt));
        }
        std::vector<double> errSum(nOptions, 0.0); // Σ over rows of ‖y_test − y_ref‖_F / ‖y_ref‖_F, in row order

        if (bySources) {
            // Option by option: the linears of a slot (a mixture of experts: every expert's, one F32 weight
            // at a time, read from the model file) are quantized into one fp16 buffer per linear when the
            // option changes the slot's setting, and evaluated from those buffers (Fp16Rows); the reference
            // outputs of every row are kept (F32, in memory or spilled as the states are). The same
            // quantizations and the same sums in the same order as the row-by-row loop below: the same
            // accuracies, while memory holds the module once in fp16 instead of every setting of it.
            calib::StateStore yref;
            const uint64_t left = params.maxStateMemory == 0         ? 0
                                  : params.maxStateMemory > x.bytes() ? params.maxStateMemory - x.bytes()
                                                                      : 1;
            if (auto s = yref.init(rows, len, dim, calib::StateType::F32, left, spillDir, "exl2-ref"); !s)
                return makeError("EXL2: " + s.error().message);
            for (int row = 0; row < rows; ++row) {
                if (auto s = x.get(row, xr); !s) return s.error();
                step = "measure: " + m.key + " reference row " + std::to_string(row + 1) + "/" + std::to_string(rows);
                if (auto s = runner.forwardRow(m, w, xr.data(), len, yr.data()); !s) return s.error();
                if (auto s = yref.put(row, yr); !s) return s.error();
                if (cancelFn()) return cancelledError();
            }
            std::vector<std::shared_ptr<std::vector<uint16_t>>> buf(nLin);
            std::vector<std::shared_ptr<const WeightRowSource>> src(nLin);
            try {
                for (size_t s = 0; s < nLin; ++s) {
                    const LinearRef& L = m.linears[s];
                    buf[s] = std::make_shared<std::vector<uint16_t>>(static_cast<size_t>(L.numel()));
                    src[s] = std::make_shared<Fp16Rows>(buf[s], L.out, L.in);
                }
            } catch (const std::bad_alloc&) {
                return makeError("EXL2: out of memory for the experts of " + m.key);
            }
            if (auto s = runner.installSources(m, src); !s) return s.error();
            std::vector<int> cur(nSlots, -1);
            for (size_t oi = 0; oi < nOptions; ++oi) {
                const auto& idx = r.optionIdx[oi];
                for (size_t s = 0; s < nLin; ++s) {
                    const int slot = m.slotOf(s);
                    if (idx[slot] == cur[slot]) continue;
                    const LinearRef& L = m.linears[s];
                    const QParams& qp = r.slotParams[slot][idx[slot]];
                    step = "measure: " + L.prefix + " " + qp.desc();
                    auto W = readTensorF32(model, *model.find(L.weightName));
                    if (!W) return W.error();
                    auto q = quantizeLinear(W->data(), L.out, L.in, *prep[m.hessianOf(s)], qp, cancelFn,
                                            runner.threads());
                    if (!q)
                        return q.error().cancelled ? q.error()
                                                   : makeError(L.weightName + ": " + q.error().message);
                    const auto d = dequantize(*q);
                    std::vector<uint16_t>& h = *buf[s];
                    for (size_t i = 0; i < d.size(); ++i)
                        h[i] = fp32ToFp16(d[i]);
                    if (!report(1)) return cancelledError();
                }
                for (size_t s = 0; s < nSlots; ++s)
                    cur[s] = idx[s];
                for (int row = 0; row < rows; ++row) {
                    if (auto s = x.get(row, xr); !s) return s.error();
                    if (auto s = yref.get(row, yr); !s) return s.error();
                    step = "measure: " + m.key + " option " + std::to_string(oi + 1) + "/" +
                           std::to_string(nOptions) + ", row " + std::to_string(row + 1) + "/" + std::to_string(rows);
                    if (auto s = runner.forwardRow(m, w, xr.data(), len, yt.data()); !s) return s.error();
                    errSum[oi] += rowRelativeError(yt.data(), yr.data(), rowValues);
                    if (!report(1.0 / rows)) return cancelledError();
                }
            }
            runner.release(m);
            for (int row = 0; row < rows; ++row) { // the reference outputs: the next module's input
                if (auto s = yref.get(row, yr); !s) return s.error();
                if (auto s = x.put(row, yr); !s) return s.error();
            }
        } else {
            // Every distinct setting of every linear (per its slot), kept as fp16 (the loader's dequantized
            // values are fp16).
            std::vector<std::vector<std::vector<uint16_t>>> deq(nLin);
            for (size_t s = 0; s < nLin; ++s) {
                const LinearRef& L = m.linears[s];
                const PreparedHessian& H = *prep[m.hessianOf(s)];
                const auto& params = r.slotParams[m.slotOf(s)];
                for (size_t qi = 0; qi < params.size(); ++qi) {
                    const QParams& qp = params[qi];
                    step = "measure: " + L.prefix + " " + qp.desc();
                    auto q = quantizeLinear(w.w[s].data(), L.out, L.in, H, qp, cancelFn, runner.threads());
                    if (!q)
                        return q.error().cancelled ? q.error()
                                                   : makeError(L.weightName + ": " + q.error().message);
                    const auto d = dequantize(*q);
                    std::vector<uint16_t> h(d.size());
                    for (size_t i = 0; i < d.size(); ++i)
                        h[i] = fp32ToFp16(d[i]);
                    deq[s].push_back(std::move(h));
                    if (!report(1)) return cancelledError();
                }
            }

            // Every option of the table, row by row: the row's reference output, then each option's output on
            // the same row; the reference output then replaces the row's input (the next module's input).
            ModuleWeights tw = w;
            std::vector<int> cur(nLin, -1);
            for (int row = 0; row < rows; ++row) {
                if (auto s = x.get(row, xr); !s) return s.error();
                step = "measure: " + m.key + " reference row " + std::to_string(row + 1) + "/" + std::to_string(rows);
                if (auto s = runner.forwardRow(m, w, xr.data(), len, yr.data()); !s) return s.error();
                for (size_t oi = 0; oi < nOptions; ++oi) {
                    const auto& idx = r.optionIdx[oi];
                    for (size_t s = 0; s < nLin; ++s)
                        if (const int want = idx[m.slotOf(s)]; want != cur[s]) {
                            const auto& h = deq[s][want];
                            for (size_t i = 0; i < h.size(); ++i)
                                tw.w[s][i] = fp16ToFp32(h[i]);
                            cur[s] = want;
                        }
                    step = "measure: " + m.key + " option " + std::to_string(oi + 1) + "/" + std::to_string(nOptions) +
                           ", row " + std::to_string(row + 1) + "/" + std::to_string(rows);
                    if (auto s = runner.forwardRow(m, tw, xr.data(), len, yt.data()); !s) return s.error();
                    errSum[oi] += rowRelativeError(yt.data(), yr.data(), rowValues);
                    if (!report(1.0 / rows)) return cancelledError();
                }
                if (auto s = x.put(row, yr); !s) return s.error();
            }
            runner.release(m);
        }
        for (size_t oi = 0; oi < nOptions; ++oi)
            mm.options[oi].accuracy = std::max(1e-6, 1.0 - errSum[oi] / std::max(1, rows));
        if (!statePath.empty())
            if (auto s = writeFileAtomic(statePath, moduleMeasurementJson(mm, m)); !s) return s.error();
        if (onModule) onModule(mm, false, since(t0));
        result.push_back(std::move(mm));
    }
    return result;
}

} // namespace qz::exl2
