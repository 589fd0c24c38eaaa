// GGUF export against llama.cpp's own files (tests/data/golden): for every type, every tensor of our
// export has the golden's name, position, type, shape and bytes (sha256). Also: key/values that
// llama-quantize writes, the dry-run size, and that a cancel or a failure leaves no file behind.
#include <QtTest>

#include <QDir>
#include <QTemporaryDir>

#include "export/gguf_export.h"
#include "gguf/gguf_file.h"
#include "golden.h"
#include "model/model.h"
#include "sha256.h"

using namespace qz;

class TestGgufExport : public QObject {
    Q_OBJECT
private slots:
    void matchesLlamaCpp_data();
    void matchesLlamaCpp();
    void quantizeKeysAtTheEnd();
    void dryRunSizeIsTheFileSize();
    void cancelLeavesNothing();
    void failureLeavesNothing();
    void refusesToOverwriteInput();
    void streamsOneTensorAtATime();

private:
    QTemporaryDir m_dir;
};

namespace {
QString dataPath(const char* rel) { return QStringLiteral(QZ_TEST_DATA "/") + QString::fromUtf8(rel); }
GgufExportParams params(const std::string& out, const std::string& type) {
    GgufExportParams p;
    p.outputPath = out;
    p.type = type;
    return p;
}
}  // namespace

void TestGgufExport::matchesLlamaCpp_data() {
    QTest::addColumn<QString>("model");     // under tests/data/models
    QTest::addColumn<QString>("type");
    QTest::addColumn<QString>("goldenTsv");  // under tests/data/golden
    QTest::addColumn<QString>("goldenFile");
    QTest::addColumn<QString>("imatrix");
    for (const char* t : {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_S", "Q3_K_M",
                          "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K"})
        QTest::addRow("bard-llama-%s", t) << "bard-llama" << t << "bard-llama/tensors.tsv"
                                          << QStringLiteral("bard-llama-%1.gguf").arg(QLatin1String(t)) << "";
    for (const char* t : {"Q4_K_M", "Q3_K_S"})
        QTest::addRow("bard-llama-%s-imatrix", t)
            << "bard-llama" << t << "bard-llama/tensors.tsv"
            << QStringLiteral("bard-llama-%1-imat.gguf").arg(QLatin1String(t)) << "bard-llama/imatrix/bard-llama-imatrix.gguf";
    for (const char* t : {"F32", "F16", "BF16", "Q8_0", "Q5_0", "Q6_K", "Q4_K_M"})
        QTest::addRow("bard-gpt2-%s", t) << "bard-gpt2" << t << "bard-gpt2/tensors.tsv"
                                         << QStringLiteral("bard-gpt2-%1.gguf").arg(QLatin1String(t)) << "";
    // llama-quantize's path from a GGUF input (every row is 64 or 172 long: the fallbacks)
    for (const char* t : {"Q4_K_M", "Q2_K"})
        QTest::addRow("stories260K-%s", t) << "stories260K/stories260K.gguf" << t << "stories260K/tensors.tsv"
                                           << QStringLiteral("stories260K-%1.gguf").arg(QLatin1String(t)) << "";
}

