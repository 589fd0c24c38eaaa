#include "exl2/exl2_export.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file_util.h"
#include "common/fp16.h"
#include "calib/pipeline.h"
#include "exl2/exl2_measure.h"
#include "exl2/exl2_optimize.h"
#include "calib/hessian.h"
#include "gptq/gptq_quant.h"
#include "io/safetensors_writer.h"

namespace qz::exl2 {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

// What the measurement depends on: a resume state is reused only when all of it matches.
std::string measureFingerprint(const Model& model, const ExportParams& p, const std::string& calibText) {
    nlohmann::ordered_json j;
    std::error_code ec;
    j["kind"] = "exl2-measure-2"; // 2: modules evaluated by the engine (states of 1 are not reused)
    j["model"] = fs::weakly_canonical(model.path, ec).string();
    j["modelBytes"] = model.totalBytes();
    j["tensors"] = model.tensors.size();
    j["calibBytes"] = calibText.size();
    j["calibHash"] = std::to_string(fnv1a(calibText));
    j["rows"] = p.measureCalib.samples;
    j["length"] = p.measureCalib.seqLen;
    j["seed"] = std::to_string(p.measureCalib.seed);
    if (p.stateType != calib::StateType::F32) j["states"] = calib::stateTypeName(p.stateType); // F32 keeps older states
    return j.dump();
}

// A quantized linear's packed tensors are not kept in memory until the output is written (that would be
// the size of the whole output): each is spilled to "out_tensor/<n>.bin" in the temporary folder as it is
// quantized (exllamav2 keeps an out_tensor/ folder too) and streamed from there into output.safetensors.
// File: q_weight i32 [qRows·outPad], q_invperm i32 [in], q_scale i32 [G·outPad/8], q_scale_max u16 [G],
// q_groups i16 [2G], back to back.
struct SpilledLinear {
    std::string path;
    int64_t qRows = 0, outPad = 0, G = 0, in = 0;
    uint64_t offWeight() const { return 0; }
    uint64_t offInvperm() const { return offWeight() + 4ull * qRows * outPad; }
    uint64_t offScale() const { return offInvperm() + 4ull * in; }
    uint64_t offScaleMax() const { return offScale() + 4ull * G * (outPad / 8); }
    uint64_t offGroups() const { return offScaleMax() + 2ull * G; }
    uint64_t size() const { return offGroups() + 4ull * G; }
};

// Spill files are scratch files of this run inside its own temporary folder: created with O_EXCL|O_NOFOLLOW
// (a name planted there is never followed or truncated), written and read with checked POSIX calls, and
// every error names the file and the errno reason (a full disk says so). They need no fsync: a crash loses
// them with the rest of the non-resumable work.
struct SpillFd {
    int fd = -1;
    ~SpillFd() {
        if (fd >= 0) ::close(fd);
    }
};

Error spillError(const std::string& path, const char* what, int err) {
    return makeError(path + ": " + what + ": " + std::strerror(err));
}

Result<SpilledLinear> spillPacked(const PackedLinear& pl, int64_t in, const std::string& path) {
    SpilledLinear s;
    s.path = path;
    s.qRows = pl.qRows;
    s.outPad = pl.outPad;
    s.G = static_cast<int64_t>(pl.qScaleMax.size());
    s.in = in;
    SpillFd f;
    f.fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (f.fd < 0) return spillError(path, "cannot create the spill file", errno);
    auto put = [&](const void* data, size_t n) -> Status {
        const auto* p = static_cast<const uint8_t*>(data);
        while (n > 0) {
            const ssize_t w = ::write(f.fd, p, std::min<size_t>(n, size_t{1} << 30));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) return spillError(path, "write failed", w < 0 ? errno : EIO);
            p += w;
            n -= static_cast<size_t>(w);
        }
        return okStatus();
    };
    auto putVec = [&](const auto& v) { return put(v.data(), v.size() * sizeof(v[0])); };
    Status st = putVec(pl.qWeight);
    if (st) st = putVec(pl.qInvperm);
    if (st) st = putVec(pl.qScale);
    if (st) st = putVec(pl.qScaleMax);
    if (st) st = putVec(pl.qGroups);
    if (!st) {
        ::unlink(path.c_str());
        return st.error();
    }
    const int fd = f.fd;
    f.fd = -1;
    if (::close(fd) != 0) {
        const int err = errno;
        ::unlink(path.c_str());
        return spillError(path, "cannot close the spill file", err);
    }
    return s;
}

