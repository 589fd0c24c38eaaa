// The GGUF file that fits a size: size parsing, the knapsack against brute force, the plan's exact file
// size, and the proof that per-tensor types chosen for the size beat llama-quantize's standard mix of
// the same size in KL-divergence (measured by the engine, which reproduces llama-perplexity's figures).
#include <QProcess>
#include <QtTest>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "export/gguf_export.h"
#include "export/target_size.h"
#include "gguf/gguf_reader.h"
#include "infer/evaluate.h"
#include "infer/imatrix_collect.h"
#include "time_scale.h"

using namespace qz;

class TestTargetSize : public QObject {
    Q_OBJECT
  private slots:
    void parseSizes();
    void knapsackAgainstBruteForce();
    void knapsackModelSized();
    void knapsackRefusesTooSmall();
    void beatsStandardMixes();
    void cli();

  private:
    static int run(const QStringList& args, QByteArray* out = nullptr, QByteArray* err = nullptr) {
        QProcess p;
        p.start(QStringLiteral(QZ_BINARY_DIR "/app/quantzoo-cli"), args);
        if (!p.waitForFinished(scaledMs(300000))) return -1;
        if (out) *out = p.readAllStandardOutput();
        if (err) *err = p.readAllStandardError();
        return p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2;
    }
};

void TestTargetSize::parseSizes() {
    QCOMPARE(parseByteSize("4.5G").value_or(0), uint64_t(4500000000ull));
    QCOMPARE(parseByteSize("4.5GB").value_or(0), uint64_t(4500000000ull));
    QCOMPARE(parseByteSize("4.5 gib").value_or(0), uint64_t(4831838208ull));
    QCOMPARE(parseByteSize("700M").value_or(0), uint64_t(700000000ull));
    QCOMPARE(parseByteSize("700MiB").value_or(0), uint64_t(734003200ull));
    QCOMPARE(parseByteSize("512k").value_or(0), uint64_t(512000));
    QCOMPARE(parseByteSize("123456").value_or(0), uint64_t(123456));
    QCOMPARE(parseByteSize("2T").value_or(0), uint64_t(2000000000000ull));
    for (const char* bad : {"", "G", "4.5X", "1.2.3G", "-1G", "0", "1e30", ".", "99999999999999999999T"})
        QVERIFY2(!parseByteSize(bad), bad);
}

namespace {
struct Brute {
    double loss = INFINITY;
    uint64_t cost = 0;
};
Brute bruteForce(const std::vector<std::vector<KnapsackOption>>& items, uint64_t budget) {
    Brute best;
    std::vector<size_t> pick(items.size(), 0);
    for (;;) {
        uint64_t c = 0;
        double l = 0;
        for (size_t i = 0; i < items.size(); ++i)
            c += items[i][pick[i]].cost, l += items[i][pick[i]].loss;
        if (c <= budget && l < best.loss) best = {l, c};
        size_t k = 0;
        while (k < items.size() && ++pick[k] == items[k].size())
            pick[k++] = 0;
        if (k == items.size()) break;
    }
    return best;
}
} // namespace

