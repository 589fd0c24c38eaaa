// Vocab loading: loadHfVocab must reproduce exactly the tokenizer.* keys that llama.cpp's
// convert_hf_to_gguf.py wrote for the test models (tests/data/golden/<model>/tokenizer-keys.json,
// dumped from llama.cpp's GGUF files by tests/tools/gguf_tokenizer_keys.py), key order and types
// included; the GGUF adapters round-trip; synthetic folders check the convert rules one by one
// (padding, added tokens, special-looking tokens, merges as pairs, merges.txt, pre-tokenizer names);
// a corrupted tokenizer.model is an error, never a crash.
#include <QtTest>

#include <QTemporaryDir>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "gguf/gguf_file.h"
#include "model/model.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/hf_vocab.h"
#include "tokenizer/model_vocab.h"
#include "tokenizer/spm_model.h"
#include "tokenizer/vocab.h"

using namespace qz;
using Json = nlohmann::ordered_json;
namespace fs = std::filesystem;

namespace {

const std::string kData = QZ_TEST_DATA;

std::string readFile(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void writeFile(const fs::path& p, const std::string& s) {
    std::ofstream out(p, std::ios::binary);
    out << s;
}

const char* typeName(TokenizerKv::Type t) {
    switch (t) {
        case TokenizerKv::Type::U32: return "UINT32";
        case TokenizerKv::Type::I32: return "INT32";
        case TokenizerKv::Type::Bool: return "BOOL";
        case TokenizerKv::Type::String: return "STRING";
        case TokenizerKv::Type::StringArray: return "ARRAY[STRING]";
        case TokenizerKv::Type::F32Array: return "ARRAY[FLOAT32]";
        case TokenizerKv::Type::I32Array: return "ARRAY[INT32]";
        default: return "?";
    }
}

// Compares every key (order, type, value) of tokenizerKvsForGguf(v) with the golden JSON dump.
void compareWithGolden(const Vocab& v, const std::string& goldenPath) {
    const Json golden = Json::parse(readFile(goldenPath));
    const Json& keys = golden.at("keys");
    const auto kvs = tokenizerKvsForGguf(v);
    std::vector<std::string> got, want;
    for (const auto& kv : kvs) got.push_back(kv.key);
    for (const auto& [k, _] : keys.items()) want.push_back(k);
    if (got != want) {
        std::string g, w;
        for (auto& s : got) g += s + " ";
        for (auto& s : want) w += s + " ";
        QFAIL(qPrintable(QString::fromStdString("key order differs:\n got  " + g + "\n want " + w)));
    }
    for (const auto& kv : kvs) {
        const Json& e = keys.at(kv.key);
        QCOMPARE(std::string(typeName(kv.type)), e.at("type").get<std::string>());
        const Json& val = e.at("value");
        switch (kv.type) {
            case TokenizerKv::Type::U32: QCOMPARE(kv.u, val.get<uint64_t>()); break;
            case TokenizerKv::Type::Bool: QCOMPARE(kv.b, val.get<bool>()); break;
            case TokenizerKv::Type::String: QCOMPARE(kv.str, val.get<std::string>()); break;
            case TokenizerKv::Type::StringArray: {
                QCOMPARE(kv.strings.size(), val.size());
                for (size_t i = 0; i < kv.strings.size(); ++i)
                    if (kv.strings[i] != val[i].get<std::string>())
                        QFAIL(qPrintable(QString("%1[%2]: got \"%3\" want \"%4\"")
                                             .arg(QString::fromStdString(kv.key)).arg(i)
                                             .arg(QString::fromStdString(kv.strings[i]))
                                             .arg(QString::fromStdString(val[i].get<std::string>()))));
                break;
            }
            case TokenizerKv::Type::F32Array: {
                QCOMPARE(kv.f32s.size(), val.size());
                for (size_t i = 0; i < kv.f32s.size(); ++i)
                    if (kv.f32s[i] != float(val[i].get<double>()))
                        QFAIL(qPrintable(QString("scores[%1]: got %2 want %3").arg(i).arg(kv.f32s[i])
                                             .arg(val[i].get<double>())));
                break;
            }
            case TokenizerKv::Type::I32Array: {
                QCOMPARE(kv.i32s.size(), val.size());
                for (size_t i = 0; i < kv.i32s.size(); ++i)
                    if (kv.i32s[i] != val[i].get<int32_t>())
                        QFAIL(qPrintable(QString("token_type[%1]: got %2 want %3").arg(i).arg(kv.i32s[i])
                                             .arg(val[i].get<int32_t>())));
                break;
            }
            default: QFAIL("unexpected type");
        }
    }
}

bool sameVocab(const Vocab& a, const Vocab& b) {
    auto ka = tokenizerKvsForGguf(a), kb = tokenizerKvsForGguf(b);
    if (ka.size() != kb.size()) return false;
    for (size_t i = 0; i < ka.size(); ++i) {
        const auto &x = ka[i], &y = kb[i];
        if (x.key != y.key || x.type != y.type || x.u != y.u || x.b != y.b || x.str != y.str ||
            x.strings != y.strings || x.f32s != y.f32s || x.i32s != y.i32s)
            return false;
    }
    return true;
}

// Minimal protobuf writer for synthetic tokenizer.model files.
struct Pb {
    std::string s;
    void varint(uint64_t v) {
        do {
            uint8_t b = v & 0x7F;
            v >>= 7;
            if (v) b |= 0x80;
            s += char(b);
        } while (v);
    }
    void key(uint32_t field, uint32_t wire) { varint(uint64_t(field) << 3 | wire); }
    void bytes(uint32_t field, const std::string& b) {
        key(field, 2);
        varint(b.size());
        s += b;
    }
    void f32(uint32_t field, float f) {
        key(field, 5);
        char buf[4];
        std::memcpy(buf, &f, 4);
        s.append(buf, 4);
    }
    void vint(uint32_t field, uint64_t v) {
        key(field, 0);
        varint(v);
    }
};

std::string piece(const std::string& text, float score, int type) {
    Pb p;
    p.bytes(1, text);
    p.f32(2, score);
    if (type != 1) p.vint(3, uint64_t(type));
    return p.s;
}

}  // namespace

class TestVocab : public QObject {
    Q_OBJECT
private slots:
    void bardLlamaMatchesConvert();
    void bardGpt2MatchesConvert();
    void bardGpt2FromVocabJsonAndMergesTxt();
    void ggufRoundTrip();
    void vocabFilesOfLlamaCpp();
    void goldenGgufTokenizerKeys();
    void spmConvertRules();
    void bpeConvertRules();
    void preTokenizerNames();
    void corruptSpmModel();
    void badGgufKvs();
    void stories260KAgreesWithItsGguf();
    void vocabOfOpenedModels();
};

void TestVocab::bardLlamaMatchesConvert() {
    auto v = loadHfVocab(kData + "/models/bard-llama");
    QVERIFY2(v.ok(), v.ok() ? "" : v.error().message.c_str());
    QCOMPARE(v->tokens.size(), size_t(512));
    QVERIFY(v->warnings.empty());
    compareWithGolden(*v, kData + "/golden/bard-llama/tokenizer-keys.json");
}

void TestVocab::bardGpt2MatchesConvert() {
    auto v = loadHfVocab(kData + "/models/bard-gpt2");
    QVERIFY2(v.ok(), v.ok() ? "" : v.error().message.c_str());
    QCOMPARE(v->tokens.size(), size_t(1024));
    QCOMPARE(v->merges.size(), size_t(767));
    compareWithGolden(*v, kData + "/golden/bard-gpt2/tokenizer-keys.json");
}

void TestVocab::bardGpt2FromVocabJsonAndMergesTxt() {
    // Without tokenizer.json: tokens from vocab.json, merges from merges.txt. gguf-py then finds no
    // added tokens to look bos/eos/unk names up in, so the ids come from config.json only (no unk).
    QTemporaryDir tmp;
    const fs::path src = kData + "/models/bard-gpt2";
    const fs::path dst = tmp.path().toStdString();
    for (const char* f : {"config.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"})
        fs::copy_file(src / f, dst / f);
    auto v = loadHfVocab(dst.string());
    QVERIFY2(v.ok(), v.ok() ? "" : v.error().message.c_str());
    auto ref = loadHfVocab(src.string());
    QVERIFY(ref.ok());
    QCOMPARE(v->tokens, ref->tokens);
    QCOMPARE(v->tokenTypes, ref->tokenTypes);
    QCOMPARE(v->merges, ref->merges);
    QCOMPARE(v->pre, std::string("gpt-2"));
    QCOMPARE(v->specialId("bos").value_or(0), 1023u);
    QCOMPARE(v->specialId("eos").value_or(0), 1023u);
    QVERIFY(!v->specialId("unk"));
}

void TestVocab::ggufRoundTrip() {
    for (const char* m : {"bard-llama", "bard-gpt2"}) {
        auto v = loadHfVocab(kData + "/models/" + m);
        QVERIFY(v.ok());
        // through the typed GGUF values the writer uses and back
        std::vector<TokenizerKv> kvs;
        for (const GgufKV& g : tokenizerGgufKvs(*v)) {
            TokenizerKv kv;
            kv.key = g.key;
            switch (g.value.type) {
                case GgufType::U32: kv.type = TokenizerKv::Type::U32; kv.u = g.value.bits; break;
                case GgufType::Bool: kv.type = TokenizerKv::Type::Bool; kv.b = g.value.bits != 0; break;
                case GgufType::String: kv.type = TokenizerKv::Type::String; kv.str = g.value.str; break;
                case GgufType::Array:
                    if (g.value.elemType == GgufType::String) {
                        kv.type = TokenizerKv::Type::StringArray;
                        kv.strings = g.value.strings;
                    } else if (g.value.elemType == GgufType::F32) {
                        kv.type = TokenizerKv::Type::F32Array;
                        for (float f : g.value.toF32Vector()) kv.f32s.push_back(f);
                    } else if (g.value.elemType == GgufType::I32) {
                        kv.type = TokenizerKv::Type::I32Array;
                        for (int64_t x : g.value.toIntVector()) kv.i32s.push_back(int32_t(x));
                    } else {
                        QFAIL("unexpected array type");
                    }
                    break;
                default: QFAIL("unexpected GGUF type");
            }
            kvs.push_back(std::move(kv));
        }
        auto back = vocabFromGgufKvs(kvs);
        QVERIFY2(back.ok(), back.ok() ? "" : back.error().message.c_str());
        QVERIFY(sameVocab(*v, *back));
    }
}

void TestVocab::vocabFilesOfLlamaCpp() {
    // llama.cpp's own vocab-only GGUF files parse, with the types llama.cpp requires.
    struct Case {
        const char* file;
        const char* model;
        const char* pre;
        size_t n;
    };
    for (const Case& c : {Case{"ggml-vocab-llama-spm.gguf", "llama", "default", 32000},
                          Case{"ggml-vocab-gpt-2.gguf", "gpt2", "gpt-2", 50257},
                          Case{"ggml-vocab-phi-3.gguf", "llama", "default", 32064},
                          Case{"ggml-vocab-deepseek-llm.gguf", "gpt2", "deepseek-llm", 102400}}) {
        auto f = GgufFile::open(kData + "/models/vocab/" + c.file);
        QVERIFY2(f.ok(), f.ok() ? "" : f.error().message.c_str());
        auto v = vocabFromGguf(**f);
        QVERIFY2(v.ok(), v.ok() ? "" : v.error().message.c_str());
        QCOMPARE(v->model, std::string(c.model));
        QCOMPARE(v->pre, std::string(c.pre));
        QCOMPARE(v->tokens.size(), c.n);
        if (v->model == "llama") {
            QCOMPARE(v->scores.size(), c.n);
            QCOMPARE(v->tokens[1], std::string("<s>"));
            QCOMPARE(v->tokenTypes[3], int32_t(TokenType::Byte));  // <0x00>
        } else {
            QVERIFY(!v->merges.empty());
        }
        // written back, the keys come out in the file's order with the same values
        std::vector<std::string> fileKeys;
        for (const auto& kv : (*f)->kvs)
            if (kv.key.rfind("tokenizer.ggml.", 0) == 0 || kv.key == "tokenizer.chat_template") fileKeys.push_back(kv.key);
        std::vector<std::string> outKeys;
        for (const auto& kv : tokenizerGgufKvs(*v)) outKeys.push_back(kv.key);
        std::sort(fileKeys.begin(), fileKeys.end());
        std::sort(outKeys.begin(), outKeys.end());
        // keys we do not model (e.g. remove_extra_whitespaces) are the only ones allowed to be missing
        for (const auto& k : outKeys) QVERIFY2(std::binary_search(fileKeys.begin(), fileKeys.end(), k), k.c_str());
    }
}

void TestVocab::goldenGgufTokenizerKeys() {
    // The tokenizer keys of llama.cpp's own files (convert_hf_to_gguf wrote them; llama-quantize copies
    // them unchanged) against ours from the HF folder, in the file's order.
    const std::pair<const char*, const char*> files[] = {{"bard-llama", "bard-llama-Q4_0.gguf"},
                                                         {"bard-gpt2", "bard-gpt2-BF16.gguf"}};
    for (const auto& [m, file] : files) {
        auto f = GgufFile::open(kData + "/golden/" + m + "/" + file);
        QVERIFY2(f.ok(), f.ok() ? "" : f.error().message.c_str());
        auto g = vocabFromGguf(**f);
        QVERIFY(g.ok());
        auto h = loadHfVocab(kData + "/models/" + m);
        QVERIFY(h.ok());
        QVERIFY(sameVocab(*g, *h));
        auto kvs = tokenizerGgufKvs(*h);
        size_t i = 0;
        for (const auto& kv : (*f)->kvs) {
            if (kv.key.rfind("tokenizer.", 0) != 0) continue;
            QVERIFY(i < kvs.size());
            QCOMPARE(kvs[i].key, kv.key);
            QVERIFY2(kvs[i].value == kv.value, kv.key.c_str());
            ++i;
        }
        QCOMPARE(i, kvs.size());
        qInfo("%s: %zu tokenizer keys match", file, i);
    }
}

void TestVocab::spmConvertRules() {
    QTemporaryDir tmp;
    const fs::path d = tmp.path().toStdString();
    Pb model;
    model.bytes(1, piece("<unk>", 0, 2));
    model.bytes(1, piece("<s>", 0, 3));
    model.bytes(1, piece("</s>", 0, 3));
    model.bytes(1, piece("<0x41>", 0, 6));
    model.bytes(1, piece("\xE2\x96\x81" "a", -1.5f, 1));
    model.bytes(1, piece("<ud>", 0, 4));   // USER_DEFINED in the model: convert writes NORMAL
    model.bytes(1, piece("<unused>", 0, 5));
    model.bytes(1, piece("b", -2.25f, 1));
    Pb trainer;
    trainer.vint(3, 2);
    model.bytes(2, trainer.s);
    writeFile(d / "tokenizer.model", model.s);
    writeFile(d / "config.json", R"({"vocab_size": 12, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 99})");
    writeFile(d / "added_tokens.json", R"({"<extra>": 8, "<far>": 50})");
    writeFile(d / "tokenizer_config.json", R"({
        "add_bos_token": false, "add_eos_token": true, "add_unk_token": true,
        "bos_token": "<s>", "unk_token": {"content": "<unk>"},
        "chat_template": "{{ messages }}",
        "added_tokens_decoder": {
            "9": {"content": "<|im_start|>", "special": false},
            "10": {"content": "x\u2581y", "special": false},
            "11": {"content": "plain", "special": true}
        }})");
    auto v = loadHfVocab(d.string());
    QVERIFY2(v.ok(), v.ok() ? "" : v.error().message.c_str());
    const std::vector<std::string> tokens = {"<unk>", "<s>", "</s>", "<0x41>", "\xE2\x96\x81" "a", "<ud>", "<unused>",
                                             "b", "<extra>", "<|im_start|>", "x y", "plain"};
    QCOMPARE(v->tokens, tokens);
    const std::vector<float> scores = {0, 0, 0, 0, -1.5f, 0, 0, -2.25f, -1000, -1000, -1000, -1000};
    QCOMPARE(v->scores, scores);
    const std::vector<int32_t> types = {2, 3, 3, 6, 1, 1, 5, 1, 4, 3, 4, 3};
    QCOMPARE(v->tokenTypes, types);
    QCOMPARE(v->model, std::string("llama"));
    QCOMPARE(v->pre, std::string("default"));
    // no tokenizer.json: names in tokenizer_config cannot be resolved; config.json gives bos/eos; 99 is out of range
    QCOMPARE(v->specialIds.size(), size_t(2));
    QCOMPARE(v->specialIds[0].kind, std::string("bos"));
    QCOMPARE(v->specialIds[0].id, 1u);
    QCOMPARE(v->specialIds[1].kind, std::string("eos"));
    QCOMPARE(v->specialIds[1].id, 2u);
    QCOMPARE(v->addFlags.size(), size_t(2));  // add_unk_token has no GGUF key
    QCOMPARE(v->addFlag("bos").value_or(true), false);
    QCOMPARE(v->addFlag("eos").value_or(false), true);
    QCOMPARE(v->chatTemplate.value_or(""), std::string("{{ messages }}"));
    QCOMPARE(v->warnings.size(), size_t(2));  // <far> out of range, pad id 99 out of range

