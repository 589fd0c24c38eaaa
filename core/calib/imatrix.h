// Importance matrix ("imatrix") collection, as llama-imatrix does it, and the GGUF file it writes.
//
// Text: tokenized as for perplexity (infer/text_tokens.h: model tokenizer, one trailing '\n' dropped,
// BOS prepended when the vocabulary adds it). nChunks = min(--chunks, nTokens / nCtx) consecutive
// chunks of nCtx tokens; each is evaluated from an empty KV cache at positions 0..nCtx−1 with its first
// token replaced by BOS when the vocabulary adds BOS. Every token of every chunk counts.
// Statistics: for each linear layer W (LinearObserver of infer/engine.h), per input column j,
//   in_sum2[j] += Σ_t x_t[j]²   and   counts += nTokens   (per evaluated matrix multiply).
// The LM head (output.weight, or the tied token_embd.weight) is skipped unless processOutput, as
// llama-imatrix skips output.weight without --process-output.
// Experts (3-D GGUF tensors ffn_{gate,up,down}_exps), as llama-imatrix collects GGML_OP_MUL_MAT_ID: one
// sum per expert and column, in_sum2[e·nIn + j] += Σ x_t[j]² over the tokens routed to expert e, and a
// count per expert. The engine reports each expert's routed tokens under the HF per-expert name (mapped
// through convert's stacking order) or "<GGUF name>#e" (infer/engine.h).
// Names: the GGUF names (blk.N.attn_q.weight ...). For a Hugging Face model the HF names are mapped
// with convert's plan (convert/hf_to_gguf.h); the Q/K row permutation does not change per-column sums,
// and GPT-2's Conv1D weights are transposed by the engine, so nIn is the GGUF ne0 in all cases.
// Sums are accumulated in double (llama-imatrix uses float) and stored as F32.
//
// Output GGUF (read by ggml/imatrix.h and llama-quantize): KVs general.type = "imatrix",
// imatrix.datasets = [dataset name], imatrix.chunk_count (u32), imatrix.chunk_size (u32, = nCtx); per
// weight, in name order, "<W>.in_sum2" F32 ne = [nIn] and "<W>.counts" F32 ne = [1]; for experts
// ne = [nIn, nExpert] and [1, nExpert] (ggml/imatrix.h reads both).
//
// The pass runs one decoder block at a time over all chunks (calib/layered.h: the chunks' hidden states
// are carried from block to block; F32 by default, which gives exactly the sums of evaluating each chunk
// with Engine::eval), in batches of chunks whose states fit calib::LayeredPassParams::batchBytes; the
// LM head runs only with processOutput, on each chunk's last token (its input is then one token per
// chunk; no logits are needed otherwise).
//
// XᵀX (for GPTQ / EXL2 Hessians): calib::HessianObserver (calib/hessian.h).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/progress.h"
#include "common/result.h"
#include "calib/hessian.h"
#include "calib/layered.h"
#include "calib/states.h"
#include "calib/stats.h"
#include "infer/engine.h"
#include "model/model.h"

namespace qz {

using ImatrixEntry = calib::ColumnSquares;  // sum2 per input column, count = tokens seen

struct ImatrixData {
    std::map<std::string, ImatrixEntry> entries;  // GGUF weight name -> statistics
    std::vector<std::string> datasets;
    int64_t chunkCount = 0;
    int64_t chunkSize = 0;
    // Importance per column as llama-quantize uses it: sum2 / count (1 when count is 0), per expert
    // for experts.
    std::vector<float> importance(const std::string& name) const;
};

// Accumulates observer calls into an ImatrixData. Not thread-safe (the engine calls it on one thread).
class ImatrixCollector {
public:
    // Builds the model-name -> GGUF-name map (identity for GGUF models).
    static Result<std::unique_ptr<ImatrixCollector>> create(const Model& model, bool processOutput = false);
    void add(const std::string& weightName, const float* x, int64_t nTokens, int64_t nIn);
    LinearObserver observer();  // calls add(); the collector must outlive the engine's use of it
    ImatrixData& data() { return m_data; }
    const ImatrixData& data() const { return m_data; }
    std::string error() const { return m_error; }  // first inconsistency seen (nIn changing), or ""
    bool wantsOutput() const { return m_processOutput; } // the LM head's input is collected

private:
    ImatrixCollector() = default;
    std::map<std::string, std::string> m_names;  // model name -> GGUF name ("" = skip)
    struct ExpertOf {
        std::string gguf;
        int expert = 0, nExpert = 0;
    };
    std::map<std::string, ExpertOf> m_experts;   // reported expert name -> stacked GGUF tensor, index
    ImatrixData m_data;
    std::string m_error;
    bool m_processOutput = false;
};

struct ImatrixParams {
    int nCtx = 512;             // -c
    int nChunks = -1;           // --chunks (-1 = all the text holds)
    int threads = 0;
    bool processOutput = false;
    std::string datasetName;    // imatrix.datasets entry (e.g. the text file's path)
    // The chunks' carried hidden states (calib/states.h): F32 is exact; above maxStateMemory bytes
    // (0: no limit) they go to a temporary file in spillDir (empty: the system's temporary folder).
    calib::StateType stateType = calib::StateType::F32;
    uint64_t maxStateMemory = 0;
    std::string spillDir;
};

// Loads an engine for model (+ overrides), runs the text, returns the statistics. Progress: loading
// 0..10 %, then one unit per chunk.
Result<ImatrixData> computeImatrix(const Model& model, std::string_view text, const ImatrixParams& params,
                                   ProgressFn progress = {}, const WeightOverrides* overrides = nullptr);
// The same on an already loaded engine and its token ids (addBos/bosId as for perplexity).
Status collectImatrix(Engine& engine, ImatrixCollector& collector, std::span<const int32_t> tokens, int nCtx,
                      int nChunks, bool addBos, int32_t bosId, ProgressFn progress = {},
                      const calib::LayeredPassParams& pass = {});

// Writes the GGUF imatrix file (temporary name, renamed when complete).
Status writeImatrixGguf(const ImatrixData& data, const std::string& path);

using calib::HessianObserver;

}  // namespace qz
