// gguf-split output and input (core/gguf/README.md A.8) and --override-kv (A.9).
//  * A split export's parts, in order, hold exactly llama.cpp's tensors of the unsplit file (golden
//    name, order, type and sha256), each part a valid GGUF with split.no / split.count (UINT16) and
//    split.tensors.count (INT32), the model's key/values in the first part only.
//  * Parts by size: every part within the limit unless it is one tensor, and the next part's first tensor
//    would not have fitted (gguf-split's greedy rule); by tensors: the counts worked out by hand.
//  * A split model opened from its first part re-quantizes to llama.cpp's bytes; broken splits (missing
//    part, wrong split.no / split.count, duplicated tensor, wrong total, wrong name, the second part
//    opened) are refused with a message naming the file.
//  * A cancel or a failure leaves no part under its final name.
//  * --override-kv: llama-quantize's syntax and types, stricter validation, the keys' place in the file.
#include <QtTest>

#include <QDir>
#include <QProcess>
#include <QTemporaryDir>

#include "export/gguf_export.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "golden.h"
#include "model/model.h"
#include "sha256.h"
#include "time_scale.h"

using namespace qz;

class TestGgufSplit : public QObject {
    Q_OBJECT
private slots:
    void partsHoldLlamaCppTensors();
    void partsBySize();
    void splitInputRequantizesToLlamaCppBytes();
    void brokenSplitsAreRefused();
    void cancelAndFailureLeaveNoPart();
    void overrideKvParsing();
    void overrideKvInTheFile();
    void cliOptions();
};

namespace {
QString data(const char* rel) { return QStringLiteral(QZ_TEST_DATA "/") + QString::fromUtf8(rel); }

std::vector<golden::Entry> goldenQ4KM() {
    return golden::forFile(golden::load(data("golden/bard-llama/tensors.tsv")), "bard-llama-Q4_K_M.gguf");
}

// The split key of a part with its exact GGUF type.
std::pair<GgufType, uint64_t> splitKey(const GgufFile& f, const char* key) {
    const GgufValue* v = f.find(key);
    if (!v) return {GgufType::String, ~uint64_t(0)};
    return {v->type, v->toUInt().value_or(~uint64_t(0))};
}

// Opens every part and returns them in order; fails the test on a parse error.
std::vector<std::shared_ptr<const GgufFile>> openParts(const std::vector<std::string>& paths) {
    std::vector<std::shared_ptr<const GgufFile>> out;
    for (const auto& p : paths) {
        auto f = GgufFile::open(p);
        if (!f) {
            qWarning("%s", f.error().message.c_str());
            return {};
        }
        out.push_back(*f);
    }
    return out;
}

// A tiny GGUF part for the hostile-input cases: one F32 tensor of 8 values named `tensor`.
void writePart(const QString& path, const std::vector<GgufKV>& kvs, const std::string& tensor) {
    GgufWriter w(path.toStdString());
    for (const auto& kv : kvs) QVERIFY(w.setKv(kv.key, kv.value).ok());
    QVERIFY(w.addTensor(tensor, {8}, DType::F32).ok());
    QVERIFY(w.begin().ok());
    std::vector<uint8_t> bytes(32, 0);
    QVERIFY(w.writeTensorData(bytes).ok());
    QVERIFY(w.finish().ok());
}
std::vector<GgufKV> partKvs(bool first, uint64_t no, uint64_t count, int32_t total) {
    std::vector<GgufKV> kvs;
    if (first) kvs.push_back({"general.architecture", GgufValue::string("llama")});
    kvs.push_back({"split.no", GgufValue::u16(static_cast<uint16_t>(no))});
    kvs.push_back({"split.count", GgufValue::u16(static_cast<uint16_t>(count))});
    kvs.push_back({"split.tensors.count", GgufValue::i32(total)});
    return kvs;
}
}  // namespace

