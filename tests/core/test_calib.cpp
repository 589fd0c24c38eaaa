// The calibration module (core/calib): the carried-states store (16-bit rounding bounds from the formats'
// definitions, rows rewritten in place, the spill file beyond the memory budget and its removal, cancel),
// the layer-by-layer pass against Engine::eval run chunk by chunk (the way the statistics were collected
// before), and EXL2 with 16-bit or spilled states.
#include <QtTest>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <unistd.h>

#include "calib/imatrix.h"
#include "calib/layered.h"
#include "calib/states.h"
#include "calib/stats.h"
#include "exl2/exl2_export.h"
#include "exl2/exl2_measure.h"
#include "infer/engine.h"
#include "infer/perplexity.h"
#include "infer/text_tokens.h"
#include "jobs/calibration.h"
#include "model/model.h"

using namespace qz;
namespace fs = std::filesystem;

namespace {

const std::string kData = QZ_TEST_DATA;
const std::string kTrain = kData + "/text/shakespeare-train.txt";

std::string readText(const std::string& path) {
    QFile f(QString::fromStdString(path));
    if (!f.open(QIODevice::ReadOnly)) return {};
    return f.readAll().toStdString();
}

// The files this process holds open inside `dir` (as /proc/self/fd shows them; an unlinked file reads
// "<path> (deleted)").
std::vector<std::string> openFilesIn(const std::string& dir) {
    std::vector<std::string> out;
    const std::string canon = fs::weakly_canonical(dir).string() + "/";
    for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        const auto target = fs::read_symlink(e.path(), ec);
        if (!ec && target.string().rfind(canon, 0) == 0) out.push_back(target.string());
    }
    return out;
}

int entriesIn(const std::string& dir) {
    int n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
    return n;
}

}  // namespace

class TestCalib : public QObject {
    Q_OBJECT
private slots:
    void roundTripBounds();
    void rowsRewrittenInPlace();
    void spillFileLifecycle();
    void parseTypes();
    void layeredPassEqualsEval();
    void layeredPerplexityEqualsEval();
    void imatrixLayeredSpilledAndCancelled();
    void exl2StatesOnceSpilledAnd16Bit();
};

// F16 keeps 11 significant bits: relative error ≤ 2^-11 for normal values (|x| ≥ 2^-14), absolute ≤ 2^-25
// below (subnormal spacing 2^-24, half of it). BF16 keeps 8: relative ≤ 2^-8. F32 is exact.
void TestCalib::roundTripBounds() {
    QTemporaryDir tmp;
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::uniform_int_distribution<int> ex(-30, 15);
    const int64_t rows = 3, seq = 5, hidden = 64;
    std::vector<std::vector<float>> data(rows, std::vector<float>(seq * hidden));
    for (auto& r : data)
        for (float& v : r) v = nd(rng) * std::ldexp(1.0f, ex(rng));  // magnitudes 2^-30 .. 2^15
    data[0][0] = 65504.0f;
    data[0][1] = -0.0f;
    data[0][2] = std::ldexp(1.0f, -24);  // smallest F16 subnormal
    for (auto type : {calib::StateType::F32, calib::StateType::F16, calib::StateType::BF16})
        for (uint64_t budget : {uint64_t(0), uint64_t(1)}) {
            calib::StateStore s;
            QVERIFY(s.init(rows, seq, hidden, type, budget, tmp.path().toStdString()).ok());
            QCOMPARE(s.bytes(), uint64_t(rows * seq * hidden * calib::stateBytesPerValue(type)));
            QCOMPARE(s.spilled(), budget != 0);
            for (int64_t r = 0; r < rows; ++r) QVERIFY(s.put(r, data[r]).ok());
            std::vector<float> back(seq * hidden);
            for (int64_t r = 0; r < rows; ++r) {
                QVERIFY(s.get(r, back).ok());
                for (size_t i = 0; i < back.size(); ++i) {
                    const float v = data[r][i];
                    const double err = std::fabs(static_cast<double>(back[i]) - v);
                    double bound = 0;
                    if (type == calib::StateType::F16)
                        bound = std::fabs(v) >= std::ldexp(1.0, -14) ? std::fabs(v) * std::ldexp(1.0, -11)
                                                                     : std::ldexp(1.0, -25);
                    else if (type == calib::StateType::BF16)
                        bound = std::fabs(v) * std::ldexp(1.0, -8);
                    QVERIFY2(err <= bound, qPrintable(QString("%1: %2 -> %3").arg(calib::stateTypeName(type)).arg(v).arg(back[i])));
                }
            }
            if (type != calib::StateType::F32) {  // rounding happened somewhere
                QVERIFY(s.get(1, back).ok());
                QVERIFY(back != data[1]);
            }
        }
}