    // padding: config vocab_size larger than the model
    writeFile(d / "config.json", R"({"vocab_size": 14})");
    fs::remove(d / "added_tokens.json");
    fs::remove(d / "tokenizer_config.json");
    v = loadHfVocab(d.string());
    QVERIFY(v.ok());
    QCOMPARE(v->tokens.size(), size_t(14));
    QCOMPARE(v->tokens[8], std::string("[PAD8]"));
    QCOMPARE(v->tokens[13], std::string("[PAD13]"));
    QCOMPARE(v->scores[13], -10000.0f);
    QCOMPARE(v->tokenTypes[13], 5);
    QVERIFY(v->specialIds.empty() && v->addFlags.empty());
}

void TestVocab::bpeConvertRules() {
    QTemporaryDir tmp;
    const fs::path d = tmp.path().toStdString();
    // merges as [a, b] pairs (transformers >= 4.45), with a space inside a part
    writeFile(d / "tokenizer.json", R"({
        "added_tokens": [{"id": 5, "content": "<|eot|>", "special": true},
                         {"id": 6, "content": "<tool>", "special": false},
                         {"id": 7, "content": "<pad>", "special": false}],
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},
        "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "a b": 3},
                  "merges": [["a", "b"], ["a ", "b"]]}})");
    writeFile(d / "tokenizer_config.json", R"({"eos_token": "<|eot|>", "bos_token": "<nope>"})");
    writeFile(d / "config.json", R"({"vocab_size": 9, "bos_token_id": 0, "eos_token_id": 1})");
    auto v = loadHfVocab(d.string());
    QVERIFY2(v.ok(), v.ok() ? "" : v.error().message.c_str());
    QCOMPARE(v->model, std::string("gpt2"));
    QCOMPARE(v->pre, std::string("llama-bpe"));
    const std::vector<std::string> tokens = {"a", "b", "ab", "a b", "[PAD4]", "<|eot|>", "<tool>", "<pad>", "[PAD8]"};
    QCOMPARE(v->tokens, tokens);
    const std::vector<int32_t> types = {1, 1, 1, 1, 5, 3, 4, 3, 5};
    QCOMPARE(v->tokenTypes, types);
    const std::vector<std::string> merges = {"a b", "a\xC4\xA0 b"};
    QCOMPARE(v->merges, merges);
    QVERIFY(v->scores.empty());
    // eos from the tokenizer.json lookup first, then bos from config.json (eos there is already set)
    QCOMPARE(v->specialIds.size(), size_t(2));
    QCOMPARE(v->specialIds[0].kind, std::string("eos"));
    QCOMPARE(v->specialIds[0].id, 5u);
    QCOMPARE(v->specialIds[1].kind, std::string("bos"));
    QCOMPARE(v->specialIds[1].id, 0u);

    // an id beyond vocab_size is an error (convert asserts)
    writeFile(d / "config.json", R"({"vocab_size": 6})");
    QVERIFY(!loadHfVocab(d.string()).ok());
}

