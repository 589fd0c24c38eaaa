// EXL2 export of bard-llama (core/exl2/exl2_export.h) with small calibration sets (measurement 8 × 256
// tokens, quantization 32 × 256 of shakespeare-train; perplexity: llama-perplexity's method on
// shakespeare-valid, ctx 128, 32 chunks):
//   * our module forward (exl2_measure.h) reproduces the engine's logits, and the export's calibration
//     perplexities (original, quantized) equal the engine's on the same rows;
//   * the output folder holds exactly the expected files, q_* tensors with the loader's dtypes and every
//     other tensor F16, config.json with quantization_config, measurement.json in exllamav2's form;
//   * achieved bpw (Σ total_bits / Σ numel of the decoder linears, exllamav2's budget) within 0.02 of the
//     target and not above it, also recomputed from the bytes of the written q_* tensors;
//   * at 8.0 bpw the perplexity is within 1 % of the original, at 4.0 bpw below RTN 4-bit g128's;
//   * a given measurement.json is reused (no measurement progress step, no module measured, the same
//     options); an interrupted measurement resumes and gives byte-identical files;
//   * cancel / failure leaves no destination; shards are output-0000k-of-0000N without an index;
//     hostile measurement.json files and GPT-2 are refused;
//   * tests/exl2/read_check.py (an independent reader of the folder) decodes weights equal to ours.
#include <QtTest>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "common/fp16.h"
#include "exl2/exl2_export.h"
#include "exl2/exl2_measure.h"
#include "gptq/gptq_calib.h"
#include "gptq/gptq_quant.h"
#include "infer/perplexity.h"
#include "infer/text_tokens.h"
#include "io/safetensors_writer.h"

using namespace qz;
using namespace qz::exl2;
namespace fs = std::filesystem;

namespace {
const std::string kData = QZ_TEST_DATA;
const std::string kTrain = kData + "/text/shakespeare-train.txt";
const std::string kValid = kData + "/text/shakespeare-valid.txt";
const std::string kModel = kData + "/models/bard-llama";
constexpr int kCtx = 128, kChunks = 32;

std::string readAll(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

void writeAll(const std::string& p, const std::string& s) {
    std::ofstream(p, std::ios::binary) << s;
}

double perplexity(const Model& m, const WeightOverrides* ov) {
    EngineOptions eo;
    eo.overrides = ov;
    auto eng = Engine::load(m, eo);
    if (!eng) qFatal("%s", eng.error().message.c_str());
    auto in = tokenizeForPerplexity(m, readAll(kValid));
    if (!in) qFatal("%s", in.error().message.c_str());
    PerplexityParams pp = in->params;
    pp.nCtx = kCtx;
    pp.nChunks = kChunks;
    auto r = computePerplexity(**eng, in->tokens, pp);
    if (!r) qFatal("%s", r.error().message.c_str());
    return r->ppl;
}

ExportParams baseParams() {
    ExportParams p;
    p.calibPath = kTrain;
    p.measureCalib = {8, 256, 1};
    p.quantCalib = {32, 256, 1};
    p.seed = 1;
    p.annealIterations = 100; // 1975 temperatures × 100 proposals per run (exllamav2: × 1000)
    return p;
}

bool sameMeasurement(const std::vector<ModuleMeasurement>& a, const std::vector<ModuleMeasurement>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        if (a[i].key != b[i].key || a[i].options.size() != b[i].options.size()) return false;
        for (size_t k = 0; k < a[i].options.size(); ++k) {
            const auto &x = a[i].options[k], &y = b[i].options[k];
            if (x.accuracy != y.accuracy || x.totalBits != y.totalBits || !(x.qp == y.qp)) return false;
        }
    }
    return true;
}

// The least Σ (1 − accuracy)^norm over every combination of one option per module within the budget
// (exact: a Pareto front over (bits, error sum), pruned of dominated entries), and the largest total
// within the budget.
std::pair<double, int64_t> bestWithin(const std::vector<ModuleMeasurement>& m, int64_t budget, double norm) {
    std::vector<std::pair<int64_t, double>> front = {{0, 0.0}};
    int64_t maxBits = 0;
    std::vector<int64_t> reach = {0};
    for (const auto& mm : m) {
        std::vector<std::pair<int64_t, double>> next;
        for (const auto& [b, e] : front)
            for (const auto& o : mm.options)
                if (b + o.totalBits <= budget)
                    next.push_back({b + o.totalBits, e + std::pow(1 - o.accuracy, norm)});
        std::sort(next.begin(), next.end());
        front.clear();
        for (const auto& t : next)
            if (front.empty() || t.second < front.back().second) front.push_back(t);
        std::set<int64_t> r;
        for (int64_t b : reach)
            for (const auto& o : mm.options)
                if (b + o.totalBits <= budget) r.insert(b + o.totalBits);
        reach.assign(r.begin(), r.end());
    }
    double best = front.front().second;
    for (const auto& t : front)
        best = std::min(best, t.second);
    if (!reach.empty()) maxBits = reach.back();
    return {best, maxBits};
}

std::set<std::string> listDir(const std::string& d) {
    std::set<std::string> s;
    for (const auto& e : fs::directory_iterator(d))
        s.insert(e.path().filename().string());
    return s;
}
} // namespace

