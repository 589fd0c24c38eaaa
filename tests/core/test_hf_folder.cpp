// Hugging Face folder reader (sharded index, path safety, config.json summary) and the sharded writer.
// Reader fixtures are built byte by byte here (not with QuantZoo's writer); writer output is checked
// against hand-written expected text and re-read.
#include <QDir>
#include <QFile>
#include <QTemporaryDir>
#include <QtTest>

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <functional>

#include "io/hf_folder.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "model/model.h"

using namespace qz;
namespace fs = std::filesystem;

namespace {

std::string stBytes(const std::string& header, const std::string& data) {
    std::string s(8, '\0');
    const uint64_t n = header.size();
    for (int i = 0; i < 8; ++i)
        s[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
    return s + header + data;
}

void writeFile(const std::string& path, const std::string& bytes) {
    QFile f(QString::fromStdString(path));
    if (!f.open(QIODevice::WriteOnly)) qFatal("cannot write %s", path.c_str());
    f.write(bytes.data(), static_cast<qint64>(bytes.size()));
}

std::string readAll(const std::string& path) {
    QFile f(QString::fromStdString(path));
    if (!f.open(QIODevice::ReadOnly)) return {};
    const QByteArray b = f.readAll();
    return std::string(b.constData(), static_cast<size_t>(b.size()));
}

QStringList filesIn(const QString& dir) {
    return QDir(dir).entryList(QDir::Files | QDir::Hidden | QDir::NoDotAndDotDot, QDir::Name);
}

const char* kShard1 = "model-00001-of-00002.safetensors";
const char* kShard2 = "model-00002-of-00002.safetensors";

// shard 1: b (U8 [3]) at data 0, a (F32 [2]) at data 3 -- header lists a first, file order is b, a.
// shard 2: c (BF16 [2,2]) at 0, d (F16 [1]) at 8.
const std::string kHeader1 = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[3,11]},)"
                             R"("b":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}})";
const std::string kData1 = "BBBaaaaAAAA";
const std::string kHeader2 =
    R"({"__metadata__":{"format":"pt"},"d":{"dtype":"F16","shape":[1],"data_offsets":[8,10]},)"
    R"("c":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]}})";
const std::string kData2 = "ccccCCCCdd";
const std::string kIndex =
    R"({"metadata":{"total_size":21},"weight_map":{"a":"model-00001-of-00002.safetensors",)"
    R"("b":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors",)"
    R"("d":"model-00002-of-00002.safetensors"}})";

// A valid two-shard folder; returns its path.
std::string makeSharded(const QTemporaryDir& tmp, const std::string& index = kIndex) {
    const std::string dir = tmp.path().toStdString() + "/sharded";
    fs::create_directories(dir);
    writeFile(dir + "/config.json", R"({"model_type":"llama","hidden_size":2,"rope_scaling":null})");
    writeFile(dir + "/" + kShard1, stBytes(kHeader1, kData1));
    writeFile(dir + "/" + kShard2, stBytes(kHeader2, kData2));
    writeFile(dir + "/model.safetensors.index.json", index);
    return dir;
}