// A row read, changed and written back replaces only itself (a block's output over its input).
void TestCalib::rowsRewrittenInPlace() {
    QTemporaryDir tmp;
    for (uint64_t budget : {uint64_t(0), uint64_t(16)}) {
        calib::StateStore s;
        QVERIFY(s.init(4, 2, 3, calib::StateType::F32, budget, tmp.path().toStdString()).ok());
        std::vector<float> row(6);
        for (int r = 0; r < 4; ++r) {
            for (int i = 0; i < 6; ++i) row[i] = static_cast<float>(10 * r + i);
            QVERIFY(s.put(r, row).ok());
        }
        for (int pass = 0; pass < 3; ++pass)
            for (int r = 0; r < 4; ++r) {
                QVERIFY(s.get(r, row).ok());
                for (float& v : row) v = v * 2 + 1;
                QVERIFY(s.put(r, row).ok());
            }
        for (int r = 0; r < 4; ++r) {
            QVERIFY(s.get(r, row).ok());
            for (int i = 0; i < 6; ++i) QCOMPARE(row[i], static_cast<float>(8 * (10 * r + i) + 7));  // ((2x+1)·2+1)·2+1
        }
    }
}

// Beyond the budget the states are in a file of the spill folder that is unlinked at once (nothing to
// list) and held only by the store: release() and destruction close it, so the space is freed.
void TestCalib::spillFileLifecycle() {
    QTemporaryDir tmp;
    const std::string dir = tmp.path().toStdString();
    {
        calib::StateStore under;
        QVERIFY(under.init(2, 4, 8, calib::StateType::F16, 2 * 4 * 8 * 2, dir).ok());  // exactly the budget
        QVERIFY(!under.spilled());
        QVERIFY(openFilesIn(dir).empty());
    }
    {
        calib::StateStore over;
        QVERIFY(over.init(2, 4, 8, calib::StateType::F16, 2 * 4 * 8 * 2 - 1, dir, "probe").ok());
        QVERIFY(over.spilled());
        const auto open = openFilesIn(dir);
        QCOMPARE(open.size(), size_t(1));
        QVERIFY2(open[0].find("/probe-") != std::string::npos && open[0].find("(deleted)") != std::string::npos,
                 open[0].c_str());
        QCOMPARE(entriesIn(dir), 0);
        std::vector<float> row(32, 1.5f);
        QVERIFY(over.put(1, row).ok());
        over.release();
        QVERIFY(!over.spilled());
        QVERIFY(openFilesIn(dir).empty());
        QVERIFY(!over.get(1, row).ok());  // released: no rows
        // Re-initialised over the budget again, then destroyed.
        QVERIFY(over.init(2, 4, 8, calib::StateType::F32, 1, dir).ok());
        QCOMPARE(openFilesIn(dir).size(), size_t(1));
    }
    QVERIFY(openFilesIn(dir).empty());
    QCOMPARE(entriesIn(dir), 0);
    calib::StateStore bad;
    QVERIFY(!bad.init(2, 4, 8, calib::StateType::F32, 1, dir + "/missing").ok());
}

void TestCalib::parseTypes() {
    QCOMPARE(*calib::parseStateType("f32"), calib::StateType::F32);
    QCOMPARE(*calib::parseStateType("F16"), calib::StateType::F16);
    QCOMPARE(*calib::parseStateType("bf16"), calib::StateType::BF16);
    QVERIFY(!calib::parseStateType("f8").has_value());
    QVERIFY(!calib::parseStateType("").has_value());
}