void TestGgufExport::matchesLlamaCpp() {
    QFETCH(QString, model);
    QFETCH(QString, type);
    QFETCH(QString, goldenTsv);
    QFETCH(QString, goldenFile);
    QFETCH(QString, imatrix);
    const auto gold = golden::forFile(golden::load(QStringLiteral(QZ_TEST_DATA "/golden/") + goldenTsv),
                                      goldenFile.toStdString());
    QVERIFY2(!gold.empty(), qPrintable(QStringLiteral("no golden entries for ") + goldenFile));
    auto m = openModel((QStringLiteral(QZ_TEST_DATA "/models/") + model).toStdString());
    QVERIFY2(m.ok(), m.ok() ? "" : m.error().message.c_str());

    GgufExportParams p;
    p.type = type.toStdString();
    p.outputPath = m_dir.filePath(goldenFile).toStdString();
    if (!imatrix.isEmpty()) p.imatrixPath = (QStringLiteral(QZ_TEST_DATA "/golden/") + imatrix).toStdString();
    auto r = exportGguf(**m, p, {});
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());

    auto f = GgufFile::open(p.outputPath);
    QVERIFY2(f.ok(), f.ok() ? "" : f.error().message.c_str());
    QVERIFY((*f)->checkLlamaLayout().ok());
    QCOMPARE((*f)->tensors.size(), gold.size());
    for (const auto& g : gold) {
        const GgufTensor* t = (*f)->findTensor(g.tensor);
        QVERIFY2(t, g.tensor.c_str());
        if (g.idx >= 0) QCOMPARE(int(t - (*f)->tensors.data()), g.idx);  // same position in the file
        const std::string typeName(dtypeName(t->dtype));
        const bool typeOk = g.type == typeName || g.type == std::to_string(t->ggmlType);
        QVERIFY2(typeOk, (g.tensor + ": " + typeName + " but llama.cpp wrote " + g.type).c_str());
        std::string ne;
        for (size_t d = 0; d < t->ne.size(); ++d) ne += (d ? "x" : "") + std::to_string(t->ne[d]);
        QCOMPARE(ne, g.ne);
        const auto bytes = (*f)->tensorBytes(*t);
        QVERIFY2(qz::test::sha256Hex(bytes.data(), bytes.size()) == g.sha256,
                 (g.tensor + " (" + typeName + ") bytes differ from llama.cpp's").c_str());
    }
}

void TestGgufExport::quantizeKeysAtTheEnd() {
    auto m = openModel(QZ_TEST_DATA "/models/bard-llama");
    QVERIFY(m.ok());
    GgufExportParams p;
    p.type = "Q4_K_M";
    p.outputPath = m_dir.filePath(QStringLiteral("keys.gguf")).toStdString();
    p.imatrixPath = dataPath("golden/bard-llama/imatrix/bard-llama-imatrix.gguf").toStdString();
    QVERIFY(exportGguf(**m, p, {}).ok());
    auto f = GgufFile::open(p.outputPath);
    QVERIFY(f.ok());
    // What llama-quantize wrote into bard-llama-Q4_K_M-imat.gguf (read with a Python struct dump):
    // ... tokenizer keys, general.quantization_version 2, general.file_type 15, quantize.imatrix.file,
    // .dataset 'data/shakespeare-train.txt', .entries_count 28, .chunks_count 4869.
    const auto& kvs = (*f)->kvs;
    QVERIFY(kvs.size() >= 6);
    const size_t n = kvs.size();
    QCOMPARE(kvs[n - 6].key, std::string("general.quantization_version"));
    QCOMPARE(*kvs[n - 6].value.toUInt(), uint64_t(2));
    QCOMPARE(kvs[n - 5].key, std::string("general.file_type"));
    QCOMPARE(*kvs[n - 5].value.toUInt(), uint64_t(15));
    QCOMPARE(kvs[n - 4].value.str, std::string("bard-llama-imatrix.gguf"));
    QCOMPARE(kvs[n - 3].value.str, std::string("data/shakespeare-train.txt"));
    QCOMPARE(*kvs[n - 2].value.toUInt(), uint64_t(28));
    QCOMPARE(*kvs[n - 1].value.toUInt(), uint64_t(4869));
    QCOMPARE(*(*f)->getString("general.architecture"), std::string("llama"));
}

void TestGgufExport::dryRunSizeIsTheFileSize() {
    auto m = openModel(QZ_TEST_DATA "/models/bard-gpt2");
    QVERIFY(m.ok());
    for (const char* type : {"F16", "Q5_K_M"}) {
        GgufExportParams p;
        p.type = type;
        p.dryRun = true;
        auto plan = exportGguf(**m, p, {});
        QVERIFY(plan.ok());
        QVERIFY(!QFile::exists(m_dir.filePath(QStringLiteral("dry.gguf"))));
        p.dryRun = false;
        p.outputPath = m_dir.filePath(QStringLiteral("dry.gguf")).toStdString();
        auto real = exportGguf(**m, p, {});
        QVERIFY(real.ok());
        QCOMPARE(plan->fileBytes, uint64_t(QFileInfo(m_dir.filePath(QStringLiteral("dry.gguf"))).size()));
        QCOMPARE(plan->tensors.size(), real->tensors.size());
        QVERIFY(QFile::remove(m_dir.filePath(QStringLiteral("dry.gguf"))));
    }
}

