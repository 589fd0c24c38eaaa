// GPTQ exports of the test models checked by an independent unpacker written against AutoGPTQ's
// QuantLinear dequantization (tests/gptq/unpack_check.py, run with Debian's python3-numpy / python3-torch
// through tests/gptq/run_unpack_check.sh): 2/3/4/8 bits, group sizes -1/32/64/128, sym/asym, act-order,
// static groups, sharding, llama and gpt2 (Conv1D). The dequantized values must equal quantzoo's own
// (quantzoo-cli --dump-dequant) exactly. A missing python3-torch makes the test fail, not skip.
#include <QtTest>

#include "time_scale.h"

class TestGptqUnpack : public QObject {
    Q_OBJECT
private slots:
    void unpack_data();
    void unpack();
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
    QVERIFY(p.waitForFinished(scaledMs(300000)));
    const QString out = QString::fromUtf8(p.readAll());
    qInfo("%s", qPrintable(out.trimmed()));
    QVERIFY2(p.exitStatus() == QProcess::NormalExit && p.exitCode() == 0, qPrintable(out));
    QVERIFY(out.contains("AutoGPTQ dequantization equals QuantZoo's dump exactly"));
}

QTEST_GUILESS_MAIN(TestGptqUnpack)
#include "test_gptq_unpack.moc"
