// Forward pass of qz::Engine (see engine.h for the maths).
#include "infer/engine.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "common/fp16.h"
#include "common/parallel.h"
#include "infer/engine_impl.h"
#include "infer/matmul.h"
#include "infer/ops.h"
#include "model/convert.h"

namespace qz {

namespace {

// Y[nOut × n] = W·X (+ b), X [nIn × n]: every linear layer of the engine goes through here
// (weights as stored, engine_impl.h storedLinear).
void linear(const Engine::Impl& e, const InferLinear& L, const InferMat& X, InferMat& Y) {
    const int n = static_cast<int>(X.cols());
    Y.resize(L.nOut, n);
    storedLinear(L.w, L.rowOrder, X.data(), n, Y.data(), L.nOut, e.threads, e.ggmlActivations);
    if (!L.b.empty())
        for (int c = 0; c < n; ++c)
            for (int r = 0; r < L.nOut; ++r) Y(r, c) += L.b[r];
}

// out = x / sqrt(mean(x²) + eps) · g, per column (infer/ops.h).
void rmsNorm(const InferMat& X, const std::vector<float>& g, float eps, InferMat& out) {
    out.resize(X.rows(), X.cols());
    rmsNormColumns(X.data(), X.cols(), X.rows(), g.data(), eps, out.data());
}

// out = (x − mean) / sqrt(var + eps) · g + b, per column.
void layerNorm(const InferMat& X, const std::vector<float>& g, const std::vector<float>& b, float eps,
               InferMat& out) {
    out.resize(X.rows(), X.cols());
    const Eigen::Index d = X.rows();
    for (Eigen::Index c = 0; c < X.cols(); ++c) {
        const float* x = X.col(c).data();
        double s = 0;
        for (Eigen::Index i = 0; i < d; ++i) s += x[i];
        const float mean = static_cast<float>(s / d);
        double v = 0;
        for (Eigen::Index i = 0; i < d; ++i) v += static_cast<double>(x[i] - mean) * (x[i] - mean);
        const float scale = 1.0f / std::sqrt(static_cast<float>(v / d) + eps);
        float* o = out.col(c).data();
        for (Eigen::Index i = 0; i < d; ++i) o[i] = (x[i] - mean) * scale * g[i] + b[i];
    }
}

// Rotate-half RoPE (infer/ops.h), column t at position pos0 + t.
void applyRope(InferMat& M, int nHeads, int hd, int nRot, int pos0, const std::vector<double>& invFreq,
               float linearScale) {
    applyRopeColumns(M.data(), M.cols(), M.rows(), nHeads, hd, nRot, pos0, invFreq, linearScale);
}

inline float geluTanh(float x) {
    constexpr float kSqrt2OverPi = 0.79788456080286535588f;
    return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * x * (1.0f + 0.044715f * x * x)));
}

inline float silu(float x) { return x / (1.0f + std::exp(-x)); }

}  // namespace

Engine::Engine(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}
Engine::~Engine() = default;

const InferHParams& Engine::hparams() const { return m_impl->hp; }
int Engine::nVocab() const { return m_impl->hp.nVocab; }
int Engine::nCtxMax() const { return m_impl->nCtxMax; }
int Engine::threads() const { return m_impl->threads; }
void Engine::setThreads(int n) { m_impl->threads = n > 0 ? n : defaultThreadCount(); }
void Engine::reset() { m_impl->nCached = 0; }
void Engine::setObserver(LinearObserver observer) { m_impl->observer = std::move(observer); }

void Engine::setLayerLimit(int n) {
    m_impl->layerLimit = (n <= 0 || n >= m_impl->hp.nLayer) ? 0 : n;
    m_impl->nCached = 0;
}

int Engine::layerLimit() const { return m_impl->layerLimit > 0 ? m_impl->layerLimit : m_impl->hp.nLayer; }

bool Engine::hasWeight(const std::string& name) const { return m_impl->slots.count(name) != 0; }

namespace {
uint64_t slotNumel(const InferWeightSlot& slot) {
    uint64_t numel = 1;
    for (int64_t d : slot.shape) numel *= static_cast<uint64_t>(d);
    return numel;
}
}  // namespace