class TestExl2Model : public QObject {
    Q_OBJECT
    std::shared_ptr<Model> m_model;
    QTemporaryDir m_tmp;
    std::string m_dir; // the 5.0 bpw export (measured, uninterrupted)
    ExportResult m_full;
    double m_base = 0; // original perplexity

  private slots:
    void initTestCase();
    void moduleForwardMatchesEngine();
    void calibrationPerplexity();
    void outputFolder();
    void readCheckEqualsDequant();
    void measurementReusedAtTargets();
    void measurementResumes();
    void cancelLeavesNoDestination();
    void shardedOutput();
    void commandLine();
    void rejectsBadInput();
};

void TestExl2Model::initTestCase() {
    QVERIFY(m_tmp.isValid());
    auto m = openModel(kModel);
    QVERIFY2(m.ok(), m.ok() ? "" : m.error().message.c_str());
    m_model = *m;
    m_dir = (m_tmp.path() + "/full").toStdString();
    ExportParams p = baseParams();
    p.targetBpw = 5.0;
    p.outputDir = m_dir;
    p.keepOverrides = true;
    std::set<std::string> phases;
    auto r = exportExl2(*m_model, p, [&](const ProgressInfo& i) {
        phases.insert(i.step.substr(0, i.step.find(':')));
        return true;
    });
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    m_full = std::move(*r);
    QVERIFY(!m_full.measurementReused);
    QCOMPARE(m_full.measuredModules, 8);
    QCOMPARE(m_full.resumedModules, 0);
    for (const char* ph : {"measure", "optimize", "quantize", "write"})
        QVERIFY2(phases.count(ph), ph);
    m_base = perplexity(*m_model, nullptr);
    qInfo("5.0 bpw: achieved %.4f, head %.4f bpw; measure %.1fs optimize %.1fs quantize %.1fs total %.1fs",
          m_full.achievedBpw, m_full.headBpw, m_full.measureSeconds, m_full.optimizeSeconds,
          m_full.quantizeSeconds, m_full.seconds);
}

void TestExl2Model::moduleForwardMatchesEngine() {
    // The modules one after the other (each residual half of a block on its own, with the module's
    // weights installed as the measurement installs them) and the head vs the engine's whole-model
    // logits (F32 attention) on the first 200 tokens of the valid text.
    auto plan = planModel(*m_model);
    QVERIFY(plan.ok());
    auto in = tokenizeForPerplexity(*m_model, readAll(kValid));
    QVERIFY(in.ok());
    const std::vector<int32_t> win(in->tokens.begin(), in->tokens.begin() + 200);
    auto runner = ModuleRunner::create(*m_model, *plan, 0, 200);
    QVERIFY(runner.ok());
    auto x = (*runner)->embed({win});
    QVERIFY(x.ok());
    States s = std::move(*x), y;
    for (const auto& mod : plan->modules) {
        auto w = readModuleWeights(*m_model, mod);
        QVERIFY(w.ok());
        QVERIFY((*runner)->forward(mod, *w, s, &y).ok());
        (*runner)->release(mod);
        std::swap(s, y);
    }
    const int d = plan->hp.nEmbd;
    std::vector<float> xn(s.data.size());
    QVERIFY((*runner)->headInputRow(s.row(0), s.len, xn.data()).ok());
    auto W = readTensorF32(*m_model, *m_model->find("lm_head.weight"));
    QVERIFY(W.ok());
    EngineOptions eo;
    eo.kvF16 = false;
    auto eng = Engine::load(*m_model, eo);
    QVERIFY(eng.ok());
    const int nV = (*eng)->nVocab();
    std::vector<float> logits(static_cast<size_t>(win.size()) * nV);
    QVERIFY((*eng)->eval(win, 0, logits.data()).ok());
    double maxDiff = 0, maxAbs = 0;
    for (size_t t = 0; t < win.size(); ++t)
        for (int v = 0; v < nV; ++v) {
            double acc = 0;
            for (int i = 0; i < d; ++i)
                acc += static_cast<double>((*W)[static_cast<size_t>(v) * d + i]) * xn[t * d + i];
            maxDiff = std::max(maxDiff, std::fabs(acc - logits[t * nV + v]));
            maxAbs = std::max(maxAbs, std::fabs(acc));
        }
    qInfo("module forward vs engine: max |Δlogit| %.3g (max |logit| %.3g)", maxDiff, maxAbs);
    QVERIFY(maxAbs > 1);
    QVERIFY2(maxDiff < 1e-3 * maxAbs, "module forward differs from the engine");
}