std::string bytesOf(const Model& m, const std::string& name) {
    const TensorInfo* t = m.find(name);
    if (!t) return "<missing>";
    const auto b = m.rawBytes(*t);
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

#define EXPECT_ERROR(result, text)                                                                           \
    do {                                                                                                     \
        QVERIFY2(!(result).ok(), "accepted: " text);                                                         \
        QVERIFY2((result).error().message.find(text) != std::string::npos,                                   \
                 (result).error().message.c_str());                                                          \
    } while (0)

// "t<i>" (appended: GCC 12 -O3 warns falsely with -Wrestrict on "t" + std::to_string(i))
std::string tname(int i) {
    return std::string("t").append(std::to_string(i));
}

std::span<const uint8_t> span(const std::string& s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

} // namespace

class TestHfFolder : public QObject {
    Q_OBJECT

  private slots:
    void shardedFolder();
    void indexPathsMayNotLeaveFolder();
    void symlinkInsideFolderAndHubCache();
    void indexConsistency();
    void configErrors();
    void folderWithoutIndex();
    void shardedWriterLayout();
    void shardedWriterRoundTripDemo();
    void shardedWriterAbort();
    void singleShardWritesModelSafetensors();
};

void TestHfFolder::shardedFolder() {
    QTemporaryDir tmp;
    const std::string dir = makeSharded(tmp);
    // files the index does not list are ignored, even garbage, and even a stray model.safetensors
    writeFile(dir + "/model-00003-of-00003.safetensors", "garbage");
    writeFile(dir + "/model.safetensors", "garbage");
    auto r = openModel(dir + "/");
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    const Model& m = **r;
    QCOMPARE(m.format, ModelFormat::HuggingFaceFolder);
    QCOMPARE(m.name, std::string("sharded"));
    QCOMPARE(m.architecture, std::string("llama"));
    QCOMPARE(m.files.size(), size_t{2});
    QVERIFY(m.files[0]->path().ends_with(kShard1));
    QVERIFY(m.files[1]->path().ends_with(kShard2));
    std::vector<std::string> names;
    for (const auto& t : m.tensors)
        names.push_back(t.name);
    QCOMPARE(names, (std::vector<std::string>{"b", "a", "c", "d"}));
    QCOMPARE(m.tensors[0].fileIndex, 0u);
    QCOMPARE(m.tensors[1].fileIndex, 0u);
    QCOMPARE(m.tensors[2].fileIndex, 1u);
    QCOMPARE(m.tensors[3].fileIndex, 1u);
    QCOMPARE(m.tensors[1].offset, uint64_t(8 + kHeader1.size() + 3));
    QCOMPARE(m.tensors[3].offset, uint64_t(8 + kHeader2.size() + 8));
    QCOMPARE(bytesOf(m, "a"), std::string("aaaaAAAA"));
    QCOMPARE(bytesOf(m, "b"), std::string("BBB"));
    QCOMPARE(bytesOf(m, "c"), std::string("ccccCCCC"));
    QCOMPARE(bytesOf(m, "d"), std::string("dd"));
    QCOMPARE(m.find("c")->shape, (std::vector<int64_t>{2, 2}));
    QCOMPARE(m.totalBytes(), uint64_t{21});
    // metadata: model_type, hidden_size; null rope_scaling left out; no "safetensors." entry since the
    // first shard has no __metadata__
    QCOMPARE(m.metadata.size(), size_t{2});
    QCOMPARE(m.metadata[0].key, std::string("model_type"));
    QCOMPARE(m.metadata[1].value, std::string("2"));

    // picking the index file opens the folder
    auto viaIndex = openModel(dir + "/model.safetensors.index.json");
    QVERIFY2(viaIndex.ok(), viaIndex.ok() ? "" : viaIndex.error().message.c_str());
    QCOMPARE((*viaIndex)->format, ModelFormat::HuggingFaceFolder);
    QCOMPARE((*viaIndex)->tensors.size(), size_t{4});
}

void TestHfFolder::indexPathsMayNotLeaveFolder() {
    QTemporaryDir tmp;
    QTemporaryDir outside;
    const std::string outFile = outside.path().toStdString() + "/evil.safetensors";
    writeFile(outFile, stBytes(kHeader1, kData1));
    auto indexWith = [](const std::string& shard1) {
        return R"({"weight_map":{"a":")" + shard1 + R"(","b":")" + shard1 +
               R"(","c":"model-00002-of-00002.safetensors","d":"model-00002-of-00002.safetensors"}})";
    };
    {
        const std::string dir = makeSharded(tmp, indexWith("../x.safetensors"));
        writeFile(tmp.path().toStdString() + "/x.safetensors",
                  stBytes(kHeader1, kData1)); // exists, still refused
        auto r = openHfFolder(dir);
        EXPECT_ERROR(r, "model.safetensors.index.json: shard '../x.safetensors' contains '..'");
    }
    {
        const std::string dir = makeSharded(tmp, indexWith("sub/../../x.safetensors"));
        auto r = openHfFolder(dir);
        EXPECT_ERROR(r, "contains '..'");
    }
    {
        const std::string dir = makeSharded(tmp, indexWith(outFile));
        auto r = openHfFolder(dir);
        EXPECT_ERROR(r, "is an absolute path");
    }
    {
        const std::string dir = makeSharded(tmp, indexWith("link.safetensors"));
        fs::remove(dir + "/link.safetensors");
        fs::create_symlink(outFile, dir + "/link.safetensors");
        auto r = openHfFolder(dir);
        EXPECT_ERROR(r, "shard 'link.safetensors' resolves outside the model folder");
    }
    {
        const std::string dir = makeSharded(tmp, indexWith("sub/evil.safetensors"));
        fs::remove_all(dir + "/sub");
        fs::create_directory_symlink(outside.path().toStdString(), dir + "/sub"); // a linked folder
        auto r = openHfFolder(dir);
        EXPECT_ERROR(r, "resolves outside the model folder");
    }
    {
        const std::string dir = makeSharded(tmp, indexWith("missing.safetensors"));
        auto r = openHfFolder(dir);
        EXPECT_ERROR(r, "shard 'missing.safetensors' does not exist");
    }
    {
        const std::string dir = makeSharded(tmp, indexWith("adir"));
        fs::create_directories(dir + "/adir");
        auto r = openHfFolder(dir);
        EXPECT_ERROR(r, "is not a regular file");
    }
    {
        const std::string dir = makeSharded(tmp, indexWith(""));
        auto r = openHfFolder(dir);
        EXPECT_ERROR(r, "empty shard file name");
    }
}