Status Engine::setWeight(const std::string& name, std::span<const float> values) {
    auto it = m_impl->slots.find(name);
    if (it == m_impl->slots.end()) return makeError("setWeight: the engine holds no tensor named " + name);
    const InferWeightSlot& slot = it->second;
    const uint64_t numel = slotNumel(slot);
    if (values.size() != numel)
        return makeError("setWeight: " + name + " needs " + std::to_string(numel) + " values, got " +
                         std::to_string(values.size()));
    for (float v : values)
        if (!std::isfinite(v)) return makeError("setWeight: " + name + " contains NaN or Inf");
    try {
        assignWeight(slot, std::vector<float>(values.begin(), values.end()));
    } catch (const std::bad_alloc&) {
        return makeError("setWeight: out of memory for " + name);
    }
    m_impl->nCached = 0;
    return okStatus();
}

Status Engine::resetWeight(const std::string& name) {
    auto it = m_impl->slots.find(name);
    if (it == m_impl->slots.end()) return makeError("resetWeight: the engine holds no tensor named " + name);
    const InferWeightSlot& slot = it->second;
    if (!slot.srcBytes) return makeError("resetWeight: " + name + " is not in the model file");
    m_impl->nCached = 0;
    if (slot.matrix && !slot.conv1d && slot.matrix->view) {
        std::vector<float>().swap(slot.matrix->owned);
        slot.matrix->source.reset();
        return okStatus();
    }
    if (!slot.experts.empty() && slot.experts[0]->view) {  // a GGUF 3-D expert tensor: back to the views
        for (StoredMatrix* m : slot.experts) std::vector<float>().swap(m->owned);
        return okStatus();
    }
    try {
        std::vector<float> v(slotNumel(slot));
        if (auto st = convertToF32(slot.srcType, slot.srcBytes, v.size(), v.data()); !st) return st;
        for (float x : v)
            if (!std::isfinite(x)) return makeError("resetWeight: " + name + " contains NaN or Inf");
        assignWeight(slot, std::move(v));
    } catch (const std::bad_alloc&) {
        return makeError("resetWeight: out of memory for " + name);
    }
    return okStatus();
}

uint64_t Engine::residentWeightBytes() const {
    uint64_t bytes = 0;
    for (const auto& [name, slot] : m_impl->slots) {
        if (slot.matrix) bytes += slot.matrix->owned.capacity() * sizeof(float);
        if (slot.matrix && slot.matrix->source) bytes += slot.matrix->source->residentBytes();
        if (slot.dst) bytes += slot.dst->capacity() * sizeof(float);
        for (const StoredMatrix* m : slot.experts) bytes += m->owned.capacity() * sizeof(float);
    }
    for (const InferLayer& L : m_impl->layers)
        for (const InferLinear* lin : {&L.q, &L.k, &L.v, &L.qkv, &L.o, &L.gate, &L.up, &L.down})
            bytes += lin->rowOrder.capacity() * sizeof(int32_t);
    return bytes;
}

bool Engine::ggmlActivations() const { return m_impl->ggmlActivations; }

Result<std::unique_ptr<Engine>> Engine::load(const Model& model, const EngineOptions& options, ProgressFn progress) {
    auto hp = readInferHParams(model);
    if (!hp) return hp.error();
    auto impl = std::make_unique<Impl>();
    impl->hp = std::move(hp).value();
    impl->threads = options.threads > 0 ? options.threads : defaultThreadCount();
    int cap = options.nCtx > 0 ? options.nCtx : std::min(impl->hp.nCtxTrain, 4096);
    if (cap < 1 || cap > (1 << 22)) return makeError("context size out of range");
    if (impl->hp.arch == InferArch::Gpt2 && cap > impl->hp.nCtxTrain)
        return makeError(model.path + ": GPT-2 has learned positions for only " +
                         std::to_string(impl->hp.nCtxTrain) + " tokens");
    impl->nCtxMax = cap;
    impl->kvF16 = options.kvF16;
    impl->ggmlActivations = options.ggmlActivations.value_or(model.format == ModelFormat::Gguf);
    impl->files = model.files;
    if ((impl->hp.arch == InferArch::Gpt2 || impl->hp.gemma) && options.ggmlGelu) {
        impl->geluTable.resize(1 << 16);
        for (uint32_t h = 0; h < (1u << 16); ++h)
            impl->geluTable[h] = fp16ToFp32(fp32ToFp16(geluTanh(fp16ToFp32(static_cast<uint16_t>(h)))));
    }
    auto st = loadEngineWeights(model, options, std::move(progress), *impl);
    if (!st) return st.error();
    impl->kCache.resize(impl->hp.nLayer);
    impl->vCache.resize(impl->hp.nLayer);
    std::unique_ptr<Engine> engine(new Engine(std::move(impl)));
    if (options.sources)
        for (const auto& [name, source] : *options.sources) {
            if (!engine->hasWeight(name)) continue; // as overrides: tensors the engine does not use
            if (auto s2 = engine->setWeightSource(name, source); !s2) return s2.error();
        }
    return engine;
}

