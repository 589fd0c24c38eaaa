// CPU inference engine for evaluation (perplexity, KL-divergence) and calibration (imatrix, GPTQ).
//
// Architectures: llama (also mistral and qwen2 - q/k/v biases are used when present), gpt2, and the
// newer llama-like families qwen3, qwen3moe, mixtral, gemma2, gemma3 (text) and phi3 (below).
// Weights stay where they are: every 2-D weight (linear layers, LM head, token embedding) is a view of
// its bytes in the memory-mapped model file, in its stored type (F32, F16, BF16 or any ggml block type),
// so memory is set by the KV cache and one layer's activations, not by the model (a 7B Q4_K_M costs its
// 4 GB of file pages, which the kernel can drop, and no F32 copy). Small tensors (norms, biases, GPT-2's
// positions) are widened to F32. Linear layers (one function, engine.cpp `linear`) compute from the stored
// rows in one of two modes (EngineOptions::ggmlActivations):
//   ggml (default for GGUF files): activations encoded as llama.cpp's CPU backend does for the weight
//     type (Q8_0 / Q8_1 / Q8_K codes, or rounded to F16 / BF16) and multiplied by ggml/vec_dot.h
//     quantizedLinear; perplexities and KL-divergences then equal llama-perplexity's;
//   float (default for HF models): F32 activations against the weights widened to F32 a panel of 64 rows
//     at a time per thread (HF semantics; the same numbers as dequantizing the whole model first).
// F32 weights are always multiplied in F32 (infer/matmul.h, AVX2 kernel when the CPU has it, else Eigen).
// Prompt chunks are evaluated as one matrix multiply per linear layer; work is split over rows / heads
// with parallelFor. Not thread-safe: one eval at a time. The engine keeps the model's mapped files alive.
// Weights are not scanned for NaN / Inf at load (that would read the whole file); logits that are not
// finite make eval() / head() fail.
// Mistral's sliding window is not applied (llama.cpp does not apply it to "llama" GGUFs either).
//
// Llama block:  h = x + Wo·Attn(RoPE(Wq·n1), RoPE(Wk·n1), Wv·n1),  n1 = RMSNorm(x)·g1
//               out = h + Wdown·(SiLU(Wgate·n2) ⊙ Wup·n2),          n2 = RMSNorm(h)·g2
//   RMSNorm(x) = x / sqrt(mean(x²) + eps). RoPE rotates the pairs (i, i + d/2) of each head by
//   pos·θ^(−2i/d) (HF "rotate_half" layout). GGUF Q/K rows, stored in ggml's interleaved-pair order
//   (core/convert/README.md A.5), stay as stored; the layer's outputs are read back in HF's order (a row
//   map after the product) so one RoPE serves both. Grouped-query attention:
//   query head h reads KV head h / (nHead / nHeadKv). Attention scale 1/sqrt(headDim), causal.
// GPT-2 block: LayerNorm with bias, fused qkv projection with bias, learned positions,
//   GELU (tanh approximation), MLP with biases; the LM head is tied to the token embedding.
// Newer families (core/infer/README.md; transformers' modeling code, llama.cpp's src/models/*.cpp):
//   qwen3, qwen3moe, gemma3: q and k RMSNorm'd per head (over headDim, weights [headDim]) before RoPE;
//     head_dim may differ from hidden/heads.
//   qwen3moe, mixtral: the FFN is a mixture of experts: router probabilities softmax(Wr·n2), the top
//     nExpertUsed experts, weights renormalised to sum 1 (mixtral always; qwen3moe as norm_topk_prob
//     says, GGUF always, as llama.cpp), out = Σ w_e · down_e(SiLU(gate_e·n2) ⊙ up_e·n2).
//   gemma2, gemma3: RMSNorm by (1 + w) (HF weights get 1 added at load; GGUFs store 1 + w), embeddings
//     × sqrt(nEmbd), sandwich norms h = x + N(Attn(N(x))), out = h + N(FFN(N(h))), GeGLU with the tanh
//     GELU, attention scale query_pre_attn_scalar^−1/2, sliding-window layers (gemma2 even layers,
//     gemma3 5 of 6 or config layer_types) attend to keys with pos − j < sliding_window; gemma2
//     soft-caps scores and final logits (c·tanh(x/c)); gemma3's sliding layers use the local RoPE base.
//   phi3: fused qkv ([q | k | v] rows) and gate_up ([gate | up] rows) split after the multiply; partial
//     rotary dimensions. Phi-3's sliding window is not applied (llama.cpp disables it too).
// lm_head absent -> the token embedding is used (tied embeddings).
// llama.cpp emulation (EngineOptions::kvF16, ggmlGelu, both on by default): K/V/Q rounded to fp16 as
// llama.cpp's F16 KV cache does, GPT-2's GELU and Gemma's GeGLU through ggml's fp16 table. With them our perplexities
// land on llama-perplexity's printed digits; off = plain F32 (HF semantics).
//
// Weight names: HF (model.layers.N.self_attn.q_proj.weight, transformer.h.N.attn.c_attn.weight) or GGUF
// (blk.N.attn_q.weight, ...). GPT-2's HF Conv1D weights [in, out] are held as an F32 transposed copy
// (GPT-2 checkpoints are at most 1.5B parameters); GGUF GPT-2 weights are stored [out, in] and are viewed.
// Overrides: a map tensor name -> F32 values replaces a tensor of the model (e.g. the dequantized
// weights of a fake-quantized variant). Values are in the tensor's own layout (row-major over
// TensorInfo::shape, i.e. exactly what readTensorF32 would return), so the same row map / transpose
// applies to them. An overridden tensor is owned F32 and always multiplied with F32 activations (as
// llama.cpp multiplies F32 weights); only overridden tensors take memory. An override may also supply an
// optional tensor the file lacks (a bias). The engine copies the values; the map is not referenced after
// load(). Sources (EngineOptions::sources, setWeightSource) give a 2-D weight's rows on demand instead:
// the same values in the same layout, computed the same way, without an F32 copy of the tensor. A
// Conv1D weight's transposed source (WeightRowSource::transposed: rows of [out, in]) is run the same way,
// and load() then reads no F32 copy of that weight from the file.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/progress.h"
#include "common/result.h"
#include "infer/hparams.h"
#include "infer/weight_source.h"
#include "model/model.h"

