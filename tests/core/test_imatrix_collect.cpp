// Importance-matrix collection (core/infer/imatrix_collect.h).
// Expected values: hand computation (synthetic observer calls), an independent computation of layer 0's
// attention input (RMSNorm of the token embeddings, done here from the raw tensors), and llama.cpp's own
// imatrix of bard-llama on shakespeare-train.txt with -c 128 (tests/data/golden/bard-llama/imatrix/
// bard-llama-imatrix.gguf: 4869 chunks) plus the perplexity of llama-quantize's Q4_K_M made with it
// (ppl.tsv: 8.3120, llama-perplexity -c 128 --chunks 32 on shakespeare-valid.txt).
// The full 4869-chunk run takes a few minutes of CPU (more on a loaded machine: ctest TIMEOUT 900 s).
// QZ_IMATRIX_CHUNKS=N runs fullRunMatchesLlamaImatrix on the first N chunks only (tests/sanitize.sh, where
// instrumented code is too slow for the full run): the same code path, checked against the same goldens
// with tolerances for a partial sample (the means of N chunks against llama-imatrix's means of all 4869).
#include <QtTest>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "export/gguf_export.h"
#include "ggml/imatrix.h"
#include "infer/evaluate.h"
#include "infer/imatrix_collect.h"
#include "infer/text_tokens.h"
#include "model/model.h"

using namespace qz;

namespace {
const std::string kData = QZ_TEST_DATA;
const std::string kLlama = kData + "/models/bard-llama";
const std::string kGolden = kData + "/golden/bard-llama/imatrix/bard-llama-imatrix.gguf";

std::string readText(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}
const TensorInfo* findTensor(const Model& m, const std::string& name) {
    for (const auto& t : m.tensors)
        if (t.name == name) return &t;
    return nullptr;
}
}  // namespace

class TestImatrixCollect : public QObject {
    Q_OBJECT
private slots:
    void handComputedAndFileRoundTrip();
    void layerZeroMatchesIndependentSums();
    void fullRunMatchesLlamaImatrix();
    void hessianObserver();
};

void TestImatrixCollect::handComputedAndFileRoundTrip() {
    auto m = openModel(kLlama);
    QVERIFY(m);
    auto c = ImatrixCollector::create(**m);
    QVERIFY(c);
    // Two calls on q_proj (HF name -> GGUF name), nIn = 3: x = [[1,2,3],[-1,0,2]] then [[2,2,2]].
    const float a[6] = {1, 2, 3, -1, 0, 2}, b[3] = {2, 2, 2};
    (*c)->add("model.layers.0.self_attn.q_proj.weight", a, 2, 3);
    (*c)->add("model.layers.0.self_attn.q_proj.weight", b, 1, 3);
    (*c)->add("lm_head.weight", a, 2, 3);  // skipped: the output layer (no --process-output)
    auto& d = (*c)->data();
    QCOMPARE(d.entries.size(), size_t(1));
    QVERIFY(d.entries.count("blk.0.attn_q.weight"));
    const auto& e = d.entries.at("blk.0.attn_q.weight");
    QCOMPARE(e.count, int64_t(3));
    QCOMPARE(e.sum2[0], 1.0 + 1 + 4);
    QCOMPARE(e.sum2[1], 4.0 + 0 + 4);
    QCOMPARE(e.sum2[2], 9.0 + 4 + 4);
    d.datasets = {"hand.txt"};
    d.chunkCount = 7;
    d.chunkSize = 3;
    QTemporaryDir dir;
    const std::string path = dir.filePath("i.gguf").toStdString();
    QVERIFY(writeImatrixGguf(d, path));
    auto back = ggml::loadImatrix(path);  // the independent reader (llama-quantize's rules)
    QVERIFY2(back, back ? "" : back.error().message.c_str());
    QCOMPARE(back->chunkCount, int64_t(7));
    QCOMPARE(back->chunkSize, int64_t(3));
    QCOMPARE(back->datasets, std::vector<std::string>{"hand.txt"});
    const auto& v = back->values.at("blk.0.attn_q.weight");
    QCOMPARE(v.size(), size_t(3));
    QCOMPARE(v[0], 6.0f / 3);
    QCOMPARE(v[1], 8.0f / 3);
    QCOMPARE(v[2], 17.0f / 3);
    // A width change is an error, not a crash.
    (*c)->add("model.layers.0.self_attn.q_proj.weight", a, 1, 6);
    QVERIFY(!(*c)->error().empty());
}

