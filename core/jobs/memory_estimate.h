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

struct EvalMemorySettings {
    int nCtx = 512;        // tokens per chunk (the KV cache holds one chunk)
    int threads = 1;       // per-thread scratch
    int variants = 1;      // models evaluated side by side (each has its own engine and cache)
};
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