void TestHfFolder::symlinkInsideFolderAndHubCache() {
    QTemporaryDir tmp;
    {
        // shard 1 is a link to a file in a subfolder of the model folder: allowed
        const std::string dir = makeSharded(tmp);
        fs::create_directories(dir + "/store");
        fs::rename(dir + "/" + kShard1, dir + "/store/s1");
        fs::create_symlink("store/s1", dir + "/" + kShard1);
        auto r = openHfFolder(dir);
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
        QCOMPARE(bytesOf(**r, "a"), std::string("aaaaAAAA"));
    }
    {
        // hub cache layout: models--x/snapshots/<rev>/<file> -> ../../blobs/<hash>
        const std::string repo = tmp.path().toStdString() + "/models--org--x";
        const std::string snap = repo + "/snapshots/0123abc";
        fs::create_directories(snap);
        fs::create_directories(repo + "/blobs");
        writeFile(repo + "/blobs/h1", stBytes(kHeader1, kData1));
        writeFile(repo + "/blobs/h2", stBytes(kHeader2, kData2));
        writeFile(repo + "/blobs/hi", kIndex);
        fs::create_symlink("../../blobs/h1", snap + "/" + kShard1);
        fs::create_symlink("../../blobs/h2", snap + "/" + kShard2);
        fs::create_symlink("../../blobs/hi", snap + "/model.safetensors.index.json");
        auto r = openHfFolder(snap);
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
        QCOMPARE((*r)->tensors.size(), size_t{4});
        QCOMPARE((*r)->name, std::string("0123abc"));
        // ... but not into some other repo's blobs
        writeFile(tmp.path().toStdString() + "/other", stBytes(kHeader2, kData2));
        fs::remove(snap + "/" + kShard2);
        fs::create_symlink("../../../other", snap + "/" + kShard2);
        auto bad = openHfFolder(snap);
        EXPECT_ERROR(bad, "resolves outside the model folder");
    }
}

