// GGUF container: reading real files (expected values from tests/tools/gguf_struct_dump.py, an
// independent python struct reader, and core/gguf/README.md A.1), writer -> reader round trips, byte-exact
// re-writing, and hostile input (hand-built corrupt files, truncation at every byte).
#include <QtTest>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "gguf/gguf_file.h"
#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "model/model.h"
#include "sha256.h"

using namespace qz;
namespace fs = std::filesystem;

namespace {

const std::string kData = QZ_TEST_DATA;
const std::string kStories = kData + "/models/stories260K/stories260K.gguf";

std::vector<uint8_t> readAll(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void writeAll(const std::string& p, const std::vector<uint8_t>& b) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// Independent little-endian byte builder for hand-made GGUF files.
struct Bytes {
    std::vector<uint8_t> b;
    Bytes& raw(const void* p, size_t n) {
        const auto* c = static_cast<const uint8_t*>(p);
        b.insert(b.end(), c, c + n);
        return *this;
    }
    Bytes& u8(uint8_t v) { return raw(&v, 1); }
    Bytes& u32(uint32_t v) { return raw(&v, 4); }
    Bytes& u64(uint64_t v) { return raw(&v, 8); }
    Bytes& f32(float v) { return raw(&v, 4); }
    Bytes& str(const std::string& s) { return u64(s.size()).raw(s.data(), s.size()); }
    Bytes& padTo(size_t a) {
        while (b.size() % a) b.push_back(0);
        return *this;
    }
};

// A small valid file: 2 KVs, one Q8_0 tensor [32 x 2] and one F32 tensor [4], data ending at EOF.
struct Spec {
    std::string magic = "GGUF";
    uint32_t version = 3;
    uint64_t nTensors = 2, nKv = 3;
    std::string key2 = "test.array";
    uint32_t arrayElemType = 5;  // INT32
    uint64_t arrayCount = 3;
    uint64_t archStrLen = 5;     // "llama"
    uint32_t alignType = 4;      // UINT32
    uint32_t alignment = 32;
    std::string name0 = "t.q8";
    uint32_t nDims0 = 2;
    uint64_t ne0 = 32, ne1 = 2;
    uint32_t type0 = 8;          // Q8_0
    uint64_t offset0 = 0;
    uint64_t offset1 = 96;       // PAD(68, 32)
    std::string name1 = "t.f32";
    bool truncateData = false;
};

std::vector<uint8_t> build(const Spec& s) {
    Bytes b;
    b.raw(s.magic.data(), 4).u32(s.version).u64(s.nTensors).u64(s.nKv);
    b.str("general.architecture").u32(8).u64(s.archStrLen).raw("llama", 5);
    b.str(s.key2).u32(9).u32(s.arrayElemType).u64(s.arrayCount).u32(1).u32(2).u32(3);
    b.str("general.alignment").u32(s.alignType).u32(s.alignment);
    b.str(s.name0).u32(s.nDims0);
    b.u64(s.ne0);
    if (s.nDims0 >= 2) b.u64(s.ne1);
    for (uint32_t d = 2; d < s.nDims0 && d < 8; ++d) b.u64(1);
    b.u32(s.type0).u64(s.offset0);
    b.str(s.name1).u32(1).u64(4).u32(0).u64(s.offset1);
    b.padTo(32);
    // Q8_0 blocks: d = 1.0 (0x3C00), qs = 0..31 and -(0..31)
    for (int blk = 0; blk < 2; ++blk) {
        b.u8(0x00).u8(0x3C);
        for (int j = 0; j < 32; ++j) b.u8(static_cast<uint8_t>(blk == 0 ? j : -j));
    }
    b.padTo(32);
    for (float v : {1.5f, -2.0f, 0.25f, 8.0f}) b.f32(v);
    if (s.truncateData) b.b.resize(b.b.size() - 1);
    return b.b;
}

}  // namespace

class TestGguf : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() { QVERIFY(m_dir.isValid()); }
    void readsStories260K();
    void modelFromStories260K();
    void readsVocabFiles();
    void handBuiltFileValues();
    void unsupportedTypeListsButDoesNotConvert();
    void corruptFiles_data();
    void corruptFiles();
    void truncatedEverywhereSmall();
    void truncatedStoriesHeader();
    void randomMutationsNeverCrash();
    void nonContiguousAcceptedButReported();
    void roundTripAllValueTypes();
    void rewriteStoriesByteForByte();
    void rewriteVocabFilesByteForByte();
    void rewriteGoldens();
    void writerErrorsAndCleanup();
    void dimsConventions();

private:
    std::string tmp(const std::string& name) { return m_dir.filePath(QString::fromStdString(name)).toStdString(); }
    QTemporaryDir m_dir;
};