void TestTargetSize::knapsackAgainstBruteForce() {
    std::mt19937 rng(12345);
    int instances = 0, exact = 0;
    double worstGap = 0;
    for (int inst = 0; inst < 300; ++inst) {
        const size_t n = 2 + rng() % 5;
        std::vector<std::vector<KnapsackOption>> items(n);
        uint64_t minSum = 0, maxSum = 0;
        for (auto& it : items) {
            const size_t m = 1 + rng() % 5;
            uint64_t lo = UINT64_MAX, hi = 0;
            for (size_t k = 0; k < m; ++k) {
                // Costs like bytes of a tensor; losses mostly falling with cost, with dominated options.
                const uint64_t c = 100 + rng() % 900;
                const double l = 1000.0 / static_cast<double>(c) * (0.5 + (rng() % 1000) / 1000.0);
                it.push_back({c, l});
                lo = std::min(lo, c), hi = std::max(hi, c);
            }
            minSum += lo, maxSum += hi;
        }
        for (int b = 0; b < 6; ++b) {
            const uint64_t budget = minSum + (maxSum - minSum) * static_cast<uint64_t>(b) / 5;
            const Brute ref = bruteForce(items, budget);
            auto r = solveMultipleChoice(items, budget);
            QVERIFY(r.ok());
            QCOMPARE(r->choice.size(), n);
            uint64_t c = 0;
            double l = 0;
            for (size_t i = 0; i < n; ++i)
                c += items[i][r->choice[i]].cost, l += items[i][r->choice[i]].loss;
            QCOMPARE(r->cost, c);
            QVERIFY(std::fabs(r->loss - l) <= 1e-9 * std::max(1.0, l));
            QVERIFY(c <= budget);
            QVERIFY(r->loss >= ref.loss - 1e-9);                                  // nothing beats the optimum
            QVERIFY(r->lowerBound <= ref.loss + 1e-9);                            // the LP bound is a bound
            if (b == 0 || b == 5) QVERIFY(std::fabs(r->loss - ref.loss) <= 1e-9); // all cheapest / all best
            // The Lagrangian solution misses the LP optimum by at most the one hull step it could not
            // take, which is within one item's loss range.
            double range = 0;
            for (const auto& it : items) {
                double lo = INFINITY, hi = 0;
                for (const auto& o : it)
                    lo = std::min(lo, o.loss), hi = std::max(hi, o.loss);
                range = std::max(range, hi - lo);
            }
            QVERIFY(r->loss - r->lowerBound <= range + 1e-9);
            ++instances;
            if (std::fabs(r->loss - ref.loss) <= 1e-9 * std::max(1.0, ref.loss)) ++exact;
            worstGap = std::max(worstGap, (r->loss - ref.loss) / ref.loss);
        }
    }
    qInfo("knapsack: optimal in %d of %d instances, worst relative excess %.4f", exact, instances, worstGap);
    QVERIFY(exact >= instances * 98 / 100);
}

// A model-sized instance (a 7B has about 290 tensors, here 15 types each): fast, within the budget, and
// close to the LP bound (which the brute-force test shows is a bound).
void TestTargetSize::knapsackModelSized() {
    std::mt19937 rng(7);
    std::vector<std::vector<KnapsackOption>> items(300);
    uint64_t minSum = 0, maxSum = 0;
    for (auto& it : items) {
        const double n = 1e6 + rng() % 50000000, s = 0.5 + (rng() % 1000) / 500.0;
        uint64_t lo = UINT64_MAX, hi = 0;
        for (double bpw :
             {1.56, 1.75, 2.06, 2.31, 2.5, 2.63, 3.06, 3.44, 4.25, 4.5, 5.0, 5.5, 6.56, 8.5, 16.0}) {
            const uint64_t c = static_cast<uint64_t>(n * bpw / 8);
            it.push_back({c, s * n * std::pow(2.0, -2.0 * bpw) * (0.9 + (rng() % 200) / 1000.0)});
            lo = std::min(lo, c), hi = std::max(hi, c);
        }
        minSum += lo, maxSum += hi;
    }
    QElapsedTimer timer;
    timer.start();
    for (double f : {0.1, 0.3, 0.5, 0.8}) {
        const uint64_t budget = minSum + static_cast<uint64_t>(static_cast<double>(maxSum - minSum) * f);
        auto r = solveMultipleChoice(items, budget);
        QVERIFY(r.ok());
        QVERIFY(r->cost <= budget);
        QVERIFY(r->loss >= r->lowerBound);
        QVERIFY2(r->loss <= r->lowerBound * 1.001, qPrintable(QString::number(r->loss / r->lowerBound)));
        QVERIFY(budget - r->cost < budget / 1000); // the budget is used
    }
    qInfo("4 solves of 300 x 15: %lld ms", static_cast<long long>(timer.elapsed()));
    QVERIFY(timer.elapsed() < 5000);
}

