#include "jobs/calibration.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

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
    e.setObserver([&](const std::string& name, const float* x, int64_t nTokens, int64_t nIn) {
        auto& a = stats.layers[name];
        if (a.maxAbs.empty()) {
            a.nIn = nIn;
            a.maxAbs.assign(static_cast<size_t>(nIn), 0.0f);
        }
        if (a.nIn != nIn) {
            badShape = name;
            return;
        }
        for (int64_t t = 0; t < nTokens; ++t) {
            const float* row = x + t * nIn;
            for (int64_t j = 0; j < nIn; ++j) {
                const float v = std::fabs(row[j]);
                if (v > a.maxAbs[j]) a.maxAbs[j] = v;  // NaN never wins
            }
        }
        a.tokens += nTokens;
    });

    std::vector<int32_t> chunk(static_cast<size_t>(len));
    std::vector<float> logits(static_cast<size_t>(len) * static_cast<size_t>(e.nVocab()));
    for (int c = 0; c < chunks; ++c) {
        if (progress && !progress({0.2 + 0.8 * c / chunks, "calibration chunk " + std::to_string(c + 1) + "/" +
                                                                std::to_string(chunks)}))
            return cancelledError();
        std::copy_n(in->tokens.begin() + c * len, len, chunk.begin());
        if (in->params.addBos && in->params.bosId >= 0) chunk[0] = in->params.bosId;
        e.reset();
        // Logits of every position, so that the LM head's input is observed for every token.
        if (auto st = e.eval(chunk, 0, logits.data(), 0); !st) return st.error();
        if (!badShape.empty()) return makeError("calibration: inconsistent input width for " + badShape);
        stats.tokens += len;
        ++stats.nChunks;
    }
    if (progress && !progress({1.0, "calibration done"})) return cancelledError();
    return stats;
}

}  // namespace qz