void TestGguf::readsStories260K() {
    auto r = GgufFile::open(kStories);
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    const GgufFile& g = **r;
    // Expected values: tests/tools/gguf_struct_dump.py on the same file.
    QCOMPARE(g.version, 3u);
    QCOMPARE(g.kvs.size(), size_t(19));
    QCOMPARE(g.tensors.size(), size_t(48));
    QCOMPARE(g.infosEnd, uint64_t(14152));
    QCOMPARE(g.dataOffset, uint64_t(14176));
    QCOMPARE(g.alignment, 32u);
    QCOMPARE(g.kvs[0].key, std::string("tokenizer.ggml.tokens"));
    QCOMPARE(g.kvs[18].key, std::string("llama.attention.layer_norm_rms_epsilon"));
    QCOMPARE(g.getString("general.architecture").value_or(""), std::string("llama"));
    const GgufValue* bc = g.find("llama.block_count");
    QVERIFY(bc);
    QCOMPARE(bc->type, GgufType::U32);
    QCOMPARE(bc->toUInt().value_or(0), uint64_t(5));
    QCOMPARE(g.getUInt("llama.feed_forward_length").value_or(0), uint64_t(172));
    QCOMPARE(g.getUInt("tokenizer.ggml.seperator_token_id").value_or(0), uint64_t(4294967295u));
    const GgufValue* eps = g.find("llama.attention.layer_norm_rms_epsilon");
    QVERIFY(eps && eps->type == GgufType::F32);
    QCOMPARE(static_cast<float>(*eps->toDouble()), 1e-5f);
    const GgufValue* toks = g.find("tokenizer.ggml.tokens");
    QVERIFY(toks && toks->isArray() && toks->elemType == GgufType::String);
    QCOMPARE(toks->arraySize(), uint64_t(512));
    QCOMPARE(toks->stringAt(0), std::string("<unk>"));
    QCOMPARE(toks->stringAt(3), std::string("<0x00>"));
    QCOMPARE(toks->stringAt(100), std::string("<0x61>"));
    const GgufValue* scores = g.find("tokenizer.ggml.scores");
    QVERIFY(scores && scores->elemType == GgufType::F32 && scores->arraySize() == 512);
    QCOMPARE(*scores->numberAt(511), -252.0);
    const GgufValue* tt = g.find("tokenizer.ggml.token_type");
    QVERIFY(tt && tt->elemType == GgufType::I32);
    QCOMPARE(tt->toIntVector().size(), size_t(512));
    QCOMPARE(tt->toIntVector()[0], int64_t(2));
    QCOMPARE(tt->toIntVector()[3], int64_t(6));
    QCOMPARE(tt->toIntVector()[300], int64_t(1));
    const GgufTensor* down = g.findTensor("blk.0.ffn_down.weight");
    QVERIFY(down);
    QCOMPARE(down->ne, (std::vector<int64_t>{172, 64}));
    QCOMPARE(down->offset, uint64_t(355840));
    QCOMPARE(down->nbytes, uint64_t(44032));
    QCOMPARE(g.tensors[47].name, std::string("blk.4.ffn_norm.weight"));
    QCOMPARE(g.tensors[47].offset, uint64_t(1170944));
    const auto emb = g.tensorBytes(*g.findTensor("token_embd.weight"));
    QCOMPARE(test::sha256Hex(emb.data(), emb.size()),
             std::string("452158377d2f8703b5b38935f894b628d3c7e2ac26bc167bfbfc68655dfe2c8a"));
    const auto dn = g.tensorBytes(*down);
    QCOMPARE(test::sha256Hex(dn.data(), dn.size()),
             std::string("0db1736259bbf508142cf7161d012a3c01d706b71b3116ff2771c2e64a56c945"));
    QVERIFY(g.checkLlamaLayout().ok());
}