void TestExl2Model::calibrationPerplexity() {
    // The export's calibration perplexities (first 4 quantization rows) recomputed with the engine: the
    // original model, and the model with every quantized weight (head included) swapped in.
    QCOMPARE(m_full.calibPplRows, 8);
    auto toks = gptq::tokenizeTextFile(*m_model, kTrain);
    QVERIFY(toks.ok());
    auto rows = gptq::calibrationWindows(*toks, baseParams().quantCalib);
    QVERIFY(rows.ok());
    auto ppl = [&](const WeightOverrides* ov) {
        EngineOptions eo;
        eo.kvF16 = false;
        eo.overrides = ov;
        auto eng = Engine::load(*m_model, eo);
        if (!eng) qFatal("%s", eng.error().message.c_str());
        const int nV = (*eng)->nVocab();
        double nll = 0;
        int64_t n = 0;
        for (int r = 0; r < 8; ++r) {
            const auto& w = (*rows)[r];
            std::vector<float> logits(w.size() * nV);
            (*eng)->reset();
            if (!(*eng)->eval(w, 0, logits.data()).ok()) qFatal("eval");
            for (size_t t = 0; t + 1 < w.size(); ++t) {
                const float* l = logits.data() + t * nV;
                double mx = -INFINITY, se = 0;
                for (int v = 0; v < nV; ++v)
                    mx = std::max(mx, static_cast<double>(l[v]));
                for (int v = 0; v < nV; ++v)
                    se += std::exp(l[v] - mx);
                nll += mx + std::log(se) - l[w[t + 1]];
                ++n;
            }
        }
        return std::exp(nll / n);
    };
    const double base = ppl(nullptr), quant = ppl(&m_full.overrides);
    qInfo("calibration perplexity: base %.5f (engine %.5f), quantized %.5f (engine %.5f)",
          m_full.calibPplBase, base, m_full.calibPplQuant, quant);
    QVERIFY(std::fabs(m_full.calibPplBase / base - 1) < 1e-4);
    QVERIFY(std::fabs(m_full.calibPplQuant / quant - 1) < 1e-4);
    // (Not asserted: quantized above base. These rows also calibrated the quantization; with 4 of them the
    // quantized model came out slightly lower, 11.526 vs 11.550.)
}

