// A calibration pass one decoder block at a time (imatrix, LLM.int8()'s outlier statistics): every
// sequence is embedded into a carried-states store (calib/states.h), then block 0 runs on every
// sequence, then block 1, ... (Engine::forwardLayer with the caller's observer), and finally the final
// norm and LM head run where the statistics need their input. Each block's weights are thus used for all
// sequences in one go (a streamed engine touches them once per pass, not once per sequence), and only
// the carried states (rows × tokens × hidden, or one row when spilled) and one block's work are held.
// embed + forwardLayer(0 .. nLayer−1) + head is eval()'s computation (infer/engine.h), so with F32 states
// the observer sees exactly the inputs it sees when eval() runs each sequence from an empty cache; for a
// given layer the sequences come in the same order, so order-sensitive sums are unchanged too.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <vector>

#include "calib/states.h"
#include "common/progress.h"
#include "common/result.h"
#include "infer/engine.h"
#include "infer/perplexity.h"

namespace qz::calib {

enum class HeadInput {
    None,      // the LM head is not run
    LastToken, // the head runs on each sequence's last token (as eval() with logits of the last token)
    AllTokens  // the head runs on every token (as eval() with the logits of every position)
};

struct LayeredPassParams {
    StateType stateType = StateType::F32; // F32: exactly eval()'s inputs
    uint64_t maxStateMemory = 0;          // states above this many bytes go to a temporary file (0: no limit)
    std::filesystem::path spillDir;       // empty: the system's temporary folder
    HeadInput head = HeadInput::None;
    // Sequences are taken in batches whose states take at most this many bytes (at least one sequence
    // per batch; 0: all at once), each batch run through all blocks before the next: for a given layer
    // the sequences still come in order, so the statistics do not depend on it.
    uint64_t batchBytes = uint64_t{256} << 20;
};

struct LayeredPassResult {
    uint64_t stateBytes = 0; // of the largest batch
    bool spilled = false;
    int batches = 0;
};

// Sequences must be non-empty and of equal length (at most the engine's context); they start at
// position 0. The observer is called on this thread. Progress: one unit per sequence per stage (embed,
// each block, the head when run); a false return cancels (cancelledError()). The engine's KV cache is
// reset.
Result<LayeredPassResult> runLayered(Engine& engine, std::span<const std::vector<int32_t>> sequences,
                                     const LinearObserver& observer, const LayeredPassParams& params,
                                     const ProgressFn& progress = {});

// Perplexity (infer/perplexity.h computePerplexity: the same chunks, BOS, scoring and figures) one decoder
// block at a time, for a model whose weights exist one block at a time (a quantized checkpoint read back
// from its files): every chunk is embedded into a state store (F32: exactly eval()'s inputs, so the figures
// equal those of an engine loaded with all the block's weights as overrides), then for each block b
// install(b) puts the block's weights into the engine (Engine::setWeight), every chunk runs through it, and
// release(b) takes them out again (Engine::resetWeight); finally the head gives each chunk's logits. So the
// engine holds one block's weights, and the states (chunks × nCtx × hidden floats) go to an unlinked
// temporary file in spillDir beyond maxStateMemory. Progress: one unit per chunk per stage (embedding, each
// block, scoring); false cancels. The engine's KV cache is reset.
struct BlockWeights {
    std::function<Status(int block)> install;  // may be empty (the engine's own weights)
    std::function<Status(int block)> release;  // may be empty
};
Result<PerplexityResult> perplexityLayered(Engine& engine, std::span<const int32_t> tokens,
                                           const PerplexityParams& params, const BlockWeights& weights,
                                           uint64_t maxStateMemory = 0, const std::filesystem::path& spillDir = {},
                                           const ProgressFn& progress = {});

}  // namespace qz::calib