void TestGguf::modelFromStories260K() {
    auto r = openModel(kStories);  // dispatches on the magic
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    const Model& m = **r;
    QCOMPARE(m.format, ModelFormat::Gguf);
    QCOMPARE(m.architecture, std::string("llama"));
    QCOMPARE(m.name, std::string("llama"));  // general.name
    QCOMPARE(m.tensors.size(), size_t(48));
    QCOMPARE(m.metadata.size(), size_t(19));
    QCOMPARE(m.metadata[0].key, std::string("tokenizer.ggml.tokens"));
    QCOMPARE(m.metadata[0].value, std::string("[string × 512]"));
    QCOMPARE(m.metadata[16].key, std::string("llama.block_count"));
    QCOMPARE(m.metadata[16].value, std::string("5"));
    QCOMPARE(m.metadata[18].value, std::string("1e-05"));
    const TensorInfo* t = m.find("blk.0.ffn_down.weight");
    QVERIFY(t);
    QCOMPARE(t->shape, (std::vector<int64_t>{64, 172}));  // ne reversed
    QCOMPARE(t->dtype, DType::F32);
    QCOMPARE(t->offset, uint64_t(14176 + 355840));
    QCOMPARE(t->rows(), int64_t(64));
    QCOMPARE(t->cols(), int64_t(172));
    auto v = readTensorF32(m, *t);
    QVERIFY(v.ok());
    // Row 1 starts at element 172 (struct dump: 0.03677805885672569, 0.06417303532361984).
    QCOMPARE((*v)[172], 0.03677805885672569f);
    QCOMPARE((*v)[173], 0.06417303532361984f);
    auto e = readTensorF32(m, *m.find("token_embd.weight"));
    QVERIFY(e.ok());
    QCOMPARE((*e)[0], -0.29474878311157227f);
    QCOMPARE((*e)[3], 0.34057360887527466f);
    const GgufFile* g = ggufOf(m);
    QVERIFY(g);
    QCOMPARE(g->getUInt("llama.embedding_length").value_or(0), uint64_t(64));
}

void TestGguf::readsVocabFiles() {
    struct Expect {
        const char* file;
        size_t nKv;
        const char* arch;
        const char* model;
        uint64_t nTokens;
        uint64_t nMerges;
        uint64_t bos;
    };
    // From tests/tools/gguf_struct_dump.py.
    const Expect ex[] = {
        {"ggml-vocab-llama-spm.gguf", 22, "llama", "llama", 32000, 0, 1},
        {"ggml-vocab-gpt-2.gguf", 16, "gpt2", "gpt2", 50257, 50000, 50256},
        {"ggml-vocab-deepseek-llm.gguf", 23, "llama", "gpt2", 102400, 99757, 100000},
        {"ggml-vocab-phi-3.gguf", 26, "phi3", "llama", 32064, 0, 1},
    };
    for (const auto& e : ex) {
        auto r = openModel(kData + "/models/vocab/" + e.file);
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
        const GgufFile* g = ggufOf(**r);
        QVERIFY(g);
        QCOMPARE(g->kvs.size(), e.nKv);
        QCOMPARE(g->tensors.size(), size_t(0));
        QCOMPARE((*r)->architecture, std::string(e.arch));
        QCOMPARE(g->getString("tokenizer.ggml.model").value_or(""), std::string(e.model));
        QCOMPARE(g->find("tokenizer.ggml.tokens")->arraySize(), e.nTokens);
        const GgufValue* merges = g->find("tokenizer.ggml.merges");
        QCOMPARE(merges ? merges->arraySize() : 0, e.nMerges);
        QCOMPARE(g->getUInt("tokenizer.ggml.bos_token_id").value_or(0), e.bos);
    }
    auto g2 = GgufFile::open(kData + "/models/vocab/ggml-vocab-gpt-2.gguf");
    QVERIFY(g2.ok());
    QCOMPARE((*g2)->find("tokenizer.ggml.merges")->stringAt(0), std::string("Ġ t"));
    QCOMPARE((*g2)->find("tokenizer.ggml.tokens")->stringAt(1), std::string("\""));
    auto phi = GgufFile::open(kData + "/models/vocab/ggml-vocab-phi-3.gguf");
    QVERIFY(phi.ok());
    QCOMPARE((*phi)->find("tokenizer.ggml.scores")->numberAt(0).value_or(0), -1000.0);
    QVERIFY((*phi)->getString("tokenizer.chat_template")->starts_with("{{ bos_token }}{% for message"));
    QCOMPARE((*phi)->getBool("tokenizer.ggml.add_bos_token"), std::optional<bool>(true));
}

void TestGguf::handBuiltFileValues() {
    const std::string p = tmp("hand.gguf");
    writeAll(p, build(Spec{}));
    auto r = GgufFile::open(p);
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    const GgufFile& g = **r;
    QCOMPARE(g.find("test.array")->toIntVector(), (std::vector<int64_t>{1, 2, 3}));
    QCOMPARE(g.find("test.array")->display(), std::string("[1, 2, 3]"));
    QCOMPARE(g.tensors[0].dtype, DType::Q8_0);
    QCOMPARE(g.tensors[0].nbytes, uint64_t(68));
    auto m = openGgufModel(p);
    QVERIFY(m.ok());
    auto v = readTensorF32(**m, (*m)->tensors[0]);
    QVERIFY(v.ok());
    QCOMPARE(v->size(), size_t(64));
    for (int j = 0; j < 32; ++j) {
        QCOMPARE((*v)[j], float(j));
        QCOMPARE((*v)[32 + j], float(-j));
    }
    auto f = readTensorF32(**m, (*m)->tensors[1]);
    QVERIFY(f.ok());
    QCOMPARE(*f, (std::vector<float>{1.5f, -2.0f, 0.25f, 8.0f}));
}