void TestTargetSize::knapsackRefusesTooSmall() {
    std::vector<std::vector<KnapsackOption>> items = {{{10, 1.0}, {20, 0.5}}, {{15, 2.0}}};
    QVERIFY(!solveMultipleChoice(items, 24).ok());
    auto r = solveMultipleChoice(items, 25);
    QVERIFY(r.ok());
    QCOMPARE(r->choice, (std::vector<size_t>{0, 0}));
    QVERIFY(!solveMultipleChoice({{}}, 100).ok());
}

namespace {
std::string readText(const std::string& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}
} // namespace

// bard-llama, importance matrix from the training text; for the sizes of the Q3_K_M, Q4_K_M and Q5_K_M
// files (same imatrix), the target-size file is no larger and its KL-divergence against the F32
// model on the validation text is lower than the standard mix's.
void TestTargetSize::beatsStandardMixes() {
    QTemporaryDir tmp;
    const std::string dir = tmp.path().toStdString();
    auto model = openModel(QZ_TEST_DATA "/models/bard-llama");
    QVERIFY(model.ok());
    ImatrixParams ip;
    ip.nCtx = 128;
    ip.nChunks = 32;
    ip.processOutput = true;
    auto im = computeImatrix(**model, readText(QZ_TEST_DATA "/text/shakespeare-train.txt"), ip);
    QVERIFY(im.ok());
    const std::string imPath = dir + "/imatrix.gguf";
    QVERIFY(writeImatrixGguf(*im, imPath).ok());

    const std::string valid = readText(QZ_TEST_DATA "/text/shakespeare-valid.txt");
    EvalParams ev;
    ev.nCtx = 128;
    ev.nChunks = 16;
    KldBase base;
    QVERIFY(evaluatePerplexity(**model, valid, ev, {}, nullptr, &base).ok());

    SensitivityParams sp;
    sp.imatrixPath = imPath;
    // The K-quants, Q8_0, F16 and the cheaper-to-measure i-quants keep the test to seconds.
    sp.candidates = {DType::Q2_K, DType::IQ3_S, DType::Q3_K, DType::IQ4_XS, DType::Q4_K,
                     DType::Q5_K, DType::Q6_K,  DType::Q8_0, DType::F16};
    auto table = measureSensitivity(**model, sp);
    QVERIFY2(table.ok(), table.ok() ? "" : table.error().message.c_str());
    // The same with every tensor's weight measured: single-tensor KLD on the training text.
    sp.kldText = readText(QZ_TEST_DATA "/text/shakespeare-train.txt");
    sp.kldChunks = 4;
    auto measured = measureSensitivity(**model, sp);
    QVERIFY2(measured.ok(), measured.ok() ? "" : measured.error().message.c_str());
    for (const auto& t : measured->tensors)
        if (t.quantizable) {
            QVERIFY2(t.measuredKld > 0, t.name.c_str());
            QCOMPARE(t.kldType, DType::Q3_K);
        }

    for (const char* mix : {"Q3_K_M", "Q4_K_M", "Q5_K_M"}) {
        GgufExportParams sp0;
        sp0.type = mix;
        sp0.imatrixPath = imPath;
        sp0.outputPath = dir + "/std-" + mix + ".gguf";
        auto std0 = exportGguf(**model, sp0, {});
        QVERIFY(std0.ok());
        const uint64_t size = std::filesystem::file_size(sp0.outputPath);

        auto s = openModel(sp0.outputPath);
        QVERIFY(s.ok());
        auto kStd = evaluateKlDivergence(**s, base, ev);
        QVERIFY(kStd.ok());
        for (const SensitivityTable* tab : {&*table, &*measured}) {
            auto plan = chooseTargetPlan(*tab, TargetSpec{size, 0});
            QVERIFY2(plan.ok(), plan.ok() ? "" : plan.error().message.c_str());
            QVERIFY(plan->fileBytes <= size);
            GgufExportParams base0;
            base0.outputPath = dir + "/tgt-" + mix + ".gguf";
            std::filesystem::remove(base0.outputPath);
            auto tgt = exportGguf(**model, targetExportParams(*plan, *tab, base0), {});
            QVERIFY2(tgt.ok(), tgt.ok() ? "" : tgt.error().message.c_str());
            QCOMPARE(uint64_t(std::filesystem::file_size(base0.outputPath)), plan->fileBytes);
            // Every tensor has the planned type in the written file.
            auto g = openModel(base0.outputPath);
            QVERIFY(g.ok());
            for (const auto& t : plan->tensors) {
                const TensorInfo* info = (*g)->find(t.name);
                QVERIFY2(info, t.name.c_str());
                QCOMPARE(info->dtype, t.type);
            }
            auto kTgt = evaluateKlDivergence(**g, base, ev);
            QVERIFY(kTgt.ok());
            qInfo(
                "%s: %llu bytes, mean KLD %.6f; target size (%s) %llu bytes, mean KLD %.6f (predicted %.6f)",
                mix, static_cast<unsigned long long>(size), kStd->meanKld,
                tab == &*table ? "role weights" : "measured weights",
                static_cast<unsigned long long>(plan->fileBytes), kTgt->meanKld, plan->predictedLoss);
            QVERIFY2(kTgt->meanKld < kStd->meanKld, mix);
        }
    }
}