// The layer-by-layer pass observes exactly what Engine::eval observes chunk by chunk from an empty cache
// (F32 states): maxima and Σx² per layer are equal to the bit, for llama and GPT-2, the head included.
void TestCalib::layeredPassEqualsEval() {
    for (const std::string name : {"bard-llama", "bard-gpt2"}) {
        auto m = openModel(kData + "/models/" + name);
        QVERIFY(m.ok());
        auto in = tokenizeForPerplexity(**m, readText(kTrain));
        QVERIFY(in.ok());
        const int len = 48, chunks = 3;
        std::vector<std::vector<int32_t>> seqs;
        for (int c = 0; c < chunks; ++c)
            seqs.emplace_back(in->tokens.begin() + c * len, in->tokens.begin() + (c + 1) * len);
        EngineOptions eo;
        eo.nCtx = len;
        auto e = Engine::load(**m, eo);
        QVERIFY(e.ok());
        // The reference: eval() per chunk with logits of every position (the head sees every token).
        std::map<std::string, calib::ColumnMaxAbs> refMax;
        std::map<std::string, calib::ColumnSquares> refSq;
        (*e)->setObserver([&](const std::string& n, const float* x, int64_t t, int64_t k) {
            QVERIFY(refMax[n].add(x, t, k));
            QVERIFY(refSq[n].add(x, t, k));
        });
        std::vector<float> logits(static_cast<size_t>(len) * (*e)->nVocab());
        for (const auto& s : seqs) {
            (*e)->reset();
            QVERIFY((*e)->eval(s, 0, logits.data(), 0).ok());
        }
        (*e)->setObserver({});
        for (auto type : {calib::StateType::F32, calib::StateType::BF16})
            for (uint64_t budget : {uint64_t(0), uint64_t(1)}) {
                std::map<std::string, calib::ColumnMaxAbs> mx;
                std::map<std::string, calib::ColumnSquares> sq;
                calib::LayeredPassParams lp;
                lp.head = calib::HeadInput::AllTokens;
                lp.stateType = type;
                lp.maxStateMemory = budget;
                lp.batchBytes = budget == 0 ? 0 : 1; // all at once, or one sequence per batch
                auto r = calib::runLayered(**e, seqs, [&](const std::string& n, const float* x, int64_t t, int64_t k) {
                    mx[n].add(x, t, k);
                    sq[n].add(x, t, k);
                }, lp);
                QVERIFY(r.ok());
                QCOMPARE(r->spilled, budget != 0);
                QCOMPARE(r->batches, budget == 0 ? 1 : chunks);
                QCOMPARE(mx.size(), refMax.size());
                double worst = 0;
                for (const auto& [n, a] : refMax) {
                    QVERIFY2(mx.count(n), n.c_str());
                    QCOMPARE(mx[n].tokens, a.tokens);
                    QCOMPARE(sq[n].count, refSq[n].count);
                    if (type == calib::StateType::F32) {
                        QVERIFY2(mx[n].maxAbs == a.maxAbs, n.c_str());
                        QVERIFY2(sq[n].sum2 == refSq[n].sum2, n.c_str());
                    } else {
                        for (size_t j = 0; j < a.maxAbs.size(); ++j)
                            worst = std::max(worst, std::fabs(mx[n].maxAbs[j] - a.maxAbs[j]) / (a.maxAbs[j] + 1e-3));
                    }
                }
                if (type != calib::StateType::F32) {
                    qInfo("%s BF16 states: largest relative change of a column maximum %.4f", name.c_str(), worst);
                    QVERIFY(worst > 0);     // the states were rounded ...
                    QVERIFY(worst < 0.1);   // ... and stay close
                }
            }
    }
}

