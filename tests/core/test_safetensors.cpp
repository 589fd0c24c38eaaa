// safetensors reader (the writer is tested in test_safetensors_writer.cpp).
// Expected shapes come from the models' config.json; expected values were read independently with
// python3's json + struct modules (u64 header length, json.loads(header), struct.unpack at
// 8 + N + data_offsets[0] + index * element size), not with QuantZoo code.
#include <QDir>
#include <QFile>
#include <QTemporaryDir>
#include <QtTest>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstring>
#include <random>

#include "common/fp16.h"
#include "io/hf_folder.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "model/model.h"

using namespace qz;

namespace {

// A safetensors file built by hand: u64 LE length, header text, data.
std::string stBytes(const std::string& header, const std::string& data, int64_t lengthOverride = -1) {
    const uint64_t n = lengthOverride >= 0 ? static_cast<uint64_t>(lengthOverride) : header.size();
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i)
        s[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
    return s + header + data;
}

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

uint32_t f32Bits(const Model& m, const std::string& name, size_t index) {
    const TensorInfo* t = m.find(name);
    if (!t || index * 4 + 4 > t->nbytes) return 0xDEADBEEF;
    uint32_t u;
    std::memcpy(&u, m.rawBytes(*t).data() + index * 4, 4);
    return u;
}

uint16_t u16At(const Model& m, const std::string& name, size_t index) {
    const TensorInfo* t = m.find(name);
    if (!t || index * 2 + 2 > t->nbytes) return 0xDEAD;
    uint16_t u;
    std::memcpy(&u, m.rawBytes(*t).data() + index * 2, 2);
    return u;
}

} // namespace

class TestSafetensors : public QObject {
    Q_OBJECT

  private slots:
    void demoStories260K();
    void bardLlamaBf16();
    void bardGpt2Metadata();
    void singleFileUsesConfigBeside();
    void validEdgeCases();
    void corruptFiles_data();
    void corruptFiles();
    void deepJsonNoCrash();
    void miniFuzz();
};