void TestGgufSplit::partsHoldLlamaCppTensors() {
    QTemporaryDir dir;
    auto m = openModel(data("models/bard-llama").toStdString());
    QVERIFY(m.ok());
    GgufExportParams p;
    p.type = "Q4_K_M";
    p.outputPath = dir.filePath(QStringLiteral("bl.gguf")).toStdString();
    p.splitMaxTensors = 10;
    auto r = exportGguf(**m, p, {});
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    // 39 tensors, 10 per part: 10 + 10 + 10 + 9.
    const std::vector<std::string> names{"bl-00001-of-00004.gguf", "bl-00002-of-00004.gguf", "bl-00003-of-00004.gguf",
                                         "bl-00004-of-00004.gguf"};
    QCOMPARE(r->paths.size(), names.size());
    for (size_t k = 0; k < names.size(); ++k) QCOMPARE(r->paths[k], dir.filePath(QString::fromStdString(names[k])).toStdString());
    QCOMPARE(r->path, r->paths[0]);
    QVERIFY(!QFile::exists(dir.filePath(QStringLiteral("bl.gguf"))));
    const auto parts = openParts(r->paths);
    QCOMPARE(parts.size(), size_t(4));
    const size_t expectedCounts[] = {10, 10, 10, 9};
    const auto gold = goldenQ4KM();
    QCOMPARE(gold.size(), size_t(39));
    size_t idx = 0;
    uint64_t totalSize = 0;
    for (size_t k = 0; k < parts.size(); ++k) {
        const GgufFile& f = *parts[k];
        totalSize += QFileInfo(QString::fromStdString(f.path)).size();
        QVERIFY(f.checkLlamaLayout().ok());
        QCOMPARE(f.tensors.size(), expectedCounts[k]);
        QCOMPARE(splitKey(f, "split.no"), std::make_pair(GgufType::U16, uint64_t(k)));
        QCOMPARE(splitKey(f, "split.count"), std::make_pair(GgufType::U16, uint64_t(4)));
        QCOMPARE(splitKey(f, "split.tensors.count"), std::make_pair(GgufType::I32, uint64_t(39)));
        // The model's key/values in the first part only, the split keys last.
        if (k == 0) {
            QCOMPARE(*f.getString("general.architecture"), std::string("llama"));
            QCOMPARE(*f.getUInt("general.file_type"), uint64_t(15));
            QCOMPARE(f.kvs[f.kvs.size() - 3].key, std::string("split.no"));
            QCOMPARE(f.kvs[f.kvs.size() - 1].key, std::string("split.tensors.count"));
        } else {
            QCOMPARE(f.kvs.size(), size_t(3));
        }
        for (const auto& t : f.tensors) {
            const auto& g = gold[idx];
            QCOMPARE(g.idx, int(idx));
            QCOMPARE(t.name, g.tensor);
            QCOMPARE(std::string(dtypeName(t.dtype)), g.type);
            const auto bytes = f.tensorBytes(t);
            QVERIFY2(qz::test::sha256Hex(bytes.data(), bytes.size()) == g.sha256, t.name.c_str());
            ++idx;
        }
    }
    QCOMPARE(idx, gold.size());
    QCOMPARE(r->fileBytes, totalSize);
    // The dry run plans the same parts and sizes.
    p.dryRun = true;
    auto plan = exportGguf(**m, p, {});
    QVERIFY(plan.ok());
    QCOMPARE(plan->paths, r->paths);
    QCOMPARE(plan->fileBytes, totalSize);
}