namespace qz {

using WeightOverrides = std::unordered_map<std::string, std::vector<float>>;

// Calibration hook: called during eval() for every linear layer, before its matrix multiply, with the
// model's tensor name of the weight (e.g. "model.layers.3.mlp.down_proj.weight" or
// "blk.3.ffn_down.weight") and its input activations x: row-major [nTokens × nIn] (token t's input
// vector at x + t·nIn). Layers that share one input (q/k/v, gate/up) are reported once each with the
// same pointer. Called on the thread that runs eval(), layer by layer in evaluation order. The LM head
// is reported too (only for the tokens whose logits are computed). Mixture of experts: the router is
// reported with all tokens; each expert's gate/up/down with the tokens routed to it only (gathered,
// in token order; experts no token reached are not reported), under the HF per-expert tensor name
// ("model.layers.N.mlp.experts.E.gate_proj.weight") or, for a GGUF's stacked 3-D tensor, as
// "<tensor name>#E" ("blk.N.ffn_gate_exps.weight#3"). setWeight takes an HF expert's own tensor name.
using LinearObserver =
    std::function<void(const std::string& weightName, const float* x, int64_t nTokens, int64_t nIn)>;

// The linear stages of a decoder block in evaluation order (llama: q/k/v, o, gate/up, down; gpt2: c_attn,
// attn.c_proj, mlp.c_fc, mlp.c_proj). Engine::forwardLayer can stop right after a stage's input was
// observed (a calibration pass that needs only that input skips the rest of the block). Mixture of
// experts: FfnInput covers the router and every expert's gate/up (routing is computed first),
// FfnOutInput every expert's down; phi3's fused qkv / gate_up are one linear each.
enum class BlockStage { QkvInput = 0, AttnOutInput = 1, FfnInput = 2, FfnOutInput = 3, Complete = 4 };

// The part of a decoder block Engine::forwardLayer evaluates: the whole block, or one of its two residual
// halves (EXL2 measures and quantizes them as separate modules): Attention gives h = x + Attn(x) (Gemma:
// with its post-attention norm), FeedForward gives h + FFN(h) (Gemma: with its post-feedforward norm).
enum class BlockPart { Whole, Attention, FeedForward };

struct EngineOptions {
    int threads = 0;                          // 0 = defaultThreadCount()
    int nCtx = 0;                             // KV-cache capacity in tokens; 0 = min(nCtxTrain, 4096)
    const WeightOverrides* overrides = nullptr;  // read during load() only
    const WeightSources* sources = nullptr;      // applied by load() through setWeightSource (names the
                                                 // engine does not use are ignored, as for overrides)
    // GPT-2's GELU as ggml's CPU backend computes it (GGML_GELU_FP16): the input rounded to fp16, the
    // tanh-approximation evaluated in float, the result rounded to fp16 (x <= -10 -> 0, x >= 10 -> x).
    // On by default so perplexities match llama.cpp's; off = plain float tanh approximation (HF).
    bool ggmlGelu = true;
    // llama.cpp's default KV cache holds F16: keys and values are rounded to fp16 when cached, and the
    // queries are rounded to fp16 for the K·Q dot products (ggml's F16 matmul converts them). On by
    // default (reproduces llama-perplexity's figures to the last printed digit on bard-llama);
    // off = all-F32 attention.
    bool kvF16 = true;
    // Linear layers with F16 / BF16 / quantized weights take activations encoded as ggml-cpu does
    // (ggml/vec_dot.h): true reproduces llama.cpp, false = F32 activations against the weights widened
    // to F32 (HF semantics). Unset: true for GGUF files, false for HF models.
    std::optional<bool> ggmlActivations;
};

class Engine {
public:
    // Maps the weights (views of the model's files; small tensors and overrides read as F32) and
    // prepares the KV cache. Reports one unit per tensor.
    static Result<std::unique_ptr<Engine>> load(const Model& model, const EngineOptions& options = {},
                                                ProgressFn progress = {});
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    const InferHParams& hparams() const;
    int nVocab() const;
    int nCtxMax() const;
    int threads() const;
    void setThreads(int n);