void TestExl2Model::outputFolder() {
    const std::set<std::string> expected = {"output.safetensors",    "config.json",
                                            "measurement.json",      "tokenizer.model",
                                            "tokenizer_config.json", "special_tokens_map.json",
                                            "generation_config.json"};
    QCOMPARE(listDir(m_dir), expected);
    QCOMPARE(std::set<std::string>(m_full.files.begin(), m_full.files.end()), expected);
    QCOMPARE(listDir(m_tmp.path().toStdString()),
             std::set<std::string>{"full"}); // no partial folder beside it

    auto out = openModel(m_dir + "/output.safetensors");
    QVERIFY2(out.ok(), out.ok() ? "" : out.error().message.c_str());
    auto plan = planModel(*m_model);
    QVERIFY(plan.ok());
    std::vector<LinearRef> lin;
    for (const auto& m : plan->modules)
        for (const auto& L : m.linears)
            lin.push_back(L);
    std::set<std::string> quantized;
    for (const auto& L : lin)
        quantized.insert(L.weightName);
    quantized.insert("lm_head.weight");
    // Every original tensor: either a quantized linear (5 q_* tensors, no .weight) or F16 with its shape.
    size_t expectCount = 0;
    for (const auto& t : m_model->tensors) {
        if (quantized.count(t.name)) {
            const std::string pre = t.name.substr(0, t.name.size() - 7);
            QVERIFY2(!(*out)->find(t.name), t.name.c_str());
            const TensorInfo* qw = (*out)->find(pre + ".q_weight");
            const TensorInfo* ip = (*out)->find(pre + ".q_invperm");
            const TensorInfo* sc = (*out)->find(pre + ".q_scale");
            const TensorInfo* sm = (*out)->find(pre + ".q_scale_max");
            const TensorInfo* gr = (*out)->find(pre + ".q_groups");
            QVERIFY2(qw && ip && sc && sm && gr, pre.c_str());
            QCOMPARE(qw->dtype, DType::I32);
            QCOMPARE(ip->dtype, DType::I32);
            QCOMPARE(sc->dtype, DType::I32);
            QCOMPARE(sm->dtype, DType::F16);
            QCOMPARE(gr->dtype, DType::I16);
            QCOMPARE(qw->shape[1], t.shape[0]);       // out (a multiple of 32 here)
            QCOMPARE(sc->shape[1] * 8, qw->shape[1]); // loader check
            QCOMPARE(sm->shape[0], sc->shape[0]);     // loader check
            QCOMPARE(gr->shape[0], 2 * sm->shape[0]);
            QCOMPARE(ip->shape[0], t.shape[1]); // in
            // q_invperm is a permutation of 0..in-1.
            const auto bytes = (*out)->rawBytes(*ip);
            std::vector<int32_t> perm(ip->shape[0]);
            std::memcpy(perm.data(), bytes.data(), bytes.size());
            std::sort(perm.begin(), perm.end());
            for (size_t k = 0; k < perm.size(); ++k)
                QCOMPARE(perm[k], static_cast<int32_t>(k));
            expectCount += 5;
        } else {
            const TensorInfo* o = (*out)->find(t.name);
            QVERIFY2(o, t.name.c_str());
            QCOMPARE(o->dtype, DType::F16);
            QCOMPARE(o->shape, t.shape);
            ++expectCount;
        }
    }
    QCOMPARE((*out)->tensors.size(), expectCount);

    // Achieved bpw from the written bytes: with out a multiple of 32, 8 × the bytes of a linear's q_* tensors
    // are exactly exllamav2's total_bits (codes, 4-bit scales, fp16 maxima, int16 group pairs, int32
    // invperm).
    double bits = 0, numel = 0;
    for (const auto& L : lin) {
        for (const char* suf : {".q_weight", ".q_invperm", ".q_scale", ".q_scale_max", ".q_groups"})
            bits += 8.0 * static_cast<double>((*out)->find(L.prefix + suf)->nbytes);
        numel += static_cast<double>(L.numel());
    }
    qInfo("achieved %.5f bpw (from the file %.5f) for target 5.0", m_full.achievedBpw, bits / numel);
    QVERIFY(std::fabs(bits / numel - m_full.achievedBpw) < 1e-9);
    QVERIFY(m_full.achievedBpw <= 5.0);
    QVERIFY2(m_full.achievedBpw >= 5.0 - 0.02, qPrintable(QString::number(m_full.achievedBpw)));
    QCOMPARE(m_full.layers.size(), size_t(4 * 7 + 1));

    // config.json: the original plus quantization_config.
    const auto cfg = nlohmann::json::parse(readAll(m_dir + "/config.json"));
    const auto orig = nlohmann::json::parse(m_model->configJson);
    QCOMPARE(cfg["model_type"].get<std::string>(), std::string("llama"));
    QCOMPARE(cfg["hidden_size"], orig["hidden_size"]);
    const auto& qc = cfg["quantization_config"];
    QCOMPARE(qc["quant_method"].get<std::string>(), std::string("exl2"));
    QCOMPARE(qc["bits"].get<double>(), 5.0);
    QCOMPARE(qc["head_bits"].get<int>(), 6);
    QCOMPARE(qc["calibration"]["rows"].get<int>(), 32);
    QCOMPARE(qc["calibration"]["length"].get<int>(), 256);
    QCOMPARE(readAll(m_dir + "/tokenizer.model"), readAll(kModel + "/tokenizer.model"));

    // measurement.json: exllamav2's layout, read back equal to the run's measurement.
    const auto mj = nlohmann::json::parse(readAll(m_dir + "/measurement.json"));
    QCOMPARE(mj["last_module_idx"].get<int>(), 2 * 4 + 2);
    QCOMPARE(mj["measurement"].size(), size_t(8));
    const auto& o0 = mj["measurement"]["model.layers.0.self_attn"][0];
    for (const char* k : {"accuracy", "total_bits", "q_proj", "k_proj", "v_proj", "o_proj"})
        QVERIFY2(o0.contains(k), k);
    QVERIFY(mj["measurement"]["model.layers.3.mlp"][0].contains("down_proj"));
    QVERIFY(o0["q_proj"].contains("bits_prop") && o0["q_proj"].contains("group_size"));
    auto back = readMeasurementJson(m_dir + "/measurement.json", *plan);
    QVERIFY2(back.ok(), back.ok() ? "" : back.error().message.c_str());
    QVERIFY(sameMeasurement(*back, m_full.measurement));
    // Options with more bits are (nearly always) more accurate: the best option of each module beats its
    // cheapest one.
    for (const auto& mm : m_full.measurement) {
        auto cheap = std::min_element(mm.options.begin(), mm.options.end(),
                                      [](const auto& a, const auto& b) { return a.totalBits < b.totalBits; });
        auto rich = std::max_element(mm.options.begin(), mm.options.end(),
                                     [](const auto& a, const auto& b) { return a.totalBits < b.totalBits; });
        QVERIFY2(rich->accuracy > cheap->accuracy, mm.key.c_str());
        QVERIFY(rich->accuracy > 0.99 && cheap->accuracy < rich->accuracy);
    }
}