void TestGgufSplit::partsBySize() {
    QTemporaryDir dir;
    auto m = openModel(data("models/bard-llama").toStdString());
    QVERIFY(m.ok());
    GgufExportParams p;
    p.type = "F16";
    p.outputPath = dir.filePath(QStringLiteral("f16.gguf")).toStdString();
    auto size = parseGgufSplitSize("1M");
    QVERIFY(size.ok());
    QCOMPARE(*size, uint64_t(1000000));
    p.splitMaxBytes = *size;
    auto r = exportGguf(**m, p, {});
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    const auto parts = openParts(r->paths);
    QCOMPARE(parts.size(), r->paths.size());
    QVERIFY(parts.size() >= 3);  // 6.8 MB of F16 data
    auto padded = [](const GgufTensor& t) { return (t.nbytes + 31) / 32 * 32; };
    size_t total = 0;
    for (size_t k = 0; k < parts.size(); ++k) {
        const GgufFile& f = *parts[k];
        QVERIFY(!f.tensors.empty());
        uint64_t data = 0;
        for (const auto& t : f.tensors) data += padded(t);
        QVERIFY2(data <= 1000000 || f.tensors.size() == 1, qPrintable(QString::number(data)));
        if (k + 1 < parts.size()) QVERIFY(data + padded(parts[k + 1]->tensors.front()) > 1000000);
        QCOMPARE(splitKey(f, "split.count").second, uint64_t(parts.size()));
        total += f.tensors.size();
    }
    QCOMPARE(total, r->tensors.size());
    for (const char* bad : {"0M", "1K", "G", "-1G", "1.5G", "1000000000G", "12"}) QVERIFY2(!parseGgufSplitSize(bad).ok(), bad);
    QCOMPARE(*parseGgufSplitSize("2G"), uint64_t(2000000000));
}

// llama-quantize drops the split keys and writes one file: a split F32 model re-quantized to Q4_K_M gives
// the bytes llama.cpp wrote from the unsplit F32 file.
void TestGgufSplit::splitInputRequantizesToLlamaCppBytes() {
    QTemporaryDir dir;
    auto hf = openModel(data("models/bard-llama").toStdString());
    QVERIFY(hf.ok());
    GgufExportParams p;
    p.type = "F32";
    p.outputPath = dir.filePath(QStringLiteral("f32.gguf")).toStdString();
    p.splitMaxTensors = 7;
    auto r = exportGguf(**hf, p, {});
    QVERIFY(r.ok());
    QCOMPARE(r->paths.size(), size_t(6));  // 39 = 5 * 7 + 4
    auto m = openModel(r->paths[0]);
    QVERIFY2(m.ok(), m.ok() ? "" : m.error().message.c_str());
    QCOMPARE((*m)->tensors.size(), size_t(39));
    QCOMPARE((*m)->files.size(), size_t(6));
    GgufExportParams q;
    q.type = "Q4_K_M";
    q.outputPath = dir.filePath(QStringLiteral("q.gguf")).toStdString();
    auto out = exportGguf(**m, q, {});
    QVERIFY2(out.ok(), out.ok() ? "" : out.error().message.c_str());
    auto f = GgufFile::open(q.outputPath);
    QVERIFY(f.ok());
    QVERIFY(!(*f)->find("split.count") && !(*f)->find("split.no") && !(*f)->find("split.tensors.count"));
    const auto gold = goldenQ4KM();
    QCOMPARE((*f)->tensors.size(), gold.size());
    for (size_t i = 0; i < gold.size(); ++i) {
        const GgufTensor& t = (*f)->tensors[i];
        QCOMPARE(t.name, gold[i].tensor);
        const auto bytes = (*f)->tensorBytes(t);
        QVERIFY2(qz::test::sha256Hex(bytes.data(), bytes.size()) == gold[i].sha256, t.name.c_str());
    }
}

