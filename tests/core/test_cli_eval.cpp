// quantzoo-cli perplexity / generate / imatrix as a script sees them: exit codes, llama-perplexity's
// summary line, and figures against llama.cpp's goldens (tests/data/golden/bard-llama/ppl.tsv:
// llama-perplexity -c 128 --chunks 32 on shakespeare-valid.txt: F32 8.2872 +/- 0.35352;
// Q8_0 (llama-quantize, byte-identical to our export) vs F32: PPL 8.2889, mean KLD 0.000139, same top
// 99.454 % - measured with activations rounded to Q8_0, see klDivergenceOfQ8_0).
#include <QtTest>

#include <QProcess>
#include <QRegularExpression>
#include <QTemporaryDir>

#include "ggml/imatrix.h"
#include "time_scale.h"

class TestCliEval : public QObject {
    Q_OBJECT
private slots:
    void perplexityMatchesLlamaPerplexity();
    void klDivergenceOfQ8_0();
    void generateIsDeterministic();
    void imatrixWritesGguf();
    void exitCodes();

private:
    static QString cli() { return QStringLiteral(QZ_BINARY_DIR "/app/quantzoo-cli"); }
    static QString data(const char* rel) { return QStringLiteral(QZ_TEST_DATA "/") + QString::fromUtf8(rel); }
    static int run(const QStringList& args, QByteArray* out = nullptr, QByteArray* err = nullptr) {
        QProcess p;
        p.start(cli(), args);
        if (!p.waitForFinished(scaledMs(600000))) return -1;
        if (out) *out = p.readAllStandardOutput();
        if (err) *err = p.readAllStandardError();
        return p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2;
    }
    static double grab(const QByteArray& text, const QString& pattern) {
        const auto m = QRegularExpression(pattern).match(QString::fromUtf8(text));
        return m.hasMatch() ? m.captured(1).toDouble() : std::nan("");
    }
};

void TestCliEval::perplexityMatchesLlamaPerplexity() {
    QByteArray out, err;
    QCOMPARE(run({"perplexity", data("models/bard-llama"), "-f", data("text/shakespeare-valid.txt"), "-c", "128",
                  "--chunks", "32"},
                 &out, &err),
             0);
    QVERIFY2(out.contains("Final estimate: PPL = 8.2872 +/- 0.3535"), out.constData());
    QVERIFY(out.contains("[1]"));
    QVERIFY(out.contains("[32]"));
    QVERIFY2(err.contains("[100%]"), err.constData());
}

void TestCliEval::klDivergenceOfQ8_0() {
    QTemporaryDir dir;
    const QString base = dir.filePath("base.kld"), q8 = dir.filePath("q8.gguf");
    QByteArray out, err;
    QCOMPARE(run({"perplexity", data("models/bard-llama"), "-f", data("text/shakespeare-valid.txt"), "-c", "128",
                  "--chunks", "32", "--kl-divergence-base", base, "--quiet"},
                 &out, &err),
             0);
    QVERIFY(QFileInfo(base).size() > 0);
    QCOMPARE(run({"export", data("models/bard-llama"), "--format", "gguf", "--type", "Q8_0", "-o", q8}, &out, &err), 0);
    QCOMPARE(run({"perplexity", q8, "--kl-divergence-base", base, "--kl-divergence", "--quiet"}, &out, &err), 0);
    const double kld = grab(out, QStringLiteral("Mean\\s+KLD:\\s+([0-9.eE+-]+)"));
    const double same = grab(out, QStringLiteral("Same top p:\\s+([0-9.]+)"));
    const double pplQ = grab(out, QStringLiteral("Mean PPL\\(Q\\)\\s+:\\s+([0-9.]+)"));
    const double rmsDp = grab(out, QStringLiteral("RMS \u0394p\\s+:\\s+([0-9.]+)"));
    QVERIFY2(std::isfinite(kld) && std::isfinite(same) && std::isfinite(pplQ) && std::isfinite(rmsDp), out.constData());
    // A GGUF file's Q8_0 weights take activations rounded to Q8_0 as llama.cpp's CPU backend does, so the
    // figures land on llama-perplexity's for its own Q8_0 file of the same weights (ppl.tsv: PPL 8.2889,
    // KLD 0.000139, same top 99.454 %, RMS dp 0.316 %), up to the order of float additions and llama.cpp's
    // 16-bit stored base log-probabilities.
    QVERIFY2(std::fabs(pplQ / 8.2889 - 1) < 1e-4, out.constData());
    QVERIFY2(std::fabs(kld / 0.000139 - 1) < 0.05, out.constData());
    QVERIFY2(std::fabs(same - 99.454) < 0.2, out.constData());
    QVERIFY2(std::fabs(rmsDp - 0.316) < 0.01, out.constData());
    // --f32-activations: the weights multiplied in F32 (no activation rounding), far closer to the base.
    QCOMPARE(run({"perplexity", q8, "--kl-divergence-base", base, "--kl-divergence", "--quiet", "--f32-activations"},
                 &out, &err),
             0);
    const double kldF32 = grab(out, QStringLiteral("Mean\\s+KLD:\\s+([0-9.eE+-]+)"));
    QVERIFY2(kldF32 > 0 && kldF32 < 0.5 * kld, out.constData());
}