void TestGguf::unsupportedTypeListsButDoesNotConvert() {
    Spec s;
    s.type0 = 27;  // I64: 8 bytes per value, listed by the reader, no conversion to F32 in QuantZoo
    s.ne0 = 8;
    s.ne1 = 1;
    const std::string p = tmp("i64.gguf");
    writeAll(p, build(s));
    auto m = openGgufModel(p);
    QVERIFY2(m.ok(), m.ok() ? "" : m.error().message.c_str());
    const TensorInfo& t = (*m)->tensors[0];
    QCOMPARE(t.dtype, DType::I64);
    QCOMPARE(t.nbytes, uint64_t(64));
    QCOMPARE(t.shape, (std::vector<int64_t>{1, 8}));
    auto v = readTensorF32(**m, t);
    QVERIFY(!v.ok());
    QVERIFY2(v.error().message.find("I64") != std::string::npos, v.error().message.c_str());
    QVERIFY(readTensorF32(**m, (*m)->tensors[1]).ok());
}

void TestGguf::corruptFiles_data() {
    QTest::addColumn<int>("which");
    QTest::addColumn<QString>("expect");
    const char* rows[][2] = {
        {"bad magic", "bad magic"},          {"version 1", "version 1"},
        {"version 4", "unsupported GGUF version 4"}, {"byte-swapped version", "wrong endianness"},
        {"huge string length", "claims"},    {"huge array count", "claims"},
        {"duplicate key", "duplicate key"},  {"alignment not power of two", "power of two"},
        {"alignment wrong type", "must be UINT32"}, {"name too long", "63"},
        {"too many dims", "dimensions (at most 4"}, {"unknown type", "unknown ggml type 4"},
        {"ne0 not multiple", "not a multiple of the block size"}, {"data past EOF", "outside the file"},
        {"huge kv count", "key/values"},     {"huge tensor count", "tensors, more than"},
        {"duplicate tensor", "duplicate tensor name"}, {"overlap", "overlap"},
        {"misaligned offset", "not a multiple of the alignment"}, {"array of arrays", "array of arrays"},
        {"unknown value type", "unknown value type"}, {"negative dim", "negative dimension"},
        {"overflowing dims", "overflows"},    {"empty key", "is empty"},
    };
    for (int i = 0; i < int(std::size(rows)); ++i) QTest::newRow(rows[i][0]) << i << QString(rows[i][1]);
}

void TestGguf::corruptFiles() {
    QFETCH(int, which);
    QFETCH(QString, expect);
    Spec s;
    std::vector<uint8_t> bytes;
    switch (which) {
    case 0: s.magic = "GGUG"; break;
    case 1: s.version = 1; break;
    case 2: s.version = 4; break;
    case 3: s.version = 3u << 16; break;
    case 4: s.archStrLen = uint64_t(1) << 62; break;
    case 5: s.arrayCount = uint64_t(1) << 60; break;
    case 6: s.key2 = "general.architecture"; break;
    case 7: s.alignment = 48; break;
    case 8: s.alignType = 5; break;
    case 9: s.name0 = std::string(64, 'n'); break;
    case 10: s.nDims0 = 5; break;
    case 11: s.type0 = 4; break;
    case 12: s.ne0 = 16; break;
    case 13: s.truncateData = true; break;
    case 14: s.nKv = uint64_t(1) << 40; break;
    case 15: s.nTensors = uint64_t(1) << 40; break;
    case 16: s.name1 = s.name0; break;
    case 17: s.offset1 = 32; break;
    case 18: s.offset1 = 100; break;
    case 19: s.arrayElemType = 9; break;
    case 20: s.arrayElemType = 13; break;
    case 21: s.ne1 = uint64_t(-2); break;
    case 22: s.ne1 = uint64_t(1) << 62; break;
    case 23: s.key2 = ""; break;
    }
    bytes = build(s);
    const std::string p = tmp("corrupt.gguf");
    writeAll(p, bytes);
    auto r = GgufFile::open(p);
    QVERIFY(!r.ok());
    const QString msg = QString::fromStdString(r.error().message);
    QVERIFY2(msg.startsWith(QString::fromStdString(p)), qPrintable(msg));
    QVERIFY2(msg.contains(expect), qPrintable(msg));
    QVERIFY(!openModel(p).ok());
}