void TestGgufSplit::brokenSplitsAreRefused() {
    QTemporaryDir dir;
    const QString a = dir.filePath(QStringLiteral("m-00001-of-00002.gguf"));
    const QString b = dir.filePath(QStringLiteral("m-00002-of-00002.gguf"));
    auto expectError = [&](const QString& open, const char* needle, const char* what) {
        auto m = openModel(open.toStdString());
        QVERIFY2(!m.ok(), what);
        QVERIFY2(m.error().message.find(needle) != std::string::npos, (std::string(what) + ": " + m.error().message).c_str());
    };
    // A sound pair first.
    writePart(a, partKvs(true, 0, 2, 2), "a.weight");
    writePart(b, partKvs(false, 1, 2, 2), "b.weight");
    {
        auto m = openModel(a.toStdString());
        QVERIFY2(m.ok(), m.ok() ? "" : m.error().message.c_str());
        QCOMPARE((*m)->tensors.size(), size_t(2));
        QCOMPARE((*m)->tensors[1].name, std::string("b.weight"));
        QCOMPARE((*m)->tensors[1].fileIndex, uint32_t(1));
    }
    expectError(b, "m-00001-of-00002.gguf", "the second part opened");
    writePart(b, partKvs(false, 0, 2, 2), "b.weight");
    expectError(a, "split.no is 0, expected 1", "wrong split.no in part 2");
    writePart(b, partKvs(false, 1, 3, 2), "b.weight");
    expectError(a, "split.count is 3", "disagreeing split.count");
    writePart(b, partKvs(false, 1, 2, 2), "a.weight");
    expectError(a, "also in an earlier part", "duplicated tensor");
    writePart(b, partKvs(false, 1, 2, 2), "b.weight");
    writePart(a, partKvs(true, 0, 2, 5), "a.weight");
    expectError(a, "split.tensors.count says 5", "wrong total");
    QVERIFY(QFile::remove(b));
    writePart(a, partKvs(true, 0, 2, 2), "a.weight");
    expectError(a, "m-00002-of-00002.gguf", "missing part");
    // split.count of 0, beyond UINT16, or not an integer; a name that does not say which part it is.
    auto kvs = partKvs(true, 0, 2, 2);
    kvs[2].value = GgufValue::u32(0);
    writePart(a, kvs, "a.weight");
    expectError(a, "outside 1..65535", "split.count 0");
    kvs[2].value = GgufValue::u32(70000);
    writePart(a, kvs, "a.weight");
    expectError(a, "outside 1..65535", "split.count 70000");
    kvs[2].value = GgufValue::string("2");
    writePart(a, kvs, "a.weight");
    expectError(a, "split.count is not a non-negative integer", "split.count a string");
    const QString odd = dir.filePath(QStringLiteral("model.gguf"));
    writePart(odd, partKvs(true, 0, 2, 2), "a.weight");
    expectError(odd, "does not end in -00001-of-00002.gguf", "unsplit name");
    // split.count 1 is one ordinary file.
    writePart(odd, partKvs(true, 0, 1, 1), "a.weight");
    QVERIFY(openModel(odd.toStdString()).ok());
}

void TestGgufSplit::cancelAndFailureLeaveNoPart() {
    QTemporaryDir dir;
    auto m = openModel(data("models/bard-llama").toStdString());
    QVERIFY(m.ok());
    GgufExportParams p;
    p.type = "Q8_0";
    p.outputPath = dir.filePath(QStringLiteral("c.gguf")).toStdString();
    p.splitMaxTensors = 5;  // 8 parts
    auto nothingLeft = [&] { return QDir(dir.path()).entryList(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot); };
    // Cancelled at the last tensor: seven parts were complete, none appears.
    int logged = 0;
    auto c = exportGguf(**m, p, [&](const ProgressInfo&) { return logged < 38; },
                        [&](const GgufTensorLog&) { ++logged; });
    QVERIFY(!c.ok());
    QVERIFY(c.error().cancelled);
    QCOMPARE(logged, 38);
    QCOMPARE(nothingLeft(), QStringList());
    // A part that cannot be begun (a folder under its name): the earlier, complete parts vanish too.
    const QString blocker = dir.filePath(QStringLiteral("c-00003-of-00008.gguf"));
    QVERIFY(QDir().mkdir(blocker));
    auto f = exportGguf(**m, p, {});
    QVERIFY(!f.ok());
    QVERIFY2(f.error().message.find("c-00003-of-00008.gguf") != std::string::npos, f.error().message.c_str());
    QCOMPARE(nothingLeft(), QStringList{QStringLiteral("c-00003-of-00008.gguf")});
    QVERIFY(QDir().rmdir(blocker));
    // A rename that fails after the first parts were renamed: those are removed again. The folder appears
    // under part 5's name once every part is complete, so parts 1-4 are renamed before part 5 fails.
    const QString late = dir.filePath(QStringLiteral("c-00005-of-00008.gguf"));
    int n = 0;
    auto g = exportGguf(**m, p, {}, [&](const GgufTensorLog&) {
        if (++n == 39) {
            QDir().mkdir(late);
            QFile inside(late + QStringLiteral("/x"));
            if (inside.open(QIODevice::WriteOnly)) inside.write("x");
        }
    });
    QVERIFY(!g.ok());
    QCOMPARE(nothingLeft(), QStringList{QStringLiteral("c-00005-of-00008.gguf")});
    // And without obstacles all eight are there.
    QVERIFY(QDir(late).removeRecursively());
    auto ok = exportGguf(**m, p, {});
    QVERIFY(ok.ok());
    QCOMPARE(nothingLeft().size(), 8);
}