void TestVocab::preTokenizerNames() {
    QCOMPARE(preTokenizerNameForRegex(R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)"),
             std::string("gpt-2"));
    QCOMPARE(preTokenizerNameForRegex(
                 R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"),
             std::string("qwen2"));
    QCOMPARE(preTokenizerNameForRegex(R"(\p{N}+)"), std::string());

    QTemporaryDir tmp;
    const fs::path d = tmp.path().toStdString();
    writeFile(d / "tokenizer.json", R"({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "\\p{N}+"}, "behavior": "Isolated"},
            {"type": "ByteLevel", "use_regex": false}]},
        "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}})");
    auto v = loadHfVocab(d.string());
    QVERIFY(!v.ok());
    QVERIFY2(v.error().message.find("pre-tokenizer") != std::string::npos, v.error().message.c_str());
    HfVocabOptions opt;
    opt.allowUnknownPreTokenizer = true;
    v = loadHfVocab(d.string(), {}, opt);
    QVERIFY(v.ok());
    QCOMPARE(v->pre, std::string("default"));
    QCOMPARE(v->warnings.size(), size_t(1));

    // tokenizers other than BPE are refused with a message
    writeFile(d / "tokenizer.json", R"({"model": {"type": "Unigram", "vocab": []}})");
    v = loadHfVocab(d.string());
    QVERIFY(!v.ok());
    QVERIFY(v.error().message.find("Unigram") != std::string::npos);
    fs::remove(d / "tokenizer.json");
    QVERIFY(!loadHfVocab(d.string()).ok());  // no tokenizer at all
}

