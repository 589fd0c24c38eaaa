// The stages the calibrated exporters (GPTQ: gptq/gptq_export.h, EXL2: exl2/exl2_export.h) share:
//   plan      — the calibration text read once and tokenized (the fingerprint of a resume state hashes
//               the same text), window lengths checked against the model's context;
//   calibrate — the windows' hidden states carried in a calib::StateStore (calib/states.h) in the
//               output's temporary folder (or the system's when nothing is written);
//   quantize  — method-specific (layer groups for GPTQ, modules and options for EXL2);
//   write     — config.json with the method's "quantization_config", the tokenizer / generation files
//               copied from the model folder, the resume state dropped and the temporary folder renamed
//               onto the destination.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "calib/states.h"
#include "calib/windows.h"
#include "common/result.h"
#include "model/model.h"

namespace qz::calib {

// plan: the text (at most 1 GiB) and its tokens (calib/windows.h tokenizeText).
struct CalibrationText {
    std::string text;
    std::vector<int32_t> tokens;
};
Result<CalibrationText> readCalibrationText(const Model& model, const std::string& path);

// plan: `what` windows of seqLen tokens must fit the model's training context (when it states one).
Status checkWindowLength(const Model& model, int seqLen, const std::string& what);

// plan: the seeded windows of a text, errors naming the file.
Result<std::vector<std::vector<int32_t>>> windowsOf(const CalibrationText& text, const std::string& path,
                                                    const CalibParams& params);

// calibrate: where a state store spills: the output's temporary folder when writing, else the system's.
std::filesystem::path spillFolder(bool writeOutput, const std::filesystem::path& tmpDir);

// calibrate: a store of windows × seqLen × hidden states (errors prefixed with `what`).
Status initStates(StateStore& states, int64_t windows, int64_t seqLen, int64_t hidden, StateType type,
                  uint64_t maxMemory, const std::filesystem::path& spillDir, const std::string& what);

// write: config.json = the model's config.json with "quantization_config" = qc; appends it to files.
Status writeQuantizedConfig(const Model& model, const std::filesystem::path& dir, const nlohmann::ordered_json& qc,
                            std::vector<std::string>& files);
// write: the tokenizer and generation files of the model folder (symlinks followed only inside it).
Status copyTokenizerFiles(const Model& model, const std::filesystem::path& dir, std::vector<std::string>& files);
// write: removes `stateFiles` (names in tmpDir) and renames tmpDir onto outDir (an empty outDir is replaced).
Status moveIntoPlace(const std::filesystem::path& tmpDir, const std::string& outDir,
                     const std::vector<std::string>& stateFiles);

}  // namespace qz::calib