void TestGguf::truncatedEverywhereSmall() {
    const auto full = build(Spec{});
    const std::string p = tmp("trunc.gguf");
    writeAll(p, full);
    QVERIFY(GgufFile::open(p).ok());
    for (size_t n = 0; n < full.size(); ++n) {
        writeAll(p, std::vector<uint8_t>(full.begin(), full.begin() + static_cast<long>(n)));
        auto r = GgufFile::open(p);
        QVERIFY2(!r.ok(), qPrintable(QString("truncated at %1 still opened").arg(n)));
        QVERIFY(r.error().message.find(p) == 0);
    }
}

void TestGguf::truncatedStoriesHeader() {
    const auto full = readAll(kStories);
    QCOMPARE(full.size(), size_t(1185376));
    const std::string p = tmp("trunc-stories.gguf");
    // Every length in the header and first strings and around the end of the tensor infos
    // (14152) and data start (14176), every 13th byte in between, then sparser up to the end.
    std::vector<size_t> lengths;
    for (size_t n = 0; n < 14176 + 131072; n += (n < 600 || (n >= 13900 && n < 14300) ? 1 : n < 14300 ? 13 : 509))
        lengths.push_back(n);
    for (size_t n = 14176 + 131072; n < full.size(); n += 4099) lengths.push_back(n);
    lengths.push_back(full.size() - 1);
    for (size_t n : lengths) {
        std::ofstream(p, std::ios::binary | std::ios::trunc)
            .write(reinterpret_cast<const char*>(full.data()), static_cast<std::streamsize>(n));
        auto r = GgufFile::open(p);
        QVERIFY2(!r.ok(), qPrintable(QString("truncated at %1 still opened").arg(n)));
    }
}

void TestGguf::randomMutationsNeverCrash() {
    // Seeded byte mutations of the hand-built file and of the first 16 KiB of stories260K: each
    // mutant either opens (and then every tensor converts without reading out of bounds) or fails
    // with a message naming the file. Header bytes are mutated more often than data bytes.
    std::mt19937 rng(20261127);
    const auto small = build(Spec{});
    auto stories = readAll(kStories);
    stories.resize(14176 + 131072 + 256);  // header + token_embd + output_norm; later tensors then lie past EOF
    const std::string p = tmp("mutant.gguf");
    int opened = 0, failed = 0;
    for (int iter = 0; iter < 3000; ++iter) {
        std::vector<uint8_t> b = iter % 3 == 0 ? stories : small;
        const size_t hot = iter % 3 == 0 ? 14176 : b.size();
        const int flips = 1 + int(rng() % 4);
        for (int f = 0; f < flips; ++f) {
            const size_t at = rng() % (rng() % 4 ? hot : b.size());
            switch (rng() % 4) {
            case 0: b[at] = uint8_t(rng()); break;
            case 1: b[at] ^= uint8_t(1u << (rng() % 8)); break;
            case 2: b[at] = 0xFF; break;
            default: b[at] = 0; break;
            }
        }
        writeAll(p, b);
        auto m = openGgufModel(p);
        if (!m.ok()) {
            ++failed;
            QVERIFY2(m.error().message.find(p) == 0, m.error().message.c_str());
            continue;
        }
        ++opened;
        for (const auto& t : (*m)->tensors) {
            QVERIFY(t.offset + t.nbytes <= b.size());
            if (t.numel() <= (1u << 22)) (void)readTensorF32(**m, t);
        }
    }
    qInfo("mutants: %d opened, %d rejected", opened, failed);
    QVERIFY(opened > 0);
    QVERIFY(failed > 0);
}

void TestGguf::nonContiguousAcceptedButReported() {
    Spec s;
    s.offset1 = 128;  // a 32-byte gap: aligned, in bounds, no overlap — but not llama's layout
    auto bytes = build(s);
    bytes.insert(bytes.end() - 16, 32, 0);  // move the F32 data 32 bytes on
    const std::string p = tmp("gap.gguf");
    writeAll(p, bytes);
    auto r = GgufFile::open(p);
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    auto st = (*r)->checkLlamaLayout();
    QVERIFY(!st.ok());
    QVERIFY2(st.error().message.find("has offset 128, expected 96") != std::string::npos, st.error().message.c_str());
    auto m = openGgufModel(p);
    QVERIFY(m.ok());
    QCOMPARE(*readTensorF32(**m, (*m)->tensors[1]), (std::vector<float>{1.5f, -2.0f, 0.25f, 8.0f}));
}

