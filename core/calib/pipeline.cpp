#include "calib/pipeline.h"

#include "common/file_util.h"
#include "infer/hparams.h"

namespace qz::calib {

namespace fs = std::filesystem;

Result<CalibrationText> readCalibrationText(const Model& model, const std::string& path) {
    auto txt = readSmallFile(path, size_t{1} << 30);
    if (!txt) return txt.error();
    CalibrationText c;
    c.text = std::move(*txt);
    auto toks = tokenizeText(model, c.text, path);
    if (!toks) return toks.error();
    c.tokens = std::move(*toks);
    return c;
}

Status checkWindowLength(const Model& model, int seqLen, const std::string& what) {
    auto hp = readInferHParams(model);
    if (!hp) return hp.error();
    if (hp->nCtxTrain > 0 && seqLen > hp->nCtxTrain)
        return makeError(what + " of " + std::to_string(seqLen) + " tokens exceed the model's context (" +
                         std::to_string(hp->nCtxTrain) + ")");
    return okStatus();
}

Result<std::vector<std::vector<int32_t>>> windowsOf(const CalibrationText& text, const std::string& path,
                                                    const CalibParams& params) {
    auto w = calibrationWindows(text.tokens, params);
    if (!w) return makeError(path + ": " + w.error().message);
    return w;
}

fs::path spillFolder(bool writeOutput, const fs::path& tmpDir) {
    std::error_code ec;
    return writeOutput ? tmpDir : fs::temp_directory_path(ec);
}

Status initStates(StateStore& states, int64_t windows, int64_t seqLen, int64_t hidden, StateType type,
                  uint64_t maxMemory, const fs::path& spillDir, const std::string& what) {
    if (auto s = states.init(windows, seqLen, hidden, type, maxMemory, spillDir); !s)
        return makeError(what + ": " + s.error().message);
    return okStatus();
}

Status writeQuantizedConfig(const Model& model, const fs::path& dir, const nlohmann::ordered_json& qc,
                            std::vector<std::string>& files) {
    nlohmann::ordered_json cfg;
    try {
        cfg = nlohmann::ordered_json::parse(model.configJson);
    } catch (const std::exception& e) {
        return makeError("config.json: " + std::string(e.what()));
    }
    if (!cfg.is_object()) return makeError("config.json is not an object");
    cfg["quantization_config"] = qc;
    if (auto s = writeFileAtomic((dir / "config.json").string(), cfg.dump(2) + "\n"); !s) return s;
    files.push_back("config.json");
    return okStatus();
}

Status copyTokenizerFiles(const Model& model, const fs::path& dir, std::vector<std::string>& files) {
    std::error_code ec;
    const fs::path src = fs::is_directory(model.path, ec) ? fs::path(model.path) : fs::path(model.path).parent_path();
    // Side files: a symlink is followed only inside the model folder (or its hub cache repository).
    static const std::vector<std::string> kCopy = {
        "added_tokens.json", "generation_config.json", "merges.txt",      "special_tokens_map.json",
        "tokenizer.json",    "tokenizer.model",        "tokenizer_config.json", "vocab.json",
        "vocab.txt"};
    return copyModelSideFiles(src.string(), dir.string(), kCopy, files);
}

Status moveIntoPlace(const fs::path& tmpDir, const std::string& outDir, const std::vector<std::string>& stateFiles) {
    std::error_code ec;
    for (const auto& f : stateFiles) fs::remove(tmpDir / f, ec);
    if (fs::exists(outDir, ec)) fs::remove(outDir, ec); // empty folder (checked when the run started)
    fs::rename(tmpDir, outDir, ec);
    if (ec) return makeError("cannot move " + tmpDir.string() + " to " + outDir + ": " + ec.message());
    return okStatus();
}

}  // namespace qz::calib