void TestSafetensors::demoStories260K() {
    // config.json: hidden 64, ffn 172, 5 layers, 8 heads, 4 kv heads (head_dim 8), vocab 512, tied.
    const std::string dir = QZ_RESOURCES_DIR "/demo/stories260K";
    auto r = openModel(dir);
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    const Model& m = **r;
    QCOMPARE(m.format, ModelFormat::HuggingFaceFolder);
    QCOMPARE(m.name, std::string("stories260K"));
    QCOMPARE(m.architecture, std::string("llama"));
    QCOMPARE(m.files.size(), size_t{1});
    QCOMPARE(m.tensors.size(), size_t{2 + 5 * 9}); // embed + norm + 9 per layer, no lm_head (tied)
    const int64_t h = 64, ffn = 172, kv = 4 * 8, vocab = 512;
    struct Want {
        std::string name;
        std::vector<int64_t> shape;
    };
    const std::vector<Want> want = {
        {"model.embed_tokens.weight", {vocab, h}},
        {"model.layers.0.self_attn.q_proj.weight", {h, h}},
        {"model.layers.3.self_attn.k_proj.weight", {kv, h}},
        {"model.layers.4.self_attn.v_proj.weight", {kv, h}},
        {"model.layers.1.self_attn.o_proj.weight", {h, h}},
        {"model.layers.2.mlp.gate_proj.weight", {ffn, h}},
        {"model.layers.2.mlp.down_proj.weight", {h, ffn}},
        {"model.layers.2.mlp.up_proj.weight", {ffn, h}},
        {"model.layers.0.input_layernorm.weight", {h}},
        {"model.norm.weight", {h}},
    };
    for (const auto& w : want) {
        const TensorInfo* t = m.find(w.name);
        QVERIFY2(t, w.name.c_str());
        QCOMPARE(t->shape, w.shape);
        QCOMPARE(t->dtype, DType::F32);
        QCOMPARE(t->nbytes, t->numel() * 4);
    }
    const uint64_t perLayer = 2 * h * h + 2 * kv * h + 3 * ffn * h + 2 * h;
    QCOMPARE(m.totalParameters(), uint64_t(vocab * h + 5 * perLayer + h));
    // file order: data offsets ascending (python: embed_tokens at 0, then layer 0 q_proj, ..., model.norm
    // last)
    QCOMPARE(m.tensors.front().name, std::string("model.embed_tokens.weight"));
    QCOMPARE(m.tensors[1].name, std::string("model.layers.0.self_attn.q_proj.weight"));
    QCOMPARE(m.tensors.back().name, std::string("model.norm.weight"));
    for (size_t i = 1; i < m.tensors.size(); ++i)
        QCOMPARE(m.tensors[i].offset, m.tensors[i - 1].offset + m.tensors[i - 1].nbytes);
    // python: header length 4856, so data starts at 4864; model.norm.weight data_offsets [1039872, 1040128)
    QCOMPARE(m.tensors.front().offset, uint64_t{4864});
    QCOMPARE(m.find("model.norm.weight")->offset, uint64_t{4864 + 1039872});
    // values (python struct.unpack('<I')): embed[0], embed[1], embed[last], norm[63], down_proj(l2)[5][7],
    // k_proj(l4)[31][0]
    QCOMPARE(f32Bits(m, "model.embed_tokens.weight", 0), 0xbe96e950u); // -0.29474878
    QCOMPARE(f32Bits(m, "model.embed_tokens.weight", 1), 0x3f0fd864u); // 0.56189561
    QCOMPARE(f32Bits(m, "model.embed_tokens.weight", 32767), 0xbed91acdu);
    QCOMPARE(f32Bits(m, "model.norm.weight", 63), 0x3fda986fu); // 1.70777690
    QCOMPARE(f32Bits(m, "model.layers.2.mlp.down_proj.weight", 5 * 172 + 7), 0xbc94700cu);
    QCOMPARE(f32Bits(m, "model.layers.4.self_attn.k_proj.weight", 31 * 64), 0x3e3b2691u);
    auto v = readTensorF32(m, *m.find("model.norm.weight"));
    QVERIFY(v.ok());
    QCOMPARE((*v)[63], 1.7077769041061401f);

    auto meta = [&](const std::string& k) -> std::string {
        for (const auto& it : m.metadata)
            if (it.key == k) return it.value;
        return "<missing>";
    };
    QCOMPARE(meta("architectures"), std::string("LlamaForCausalLM"));
    QCOMPARE(meta("hidden_size"), std::string("64"));
    QCOMPARE(meta("num_hidden_layers"), std::string("5"));
    QCOMPARE(meta("num_attention_heads"), std::string("8"));
    QCOMPARE(meta("num_key_value_heads"), std::string("4"));
    QCOMPARE(meta("intermediate_size"), std::string("172"));
    QCOMPARE(meta("vocab_size"), std::string("512"));
    QCOMPARE(meta("torch_dtype"), std::string("float32"));
    QCOMPARE(meta("tie_word_embeddings"), std::string("true"));
    QCOMPARE(meta("rms_norm_eps"), std::string("1e-05"));
    QCOMPARE(meta("safetensors.format"), std::string("pt"));
    QCOMPARE(m.metadata.front().key, std::string("architectures"));
    QCOMPARE(m.configJson, readAll(dir + "/config.json"));
}