namespace {

// Makes room for nKv positions in every layer's KV cache (keeping the cached values).
void growCache(Engine::Impl& e, int nKv) {
    if (nKv <= e.cacheCap) return;
    const int kvDim = e.hp.nHeadKv * e.hp.headDim;
    const int cap = std::max(nKv, std::min(e.nCtxMax, std::max(2 * e.cacheCap, 256)));
    for (int l = 0; l < e.hp.nLayer; ++l) {
        e.kCache[l].conservativeResize(kvDim, cap);
        e.vCache[l].conservativeResize(kvDim, cap);
    }
    e.cacheCap = cap;
}

// Scratch matrices of one block evaluation (kept across blocks so they are allocated once per eval).
struct BlockScratch {
    InferMat H, Q, K, V, A, T, G, U;
};

// RMSNorm over each head's headDim values of M [nHeads·hd × n] in place (q/k norms).
void headNorm(InferMat& M, int hd, const std::vector<float>& g, float eps) {
    InferMat tmp = M;
    rmsNormColumns(tmp.data(), tmp.size() / hd, hd, g.data(), eps, M.data());
}

// x·tanh-free GELU: ggml's fp16 table when present, else the float tanh approximation.
inline float geluOf(const std::vector<float>& table, float v) {
    if (table.empty()) return geluTanh(v);
    if (v <= -10.0f) return 0.0f;
    if (v >= 10.0f) return v;
    return table[fp32ToFp16(v)];
}

// Mixture-of-experts feed-forward on H [nEmbd × n] into T (llama.cpp build_moe_ffn with softmax gating;
// transformers' Qwen3MoeSparseMoeBlock / MixtralSparseMoeBlock): router probabilities p = softmax(R·h),
// the nExpertUsed largest (ties: lower index first), weights p_e (renormalised to sum 1 when
// expertNormTopK), out = Σ_e w_e · down_e(SiLU(gate_e·h) ⊙ up_e·h). Each expert runs once on the tokens
// routed to it; the observer sees each expert's gathered inputs under its own name.
void moeForward(const Engine::Impl& e, const InferLayer& L, const InferMat& H, InferMat& T,
                const std::function<void(const std::string&, const InferMat&)>& observe, BlockStage stopAt,
                bool& stopped) {
    const InferHParams& hp = e.hp;
    const int n = static_cast<int>(H.cols()), E = hp.nExpert, K = hp.nExpertUsed;
    const int d = hp.nEmbd;
    observe(L.router.name, H);
    InferMat R;
    linear(e, L.router, H, R);
    std::vector<std::vector<std::pair<int, float>>> routed(E);  // expert -> (token, weight)
    std::vector<int> idx(E);
    std::vector<double> pr(E);
    std::vector<int> badTokens;  // non-finite router logits (weights are not scanned at load)
    for (int t = 0; t < n; ++t) {
        if (!R.col(t).allFinite()) {
            badTokens.push_back(t);  // routed nowhere; its output is made NaN so the logits check fails
            continue;
        }
        double mx = -INFINITY;
        for (int x = 0; x < E; ++x) mx = std::max(mx, static_cast<double>(R(x, t)));
        double sum = 0;
        for (int x = 0; x < E; ++x) sum += (pr[x] = std::exp(static_cast<double>(R(x, t)) - mx));
        for (int x = 0; x < E; ++x) pr[x] /= sum;
        for (int x = 0; x < E; ++x) idx[x] = x;
        std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return pr[a] > pr[b]; });
        double wsum = 0;
        for (int k = 0; k < K; ++k) wsum += pr[idx[k]];
        for (int k = 0; k < K; ++k) {
            const double w = hp.expertNormTopK ? pr[idx[k]] / wsum : pr[idx[k]];
            routed[idx[k]].push_back({t, static_cast<float>(w)});
        }
    }
    std::vector<InferMat> Xe(E), Ue(E);
    for (int x = 0; x < E; ++x) {
        if (routed[x].empty()) continue;
        Xe[x].resize(d, static_cast<Eigen::Index>(routed[x].size()));
        for (size_t i = 0; i < routed[x].size(); ++i) Xe[x].col(i) = H.col(routed[x][i].first);
        observe(L.gateExps[x].name, Xe[x]);
        observe(L.upExps[x].name, Xe[x]);
    }
    if (stopAt == BlockStage::FfnInput) {
        stopped = true;
        return;
    }
    InferMat G;
    for (int x = 0; x < E; ++x) {
        if (routed[x].empty()) continue;
        linear(e, L.gateExps[x], Xe[x], G);
        linear(e, L.upExps[x], Xe[x], Ue[x]);
        Ue[x] = G.unaryExpr([](float v) { return silu(v); }).cwiseProduct(Ue[x]);
        observe(L.downExps[x].name, Ue[x]);
    }
    if (stopAt == BlockStage::FfnOutInput) {
        stopped = true;
        return;
    }
    T.setZero(d, n);
    InferMat Y;
    for (int x = 0; x < E; ++x) {
        if (routed[x].empty()) continue;
        linear(e, L.downExps[x], Ue[x], Y);
        for (Eigen::Index i = 0; i < Y.cols(); ++i) T.col(routed[x][i].first) += routed[x][i].second * Y.col(i);
    }
    for (int t : badTokens) T.col(t).setConstant(std::numeric_limits<float>::quiet_NaN());
}