void TestHfFolder::indexConsistency() {
    QTemporaryDir tmp;
    const std::string s1 = kShard1, s2 = kShard2;
    {
        const std::string idx = R"({"weight_map":{"a":")" + s1 + R"(","b":")" + s1 + R"(","c":")" + s2 +
                                R"(","d":")" + s2 + R"(","zz":")" + s1 + R"("}})";
        auto r = openHfFolder(makeSharded(tmp, idx));
        EXPECT_ERROR(r, "model.safetensors.index.json: tensor 'zz' is mapped to '"
                        "model-00001-of-00002.safetensors', which does not contain it");
    }
    {
        // 'a' lives in shard 1 but the index says shard 2
        const std::string idx = R"({"weight_map":{"a":")" + s2 + R"(","b":")" + s1 + R"(","c":")" + s2 +
                                R"(","d":")" + s2 + R"("}})";
        auto r = openHfFolder(makeSharded(tmp, idx));
        EXPECT_ERROR(r,
                     "tensor 'a' is mapped to 'model-00002-of-00002.safetensors', which does not contain it");
    }
    {
        // the same tensor in both shards
        const std::string dir = makeSharded(tmp);
        const std::string h2 = R"({"a":{"dtype":"F16","shape":[1],"data_offsets":[8,10]},)"
                               R"("c":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]}})";
        writeFile(dir + "/" + s2, stBytes(h2, kData2));
        auto r = openHfFolder(dir);
        EXPECT_ERROR(r, "tensor 'a' is in both 'model-00001-of-00002.safetensors' and "
                        "'model-00002-of-00002.safetensors'");
    }
    {
        // a tensor named twice in the weight_map (JSON libraries would silently keep one)
        const std::string idx = R"({"weight_map":{"a":")" + s1 + R"(","a":")" + s2 + R"("}})";
        auto r = openHfFolder(makeSharded(tmp, idx));
        EXPECT_ERROR(r, "model.safetensors.index.json: duplicate key 'a'");
    }
    {
        auto r = openHfFolder(makeSharded(tmp, "{not json"));
        EXPECT_ERROR(r, "model.safetensors.index.json: not valid JSON");
    }
    {
        auto r = openHfFolder(makeSharded(tmp, R"({"weight_map":[]})"));
        EXPECT_ERROR(r, "no \"weight_map\" object");
    }
    {
        auto r = openHfFolder(makeSharded(tmp, R"({"weight_map":{}})"));
        EXPECT_ERROR(r, "weight_map is empty");
    }
    {
        auto r = openHfFolder(makeSharded(tmp, R"({"weight_map":{"a":3}})"));
        EXPECT_ERROR(r, "weight_map entry for tensor 'a' is not a string");
    }
    {
        // a corrupt listed shard: the error names the shard
        const std::string dir = makeSharded(tmp);
        writeFile(dir + "/" + s2, stBytes(kHeader2, kData2 + "X"));
        auto r = openHfFolder(dir);
        EXPECT_ERROR(r, "model-00002-of-00002.safetensors: data bytes [10, 11) belong to no tensor");
    }
    {
        // tensors of a listed shard that the index does not name are still loaded
        const std::string idx = R"({"weight_map":{"a":")" + s1 + R"(","c":")" + s2 + R"("}})";
        auto r = openHfFolder(makeSharded(tmp, idx));
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
        QCOMPARE((*r)->tensors.size(), size_t{4});
    }
}

void TestHfFolder::configErrors() {
    QTemporaryDir tmp;
    {
        const std::string dir = makeSharded(tmp);
        writeFile(dir + "/config.json", "{\"model_type\": ");
        auto r = openHfFolder(dir);
        EXPECT_ERROR(r, "config.json: not valid JSON");
    }
    {
        const std::string dir = makeSharded(tmp);
        writeFile(dir + "/config.json", "[1, 2]");
        auto r = openHfFolder(dir);
        EXPECT_ERROR(r, "config.json: not a JSON object");
    }
    {
        const std::string dir = makeSharded(tmp);
        fs::remove(dir + "/config.json");
        auto r = openHfFolder(dir);
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
        QVERIFY((*r)->architecture.empty());
        QVERIFY((*r)->configJson.empty());
    }
    {
        // display forms: strings unquoted, lists joined, objects compact, floats as JSON writes them
        Model m;
        const std::string p = tmp.path().toStdString() + "/c.json";
        writeFile(p,
                  R"({"zeta":1,"architectures":["A","B"],"quantization_config":{"bits":4,"group_size":128},)"
                  R"("rope_theta":500000.0,"model_type":"qwen2","n_inner":null,"flag":false})");
        QVERIFY(applyHfConfig(m, p).ok());
        QCOMPARE(m.architecture, std::string("qwen2"));
        std::vector<std::pair<std::string, std::string>> got;
        for (const auto& it : m.metadata)
            got.emplace_back(it.key, it.value);
        const std::vector<std::pair<std::string, std::string>> want = {
            {"architectures", "A, B"},
            {"model_type", "qwen2"},
            {"rope_theta", "500000.0"},
            {"quantization_config", R"({"bits":4,"group_size":128})"},
            {"zeta", "1"},
            {"flag", "false"},
        };
        QCOMPARE(got, want);
    }
}

