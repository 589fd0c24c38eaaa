// Streaming safetensors writer: byte layout checked independently (nlohmann on the raw file, hand-computed
// fp16/bf16 words), round trips through the reader, and temporaries that never survive an abort.
#include <QDir>
#include <QFile>
#include <QTemporaryDir>
#include <QtTest>

#include <nlohmann/json.hpp>

#include <cstring>
#include <random>

#include "common/fp16.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "model/model.h"

using namespace qz;

namespace {

std::string writeFile(const QString& dir, const QString& name, const std::string& bytes) {
    const QString path = dir + "/" + name;
    QFile f(path);
    if (!f.open(QIODevice::WriteOnly)) qFatal("cannot write %s", qPrintable(path));
    f.write(bytes.data(), static_cast<qint64>(bytes.size()));
    return path.toStdString();
}

std::string readAll(const std::string& path) {
    QFile f(QString::fromStdString(path));
    if (!f.open(QIODevice::ReadOnly)) return {};
    const QByteArray b = f.readAll();
    return std::string(b.constData(), static_cast<size_t>(b.size()));
}

uint16_t u16At(const Model& m, const std::string& name, size_t index) {
    const TensorInfo* t = m.find(name);
    if (!t || index * 2 + 2 > t->nbytes) return 0xDEAD;
    uint16_t u;
    std::memcpy(&u, m.rawBytes(*t).data() + index * 2, 2);
    return u;
}

QStringList filesIn(const QString& dir) {
    return QDir(dir).entryList(QDir::Files | QDir::Hidden | QDir::NoDotAndDotDot, QDir::Name);
}

} // namespace

class TestSafetensorsWriter : public QObject {
    Q_OBJECT

  private slots:
    void writerRoundTrip();
    void writerCopiesDemoModel();
    void writerBf16Rounding();
    void writerAbortLeavesNothing();
    void writerMisuseFails();
};

