#include "calib/layered.h"

#include <algorithm>

namespace qz::calib {

Result<LayeredPassResult> runLayered(Engine& engine, std::span<const std::vector<int32_t>> sequences,
                                     const LinearObserver& observer, const LayeredPassParams& p,
                                     const ProgressFn& progress) {
    if (sequences.empty()) return makeError("calibration: no sequences");
    const size_t len = sequences[0].size();
    if (len == 0) return makeError("calibration: empty sequence");
    for (const auto& s : sequences)
        if (s.size() != len) return makeError("calibration: sequences of different lengths");
    if (len > static_cast<size_t>(engine.nCtxMax()))
        return makeError("calibration: sequences of " + std::to_string(len) + " tokens exceed the context of " +
                         std::to_string(engine.nCtxMax()));
    const int nLayer = engine.hparams().nLayer;
    const int64_t hidden = engine.hparams().nEmbd;
    const auto rows = static_cast<int64_t>(sequences.size());

    std::error_code ec;
    const std::filesystem::path spillDir = p.spillDir.empty() ? std::filesystem::temp_directory_path(ec) : p.spillDir;
    const uint64_t rowBytes = static_cast<uint64_t>(len) * static_cast<uint64_t>(hidden) *
                              static_cast<uint64_t>(stateBytesPerValue(p.stateType));
    const int64_t perBatch =
        p.batchBytes == 0 ? rows : std::clamp<int64_t>(static_cast<int64_t>(p.batchBytes / rowBytes), 1, rows);

    const double total = static_cast<double>(rows) * (nLayer + 1 + (p.head == HeadInput::None ? 0 : 1));
    double done = 0;
    auto step = [&](const std::string& what) {
        done += 1;
        return !progress || progress({std::min(1.0, done / total), what});
    };
    LayeredPassResult res;
    StateStore states;
    std::vector<float> row;
    for (int64_t b0 = 0; b0 < rows; b0 += perBatch) {
        const int64_t n = std::min(perBatch, rows - b0);
        if (auto s = states.init(n, static_cast<int64_t>(len), hidden, p.stateType, p.maxStateMemory, spillDir); !s)
            return makeError("calibration: " + s.error().message);
        res.stateBytes = std::max(res.stateBytes, states.bytes());
        res.spilled = res.spilled || states.spilled();
        ++res.batches;
        row.resize(static_cast<size_t>(states.rowValues()));
        for (int64_t r = 0; r < n; ++r) {
            if (auto s = engine.embed(sequences[static_cast<size_t>(b0 + r)], 0, row); !s)
                return makeError("calibration: " + s.error().message);
            if (auto s = states.put(r, row); !s) return s.error();
            if (!step("embedding")) return cancelledError();
        }
        for (int l = 0; l < nLayer; ++l) {
            const std::string what = "block " + std::to_string(l + 1) + "/" + std::to_string(nLayer);
            // The last block's output is only needed by the head: without it the block stops once its
            // last linear's input has been observed.
            const bool keep = l + 1 < nLayer || p.head != HeadInput::None;
            for (int64_t r = 0; r < n; ++r) {
                if (auto s = states.get(r, row); !s) return s.error();
                if (auto s = engine.forwardLayer(l, row, 0, observer, keep ? BlockStage::Complete : BlockStage::FfnOutInput);
                    !s)
                    return makeError("calibration: " + s.error().message);
                if (keep)
                    if (auto s = states.put(r, row); !s) return s.error();
                if (!step(what)) return cancelledError();
            }
        }
        if (p.head != HeadInput::None) {
            const bool all = p.head == HeadInput::AllTokens;
            std::vector<float> logits(static_cast<size_t>(all ? len : 1) * static_cast<size_t>(engine.nVocab()));
            for (int64_t r = 0; r < n; ++r) {
                if (auto s = states.get(r, row); !s) return s.error();
                std::span<const float> in(row);
                if (!all) in = in.subspan((len - 1) * static_cast<size_t>(hidden));
                if (auto s = engine.head(in, logits.data(), observer); !s)
                    return makeError("calibration: " + s.error().message);
                if (!step("output")) return cancelledError();
            }
        }
    }
    engine.reset();
    return res;
}

}  // namespace qz::calib