void TestVocab::corruptSpmModel() {
    const std::string good = readFile(kData + "/models/bard-llama/tokenizer.model");
    QVERIFY(good.size() > 1000);
    auto span = [](const std::string& s) { return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()); };
    auto ok = parseSpmModel(span(good), "good");
    QVERIFY(ok.ok());
    QCOMPARE(ok->pieces.size(), size_t(512));
    QCOMPARE(ok->pieces[1].piece, std::string("<s>"));
    QCOMPARE(ok->pieces[1].type, 3);
    QCOMPARE(ok->modelType, 2);  // BPE
    QVERIFY(ok->byteFallback);
    QVERIFY(ok->addDummyPrefix);

    // truncations and bad bytes: errors, never crashes
    QVERIFY(!parseSpmModel({}, "empty").ok());
    for (size_t cut : {size_t(1), size_t(2), size_t(7), good.size() / 2, good.size() - 1}) {
        auto r = parseSpmModel(span(good.substr(0, cut)), "cut");
        QVERIFY2(!r.ok(), qPrintable(QString("cut at %1 accepted").arg(cut)));
        QVERIFY(r.error().message.find("cut") != std::string::npos);
    }
    QVERIFY(!parseSpmModel(span(std::string("\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11)), "huge").ok());
    QVERIFY(!parseSpmModel(span(std::string("\x0b\x00", 2)), "group").ok());
    QVERIFY(!parseSpmModel(span(std::string("\x0a\x02\x18\x09", 4)), "type9").ok());  // piece type 9
    std::mt19937 rng(1234);
    int accepted = 0;
    for (int i = 0; i < 3000; ++i) {
        std::string bad = good;
        const int flips = 1 + int(rng() % 4);
        for (int k = 0; k < flips; ++k) bad[rng() % bad.size()] = char(rng());
        auto r = parseSpmModel(span(bad), "fuzz");
        if (r.ok()) {
            ++accepted;
            QVERIFY(!r->pieces.empty());
        }
    }
    qInfo("fuzz: %d of 3000 mutated models still parse (the rest are errors)", accepted);
}

void TestVocab::badGgufKvs() {
    using T = TokenizerKv::Type;
    auto mk = [](std::string key, T t) {
        TokenizerKv kv;
        kv.key = std::move(key);
        kv.type = t;
        return kv;
    };
    auto model = mk("tokenizer.ggml.model", T::String);
    model.str = "llama";
    auto tokens = mk("tokenizer.ggml.tokens", T::StringArray);
    tokens.strings = {"<unk>", "<s>", "</s>"};
    QVERIFY(vocabFromGgufKvs({model, tokens}).ok());
    QVERIFY(!vocabFromGgufKvs({tokens}).ok());
    QVERIFY(!vocabFromGgufKvs({model}).ok());
    auto scores = mk("tokenizer.ggml.scores", T::F32Array);
    scores.f32s = {0, 0};
    QVERIFY(!vocabFromGgufKvs({model, tokens, scores}).ok());  // wrong length
    auto types = mk("tokenizer.ggml.token_type", T::F32Array);
    QVERIFY(!vocabFromGgufKvs({model, tokens, types}).ok());  // wrong type
    auto bos = mk("tokenizer.ggml.bos_token_id", T::I32);
    QVERIFY(!vocabFromGgufKvs({model, tokens, bos}).ok());  // ids must be UINT32
    bos.type = T::U32;
    bos.u = 7;
    auto r = vocabFromGgufKvs({model, tokens, bos});
    QVERIFY(r.ok());
    QVERIFY(!r->specialId("bos"));  // out of range: dropped with a warning
    QCOMPARE(r->warnings.size(), size_t(1));
    auto gpt2 = model;
    gpt2.str = "gpt2";
    QVERIFY(!vocabFromGgufKvs({gpt2, tokens}).ok());  // gpt2 needs merges
    QVERIFY(!vocabFromGgufKvs({model, tokens, model}).ok());  // duplicate key
}

void TestVocab::stories260KAgreesWithItsGguf() {
    // stories260K.gguf was written by llama.cpp's llama2.c converter (another code path than
    // convert_hf_to_gguf.py) from the same SentencePiece model as hf/tokenizer.model.
    auto h = loadHfVocab(kData + "/models/stories260K/hf");
    QVERIFY2(h.ok(), h.ok() ? "" : h.error().message.c_str());
    auto f = GgufFile::open(kData + "/models/stories260K/stories260K.gguf");
    QVERIFY(f.ok());
    auto g = vocabFromGguf(**f);
    QVERIFY2(g.ok(), g.ok() ? "" : g.error().message.c_str());
    QCOMPARE(h->tokens, g->tokens);
    QCOMPARE(h->scores, g->scores);
    QCOMPARE(h->tokenTypes, g->tokenTypes);
    QCOMPARE(g->model, std::string("llama"));
    QCOMPARE(g->specialId("unk").value_or(99), 0u);
    QCOMPARE(g->specialId("bos").value_or(99), 1u);
    QCOMPARE(g->specialId("eos").value_or(99), 2u);
    // seperator / padding are 0xFFFFFFFF there: not token ids, dropped with a warning as llama.cpp does
    QVERIFY(!g->specialId("sep") && !g->specialId("pad"));
    QCOMPARE(g->warnings.size(), size_t(2));
}

void TestVocab::vocabOfOpenedModels() {
    for (const char* p : {"/models/bard-llama", "/models/bard-gpt2", "/models/stories260K/stories260K.gguf",
                          "/models/stories260K/hf/model.safetensors"}) {
        auto m = openModel(kData + p);
        QVERIFY2(m.ok(), m.ok() ? "" : m.error().message.c_str());
        auto v = vocabForModel(**m);
        QVERIFY2(v.ok(), v.ok() ? "" : v.error().message.c_str());
        QCOMPARE(v->tokens.size(), std::string(p).find("gpt2") != std::string::npos ? size_t(1024) : size_t(512));
    }
    QTemporaryDir tmp;
    const fs::path d = tmp.path().toStdString();
    fs::copy_file(kData + "/models/bard-llama/config.json", d / "config.json");
    fs::copy_file(kData + "/models/bard-llama/model.safetensors", d / "model.safetensors");
    auto m = openModel(d.string());
    QVERIFY(m.ok());
    auto v = vocabForModel(**m);
    QVERIFY(!v.ok());
    QVERIFY2(v.error().message.find("no tokenizer") != std::string::npos, v.error().message.c_str());
}

QTEST_APPLESS_MAIN(TestVocab)
#include "test_vocab.moc"
