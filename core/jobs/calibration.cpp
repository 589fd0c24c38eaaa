#include "jobs/calibration.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "calib/layered.h"
#include "infer/engine.h"
#include "infer/text_tokens.h"

namespace qz {

Result<std::string> readCalibrationText(const std::string& path, uint64_t maxBytes) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    if (ec) return makeError(path + ": cannot read the calibration text: " + ec.message());
    if (size > maxBytes)
        return makeError(path + ": calibration text too large (" + std::to_string(size) + " bytes, limit " +
                         std::to_string(maxBytes) + ")");
    std::ifstream in(path, std::ios::binary);
    if (!in) return makeError(path + ": cannot open the calibration text");
    std::string text(static_cast<size_t>(size), '\0');
    in.read(text.data(), static_cast<std::streamsize>(size));
    if (static_cast<uint64_t>(in.gcount()) != size) return makeError(path + ": short read of the calibration text");
    return text;
}

Result<CalibrationStats> collectActivationMaxima(const Model& model, std::string_view text,
                                                 const CalibrationParams& params, const ProgressFn& progress) {
    if (params.nCtx < 1) return makeError("calibration: context must be at least 1 token");
    if (params.nChunks < 1) return makeError("calibration: at least one chunk is needed");
    auto in = tokenizeForPerplexity(model, text);
    if (!in) return in.error();
    if (in->tokens.size() < 2) return makeError("calibration: the text has fewer than 2 tokens");

    EngineOptions opt;
    opt.threads = params.threads;
    auto loadProgress = [&](const ProgressInfo& i) {
        return !progress || progress({0.2 * i.fraction, "calibration: loading " + i.step});
    };
    auto engine = Engine::load(model, opt, loadProgress);
    if (!engine) return engine.error();
    Engine& e = **engine;

    CalibrationStats stats;
    stats.nCtx = std::min(params.nCtx, e.nCtxMax());
    const auto nTok = static_cast<int64_t>(in->tokens.size());
    const int64_t avail = std::max<int64_t>(1, nTok / stats.nCtx);
    const int chunks = static_cast<int>(std::min<int64_t>(params.nChunks, avail));
    const int64_t len = std::min<int64_t>(stats.nCtx, nTok);

    std::string badShape;
    const LinearObserver observer = [&](const std::string& name, const float* x, int64_t nTokens, int64_t nIn) {
        if (!stats.layers[name].add(x, nTokens, nIn) && badShape.empty()) badShape = name;
    };
    std::vector<std::vector<int32_t>> seqs(static_cast<size_t>(chunks));
    for (int c = 0; c < chunks; ++c) {
        seqs[c].assign(in->tokens.begin() + c * len, in->tokens.begin() + (c + 1) * len);
        if (in->params.addBos && in->params.bosId >= 0) seqs[c][0] = in->params.bosId;
    }
    calib::LayeredPassParams lp;
    lp.stateType = params.stateType;
    lp.maxStateMemory = params.maxStateMemory;
    lp.head = calib::HeadInput::AllTokens; // the LM head's input is observed for every token
    auto passProgress = [&](const ProgressInfo& i) {
        return !progress || progress({0.2 + 0.8 * i.fraction, "calibration " + i.step});
    };
    auto run = calib::runLayered(e, seqs, observer, lp, passProgress);
    if (!run) return run.error();
    if (!badShape.empty()) return makeError("calibration: inconsistent input width for " + badShape);
    stats.tokens = static_cast<int64_t>(chunks) * len;
    stats.nChunks = chunks;
    if (progress && !progress({1.0, "calibration done"})) return cancelledError();
    return stats;
}

}  // namespace qz