// imatrix over spilled states gives the in-memory sums; a cancelled pass leaves no file open.
// Perplexity one block at a time, each block's changed weights installed only while it runs, equals
// computePerplexity through eval() on an engine loaded with all of them as overrides: the same figures to
// the bit (F32 states), in memory and spilled; without the changes it equals the plain perplexity.
void TestCalib::layeredPerplexityEqualsEval() {
    QTemporaryDir tmp;
    for (const std::string name : {"bard-llama", "bard-gpt2"}) {
        auto m = openModel(kData + "/models/" + name);
        QVERIFY(m.ok());
        auto in = tokenizeForPerplexity(**m, readText(kTrain));
        QVERIFY(in.ok());
        // One linear and one bias-free 2-D weight per block, scaled (a stand-in for a quantized block).
        std::vector<std::vector<std::string>> names;
        for (int b = 0;; ++b) {
            const std::string w = name == "bard-gpt2" ? "transformer.h." + std::to_string(b) + ".mlp.c_proj.weight"
                                                      : "model.layers." + std::to_string(b) + ".mlp.down_proj.weight";
            const std::string w2 = name == "bard-gpt2" ? "transformer.h." + std::to_string(b) + ".attn.c_attn.weight"
                                                       : "model.layers." + std::to_string(b) + ".self_attn.q_proj.weight";
            if (!(*m)->find(w)) break;
            names.push_back({w, w2});
        }
        QVERIFY(names.size() >= 2);
        WeightOverrides changed;
        for (const auto& blk : names)
            for (const auto& n : blk) {
                auto v = readTensorF32(**m, *(*m)->find(n));
                QVERIFY(v.ok());
                for (float& x : *v) x *= 0.75f;
                changed[n] = std::move(*v);
            }
        PerplexityParams pp = in->params;
        pp.nCtx = 64;
        pp.nChunks = 3;
        EngineOptions eo;
        eo.nCtx = 64;
        eo.overrides = &changed;
        auto ref = Engine::load(**m, eo);
        QVERIFY(ref.ok());
        auto expected = computePerplexity(**ref, in->tokens, pp);
        QVERIFY(expected.ok());
        eo.overrides = nullptr;
        auto e = Engine::load(**m, eo);
        QVERIFY(e.ok());
        auto plain = computePerplexity(**e, in->tokens, pp);
        QVERIFY(plain.ok());
        QVERIFY(plain->ppl != expected->ppl);
        calib::BlockWeights bw;
        int installed = 0;
        bw.install = [&](int b) -> Status {
            for (const auto& n : names[static_cast<size_t>(b)])
                if (auto s = (*e)->setWeight(n, changed.at(n)); !s) return s;
            ++installed;
            return okStatus();
        };
        bw.release = [&](int b) -> Status {
            for (const auto& n : names[static_cast<size_t>(b)])
                if (auto s = (*e)->resetWeight(n); !s) return s;
            return okStatus();
        };
        for (uint64_t budget : {uint64_t(0), uint64_t(1)}) {
            auto r = calib::perplexityLayered(**e, in->tokens, pp, bw, budget, tmp.path().toStdString());
            QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
            QCOMPARE(r->nChunks, expected->nChunks);
            QCOMPARE(r->count, expected->count);
            QVERIFY(r->ppl == expected->ppl);  // exact
            QVERIFY(r->runningPpl == expected->runningPpl);
            QVERIFY(r->pplError == expected->pplError);
        }
        QCOMPARE(installed, 2 * static_cast<int>(names.size()));
        // Every block released: the engine computes the original model again.
        auto unchanged = calib::perplexityLayered(**e, in->tokens, pp, {});
        QVERIFY(unchanged.ok());
        QVERIFY(unchanged->ppl == plain->ppl);
        // Cancelled half way.
        int calls = 0;
        auto c = calib::perplexityLayered(**e, in->tokens, pp, bw, 0, {}, [&](const ProgressInfo&) { return ++calls < 5; });
        QVERIFY(!c.ok() && c.error().cancelled);
    }
}

void TestCalib::imatrixLayeredSpilledAndCancelled() {
    auto m = openModel(kData + "/models/bard-llama");
    QVERIFY(m.ok());
    QTemporaryDir tmp;
    const std::string text = readText(kTrain);
    ImatrixParams p;
    p.nCtx = 64;
    p.nChunks = 4;
    auto inMem = computeImatrix(**m, text, p);
    QVERIFY(inMem.ok());
    p.maxStateMemory = 1;
    p.spillDir = tmp.path().toStdString();
    bool sawSpill = false;
    auto spilled = computeImatrix(**m, text, p, [&](const ProgressInfo&) {
        sawSpill = sawSpill || !openFilesIn(p.spillDir).empty();
        return true;
    });
    QVERIFY(spilled.ok());
    QVERIFY(sawSpill);
    QCOMPARE(spilled->entries.size(), inMem->entries.size());
    for (const auto& [n, e] : inMem->entries) {
        QVERIFY2(spilled->entries.at(n).sum2 == e.sum2, n.c_str());
        QCOMPARE(spilled->entries.at(n).count, e.count);
    }
    QVERIFY(openFilesIn(p.spillDir).empty());
    int calls = 0;
    auto cancelled = computeImatrix(**m, text, p, [&](const ProgressInfo& i) {
        return i.fraction < 0.1 || ++calls < 5;
    });
    QVERIFY(!cancelled.ok());
    QVERIFY(cancelled.error().cancelled);
    QVERIFY(openFilesIn(p.spillDir).empty());
    QCOMPARE(entriesIn(p.spillDir), 0);
}

