#include "gptq/gptq_export.h"

#include <chrono>
#include <ctime>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <unistd.h>

#include "common/file_util.h"
#include "common/fp16.h"
#include "calib/hessian.h"
#include "calib/pipeline.h"
#include "gptq/gptq_layers.h"
#include "gptq/gptq_pack.h"
#include "infer/hparams.h"
#include "io/safetensors_writer.h"

namespace qz::gptq {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double processCpuSeconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Adds the wall and process CPU time of its lifetime to two counters.
struct PhaseTimer {
    double &wall, &cpu;
    Clock::time_point t0 = Clock::now();
    double c0 = processCpuSeconds();
    PhaseTimer(double& w, double& c) : wall(w), cpu(c) {}
    ~PhaseTimer() {
        wall += since(t0);
        cpu += processCpuSeconds() - c0;
    }
};

// An expert's own Hessian is trusted from this many routed tokens per input column: below 4 x the columns
// the layer's averaged expert Hessian gave the lower held-out output error for every expert layer kind of
// the tiny qwen3moe and mixtral models, at 8 x the columns the expert's own one did (README.md D.6,
// tests/bench/bench_moe_fallback).
constexpr int64_t kExpertTokensPerColumn = 4;

// One input's Hessian accumulator: in × in floats.
uint64_t hessianBytes(int in) { return static_cast<uint64_t>(in) * static_cast<uint64_t>(in) * sizeof(float); }

// modules: for a mixture-of-experts model, the quantized modules of a block relative to the block
// (README.md D.6), written as "modules_in_block_to_quantize" so that a loader replaces only those (the
// router is an nn.Linear too and stays unquantized).
nlohmann::ordered_json quantizeConfigObject(const ExportParams& p,
                                            const std::vector<std::vector<std::string>>& modules = {}) {
    nlohmann::ordered_json j;
    j["bits"] = p.quant.bits;
    j["group_size"] = p.quant.groupSize;
    j["damp_percent"] = p.quant.dampPercent;
    j["desc_act"] = p.quant.descAct;
    j["static_groups"] = p.quant.staticGroups;
    j["sym"] = p.quant.sym;
    j["true_sequential"] = p.trueSequential;
    j["model_name_or_path"] = nullptr;
    j["model_file_base_name"] = "model";
    j["quant_method"] = "gptq";
    j["checkpoint_format"] = "gptq";
    if (!modules.empty()) j["modules_in_block_to_quantize"] = modules;
    // GPTQModel refuses asymmetric v1 checkpoints unless the quantizer is named (README.md D.3); it is
    // also informative for everyone else. Unknown keys are accepted by transformers.
    j["meta"] = {{"quantizer", nlohmann::ordered_json::array({"quantzoo:0.1.0"})},
                 {"method", p.method == Method::Gptq ? "gptq" : "rtn"}};
    return j;
}

std::string fingerprint(const Model& model, const ExportParams& p, const std::string& calibText) {
    nlohmann::ordered_json j;
    std::error_code ec;
    j["model"] = fs::weakly_canonical(model.path, ec).string();
    j["modelBytes"] = model.totalBytes();
    j["tensors"] = model.tensors.size();
    j["calibBytes"] = calibText.size();
    j["calibHash"] = std::to_string(fnv1a(calibText));
    j["bits"] = p.quant.bits;
    j["groupSize"] = p.quant.groupSize;
    j["sym"] = p.quant.sym;
    j["descAct"] = p.quant.descAct;
    j["staticGroups"] = p.quant.staticGroups;
    j["damp"] = p.quant.dampPercent;
    j["blockSize"] = p.quant.blockSize;
    j["trueSequential"] = p.trueSequential;
    j["method"] = p.method == Method::Gptq ? "gptq" : "rtn";
    j["rtnBaseline"] = p.rtnBaseline;
    j["samples"] = p.calib.samples;
    j["seqLen"] = p.calib.seqLen;
    j["seed"] = std::to_string(p.calib.seed);
    if (p.stateType != StateType::F32) j["states"] = stateTypeName(p.stateType); // F32 runs keep older states
    if (p.expertMinTokens >= 0) j["expertMinTokens"] = p.expertMinTokens;
    return j.dump();
}

// Layer values [out][in] back to the tensor's own layout (Conv1D [in][out]).
std::vector<float> toTensorLayout(const std::vector<float>& w, const LinearLayer& L) {
    if (!L.conv1d) return w;
    std::vector<float> t(w.size());
    for (int n = 0; n < L.out; ++n)
        for (int k = 0; k < L.in; ++k) t[static_cast<size_t>(k) * L.out + n] = w[static_cast<size_t>(n) * L.in + k];
    return t;
}

Result<std::vector<float>> readLayerWeight(const Model& model, const LinearLayer& L) {
    const TensorInfo* t = model.find(L.weightName);
    auto v = readTensorF32(model, *t);
    if (!v) return v.error();
    if (!L.conv1d) return std::move(*v);
    LinearLayer stored = L;  // the file's [in, out] read as rows × columns
    std::swap(stored.in, stored.out);
    return toTensorLayout(*v, stored);
}

Result<std::vector<float>> readBiasF16(const Model& model, const LinearLayer& L) {
    auto v = readTensorF32(model, *model.find(L.biasName));
    if (!v) return v.error();
    for (float& x : *v) x = fp16ToFp32(fp32ToFp16(x));
    return v;
}

std::string recordFile(const fs::path& dir, const std::string& weightName) {
    return (dir / (weightName + ".qzl")).string();
}

}  // namespace