// The command line: usage errors, a dry run's plan, a written file within the bits per weight.
void TestTargetSize::cli() {
    const QString model = QStringLiteral(QZ_TEST_DATA "/models/bard-llama");
    const QString imat = QStringLiteral(QZ_TEST_DATA "/golden/bard-llama/imatrix/bard-llama-imatrix.gguf");
    auto args = [&](QStringList extra) {
        return QStringList{QStringLiteral("export"),        model,
                           QStringLiteral("--format"),      QStringLiteral("gguf"),
                           QStringLiteral("--sample-rows"), QStringLiteral("64"),
                           QStringLiteral("--quiet")} +
               extra;
    };
    QByteArray out, err;
    QCOMPARE(
        run(args({"--target-size", "2M", "--target-bpw", "4", "--imatrix", imat, "--dry-run"}), &out, &err),
        2);
    QCOMPARE(run(args({"--target-size", "2M", "--dry-run"}), &out, &err), 2); // no imatrix, no text
    QCOMPARE(run(args({"--target-size", "2X", "--imatrix", imat, "--dry-run"}), &out, &err), 2);
    QVERIFY(err.contains("cannot read '2X'"));
    QCOMPARE(run(args({"--target-size", "100K", "--imatrix", imat, "--dry-run"}), &out, &err), 1);
    QVERIFY2(err.contains("too small"), err.constData());

    QCOMPARE(run(args({"--target-size", "2M", "--imatrix", imat, "--dry-run"}), &out, &err), 0);
    QVERIFY2(out.contains("blk.3.ffn_down.weight"), out.constData());
    QVERIFY(out.contains("standard mixes on the same prediction"));
    QVERIFY(out.contains("Q4_K_M"));
    const QRegularExpression total(QStringLiteral("target 2M: (\\d+) bytes"));
    auto mt = total.match(QString::fromUtf8(out));
    QVERIFY2(mt.hasMatch(), out.constData());
    QVERIFY(mt.captured(1).toULongLong() <= 2000000ull);

    QTemporaryDir dir;
    const QString file = dir.filePath(QStringLiteral("t.gguf"));
    QCOMPARE(run(args({"--target-bpw", "4.5", "--imatrix", imat, "-o", file}), &out, &err), 0);
    auto g = openModel(file.toStdString());
    QVERIFY(g.ok());
    uint64_t bytes = 0, params = 0;
    for (const auto& t : (*g)->tensors)
        bytes += t.nbytes, params += t.numel();
    QVERIFY2(8.0 * double(bytes) / double(params) <= 4.5,
             qPrintable(QString::number(8.0 * double(bytes) / double(params))));
    QVERIFY(8.0 * double(bytes) / double(params) > 4.4);
}

QTEST_GUILESS_MAIN(TestTargetSize)
#include "test_target_size.moc"
