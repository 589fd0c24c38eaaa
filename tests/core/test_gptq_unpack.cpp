// GPTQ exports of the test models checked by an independent unpacker written against AutoGPTQ's
// QuantLinear dequantization (tests/gptq/unpack_check.py, run with Debian's python3-numpy / python3-torch
// through tests/gptq/run_unpack_check.sh): 2/3/4/8 bits, group sizes -1/32/64/128, sym/asym, act-order,
// static groups, sharding, llama and gpt2 (Conv1D). The dequantized values must equal quantzoo's own
// (quantzoo-cli --dump-dequant) exactly. A missing python3-torch makes the test fail, not skip.
// Mixture of experts (moe): the tiny seeded qwen3moe and mixtral models of tests/core/tiny_archs.h through
// tests/gptq/run_moe_check.sh: every expert of every block quantized and the router not, AutoGPTQ's
// dequantization equal to ours, the export's report consistent (each calibration token routed to exactly
// top-k experts per block; fallback exactly for the expert layers below the token threshold, and counted),
// and, computed by tests/tools/ref_forward.py (numpy, transformers' semantics) through
// tests/gptq/moe_ppl_kld.py on the same 8 x 64 tokens of shakespeare-valid (positions 32..63 scored): the
// perplexity of the AutoGPTQ-dequantized model within 5 % of the original's, and its KL-divergence from the
// original below 0.9 x that of round-to-nearest on the same grid. On these random-weight models (perplexity
// ~700 .. 1400, nearly flat) 4-bit quantization moves the perplexity by a few percent either way (measured
// GPTQ +2.5 % / RTN +0.3 % on qwen3moe), so the perplexity bound only catches gross damage; the
// KL-divergence is the sensitive figure (measured 0.0186 against RTN's 0.0227 on qwen3moe).
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>
#include <QtTest>

#include <cmath>
#include <fstream>
#include <map>
#include <set>

#include "calib/windows.h"
#include "core/tiny_archs.h"
#include "model/model.h"

class TestGptqUnpack : public QObject {
    Q_OBJECT
private slots:
    void unpack_data();
    void unpack();
    void moe_data();
    void moe();
};

void TestGptqUnpack::unpack_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<int>("bits");
    QTest::addColumn<int>("gs");
    QTest::addColumn<int>("sym");
    QTest::addColumn<int>("desc");
    QTest::addColumn<QString>("extra");
    QTest::newRow("llama 2bit g32 asym act") << "bard-llama" << 2 << 32 << 0 << 1 << "";
    QTest::newRow("llama 3bit g64 sym act") << "bard-llama" << 3 << 64 << 1 << 1 << "";
    QTest::newRow("llama 4bit g32 sym act sharded") << "bard-llama" << 4 << 32 << 1 << 1 << "--shard-size=400000";
    QTest::newRow("llama 8bit g64 sym act static") << "bard-llama" << 8 << 64 << 1 << 1 << "--static-groups";
    QTest::newRow("llama 4bit g128 rtn") << "bard-llama" << 4 << 128 << 0 << 0 << "--rtn-only";
    QTest::newRow("gpt2 4bit g128 sym act") << "bard-gpt2" << 4 << 128 << 1 << 1 << "";
    QTest::newRow("gpt2 3bit g32 asym") << "bard-gpt2" << 3 << 32 << 0 << 0 << "";
    QTest::newRow("gpt2 2bit g64 sym") << "bard-gpt2" << 2 << 64 << 1 << 0 << "";
    QTest::newRow("gpt2 8bit g-1 asym act") << "bard-gpt2" << 8 << -1 << 0 << 1 << "";
}

void TestGptqUnpack::unpack() {
    QFETCH(QString, model);
    QFETCH(int, bits);
    QFETCH(int, gs);
    QFETCH(int, sym);
    QFETCH(int, desc);
    QFETCH(QString, extra);
    const QString src = QStringLiteral(QZ_TEST_DATA);
    const QString script = src + "/../gptq/run_unpack_check.sh";
    QTemporaryDir work;
    QStringList args{QStringLiteral(QZ_BINARY_DIR) + "/app/quantzoo-cli", src + "/models/" + model,
                     src + "/text/shakespeare-train.txt", work.path() + "/w", QString::number(bits),
                     QString::number(gs), QString::number(sym), QString::number(desc)};
    if (!extra.isEmpty()) args << extra;
    QProcess p;
    p.setProcessChannelMode(QProcess::MergedChannels);
    p.start(script, args);
    QVERIFY(p.waitForFinished(300000));
    const QString out = QString::fromUtf8(p.readAll());
    qInfo("%s", qPrintable(out.trimmed()));
    QVERIFY2(p.exitStatus() == QProcess::NormalExit && p.exitCode() == 0, qPrintable(out));
    QVERIFY(out.contains("AutoGPTQ dequantization equals QuantZoo's dump exactly"));
}

void TestGptqUnpack::moe_data() {
    QTest::addColumn<QString>("arch");
    QTest::addColumn<int>("minTokens");  // --expert-min-tokens, -1: the default (4 x the input columns)
    // 24 x 64 calibration tokens, top-2: qwen3moe's 4 experts get ~768 each, mixtral's 8 ~384 — under the
    // default threshold of 1024 (in = 256) all fall back; with 384 about half of mixtral's do.
    QTest::newRow("qwen3moe default threshold") << "qwen3moe" << -1;
    QTest::newRow("mixtral threshold 384") << "mixtral" << 384;
}