    // Empties the KV cache (the next eval must use nPast = 0).
    void reset();

    // Evaluates tokens at positions nPast .. nPast+n-1, appending their keys/values to the cache
    // (entries at positions >= nPast are overwritten: nPast may rewind). nPast + n must be <= nCtxMax().
    // If logitsOut is non-null it receives the logits of tokens logitsFrom .. n-1, row-major
    // [(n − logitsFrom) × nVocab]; pass logitsFrom = n−1 for the last token only. Fails on token ids
    // outside the vocabulary (logitsOut untouched) and on logits that are not finite (logitsOut then
    // holds them).
    Status eval(std::span<const int32_t> tokens, int nPast, float* logitsOut, int logitsFrom = 0);

    void setObserver(LinearObserver observer);

    // Replaces one of the model's tensors after load (by the model's tensor name, values in the
    // tensor's own layout as for overrides): e.g. GPTQ's layer-by-layer updates or trying another
    // quantization of a tensor without reloading. The KV cache is reset. Fails on an unknown name
    // (a tensor the engine does not use, or an optional tensor that was absent at load) or a wrong size.
    Status setWeight(const std::string& name, std::span<const float> values);
    // Replaces one of the model's 2-D tensors by a source that decodes its rows on demand
    // (infer/weight_source.h): for a weight the engine reads by rows it keeps no copy and widens one panel
    // of rows per thread at a time, always with F32 activations (as for an override, whose values it must
    // equal bit for bit); a 2-D tensor it holds as F32 anyway (GPT-2's positions, its HF Conv1D weights
    // given by a source in their stored layout) takes the decoded values as an override would. A Conv1D
    // weight's transposed source (rows of [out, in]) is read by rows as the other weights are. The KV cache is reset. Fails on an unknown name, a
    // tensor that is not 2-D (or a GGUF expert stack), or a shape mismatch.
    Status setWeightSource(const std::string& name, std::shared_ptr<const WeightRowSource> source);
    // Undoes setWeight / setWeightSource / an override: the tensor is read from the model file again (2-D
    // weights become a view of the file, their F32 copy or source is freed). Fails for an unknown name or a
    // tensor the file lacks.
    Status resetWeight(const std::string& name);
    // Bytes of weights the engine holds in memory (F32 copies of overridden tensors, small tensors, GPT-2
    // HF Conv1D transposes, row maps); the mapped file is not counted.
    uint64_t residentWeightBytes() const;
    bool ggmlActivations() const;  // the mode of the linear layers (EngineOptions::ggmlActivations)

    // Calibration shortcut: evaluate only the first n decoder blocks (n <= 0 or >= nLayer: all).
    // While limited, eval() fails if logits are requested (there are none); the observer still sees
    // every linear layer of the evaluated blocks. Changing the limit resets the KV cache.
    void setLayerLimit(int n);
    int layerLimit() const;  // the number of blocks eval() runs
    bool hasWeight(const std::string& name) const;

    // Per-layer evaluation, for calibration that carries hidden states from one decoder block to the
    // next (GPTQ as AutoGPTQ runs it) instead of re-running the model from the tokens. Hidden states are
    // row-major [nTokens × nEmbd] (token t's vector at t·nEmbd), one sequence per call. The block code
    // is the one eval() runs, so embed + forwardLayer(0 .. nLayer−1) + head gives eval()'s logits
    // exactly (and the observer sees the same inputs).
    //
    // The token embeddings (GPT-2: plus the learned positions pos0 ..) of one sequence into `states`
    // (tokens.size() × nEmbd values). Fails on ids outside the vocabulary or positions GPT-2 lacks.
    Status embed(std::span<const int32_t> tokens, int pos0, std::span<float> states) const;
    // Decoder block `layer` on one sequence of states.size()/nEmbd tokens at positions pos0 .. (RoPE;
    // GPT-2's learned positions are added by embed),
    // attending causally to each other only (no earlier context). With stopAt == Complete the states are
    // replaced by the block's output; otherwise the block stops right after that stage's input went to
    // the observer and the states are left unchanged. The observer (may be empty) sees every linear
    // input the block reaches, as in eval(). Keys and values go to a temporary cache of the
    // sequence's length (memory: one layer's), not the KV cache, which is reset.
    // part: the whole block or one residual half (stopAt then names a stage of that half).
    Status forwardLayer(int layer, std::span<float> states, int pos0, const LinearObserver& observer = {},
                        BlockStage stopAt = BlockStage::Complete, BlockPart part = BlockPart::Whole);
    // Final norm and LM head on states [m × nEmbd]: logitsOut receives [m × nVocab]. The observer sees
    // the head's input.
    Status head(std::span<const float> states, float* logitsOut, const LinearObserver& observer = {}) const;

    struct Impl;

private:
    explicit Engine(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m_impl;
};

}  // namespace qz