Result<WeightOverrides> rtnBlockWeights(const Model& model, const LayerPlan& plan, int block, const QuantConfig& quant) {
    if (block < 0 || static_cast<size_t>(block) >= plan.blocks.size())
        return makeError("RTN: no decoder block " + std::to_string(block));
    WeightOverrides out;
    for (const auto& g : plan.blocks[static_cast<size_t>(block)])
        for (const auto& L : g) {
            auto w = readLayerWeight(model, L);
            if (!w) return w.error();
            out[L.weightName] = toTensorLayout(dequantize(quantizeLayerRtn(w->data(), L.out, L.in, quant)), L);
            if (!L.biasName.empty()) {
                auto b = readBiasF16(model, L);
                if (!b) return b.error();
                out[L.biasName] = std::move(*b);
            }
        }
    return out;
}

std::string quantizeConfigJson(const ExportParams& params) { return quantizeConfigObject(params).dump(2) + "\n"; }

Result<ExportResult> exportGptq(const Model& model, const ExportParams& p, ProgressFn progress, LayerReportFn onLayer) {
    const auto t0 = Clock::now();
    if (auto s = validateConfig(p.quant); !s) return s.error();
    if (model.format != ModelFormat::HuggingFaceFolder)
        return makeError("GPTQ export needs a Hugging Face model folder (config.json + safetensors)");
    auto planR = planLayers(model);
    if (!planR) return planR.error();
    const LayerPlan& plan = *planR;
    if (plan.experts > 0) {  // the tensors' experts must be the ones config.json routes to
        auto hp = readInferHParams(model);
        if (!hp) return hp.error();
        if (hp->nExpert != plan.experts)
            return makeError("GPTQ: " + model.path + " has " + std::to_string(plan.experts) +
                             " experts per layer but its configuration names " + std::to_string(hp->nExpert));
    }
    for (const auto& b : plan.blocks)
        for (const auto& g : b)
            for (const auto& L : g)
                if (auto s = checkLayerShape(p.quant, L.out, L.in); !s)
                    return makeError(L.weightName + ": " + s.error().message);
    // Only GPTQ needs the calibration: RTN quantizes each weight on its own (with Method::Rtn a given
    // calibration text is not read, and the layers report no output error).
    const bool calibrate = p.method == Method::Gptq;
    if (p.method == Method::Gptq && p.calibPath.empty()) return makeError("GPTQ needs a calibration text");

    // Plan: the calibration text (read once: its hash is part of the resume fingerprint) and windows.
    std::string calibText;
    std::vector<std::vector<int32_t>> windows;
    if (calibrate) {
        if (auto s = calib::checkWindowLength(model, p.calib.seqLen, "calibration windows"); !s) return s.error();
        auto ct = calib::readCalibrationText(model, p.calibPath);
        if (!ct) return ct.error();
        auto w = calib::windowsOf(*ct, p.calibPath, p.calib);
        if (!w) return w.error();
        calibText = std::move(ct->text);
        windows = std::move(*w);
    }

    // Destination and temporary folder (common/file_util.h).
    std::string outDir = p.outputDir;
    fs::path tmpDir;
    WriterLock partialLock; // until the folder is renamed onto the destination (or given up)
    if (p.writeOutput) {
        auto pf = openPartialFolder(p.outputDir, "gptq", fingerprint(model, p, calibText), p.resume);
        if (!pf) return pf.error();
        partialLock = pf->lock;
        outDir = pf->outDir;
        tmpDir = pf->dir;
    }

    ExportResult res;
    res.outputDir = outDir;
    const size_t nLayers = plan.layerCount();
    const size_t nBlocks = plan.blocks.size();
    const double nWin = static_cast<double>(windows.size());
    // Progress units: one per calibration window per pass (group passes, the carry passes between blocks
    // and the embedding), 4 per layer, and the writing.
    size_t passes = 0;
    for (const auto& b : plan.blocks) passes += p.trueSequential ? b.size() : 1;
    passes += nBlocks; // nBlocks − 1 carries + the embedding
    double total = (calibrate ? static_cast<double>(passes) * nWin : 0.0) + 4.0 * nLayers + nLayers; // grows by
    // the extra passes of a chunked group (maxHessianMemory)
    double done = 0;
    auto report = [&](double units, const std::string& step) {
        done += units;
        return !progress || progress(ProgressInfo{std::min(1.0, done / total), step});
    };

    std::map<std::string, int> nGroupsOf;        // finished layers (their results live in the layer files)
    WeightOverrides overrides;                    // the exported method's weights (only with keepOverrides)
    // One engine for the calibration: quantized layers are swapped in with setWeight (and out again with
    // resetWeight once the states have left their block). The windows are
    // embedded once; their hidden states are then carried from block to block (AutoGPTQ's sequential
    // semantics): for each group, block b runs on the states entering it until that group's input has
    // been observed (Engine::forwardLayer with a stop stage), the group is quantized and installed, and
    // once the whole block is quantized it runs completely to give the next block's input. So each block
    // costs (its passes + 1) block evaluations, and every layer still sees the outputs of all layers
    // quantized before it, exactly as when the model is re-run from the tokens for every pass.
    std::unique_ptr<Engine> engine;
    CarriedStates states;
    std::vector<float> row;
    if (calibrate) {
        EngineOptions eo;
        eo.threads = p.quant.threads;
        eo.nCtx = p.calib.seqLen;
        auto eng = Engine::load(model, eo);
        if (!eng) return makeError("calibration: " + eng.error().message);
        engine = std::move(*eng);
        const int64_t hidden = engine->hparams().nEmbd;
        // The carried states take windows × seqLen × hidden × 4 bytes in F32 (128 × 512 windows of a
        // 4096-wide model: 1 GiB; beyond maxStateMemory they go to a temporary file). F32 is the default
        // because it is exact: the Hessians equal those of re-running the model from the tokens, so the
        // output is byte-identical to that and an earlier run's resume state stays valid. 16-bit states
        // halve the memory but change every Hessian; on bard-llama (4 bits, g128, 64 × 128 windows) the
        // per-layer output errors moved by up to 1.7 % (F16 and BF16 alike, mean 0.5 % / 0.4 %) and the
        // perplexity of the result by +0.011 (F16) / −0.003 (BF16) around F32's 8.3203 - noise, but no
        // gain worth giving up exactness for; F16 may also overflow on large activations.
        if (auto s = calib::initStates(states, static_cast<int64_t>(windows.size()), p.calib.seqLen, hidden,
                                       p.stateType, p.maxStateMemory, calib::spillFolder(p.writeOutput, tmpDir),
                                       "calibration");
            !s)
            return s.error();
        res.stateBytes = states.bytes();
        res.statesSpilled = states.spilled();
        row.resize(static_cast<size_t>(states.rowValues()));
        const PhaseTimer timer(res.calibSeconds, res.calibCpuSeconds);
        for (size_t w = 0; w < windows.size(); ++w) {
            if (auto s = engine->embed(windows[w], 0, row); !s)
                return makeError("calibration: " + s.error().message);
            if (auto s = states.put(static_cast<int64_t>(w), row); !s) return s.error();
            if (!report(1, "embedding the calibration windows")) return cancelledError();
        }
    }
    auto install = [&](const std::string& name, std::vector<float> values, WeightOverrides* keep) -> Status {
        if (engine && keep == &overrides)
            if (auto s = engine->setWeight(name, values); !s) return makeError("calibration: " + s.error().message);
        if (keep && p.keepOverrides) (*keep)[name] = std::move(values);
        return okStatus();
    };
    auto addOverrides = [&](const LinearLayer& L, const LayerResult& r, WeightOverrides& dst) -> Status {
        if (auto s = install(L.weightName, toTensorLayout(dequantize(r), L), &dst); !s) return s;
        if (!L.biasName.empty()) {
            auto b = readBiasF16(model, L);
            if (!b) return b.error();
            if (auto s = install(L.biasName, std::move(*b), &dst); !s) return s;
        }
        return okStatus();
    };

    for (size_t bi = 0; bi < nBlocks; ++bi) {
        const auto& block = plan.blocks[bi];
        if (block.size() != 4) return makeError("GPTQ: a block must have 4 layer groups"); // BlockStage order
        // Calibration units: each pass covers some groups.
        std::vector<std::vector<size_t>> passGroups;
        if (p.trueSequential)
            for (size_t g = 0; g < block.size(); ++g) passGroups.push_back({g});
        else {
            passGroups.emplace_back();
            for (size_t g = 0; g < block.size(); ++g) passGroups.back().push_back(g);
        }
        for (const auto& groups : passGroups) {
            // Load finished layers of these groups from the resume state.
            std::vector<const LinearLayer*> todo;
            std::vector<int> todoGroup;
            for (size_t g : groups)
                for (const auto& L : block[g]) {
                    bool have = false;
                    if (p.writeOutput) {
                        std::error_code ec;
                        const std::string rf = recordFile(tmpDir, L.weightName);
                        if (fs::exists(rf, ec)) {
                            auto rec = loadLayerRecord(rf);
                            if (rec && rec->name == L.weightName && rec->result.rows == L.out &&
                                rec->result.cols == L.in && rec->result.bits == p.quant.bits) {
                                have = true;
                                LayerReport lr{L.weightName, static_cast<int>(bi), static_cast<int>(g), L.out, L.in,
                                               rec->result.loss, rec->relErr, rec->relErrRtn, rec->seconds, true};
                                lr.expert = L.expert;
                                lr.tokens = rec->tokens;
                                lr.fallback = rec->fallback;
                                if (auto s = addOverrides(L, rec->result, overrides); !s) return s.error();
                                if (p.keepOverrides && p.rtnBaseline) {
                                    auto w = readLayerWeight(model, L);
                                    if (!w) return w.error();
                                    if (auto s = addOverrides(L, quantizeLayerRtn(w->data(), L.out, L.in, p.quant),
                                                              res.rtnOverrides);
                                        !s)
                                        return s.error();
                                }
                                nGroupsOf[L.weightName] = rec->result.nGroups;
                                res.layers.push_back(lr);
                                ++res.resumedLayers;
                                if (onLayer) onLayer(lr);
                                if (!report(5, L.weightName + " (resumed)")) return cancelledError();
                            }
                        }
                    }
                    if (!have) {
                        todo.push_back(&L);
                        todoGroup.push_back(static_cast<int>(g));
                    }
                }
            if (todo.empty()) {
                if (calibrate && !report(nWin, "")) return cancelledError();
                continue;
            }

            // Hessians: one per input (layers that share their input share it: a dense group, an
            // expert's gate and up), from block bi run on the carried states up to the last group's input.
            // An expert's Hessian sums only the tokens the router sent to it (the engine's observer reports
            // each expert's routed tokens under its own name). The inputs are observed in chunks whose
            // Hessians fit ExportParams::maxHessianMemory, one pass over the windows per chunk (without a
            // budget, or when they fit, all in one pass): a mixture of experts then holds a chunk of its
            // experts' Hessians at a time, never more than one layer group's (README.md D.6).
            struct InputInfo {
                int dim = 0;
                size_t group = 0;
                bool expert = false;
                size_t chunk = 0;
            };
            std::vector<std::string> order;       // the observed inputs, by group in the block's layer order
            std::map<std::string, InputInfo> info;
            std::map<std::string, int> usesLeft;  // inputName -> todo layers still to quantize
            for (const LinearLayer* L : todo) ++usesLeft[L->inputName];
            if (calibrate) {
                // A group of experts with work left observes all its experts (their average is the
                // fallback's Hessian), also those finished in an earlier run, so that a resumed run
                // computes the same.
                std::set<size_t> expertGroups;
                for (size_t ti = 0; ti < todo.size(); ++ti)
                    if (todo[ti]->expert >= 0) expertGroups.insert(static_cast<size_t>(todoGroup[ti]));
                for (size_t g : groups)
                    for (const auto& L : block[g])
                        if ((usesLeft.count(L.inputName) || (L.expert >= 0 && expertGroups.count(g))) &&
                            !info.count(L.inputName)) {
                            info[L.inputName] = {L.in, g, L.expert >= 0, 0};
                            order.push_back(L.inputName);
                        }
            }
            std::vector<std::vector<std::string>> chunks;
            {
                uint64_t bytes = 0;
                for (const auto& name : order) {
                    const uint64_t b = hessianBytes(info[name].dim);
                    if (chunks.empty() || (p.maxHessianMemory > 0 && bytes + b > p.maxHessianMemory)) {
                        chunks.emplace_back();
                        bytes = 0;
                    }
                    chunks.back().push_back(name);
                    info[name].chunk = chunks.size() - 1;
                    bytes += b;
                }
            }
            const bool chunked = chunks.size() > 1;
            if (chunked) res.hessianChunks = std::max(res.hessianChunks, static_cast<int>(chunks.size()));
            for (const auto& c : chunks) {
                uint64_t b = 0;
                for (const auto& name : c) b += hessianBytes(info[name].dim);
                res.peakHessianBytes = std::max(res.peakHessianBytes, b);
            }

            std::map<std::string, calib::HessianAccumulator> acc;  // the inputs of the chunk being observed
            std::map<std::string, int64_t> tokens;  // observed tokens per input (an expert: routed to it)
            int chunkPasses = 0;
            // One pass over the windows accumulating the Hessians of `names` (and, with countTokens, every
            // observed input's tokens).
            auto pass = [&](const std::vector<std::string>& names, bool countTokens) -> Status {
                for (const auto& n : names) acc[n].reset(info.at(n).dim);
                const LinearObserver observer = [&](const std::string& name, const float* x, int64_t nTok,
                                                    int64_t nIn) {
                    if (countTokens)
                        if (auto t = info.find(name); t != info.end() && nIn == t->second.dim) tokens[name] += nTok;
                    auto it = acc.find(name);
                    if (it == acc.end() || nIn != it->second.dim()) return;
                    it->second.add(x, nTok, p.quant.threads);
                };
                const auto stopAt = static_cast<BlockStage>(groups.back());
                ++res.calibrationPasses;
                if (chunkPasses++ > 0) total += nWin;  // planned: one pass per group pass
                const PhaseTimer timer(res.calibSeconds, res.calibCpuSeconds);
                for (size_t w = 0; w < windows.size(); ++w) {
                    if (auto s = states.get(static_cast<int64_t>(w), row); !s) return s.error();
                    if (auto s = engine->forwardLayer(static_cast<int>(bi), row, 0, observer, stopAt); !s)
                        return makeError("calibration: " + s.error().message);
                    if (!report(1, "calibrating block " + std::to_string(bi) + " (" + std::to_string(w + 1) + "/" +
                                       std::to_string(windows.size()) + ")"))
                        return cancelledError();
                }
                // The normaliser counts sequences for every input (AutoGPTQ's add_batch, README.md D.5): an
                // expert's H is 2/nWindows · Σ over its routed tokens; a constant factor per layer changes
                // neither GPTQ nor the relative errors.
                for (const auto& n : names) acc.at(n).countSample(static_cast<int64_t>(windows.size()));
                return okStatus();
            };

            // Experts' layers with fewer routed tokens than 4 x their input columns (or ExportParams::
            // expertMinTokens) are quantized with GPTQ on the layer's averaged expert Hessian instead of
            // their own (README.md D.6): the sum of every expert's Hessian of that group (a per-token
            // average up to a constant factor, which GPTQ does not see), summed in the block's expert order.
            std::map<size_t, std::vector<float>> averaged;  // group -> Σ over the experts' Hessians
            std::map<size_t, int> fallbackLeft;             // group -> its fallback layers not yet quantized
            std::vector<uint8_t> isFallback(todo.size(), 0);
            auto minTokensOf = [&](const LinearLayer& L) {
                // An expert no token reached always falls back (its own Hessian is zero: a zero weight).
                return std::max<int64_t>(1, p.expertMinTokens >= 0 ? p.expertMinTokens
                                                                   : kExpertTokensPerColumn * static_cast<int64_t>(L.in));
            };

            // Quantize. An input's Hessian (and, for GPTQ, its factor: the layers reading that input share it)
            // is made from its accumulator's storage when its first layer comes and released after its last,
            // so at most one chunk's H and factors exist at a time. The averaged expert Hessian of a group gets
            // its own factor, released after the group's last fallback layer.
            std::map<std::string, std::vector<float>> H;  // inputName -> finished Hessian
            std::map<std::string, GptqFactor> factors;    // inputName, or "averaged:<group>"
            std::vector<LayerReport> reports(todo.size());
            auto quantizeTodo = [&](size_t ti) -> Status {
                const LinearLayer& L = *todo[ti];
                const size_t g = static_cast<size_t>(todoGroup[ti]);
                const PhaseTimer timer(res.quantSeconds, res.quantCpuSeconds);
                const auto tl = Clock::now();
                auto cancelQuant = [&] {
                    return progress && !progress(ProgressInfo{std::min(1.0, done / total), "GPTQ " + L.weightName});
                };
                int64_t tok = -1;
                const bool fallback = isFallback[ti] != 0;
                if (calibrate) {
                    if (!H.count(L.inputName))
                        if (auto it = acc.find(L.inputName); it != acc.end())
                            H[L.inputName] = it->second.take();  // its storage: one copy per input
                    if (L.expert >= 0) tok = tokens[L.inputName];
                }
                const std::string factorKey = fallback ? "averaged:" + std::to_string(g) : L.inputName;
                if (calibrate && p.method == Method::Gptq && !factors.count(factorKey)) {
                    auto f = prepareGptq(fallback ? averaged.at(g) : H.at(L.inputName), L.in, p.quant, cancelQuant);
                    if (!f) return f.error();
                    factors[factorKey] = std::move(*f);
                }
                auto w = readLayerWeight(model, L);
                if (!w) return w.error();
                LayerRecord rec;
                rec.name = L.weightName;
                rec.tokens = tok;
                rec.fallback = fallback;
                LayerResult rtn;
                const bool needRtn = p.method == Method::Rtn || p.rtnBaseline;
                if (needRtn) rtn = quantizeLayerRtn(w->data(), L.out, L.in, p.quant);
                if (p.method == Method::Gptq) {
                    auto q = quantizeLayerGptq(w->data(), L.out, L.in, factors.at(factorKey), p.quant, cancelQuant);
                    if (!q) return q.error();
                    rec.result = std::move(*q);
                } else {
                    rec.result = rtn;
                }
                // The errors are measured on the layer's own Hessian (an expert below the threshold: the few
                // tokens it has; none: no error, -1).
                const bool measurable = calibrate && (L.expert < 0 || tok > 0);
                if (measurable) {
                    const std::vector<float>& He = H.at(L.inputName);
                    rec.relErr = relativeOutputError(w->data(), dequantize(rec.result), L.out, L.in, He, p.quant.threads);
                    if (p.rtnBaseline)
                        rec.relErrRtn = p.method == Method::Rtn ? rec.relErr
                                                                : relativeOutputError(w->data(), dequantize(rtn), L.out,
                                                                                      L.in, He, p.quant.threads);
                }
                if (--usesLeft[L.inputName] == 0) {  // its last layer: the Hessian is no longer needed
                    H.erase(L.inputName);
                    factors.erase(L.inputName);
                    acc.erase(L.inputName);
                }
                if (fallback && --fallbackLeft[g] == 0) {
                    factors.erase(factorKey);
                    averaged.erase(g);
                }
                rec.seconds = since(tl);
                if (p.writeOutput)
                    if (auto s = saveLayerRecord(recordFile(tmpDir, L.weightName), rec); !s) return s.error();
                if (auto s = addOverrides(L, rec.result, overrides); !s) return s.error();
                if (p.keepOverrides && p.rtnBaseline)
                    if (auto s = addOverrides(L, rtn, res.rtnOverrides); !s) return s.error();
                LayerReport lr{L.weightName, static_cast<int>(bi), static_cast<int>(g), L.out, L.in, rec.result.loss,
                               rec.relErr, rec.relErrRtn, rec.seconds, false};
                lr.expert = L.expert;
                lr.tokens = tok;
                lr.fallback = fallback;
                reports[ti] = lr;
                nGroupsOf[L.weightName] = rec.result.nGroups;
                if (onLayer) onLayer(lr);
                if (!report(4, L.weightName)) return cancelledError();
                return okStatus();
            };

            if (!calibrate) {
                for (size_t ti = 0; ti < todo.size(); ++ti)
                    if (auto s = quantizeTodo(ti); !s) return s.error();
            }
            // Chunked, a fallback layer waits for its group's complete average (every chunk summed), then its
            // own Hessian (for the reported error) is observed again in a further pass.
            std::vector<size_t> deferred;
            for (size_t c = 0; c < chunks.size(); ++c) {
                if (auto s = pass(chunks[c], c == 0); !s) return s.error();
                if (c == 0) // every input's tokens are known after the first pass
                    for (size_t ti = 0; ti < todo.size(); ++ti)
                        if (todo[ti]->expert >= 0 && tokens[todo[ti]->inputName] < minTokensOf(*todo[ti])) {
                            isFallback[ti] = 1;
                            ++fallbackLeft[static_cast<size_t>(todoGroup[ti])];
                        }
                for (const auto& name : chunks[c]) {
                    const InputInfo& in = info.at(name);
                    if (!in.expert || !fallbackLeft.count(in.group)) continue;
                    const auto h = acc.at(name).finish();
                    auto& sum = averaged[in.group];
                    if (sum.empty()) sum.assign(h.size(), 0.0f);
                    for (size_t i = 0; i < h.size(); ++i) sum[i] += h[i];
                }
                // Inputs of layers finished in an earlier run were only needed for the average.
                for (const auto& name : chunks[c])
                    if (!usesLeft.count(name)) acc.erase(name);
                for (size_t ti = 0; ti < todo.size(); ++ti) {
                    if (info.at(todo[ti]->inputName).chunk != c) continue;
                    if (chunked && isFallback[ti]) {
                        deferred.push_back(ti);
                        continue;
                    }
                    if (auto s = quantizeTodo(ti); !s) return s.error();
                }
                for (const auto& name : chunks[c]) acc.erase(name);  // the deferred ones' are observed again
            }
            if (!deferred.empty()) {
                std::vector<std::vector<std::string>> again;  // the deferred inputs that saw tokens, by the budget
                uint64_t bytes = 0;
                std::set<std::string> seen;
                for (size_t ti : deferred) {
                    const std::string& name = todo[ti]->inputName;
                    if (tokens[name] <= 0 || !seen.insert(name).second) continue;
                    const uint64_t b = hessianBytes(info.at(name).dim);
                    if (again.empty() || (p.maxHessianMemory > 0 && bytes + b > p.maxHessianMemory)) {
                        again.emplace_back();
                        bytes = 0;
                    }
                    again.back().push_back(name);
                    bytes += b;
                }
                std::set<size_t> done2;
                for (const auto& names : again) {
                    if (auto s = pass(names, false); !s) return s.error();
                    const std::set<std::string> in(names.begin(), names.end());
                    for (size_t ti : deferred)
                        if (in.count(todo[ti]->inputName) && done2.insert(ti).second)
                            if (auto s = quantizeTodo(ti); !s) return s.error();
                }
                for (size_t ti : deferred)  // no token reached them: nothing to observe
                    if (done2.insert(ti).second)
                        if (auto s = quantizeTodo(ti); !s) return s.error();
            }
            for (auto& lr : reports) res.layers.push_back(std::move(lr));
        }

        // Carry: block bi, now fully quantized, turns the states entering it into those entering bi + 1.
        if (calibrate && bi + 1 < nBlocks) {
            ++res.carryPasses;
            const PhaseTimer timer(res.calibSeconds, res.calibCpuSeconds);
            for (size_t w = 0; w < windows.size(); ++w) {
                if (auto s = states.get(static_cast<int64_t>(w), row); !s) return s.error();
                if (auto s = engine->forwardLayer(static_cast<int>(bi), row, 0); !s)
                    return makeError("calibration: " + s.error().message);
                if (auto s = states.put(static_cast<int64_t>(w), row); !s) return s.error();
                if (!report(1, "running block " + std::to_string(bi) + " (" + std::to_string(w + 1) + "/" +
                                   std::to_string(windows.size()) + ")"))
                    return cancelledError();
            }
        }
        // The states have left block bi, and no later pass runs it again: its quantized weights go back to
        // the engine's view of the model file, so the calibration holds one block's F32 copies, not every
        // finished block's (the results live in the layer records; keepOverrides keeps its own copies).
        if (engine)
            for (const auto& g : block)
                for (const auto& L : g) {
                    if (auto s = engine->resetWeight(L.weightName); !s) return makeError("calibration: " + s.error().message);
                    if (!L.biasName.empty())
                        if (auto s = engine->resetWeight(L.biasName); !s)
                            return makeError("calibration: " + s.error().message);
                }
    }

    engine.reset();
    states.release();
    {
        std::set<std::pair<int, int>> experts;
        for (const auto& L : res.layers)
            if (L.fallback) {
                ++res.expertLayersFallback;
                experts.insert({L.block, L.expert});
            }
        res.expertsFallback = static_cast<int>(experts.size());
    }
    if (p.keepOverrides) res.overrides = std::move(overrides);
    if (!p.writeOutput) {
        res.seconds = since(t0);
        return res;
    }

    // The checkpoint.
    std::map<std::string, const LinearLayer*> byWeight, byBias;
    for (const auto& b : plan.blocks)
        for (const auto& g : b)
            for (const auto& L : g) {
                byWeight[L.weightName] = &L;
                if (!L.biasName.empty()) byBias[L.biasName] = &L;
            }
    std::vector<SafetensorsTensorDecl> decls;
    for (const auto& t : model.tensors) {
        if (auto it = byWeight.find(t.name); it != byWeight.end()) {
            const LinearLayer& L = *it->second;
            const int64_t nG = nGroupsOf.at(L.weightName);
            const int64_t bits = p.quant.bits;
            decls.push_back({L.prefix + ".qweight", DType::I32, {L.in * bits / 32, L.out}});
            decls.push_back({L.prefix + ".qzeros", DType::I32, {nG, L.out * bits / 32}});
            decls.push_back({L.prefix + ".scales", DType::F16, {nG, L.out}});
            decls.push_back({L.prefix + ".g_idx", DType::I32, {L.in}});
        } else if (byBias.count(t.name)) {
            decls.push_back({t.name, DType::F16, t.shape});
        } else {
            if (traits(t.dtype).isQuantized) return makeError(t.name + ": ggml block types cannot be written to safetensors");
            decls.push_back({t.name, t.dtype, t.shape});
        }
    }
    const std::string g = std::to_string(p.quant.groupSize);
    ShardedWriteOptions wo;
    wo.maxShardBytes = p.maxShardBytes;
    wo.metadata = {{"format", "pt"},
                   {"quantizer", "quantzoo 0.1.0"},
                   {"gptq_bits", std::to_string(p.quant.bits)},
                   {"gptq_group_size", g},
                   {"gptq_desc_act", p.quant.descAct ? "True" : "False"},
                   {"gptq_damp_percent", std::to_string(p.quant.dampPercent)},
                   {"gptq_checkpoint_format", "gptq"},
                   {"gptq_quant_method", "gptq"}};
    ShardedSafetensorsWriter writer;
    if (auto s = writer.open(tmpDir.string(), decls, wo); !s) return s.error();
    auto asBytes = [](const auto& v) {
        return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(v[0]));
    };
    for (const auto& t : model.tensors) {
        Status s = okStatus();
        if (auto it = byWeight.find(t.name); it != byWeight.end()) {
            const LinearLayer& L = *it->second;
            auto rec = loadLayerRecord(recordFile(tmpDir, L.weightName));
            if (!rec || rec->result.nGroups != nGroupsOf.at(L.weightName)) {
                writer.abort();
                return rec ? makeError(L.weightName + ": layer record changed") : rec.error();
            }
            const LayerResult& r = rec->result;
            s = writer.writeTensor(asBytes(packQweight(r.codes.data(), L.out, L.in, r.bits)));
            if (s) s = writer.writeTensor(asBytes(packQzeros(r.zeros.data(), r.nGroups, L.out, r.bits, true)));
            if (s) {
                std::vector<uint16_t> sc(r.scales.size());
                for (size_t i = 0; i < sc.size(); ++i) sc[i] = fp32ToFp16(r.scales[i]);
                s = writer.writeTensor(asBytes(sc));
            }
            if (s) s = writer.writeTensor(asBytes(r.gIdx));
        } else if (byBias.count(t.name)) {
            auto v = readTensorF32(model, t);
            if (!v) s = v.error();
            else s = writer.writeTensorFromF32(*v);
        } else {
            s = writer.writeTensor(model.rawBytes(t));
        }
        if (!s) {
            writer.abort();
            return s.error();
        }
        if (!report(static_cast<double>(nLayers) / static_cast<double>(model.tensors.size()), "writing " + t.name)) {
            writer.abort();
            return cancelledError();
        }
    }
    if (auto s = writer.finish(); !s) return s.error();
    res.files = writer.shardNames();
    if (res.files.size() > 1) res.files.push_back("model.safetensors.index.json");
    res.tensorBytes = writer.totalBytes();

    // Config files.
    // MoE: the block's quantized modules by group, relative to the block ("mlp.experts.0.gate_proj").
    std::vector<std::vector<std::string>> modules;
    if (plan.experts > 0) {
        const std::string bp = "model.layers.0.";
        for (const auto& gr : plan.blocks[0]) {
            modules.emplace_back();
            for (const auto& L : gr) modules.back().push_back(L.prefix.substr(bp.size()));
        }
    }
    const auto qc = quantizeConfigObject(p, modules);
    if (auto s = writeFileAtomic((tmpDir / "quantize_config.json").string(), qc.dump(2) + "\n"); !s) return s.error();
    res.files.push_back("quantize_config.json");
    if (auto s = calib::writeQuantizedConfig(model, tmpDir, qc, res.files); !s) return s.error();
    if (auto s = calib::copyTokenizerFiles(model, tmpDir, res.files); !s) return s.error();

    // Drop the resume state and move into place.
    std::vector<std::string> stateFiles = {"gptq-state.json"};
    for (const auto& b : plan.blocks)
        for (const auto& gr : b)
            for (const auto& L : gr) stateFiles.push_back(L.weightName + ".qzl");
    if (auto s = calib::moveIntoPlace(tmpDir, outDir, stateFiles); !s) return s.error();
    res.seconds = since(t0);
    if (progress) progress(ProgressInfo{1.0, "done"});
    return res;
}

}  // namespace qz::gptq