void TestGgufSplit::overrideKvParsing() {
    struct Good {
        const char* spec;
        GgufType type;
    };
    for (const Good& g : {Good{"a.b=int:42", GgufType::U32}, Good{"a.b=int:4294967295", GgufType::U32},
                          Good{"a.b=float:0.5", GgufType::F32}, Good{"a.b=bool:true", GgufType::Bool},
                          Good{"a.b=bool:false", GgufType::Bool}, Good{"a.b=str:", GgufType::String},
                          Good{"a.b=str:x=y:z", GgufType::String}}) {
        auto o = parseGgufKvOverride(g.spec);
        QVERIFY2(o.ok(), g.spec);
        QCOMPARE(o->key, std::string("a.b"));
        QCOMPARE(o->value.type, g.type);
    }
    QCOMPARE(*parseGgufKvOverride("k=int:42")->value.toUInt(), uint64_t(42));
    QCOMPARE(*parseGgufKvOverride("k=float:0.5")->value.toDouble(), 0.5);
    QCOMPARE(*parseGgufKvOverride("k=bool:true")->value.toBool(), true);
    QCOMPARE(parseGgufKvOverride("k=str:x=y:z")->value.str, std::string("x=y:z"));
    const std::string long128(128, 'k');
    for (const std::string& bad :
         {std::string("nokey"), std::string("=int:1"), std::string("k=1"), std::string("k=i32:1"), std::string("k=int:"),
          std::string("k=int:12x"), std::string("k=int:-1"), std::string("k=int:4294967296"), std::string("k=float:nan"),
          std::string("k=float:inf"), std::string("k=float:1e39"), std::string("k=float:abc"), std::string("k=bool:yes"),
          std::string("k=bool:1"), "k=str:" + long128, long128 + "=int:1", std::string("split.count=int:2"),
          std::string("general.alignment=int:64")}) {
        auto o = parseGgufKvOverride(bad);
        QVERIFY2(!o.ok(), bad.c_str());
        QVERIFY2(o.error().message.find("--override-kv") != std::string::npos, o.error().message.c_str());
    }
    QVERIFY(parseGgufKvOverride(std::string(127, 'k') + "=str:" + std::string(127, 'v')).ok());
}

