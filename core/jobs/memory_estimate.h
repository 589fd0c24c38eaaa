// Memory a run will need, estimated before it starts from the model's hyper-parameters and the run's
// settings, so a page can show it and refuse politely when it will not fit.
//
// The estimate counts anonymous memory (what the process allocates: the KV cache, activations, logits,
// calibration states, Hessians, replaced layers) separately from the mapped model file (file-backed
// pages the kernel can drop and re-read, so they do not have to fit). The figures follow the engine's
// layout (infer/engine_impl.h): the K/V cache holds F32 per layer, the widest activation of a prompt
// chunk is the feed-forward width, the logits are F32 per scored position, and a calibrated export
// keeps one decoder layer widened to F32, its Hessians (F32, input width squared per distinct input),
// and the carried hidden states of every calibration window (unless they are spilled to a file).
// Each part is listed with its size, so the page can explain the figure. The estimate is an upper
// bound on what the run allocates at once, within the stated parts; allocator slack and the GUI's own
// memory are covered by a fixed margin.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "infer/hparams.h"

namespace qz {

struct MemoryPart {
    std::string what;
    uint64_t bytes = 0;
};

struct MemoryEstimate {
    std::vector<MemoryPart> parts;   // anonymous memory, by part
    uint64_t mappedBytes = 0;        // the model file(s), mapped (file-backed, reclaimable)
    uint64_t anonBytes() const;      // sum of parts
    std::string describe() const;    // "2.1 GB: KV cache 1.0 GB, logits 0.5 GB, ..." (GB = 10^9 bytes)
};

// Fixed allowance for the allocator, thread stacks, the tokenizer and the program itself.
inline constexpr uint64_t kMemoryMargin = 512ull << 20;

// What one variant adds to an evaluation (the variants are scored one after another, each by its own
// engine, which is freed before the next is loaded).
struct EvalVariantMemory {
    uint64_t overrideValues = 0; // F32 values of the weights it replaces (0: runs from its own file)
    bool overridesHeld = false;  // those values are already in memory (only the engine's copy is new)
    uint64_t fileBytes = 0;      // its own model file, mapped (0: the original's)
};

struct EvalMemorySettings {
    int nCtx = 512;        // tokens per chunk (the KV cache holds one chunk)
    int threads = 1;       // per-thread scratch
    int nChunks = -1;      // chunks scored (-1: all the text holds)
    uint64_t textBytes = 0;                  // the text: its tokens, and the chunk count when nChunks is -1
    std::vector<EvalVariantMemory> variants; // scored by KL-divergence against the original
    // Overrides made during the run stay until its end (else each variant's are freed before the next).
    bool keepMadeOverrides = false;
};
// One engine at a time: its KV cache, activations, logits and weight tiles; with variants, the original's
// log-probabilities kept for the KL-divergence (llama-perplexity's uint16 rows, infer/perplexity.h
// KldBase) and the variants' replaced weights (the F32 values made for the run, plus the engine's own F32
// copy of one variant's: Engine::load copies its overrides). The chunk count is bounded by the text's
// bytes (a token covers at least one byte; + BOS and a dummy prefix).
MemoryEstimate estimateEvaluation(const InferHParams& hp, uint64_t modelFileBytes, const EvalMemorySettings& s);

struct CalibMemorySettings {
    int windows = 128;           // calibration windows (GPTQ samples, EXL2 rows)
    int seqLen = 2048;           // tokens per window
    int stateBytesPerValue = 4;  // carried hidden states: 4 (F32) or 2 (F16 / BF16)
    uint64_t maxStateMemory = 0; // states above this go to a file (0: no limit)
    bool secondStateCopy = false;  // the method keeps two sets of states (reference and quantized)
};
MemoryEstimate estimateCalibratedExport(const InferHParams& hp, uint64_t modelFileBytes,
                                        const CalibMemorySettings& s);

// MemAvailable from /proc/meminfo (bytes), or 0 when unknown.
uint64_t availableMemoryBytes();

// OK when estimate.anonBytes() + kMemoryMargin <= available (or available is 0: unknown); otherwise an
// error that says how much is needed, how much is available and which parts dominate.
Status checkMemoryFits(const MemoryEstimate& e, uint64_t available);

}  // namespace qz