void TestHfFolder::folderWithoutIndex() {
    QTemporaryDir tmp;
    const std::string dir = tmp.path().toStdString() + "/gptq";
    fs::create_directories(dir);
    {
        auto r = openHfFolder(dir);
        EXPECT_ERROR(r, "no model.safetensors, model.safetensors.index.json or *.safetensors file");
    }
    // GPTQ-style: one oddly named file (plus another), read in name order
    writeFile(dir + "/z-extra.safetensors", stBytes(kHeader2, kData2));
    writeFile(dir + "/gptq_model-4bit-128g.safetensors", stBytes(kHeader1, kData1));
    writeFile(dir + "/.hidden.safetensors", "garbage");
    {
        auto r = openHfFolder(dir);
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
        QCOMPARE((*r)->files.size(), size_t{2});
        QVERIFY((*r)->files[0]->path().ends_with("gptq_model-4bit-128g.safetensors"));
        QCOMPARE((*r)->tensors.back().name, std::string("d"));
        QCOMPARE((*r)->tensors.back().fileIndex, 1u);
    }
    writeFile(dir + "/z-extra.safetensors", stBytes(kHeader1, kData1));
    {
        auto r = openHfFolder(dir);
        EXPECT_ERROR(r, "is in both 'gptq_model-4bit-128g.safetensors' and 'z-extra.safetensors'");
    }
    {
        auto r = openHfFolder(dir + "/nope");
        EXPECT_ERROR(r, "not a folder");
    }
}

void TestHfFolder::shardedWriterLayout() {
    // five U8[100] tensors, at most 250 data bytes per shard: t0 t1 | t2 t3 | t4
    QTemporaryDir tmp;
    const std::string dir = tmp.path().toStdString() + "/out";
    std::vector<SafetensorsTensorDecl> decls;
    for (int i = 0; i < 5; ++i)
        decls.push_back({tname(i), DType::U8, {100}});
    ShardedSafetensorsWriter w;
    ShardedWriteOptions opt;
    opt.maxShardBytes = 250;
    QVERIFY(w.open(dir, decls, opt).ok());
    QCOMPARE(w.shardNames(),
             (std::vector<std::string>{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                       "model-00003-of-00003.safetensors"}));
    for (int i = 0; i < 5; ++i)
        QVERIFY(w.writeTensor(span(std::string(100, static_cast<char>('A' + i)))).ok());
    // three hidden temporaries and their three lock files (one writer per output), nothing final
    QCOMPARE(filesIn(QString::fromStdString(dir)).size(), 6);
    for (const auto& f : filesIn(QString::fromStdString(dir)))
        QVERIFY(f.startsWith("."));
    QVERIFY(w.finish().ok());
    QCOMPARE(filesIn(QString::fromStdString(dir)),
             (QStringList{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                          "model-00003-of-00003.safetensors", "model.safetensors.index.json"}));
    // the index as huggingface_hub / GPTQModel write it: json.dumps(indent=2, sort_keys=True) + "\n"
    const std::string wantIndex = "{\n"
                                  "  \"metadata\": {\n"
                                  "    \"total_size\": 500\n"
                                  "  },\n"
                                  "  \"weight_map\": {\n"
                                  "    \"t0\": \"model-00001-of-00003.safetensors\",\n"
                                  "    \"t1\": \"model-00001-of-00003.safetensors\",\n"
                                  "    \"t2\": \"model-00002-of-00003.safetensors\",\n"
                                  "    \"t3\": \"model-00002-of-00003.safetensors\",\n"
                                  "    \"t4\": \"model-00003-of-00003.safetensors\"\n"
                                  "  }\n"
                                  "}\n";
    QCOMPARE(readAll(dir + "/model.safetensors.index.json"), wantIndex);
    // shard 3 byte for byte: header {"__metadata__":{"format":"pt"},"t4":{...}} padded to 8 with spaces
    std::string h3 =
        R"({"__metadata__":{"format":"pt"},"t4":{"dtype":"U8","shape":[100],"data_offsets":[0,100]}})";
    h3.append((8 - h3.size() % 8) % 8, ' ');
    QCOMPARE(readAll(dir + "/model-00003-of-00003.safetensors"), stBytes(h3, std::string(100, 'E')));

    auto r = openHfFolder(dir);
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    QCOMPARE((*r)->files.size(), size_t{3});
    for (int i = 0; i < 5; ++i) {
        QCOMPARE(bytesOf(**r, tname(i)), std::string(100, static_cast<char>('A' + i)));
        QCOMPARE((*r)->tensors[i].fileIndex, static_cast<uint32_t>(i / 2));
    }
}