void TestGguf::roundTripAllValueTypes() {
    const std::string p = tmp("roundtrip.gguf");
    std::vector<GgufKV> kvs = {
        {"general.architecture", GgufValue::string("llama")},
        {"v.u8", GgufValue::u8(250)},        {"v.i8", GgufValue::i8(-120)},
        {"v.u16", GgufValue::u16(65000)},    {"v.i16", GgufValue::i16(-32000)},
        {"v.u32", GgufValue::u32(4000000000u)}, {"v.i32", GgufValue::i32(-2000000000)},
        {"v.f32", GgufValue::f32(0.1f)},     {"v.bool", GgufValue::boolean(true)},
        {"v.u64", GgufValue::u64(uint64_t(1) << 63)}, {"v.i64", GgufValue::i64(-(int64_t(1) << 62))},
        {"v.f64", GgufValue::f64(-2.5e300)}, {"v.empty", GgufValue::string("")},
        {"v.utf8", GgufValue::string("héllo ▁world\n")},
        {"a.str", GgufValue::stringArray({"a", "", "Ġ t"})},
        {"a.f32", GgufValue::f32Array(std::vector<float>{1.f, -0.5f})},
        {"a.i32", GgufValue::i32Array(std::vector<int32_t>{-1, 7, 3})},
        {"a.u32", GgufValue::u32Array(std::vector<uint32_t>{})},
    };
    const int64_t i64s[] = {5, -6};
    kvs.push_back({"a.i64", GgufValue::numericArray(GgufType::I64, i64s, 2)});
    const uint8_t bools[] = {1, 0, 1};
    kvs.push_back({"a.bool", GgufValue::numericArray(GgufType::Bool, bools, 3)});
    std::vector<uint8_t> q8(2 * 34), f16(3 * 5 * 2), q4k(144 * 2), f32(7 * 4);
    for (size_t i = 0; i < q8.size(); ++i) q8[i] = uint8_t(i * 7 + 1);
    for (size_t i = 0; i < f16.size(); ++i) f16[i] = uint8_t(i * 3);
    for (size_t i = 0; i < q4k.size(); ++i) q4k[i] = uint8_t(i ^ 0x5A);
    for (size_t i = 0; i < f32.size(); ++i) f32[i] = uint8_t(255 - i);
    {
        GgufWriter w(p);
        for (const auto& kv : kvs) QVERIFY(w.setKv(kv.key, kv.value).ok());
        QVERIFY(w.addTensor("q8", {64}, DType::Q8_0).ok());
        QVERIFY(w.addTensor("f16", {5, 3}, DType::F16).ok());
        QVERIFY(w.addTensor("q4k", {256, 2, 1}, DType::Q4_K).ok());
        QVERIFY(w.addTensor("f32", {7}, DType::F32).ok());
        QVERIFY(w.begin().ok());
        QVERIFY(!fs::exists(p));
        QVERIFY(w.writeTensorData(q8).ok());
        // in pieces
        QVERIFY(w.writeTensorData(std::span(f16).first(7)).ok());
        QVERIFY(w.writeTensorData(std::span(f16).subspan(7)).ok());
        QVERIFY(w.writeTensorData(q4k).ok());
        QVERIFY(w.writeTensorData(f32).ok());
        QVERIFY(w.finish().ok());
        QVERIFY(!fs::exists(w.tempPath()));
    }
    auto r = GgufFile::open(p);
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    const GgufFile& g = **r;
    QCOMPARE(g.kvs.size(), kvs.size());
    for (size_t i = 0; i < kvs.size(); ++i) {
        QCOMPARE(g.kvs[i].key, kvs[i].key);
        QVERIFY2(g.kvs[i].value == kvs[i].value, kvs[i].key.c_str());
    }
    QCOMPARE(g.find("v.i8")->toInt().value_or(0), int64_t(-120));
    QCOMPARE(g.find("v.u64")->toUInt().value_or(0), uint64_t(1) << 63);
    QVERIFY(!g.find("v.u64")->toInt());
    QVERIFY(!g.find("v.i8")->toUInt());
    QCOMPARE(g.find("v.f32")->toDouble().value_or(0), double(0.1f));
    QCOMPARE(g.find("v.f64")->toDouble().value_or(0), -2.5e300);
    QCOMPARE(g.find("v.bool")->display(), std::string("true"));
    QCOMPARE(g.find("a.str")->display(), std::string("[\"a\", \"\", \"Ġ t\"]"));
    QCOMPARE(g.find("a.i64")->display(), std::string("[5, -6]"));
    QCOMPARE(g.find("a.str")->display(2), std::string("[string × 3]"));
    QCOMPARE(g.find("v.utf8")->display(), std::string("héllo ▁world\\n"));
    QCOMPARE(g.tensors.size(), size_t(4));
    QCOMPARE(g.tensors[1].ne, (std::vector<int64_t>{5, 3}));
    QCOMPARE(g.tensors[2].ne, (std::vector<int64_t>{256, 2}));  // C convention drops the trailing 1
    // Offsets by hand: 68 -> 96, 30 -> 32, 288 -> 288, 28
    QCOMPARE(g.tensors[0].offset, uint64_t(0));
    QCOMPARE(g.tensors[1].offset, uint64_t(96));
    QCOMPARE(g.tensors[2].offset, uint64_t(128));
    QCOMPARE(g.tensors[3].offset, uint64_t(416));
    QCOMPARE(g.dataOffset % 32, uint64_t(0));
    QCOMPARE(fs::file_size(p), g.dataOffset + 416 + 32);  // the last tensor is padded too
    QVERIFY(g.checkLlamaLayout().ok());
    const std::vector<uint8_t>* blobs[] = {&q8, &f16, &q4k, &f32};
    for (size_t i = 0; i < 4; ++i) {
        auto b = g.tensorBytes(g.tensors[i]);
        QVERIFY(std::vector<uint8_t>(b.begin(), b.end()) == *blobs[i]);
    }
}

