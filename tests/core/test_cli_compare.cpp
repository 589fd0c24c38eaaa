// quantzoo-cli compare as a script sees it: llama.cpp's own Q4_K_M file of stories260K measured against
// the HF original reproduces llama.cpp's perplexity for that file (tests/data/golden/stories260K/ppl.tsv,
// llama-perplexity -c 128 --chunks 32 on shakespeare-valid.txt); the same weights as an F32 GGUF have no
// KL-divergence; the CSV, the project file and the SVG plot are written; an EXL2 folder written by
// `quantzoo-cli export --format exl2` is measured as a variant (kind exl2, size of its q_* tensors,
// perplexity near the original's); usage errors exit 2.
#include <QtTest>

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>

#include "time_scale.h"

class TestCliCompare : public QObject {
    Q_OBJECT
  private slots:
    void compareWritesTablesAndPlot();
    void compareExl2Folder();
    void usageErrors();

  private:
    static QString cli() { return QStringLiteral(QZ_BINARY_DIR "/app/quantzoo-cli"); }
    static QString data(const char* p) { return QStringLiteral(QZ_TEST_DATA "/") + QString::fromUtf8(p); }
    static int run(const QStringList& args, QByteArray* out = nullptr, QByteArray* err = nullptr) {
        QProcess p;
        p.start(cli(), args);
        if (!p.waitForFinished(scaledMs(300000))) return -1;
        if (out) *out = p.readAllStandardOutput();
        if (err) *err = p.readAllStandardError();
        return p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2;
    }
    static double golden(const QString& file) { // llama.cpp's PPL from ppl.tsv
        QFile f(data("golden/stories260K/ppl.tsv"));
        if (!f.open(QIODevice::ReadOnly)) return -1;
        for (const QByteArray& line : f.readAll().split('\n')) {
            const QList<QByteArray> cols = line.split('\t');
            if (cols.size() == 2 && QString::fromUtf8(cols[0]) == file) return cols[1].toDouble();
        }
        return -1;
    }
};