void TestHfFolder::shardedWriterRoundTripDemo() {
    auto src = openModel(QZ_RESOURCES_DIR "/demo/stories260K");
    QVERIFY(src.ok());
    const Model& s = **src;
    std::vector<SafetensorsTensorDecl> decls;
    for (const auto& t : s.tensors)
        decls.push_back({t.name, t.dtype, t.shape});
    QTemporaryDir tmp;
    const std::string dir = tmp.path().toStdString() + "/copy";
    ShardedSafetensorsWriter w;
    ShardedWriteOptions opt;
    opt.maxShardBytes = 300'000;
    opt.metadata = {{"source", "stories260K"}};
    QVERIFY(w.open(dir, decls, opt).ok());
    for (const auto& t : s.tensors) {
        // write in two chunks to exercise chunked writes across shard boundaries
        const auto b = s.rawBytes(t);
        QVERIFY(w.writeChunk(b.subspan(0, b.size() / 2)).ok());
        QVERIFY(w.writeChunk(b.subspan(b.size() / 2)).ok());
    }
    QVERIFY(w.finish().ok());
    const size_t nShards = w.shardNames().size();
    QVERIFY(nShards >= 4); // 1,040,128 data bytes / 300,000 per shard
    QCOMPARE(w.totalBytes(), s.totalBytes());
    auto c = openHfFolder(dir);
    QVERIFY2(c.ok(), c.ok() ? "" : c.error().message.c_str());
    const Model& m = **c;
    QCOMPARE(m.files.size(), nShards);
    QCOMPARE(m.tensors.size(), s.tensors.size());
    std::vector<uint64_t> perFile(nShards, 0);
    for (size_t i = 0; i < s.tensors.size(); ++i) {
        QCOMPARE(m.tensors[i].name, s.tensors[i].name); // declared order survives sharding
        QCOMPARE(m.tensors[i].shape, s.tensors[i].shape);
        const auto x = s.rawBytes(s.tensors[i]), y = m.rawBytes(m.tensors[i]);
        QVERIFY(x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size()) == 0);
        perFile[m.tensors[i].fileIndex] += y.size();
    }
    for (uint64_t b : perFile)
        QVERIFY(b > 0 && b <= 300'000);
    // index: total_size and a weight_map that agrees with where the reader found each tensor
    const auto idx = nlohmann::json::parse(readAll(dir + "/model.safetensors.index.json"));
    QCOMPARE(idx["metadata"]["total_size"].get<uint64_t>(), s.totalBytes());
    QCOMPARE(idx["weight_map"].size(), s.tensors.size());
    for (const auto& t : m.tensors)
        QVERIFY(m.files[t.fileIndex]->path().ends_with(idx["weight_map"][t.name].get<std::string>()));
    bool sawSource = false;
    for (const auto& it : m.metadata)
        sawSource |= it.key == "safetensors.source" && it.value == "stories260K";
    QVERIFY(sawSource);
}