namespace {
// Rewrites `src` through GgufWriter with the same KVs, tensor infos and data.
Status rewrite(const GgufFile& src, const std::string& out, GgufWriter::DimsConvention dims) {
    GgufWriter w(out, dims);
    for (const auto& kv : src.kvs)
        if (auto s = w.setKv(kv.key, kv.value); !s) return s;
    for (const auto& t : src.tensors)
        if (auto s = w.addTensor(t.name, t.ne, t.dtype); !s) return s;
    if (auto s = w.begin(); !s) return s;
    for (const auto& t : src.tensors)
        if (auto s = w.writeTensorData(src.tensorBytes(t)); !s) return s;
    return w.finish();
}
}  // namespace

void TestGguf::rewriteStoriesByteForByte() {
    auto r = GgufFile::open(kStories);
    QVERIFY(r.ok());
    const std::string out = tmp("stories-rewrite.gguf");
    auto st = rewrite(**r, out, GgufWriter::DimsConvention::C);
    QVERIFY2(st.ok(), st.ok() ? "" : st.error().message.c_str());
    QVERIFY(readAll(out) == readAll(kStories));
}

void TestGguf::rewriteVocabFilesByteForByte() {
    // convert_hf_to_gguf --vocab-only files (gguf-py writer): no tensors, no trailing padding.
    for (const char* f : {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf", "ggml-vocab-phi-3.gguf"}) {
        const std::string in = kData + "/models/vocab/" + f;
        auto r = GgufFile::open(in);
        QVERIFY(r.ok());
        const std::string out = tmp("vocab-rewrite.gguf");
        QVERIFY(rewrite(**r, out, GgufWriter::DimsConvention::Python).ok());
        QVERIFY2(readAll(out) == readAll(in), f);
    }
}

void TestGguf::rewriteGoldens() {
    // llama.cpp's own files in tests/data/golden: one written by convert_hf_to_gguf (gguf-py), the
    // others by llama-quantize.
    struct Case {
        const char* file;
        GgufWriter::DimsConvention dims;
    };
    const Case cases[] = {
        {"bard-gpt2/bard-gpt2-BF16.gguf", GgufWriter::DimsConvention::Python}, // convert_hf_to_gguf
        {"bard-llama/bard-llama-Q4_0.gguf", GgufWriter::DimsConvention::C},    // llama-quantize
        {"bard-llama/bard-llama-Q2_K.gguf", GgufWriter::DimsConvention::C},
        {"bard-llama/bard-llama-Q3_K_M.gguf", GgufWriter::DimsConvention::C},
        {"stories260K/stories260K-Q2_K.gguf", GgufWriter::DimsConvention::C},
        {"stories260K/stories260K-Q4_K_M.gguf", GgufWriter::DimsConvention::C},
    };
    int n = 0;
    for (const auto& c : cases) {
        const std::string in = kData + "/golden/" + c.file;
        auto r = GgufFile::open(in);
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
        QVERIFY((*r)->checkLlamaLayout().ok());
        const std::string out = tmp("golden-rewrite.gguf");
        QVERIFY(rewrite(**r, out, c.dims).ok());
        QVERIFY2(readAll(out) == readAll(in), c.file);
        ++n;
    }
    qInfo("rewrote %d llama.cpp golden files byte for byte", n);
}

void TestGguf::writerErrorsAndCleanup() {
    const std::string p = tmp("errors.gguf");
    {
        GgufWriter w(p);
        QVERIFY(w.setKv("a", GgufValue::u32(1)).ok());
        QVERIFY(!w.setKv("a", GgufValue::u32(2)).ok());
        QVERIFY(!w.setKv("", GgufValue::u32(2)).ok());
        QVERIFY(!w.setKv("general.alignment", GgufValue::u32(24)).ok());
        QVERIFY(!w.setKv("general.alignment", GgufValue::u64(32)).ok());
        GgufValue aa = GgufValue::stringArray({"x"});
        aa.elemType = GgufType::Array;
        QVERIFY(!w.setKv("b", aa).ok());
        QVERIFY(!w.addTensor(std::string(64, 'x'), {32}, DType::F32).ok());
        QVERIFY(w.addTensor(std::string(63, 'x'), {32}, DType::F32).ok());
        QVERIFY(!w.addTensor(std::string(63, 'x'), {32}, DType::F32).ok());
        QVERIFY(!w.addTensor("q", {16}, DType::Q4_0).ok());
        QVERIFY(!w.addTensor("q", {32, 1, 1, 1, 1}, DType::Q4_0).ok());
        QVERIFY(!w.addTensor("q", {32, -1}, DType::Q4_0).ok());
        QVERIFY(!w.addTensor("u", {4}, DType::U8).ok());  // GGUF cannot hold U8
        QVERIFY(w.begin().ok());
        QVERIFY(fs::exists(w.tempPath()));
        QVERIFY(w.writeTensorData(std::vector<uint8_t>(100)).ok());
        QVERIFY(!w.finish().ok());  // 28 bytes missing
        QVERIFY(!fs::exists(w.tempPath()));
        QVERIFY(!fs::exists(p));
    }
    {
        GgufWriter w(p);
        QVERIFY(w.addTensor("t", {4}, DType::F32).ok());
        QVERIFY(w.begin().ok());
        QVERIFY(!w.writeTensorData(std::vector<uint8_t>(17)).ok());  // too much data
        QVERIFY(!fs::exists(w.tempPath()));
    }
    std::string tmpPath;
    {
        GgufWriter w(p);  // destroyed unfinished: the temporary goes away
        QVERIFY(w.addTensor("t", {4}, DType::F32).ok());
        QVERIFY(w.begin().ok());
        tmpPath = w.tempPath();
        QVERIFY(fs::exists(tmpPath));
    }
    QVERIFY(!fs::exists(tmpPath));
    QVERIFY(!fs::exists(p));
    // An existing destination is replaced only when finished.
    writeAll(p, {1, 2, 3});
    {
        GgufWriter w(p);
        QVERIFY(w.addTensor("t", {4}, DType::F32).ok());
        QVERIFY(w.begin().ok());
        w.abort();
    }
    QCOMPARE(readAll(p), (std::vector<uint8_t>{1, 2, 3}));
    {
        GgufWriter w(p);
        QVERIFY(w.replaceKv("k", GgufValue::u32(1)).ok());
        QVERIFY(w.setKv("m", GgufValue::u32(2)).ok());
        QVERIFY(w.replaceKv("k", GgufValue::u32(3)).ok());  // moves to the end, like gguf_set_val_u32
        QCOMPARE(w.kvs().back().key, std::string("k"));
        QVERIFY(w.begin().ok());
        QVERIFY(w.finish().ok());
    }
    auto r = GgufFile::open(p);
    QVERIFY(r.ok());
    QCOMPARE((*r)->kvs[0].key, std::string("m"));
    QCOMPARE((*r)->getUInt("k").value_or(0), uint64_t(3));
}

void TestGguf::dimsConventions() {
    for (auto dims : {GgufWriter::DimsConvention::C, GgufWriter::DimsConvention::Python}) {
        const std::string p = tmp("dims.gguf");
        GgufWriter w(p, dims);
        QVERIFY(w.addTensor("a", {8, 1}, DType::F32).ok());
        QVERIFY(w.addTensor("b", {1, 1}, DType::F32).ok());
        QVERIFY(w.begin().ok());
        QVERIFY(w.writeTensorData(std::vector<uint8_t>(36)).ok());
        QVERIFY(w.finish().ok());
        auto r = GgufFile::open(p);
        QVERIFY(r.ok());
        const bool c = dims == GgufWriter::DimsConvention::C;
        const std::vector<int64_t> a = c ? std::vector<int64_t>{8} : std::vector<int64_t>{8, 1};
        const std::vector<int64_t> b = c ? std::vector<int64_t>{1} : std::vector<int64_t>{1, 1};
        QCOMPARE((*r)->tensors[0].ne, a);
        QCOMPARE((*r)->tensors[1].ne, b);
    }
}

QTEST_GUILESS_MAIN(TestGguf)
#include "test_gguf.moc"