void TestImatrixCollect::layerZeroMatchesIndependentSums() {
    auto m = openModel(kLlama);
    QVERIFY(m);
    const std::string text = readText(kData + "/text/shakespeare-train.txt");
    ImatrixParams p;
    p.nCtx = 128;
    p.nChunks = 3;
    auto d = computeImatrix(**m, text, p);
    QVERIFY2(d, d ? "" : d.error().message.c_str());
    QCOMPARE(d->chunkCount, int64_t(3));
    QCOMPARE(d->chunkSize, int64_t(128));
    // Same 28 weights as llama-imatrix (4 blocks × 7 linear layers, no output.weight).
    auto golden = ggml::loadImatrix(kGolden);
    QVERIFY(golden);
    QCOMPARE(d->entries.size(), golden->values.size());
    for (const auto& [name, e] : d->entries) {
        QVERIFY2(golden->values.count(name), name.c_str());
        QCOMPARE(e.sum2.size(), golden->values.at(name).size());
        QCOMPARE(e.count, int64_t(3 * 128));
    }
    // Layer 0's q/k/v input is RMSNorm(embedding)·g: recompute it here from the raw tensors.
    auto in = tokenizeForPerplexity(**m, text);
    QVERIFY(in);
    QVERIFY(in->params.addBos);
    auto emb = readTensorF32(**m, *findTensor(**m, "model.embed_tokens.weight"));
    auto g = readTensorF32(**m, *findTensor(**m, "model.layers.0.input_layernorm.weight"));
    QVERIFY(emb && g);
    const int n = 256;
    std::vector<double> sum2(n, 0.0);
    for (int c = 0; c < 3; ++c)
        for (int t = 0; t < 128; ++t) {
            const int32_t tok = t == 0 ? in->params.bosId : in->tokens[size_t(c * 128 + t)];
            const float* x = emb->data() + size_t(tok) * n;
            double ms = 0;
            for (int j = 0; j < n; ++j) ms += double(x[j]) * x[j];
            const double r = 1.0 / std::sqrt(ms / n + 1e-5);
            for (int j = 0; j < n; ++j) {
                const double y = x[j] * r * (*g)[size_t(j)];
                sum2[size_t(j)] += y * y;
            }
        }
    for (const char* w : {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"}) {
        const auto& e = d->entries.at(w);
        for (int j = 0; j < n; ++j)
            QVERIFY2(std::fabs(e.sum2[size_t(j)] - sum2[size_t(j)]) <= 1e-4 * sum2[size_t(j)] + 1e-6,
                     qPrintable(QString("%1 col %2: %3 vs %4").arg(w).arg(j).arg(e.sum2[size_t(j)]).arg(sum2[size_t(j)])));
    }
}

void TestImatrixCollect::fullRunMatchesLlamaImatrix() {
    auto m = openModel(kLlama);
    QVERIFY(m);
    const int64_t kAll = 4869;
    const int reduced = qEnvironmentVariableIntValue("QZ_IMATRIX_CHUNKS");
    // At least 64 chunks: fewer leave the per-column means too far from the full ones for a useful check.
    const int64_t chunks = reduced > 0 ? std::clamp<int64_t>(reduced, 64, kAll) : kAll;
    // The full run matches llama-imatrix to 1 % per tensor and per column, and its Q4_K_M to 0.1 % of the one
    // made with llama-imatrix's file. A partial run's means are samples of the full ones: 64 chunks give
    // 9.4 % per column (worst tensor, blk.0.ffn_down, 24 %), 128 chunks 7.5 % (19 %); their Q4_K_M
    // perplexities are 0.04 % and 0.2 % from the one with llama-imatrix's file.
    const bool full = chunks == kAll;
    const double tensorTol = full ? 0.01 : 0.35, columnTol = full ? 0.01 : 0.15, pplTol = full ? 0.001 : 0.005;
    ImatrixParams p;
    p.nCtx = 128;
    p.nChunks = full ? -1 : int(chunks);
    p.datasetName = "data/shakespeare-train.txt";
    QElapsedTimer timer;
    timer.start();
    auto d = computeImatrix(**m, readText(kData + "/text/shakespeare-train.txt"), p);
    QVERIFY2(d, d ? "" : d.error().message.c_str());
    qInfo("imatrix (%lld of 4869 chunks of 128): %.1f s", (long long)chunks, timer.elapsed() / 1000.0);
    QCOMPARE(d->chunkCount, chunks);
    auto golden = ggml::loadImatrix(kGolden);
    QVERIFY(golden);
    QCOMPARE(golden->chunkCount, kAll);
    double relSum = 0, relMax = 0, worst = 0;
    int64_t cols = 0;
    for (const auto& [name, gv] : golden->values) {
        QVERIFY2(d->entries.count(name), name.c_str());
        QCOMPARE(d->entries.at(name).count, chunks * 128);
        const auto ours = d->importance(name);
        QCOMPARE(ours.size(), gv.size());
        double tensorRel = 0;
        for (size_t j = 0; j < gv.size(); ++j) {
            const double rel = std::fabs(double(ours[j]) - gv[j]) / std::max(1e-12, std::fabs(double(gv[j])));
            tensorRel += rel;
            relMax = std::max(relMax, rel);
        }
        relSum += tensorRel;
        cols += int64_t(gv.size());
        worst = std::max(worst, tensorRel / gv.size());
        QVERIFY2(tensorRel / gv.size() < tensorTol, qPrintable(QString("%1: mean relative difference %2")
                                                                   .arg(name.c_str())
                                                                   .arg(tensorRel / gv.size())));
    }
    qInfo("imatrix vs llama-imatrix: mean relative difference per column %.3g (worst tensor %.3g), max %.3g",
          relSum / cols, worst, relMax);
    QVERIFY(relSum / cols < columnTol);

    // Q4_K_M with our imatrix: perplexity within 0.5 % of llama-quantize's with its own imatrix (8.3120).
    QTemporaryDir dir;
    const std::string imat = dir.filePath("ours.imatrix.gguf").toStdString();
    QVERIFY(writeImatrixGguf(*d, imat));
    GgufExportParams ep;
    ep.outputPath = dir.filePath("q4km.gguf").toStdString();
    ep.type = "Q4_K_M";
    ep.imatrixPath = imat;
    auto ex = exportGguf(**m, ep, {});
    QVERIFY2(ex, ex ? "" : ex.error().message.c_str());
    auto q = openModel(ep.outputPath);
    QVERIFY(q);
    EvalParams pp;
    pp.nCtx = 128;
    pp.nChunks = 32;
    auto ppl = evaluatePerplexity(**q, readText(kData + "/text/shakespeare-valid.txt"), pp);
    QVERIFY2(ppl, ppl ? "" : ppl.error().message.c_str());
    qInfo("Q4_K_M with our imatrix: PPL %.4f (llama.cpp's imatrix Q4_K_M: 8.3120)", ppl->ppl);
    QVERIFY2(std::fabs(ppl->ppl / 8.3120 - 1) < 0.005, qPrintable(QString::number(ppl->ppl, 'f', 4)));
    // Tighter: the same export with llama-imatrix's file, evaluated the same way (our engine differs from
    // llama.cpp's by its F32 activations, ~0.08 % on this model; the imatrix difference should add far less).
    ep.outputPath = dir.filePath("q4km-golden-imatrix.gguf").toStdString();
    ep.imatrixPath = kGolden;
    auto ex2 = exportGguf(**m, ep, {});
    QVERIFY2(ex2, ex2 ? "" : ex2.error().message.c_str());
    auto q2 = openModel(ep.outputPath);
    QVERIFY(q2);
    auto ppl2 = evaluatePerplexity(**q2, readText(kData + "/text/shakespeare-valid.txt"), pp);
    QVERIFY(ppl2);
    qInfo("Q4_K_M with llama-imatrix's file, our engine: PPL %.4f", ppl2->ppl);
    QVERIFY2(std::fabs(ppl->ppl / ppl2->ppl - 1) < pplTol,
             qPrintable(QString("%1 vs %2").arg(ppl->ppl, 0, 'f', 4).arg(ppl2->ppl, 0, 'f', 4)));
}

void TestImatrixCollect::hessianObserver() {
    // x·xᵀ of two tokens [1,2] and [3,-1]: Σ = [[10,-1],[-1,5]]; H = 2/nSamples·Σ with one sample.
    HessianObserver h;
    h.track("w", 2);
    auto obs = h.observer();
    const float x[4] = {1, 2, 3, -1};
    obs("w", x, 2, 2);
    obs("other", x, 2, 2);  // untracked: ignored
    h.countSample();
    auto* acc = h.find("w");
    QVERIFY(acc);
    const auto H = acc->finish();
    QCOMPARE(H.size(), size_t(4));
    QCOMPARE(H[0], 20.0f);
    QCOMPARE(H[1], -2.0f);
    QCOMPARE(H[2], -2.0f);
    QCOMPARE(H[3], 10.0f);
    QVERIFY(h.find("other") == nullptr);
}

// The full run takes longer than QtTest's default 300 s per function on a loaded 2-core machine.
int main(int argc, char** argv) {
    if (!qEnvironmentVariableIsSet("QTEST_FUNCTION_TIMEOUT")) qputenv("QTEST_FUNCTION_TIMEOUT", "1800000");
    QCoreApplication app(argc, argv);
    TestImatrixCollect t;
    return QTest::qExec(&t, argc, argv);
}
#include "test_imatrix_collect.moc"