void TestExl2Model::readCheckEqualsDequant() {
    // REF: our dequantized weights of every quantized linear (F32, the model's names and [out, in] shapes).
    const std::string script = std::string(QZ_TEST_DATA) + "/../exl2/read_check.py";
    QVERIFY2(fs::exists(script), "tests/exl2/read_check.py (the independent reader) is missing");
    const std::string ref = (m_tmp.path() + "/ref.safetensors").toStdString();
    std::vector<SafetensorsTensorDecl> decls;
    std::vector<const std::vector<float>*> data;
    for (const auto& t : m_model->tensors) {
        auto it = m_full.overrides.find(t.name);
        if (it == m_full.overrides.end() || t.shape.size() != 2) continue;
        decls.push_back({t.name, DType::F32, t.shape});
        data.push_back(&it->second);
    }
    QCOMPARE(decls.size(), size_t(29));
    // The other tensors as exllamav2 loads them: their fp16 values.
    std::vector<std::vector<float>> f16;
    f16.reserve(m_model->tensors.size());
    for (const auto& t : m_model->tensors) {
        if (m_full.overrides.count(t.name)) continue;
        auto v = readTensorF32(*m_model, t);
        QVERIFY(v.ok());
        for (float& x : *v)
            x = fp16ToFp32(fp32ToFp16(x));
        f16.push_back(std::move(*v));
        decls.push_back({t.name, DType::F32, t.shape});
        data.push_back(&f16.back());
    }
    {
        SafetensorsWriter w;
        QVERIFY(w.open(ref, decls).ok());
        for (const auto* d : data)
            QVERIFY(w.writeTensorFromF32(*d).ok());
        QVERIFY(w.finish().ok());
    }
    QProcess proc;
    // The system interpreter has numpy (Debian python3-numpy); a PATH shim (pyenv) may not.
    const QString python = fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
    proc.start(python,
               {QString::fromStdString(script), QString::fromStdString(m_dir), QString::fromStdString(ref)});
    QVERIFY(proc.waitForFinished(600000));
    const QByteArray outText = proc.readAllStandardOutput() + proc.readAllStandardError();
    qInfo("read_check.py: %s", outText.trimmed().right(600).constData());
    QCOMPARE(proc.exitStatus(), QProcess::NormalExit);
    QCOMPARE(proc.exitCode(), 0);
}