// Decoder block l on X [nEmbd × n] (token t in column t) in place: the tokens sit at cache slots
// nPast .. nPast+n−1 and at positions ropePos0 .. ropePos0+n−1 (RoPE), and attend to cache slots
// 0 .. their own. The observer sees each linear's input before its matrix multiply. With stopAt below
// BlockStage::Complete the block stops right after that stage's input was observed (X is then partly
// updated; callers that stop early work on a copy). part: the whole block, or only its attention half
// (x + attention) or only its feed-forward half (h + FFN). The one implementation of a block, for eval()
// and forwardLayer() alike.
void forwardBlock(Engine::Impl& e, int l, InferMat& X, int nPast, int ropePos0,
                  const LinearObserver& observer, BlockStage stopAt, BlockScratch& s,
                  BlockPart part = BlockPart::Whole) {
    const InferHParams& hp = e.hp;
    const int n = static_cast<int>(X.cols());
    const int nKv = nPast + n;
    const int hd = hp.headDim, kvDim = hp.nHeadKv * hd, qDim = hp.nHead * hd;
    const int threads = e.threads;
    const bool gpt2 = hp.arch == InferArch::Gpt2;
    auto observe = [&](const InferLinear& L, const InferMat& in) {
        if (observer) observer(L.name, in.data(), in.cols(), in.rows());
    };
    // Plain references, not a structured binding: lambdas below capture them (clang before 16 cannot
    // capture structured bindings, and the fuzz build uses clang).
    InferMat &H = s.H, &Q = s.Q, &K = s.K, &V = s.V, &A = s.A, &T = s.T, &G = s.G, &U = s.U;
    const float scale = hp.attnScale > 0 ? hp.attnScale : 1.0f / std::sqrt(static_cast<float>(hd));
    const float softcap = hp.attnSoftcap;
    const bool sliding = !hp.layerSliding.empty() && hp.layerSliding[l] && hp.slidingWindow > 0;
    const int window = hp.slidingWindow;
    const int group = hp.nHead / hp.nHeadKv;
    constexpr int kTile = 64;
    const InferLayer& L = e.layers[l];

    // ---- attention (skipped for BlockPart::FeedForward: X is then the residual stream after attention)
    if (part != BlockPart::FeedForward) {
        if (gpt2) {
            layerNorm(X, L.attnNorm, L.attnNormB, hp.normEps, H);
            observe(L.qkv, H);
            if (stopAt == BlockStage::QkvInput) return;
            linear(e, L.qkv, H, T);
            Q = T.topRows(qDim);
            e.kCache[l].middleCols(nPast, n) = T.middleRows(qDim, kvDim);
            e.vCache[l].middleCols(nPast, n) = T.bottomRows(kvDim);
        } else {
            rmsNorm(X, L.attnNorm, hp.normEps, H);
            if (hp.fused) {
                observe(L.qkv, H);
            } else {
                observe(L.q, H);
                observe(L.k, H);
                observe(L.v, H);
            }
            if (stopAt == BlockStage::QkvInput) return;
            if (hp.fused) {  // phi3: [q | k | v] rows
                linear(e, L.qkv, H, T);
                Q = T.topRows(qDim);
                K = T.middleRows(qDim, kvDim);
                V = T.bottomRows(kvDim);
            } else {
                linear(e, L.q, H, Q);
                linear(e, L.k, H, K);
                linear(e, L.v, H, V);
            }
            if (hp.qkNorm) {
                headNorm(Q, hd, L.qNorm, hp.normEps);
                headNorm(K, hd, L.kNorm, hp.normEps);
            }
            const bool localRope = sliding && !e.ropeInvFreqSwa.empty();
            const std::vector<double>& inv = localRope ? e.ropeInvFreqSwa : e.ropeInvFreq;
            const float lin = localRope ? 1.0f : hp.ropeLinearScale;
            applyRope(Q, hp.nHead, hd, hp.nRot, ropePos0, inv, lin);
            applyRope(K, hp.nHeadKv, hd, hp.nRot, ropePos0, inv, lin);
            e.kCache[l].middleCols(nPast, n) = K;
            e.vCache[l].middleCols(nPast, n) = V;
        }
        if (e.kvF16) {
            roundToFp16(e.kCache[l].col(nPast).data(), e.kCache[l].rows() * n);
            roundToFp16(e.vCache[l].col(nPast).data(), e.vCache[l].rows() * n);
            roundToFp16(Q.data(), Q.size());
        }
        A.resize(qDim, n);
        const InferMat& Kc = e.kCache[l];
        const InferMat& Vc = e.vCache[l];
        parallelFor(
            static_cast<size_t>(hp.nHead),
            [&](size_t h0, size_t h1, int) {
                InferMat S;
                for (size_t h = h0; h < h1; ++h) {
                    const Eigen::Index kvRow = static_cast<Eigen::Index>(h / group) * hd;
                    const Eigen::Index qRow = static_cast<Eigen::Index>(h) * hd;
                    // Query tiles: tile [t0, t0+tb) needs keys 0 .. nPast+t0+tb only (causal).
                    for (int t0 = 0; t0 < n; t0 += kTile) {
                        const int tb = std::min(kTile, n - t0);
                        const int kvLen = nPast + t0 + tb;
                        S.resize(kvLen, tb);
                        dotProducts(Kc.data() + kvRow, Kc.rows(), kvLen, Q.data() + qRow + t0 * Q.rows(),
                                    Q.rows(), tb, hd, S.data(), kvLen);
                        for (int t = 0; t < tb; ++t) {
                            float* sc = S.col(t).data();
                            const int lim = nPast + t0 + t + 1;
                            // Sliding layers: keys j with pos − j < window only (pos = lim − 1).
                            const int from = sliding ? std::max(0, lim - window) : 0;
                            float mx = -INFINITY;
                            for (int j = from; j < lim; ++j) {
                                sc[j] *= scale;
                                if (softcap > 0) sc[j] = softcap * std::tanh(sc[j] / softcap);
                                mx = std::max(mx, sc[j]);
                            }
                            double sum = 0;
                            for (int j = from; j < lim; ++j) {
                                sc[j] = std::exp(sc[j] - mx);
                                sum += sc[j];
                            }
                            const float inv = static_cast<float>(1.0 / sum);
                            for (int j = 0; j < from; ++j)
                                sc[j] = 0.0f;
                            for (int j = from; j < lim; ++j)
                                sc[j] *= inv;
                            for (int j = lim; j < kvLen; ++j)
                                sc[j] = 0.0f;
                        }
                        A.block(qRow, t0, hd, tb).noalias() = Vc.block(kvRow, 0, hd, kvLen) * S;
                    }
                }
            },
            n * nKv < 4096 ? 1 : threads);
        observe(L.o, A);
        if (stopAt == BlockStage::AttnOutInput) return;
        linear(e, L.o, A, T);
        if (hp.gemma) {
            rmsNorm(T, L.postAttnNorm, hp.normEps, H);
            X += H;
        } else {
            X += T;
        }
        if (part == BlockPart::Attention) return;
    }

    // ---- feed-forward
    if (gpt2) {
        layerNorm(X, L.ffnNorm, L.ffnNormB, hp.normEps, H);
        observe(L.up, H);
        if (stopAt == BlockStage::FfnInput) return;
        linear(e, L.up, H, U);
        if (e.geluTable.empty()) {
            U = U.unaryExpr([](float v) { return geluTanh(v); });
        } else {
            const float* tab = e.geluTable.data();
            U = U.unaryExpr([tab](float v) {
                if (v <= -10.0f) return 0.0f;
                if (v >= 10.0f) return v;
                return tab[fp32ToFp16(v)];
            });
        }
    } else if (hp.nExpert > 0) {
        rmsNorm(X, L.ffnNorm, hp.normEps, H);
        bool stopped = false;
        moeForward(
            e, L, H, T, [&](const std::string& name, const InferMat& in) {
                if (observer) observer(name, in.data(), in.cols(), in.rows());
            },
            stopAt, stopped);
        if (stopped) return;
        X += T;
        return;
    } else if (hp.fused) {  // phi3: gate_up = [gate | up] rows
        rmsNorm(X, L.ffnNorm, hp.normEps, H);
        observe(L.up, H);
        if (stopAt == BlockStage::FfnInput) return;
        linear(e, L.up, H, T);
        const Eigen::Index f = hp.nFf;
        U = T.topRows(f).unaryExpr([](float v) { return silu(v); }).cwiseProduct(T.bottomRows(f));
    } else {
        rmsNorm(X, L.ffnNorm, hp.normEps, H);
        observe(L.gate, H);
        observe(L.up, H);
        if (stopAt == BlockStage::FfnInput) return;
        linear(e, L.gate, H, G);
        linear(e, L.up, H, U);
        if (hp.gemma) {  // GeGLU with the tanh GELU (ggml's fp16 table when emulating llama.cpp)
            const std::vector<float>& tab = e.geluTable;
            U = G.unaryExpr([&tab](float v) { return geluOf(tab, v); }).cwiseProduct(U);
        } else {
            U = G.unaryExpr([](float v) { return silu(v); }).cwiseProduct(U);
        }
    }
    observe(L.down, U);
    if (stopAt == BlockStage::FfnOutInput) return;
    linear(e, L.down, U, T);
    if (hp.gemma) {
        rmsNorm(T, L.postFfnNorm, hp.normEps, H);
        X += H;
    } else {
        X += T;
    }
}