void TestSafetensorsWriter::writerRoundTrip() {
    QTemporaryDir tmp;
    QVERIFY(tmp.isValid());
    const std::string path = tmp.path().toStdString() + "/out.safetensors";
    std::vector<SafetensorsTensorDecl> decls = {
        {"w.bf16", DType::BF16, {3, 5}}, // 30 bytes: the next tensor starts unaligned, still valid
        {"scalar", DType::F32, {}},      {"empty", DType::F16, {0, 7}},
        {"ints", DType::I32, {2, 2}},    {"bytes", DType::U8, {1000}}, // written in chunks
        {"f16", DType::F16, {4}},
    };
    std::vector<std::string> payload(decls.size());
    std::mt19937 rng(7);
    const size_t sizes[] = {30, 4, 0, 16, 1000, 8};
    for (size_t i = 0; i < decls.size(); ++i) {
        payload[i].resize(sizes[i]);
        for (auto& c : payload[i])
            c = static_cast<char>(rng());
    }
    auto span = [](const std::string& s) {
        return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
    };
    {
        SafetensorsWriter w;
        QVERIFY(w.open(path, decls, {{"quantizer", "QuantZoo"}}).ok());
        QVERIFY(!QFile::exists(QString::fromStdString(path))); // nothing under the final name yet
        QVERIFY(QFile::exists(QString::fromStdString(w.tempPath())));
        QVERIFY(w.writeTensor(span(payload[0])).ok());
        QVERIFY(w.writeTensor(span(payload[1])).ok());
        QVERIFY(w.writeTensor({}).ok());
        QVERIFY(w.writeTensor(span(payload[3])).ok());
        for (size_t off = 0; off < 1000; off += 300)
            QVERIFY(w.writeChunk(span(payload[4]).subspan(off, std::min<size_t>(300, 1000 - off))).ok());
        const float f16vals[4] = {1.0f, -2.0f, 0.5f, 65504.0f};
        QVERIFY(w.writeTensorFromF32(f16vals).ok());
        QVERIFY(w.finish().ok());
        QCOMPARE(w.fileSize(), static_cast<uint64_t>(QFileInfo(QString::fromStdString(path)).size()));
    }
    QCOMPARE(filesIn(tmp.path()), QStringList{"out.safetensors"}); // temporary renamed away

    // Independent layout check with nlohmann directly: length prefix, 8-aligned data, metadata first,
    // consecutive offsets in declared order.
    const std::string raw = readAll(path);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i)
        n = (n << 8) | static_cast<uint8_t>(raw[i]);
    QCOMPARE((8 + n) % 8, uint64_t{0});
    QVERIFY(raw.compare(8, 15, "{\"__metadata__\"") == 0);
    const auto j = nlohmann::ordered_json::parse(raw.substr(8, n));
    QCOMPARE(j["__metadata__"]["format"].get<std::string>(), std::string("pt"));
    QCOMPARE(j["__metadata__"]["quantizer"].get<std::string>(), std::string("QuantZoo"));
    uint64_t expect = 0;
    size_t idx = 0;
    for (auto it = std::next(j.begin()); it != j.end(); ++it, ++idx) {
        QCOMPARE(it.key(), decls[idx].name);
        QCOMPARE((*it)["data_offsets"][0].get<uint64_t>(), expect);
        expect += sizes[idx];
        QCOMPARE((*it)["data_offsets"][1].get<uint64_t>(), expect);
    }
    QCOMPARE(raw.size(), 8 + n + expect);

    auto r = openSafetensorsModel(path);
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    const Model& m = **r;
    QCOMPARE(m.tensors.size(), decls.size());
    for (size_t i = 0; i + 1 < decls.size(); ++i) {
        const TensorInfo* t = m.find(decls[i].name);
        QVERIFY(t);
        QCOMPARE(t->shape, decls[i].shape);
        QCOMPARE(t->dtype, decls[i].dtype);
        const auto b = m.rawBytes(*t);
        QCOMPARE(std::string(reinterpret_cast<const char*>(b.data()), b.size()), payload[i]);
    }
    // IEEE half by hand: 1.0 = 0x3C00, -2.0 = 0xC000, 0.5 = 0x3800, 65504 = 0x7BFF
    QCOMPARE(u16At(m, "f16", 0), uint16_t{0x3C00});
    QCOMPARE(u16At(m, "f16", 1), uint16_t{0xC000});
    QCOMPARE(u16At(m, "f16", 2), uint16_t{0x3800});
    QCOMPARE(u16At(m, "f16", 3), uint16_t{0x7BFF});
}

void TestSafetensorsWriter::writerCopiesDemoModel() {
    // Stream every tensor of the demo model into a new file; tensor bytes must be identical.
    auto src = openModel(QZ_RESOURCES_DIR "/demo/stories260K");
    QVERIFY(src.ok());
    const Model& s = **src;
    std::vector<SafetensorsTensorDecl> decls;
    for (const auto& t : s.tensors)
        decls.push_back({t.name, t.dtype, t.shape});
    QTemporaryDir tmp;
    const std::string path = tmp.path().toStdString() + "/copy.safetensors";
    SafetensorsWriter w;
    QVERIFY(w.open(path, decls).ok());
    for (const auto& t : s.tensors)
        QVERIFY(w.writeTensor(s.rawBytes(t)).ok());
    QVERIFY(w.finish().ok());
    auto c = openSafetensorsModel(path);
    QVERIFY2(c.ok(), c.ok() ? "" : c.error().message.c_str());
    QCOMPARE((*c)->tensors.size(), s.tensors.size());
    for (size_t i = 0; i < s.tensors.size(); ++i) {
        const auto& a = s.tensors[i];
        const auto& b = (*c)->tensors[i];
        QCOMPARE(b.name, a.name);
        QCOMPARE(b.shape, a.shape);
        const auto x = s.rawBytes(a), y = (*c)->rawBytes(b);
        QVERIFY(x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size()) == 0);
    }
    // the source data section is identical too (same order, same dtype): compare the tails
    QCOMPARE((*c)->files[0]->size() - (*c)->tensors[0].offset, s.files[0]->size() - s.tensors[0].offset);
}