void TestExl2Model::measurementReusedAtTargets() {
    // RTN 4-bit g128 over the same decoder linears (the head left unquantized), as overrides.
    auto plan = planModel(*m_model);
    QVERIFY(plan.ok());
    WeightOverrides rtn;
    gptq::QuantConfig qc;
    qc.bits = 4;
    qc.groupSize = 128;
    for (const auto& mod : plan->modules)
        for (const auto& L : mod.linears) {
            auto w = readTensorF32(*m_model, *m_model->find(L.weightName));
            QVERIFY(w.ok());
            rtn[L.weightName] = gptq::dequantize(gptq::quantizeLayerRtn(w->data(), L.out, L.in, qc));
        }
    const double pRtn = perplexity(*m_model, &rtn);

    double ppl[4] = {0, 0, 0, 0};
    const double targets[4] = {4.0, 8.0, 3.0, 6.0}; // perplexities at 4.0 and 8.0
    for (int k = 0; k < 4; ++k) {
        ExportParams p = baseParams();
        p.targetBpw = targets[k];
        p.measurementPath = m_dir + "/measurement.json";
        p.writeOutput = false;
        p.keepOverrides = true;
        bool measuring = false;
        auto r = exportExl2(*m_model, p, [&](const ProgressInfo& i) {
            if (i.step.rfind("measure", 0) == 0) measuring = true;
            return true;
        });
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
        QVERIFY(r->measurementReused);
        QVERIFY(!measuring); // no measurement step was ever reported
        QCOMPARE(r->measuredModules, 0);
        QCOMPARE(r->resumedModules, 0);
        QVERIFY(sameMeasurement(r->measurement, m_full.measurement));
        // The chosen combination has the least error sum within the budget (found exhaustively here; the
        // optimizer's last step is exact, annealing alone came 0.1-1.4 % above it).
        const int64_t numel = plan->decoderNumel();
        const int64_t budget = static_cast<int64_t>(static_cast<double>(numel) * targets[k]);
        QCOMPARE(r->strategy.size(), size_t(8));
        double sum = 0;
        int64_t bits = 0;
        for (size_t i = 0; i < 8; ++i) {
            const auto& o = r->measurement[i].options[r->strategy[i]];
            sum += std::pow(1 - o.accuracy, r->errorNorm);
            bits += o.totalBits;
        }
        const auto [best, maxBits] = bestWithin(r->measurement, budget, r->errorNorm);
        QVERIFY(bits <= budget);
        QCOMPARE(static_cast<double>(bits) / static_cast<double>(numel), r->achievedBpw);
        QVERIFY2(sum <= best * (1 + 1e-9), qPrintable(QString("Σ %1 vs least %2").arg(sum).arg(best)));
        const double reachable = static_cast<double>(maxBits) / static_cast<double>(numel);
        qInfo("target %.1f: achieved %.4f bpw (largest total within the budget: %.4f), head %.4f bpw, "
              "Σ err^%.3f %.6g (least %.6g), %.1fs",
              targets[k], r->achievedBpw, reachable, r->headBpw, r->errorNorm, sum, best, r->seconds);
        // Within 0.02 of the target, except at 8.0: on bard-llama's narrow layers every option with 8-bit
        // rows costs > 8 bpw (q_invperm alone is 32/out = 0.125-0.25 bpw), so no combination lands within
        // 0.02 below 8.0 (the test prints the largest one) and the least-error one is lower still.
        if (targets[k] < 8.0)
            QVERIFY2(r->achievedBpw >= targets[k] - 0.02,
                     qPrintable(QString("target %1 achieved %2").arg(targets[k]).arg(r->achievedBpw)));
        else
            QVERIFY(reachable < targets[k] - 0.02);
        if (k < 2) ppl[k] = perplexity(*m_model, &r->overrides);
    }
    qInfo("original ppl %.4f, RTN 4-bit g128 %.4f, EXL2 4.0 %.4f, EXL2 8.0 %.4f", m_base, pRtn, ppl[0],
          ppl[1]);
    QVERIFY2(ppl[0] < pRtn, qPrintable(QString("EXL2 4.0 ppl %1 not below RTN %2").arg(ppl[0]).arg(pRtn)));
    QVERIFY2(std::fabs(ppl[1] / m_base - 1) < 0.01,
             qPrintable(QString("EXL2 8.0 ppl %1 vs %2").arg(ppl[1]).arg(m_base)));
}

void TestExl2Model::measurementResumes() {
    const std::string dir = (m_tmp.path() + "/resumed").toStdString();
    const std::string partial = (m_tmp.path() + "/.resumed.exl2-partial").toStdString();
    ExportParams p = baseParams();
    p.targetBpw = 5.0;
    p.outputDir = dir;
    // Cancel as the fifth module (layer 2's attention) starts measuring.
    auto cancelled = exportExl2(*m_model, p, [&](const ProgressInfo& i) {
        return i.step.rfind("measure: model.layers.2.self_attn", 0) != 0;
    });
    QVERIFY(!cancelled.ok());
    QVERIFY(cancelled.error().cancelled);
    QVERIFY(!fs::exists(dir));
    std::set<std::string> state = listDir(partial);
    QCOMPARE(state, (std::set<std::string>{"exl2-state.json", "measure.model.layers.0.self_attn.json",
                                           "measure.model.layers.0.mlp.json",
                                           "measure.model.layers.1.self_attn.json",
                                           "measure.model.layers.1.mlp.json"}));
    // Rerun: four modules taken from the state, four measured; the same measurement and files as the
    // uninterrupted run.
    auto r = exportExl2(*m_model, p);
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    QCOMPARE(r->resumedModules, 4);
    QCOMPARE(r->measuredModules, 4);
    QVERIFY(sameMeasurement(r->measurement, m_full.measurement));
    QVERIFY(!fs::exists(partial));
    for (const auto& f : m_full.files)
        QVERIFY2(readAll(dir + "/" + f) == readAll(m_dir + "/" + f), f.c_str());
    fs::remove_all(dir);
}

void TestExl2Model::cancelLeavesNoDestination() {
    const std::string parent = (m_tmp.path() + "/cancel").toStdString();
    fs::create_directories(parent);
    const std::string dir = parent + "/out";
    for (const char* phase : {"optimize", "quantize", "write"}) {
        ExportParams p = baseParams();
        p.targetBpw = 4.5;
        p.measurementPath = m_dir + "/measurement.json";
        p.outputDir = dir;
        const std::string ph = phase;
        auto r = exportExl2(*m_model, p, [&](const ProgressInfo& i) { return i.step.rfind(ph, 0) != 0; });
        QVERIFY2(!r.ok() && r.error().cancelled, phase);
        QVERIFY2(!fs::exists(dir), phase);
        QVERIFY2(listDir(parent).empty(), phase); // no partial folder, no temporary file
    }
    // A failure (an existing, non-empty destination) touches nothing.
    fs::create_directories(dir);
    writeAll(dir + "/keep.txt", "x");
    ExportParams p = baseParams();
    p.measurementPath = m_dir + "/measurement.json";
    p.outputDir = dir;
    auto r = exportExl2(*m_model, p);
    QVERIFY(!r.ok());
    QCOMPARE(listDir(dir), std::set<std::string>{"keep.txt"});
    QCOMPARE(listDir(parent), std::set<std::string>{"out"});
}