void TestSafetensors::bardLlamaBf16() {
    // config.json: hidden 256, ffn 768, 4 layers, 8 heads, 4 kv heads of head_dim 32, vocab 512, untied,
    // bf16.
    auto r = openModel(QZ_TEST_DATA "/models/bard-llama");
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    const Model& m = **r;
    QCOMPARE(m.architecture, std::string("llama"));
    QCOMPARE(m.tensors.size(), size_t{3 + 4 * 9});
    for (const auto& t : m.tensors)
        QCOMPARE(t.dtype, DType::BF16);
    QCOMPARE(m.find("lm_head.weight")->shape, (std::vector<int64_t>{512, 256}));
    QCOMPARE(m.find("model.layers.1.self_attn.k_proj.weight")->shape, (std::vector<int64_t>{128, 256}));
    QCOMPARE(m.find("model.layers.3.mlp.up_proj.weight")->shape, (std::vector<int64_t>{768, 256}));
    QCOMPARE(m.find("model.layers.0.mlp.down_proj.weight")->shape, (std::vector<int64_t>{256, 768}));
    // python: header length 4160, file size 6824520; names sort = offsets order in this file
    QCOMPARE(m.tensors.front().name, std::string("lm_head.weight"));
    QCOMPARE(m.tensors.front().offset, uint64_t{8 + 4160});
    QCOMPARE(m.tensors.back().offset + m.tensors.back().nbytes, uint64_t{6824520});
    // python struct.unpack('<H'): raw bf16 words and their float values
    QCOMPARE(u16At(m, "lm_head.weight", 0), uint16_t{0x3ea8});            // 0.328125
    QCOMPARE(u16At(m, "model.embed_tokens.weight", 3), uint16_t{0x3c61}); // 0.01373291015625
    QCOMPARE(u16At(m, "model.layers.3.mlp.up_proj.weight", 767 * 256 + 255), uint16_t{0xbcb0});
    QCOMPARE(u16At(m, "model.layers.1.self_attn.k_proj.weight", 100 * 256 + 17), uint16_t{0xbd02});
    auto v = readTensorF32(m, *m.find("model.norm.weight"));
    QVERIFY(v.ok());
    QCOMPARE((*v)[0], 1.0703125f);
    auto k = readTensorF32(m, *m.find("model.layers.1.self_attn.k_proj.weight"));
    QVERIFY(k.ok());
    QCOMPARE((*k)[100 * 256 + 17], -0.03173828125f);
}

void TestSafetensors::bardGpt2Metadata() {
    const std::string dir = QZ_TEST_DATA "/models/bard-gpt2";
    auto r = openHfFolder(dir);
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    const Model& m = **r;
    QCOMPARE(m.architecture, std::string("gpt2"));
    QCOMPARE(m.tensors.size(), size_t{4 + 3 * 12});
    QCOMPARE(m.find("transformer.wte.weight")->shape, (std::vector<int64_t>{1024, 256}));
    QCOMPARE(m.find("transformer.h.1.attn.c_attn.weight")->shape, (std::vector<int64_t>{256, 768}));
    QCOMPARE(m.find("transformer.h.2.mlp.c_fc.weight")->shape, (std::vector<int64_t>{256, 1024}));
    // python: wte[0] = -0.005161788780242205, c_attn(h.1)[255][767] = 0.04259524494409561
    auto wte = readTensorF32(m, *m.find("transformer.wte.weight"));
    QVERIFY(wte.ok());
    QCOMPARE((*wte)[0], -0.005161788780242205f);
    auto ca = readTensorF32(m, *m.find("transformer.h.1.attn.c_attn.weight"));
    QVERIFY(ca.ok());
    QCOMPARE((*ca)[255 * 768 + 767], 0.04259524494409561f);
    std::vector<std::string> keys;
    for (const auto& it : m.metadata)
        keys.push_back(it.key);
    // well-known keys first, in the documented order, then the rest (null n_inner is left out)
    QVERIFY(keys.size() > 8);
    QCOMPARE(std::vector<std::string>(keys.begin(), keys.begin() + 8),
             (std::vector<std::string>{"architectures", "model_type", "n_embd", "n_layer", "n_head",
                                       "vocab_size", "n_positions", "n_ctx"}));
    QVERIFY(std::find(keys.begin(), keys.end(), "n_inner") == keys.end());
    QVERIFY(std::find(keys.begin(), keys.end(), "summary_type") != keys.end());
    QCOMPARE(m.metadata[2].value, std::string("256"));
    QCOMPARE(m.metadata[3].value, std::string("3"));
}