void TestSafetensorsWriter::writerBf16Rounding() {
    QTemporaryDir tmp;
    const std::string path = tmp.path().toStdString() + "/b.safetensors";
    // hand-computed bf16 (round to nearest even on the upper 16 bits of the float):
    //   1.0 = 0x3F800000 -> 0x3F80; 0x3F808000 (tie, even below) -> 0x3F80; 0x3F818000 (tie, odd below) ->
    //   0x3F82; 0x3F808001 (above the tie) -> 0x3F81; -3.0 = 0xC0400000 -> 0xC040
    const uint32_t bits[] = {0x3F800000u, 0x3F808000u, 0x3F818000u, 0x3F808001u, 0xC0400000u};
    std::vector<float> vals;
    for (uint32_t b : bits)
        vals.push_back(bitsFloat(b));
    // 70000 values: more than one conversion piece
    std::vector<float> big(70000);
    for (size_t i = 0; i < big.size(); ++i)
        big[i] = static_cast<float>(i);
    SafetensorsWriter w;
    QVERIFY(w.open(path, {{"v", DType::BF16, {5}}, {"big", DType::BF16, {70000}}}).ok());
    QVERIFY(w.writeTensorFromF32(vals).ok());
    for (size_t off = 0; off < big.size(); off += 30000) // chunked: 30000 + 30000 + 10000 values
        QVERIFY(w.writeChunkFromF32(
                     std::span<const float>(big).subspan(off, std::min<size_t>(30000, big.size() - off)))
                    .ok());
    QVERIFY(w.finish().ok());
    auto r = openSafetensorsModel(path);
    QVERIFY(r.ok());
    const uint16_t want[] = {0x3F80, 0x3F80, 0x3F82, 0x3F81, 0xC040};
    for (int i = 0; i < 5; ++i)
        QCOMPARE(u16At(**r, "v", i), want[i]);
    // integers up to 256 are exact in bf16; 69999 = 0x4788B780 -> 0x4789 (0xB780 > 0x8000 rounds up)
    QCOMPARE(u16At(**r, "big", 256), uint16_t{0x4380});
    QCOMPARE(u16At(**r, "big", 69999), uint16_t{0x4789});
}

void TestSafetensorsWriter::writerAbortLeavesNothing() {
    QTemporaryDir tmp;
    const std::string path = tmp.path().toStdString() + "/model.safetensors";
    const std::string four = "1234";
    const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(four.data()), 4);
    {
        SafetensorsWriter w;
        QVERIFY(w.open(path, {{"a", DType::F32, {1}}, {"b", DType::F32, {1}}}).ok());
        QVERIFY(w.writeTensor(bytes).ok());
        QCOMPARE(filesIn(tmp.path()).size(), 2); // the temporary and the output's lock file
        w.abort();
        QCOMPARE(filesIn(tmp.path()), QStringList{});
        QVERIFY(!w.writeTensor(bytes).ok());
        QVERIFY(!w.finish().ok());
    }
    QCOMPARE(filesIn(tmp.path()), QStringList{});
    {
        SafetensorsWriter w; // destroyed unfinished
        QVERIFY(w.open(path, {{"a", DType::F32, {1}}}).ok());
        QVERIFY(w.writeTensor(bytes).ok());
        QVERIFY(w.close().ok()); // complete but never committed
    }
    QCOMPARE(filesIn(tmp.path()), QStringList{});
    // an existing file under the final name is left alone by an aborted write
    writeFile(tmp.path(), "model.safetensors", "old contents");
    {
        SafetensorsWriter w;
        QVERIFY(w.open(path, {{"a", DType::F32, {1}}}).ok());
    }
    QCOMPARE(filesIn(tmp.path()), QStringList{"model.safetensors"});
    QCOMPARE(readAll(path), std::string("old contents"));
}