// EXL2: spilled F32 states give the in-memory result exactly; 16-bit states move the measured accuracies
// only slightly; a cancelled export with spilled states leaves no file behind.
void TestCalib::exl2StatesOnceSpilledAnd16Bit() {
    auto m = openModel(kData + "/models/bard-llama");
    QVERIFY(m.ok());
    QTemporaryDir tmp;
    exl2::ExportParams p;
    p.calibPath = kTrain;
    p.measureCalib = {4, 64, 0};
    p.quantCalib = {6, 64, 0};
    p.targetBpw = 4.0;
    p.writeOutput = false;
    p.keepOverrides = true;
    p.annealIterations = 50;
    auto base = exl2::exportExl2(**m, p);
    QVERIFY(base.ok());
    QVERIFY(!base->statesSpilled);
    QVERIFY(base->stateBytes > 0);
    // Spilled states (the quantization's and the perplexity rows'), on base's measurement: the same result.
    auto plan = exl2::planModel(**m);
    QVERIFY(plan.ok());
    const std::string measPath = (tmp.path() + "/measurement.json").toStdString();
    {
        QFile f(QString::fromStdString(measPath));
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write(QByteArray::fromStdString(exl2::measurementJson(base->measurement, 2 * plan->hp.nLayer + 2)));
    }
    p.measurementPath = measPath;
    p.maxStateMemory = 1;
    auto spilled = exl2::exportExl2(**m, p);
    QVERIFY(spilled.ok());
    QVERIFY(spilled->statesSpilled);
    QCOMPARE(spilled->strategy, base->strategy);
    for (const auto& [n, v] : base->overrides) QVERIFY2(spilled->overrides.at(n) == v, n.c_str());
    QCOMPARE(spilled->calibPplQuant, base->calibPplQuant);
    QCOMPARE(spilled->calibPplBase, base->calibPplBase);

    // BF16 states through the measurement and the quantization: half the bytes; the measured errors move
    // a little (the rounding of every carried state is 2^-9 relative).
    p.measurementPath.clear();
    p.maxStateMemory = 0;
    p.stateType = calib::StateType::BF16;
    auto r = exl2::exportExl2(**m, p);
    QVERIFY(r.ok());
    QCOMPARE(r->stateBytes * 2, base->stateBytes);
    double worst = 0;
    for (size_t i = 0; i < base->measurement.size(); ++i)
        for (size_t o = 0; o < base->measurement[i].options.size(); ++o)
            worst = std::max(worst, std::fabs(r->measurement[i].options[o].accuracy -
                                              base->measurement[i].options[o].accuracy) /
                                        (1.0 - base->measurement[i].options[o].accuracy));
    int changed = 0;
    for (size_t i = 0; i < base->strategy.size(); ++i) changed += r->strategy[i] != base->strategy[i];
    qInfo("BF16 states: largest relative change of a measured error %.4f; %d of %zu modules chose another "
          "setting (%.4f bpw, F32 %.4f); calibration ppl %.4f (F32 %.4f)",
          worst, changed, base->strategy.size(), r->achievedBpw, base->achievedBpw, r->calibPplQuant,
          base->calibPplQuant);
    QVERIFY(worst > 0 && worst < 0.1);
    QVERIFY(std::fabs(r->calibPplQuant / base->calibPplQuant - 1) < 0.03);
    QVERIFY(std::fabs(r->calibPplBase / base->calibPplBase - 1) < 0.01);

    // Cancelled mid-measurement with spilled states: no destination, no open or left file.
    p.stateType = calib::StateType::F32;
    p.maxStateMemory = 1;
    p.writeOutput = true;
    p.outputDir = (tmp.path() + "/out").toStdString();
    int calls = 0;
    bool sawSpill = false;
    auto c = exl2::exportExl2(**m, p, [&](const ProgressInfo&) {
        sawSpill = sawSpill || !openFilesIn(tmp.path().toStdString()).empty();
        return ++calls < 40;
    });
    QVERIFY(!c.ok());
    QVERIFY(c.error().cancelled);
    QVERIFY(sawSpill);
    QVERIFY(openFilesIn(tmp.path().toStdString()).empty());
    QVERIFY(!fs::exists(p.outputDir));
}

QTEST_GUILESS_MAIN(TestCalib)
#include "test_calib.moc"