void TestSafetensors::singleFileUsesConfigBeside() {
    const std::string path = QZ_TEST_DATA "/models/bard-llama/model.safetensors";
    auto r = openModel(path);
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    QCOMPARE((*r)->format, ModelFormat::SafetensorsFile);
    QCOMPARE((*r)->name, std::string("model"));
    QCOMPARE((*r)->architecture, std::string("llama"));
    QCOMPARE((*r)->tensors.size(), size_t{39});

    // a lone file without config.json
    QTemporaryDir tmp;
    QVERIFY(tmp.isValid());
    const std::string loneHeader = R"({"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})";
    const std::string p = writeFile(tmp.path(), "lone.safetensors", stBytes(loneHeader, "abcd"));
    auto l = openSafetensorsModel(p);
    QVERIFY2(l.ok(), l.ok() ? "" : l.error().message.c_str());
    QCOMPARE((*l)->name, std::string("lone"));
    QVERIFY((*l)->architecture.empty());
    QVERIFY((*l)->metadata.empty());
    QCOMPARE((*l)->tensors.at(0).offset, uint64_t(8 + loneHeader.size()));
}

void TestSafetensors::validEdgeCases() {
    // 0-d tensor, empty tensors (at the same offset as another), trailing header spaces, key order
    // different from data order, __metadata__ anywhere.
    const std::string header =
        R"({"b":{"dtype":"F32","shape":[],"data_offsets":[2,6]},"e2":{"dtype":"F32","shape":[0,3],)"
        R"("data_offsets":[2,2]},"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
        R"("__metadata__":{"format":"pt","x":"y"},"e1":{"dtype":"BF16","shape":[4,0],"data_offsets":[6,6]}}   )";
    const std::string file = stBytes(header, "xy1234");
    auto r =
        parseSafetensorsBytes(reinterpret_cast<const uint8_t*>(file.data()), file.size(), "edge.safetensors");
    QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    std::vector<std::string> names;
    for (const auto& t : r->tensors)
        names.push_back(t.name);
    QCOMPARE(names, (std::vector<std::string>{"a", "e2", "b", "e1"})); // by offset, then end, then name
    QCOMPARE(r->tensors[2].shape.size(), size_t{0});
    QCOMPARE(r->tensors[2].nbytes, uint64_t{4});
    QCOMPARE(r->tensors[2].offset, uint64_t(8 + header.size() + 2));
    QCOMPARE(r->metadata.size(), size_t{2});

    // no tensors at all
    const std::string none = stBytes("{}", "");
    auto n = parseSafetensorsBytes(reinterpret_cast<const uint8_t*>(none.data()), none.size(), "n");
    QVERIFY(n.ok());
    QCOMPARE(n->tensors.size(), size_t{0});
}

