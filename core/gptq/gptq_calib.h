// Calibration data for GPTQ as the GPTQ notebook builds it: the text is tokenized once (the model's
// own tokenizer, as for perplexity: BOS first when the vocabulary adds one), then `samples` windows of
// `seqLen` consecutive tokens are cut at seeded random starts (uniform in [0, nTokens − seqLen]).
// The generator is our own (splitmix64 of seed, start = next() mod range) so that the windows are the
// same on every platform. Windows are plain slices (no BOS inserted), as in the notebook.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "model/model.h"

namespace qz::gptq {

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

// The hidden states of the calibration windows between two decoder blocks, carried from one block to
// the next (rows × seqLen × hidden values). Stored as F32 (exact: the calibration then equals a run of
// the whole model from the tokens) or rounded to F16 / BF16 (half the memory). They live in memory, or
// in an unlinked temporary file in spillDir when they would take more than maxMemoryBytes (0: no limit)
// - then one row is read or written per call. bytes() = rows · seqLen · hidden · bytesPerValue.
// put() fails on a value F16 cannot hold (|x| > 65504) instead of carrying an infinity.
enum class StateType { F32, F16, BF16 };
const char* stateTypeName(StateType t);

class CarriedStates {
  public:
    CarriedStates() = default;
    ~CarriedStates();
    CarriedStates(const CarriedStates&) = delete;
    CarriedStates& operator=(const CarriedStates&) = delete;

    // Sizes are checked (64-bit products; at most 2^40 values).
    Status init(int64_t rows, int64_t seqLen, int64_t hidden, StateType type, uint64_t maxMemoryBytes,
                const std::filesystem::path& spillDir);
    uint64_t bytes() const { return m_bytes; }
    bool spilled() const { return m_fd >= 0; }
    int64_t rowValues() const { return m_rowValues; }
    // Row r's seqLen·hidden values, widened to F32 / rounded to the storage type.
    Status get(int64_t row, std::span<float> out);
    Status put(int64_t row, std::span<const float> in);

  private:
    int64_t m_rows = 0, m_rowValues = 0;
    StateType m_type = StateType::F32;
    size_t m_valueBytes = 4;
    uint64_t m_bytes = 0;
    std::vector<uint8_t> m_mem; // when in memory
    std::vector<uint8_t> m_row; // conversion buffer of one row
    int m_fd = -1;              // when spilled
    std::string m_spillName;    // for messages
};

// splitmix64 step (exposed for tests).
uint64_t splitmix64(uint64_t& state);

}  // namespace qz::gptq
