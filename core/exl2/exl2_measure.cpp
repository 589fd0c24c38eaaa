#include "exl2/exl2_measure.h"

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <span>
#include <unistd.h>

#include "common/file_util.h"
#include "common/fp16.h"
#include "common/parallel.h"
#include "infer/matmul.h"
#include "infer/ops.h"

namespace qz::exl2 {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

using MatMap = Eigen::Map<Eigen::MatrixXf>;
using CMatMap = Eigen::Map<const Eigen::MatrixXf>;

const char* kAttnSlots[] = {"q_proj", "k_proj", "v_proj", "o_proj"};
const char* kMlpSlots[] = {"gate_proj", "up_proj", "down_proj"};

std::vector<std::string> slotNames(bool attn) {
    if (attn) return {kAttnSlots, kAttnSlots + 4};
    return {kMlpSlots, kMlpSlots + 3};
}

bool endsWith(const std::string& s, const std::string& t) {
    return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}

void rmsNorm(const float* x, int64_t nTok, int dim, const std::vector<float>& g, float eps, float* out) {
    rmsNormColumns(x, nTok, dim, g.data(), eps, out);
}

void linear(const std::vector<float>& W, const std::vector<float>& b, int out, int in, const float* x,
            int64_t n, float* y, int threads) {
    linearForward(W.data(), out, in, x, n, y, out, threads);
    if (!b.empty())
        for (int64_t t = 0; t < n; ++t)
            for (int r = 0; r < out; ++r)
                y[t * out + r] += b[r];
}

void applyRope(float* M, int64_t len, int rows, int nHeads, int hd, int nRot,
               const std::vector<double>& invFreq, float linearScale) {
    applyRopeColumns(M, len, rows, nHeads, hd, nRot, 0, invFreq, linearScale);
}

// The engine's RoPE frequencies for an HF config (infer/engine_load.cpp): the base frequencies divided by
// the llama3 factors when rope_scaling is llama3.
std::vector<double> ropeInvFreq(const InferHParams& hp) {
    std::vector<double> f = ropeBaseFrequencies(hp);
    const std::vector<float> factors = llama3RopeFactors(hp, f);
    for (size_t i = 0; i < factors.size(); ++i) f[i] /= factors[i];
    return f;
}

nlohmann::ordered_json optionsJson(const ModuleMeasurement& m) {
    const auto names = slotNames(endsWith(m.key, ".self_attn"));
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
    const auto names = slotNames(ref.attn);
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
            if (auto g = planGroups(*qp, ref.linears[s].in); !g)
                return makeError(oc + " " + names[s] + ": " + g.error().message);
            expect += qp->totalBits(ref.linears[s].in, ref.linears[s].out, !ref.linears[s].biasName.empty());
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

int64_t ModuleRef::numel() const {
    int64_t n = 0;
    for (const auto& l : linears)
        n += l.numel();
    return n;
}

int64_t ModelPlan::decoderNumel() const {
    int64_t n = 0;
    for (const auto& m : modules)
        n += m.numel();
    return n;
}

Result<ModelPlan> planModel(const Model& model) {
    const std::string arch = model.architecture;
    if (arch == "gpt2")
        return makeError(
            "EXL2: exllamav2 does not support GPT-2 models (architecture gpt2); llama, mistral and "
            "qwen2 models can be exported");
    if (arch != "llama" && arch != "mistral" && arch != "qwen2")
        return makeError("EXL2: architecture '" + arch + "' is not supported (llama, mistral, qwen2 are)");
    if (model.format != ModelFormat::HuggingFaceFolder)
        return makeError("EXL2 export needs a Hugging Face model folder (config.json + safetensors)");
    auto hp = readInferHParams(model);
    if (!hp) return hp.error();
    ModelPlan plan;
    plan.hp = *hp;
    const InferHParams& h = plan.hp;
    const int qDim = h.nHead * h.headDim, kvDim = h.nHeadKv * h.headDim;
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
        if (in % 32 != 0)
            return makeError("EXL2: " + L.weightName + " has " + std::to_string(in) +
                             " input features, not a multiple of 32 (EXL2 groups need it)");
        if (const TensorInfo* b = model.find(prefix + ".bias")) {
            if (b->shape != std::vector<int64_t>{out})
                return makeError("EXL2: " + prefix + ".bias has a wrong shape");
            L.biasName = prefix + ".bias";
        }
        return L;
    };
    auto checkVec = [&](const std::string& name, int n) -> Status {
        const TensorInfo* t = model.find(name);
        if (!t) return makeError("EXL2: " + model.path + " lacks " + name);
        if (t->shape != std::vector<int64_t>{n})
            return makeError("EXL2: " + name + " has shape " + t->shapeString());
        return okStatus();
    };
    for (int l = 0; l < h.nLayer; ++l) {
        const std::string lp = "model.layers." + std::to_string(l);
        for (int a = 0; a < 2; ++a) {
            ModuleRef m;
            m.layer = l;
            m.attn = a == 0;
            m.key = lp + (m.attn ? ".self_attn" : ".mlp");
            m.normName = lp + (m.attn ? ".input_layernorm.weight" : ".post_attention_layernorm.weight");
            if (auto s = checkVec(m.normName, h.nEmbd); !s) return s.error();
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
            for (const auto& s : specs) {
                auto L = linearRef(m.key + "." + s.slot, s.slot, s.out, s.in);
                if (!L) return L.error();
                m.linears.push_back(std::move(*L));
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
        plan.head = std::move(*L);
    }
    return plan;
}

ModuleRunner::ModuleRunner(const ModelPlan& plan, int threads)
    : m_plan(plan), m_threads(threads > 0 ? threads : defaultThreadCount()), m_invFreq(ropeInvFreq(plan.hp)) {
}

Result<States> ModuleRunner::embed(const Model& model,
                                   const std::vector<std::vector<int32_t>>& windows) const {
    const TensorInfo* t = model.find(m_plan.embedName);
    auto e = readTensorF32(model, *t);
    if (!e) return e.error();
    States s;
    s.rows = static_cast<int>(windows.size());
    s.len = windows.empty() ? 0 : static_cast<int>(windows[0].size());
    s.dim = m_plan.hp.nEmbd;
    if (s.rows == 0 || s.len == 0) return makeError("EXL2: no calibration rows");
    const int64_t nVocab = t->shape[0];
    s.data.resize(static_cast<size_t>(s.rows) * s.len * s.dim);
    for (int r = 0; r < s.rows; ++r) {
        if (static_cast<int>(windows[r].size()) != s.len)
            return makeError("EXL2: calibration rows differ in length");
        for (int i = 0; i < s.len; ++i) {
            const int32_t tok = windows[r][i];
            if (tok < 0 || tok >= nVocab)
                return makeError("EXL2: token id " + std::to_string(tok) + " out of range");
            std::copy_n(e->data() + static_cast<size_t>(tok) * s.dim, s.dim,
                        s.row(r) + static_cast<size_t>(i) * s.dim);
        }
    }
    return s;
}

Status ModuleRunner::embedInto(const Model& model, const std::vector<std::vector<int32_t>>& windows,
                              calib::StateStore& states) const {
    const TensorInfo* t = model.find(m_plan.embedName);
    auto e = readTensorF32(model, *t);
    if (!e) return e.error();
    const int dim = m_plan.hp.nEmbd;
    if (windows.empty() || windows[0].empty()) return makeError("EXL2: no calibration rows");
    const size_t len = windows[0].size();
    if (states.rows() != static_cast<int64_t>(windows.size()) ||
        states.rowValues() != static_cast<int64_t>(len) * dim)
        return makeError("EXL2: the state store does not fit the calibration rows");
    const int64_t nVocab = t->shape[0];
    std::vector<float> row(len * static_cast<size_t>(dim));
    for (size_t r = 0; r < windows.size(); ++r) {
        if (windows[r].size() != len) return makeError("EXL2: calibration rows differ in length");
        for (size_t i = 0; i < len; ++i) {
            const int32_t tok = windows[r][i];
            if (tok < 0 || tok >= nVocab) return makeError("EXL2: token id " + std::to_string(tok) + " out of range");
            std::copy_n(e->data() + static_cast<size_t>(tok) * dim, dim, row.data() + i * dim);
        }
        if (auto s = states.put(static_cast<int64_t>(r), row); !s) return s;
    }
    return okStatus();
}

void ModuleRunner::finalNormRow(const float* x, int len, const std::vector<float>& g, float* out) const {
    rmsNorm(x, len, m_plan.hp.nEmbd, g, m_plan.hp.normEps, out);
}

std::vector<float> ModuleRunner::finalNorm(const States& x, const std::vector<float>& g) const {
    std::vector<float> out(x.data.size());
    rmsNorm(x.data.data(), static_cast<int64_t>(x.rows) * x.len, x.dim, g, m_plan.hp.normEps, out.data());
    return out;
}

double ModuleRunner::nextTokenNll(const States& x, int rows, const std::vector<float>& g,
                                  const std::vector<float>& W, const std::vector<float>& bias,
                                  const std::vector<std::vector<int32_t>>& windows, int64_t* count) const {
    double nll = 0;
    int64_t n = 0;
    for (int r = 0; r < std::min(rows, x.rows); ++r)
        addNextTokenNll(x.row(r), x.len, g, W, bias, windows[r], &nll, &n);
    if (count) *count = n;
    return nll;
}

void ModuleRunner::addNextTokenNll(const float* x, int len, const std::vector<float>& g, const std::vector<float>& W,
                                   const std::vector<float>& bias, const std::vector<int32_t>& window, double* nll,
                                   int64_t* count) const {
    const int dim = m_plan.hp.nEmbd;
    const int64_t vocab = static_cast<int64_t>(W.size()) / dim;
    std::vector<float> xn(static_cast<size_t>(len) * dim), logits(static_cast<size_t>(len) * vocab);
    rmsNorm(x, len, dim, g, m_plan.hp.normEps, xn.data());
    linearForward(W.data(), vocab, dim, xn.data(), len, logits.data(), vocab, m_threads);
    for (int t = 0; t + 1 < len; ++t) {
        const float* l = logits.data() + static_cast<size_t>(t) * vocab;
        double mx = -INFINITY;
        for (int64_t v = 0; v < vocab; ++v)
            mx = std::max(mx, static_cast<double>(l[v] + (bias.empty() ? 0.f : bias[v])));
        double se = 0;
        for (int64_t v = 0; v < vocab; ++v)
            se += std::exp(l[v] + (bias.empty() ? 0.f : bias[v]) - mx);
        const int32_t tgt = window[t + 1];
        *nll += mx + std::log(se) - (l[tgt] + (bias.empty() ? 0.f : bias[tgt]));
        ++*count;
    }
}

Status ModuleRunner::forward(const ModuleRef& m, const ModuleWeights& w, const States& x, States* out,
                             const CaptureFn& capture) const {
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
                                const CaptureFn& capture) const {
    const InferHParams& hp = m_plan.hp;
    const int dim = hp.nEmbd;
    const int threads = m_threads;
    try {
        std::vector<float> N(static_cast<size_t>(len) * dim), T(static_cast<size_t>(len) * dim);
        {
            rmsNorm(X, len, dim, w.norm, hp.normEps, N.data());
            if (capture) capture(0, N.data(), len, dim);
            if (m.attn) {
                const int hd = hp.headDim, qDim = hp.nHead * hd, kvDim = hp.nHeadKv * hd;
                const int group = hp.nHead / hp.nHeadKv;
                std::vector<float> Q(static_cast<size_t>(len) * qDim), K(static_cast<size_t>(len) * kvDim),
                    V(static_cast<size_t>(len) * kvDim), A(static_cast<size_t>(len) * qDim);
                linear(w.w[0], w.b[0], qDim, dim, N.data(), len, Q.data(), threads);
                linear(w.w[1], w.b[1], kvDim, dim, N.data(), len, K.data(), threads);
                linear(w.w[2], w.b[2], kvDim, dim, N.data(), len, V.data(), threads);
                applyRope(Q.data(), len, qDim, hp.nHead, hd, hp.nRot, m_invFreq, hp.ropeLinearScale);
                applyRope(K.data(), len, kvDim, hp.nHeadKv, hd, hp.nRot, m_invFreq, hp.ropeLinearScale);
                const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
                CMatMap Qm(Q.data(), qDim, len), Km(K.data(), kvDim, len), Vm(V.data(), kvDim, len);
                MatMap Am(A.data(), qDim, len);
                parallelFor(
                    static_cast<size_t>(hp.nHead),
                    [&](size_t h0, size_t h1, int) {
                        Eigen::MatrixXf S;
                        for (size_t h = h0; h < h1; ++h) {
                            const Eigen::Index kvRow = static_cast<Eigen::Index>(h / group) * hd;
                            const Eigen::Index qRow = static_cast<Eigen::Index>(h) * hd;
                            S.noalias() = Km.middleRows(kvRow, hd).transpose() *
                                          Qm.middleRows(qRow, hd); // [key][query]
                            for (int t = 0; t < len; ++t) {
                                float* s = S.col(t).data();
                                float mx = -INFINITY;
                                for (int j = 0; j <= t; ++j) {
                                    s[j] *= scale;
                                    mx = std::max(mx, s[j]);
                                }
                                double sum = 0;
                                for (int j = 0; j <= t; ++j) {
                                    s[j] = std::exp(s[j] - mx);
                                    sum += s[j];
                                }
                                const float inv = static_cast<float>(1.0 / sum);
                                for (int j = 0; j <= t; ++j)
                                    s[j] *= inv;
                                for (int j = t + 1; j < len; ++j)
                                    s[j] = 0.0f;
                            }
                            Am.middleRows(qRow, hd).noalias() = Vm.middleRows(kvRow, hd) * S;
                        }
                    },
                    threads);
                if (capture) capture(1, A.data(), len, qDim);
                if (!Y) return okStatus();
                linear(w.w[3], w.b[3], dim, qDim, A.data(), len, T.data(), threads);
            } else {
                const int ff = hp.nFf;
                std::vector<float> G(static_cast<size_t>(len) * ff), U(static_cast<size_t>(len) * ff);
                linear(w.w[0], w.b[0], ff, dim, N.data(), len, G.data(), threads);
                linear(w.w[1], w.b[1], ff, dim, N.data(), len, U.data(), threads);
                for (size_t i = 0; i < U.size(); ++i) {
                    const float g = G[i];
                    U[i] *= g / (1.0f + std::exp(-g));
                }
                if (capture) capture(1, U.data(), len, ff);
                if (!Y) return okStatus();
                linear(w.w[2], w.b[2], dim, ff, U.data(), len, T.data(), threads);
            }
            const size_t n = static_cast<size_t>(len) * dim;
            for (size_t i = 0; i < n; ++i) {
                Y[i] = X[i] + T[i];
                if (!std::isfinite(Y[i]))
                    return makeError("EXL2: " + m.key + " produced a non-finite hidden state");
            }
        }
    } catch (const std::bad_alloc&) {
        return makeError("EXL2: out of memory in " + m.key);
    }
    return okStatus();
}

Result<ModuleWeights> readModuleWeights(const Model& model, const ModuleRef& m) {
    ModuleWeights w;
    auto n = readTensorF32(model, *model.find(m.normName));
    if (!n) return n.error();
    w.norm = std::move(*n);
    for (const auto& L : m.linears) {
        auto v = readTensorF32(model, *model.find(L.weightName));
        if (!v) return v.error();
        w.w.push_back(std::move(*v));
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

std::string moduleMeasurementJson(const ModuleMeasurement& m, const ModuleRef&) {
    return optionsJson(m).dump(4);
}

std::string measurementJson(const std::vector<ModuleMeasurement>& m, int lastModuleIdx) {
    nlohmann::ordered_json j;
    j["measurement"] = nlohmann::ordered_json::object();
    for (const auto& mm : m)
        j["measurement"][mm.key] = optionsJson(mm);
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

Result<std::vector<ModuleMeasurement>> measureModel(const Model& model, const ModelPlan& plan,
                                                    const std::vector<std::vector<int32_t>>& windows,
                                                    const MeasureParams& params, ProgressFn progress,
                                                    ModuleDoneFn onModule, int* resumedModules) {
    const ReducedOptions red[2] = {reducedOptions(true), reducedOptions(false)};
    for (const auto& r : red)
        if (r.optionIdx.empty()) return makeError("EXL2: empty candidate table");
    ModuleRunner runner(plan, params.threads);
    if (windows.empty() || windows[0].empty()) return makeError("EXL2: no calibration rows");
    const int rows = static_cast<int>(windows.size()), len = static_cast<int>(windows[0].size());
    const int dim = plan.hp.nEmbd;
    // The reference hidden states, held once: each module's reference output replaces its input row by row.
    calib::StateStore x;
    {
        std::error_code ec;
        const fs::path spillDir =
            params.spillDir.empty() ? fs::temp_directory_path(ec) : fs::path(params.spillDir);
        if (auto s = x.init(rows, len, dim, params.stateType, params.maxStateMemory, spillDir, "exl2-states"); !s)
            return makeError("EXL2: " + s.error().message);
    }
    if (params.stateBytes) *params.stateBytes = x.bytes();
    if (params.statesSpilled) *params.statesSpilled = x.spilled();
    if (auto s = runner.embedInto(model, windows, x); !s) return s.error();
    const size_t rowValues = static_cast<size_t>(x.rowValues());
    std::vector<float> xr(rowValues), yr(rowValues), yt(rowValues);

    // Progress units: per module 1 reference forward, 1 per quantization, 1 per option.
    double total = 0, done = 0;
    for (const auto& m : plan.modules) {
        const auto& r = red[m.attn ? 0 : 1];
        total += 1 + r.optionIdx.size();
        for (const auto& s : r.slotParams)
            total += s.size();
    }
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
        double moduleUnits = 1 + r.optionIdx.size();
        for (const auto& s : r.slotParams)
            moduleUnits += s.size();
        auto w = readModuleWeights(model, m);
        if (!w) return w.error();
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
                    if (auto s = runner.forwardRow(m, *w, xr.data(), len, yr.data()); !s) return s.error();
                    if (auto s = x.put(row, yr); !s) return s.error();
                }
                if (resumedModules) ++*resumedModules;
                if (onModule) onModule(*mm, true, since(t0));
                result.push_back(std::move(*mm));
                if (!report(moduleUnits)) return cancelledError();
                continue;
            }
            fs::remove(statePath, ec); // damaged: measure again
        }

        // Reference forward + Hessians of the two distinct inputs.
        const int in0 = m.linears[0].in, in1 = m.linears.back().in;
        calib::HessianAccumulator acc[2] = {calib::HessianAccumulator(in0), calib::HessianAccumulator(in1)};
        step = "measure: " + m.key + " reference";
        auto cancelFn = [&] {
            return progress && !progress(ProgressInfo{std::min(1.0, done / total), step});
        };
        const CaptureFn capture = [&](int which, const float* xi, int64_t nTok, int64_t nIn) {
            if (nIn == acc[which].dim()) acc[which].add(xi, nTok, runner.threads());
        };
        for (int row = 0; row < rows; ++row) {
            if (auto s = x.get(row, xr); !s) return s.error();
            if (auto s = runner.forwardRow(m, *w, xr.data(), len, nullptr, capture); !s) return s.error();
            if (cancelFn()) return cancelledError();
        }
        if (!report(1)) return cancelledError();
        std::vector<std::unique_ptr<PreparedHessian>> prep;
        step = "measure: " + m.key + " Hessians";
        for (auto& a : acc) {
            a.countSample(rows);
            auto p = prepareHessian(exl2Hessian(a), a.dim(), cancelFn, runner.threads());
            if (!p) return p.error().cancelled ? p.error() : makeError("EXL2: " + m.key + ": " + p.error().message);
            prep.push_back(std::make_unique<PreparedHessian>(std::move(*p)));
        }

        // Every distinct setting of every slot, kept as fp16 (the loader's dequantized values are fp16).
        const size_t nSlots = m.linears.size();
        std::vector<std::vector<std::vector<uint16_t>>> deq(nSlots);
        std::vector<std::vector<int64_t>> bits(nSlots);
        for (size_t s = 0; s < nSlots; ++s) {
            const LinearRef& L = m.linears[s];
            const PreparedHessian& H = *prep[s + 1 == nSlots ? 1 : 0];
            for (size_t qi = 0; qi < r.slotParams[s].size(); ++qi) {
                const QParams& qp = r.slotParams[s][qi];
                step = "measure: " + L.prefix + " " + qp.desc();
                auto q = quantizeLinear(w->w[s].data(), L.out, L.in, H, qp, cancelFn, runner.threads());
                if (!q)
                    return q.error().cancelled ? q.error()
                                               : makeError(L.weightName + ": " + q.error().message);
                const auto d = dequantize(*q);
                std::vector<uint16_t> h(d.size());
                for (size_t i = 0; i < d.size(); ++i)
                    h[i] = fp32ToFp16(d[i]);
                deq[s].push_back(std::move(h));
                bits[s].push_back(qp.totalBits(L.in, L.out, !L.biasName.empty()));
                if (!report(1)) return cancelledError();
            }
        }

        // Every option of the table, row by row: the row's reference output, then each option's output on
        // the same row; the reference output then replaces the row's input (the next module's input).
        ModuleMeasurement mm;
        mm.key = m.key;
        const size_t nOptions = r.optionIdx.size();
        for (size_t oi = 0; oi < nOptions; ++oi) {
            const auto& idx = r.optionIdx[oi];
            ModuleMeasurement::Option opt;
            for (size_t s = 0; s < nSlots; ++s) {
                opt.totalBits += bits[s][idx[s]];
                opt.qp.push_back(r.slotParams[s][idx[s]]);
            }
            mm.options.push_back(std::move(opt));
        }
        std::vector<double> errSum(nOptions, 0.0); // Σ over rows of ‖y_test − y_ref‖_F / ‖y_ref‖_F, in row order
        ModuleWeights tw = *w;
        std::vector<int> cur(nSlots, -1);
        for (int row = 0; row < rows; ++row) {
            if (auto s = x.get(row, xr); !s) return s.error();
            step = "measure: " + m.key + " reference row " + std::to_string(row + 1) + "/" + std::to_string(rows);
            if (auto s = runner.forwardRow(m, *w, xr.data(), len, yr.data()); !s) return s.error();
            for (size_t oi = 0; oi < nOptions; ++oi) {
                const auto& idx = r.optionIdx[oi];
                for (size_t s = 0; s < nSlots; ++s)
                    if (idx[s] != cur[s]) {
                        const auto& h = deq[s][idx[s]];
                        for (size_t i = 0; i < h.size(); ++i)
                            tw.w[s][i] = fp16ToFp32(h[i]);
                        cur[s] = idx[s];
                    }
                step = "measure: " + m.key + " option " + std::to_string(oi + 1) + "/" + std::to_string(nOptions) +
                       ", row " + std::to_string(row + 1) + "/" + std::to_string(rows);
                if (auto s = runner.forwardRow(m, tw, xr.data(), len, yt.data()); !s) return s.error();
                errSum[oi] += rowRelativeError(yt.data(), yr.data(), rowValues);
                if (!report(1.0 / rows)) return cancelledError();
            }
            if (auto s = x.put(row, yr); !s) return s.error();
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