void TestCliCompare::compareWritesTablesAndPlot() {
    QTemporaryDir dir;
    const QString csv = dir.filePath(QStringLiteral("t.csv")),
                  report = dir.filePath(QStringLiteral("r.json")),
                  plot = dir.filePath(QStringLiteral("p.svg"));
    QByteArray out, err;
    const int rc = run(
        {QStringLiteral("compare"), data("models/stories260K/hf"),
         data("golden/stories260K/stories260K-Q4_K_M.gguf"), data("models/stories260K/stories260K.gguf"),
         QStringLiteral("absmax:4:row"), QStringLiteral("-f"), data("text/shakespeare-valid.txt"),
         QStringLiteral("-c"), QStringLiteral("128"), QStringLiteral("--chunks"), QStringLiteral("32"),
         QStringLiteral("--csv"), csv, QStringLiteral("--report"), report, QStringLiteral("--plot"), plot},
        &out, &err);
    QVERIFY2(rc == 0, err.constData());
    QVERIFY(out.contains("stories260K-Q4_K_M.gguf"));

    QFile f(report);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const QJsonObject j = QJsonDocument::fromJson(f.readAll()).object();
    QCOMPARE(j[QStringLiteral("format")].toString(), QStringLiteral("quantzoo-compare"));
    QCOMPARE(j[QStringLiteral("nCtx")].toInt(), 128);
    const QJsonArray vs = j[QStringLiteral("variants")].toArray();
    QCOMPARE(vs.size(), 3);
    // llama.cpp's own file: its perplexity as llama-perplexity printed it (within the spread of
    // llama.cpp's own CPU paths on K-quants, tests/llama/README.md).
    const QJsonObject q4 = vs[0].toObject();
    QCOMPARE(q4[QStringLiteral("label")].toString(), QStringLiteral("Q4_K_M"));
    QCOMPARE(q4[QStringLiteral("kind")].toString(), QStringLiteral("gguf"));
    const double want = golden(QStringLiteral("stories260K-Q4_K_M.gguf"));
    QVERIFY(want > 0);
    const double ppl = q4[QStringLiteral("eval")].toObject()[QStringLiteral("ppl")].toDouble();
    QVERIFY2(std::fabs(ppl - want) <= 2e-3 * want,
             qPrintable(QStringLiteral("%1 vs llama.cpp %2").arg(ppl).arg(want)));
    QCOMPARE(QFileInfo(q4[QStringLiteral("path")].toString()).fileName(),
             QStringLiteral("stories260K-Q4_K_M.gguf"));
    QVERIFY(q4[QStringLiteral("bytes")].toDouble() > 0);
    QVERIFY(q4[QStringLiteral("bytes")].toDouble() <
            QFileInfo(data("golden/stories260K/stories260K-Q4_K_M.gguf")).size());
    // The same weights stored as F32 GGUF: the same distribution (only the uint16 log-prob storage differs).
    const QJsonObject same = vs[1].toObject()[QStringLiteral("eval")].toObject();
    QVERIFY(same[QStringLiteral("done")].toBool());
    QVERIFY2(same[QStringLiteral("meanKld")].toDouble() < 1e-4,
             qPrintable(QString::number(same[QStringLiteral("meanKld")].toDouble())));
    QVERIFY(same[QStringLiteral("sameTop")].toDouble() > 0.99);
    for (const auto& t : vs[1].toObject()[QStringLiteral("tensors")].toArray())
        QCOMPARE(t.toObject()[QStringLiteral("error")].toObject()[QStringLiteral("sumSqErr")].toDouble(),
                 0.0);
    // absmax 4-bit per row: clearly worse than Q4_K_M's k-quants.
    const QJsonObject a4 = vs[2].toObject()[QStringLiteral("eval")].toObject();
    QVERIFY(a4[QStringLiteral("meanKld")].toDouble() >
            q4[QStringLiteral("eval")].toObject()[QStringLiteral("meanKld")].toDouble());

    QFile c(csv);
    QVERIFY(c.open(QIODevice::ReadOnly));
    const QList<QByteArray> lines = c.readAll().trimmed().split('\n');
    QCOMPARE(lines.size(), 5); // header, original, 3 variants
    QVERIFY(lines[0].startsWith("name,kind,label,bytes,bits_per_weight"));
    QVERIFY(lines[1].startsWith("original,original,"));
    QVERIFY(lines[2].startsWith("stories260K-Q4_K_M.gguf,gguf,Q4_K_M,"));

    QFile s(plot);
    QVERIFY(s.open(QIODevice::ReadOnly));
    const QByteArray svg = s.readAll();
    QVERIFY(svg.startsWith("<?xml"));
    QCOMPARE(svg.count("<circle class=\"variant\""), 3);
    QVERIFY(svg.contains(">Q4_K_M</text>")); // the standard mix labelled by its name
    QVERIFY(svg.contains("class=\"pareto\""));
}