// llama-quantize: file_type, then the user's overrides (each removed and re-appended), then the imatrix keys.
void TestGgufSplit::overrideKvInTheFile() {
    QTemporaryDir dir;
    auto m = openModel(data("models/bard-llama").toStdString());
    QVERIFY(m.ok());
    GgufExportParams p;
    p.type = "Q4_K_M";
    p.outputPath = dir.filePath(QStringLiteral("o.gguf")).toStdString();
    p.imatrixPath = data("golden/bard-llama/imatrix/bard-llama-imatrix.gguf").toStdString();
    for (const char* spec : {"llama.context_length=int:4096", "qz.flag=bool:true", "general.name=str:renamed",
                             "llama.rope.freq_base=float:500000"}) {
        auto o = parseGgufKvOverride(spec);
        QVERIFY(o.ok());
        p.kvOverrides.push_back(*o);
    }
    QVERIFY(exportGguf(**m, p, {}).ok());
    auto f = GgufFile::open(p.outputPath);
    QVERIFY(f.ok());
    std::vector<std::string> keys;
    for (const auto& kv : (*f)->kvs) keys.push_back(kv.key);
    const std::vector<std::string> tail{"general.quantization_version", "general.file_type", "llama.context_length",
                                        "qz.flag", "general.name", "llama.rope.freq_base", "quantize.imatrix.file",
                                        "quantize.imatrix.dataset", "quantize.imatrix.entries_count",
                                        "quantize.imatrix.chunks_count"};
    QVERIFY(keys.size() > tail.size());
    QCOMPARE(std::vector<std::string>(keys.end() - static_cast<std::ptrdiff_t>(tail.size()), keys.end()), tail);
    QCOMPARE(std::count(keys.begin(), keys.end(), std::string("llama.context_length")), 1);
    QCOMPARE((*f)->find("llama.context_length")->type, GgufType::U32);
    QCOMPARE(*(*f)->getUInt("llama.context_length"), uint64_t(4096));
    QCOMPARE((*f)->find("qz.flag")->type, GgufType::Bool);
    QCOMPARE(*(*f)->getString("general.name"), std::string("renamed"));
    QCOMPARE((*f)->find("llama.rope.freq_base")->type, GgufType::F32);
    QCOMPARE(*(*f)->getDouble("llama.rope.freq_base"), 500000.0);
    // The tensors are untouched by metadata overrides: still llama.cpp's imatrix Q4_K_M bytes.
    const auto gold = golden::forFile(golden::load(data("golden/bard-llama/tensors.tsv")), "bard-llama-Q4_K_M-imat.gguf");
    QCOMPARE((*f)->tensors.size(), gold.size());
    for (size_t i = 0; i < gold.size(); ++i) {
        const auto bytes = (*f)->tensorBytes((*f)->tensors[i]);
        QVERIFY(qz::test::sha256Hex(bytes.data(), bytes.size()) == gold[i].sha256);
    }
}

void TestGgufSplit::cliOptions() {
    QTemporaryDir dir;
    auto run = [&](const QStringList& args) {
        QProcess p;
        p.start(QStringLiteral(QZ_BINARY_DIR "/app/quantzoo-cli"), args);
        p.waitForFinished(scaledMs(120000));
        return p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2;
    };
    const QString model = data("models/bard-llama");
    const QString out = dir.filePath(QStringLiteral("cli.gguf"));
    QCOMPARE(run({"export", model, "--type", "Q8_0", "-o", out, "--quiet", "--split-max-size", "2M",
                  "--override-kv", "general.name=str:cli", "--override-kv", "qz.n=int:3"}),
             0);
    auto m = openModel(dir.filePath(QStringLiteral("cli-00001-of-00002.gguf")).toStdString());
    QVERIFY2(m.ok(), m.ok() ? "" : m.error().message.c_str());
    QCOMPARE((*m)->files.size(), size_t(2));  // 3.6 MB of Q8_0 in parts of at most 2 MB
    QCOMPARE(*ggufOf(**m)->getString("general.name"), std::string("cli"));
    QCOMPARE(*ggufOf(**m)->getUInt("qz.n"), uint64_t(3));
    // Usage errors: exit 2, nothing written.
    for (const QStringList& bad : {QStringList{"--split-max-size", "2T"}, QStringList{"--split-max-tensors", "0"},
                                   QStringList{"--split-max-size", "1G", "--split-max-tensors", "3"},
                                   QStringList{"--override-kv", "k=int:x"}, QStringList{"--override-kv", "k"}})
        QCOMPARE(run(QStringList{"export", model, "--type", "Q8_0", "-o", dir.filePath(QStringLiteral("bad.gguf"))} + bad), 2);
    QCOMPARE(QDir(dir.path()).entryList({"bad*"}, QDir::Files).size(), 0);
}

QTEST_GUILESS_MAIN(TestGgufSplit)
#include "test_gguf_split.moc"