void TestSafetensors::corruptFiles_data() {
    QTest::addColumn<QByteArray>("bytes");
    QTest::addColumn<QString>("expect");
    auto row = [](const char* name, const std::string& bytes, const char* expect) {
        QTest::newRow(name) << QByteArray(bytes.data(), static_cast<qsizetype>(bytes.size()))
                            << QString(expect);
    };
    const std::string ok2 = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F16","shape":[2,2],"data_offsets":[8,16]}})";
    const std::string data16(16, '\x11');
    const std::string valid = stBytes(ok2, data16);
    row("empty file", "", "too short");
    row("seven bytes", std::string(7, '\0'), "too short");
    row("truncated data", valid.substr(0, valid.size() - 3), "outside the data section");
    row("truncated in header", valid.substr(0, 40), "runs past the end of the file");
    row("header length past the end", stBytes(ok2, data16, static_cast<int64_t>(ok2.size() + 17)),
        "runs past the end of the file");
    row("header length absurd", stBytes(ok2, data16, int64_t{1} << 62), "is absurd");
    row("header length 100000001", stBytes(ok2, data16, 100'000'001), "is absurd");
    row("header length zero", stBytes("", data16), "does not start with '{'");
    row("not JSON", stBytes("{this is not json}", ""), "not valid JSON");
    row("JSON array", stBytes("[1,2,3]", ""), "does not start with '{'");
    row("truncated JSON", stBytes(R"({"a":{"dtype":"F32")", ""), "not valid JSON");
    row("invalid UTF-8", stBytes("{\"\xff\xfe\":{}}", ""), "not valid JSON");
    row("trailing garbage after JSON", stBytes("{} x", ""), "not valid JSON");
    row("entry not object", stBytes(R"({"a":1})", ""), "tensor 'a' is not a JSON object");
    row("no dtype", stBytes(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", "1234"),
        "tensor 'a' has no \"dtype\"");
    row("dtype not string", stBytes(R"({"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", "1234"),
        "tensor 'a' has no \"dtype\"");
    row("unknown dtype", stBytes(R"({"a":{"dtype":"F4","shape":[1],"data_offsets":[0,4]}})", "1234"),
        "tensor 'a' has unknown or unsupported dtype 'F4'");
    row("ggml dtype name",
        stBytes(R"({"a":{"dtype":"Q4_0","shape":[32],"data_offsets":[0,18]}})", std::string(18, 'q')),
        "tensor 'a' has unknown or unsupported dtype 'Q4_0'");
    row("no shape", stBytes(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", "1234"),
        "tensor 'a' has no \"shape\"");
    row("shape not ints", stBytes(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", "1234"),
        "not an integer");
    row("shape string", stBytes(R"({"a":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}})", "1234"),
        "not an integer");
    row("negative shape", stBytes(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "1234"),
        "tensor 'a' has a negative dimension");
    row("overflowing shape",
        stBytes(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", "1234"),
        "overflows");
    row("overflowing shape with a zero",
        stBytes(R"({"a":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})", ""),
        "overflows");
    row("shape above int64",
        stBytes(R"({"a":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,4]}})", "1234"),
        "too large");
    row("byte size overflows",
        stBytes(R"({"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,4]}})", "1234"),
        "overflows");
    row("shape above uint64",
        stBytes(R"({"a":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,4]}})", "1234"),
        "not an integer");
    row("shape/byte mismatch",
        stBytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", "12345678"),
        "(12 bytes) but data_offsets [0, 8) span 8 bytes");
    row("no data_offsets", stBytes(R"({"a":{"dtype":"F32","shape":[1]}})", "1234"), "no \"data_offsets\"");
    row("three data_offsets", stBytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", "1234"),
        "no \"data_offsets\"");
    row("negative data_offsets", stBytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}})", "1"),
        "not non-negative integers");
    row("float data_offsets", stBytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1.0]}})", "1"),
        "not non-negative integers");
    row("end before begin", stBytes(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})", "1234"),
        "end < begin");
    row("out of range offsets",
        stBytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", "12345678"),
        "tensor 'a' data_offsets [4, 12) lie outside the data section (8 bytes)");
    row("huge offsets",
        stBytes(
            R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[9223372036854775806,9223372036854775807]}})",
            "1"),
        "outside the data section");
    row("overlap",
        stBytes(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                "12345678"),
        "tensor 'y' data_offsets [4, 8) overlap tensor 'x' [0, 8)");
    row("same range twice",
        stBytes(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                R"("y":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                "1234"),
        "overlap tensor 'x'");
    row("empty tensor inside another",
        stBytes(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("y":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
                "12345678"),
        "overlap tensor 'x'");
    row("gap at start", stBytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", "12345678"),
        "data bytes [0, 4) belong to no tensor (gap before tensor 'a')");
    row("gap between",
        stBytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                R"("b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}})",
                "123"),
        "data bytes [1, 2) belong to no tensor");
    row("trailing bytes", stBytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "12"),
        "data bytes [1, 2) belong to no tensor (trailing");
    row("data but no tensors", stBytes("{}", "1"), "trailing");
    row("duplicate tensor",
        stBytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                "12"),
        "duplicate tensor name 'a'");
    row("duplicate field",
        stBytes(R"({"a":{"dtype":"U8","dtype":"F32","shape":[1],"data_offsets":[0,1]}})", "1"),
        "duplicate key 'dtype'");
    row("object inside shape", stBytes(R"({"a":{"dtype":"U8","shape":[{}],"data_offsets":[0,1]}})", "1"),
        "not an integer");
    row("array inside data_offsets",
        stBytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[[0],1]}})", "1"),
        "not non-negative integers");
    row("one data_offset", stBytes(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", "1"),
        "no \"data_offsets\"");
    row("shape is object", stBytes(R"({"a":{"dtype":"U8","shape":{},"data_offsets":[0,1]}})", "1"),
        "no \"shape\" array");
    row("dtype is array", stBytes(R"({"a":{"dtype":["U8"],"shape":[1],"data_offsets":[0,1]}})", "1"),
        "no \"dtype\" string");
    row("tensor is array", stBytes(R"({"a":[1]})", ""), "tensor 'a' is not a JSON object");
    row("metadata nested", stBytes(R"({"__metadata__":{"x":{"y":"z"}}})", ""), "is not a string");
    row("duplicate metadata key", stBytes(R"({"__metadata__":{"x":"1","x":"2"}})", ""), "duplicate key 'x'");
    row("duplicate metadata block", stBytes(R"({"__metadata__":{},"__metadata__":{}})", ""),
        "duplicate tensor name '__metadata__'");
    row("metadata not object", stBytes(R"({"__metadata__":[1]})", ""),
        "\"__metadata__\" is not a JSON object");
    row("metadata value not string", stBytes(R"({"__metadata__":{"format":1}})", ""), "is not a string");
}