// Reads `bytes` bytes at `offset` of a spill file (written by this run; its size is checked).
Result<std::vector<uint8_t>> readSpill(const SpilledLinear& s, uint64_t offset, uint64_t bytes) {
    SpillFd f;
    f.fd = ::open(s.path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (f.fd < 0) return spillError(s.path, "cannot open the spill file", errno);
    struct stat st {};
    if (::fstat(f.fd, &st) != 0) return spillError(s.path, "cannot read the spill file", errno);
    if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != s.size())
        return makeError(s.path + ": the spill file has the wrong size (" + std::to_string(st.st_size) +
                         " bytes, " + std::to_string(s.size()) + " expected)");
    if (offset > s.size() || bytes > s.size() - offset)
        return makeError(s.path + ": read past the end of the spill file");
    std::vector<uint8_t> buf(bytes);
    uint64_t done = 0;
    while (done < bytes) {
        const ssize_t r = ::pread(f.fd, buf.data() + done, std::min<uint64_t>(bytes - done, uint64_t{1} << 30),
                                  static_cast<off_t>(offset + done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return spillError(s.path, "cannot read the spill file", r < 0 ? errno : EIO);
        done += static_cast<uint64_t>(r);
    }
    return buf;
}

// One output tensor: its declaration and where its bytes come from.
struct OutTensor {
    SafetensorsTensorDecl decl;
    uint64_t bytes = 0;
    std::function<Status(SafetensorsWriter&)> write;
};

} // namespace

Result<ExportResult> exportExl2(const Model& model, const ExportParams& p, ProgressFn progress,
                                LayerReportFn onLayer) {
    const auto t0 = Clock::now();
    auto planR = planModel(model);
    if (!planR) return planR.error();
    const ModelPlan& plan = *planR;
    if (!(p.targetBpw >= 2.0 && p.targetBpw <= 8.5))
        return makeError("EXL2: target bits per weight must be in [2.0, 8.5]");
    auto headQp = headOptions(p.headBits);
    if (!headQp)
        return makeError("EXL2: head bits " + std::to_string(p.headBits) + ": " + headQp.error().message);
    if (p.calibPath.empty()) return makeError("EXL2 needs a calibration text");
    const bool measure = p.measurementPath.empty();
    if (p.quantCalib.samples <= 0 || p.quantCalib.seqLen <= 0 ||
        (measure && (p.measureCalib.samples <= 0 || p.measureCalib.seqLen <= 0)))
        return makeError("EXL2: calibration rows and lengths must be positive");
    for (int len : {p.quantCalib.seqLen, measure ? p.measureCalib.seqLen : 0})
        if (plan.hp.nCtxTrain > 0 && len > plan.hp.nCtxTrain)
            return makeError("EXL2: calibration rows of " + std::to_string(len) +
                             " tokens exceed the model's context (" + std::to_string(plan.hp.nCtxTrain) +
                             ")");
    if (p.annealIterations < 1) return makeError("EXL2: annealing iterations must be positive");

    // Progress: phase fractions.
    const double fMeasure = measure ? 0.6 : 0.0, fOpt = 0.05, fQuant = measure ? 0.3 : 0.85;
    auto phase = [&](double base, double span) {
        return [progress, base, span](const ProgressInfo& i) {
            return !progress ||
                   progress(ProgressInfo{base + span * std::clamp(i.fraction, 0.0, 1.0), i.step});
        };
    };

    // Measurement given: read and validate it first (cheap, and a bad file should fail early).
    ExportResult res;
    res.targetBpw = p.targetBpw;
    std::vector<ModuleMeasurement> meas;
    if (!measure) {
        auto m = readMeasurementJson(p.measurementPath, plan);
        if (!m) return m.error();
        meas = std::move(*m);
        res.measurementReused = true;
    }

    // Calibration text and rows.
    auto ct = calib::readCalibrationText(model, p.calibPath); // the text read once
    if (!ct) return ct.error();
    const std::string& calibText = ct->text;
    auto quantRows = calib::windowsOf(*ct, p.calibPath, p.quantCalib);
    if (!quantRows) return quantRows.error();
    std::vector<std::vector<int32_t>> measureRows;
    if (measure) {
        auto w = calib::windowsOf(*ct, p.calibPath, p.measureCalib);
        if (!w) return w.error();
        measureRows = std::move(*w);
    }

    // Destination and temporary folder (common/file_util.h).
    std::string outDir = p.outputDir;
    fs::path tmpDir;
    WriterLock partialLock; // until the folder is renamed onto the destination (or given up)
    if (p.writeOutput) {
        auto pf = openPartialFolder(p.outputDir, "exl2", measureFingerprint(model, p, calibText), p.resume);
        if (!pf) return pf.error();
        partialLock = pf->lock;
        outDir = pf->outDir;
        tmpDir = pf->dir;
        std::error_code ec;
        // Anything but the measurement state is from an earlier, unfinished write: drop it.
        for (const auto& e : fs::directory_iterator(tmpDir, ec)) {
            const std::string n = e.path().filename().string();
            if (n == "exl2-state.json" ||
                (n.rfind("measure.", 0) == 0 && n.size() > 5 && n.compare(n.size() - 5, 5, ".json") == 0))
                continue;
            fs::remove_all(e.path(), ec);
        }
    }

    // On failure or cancel nothing appears at the destination; the temporary folder is kept only when it
    // holds measurement state worth resuming.
    struct DropTemp {
        fs::path dir;
        bool active = false;
        ~DropTemp() {
            std::error_code ec;
            if (active) fs::remove_all(dir, ec);
        }
    } dropTemp{tmpDir, p.writeOutput && !measure};

    // The carried states' temporary file, when over the budget: in the temporary folder (beside the
    // destination, so on its file system), else the system's temporary folder.
    const fs::path spillRoot = calib::spillFolder(p.writeOutput, tmpDir);

    // 1. Measurement.
    if (measure) {
        const auto tm = Clock::now();
        MeasureParams mp;
        mp.stateDir = p.writeOutput ? tmpDir.string() : std::string();
        mp.threads = p.threads;
        mp.stateType = p.stateType;
        mp.maxStateMemory = p.maxStateMemory;
        mp.spillDir = spillRoot.string();
        uint64_t measureBytes = 0;
        bool measureSpilled = false;
        mp.stateBytes = &measureBytes;
        mp.statesSpilled = &measureSpilled;
        auto m = measureModel(model, plan, measureRows, mp, phase(0, fMeasure), {}, &res.resumedModules);
        if (!m) return m.error();
        meas = std::move(*m);
        res.measuredModules = static_cast<int>(meas.size()) - res.resumedModules;
        res.stateBytes = measureBytes;
        res.statesSpilled = measureSpilled;
        res.measureSeconds = since(tm);
    }
    res.measurement = meas;

    // 2. Optimization.
    const auto to = Clock::now();
    std::vector<std::vector<OptOption>> slots;
    for (const auto& mm : meas) {
        slots.emplace_back();
        for (const auto& o : mm.options)
            slots.back().push_back({o.totalBits, 1.0 - o.accuracy});
    }
    const int64_t numel = plan.decoderNumel();
    OptimizeParams op;
    op.budget = static_cast<int64_t>(static_cast<double>(numel) * p.targetBpw);
    op.seed = p.seed;
    op.iterations = p.annealIterations;
    auto opt = optimizeStrategy(slots, op, phase(fMeasure, fOpt));
    if (!opt) {
        if (opt.error().cancelled) return opt.error();
        return makeError("EXL2: target " + std::to_string(p.targetBpw) + " bpw: " + opt.error().message);
    }
    res.achievedBpw = static_cast<double>(opt->bits) / static_cast<double>(numel);
    res.strategy = opt->choice;
    res.errorNorm = opt->norm;
    res.optimizeSeconds = since(to);

    // 3. Quantization, module by module on the quantized model's own hidden states.
    const auto tq = Clock::now();
    ProgressFn qprog = phase(fMeasure + fOpt, fQuant);
    auto runnerR = ModuleRunner::create(model, plan, p.threads, p.quantCalib.seqLen);
    if (!runnerR) return runnerR.error();
    ModuleRunner& runner = **runnerR;
    const int rows = p.quantCalib.samples, len = p.quantCalib.seqLen, dim = plan.hp.nEmbd;
    // The quantized model's states (each module's quantized output replaces its input), and the original
    // model's states on the first rows, for the calibration perplexity before quantization.
    const int pplRows = std::min(p.quantCalib.samples, std::max(1, p.measureCalib.samples));
    calib::StateStore x, xr;
    if (auto s = x.init(rows, len, dim, p.stateType, p.maxStateMemory, spillRoot, "exl2-states"); !s)
        return makeError("EXL2: " + s.error().message);
    if (auto s = runner.embedInto(*quantRows, x); !s) return s.error();
    if (plan.head.out > 0) {
        const uint64_t left = p.maxStateMemory == 0 ? 0 : p.maxStateMemory > x.bytes() ? p.maxStateMemory - x.bytes() : 1;
        if (auto s = xr.init(pplRows, len, dim, p.stateType, left, spillRoot, "exl2-states"); !s)
            return makeError("EXL2: " + s.error().message);
        const std::vector<std::vector<int32_t>> first(quantRows->begin(), quantRows->begin() + pplRows);
        if (auto s = runner.embedInto(first, xr); !s) return s.error();
    }
    res.stateBytes = std::max(res.stateBytes, x.bytes() + xr.bytes());
    res.statesSpilled = res.statesSpilled || x.spilled() || xr.spilled();
    const size_t rowValues = static_cast<size_t>(x.rowValues());
    std::vector<float> xrow(rowValues), yrow(rowValues);
    std::map<std::string, SpilledLinear> packed; // weight name -> its spilled packed tensors
    const fs::path spillDir = tmpDir / "out_tensor";
    if (p.writeOutput) {
        std::error_code ec;
        fs::create_directories(spillDir, ec);
        if (ec) return makeError("cannot create " + spillDir.string() + ": " + ec.message());
    }
    // The spilled tensors are never resume state: gone on success, failure and cancel.
    struct DropSpill {
        fs::path dir;
        bool active;
        ~DropSpill() {
            std::error_code ec;
            if (active) fs::remove_all(dir, ec);
        }
    } dropSpill{spillDir, p.writeOutput};
    const double qTotal = static_cast<double>(plan.modules.size() * 2 + (plan.head.out > 0 ? 1 : 0));
    double qDone = 0;
    std::string step;
    auto qcancel = [&] { return qprog && !qprog(ProgressInfo{qDone / qTotal, step}); };

    auto quantizeOne = [&](const LinearRef& L, const std::vector<float>& W, const std::vector<float>& bias,
                           const std::vector<float>& Hraw, const PreparedHessian& H, const QParams& qp,
                           const std::string& module, std::vector<float>* deqOut) -> Status {
        const auto tl = Clock::now();
        step = "quantize: " + L.prefix + " " + qp.desc();
        auto q = quantizeLinear(W.data(), L.out, L.in, H, qp, qcancel, runner.threads());
        if (!q) return q.error().cancelled ? q.error() : makeError(L.weightName + ": " + q.error().message);
        std::vector<float> deq = dequantize(*q);
        LayerReport lr;
        lr.name = L.weightName;
        lr.module = module;
        lr.out = L.out;
        lr.in = L.in;
        lr.setting = qp.desc();
        lr.bpw = qp.bpw(L.in, L.out, !L.biasName.empty());
        lr.relErr = gptq::relativeOutputError(W.data(), deq, L.out, L.in, Hraw, runner.threads());
        if (p.keepOverrides) {
            res.overrides[L.weightName] = deq;
            if (!L.biasName.empty()) {
                std::vector<float> b16 = bias;
                for (float& v : b16)
                    v = fp16ToFp32(fp32ToFp16(v));
                res.overrides[L.biasName] = std::move(b16);
            }
        }
        if (p.writeOutput) {
            const std::string file = (spillDir / (std::to_string(packed.size()) + ".bin")).string();
            auto sp = spillPacked(pack(*q), L.in, file);
            if (!sp) return sp.error();
            packed[L.weightName] = *sp;
        }
        if (deqOut) *deqOut = std::move(deq);
        lr.seconds = since(tl);
        res.layers.push_back(lr);
        if (onLayer) onLayer(lr);
        return okStatus();
    };

    for (size_t mi = 0; mi < plan.modules.size(); ++mi) {
        const ModuleRef& m = plan.modules[mi];
        const auto& option = meas[mi].options[opt->choice[mi]];
        // Read from the model file one linear at a time (an F32 copy of a mixture of experts would be the
        // whole layer's experts); phi3's fused parts are held as F32.
        const bool bySources = ModuleRunner::sourceable(m);
        ModuleWeights w;
        if (!bySources) {
            auto wr = readModuleWeights(model, m);
            if (!wr) return wr.error();
            w = std::move(*wr);
        }
        step = "quantize: " + m.key + " (Hessians)";
        auto accR = accumulateHessians(runner, m, w, x, rows, len, qcancel);
        if (!accR) return accR.error();
        std::vector<calib::HessianAccumulator>& acc = *accR;
        const size_t nH = acc.size();
        std::vector<std::vector<float>> Hraw(nH);
        std::vector<std::unique_ptr<PreparedHessian>> prep(nH);
        for (size_t k = 0; k < nH; ++k) {
            Hraw[k] = exl2Hessian(acc[k]);
            auto ph = prepareHessian(Hraw[k], acc[k].dim(), qcancel, runner.threads());
            if (!ph)
                return ph.error().cancelled ? ph.error() : makeError("EXL2: " + m.key + ": " + ph.error().message);
            prep[k] = std::make_unique<PreparedHessian>(std::move(*ph));
        }
        std::vector<calib::HessianAccumulator>().swap(acc);
        if (!qprog(ProgressInfo{(qDone += 1) / qTotal, step})) return cancelledError();
        ModuleWeights qw = w;
        if (bySources) {
            // Linear by linear (expert by expert): its weight read from the file, quantized, kept as fp16 (the
            // dequantized values are fp16, README.md E.9) and given to the engine as a row source, its bias
            // as fp16 values; a Hessian (an expert's w2's) is freed after its last use. Memory: the module in
            // fp16, not 3 F32 copies.
            std::vector<size_t> lastUse(nH, 0);
            for (size_t s = 0; s < m.linears.size(); ++s)
                lastUse[static_cast<size_t>(m.hessianOf(s))] = s;
            std::vector<std::shared_ptr<const WeightRowSource>> src;
            std::vector<std::vector<float>> biases(m.linears.size());
            for (size_t s = 0; s < m.linears.size(); ++s) {
                const LinearRef& L = m.linears[s];
                const size_t k = static_cast<size_t>(m.hessianOf(s));
                auto W = readTensorF32(model, *model.find(L.weightName));
                if (!W) return W.error();
                if (!L.biasName.empty()) {
                    auto b = readTensorF32(model, *model.find(L.biasName));
                    if (!b) return b.error();
                    biases[s] = std::move(*b);
                }
                std::vector<float> deq;
                if (auto r = quantizeOne(L, *W, biases[s], Hraw[k], *prep[k], option.qp[m.slotOf(s)], m.key, &deq);
                    !r)
                    return r.error();
                for (float& v : biases[s])
                    v = fp16ToFp32(fp32ToFp16(v));
                auto h = std::make_shared<std::vector<uint16_t>>(deq.size());
                for (size_t i = 0; i < deq.size(); ++i)
                    (*h)[i] = fp32ToFp16(deq[i]);
                src.push_back(std::make_shared<Fp16Rows>(std::move(h), L.out, L.in));
                if (lastUse[k] == s) {
                    std::vector<float>().swap(Hraw[k]);
                    prep[k].reset();
                }
            }
            if (auto s = runner.installSources(m, src, biases); !s) return s.error();
        } else {
            for (size_t s = 0; s < m.linears.size(); ++s) {
                const int k = m.hessianOf(s);
                if (auto r = quantizeOne(m.linears[s], w.w[s], w.b[s], Hraw[k], *prep[k], option.qp[m.slotOf(s)],
                                         m.key, &qw.w[s]);
                    !r)
                    return r.error();
                for (float& v : qw.b[s])
                    v = fp16ToFp32(fp32ToFp16(v));
            }
        }
        step = "quantize: " + m.key + " (outputs)";
        for (int r = 0; r < rows; ++r) {
            if (auto s = x.get(r, xrow); !s) return s.error();
            if (auto s = runner.forwardRow(m, qw, xrow.data(), len, yrow.data()); !s) return s.error();
            if (auto s = x.put(r, yrow); !s) return s.error();
            if (qcancel()) return cancelledError();
        }
        if (bySources) runner.release(m); // the original weights: the model file's
        for (int r = 0; r < xr.rows(); ++r) {
            if (auto s = xr.get(r, xrow); !s) return s.error();
            if (auto s = runner.forwardRow(m, w, xrow.data(), len, yrow.data()); !s) return s.error();
            if (auto s = xr.put(r, yrow); !s) return s.error();
        }
        runner.release(m);
        if (!qprog(ProgressInfo{(qDone += 1) / qTotal, step})) return cancelledError();
    }
    // The head, last, on the quantized model's final states.
    if (plan.head.out > 0) {
        const LinearRef& L = plan.head;
        auto W = readTensorF32(model, *model.find(L.weightName));
        if (!W) return W.error();
        std::vector<float> bias;
        if (!L.biasName.empty()) {
            auto b = readTensorF32(model, *model.find(L.biasName));
            if (!b) return b.error();
            bias = std::move(*b);
        }
        // The head's Hessian, row by row (as every module's).
        calib::HessianAccumulator acc(L.in);
        for (int r = 0; r < rows; ++r) {
            if (auto s = x.get(r, xrow); !s) return s.error();
            if (auto s = runner.headInputRow(xrow.data(), len, yrow.data()); !s) return s.error();
            acc.add(yrow.data(), len, runner.threads());
            if (qcancel()) return cancelledError();
        }
        acc.countSample(rows);
        std::vector<float> Hraw = exl2Hessian(acc);
        auto ph = prepareHessian(Hraw, L.in, qcancel, runner.threads());
        if (!ph) return ph.error().cancelled ? ph.error() : makeError("EXL2: lm_head: " + ph.error().message);
        std::vector<float> headDeq;
        if (auto r = quantizeOne(L, *W, bias, Hraw, *ph, *headQp, "lm_head", &headDeq); !r) return r.error();
        res.headBpw = headQp->bpw(L.in, L.out, !L.biasName.empty());
        step = "quantize: calibration perplexity";
        int64_t nb = 0, nq = 0;
        double base = 0, quant = 0;
        for (int r = 0; r < pplRows; ++r) {
            if (auto s = xr.get(r, xrow); !s) return s.error();
            if (auto s = runner.addNextTokenNll(xrow.data(), len, (*quantRows)[r], &base, &nb); !s) return s.error();
        }
        if (auto s = runner.setHead(&headDeq); !s) return s.error();
        for (int r = 0; r < pplRows; ++r) {
            if (auto s = x.get(r, xrow); !s) return s.error();
            if (auto s = runner.addNextTokenNll(xrow.data(), len, (*quantRows)[r], &quant, &nq); !s) return s.error();
        }
        (void)runner.setHead(nullptr);
        if (nb > 0 && nq > 0) {
            res.calibPplBase = std::exp(base / static_cast<double>(nb));
            res.calibPplQuant = std::exp(quant / static_cast<double>(nq));
            res.calibPplRows = pplRows;
        }
        if (!qprog(ProgressInfo{(qDone += 1) / qTotal, step})) return cancelledError();
    }
    if (p.keepOverrides) // overrides are by the model's tensors: phi3's split parts back into their fused tensor
        for (const auto& m : plan.modules)
            for (const auto& L : m.linears) {
                if (L.srcName.empty()) continue;
                auto part = res.overrides.find(L.weightName);
                if (part == res.overrides.end()) continue;
                auto& f = res.overrides[L.srcName];
                const TensorInfo* t = model.find(L.srcName);
                f.resize(static_cast<size_t>(t->numel()));
                std::copy(part->second.begin(), part->second.end(),
                          f.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(L.srcRow0) * L.in));
                res.overrides.erase(L.weightName);
            }
    res.quantizeSeconds = since(tq);
    x.release(); // the states are not needed for writing
    xr.release();
    if (!p.writeOutput) {
        res.seconds = since(t0);
        return res;
    }

    // 4. The output folder: tensors, config, tokenizer files, measurement.json.
    std::vector<OutTensor> outs;
    std::set<std::string> biasOfQuantized;
    // Model tensor -> the quantized layers made from it (one; phi3's fused tensors: their parts, written
    // under exllamav2's split names in their place).
    std::map<std::string, std::vector<const LinearRef*>> bySource;
    for (const auto& m : plan.modules)
        for (const auto& L : m.linears)
            bySource[L.source()].push_back(&L);
    if (plan.head.out > 0) bySource[plan.head.weightName].push_back(&plan.head);
    for (const auto& [wn, Ls] : bySource)
        for (const LinearRef* L : Ls)
            if (!L->biasName.empty()) biasOfQuantized.insert(L->biasName);
    for (const auto& t : model.tensors) {
        if (auto it = bySource.find(t.name); it != bySource.end()) {
          for (const LinearRef* Lp : it->second) {
            const LinearRef& L = *Lp;
            const SpilledLinear* sp = &packed.at(L.weightName);
            auto add = [&](const std::string& suffix, DType dt, std::vector<int64_t> shape, uint64_t offset,
                           uint64_t bytes) {
                OutTensor o;
                o.decl = {L.prefix + suffix, dt, std::move(shape)};
                o.write = [sp, offset, bytes](SafetensorsWriter& w) -> Status {
                    auto b = readSpill(*sp, offset, bytes);
                    if (!b) return b.error();
                    return w.writeTensor(std::span<const uint8_t>(b->data(), b->size()));
                };
                o.bytes = bytes;
                outs.push_back(std::move(o));
            };
            const int64_t G = sp->G;
            add(".q_weight", DType::I32, {sp->qRows, sp->outPad}, sp->offWeight(), sp->offInvperm() - sp->offWeight());
            add(".q_invperm", DType::I32, {sp->in}, sp->offInvperm(), sp->offScale() - sp->offInvperm());
            add(".q_scale", DType::I32, {G, sp->outPad / 8}, sp->offScale(), sp->offScaleMax() - sp->offScale());
            add(".q_scale_max", DType::F16, {G}, sp->offScaleMax(), sp->offGroups() - sp->offScaleMax());
            add(".q_groups", DType::I16, {2 * G}, sp->offGroups(), sp->size() - sp->offGroups());
          }
          continue;
        }
        if (traits(t.dtype).isQuantized)
            return makeError(t.name + ": ggml block types cannot be written to safetensors");
        OutTensor o;
        o.decl = {t.name, DType::F16, t.shape};
        o.bytes = t.numel() * 2;
        const TensorInfo* ti = &t;
        const bool isBias = biasOfQuantized.count(t.name) > 0;
        o.write = [&model, ti, isBias](SafetensorsWriter& w) -> Status {
            (void)isBias;
            auto v = readTensorF32(model, *ti);
            if (!v) return v.error();
            return w.writeTensorFromF32(*v);
        };
        outs.push_back(std::move(o));
    }
    // Shards: greedy in order, at most maxShardBytes of tensor data each (a larger tensor gets its own).
    std::vector<std::vector<size_t>> shards(1);
    uint64_t cur = 0;
    for (size_t i = 0; i < outs.size(); ++i) {
        if (!shards.back().empty() && cur + outs[i].bytes > p.maxShardBytes) {
            shards.emplace_back();
            cur = 0;
        }
        shards.back().push_back(i);
        cur += outs[i].bytes;
    }
    const std::vector<MetaItem> meta = {{"format", "pt"}, {"quantizer", "quantzoo 0.1.0"}};
    for (size_t s = 0; s < shards.size(); ++s) {
        char name[64];
        if (shards.size() == 1)
            std::snprintf(name, sizeof name, "output.safetensors");
        else
            std::snprintf(name, sizeof name, "output-%05zu-of-%05zu.safetensors", s + 1, shards.size());
        std::vector<SafetensorsTensorDecl> decls;
        for (size_t i : shards[s])
            decls.push_back(outs[i].decl);
        SafetensorsWriter w;
        if (auto st = w.open((tmpDir / name).string(), decls, meta); !st) return st.error();
        for (size_t i : shards[s]) {
            if (auto st = outs[i].write(w); !st) {
                w.abort();
                return st.error();
            }
            res.tensorBytes += outs[i].bytes;
            if (progress && !progress(ProgressInfo{
                                std::min(0.999, fMeasure + fOpt + fQuant + 0.05 * (i + 1.0) / outs.size()),
                                "write: " + outs[i].decl.name})) {
                w.abort();
                return cancelledError();
            }
        }
        if (auto st = w.finish(); !st) return st.error();
        res.files.push_back(name);
    }

    nlohmann::ordered_json qc;
    qc["quant_method"] = "exl2";
    qc["version"] = "0.3.2";
    qc["bits"] = p.targetBpw;
    qc["head_bits"] = p.headBits;
    qc["calibration"] = {{"rows", p.quantCalib.samples},
                         {"length", p.quantCalib.seqLen},
                         {"dataset", fs::path(p.calibPath).filename().string()}};
    if (auto s = calib::writeQuantizedConfig(model, tmpDir, qc, res.files); !s) return s.error();
    if (auto s = writeFileAtomic((tmpDir / "measurement.json").string(),
                                 measurementJson(meas, 2 * plan.hp.nLayer + 2) + "\n");
        !s)
        return s.error();
    res.files.push_back("measurement.json");
    if (auto s = calib::copyTokenizerFiles(model, tmpDir, res.files); !s) return s.error();

    // Drop the resume state and move into place.
    std::error_code ec;
    fs::remove_all(spillDir, ec);
    dropSpill.active = false;
    std::vector<std::string> stateFiles = {"exl2-state.json"};
    for (const auto& m : plan.modules) stateFiles.push_back("measure." + m.key + ".json");
    if (auto s = calib::moveIntoPlace(tmpDir, outDir, stateFiles); !s) return s.error();
    dropTemp.active = false;
    res.outputDir = outDir;
    res.seconds = since(t0);
    if (progress) progress(ProgressInfo{1.0, "done"});
    return res;
}

} // namespace qz::exl2