void TestSafetensorsWriter::writerMisuseFails() {
    QTemporaryDir tmp;
    const std::string path = tmp.path().toStdString() + "/m.safetensors";
    const std::string eight = "12345678";
    const std::span<const uint8_t> b8(reinterpret_cast<const uint8_t*>(eight.data()), 8);
    SafetensorsWriter dup;
    QVERIFY(!dup.open(path, {{"a", DType::F32, {1}}, {"a", DType::F32, {1}}}).ok());
    SafetensorsWriter quant;
    auto q = quant.open(path, {{"a", DType::Q4_0, {32}}});
    QVERIFY(!q.ok());
    QVERIFY2(q.error().message.find("Q4_0") != std::string::npos, q.error().message.c_str());
    SafetensorsWriter neg;
    QVERIFY(!neg.open(path, {{"a", DType::F32, {-1}}}).ok());
    SafetensorsWriter ovf;
    QVERIFY(!ovf.open(path, {{"a", DType::F32, {int64_t{1} << 40, int64_t{1} << 40}}}).ok());
    SafetensorsWriter meta;
    QVERIFY(!meta.open(path, {{"__metadata__", DType::F32, {1}}}).ok());
    QCOMPARE(filesIn(tmp.path()), QStringList{});

    SafetensorsWriter wrongSize; // 8 bytes for a 4-byte tensor: error, temporary removed
    QVERIFY(wrongSize.open(path, {{"a", DType::F32, {1}}}).ok());
    auto e = wrongSize.writeTensor(b8);
    QVERIFY(!e.ok());
    QVERIFY2(e.error().message.find("'a'") != std::string::npos, e.error().message.c_str());
    QCOMPARE(filesIn(tmp.path()), QStringList{});

    SafetensorsWriter missing; // finish before every tensor is written
    QVERIFY(missing.open(path, {{"a", DType::F32, {2}}, {"b", DType::F32, {2}}}).ok());
    QVERIFY(missing.writeTensor(b8).ok());
    auto m = missing.finish();
    QVERIFY(!m.ok());
    QVERIFY2(m.error().message.find("1 of 2") != std::string::npos, m.error().message.c_str());
    QCOMPARE(filesIn(tmp.path()), QStringList{});

    SafetensorsWriter tooMany;
    QVERIFY(tooMany.open(path, {{"a", DType::F32, {2}}}).ok());
    QVERIFY(tooMany.writeTensor(b8).ok());
    QVERIFY(!tooMany.writeTensor(b8).ok());
    QCOMPARE(filesIn(tmp.path()), QStringList{});

    SafetensorsWriter chunkTooBig; // 3 F16 values into a tensor with 2 left
    QVERIFY(chunkTooBig.open(path, {{"h", DType::F16, {4}}}).ok());
    const float three[3] = {1, 2, 3};
    QVERIFY(chunkTooBig.writeChunkFromF32(std::span<const float>(three, 2)).ok());
    QVERIFY(!chunkTooBig.writeChunkFromF32(three).ok());
    QCOMPARE(filesIn(tmp.path()), QStringList{});
    SafetensorsWriter intFromFloat;
    QVERIFY(intFromFloat.open(path, {{"i", DType::I32, {3}}}).ok());
    QVERIFY(!intFromFloat.writeTensorFromF32(three).ok());
    QCOMPARE(filesIn(tmp.path()), QStringList{});

    SafetensorsWriter noDir;
    QVERIFY(!noDir.open(tmp.path().toStdString() + "/missing/x.safetensors", {}).ok());
}

QTEST_GUILESS_MAIN(TestSafetensorsWriter)
#include "test_safetensors_writer.moc"