void TestGgufExport::cancelLeavesNothing() {
    QTemporaryDir dir;
    auto m = openModel(QZ_TEST_DATA "/models/bard-llama");
    QVERIFY(m.ok());
    GgufExportParams p;
    p.type = "Q4_K_M";
    p.outputPath = dir.filePath(QStringLiteral("out.gguf")).toStdString();
    int calls = 0;
    auto r = exportGguf(**m, p, [&](const ProgressInfo&) { return ++calls < 10; });
    QVERIFY(!r.ok());
    QVERIFY(r.error().cancelled);
    QVERIFY(calls >= 10);
    QCOMPARE(QDir(dir.path()).entryList(QDir::Files | QDir::Hidden).size(), 0);  // no file, no temporary
}

void TestGgufExport::failureLeavesNothing() {
    QTemporaryDir dir;
    auto m = openModel(QZ_TEST_DATA "/models/bard-llama");
    QVERIFY(m.ok());
    GgufExportParams p;
    p.outputPath = dir.filePath(QStringLiteral("out.gguf")).toStdString();
    p.type = "Q7_X";
    auto r = exportGguf(**m, p, {});
    QVERIFY(!r.ok());
    QVERIFY(r.error().message.find("Q7_X") != std::string::npos);
    p.type = "Q4_K_M";
    p.imatrixPath = dataPath("text/shakespeare-valid.txt").toStdString();  // not an imatrix
    QVERIFY(!exportGguf(**m, p, {}).ok());
    QCOMPARE(QDir(dir.path()).entryList(QDir::Files | QDir::Hidden).size(), 0);
    // An existing file under the final name survives a failed export untouched.
    QFile keep(dir.filePath(QStringLiteral("out.gguf")));
    QVERIFY(keep.open(QIODevice::WriteOnly));
    keep.write("precious");
    keep.close();
    auto c = exportGguf(**m, params(p.outputPath, "Q8_0"), [](const ProgressInfo& i) { return i.fraction < 0.5; });
    QVERIFY(!c.ok());
    QVERIFY(keep.open(QIODevice::ReadOnly));
    QCOMPARE(keep.readAll(), QByteArray("precious"));
}

void TestGgufExport::refusesToOverwriteInput() {
    QTemporaryDir dir;
    const QString copy = dir.filePath(QStringLiteral("in.gguf"));
    QVERIFY(QFile::copy(dataPath("models/stories260K/stories260K.gguf"), copy));
    auto m = openModel(copy.toStdString());
    QVERIFY(m.ok());
    auto r = exportGguf(**m, params(copy.toStdString(), "Q8_0"), {});
    QVERIFY(!r.ok());
    QVERIFY(r.error().message.find("input") != std::string::npos);
}

// The progress callback sees the tensors one after the other, each once, in file order.
void TestGgufExport::streamsOneTensorAtATime() {
    auto m = openModel(QZ_TEST_DATA "/models/bard-llama");
    QVERIFY(m.ok());
    GgufExportParams p = params(m_dir.filePath(QStringLiteral("s.gguf")).toStdString(), "Q8_0");
    std::vector<std::string> logged;
    auto r = exportGguf(**m, p, {}, [&](const GgufTensorLog& t) { logged.push_back(t.name); });
    QVERIFY(r.ok());
    QCOMPARE(logged.size(), r->tensors.size());
    for (size_t i = 0; i < logged.size(); ++i) QCOMPARE(logged[i], r->tensors[i].name);
}

QTEST_GUILESS_MAIN(TestGgufExport)
#include "test_gguf_export.moc"
