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

Result<PerplexityResult> perplexityLayered(Engine& engine, std::span<const int32_t> tokens,
                                           const PerplexityParams& params, const BlockWeights& weights,
                                           uint64_t maxStateMemory, const std::filesystem::path& spillDirIn,
                                           const ProgressFn& progress) {
    const int nCtx = params.nCtx;
    const int nChunks = perplexityChunkCount(tokens.size(), params);
    if (nCtx < 4 || nCtx > engine.nCtxMax() || nChunks < 1)  // computePerplexity words these errors
        return computePerplexity(engine, tokens, params);
    if (params.addBos && (params.bosId < 0 || params.bosId >= engine.nVocab()))
        return makeError("perplexity: BOS is requested but the BOS id is not in the vocabulary");
    const int nLayer = engine.hparams().nLayer;
    const int64_t hidden = engine.hparams().nEmbd;
    const int first = nCtx / 2;
    std::error_code ec;
    const std::filesystem::path spillDir = spillDirIn.empty() ? std::filesystem::temp_directory_path(ec) : spillDirIn;

    const double total = static_cast<double>(nChunks) * (nLayer + 2);
    double done = 0;
    auto step = [&](const std::string& what) {
        done += 1;
        return !progress || progress({std::min(1.0, done / total), what});
    };
    StateStore states;
    if (auto s = states.init(nChunks, nCtx, hidden, StateType::F32, maxStateMemory, spillDir, "perplexity-states"); !s)
        return makeError("perplexity: " + s.error().message);
    std::vector<float> row(static_cast<size_t>(states.rowValues()));
    std::vector<int32_t> input(static_cast<size_t>(nCtx));
    for (int c = 0; c < nChunks; ++c) {
        std::copy_n(tokens.data() + static_cast<size_t>(c) * nCtx, nCtx, input.begin());
        if (params.addBos) input[0] = params.bosId;
        if (auto s = engine.embed(input, 0, row); !s) return makeError("perplexity: " + s.error().message);
        if (auto s = states.put(c, row); !s) return s.error();
        if (!step("embedding")) return cancelledError();
    }
    for (int l = 0; l < nLayer; ++l) {
        if (weights.install)
            if (auto s = weights.install(l); !s) return s.error();
        const std::string what = "block " + std::to_string(l + 1) + "/" + std::to_string(nLayer);
        for (int c = 0; c < nChunks; ++c) {
            if (auto s = states.get(c, row); !s) return s.error();
            if (auto s = engine.forwardLayer(l, row, 0); !s) return makeError("perplexity: " + s.error().message);
            if (auto s = states.put(c, row); !s) return s.error();
            if (!step(what)) return cancelledError();
        }
        if (weights.release)
            if (auto s = weights.release(l); !s) return s.error();
    }
    // The scoring itself is computePerplexity's, with the head's logits of positions first .. nCtx−1.
    const ChunkLogitsFn logitsOf = [&](int c, std::vector<float>& logits) -> Status {
        if (auto s = states.get(c, row); !s) return s;
        logits.resize(static_cast<size_t>(nCtx - first) * engine.nVocab());
        return engine.head(std::span<const float>(row).subspan(static_cast<size_t>(first) * hidden), logits.data());
    };
    auto r = computePerplexity(
        engine, tokens, params,
        [&](const ProgressInfo& pi) {
            return !progress || progress({std::min(1.0, (done + pi.fraction * nChunks) / total), pi.step});
        },
        nullptr, logitsOf);
    engine.reset();
    return r;
}

}  // namespace qz::calib