void TestExl2Model::shardedOutput() {
    // Shards of at most 1 MB: output-0000k-of-0000N.safetensors, no index, every tensor of the single-file
    // export in exactly one shard with the same bytes (same measurement, target and seed).
    ExportParams p = baseParams();
    p.targetBpw = 5.0;
    p.measurementPath = m_dir + "/measurement.json";
    p.maxShardBytes = 1'000'000;
    const std::string dir = (m_tmp.path() + "/sharded").toStdString();
    p.outputDir = dir;
    auto r = exportExl2(*m_model, p);
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    auto single = openModel(m_dir + "/output.safetensors");
    QVERIFY(single.ok());
    std::vector<std::string> shards;
    for (const auto& f : listDir(dir))
        if (f.size() > 12 && f.compare(f.size() - 12, 12, ".safetensors") == 0) shards.push_back(f);
    QVERIFY(shards.size() >= 3);
    const std::string n = std::to_string(shards.size());
    std::set<std::string> seen;
    for (size_t i = 0; i < shards.size(); ++i) {
        char want[64];
        std::snprintf(want, sizeof want, "output-%05zu-of-%05zu.safetensors", i + 1, shards.size());
        QCOMPARE(shards[i], std::string(want));
        auto sh = openModel(dir + "/" + shards[i]);
        QVERIFY(sh.ok());
        for (const auto& t : (*sh)->tensors) {
            QVERIFY2(seen.insert(t.name).second, t.name.c_str());
            const TensorInfo* o = (*single)->find(t.name);
            QVERIFY2(o, t.name.c_str());
            const auto a = (*sh)->rawBytes(t), b = (*single)->rawBytes(*o);
            QVERIFY2(a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin()), t.name.c_str());
        }
    }
    QCOMPARE(seen.size(), (*single)->tensors.size());
    QVERIFY(!fs::exists(dir + "/output.safetensors"));
    for (const auto& f : listDir(dir))
        QVERIFY2(f.find("index") == std::string::npos, f.c_str());
}

void TestExl2Model::commandLine() {
    // quantzoo-cli export --format exl2 with the measurement reused: exit 0, per-layer lines, target vs
    // achieved; usage errors exit 2, an unsupported model 1.
    auto run = [](const QStringList& args, QString* out, QString* err) {
        QProcess pr;
        pr.start(QStringLiteral(QZ_BINARY_DIR "/app/quantzoo-cli"), args);
        if (!pr.waitForFinished(600000)) return -1;
        if (out) *out = QString::fromUtf8(pr.readAllStandardOutput());
        if (err) *err = QString::fromUtf8(pr.readAllStandardError());
        return pr.exitStatus() == QProcess::NormalExit ? pr.exitCode() : -2;
    };
    const QString model = QString::fromStdString(kModel), calib = QString::fromStdString(kTrain);
    const QString meas = QString::fromStdString(m_dir + "/measurement.json");
    const QString out = m_tmp.path() + "/cli";
    QString o, e;
    QCOMPARE(run({"export", model, "--format", "exl2", "--bpw", "4.5", "--calib", calib, "--measurement",
                  meas, "--rows", "8", "--len", "128", "--anneal-iterations", "100", "-o", out},
                 &o, &e),
             0);
    QVERIFY2(o.contains("measurement: reused"), qPrintable(o));
    const QRegularExpressionMatch mt =
        QRegularExpression("target 4.5000 bpw, achieved ([0-9.]+) bpw").match(o);
    QVERIFY2(mt.hasMatch(), qPrintable(o));
    QVERIFY2(mt.captured(1).toDouble() <= 4.5 && mt.captured(1).toDouble() >= 4.48, qPrintable(o));
    QVERIFY2(e.contains("model.layers.3.mlp.down_proj.weight") && e.contains("lm_head.weight"),
             qPrintable(e));
    QVERIFY(fs::exists((out + "/output.safetensors").toStdString()));
    QCOMPARE(run({"export", model, "--format", "exl2", "--calib", calib}, nullptr, &e), 2); // no -o
    QCOMPARE(run({"export", model, "--format", "exl2", "--calib", calib, "--bpw", "9", "-o", out + "2"},
                 nullptr, &e),
             2);
    QCOMPARE(run({"export", model, "--format", "exl2", "--calib", calib, "--head-bits", "7", "-o", out + "2"},
                 nullptr, &e),
             2);
    QCOMPARE(run({"export", QString::fromStdString(kData + "/models/bard-gpt2"), "--format", "exl2",
                  "--calib", calib, "-o", out + "2"},
                 nullptr, &e),
             1);
    QVERIFY2(e.contains("GPT-2"), qPrintable(e));
    QVERIFY(!fs::exists((out + "2").toStdString()));
}

