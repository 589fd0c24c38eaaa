// Calibration windows as the GPTQ notebook builds them (used by GPTQ and EXL2): the text is tokenized
// once (the model's own tokenizer, as for perplexity: BOS first when the vocabulary adds one), then
// `samples` windows of `seqLen` consecutive tokens are cut at seeded random starts (uniform in
// [0, nTokens − seqLen]). The generator is our own (splitmix64 of seed, start = next() mod range) so that
// the windows are the same on every platform. Windows are plain slices (no BOS inserted), as in the
// notebook.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "model/model.h"

namespace qz::calib {

struct CalibParams {
    int samples = 128;
    int seqLen = 512;
    uint64_t seed = 0;
};

Result<std::vector<std::vector<int32_t>>> calibrationWindows(std::span<const int32_t> tokens, const CalibParams& p);

// Reads a text file (at most 1 GiB) and tokenizes it with the model's tokenizer.
Result<std::vector<int32_t>> tokenizeTextFile(const Model& model, const std::string& path);
// Tokenizes text already read (e.g. for a fingerprint too); `name` (its file) is used in messages.
Result<std::vector<int32_t>> tokenizeText(const Model& model, const std::string& text, const std::string& name);

// splitmix64 step (exposed for tests).
uint64_t splitmix64(uint64_t& state);

}  // namespace qz::calib