void TestCliCompare::compareExl2Folder() {
    QTemporaryDir dir;
    const QString out = dir.filePath(QStringLiteral("bard-exl2")),
                  report = dir.filePath(QStringLiteral("r.json"));
    const QString model = data("models/bard-llama");
    QByteArray o, err;
    QCOMPARE(run({QStringLiteral("export"),
                  model,
                  QStringLiteral("--format"),
                  QStringLiteral("exl2"),
                  QStringLiteral("--bpw"),
                  QStringLiteral("5.0"),
                  QStringLiteral("--calib"),
                  data("text/shakespeare-train.txt"),
                  QStringLiteral("--measure-rows"),
                  QStringLiteral("4"),
                  QStringLiteral("--measure-len"),
                  QStringLiteral("128"),
                  QStringLiteral("--rows"),
                  QStringLiteral("8"),
                  QStringLiteral("--len"),
                  QStringLiteral("128"),
                  QStringLiteral("--anneal-iterations"),
                  QStringLiteral("10"),
                  QStringLiteral("-o"),
                  out},
                 nullptr, &err),
             0);
    const int rc = run({QStringLiteral("compare"), model, out, QStringLiteral("-f"),
                        data("text/shakespeare-valid.txt"), QStringLiteral("-c"), QStringLiteral("128"),
                        QStringLiteral("--chunks"), QStringLiteral("8"), QStringLiteral("--report"), report},
                       &o, &err);
    QVERIFY2(rc == 0, err.constData());
    QFile f(report);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const QJsonObject j = QJsonDocument::fromJson(f.readAll()).object();
    const QJsonObject v = j[QStringLiteral("variants")].toArray()[0].toObject();
    QCOMPARE(v[QStringLiteral("kind")].toString(), QStringLiteral("exl2"));
    QCOMPARE(v[QStringLiteral("label")].toString(), QStringLiteral("EXL2 5.00 bpw h6"));
    QCOMPARE(v[QStringLiteral("tensors")].toArray().size(), 29); // 4 layers × 7 linears + lm_head
    // The size: the q_* tensors of the quantized linears plus the original's other tensors; below 6 bits
    // per weight over the whole model (5.0 in the decoder, 6 in the head, the embedding at the original's).
    const double bpw = v[QStringLiteral("bitsPerWeight")].toDouble();
    QVERIFY2(bpw > 5.0 && bpw < 10.0, qPrintable(QString::number(bpw)));
    const QJsonObject e = v[QStringLiteral("eval")].toObject();
    QVERIFY2(e[QStringLiteral("done")].toBool(), qPrintable(e[QStringLiteral("error")].toString()));
    const double ppl = e[QStringLiteral("ppl")].toDouble(),
                 base = j[QStringLiteral("originalEval")].toObject()[QStringLiteral("ppl")].toDouble();
    qInfo("EXL2 5.0 bpw: PPL %.4f, original %.4f, mean KLD %.5f", ppl, base,
          e[QStringLiteral("meanKld")].toDouble());
    QVERIFY(base > 1 && std::fabs(ppl / base - 1) < 0.03);
    QVERIFY(e[QStringLiteral("meanKld")].toDouble() > 0);
}

void TestCliCompare::usageErrors() {
    const QString m = data("models/stories260K/hf"), text = data("text/shakespeare-valid.txt");
    QByteArray err;
    QCOMPARE(run({QStringLiteral("compare"), m, QStringLiteral("nf4")}, nullptr, &err), 2);      // no -f
    QCOMPARE(run({QStringLiteral("compare"), m, QStringLiteral("-f"), text}, nullptr, &err), 2); // no variant
    QCOMPARE(run({QStringLiteral("compare"), m, QStringLiteral("absmax:12"), QStringLiteral("-f"), text},
                 nullptr, &err),
             2);
    QVERIFY(err.contains("absmax:12"));
    QCOMPARE(run({QStringLiteral("compare"), m, QStringLiteral("nf4"), QStringLiteral("-f"), text,
                  QStringLiteral("--plot"), QStringLiteral("x.png")},
                 nullptr, &err),
             2);
    QVERIFY(err.contains("SVG"));
    QCOMPARE(run({QStringLiteral("compare"), m, QStringLiteral("llm-int8"), QStringLiteral("-f"), text},
                 nullptr, &err),
             2);
    // A GGUF of another model: refused with the file named, exit 1.
    QCOMPARE(run({QStringLiteral("compare"), data("models/bard-llama"),
                  data("golden/stories260K/stories260K-Q2_K.gguf"), QStringLiteral("-f"), text,
                  QStringLiteral("--quiet")},
                 nullptr, &err),
             1);
    QVERIFY(err.contains("stories260K-Q2_K.gguf"));
}

QTEST_GUILESS_MAIN(TestCliCompare)
#include "test_cli_compare.moc"
