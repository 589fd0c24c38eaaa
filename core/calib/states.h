// The hidden states of calibration sequences carried from one decoder block (or EXL2 module) to the next,
// shared by GPTQ, EXL2, imatrix and LLM.int8's outlier statistics: rows × seqLen × hidden values, one
// row per sequence. Stored as F32 (exact: a calibration then equals a run of the whole model from the
// tokens) or rounded to F16 / BF16 (half the memory). They live in memory, or in an unlinked temporary
// file in spillDir when they would take more than maxMemoryBytes (0: no limit) - then one row is read or
// written per call, so only a row (plus one row of conversion buffer) is in memory. The file is unlinked
// as soon as it is created: it disappears when the store is destroyed or re-initialized, and with the
// process whatever happens. bytes() = rows · seqLen · hidden · bytesPerValue.
// A row may be read and then written back in place (a block's output replaces its input).
// put() fails on a value F16 cannot hold (|x| > 65504, or not finite) instead of carrying an infinity.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"

namespace qz::calib {

enum class StateType { F32, F16, BF16 };
const char* stateTypeName(StateType t);
// "f32" / "f16" / "bf16" (any case); nullopt for anything else.
std::optional<StateType> parseStateType(const std::string& s);
inline int stateBytesPerValue(StateType t) { return t == StateType::F32 ? 4 : 2; }

class StateStore {
  public:
    StateStore() = default;
    ~StateStore();
    StateStore(const StateStore&) = delete;
    StateStore& operator=(const StateStore&) = delete;

    // Sizes are checked (64-bit products; at most 2^40 values). The spill file is named
    // <spillDir>/<prefix>-XXXXXX (unlinked at once).
    Status init(int64_t rows, int64_t seqLen, int64_t hidden, StateType type, uint64_t maxMemoryBytes,
                const std::filesystem::path& spillDir, const std::string& prefix = "calib-states");
    // Frees the memory and closes (so deletes) the spill file.
    void release();
    uint64_t bytes() const { return m_bytes; }
    bool spilled() const { return m_fd >= 0; }
    int64_t rows() const { return m_rows; }
    int64_t rowValues() const { return m_rowValues; }
    StateType type() const { return m_type; }
    const std::string& spillName() const { return m_spillName; } // the (unlinked) file, when spilled
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

}  // namespace qz::calib