void TestHfFolder::shardedWriterAbort() {
    QTemporaryDir tmp;
    const std::string dir = tmp.path().toStdString() + "/out";
    std::vector<SafetensorsTensorDecl> decls;
    for (int i = 0; i < 4; ++i)
        decls.push_back({tname(i), DType::U8, {10}});
    ShardedWriteOptions opt;
    opt.maxShardBytes = 10;
    {
        ShardedSafetensorsWriter w;
        QVERIFY(w.open(dir, decls, opt).ok());
        QVERIFY(w.writeTensor(span(std::string(10, 'x'))).ok()); // shard 1 complete (still temporary)
        QVERIFY(w.writeChunk(span(std::string(4, 'y'))).ok());
        w.abort();
        QCOMPARE(filesIn(QString::fromStdString(dir)), QStringList{});
        QVERIFY(!w.writeTensor(span(std::string(10, 'x'))).ok());
    }
    {
        ShardedSafetensorsWriter w; // destroyed after three of four tensors
        QVERIFY(w.open(dir, decls, opt).ok());
        for (int i = 0; i < 3; ++i)
            QVERIFY(w.writeTensor(span(std::string(10, 'x'))).ok());
    }
    QCOMPARE(filesIn(QString::fromStdString(dir)), QStringList{});
    {
        ShardedSafetensorsWriter w; // finish too early
        QVERIFY(w.open(dir, decls, opt).ok());
        QVERIFY(w.writeTensor(span(std::string(10, 'x'))).ok());
        auto st = w.finish();
        QVERIFY(!st.ok());
        QVERIFY2(st.error().message.find("1 of 4") != std::string::npos, st.error().message.c_str());
    }
    QCOMPARE(filesIn(QString::fromStdString(dir)), QStringList{});
    {
        ShardedSafetensorsWriter w; // wrong size in the middle: error, everything removed
        QVERIFY(w.open(dir, decls, opt).ok());
        QVERIFY(w.writeTensor(span(std::string(10, 'x'))).ok());
        QVERIFY(!w.writeTensor(span(std::string(11, 'x'))).ok());
        QCOMPARE(filesIn(QString::fromStdString(dir)), QStringList{});
    }
    {
        ShardedSafetensorsWriter w;
        decls.push_back({"t0", DType::U8, {1}});
        auto st = w.open(dir, decls, opt);
        QVERIFY(!st.ok());
        QVERIFY2(st.error().message.find("duplicate tensor name 't0'") != std::string::npos,
                 st.error().message.c_str());
    }
    QCOMPARE(filesIn(QString::fromStdString(dir)), QStringList{});
}

void TestHfFolder::singleShardWritesModelSafetensors() {
    QTemporaryDir tmp;
    const std::string dir = tmp.path().toStdString() + "/one";
    std::vector<SafetensorsTensorDecl> decls = {{"w", DType::F32, {2, 2}}};
    const float vals[4] = {1, 2, 3, 4};
    {
        ShardedSafetensorsWriter w;
        QVERIFY(w.open(dir, decls).ok());
        QVERIFY(w.writeTensorFromF32(vals).ok());
        QVERIFY(w.finish().ok());
    }
    QCOMPARE(filesIn(QString::fromStdString(dir)), QStringList{"model.safetensors"});
    {
        ShardedSafetensorsWriter w; // alwaysIndex: one shard plus index, in a fresh folder; fdatasync on
        ShardedWriteOptions opt;
        opt.alwaysIndex = true;
        opt.durable = true;
        QVERIFY(w.open(dir + "2", decls, opt).ok());
        QVERIFY(w.writeTensorFromF32(vals).ok());
        QVERIFY(w.finish().ok());
    }
    QCOMPARE(filesIn(QString::fromStdString(dir + "2")),
             (QStringList{"model-00001-of-00001.safetensors", "model.safetensors.index.json"}));
    for (const std::string& d : {dir, dir + "2"}) {
        auto r = openModel(d);
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
        auto v = readTensorF32(**r, (*r)->tensors.at(0));
        QVERIFY(v.ok());
        QCOMPARE(*v, (std::vector<float>{1, 2, 3, 4}));
    }
    {
        ShardedSafetensorsWriter w; // a model without tensors still produces a valid file
        QVERIFY(w.open(dir + "3", {}).ok());
        QVERIFY(w.finish().ok());
        auto r = openHfFolder(dir + "3");
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
        QCOMPARE((*r)->tensors.size(), size_t{0});
    }
}

QTEST_GUILESS_MAIN(TestHfFolder)
#include "test_hf_folder.moc"