void TestSafetensors::corruptFiles() {
    QFETCH(QByteArray, bytes);
    QFETCH(QString, expect);
    QTemporaryDir tmp;
    QVERIFY(tmp.isValid());
    const std::string path = writeFile(tmp.path(), "model.safetensors",
                                       std::string(bytes.constData(), static_cast<size_t>(bytes.size())));
    auto r = openSafetensorsModel(path);
    QVERIFY2(!r.ok(), "corrupt file was accepted");
    const std::string& msg = r.error().message;
    QVERIFY2(msg.rfind("model.safetensors: ", 0) == 0, msg.c_str()); // names the file first
    QVERIFY2(msg.find(expect.toStdString()) != std::string::npos, msg.c_str());
    // and through a folder too
    auto f = openHfFolder(tmp.path().toStdString());
    QVERIFY(!f.ok());
    QVERIFY2(f.error().message.find(expect.toStdString()) != std::string::npos, f.error().message.c_str());
}

void TestSafetensors::deepJsonNoCrash() {
    // 300000 nested arrays inside the header: must be an error, not a stack overflow.
    std::string h = "{\"a\":" + std::string(300000, '[') + std::string(300000, ']') + "}";
    const std::string file = stBytes(h, "");
    auto r = parseSafetensorsBytes(reinterpret_cast<const uint8_t*>(file.data()), file.size(), "deep");
    QVERIFY(!r.ok());
    QVERIFY2(r.error().message.find("tensor 'a' is not a JSON object") != std::string::npos,
             r.error().message.c_str());
    // deep nesting inside an ignored extra field is fine
    std::string extra = R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":)" +
                        std::string(300000, '[') + std::string(300000, ']') + "}}";
    const std::string f3 = stBytes(extra, "z");
    auto r3 = parseSafetensorsBytes(reinterpret_cast<const uint8_t*>(f3.data()), f3.size(), "deep");
    QVERIFY2(r3.ok(), r3.ok() ? "" : r3.error().message.c_str());
    QCOMPARE(r3->tensors.size(), size_t{1});
    // a shape with 2000 dimensions of 1: refused without building a huge vector
    std::string dims = "1";
    for (int i = 1; i < 2000; ++i)
        dims += ",1";
    const std::string f4 =
        stBytes(R"({"a":{"dtype":"U8","shape":[)" + dims + R"(],"data_offsets":[0,1]}})", "z");
    auto r4 = parseSafetensorsBytes(reinterpret_cast<const uint8_t*>(f4.data()), f4.size(), "deep");
    QVERIFY(!r4.ok());
    QVERIFY2(r4.error().message.find("more than 1024 dimensions") != std::string::npos,
             r4.error().message.c_str());
    std::string unclosed = "{\"a\":" + std::string(300000, '{');
    const std::string f2 = stBytes(unclosed, "");
    auto r2 = parseSafetensorsBytes(reinterpret_cast<const uint8_t*>(f2.data()), f2.size(), "deep");
    QVERIFY(!r2.ok());
}