// Token embeddings (plus GPT-2's learned positions pos0 + t) into X [nEmbd × n]; ids are checked by the
// caller.
void embedTokens(const Engine::Impl& e, std::span<const int32_t> tokens, int pos0, InferMat& X) {
    const InferHParams& hp = e.hp;
    const int n = static_cast<int>(tokens.size());
    X.resize(hp.nEmbd, n);
    for (int t = 0; t < n; ++t) {
        e.tokEmbd.readRow(tokens[t], X.col(t).data());  // get_rows: one row from the stored type
        if (hp.arch == InferArch::Gpt2) {
            const float* pe = e.posEmbd.data() + static_cast<size_t>(pos0 + t) * hp.nEmbd;
            for (int i = 0; i < hp.nEmbd; ++i)
                X(i, t) += pe[i];
        }
        if (hp.gemma) {  // Gemma scales the embeddings by sqrt(hidden) (in float, as both HF and llama.cpp)
            const float sc = std::sqrt(static_cast<float>(hp.nEmbd));
            for (int i = 0; i < hp.nEmbd; ++i)
                X(i, t) *= sc;
        }
    }
}

// Final norm and LM head on the columns of Hs [nEmbd × m] into logitsOut [m × nVocab].
Status headLogits(const Engine::Impl& e, const InferMat& Hs, const LinearObserver& observer, float* logitsOut) {
    const InferHParams& hp = e.hp;
    const int m = static_cast<int>(Hs.cols());
    InferMat H;
    if (hp.arch == InferArch::Gpt2)
        layerNorm(Hs, e.outNorm, e.outNormB, hp.normEps, H);
    else
        rmsNorm(Hs, e.outNorm, hp.normEps, H);
    if (observer) observer(e.output.name, H.data(), H.cols(), H.rows());
    // Straight into logitsOut (column-major [nVocab × m] is its row-major [m × nVocab]): a temporary of
    // the logits' size (62.5 MiB for 512 tokens of a 32000 vocabulary) cost fresh pages and a copy per call.
    Eigen::Map<InferMat> Y(logitsOut, hp.nVocab, m);
    if (!e.output.present()) { // tied head: the embedding is the weight
        storedLinear(e.tokEmbd, {}, H.data(), m, logitsOut, hp.nVocab, e.threads, e.ggmlActivations);
    } else {
        const InferLinear& L = e.output;
        storedLinear(L.w, L.rowOrder, H.data(), m, logitsOut, hp.nVocab, e.threads, e.ggmlActivations);
        if (!L.b.empty())
            for (int c = 0; c < m; ++c)
                for (int r = 0; r < L.nOut; ++r) Y(r, c) += L.b[r];
    }
    if (hp.finalSoftcap > 0) {
        const float c = hp.finalSoftcap;
        Y = Y.unaryExpr([c](float v) { return c * std::tanh(v / c); });
    }
    // Weights are not scanned at load (they stay in the file): a NaN or Inf in them stops here.
    if (!Y.allFinite()) return makeError("the logits contain NaN or Inf (the model's weights hold such values)");
    return okStatus();
}