void TestCliEval::generateIsDeterministic() {
    const QStringList a{"generate", data("models/stories260K/stories260K.gguf"), "-p", "Once upon a time", "-n", "20",
                        "--seed", "7", "--top-k", "40", "--no-eos"};
    QByteArray out1, out2, out3, err;
    QCOMPARE(run(a, &out1, &err), 0);
    QVERIFY(out1.startsWith("Once upon a time"));
    QVERIFY(out1.size() > QByteArray("Once upon a time").size() + 10);
    QVERIFY2(err.contains("20 generated"), err.constData());
    QCOMPARE(run(a, &out2), 0);
    QCOMPARE(out2, out1);
    QCOMPARE(run({"generate", data("models/bard-gpt2"), "--preset", "notebook", "--no-eos"}, &out3, &err), 0);
    QVERIFY(out3.startsWith("I have a dream"));
    const double prompt = grab(err, QStringLiteral("(\\d+) prompt tokens")), made = grab(err, QStringLiteral("(\\d+) generated"));
    QVERIFY2(prompt > 0 && prompt + made == 50, err.constData());  // the notebook's 50 tokens in total
}

void TestCliEval::imatrixWritesGguf() {
    QTemporaryDir dir;
    const QString o = dir.filePath("im.gguf");
    QByteArray err;
    QCOMPARE(run({"imatrix", data("models/bard-llama"), "-f", data("text/shakespeare-train.txt"), "-o", o, "-c",
                  "128", "--chunks", "4"},
                 nullptr, &err),
             0);
    auto im = qz::ggml::loadImatrix(o.toStdString());
    QVERIFY2(im, im ? "" : im.error().message.c_str());
    QCOMPARE(im->chunkCount, int64_t(4));
    QCOMPARE(im->chunkSize, int64_t(128));
    QCOMPARE(im->values.size(), size_t(28));  // 4 blocks × 7 linear layers, as llama-imatrix's file
    QVERIFY(im->values.count("blk.3.ffn_down.weight"));
    QCOMPARE(im->values.at("blk.3.ffn_down.weight").size(), size_t(768));
    // The export takes it (llama-quantize's lookup rules).
    QCOMPARE(run({"export", data("models/bard-llama"), "--format", "gguf", "--type", "Q4_K_M", "--imatrix", o, "-o",
                  dir.filePath("q.gguf")},
                 nullptr, &err),
             0);
}

void TestCliEval::exitCodes() {
    QByteArray err;
    QCOMPARE(run({"perplexity", data("models/bard-llama")}, nullptr, &err), 2);  // no -f
    QVERIFY(err.contains("-f"));
    QCOMPARE(run({"perplexity", "/no/such/model", "-f", data("text/shakespeare-valid.txt")}, nullptr, &err), 1);
    QVERIFY(err.contains("/no/such/model"));
    QCOMPARE(run({"perplexity", data("models/bard-llama"), "-f", "/no/such.txt"}, nullptr, &err), 1);
    QCOMPARE(run({"perplexity", data("models/bard-llama"), "-f", data("text/shakespeare-valid.txt"), "--bos",
                  "--no-bos"},
                 nullptr, &err),
             2);
    QCOMPARE(run({"generate", data("models/bard-llama"), "--preset", "nope"}, nullptr, &err), 2);
    QCOMPARE(run({"generate", data("models/bard-llama")}, nullptr, &err), 2);  // no prompt
    QCOMPARE(run({"generate", data("models/bard-llama"), "-p", "x", "--top-p", "2"}, nullptr, &err), 2);
    QCOMPARE(run({"imatrix", data("models/bard-llama"), "-f", data("text/shakespeare-valid.txt")}, nullptr, &err), 2);
    // A text shorter than one chunk is a failure with a reason.
    QTemporaryDir dir;
    QCOMPARE(run({"imatrix", data("models/bard-llama"), "-f", data("text/shakespeare-valid.txt"), "-o",
                  dir.filePath("x.gguf"), "-c", "100000"},
                 nullptr, &err),
             1);
    QVERIFY(!QFileInfo::exists(dir.filePath("x.gguf")));
}

QTEST_GUILESS_MAIN(TestCliEval)
#include "test_cli_eval.moc"
