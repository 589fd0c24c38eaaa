// quantzoo-cli as a script sees it: exit codes, the progress line, and a JSON report that names every
// quantized tensor as the model file names it.
#include <QtTest>

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>

#include "time_scale.h"

class TestCli : public QObject {
    Q_OBJECT
private slots:
    void quantizeWritesReport();
    void infoListsTensors();
    void exitCodes();

private:
    static QString cli() { return QStringLiteral(QZ_BINARY_DIR "/app/quantzoo-cli"); }
    static QString demo() { return QStringLiteral(QZ_RESOURCES_DIR "/demo/stories260K"); }
    static int run(const QStringList& args, QByteArray* out = nullptr, QByteArray* err = nullptr) {
        QProcess p;
        p.start(cli(), args);
        if (!p.waitForFinished(scaledMs(120000))) return -1;
        if (out) *out = p.readAllStandardOutput();
        if (err) *err = p.readAllStandardError();
        return p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2;
    }
};

void TestCli::quantizeWritesReport() {
    QTemporaryDir dir;
    const QString report = dir.filePath(QStringLiteral("r.json"));
    QByteArray err;
    QCOMPARE(run({QStringLiteral("quantize"), demo(), QStringLiteral("--method"), QStringLiteral("zeropoint"),
                  QStringLiteral("--bits"), QStringLiteral("4"), QStringLiteral("--granularity"), QStringLiteral("group"),
                  QStringLiteral("--group-size"), QStringLiteral("32"), QStringLiteral("--tensors"),
                  QStringLiteral("mlp"), QStringLiteral("--report"), report},
                 nullptr, &err),
             0);
    QVERIFY2(err.contains("[100%]"), err.constData());  // the progress line reached the end
    QFile f(report);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const QJsonObject j = QJsonDocument::fromJson(f.readAll()).object();
    QCOMPARE(j[QStringLiteral("method")].toObject()[QStringLiteral("bits")].toInt(), 4);
    const QJsonArray tensors = j[QStringLiteral("tensors")].toArray();
    // stories260K: 5 layers × (gate, up, down) match "mlp"
    QCOMPARE(tensors.size(), 15);
    for (const auto& t : tensors) {
        const QJsonObject o = t.toObject();
        QVERIFY(o[QStringLiteral("name")].toString().startsWith(QStringLiteral("model.layers.")));
        QVERIFY(o[QStringLiteral("name")].toString().contains(QStringLiteral(".mlp.")));
        const QJsonObject e = o[QStringLiteral("error")].toObject();
        QVERIFY(e[QStringLiteral("mse")].toDouble() > 0);
        QVERIFY(e[QStringLiteral("sqnr_db")].toDouble() > 10 && e[QStringLiteral("sqnr_db")].toDouble() < 40);
        QVERIFY(e[QStringLiteral("cosine_similarity")].toDouble() > 0.9);
    }
}

void TestCli::infoListsTensors() {
    QByteArray out;
    QCOMPARE(run({QStringLiteral("info"), demo(), QStringLiteral("--json")}, &out), 0);
    const QJsonObject j = QJsonDocument::fromJson(out).object();
    QCOMPARE(j[QStringLiteral("architecture")].toString(), QStringLiteral("llama"));
    // 5 layers × 9 tensors + embed_tokens + norm (tied embeddings: no lm_head)
    QCOMPARE(j[QStringLiteral("tensors")].toArray().size(), 47);
    QCOMPARE(j[QStringLiteral("parameters")].toInteger(), 260032);  // config: 512·64 + 5·(...) + 64
}

void TestCli::exitCodes() {
    QByteArray err;
    QCOMPARE(run({QStringLiteral("quantize"), demo(), QStringLiteral("--bits"), QStringLiteral("9")}, nullptr, &err), 2);
    QVERIFY(err.contains("bits"));
    QCOMPARE(run({QStringLiteral("quantize"), QStringLiteral("/no/such/model")}, nullptr, &err), 1);
    QVERIFY(err.contains("/no/such/model"));
    QCOMPARE(run({QStringLiteral("frobnicate")}), 2);
    QCOMPARE(run({QStringLiteral("quantize"), demo(), QStringLiteral("--tensors"), QStringLiteral("(")}, nullptr, &err), 1);
    QVERIFY(err.contains("regular expression"));
}

QTEST_GUILESS_MAIN(TestCli)
#include "test_cli.moc"