Status checkTokens(const InferHParams& hp, std::span<const int32_t> tokens, const char* what) {
    for (int32_t t : tokens)
        if (t < 0 || t >= hp.nVocab)
            return makeError(std::string(what) + ": token id " + std::to_string(t) + " out of range");
    return okStatus();
}

// Positions pos0 .. pos0+n−1 must exist for GPT-2's learned position table.
Status checkPositions(const InferHParams& hp, int64_t pos0, int64_t n, const char* what) {
    if (pos0 < 0) return makeError(std::string(what) + ": negative position");
    if (hp.arch == InferArch::Gpt2 && pos0 + n > hp.nCtxTrain)
        return makeError(std::string(what) + ": positions up to " + std::to_string(pos0 + n) +
                         " exceed GPT-2's " + std::to_string(hp.nCtxTrain) + " learned positions");
    return okStatus();
}

} // namespace

Status Engine::eval(std::span<const int32_t> tokens, int nPast, float* logitsOut, int logitsFrom) {
    Impl& e = *m_impl;
    const InferHParams& hp = e.hp;
    const int n = static_cast<int>(tokens.size());
    if (n < 1) return makeError("eval: no tokens");
    if (nPast < 0 || nPast > e.nCached) return makeError("eval: nPast is beyond the cached positions");
    if (static_cast<int64_t>(nPast) + n > e.nCtxMax)
        return makeError("eval: " + std::to_string(nPast + n) + " positions exceed the context of " +
                         std::to_string(e.nCtxMax));
    if (logitsOut && (logitsFrom < 0 || logitsFrom >= n)) return makeError("eval: logitsFrom out of range");
    if (logitsOut && e.layerLimit > 0) return makeError("eval: no logits while a layer limit is set");
    const int nRun = e.layerLimit > 0 ? e.layerLimit : hp.nLayer;
    if (auto s = checkTokens(hp, tokens, "eval"); !s) return s;

    try {
        growCache(e, nPast + n);
        InferMat X;
        embedTokens(e, tokens, nPast, X);
        BlockScratch scratch;
        for (int l = 0; l < nRun; ++l)
            forwardBlock(e, l, X, nPast, nPast, e.observer, BlockStage::Complete, scratch);
        e.nCached = nPast + n;
        if (logitsOut)
            if (auto st = headLogits(e, X.rightCols(n - logitsFrom), e.observer, logitsOut); !st)
                return makeError("eval: " + st.error().message);
    } catch (const std::bad_alloc&) {
        return makeError("eval: out of memory");
    }
    return okStatus();
}