void TestExl2Model::rejectsBadInput() {
    ExportParams p = baseParams();
    p.writeOutput = false;
    p.measurementPath = m_dir + "/measurement.json";
    // GPT-2 is not an exllamav2 architecture.
    auto g = openModel(kData + "/models/bard-gpt2");
    QVERIFY(g.ok());
    auto rg = exportExl2(**g, p);
    QVERIFY(!rg.ok());
    QVERIFY2(rg.error().message.find("GPT-2") != std::string::npos, rg.error().message.c_str());
    // Targets and head bits out of range.
    p.targetBpw = 1.0;
    QVERIFY(!exportExl2(*m_model, p).ok());
    p.targetBpw = 5.0;
    p.headBits = 7;
    QVERIFY(!exportExl2(*m_model, p).ok());
    p.headBits = 6;
    // A target below the smallest combination of the measured options: refused, naming the budget.
    auto plan = planModel(*m_model);
    QVERIFY(plan.ok());
    double minBits = 0;
    for (const auto& mm : m_full.measurement) {
        int64_t b = mm.options[0].totalBits;
        for (const auto& o : mm.options)
            b = std::min(b, o.totalBits);
        minBits += static_cast<double>(b);
    }
    const double minBpw = minBits / static_cast<double>(plan->decoderNumel());
    qInfo("smallest reachable: %.4f bpw", minBpw);
    if (minBpw > 2.05) {
        p.targetBpw = 2.0;
        auto r = exportExl2(*m_model, p);
        QVERIFY(!r.ok());
        QVERIFY2(r.error().message.find("budget") != std::string::npos, r.error().message.c_str());
        p.targetBpw = 5.0;
    }

    // Hostile measurement.json files: each refused with a message naming the file.
    const auto good = nlohmann::json::parse(readAll(m_dir + "/measurement.json"));
    const std::string bad = (m_tmp.path() + "/bad-measurement.json").toStdString();
    auto expectRefused = [&](const std::string& text, const char* what, const char* needle) {
        writeAll(bad, text);
        p.measurementPath = bad;
        auto r = exportExl2(*m_model, p);
        QVERIFY2(!r.ok(), what);
        QVERIFY2(r.error().message.find(bad) != std::string::npos, r.error().message.c_str());
        QVERIFY2(r.error().message.find(needle) != std::string::npos, r.error().message.c_str());
    };
    expectRefused("{\"measurement\": {", "truncated", "JSON");
    expectRefused("[1, 2]", "not an object", "measurement");
    {
        auto j = good;
        j["measurement"].erase("model.layers.3.mlp");
        expectRefused(j.dump(), "missing module", "model.layers.3.mlp");
    }
    {
        auto j = good;
        j["measurement"]["model.layers.4.mlp"] = j["measurement"]["model.layers.3.mlp"];
        expectRefused(j.dump(), "extra module", "model.layers.4.mlp");
    }
    {
        auto j = good;
        j["measurement"]["model.layers.1.self_attn"][2]["total_bits"] = 12345;
        expectRefused(j.dump(), "total_bits", "total_bits");
    }
    {
        auto j = good;
        j["measurement"]["model.layers.0.mlp"][0]["accuracy"] = 1.5;
        expectRefused(j.dump(), "accuracy", "accuracy");
    }
    {
        auto j = good;
        j["measurement"]["model.layers.0.mlp"][1]["down_proj"]["bits"] = {7};
        expectRefused(j.dump(), "bits 7", "down_proj");
    }
    {
        auto j = good;
        j["measurement"]["model.layers.2.self_attn"][0].erase("v_proj");
        expectRefused(j.dump(), "slot missing", "v_proj");
    }
    {
        auto j = good;
        j["measurement"]["model.layers.2.self_attn"] = nlohmann::json::array();
        expectRefused(j.dump(), "no options", "model.layers.2.self_attn");
    }
    p.measurementPath = m_tmp.path().toStdString() + "/does-not-exist.json";
    QVERIFY(!exportExl2(*m_model, p).ok());
}

QTEST_GUILESS_MAIN(TestExl2Model)
#include "test_exl2_model.moc"