void TestGptqUnpack::moe() {
    QFETCH(QString, arch);
    QFETCH(int, minTokens);
    const std::string a = arch.toStdString();
    const QString src = QStringLiteral(QZ_TEST_DATA);
    QTemporaryDir work;
    const std::string modelDir = work.filePath("model").toStdString();
    QVERIFY(qztest::writeTinyModel(modelDir, a, QZ_TEST_DATA));
    // The perplexity chunks: the first 8 x 64 tokens of the validation text (the same for both models).
    {
        auto m = qz::openModel(modelDir);
        QVERIFY(m);
        auto toks = qz::calib::tokenizeTextFile(**m, (src + "/text/shakespeare-valid.txt").toStdString());
        QVERIFY(toks && toks->size() >= 8 * 64);
        std::ofstream f(work.filePath("chunks.json").toStdString());
        f << "{\"n_ctx\": 64, \"first\": 32, \"chunks\": [";
        for (int c = 0; c < 8; ++c) {
            f << (c ? ", [" : "[");
            for (int i = 0; i < 64; ++i) f << (i ? ", " : "") << (*toks)[static_cast<size_t>(c * 64 + i)];
            f << "]";
        }
        f << "]}\n";
    }
    QStringList args{QStringLiteral(QZ_BINARY_DIR) + "/app/quantzoo-cli", QString::fromStdString(modelDir),
                     src + "/text/shakespeare-train.txt", work.filePath("chunks.json"), work.filePath("w")};
    if (minTokens >= 0) args << "--expert-min-tokens" << QString::number(minTokens);
    QProcess p;
    p.setProcessChannelMode(QProcess::MergedChannels);
    p.start(src + "/../gptq/run_moe_check.sh", args);
    QVERIFY(p.waitForFinished(300000));
    const QString out = QString::fromUtf8(p.readAll());
    QVERIFY2(p.exitStatus() == QProcess::NormalExit && p.exitCode() == 0, qPrintable(out));
    QVERIFY2(out.contains("AutoGPTQ dequantization equals QuantZoo's dump exactly"), qPrintable(out));
    auto line = [&](const QString& tag) {
        for (const QString& l : out.split('\n'))
            if (l.startsWith(tag + " ")) return QJsonDocument::fromJson(l.mid(tag.size() + 1).toUtf8()).object();
        return QJsonObject();
    };
    const QJsonObject rep = line("REPORT"), ev = line("EVAL");
    QVERIFY2(!rep.isEmpty() && !ev.isEmpty(), qPrintable(out));

    // The report: every expert layer with its routed tokens; each block's tokens sum to top-k x calibration.
    const qztest::TinyDims td = qztest::tinyDims(a);
    const int64_t calibTokens = 24 * 64;
    std::map<int, int64_t> routed;           // block -> Σ tokens over its experts' first layers
    std::set<std::pair<int, int>> fellBack;  // (block, expert)
    int expertLayers = 0, fallbackLayers = 0;
    for (const auto& v : rep["layer_reports"].toArray()) {
        const QJsonObject l = v.toObject();
        if (!l.contains("expert")) continue;
        ++expertLayers;
        const QString name = l["name"].toString();
        const int64_t tokens = l["tokens"].toInteger();
        const int64_t threshold = minTokens >= 0 ? minTokens : 4 * l["in"].toInteger();
        QCOMPARE(l["fallback"].toBool(), tokens < threshold);
        if (l["fallback"].toBool()) {
            ++fallbackLayers;
            fellBack.insert({l["block"].toInt(), l["expert"].toInt()});
        }
        if (name.endsWith(".gate_proj.weight") || name.endsWith(".w1.weight")) routed[l["block"].toInt()] += tokens;
    }
    QCOMPARE(expertLayers, static_cast<int>(3 * td.experts * td.layers));
    QCOMPARE(rep["experts"].toInt(), static_cast<int>(td.experts * td.layers));
    QCOMPARE(rep["expert_layers_fallback"].toInt(), fallbackLayers);
    QCOMPARE(rep["experts_fallback"].toInt(), static_cast<int>(fellBack.size()));
    QCOMPARE(static_cast<int64_t>(routed.size()), td.layers);
    for (const auto& [b, n] : routed) QCOMPARE(n, td.expertsUsed * calibTokens);
    if (minTokens < 0) QCOMPARE(static_cast<int64_t>(fellBack.size()), td.experts * td.layers);
    else QVERIFY2(!fellBack.empty() && static_cast<int64_t>(fellBack.size()) < td.experts * td.layers, qPrintable(out));

    const double p0 = ev["original"].toObject()["ppl"].toDouble();
    const double p1 = ev["deq-gptq"].toObject()["ppl"].toDouble(), k1 = ev["deq-gptq"].toObject()["kld"].toDouble();
    const double p2 = ev["deq-rtn"].toObject()["ppl"].toDouble(), k2 = ev["deq-rtn"].toObject()["kld"].toDouble();
    qInfo("%s: perplexity original %.4f, GPTQ %.4f (%+.3f %%), RTN %.4f (%+.3f %%); KLD GPTQ %.6f, RTN %.6f; "
          "experts fallen back %d of %lld",
          a.c_str(), p0, p1, 100.0 * (p1 / p0 - 1.0), p2, 100.0 * (p2 / p0 - 1.0), k1, k2,
          rep["experts_fallback"].toInt(), static_cast<long long>(td.experts * td.layers));
    QVERIFY(std::isfinite(p0) && p0 > 1.0);
    QVERIFY2(std::abs(p1 / p0 - 1.0) < 0.05, qPrintable(QString("ppl %1 vs %2").arg(p1).arg(p0)));
    QVERIFY2(k1 > 0 && k1 < 0.9 * k2, qPrintable(QString("KLD gptq %1 rtn %2").arg(k1).arg(k2)));
}

QTEST_GUILESS_MAIN(TestGptqUnpack)
#include "test_gptq_unpack.moc"