Status Engine::embed(std::span<const int32_t> tokens, int pos0, std::span<float> states) const {
    const Impl& e = *m_impl;
    const int64_t n = static_cast<int64_t>(tokens.size());
    if (n < 1 || n > e.nCtxMax)
        return makeError("embed: " + std::to_string(n) + " tokens (1 .. context size)");
    if (static_cast<uint64_t>(states.size()) != static_cast<uint64_t>(n) * static_cast<uint64_t>(e.hp.nEmbd))
        return makeError("embed: the output holds " + std::to_string(states.size()) +
                         " values, not tokens × hidden");
    if (auto s = checkTokens(e.hp, tokens, "embed"); !s) return s;
    if (auto s = checkPositions(e.hp, pos0, n, "embed"); !s) return s;
    try {
        InferMat X;
        embedTokens(e, tokens, pos0, X);
        std::copy_n(X.data(), states.size(), states.data());
    } catch (const std::bad_alloc&) {
        return makeError("embed: out of memory");
    }
    return okStatus();
}

Status Engine::forwardLayer(int layer, std::span<float> states, int pos0, const LinearObserver& observer,
                            BlockStage stopAt, BlockPart part) {
    Impl& e = *m_impl;
    const InferHParams& hp = e.hp;
    if (layer < 0 || layer >= hp.nLayer)
        return makeError("forwardLayer: layer " + std::to_string(layer) + " of " + std::to_string(hp.nLayer));
    if (states.empty() || states.size() % static_cast<size_t>(hp.nEmbd) != 0)
        return makeError("forwardLayer: " + std::to_string(states.size()) +
                         " values are not whole tokens of " + std::to_string(hp.nEmbd));
    const int64_t n = static_cast<int64_t>(states.size() / static_cast<size_t>(hp.nEmbd));
    if (n > e.nCtxMax)
        return makeError("forwardLayer: " + std::to_string(n) + " tokens exceed the context of " +
                         std::to_string(e.nCtxMax));
    if (pos0 < 0 || static_cast<int64_t>(pos0) + n > (int64_t{1} << 30))
        return makeError("forwardLayer: positions out of range");
    e.nCached = 0; // eval() must start afresh
    // The block attends within the sequence only: its keys and values go to a cache of n slots for this
    // call (swapped in for the layer's), so a pass over the layers one at a time holds one layer's K/V,
    // not the whole model's cache.
    struct SwapCache {
        Engine::Impl& e;
        int l;
        InferMat k, v;
        SwapCache(Engine::Impl& e_, int l_) : e(e_), l(l_) {
            std::swap(e.kCache[l], k);
            std::swap(e.vCache[l], v);
        }
        ~SwapCache() {
            std::swap(e.kCache[l], k);
            std::swap(e.vCache[l], v);
        }
    } swapped(e, layer);
    try {
        const int kvDim = hp.nHeadKv * hp.headDim;
        e.kCache[layer].resize(kvDim, n);
        e.vCache[layer].resize(kvDim, n);
        InferMat X = Eigen::Map<const InferMat>(states.data(), hp.nEmbd, n);
        BlockScratch scratch;
        forwardBlock(e, layer, X, 0, pos0, observer, stopAt, scratch, part);
        if (stopAt == BlockStage::Complete) std::copy_n(X.data(), states.size(), states.data());
    } catch (const std::bad_alloc&) {
        return makeError("forwardLayer: out of memory");
    }
    return okStatus();
}

Status Engine::head(std::span<const float> states, float* logitsOut, const LinearObserver& observer) const {
    const Impl& e = *m_impl;
    const InferHParams& hp = e.hp;
    if (states.empty() || states.size() % static_cast<size_t>(hp.nEmbd) != 0)
        return makeError("head: " + std::to_string(states.size()) + " values are not whole tokens of " +
                         std::to_string(hp.nEmbd));
    try {
        const auto m = static_cast<Eigen::Index>(states.size() / static_cast<size_t>(hp.nEmbd));
        const InferMat Hs = Eigen::Map<const InferMat>(states.data(), hp.nEmbd, m);
        if (auto st = headLogits(e, Hs, observer, logitsOut); !st) return makeError("head: " + st.error().message);
    } catch (const std::bad_alloc&) {
        return makeError("head: out of memory");
    }
    return okStatus();
}

}  // namespace qz