void TestSafetensors::miniFuzz() {
    // Random byte mutations of a valid file's header (and sometimes its length prefix): the parser must
    // return ok or an error, never crash; when it accepts, the tensors must tile the data exactly.
    const std::string header =
        R"({"__metadata__":{"format":"pt"},"a.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
        R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]},"c":{"dtype":"U8","shape":[0],"data_offsets":[32,32]},)"
        R"("d":{"dtype":"I64","shape":[1,1],"data_offsets":[32,40]}})";
    const std::string base = stBytes(header, std::string(40, '\x5A'));
    {
        auto r = parseSafetensorsBytes(reinterpret_cast<const uint8_t*>(base.data()), base.size(), "fuzz");
        QVERIFY2(r.ok(), r.ok() ? "" : r.error().message.c_str());
    }
    const char interesting[] = "{}[],:\"0123456789-.eE \\u\xff\x00";
    std::mt19937_64 rng(20261127);
    const auto start = std::chrono::steady_clock::now();
    int accepted = 0, rejected = 0;
    const int iterations = 50000;
    for (int it = 0; it < iterations; ++it) {
        std::string f = base;
        const int edits = 1 + static_cast<int>(rng() % 4);
        for (int e = 0; e < edits; ++e) {
            const uint64_t kind = rng() % 10;
            if (f.size() < 8) break; // truncated below the length prefix: nothing left to edit
            if (kind == 0) {         // length prefix byte
                f[rng() % 8] = static_cast<char>(rng());
            } else if (kind == 1) { // delete a header byte
                const size_t pos = 8 + rng() % header.size();
                if (pos < f.size()) f.erase(pos, 1);
            } else if (kind == 2) { // truncate
                f.resize(rng() % f.size());
            } else {
                const size_t pos = 8 + rng() % header.size();
                if (pos < f.size())
                    f[pos] = (kind < 6) ? static_cast<char>(rng())
                                        : interesting[rng() % (sizeof(interesting) - 1)];
            }
        }
        auto r =
            parseSafetensorsBytes(reinterpret_cast<const uint8_t*>(f.data()), f.size(), "fuzz.safetensors");
        if (r.ok()) {
            ++accepted;
            uint64_t expect = r->dataStart;
            for (const auto& t : r->tensors) {
                QVERIFY(t.offset == expect);
                QVERIFY(t.offset + t.nbytes <= f.size());
                expect += t.nbytes;
            }
            QCOMPARE(expect, static_cast<uint64_t>(f.size()));
        } else {
            ++rejected;
            QVERIFY(r.error().message.rfind("fuzz.safetensors: ", 0) == 0);
        }
    }
    QVERIFY(rejected > iterations / 2); // the mutations really did break most files

    // The demo model's real header (4856 bytes, 47 tensors), mutated in place and restored each time.
    std::string demo = readAll(QZ_RESOURCES_DIR "/demo/stories260K/model.safetensors");
    QCOMPARE(demo.size(), size_t{1044992});
    const size_t headerEnd = 8 + 4856;
    int demoAccepted = 0;
    const int demoIterations = 3000;
    for (int it = 0; it < demoIterations; ++it) {
        size_t pos[4];
        char old[4];
        const int edits = 1 + static_cast<int>(rng() % 4);
        for (int e = 0; e < edits; ++e) {
            pos[e] = 8 + rng() % (headerEnd - 8);
            old[e] = demo[pos[e]];
            demo[pos[e]] =
                (rng() % 2) ? static_cast<char>(rng()) : interesting[rng() % (sizeof(interesting) - 1)];
        }
        auto r = parseSafetensorsBytes(reinterpret_cast<const uint8_t*>(demo.data()), demo.size(), "demo");
        if (r.ok()) {
            ++demoAccepted;
            uint64_t total = 0;
            for (const auto& t : r->tensors)
                total += t.nbytes;
            QCOMPARE(total, uint64_t(demo.size() - headerEnd));
        }
        for (int e = edits - 1; e >= 0; --e)
            demo[pos[e]] = old[e];
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    qInfo(
        "mini fuzz: %d small-file iterations (%d accepted), %d demo-header iterations (%d accepted), %.2f s",
        iterations, accepted, demoIterations, demoAccepted, secs);
    QVERIFY(secs < 20.0);
}

QTEST_GUILESS_MAIN(TestSafetensors)
#include "test_safetensors.moc"
