// HF → GGUF conversion against llama.cpp's convert_hf_to_gguf.py output (the goldens): tensor names,
// shapes and order, the F32/F16/BF16 bytes of every tensor (which checks the Q/K permutation and the
// GPT-2 transposition), and the hyper-parameter keys.
#include <QtTest>

#include <cmath>

#include "common/fp16.h"
#include "convert/hf_to_gguf.h"
#include "golden.h"
#include "sha256.h"
#include "model/model.h"

using namespace qz;

class TestHfToGguf : public QObject {
    Q_OBJECT
private slots:
    void tensorsMatchGolden_data();
    void tensorsMatchGolden();
    void llamaKeys();
    void gpt2Keys();
    void permutationByHand();
    void rejectsUnknownArchitecture();
    void sizeLabels();
    void llama3RopeFreqs();
};

void TestHfToGguf::tensorsMatchGolden_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<QString>("type");
    for (const char* m : {"bard-llama", "bard-gpt2"})
        for (const char* t : {"F32", "F16", "BF16"}) QTest::addRow("%s-%s", m, t) << QString::fromLatin1(m) << QString::fromLatin1(t);
}

void TestHfToGguf::tensorsMatchGolden() {
    QFETCH(QString, model);
    QFETCH(QString, type);
    auto m = openModel((QStringLiteral(QZ_TEST_DATA "/models/") + model).toStdString());
    QVERIFY2(m.ok(), m.ok() ? "" : m.error().message.c_str());
    auto plan = planHfToGguf(**m);
    QVERIFY2(plan.ok(), plan.ok() ? "" : plan.error().message.c_str());
    const auto all = golden::load(QStringLiteral(QZ_TEST_DATA "/golden/") + model + QStringLiteral("/tensors.tsv"));
    const auto gold = golden::forFile(all, (model + QLatin1Char('-') + type + QStringLiteral(".gguf")).toStdString());
    QVERIFY(!gold.empty());
    QCOMPARE(plan->tensors.size(), gold.size());
    std::vector<float> values;
    for (size_t i = 0; i < gold.size(); ++i) {
        const PlannedTensor& p = plan->tensors[i];
        if (gold[i].idx >= 0) QCOMPARE(p.ggufName, gold[i].tensor);  // same order as convert (bard-llama has idx)
        const PlannedTensor* q = nullptr;
        for (const auto& t : plan->tensors)
            if (t.ggufName == gold[i].tensor) q = &t;
        QVERIFY2(q, gold[i].tensor.c_str());
        std::string ne;
        for (size_t d = 0; d < q->ne.size(); ++d) ne += (d ? "x" : "") + std::to_string(q->ne[d]);
        QCOMPARE(ne, gold[i].ne);
        QVERIFY(produceTensor(**m, *plan, *q, values).ok());
        std::string sha;
        if (type == QLatin1String("F32") || q->forceF32) {
            sha = qz::test::sha256Hex(reinterpret_cast<const uint8_t*>(values.data()), values.size() * 4);
        } else {
            std::vector<uint16_t> h(values.size());
            for (size_t k = 0; k < values.size(); ++k)
                h[k] = type == QLatin1String("F16") ? fp32ToFp16(values[k]) : fp32ToBf16(values[k]);
            sha = qz::test::sha256Hex(reinterpret_cast<const uint8_t*>(h.data()), h.size() * 2);
        }
        QVERIFY2(sha == gold[i].sha256, (gold[i].tensor + " differs from llama.cpp's").c_str());
    }
}

namespace {
const GgufValue* kv(const ConversionPlan& p, const std::string& key) {
    for (const auto& e : p.kvs)
        if (e.key == key) return &e.value;
    return nullptr;
}
}  // namespace

// Expected values: what convert_hf_to_gguf.py wrote into bard-llama-F32.gguf (read with a Python struct dump).
void TestHfToGguf::llamaKeys() {
    auto m = openModel(QZ_TEST_DATA "/models/bard-llama");
    QVERIFY(m.ok());
    auto plan = planHfToGguf(**m);
    QVERIFY(plan.ok());
    QCOMPARE(kv(*plan, "general.architecture")->str, std::string("llama"));
    QCOMPARE(kv(*plan, "general.name")->str, std::string("Bard Llama"));
    QCOMPARE(kv(*plan, "general.size_label")->str, std::string("3.4M"));
    const std::pair<const char*, uint64_t> u32s[] = {
        {"llama.block_count", 4}, {"llama.context_length", 512}, {"llama.embedding_length", 256},
        {"llama.feed_forward_length", 768}, {"llama.attention.head_count", 8}, {"llama.attention.head_count_kv", 4},
        {"llama.attention.key_length", 32}, {"llama.attention.value_length", 32}, {"llama.vocab_size", 512},
        {"llama.rope.dimension_count", 32}, {"general.quantization_version", 2}};
    for (const auto& [k, v] : u32s) {
        const GgufValue* val = kv(*plan, k);
        QVERIFY2(val, k);
        QCOMPARE(val->type, GgufType::U32);
        QCOMPARE(*val->toUInt(), v);
    }
    QCOMPARE(kv(*plan, "llama.rope.freq_base")->type, GgufType::F32);
    QCOMPARE(*kv(*plan, "llama.rope.freq_base")->toDouble(), 10000.0);
    QCOMPARE(float(*kv(*plan, "llama.attention.layer_norm_rms_epsilon")->toDouble()), 1e-5f);
    QCOMPARE(kv(*plan, "tokenizer.ggml.model")->str, std::string("llama"));
    QCOMPARE(kv(*plan, "tokenizer.ggml.tokens")->arraySize(), uint64_t(512));
}

void TestHfToGguf::gpt2Keys() {
    auto m = openModel(QZ_TEST_DATA "/models/bard-gpt2");
    QVERIFY(m.ok());
    auto plan = planHfToGguf(**m);
    QVERIFY2(plan.ok(), plan.ok() ? "" : plan.error().message.c_str());
    QCOMPARE(kv(*plan, "general.size_label")->str, std::string("2.7M"));
    QCOMPARE(*kv(*plan, "gpt2.context_length")->toUInt(), uint64_t(256));
    QCOMPARE(*kv(*plan, "gpt2.feed_forward_length")->toUInt(), uint64_t(1024));
    QVERIFY(kv(*plan, "gpt2.attention.layer_norm_epsilon"));
    QVERIFY(!kv(*plan, "gpt2.attention.head_count_kv"));
    QCOMPARE(kv(*plan, "tokenizer.ggml.pre")->str, std::string("gpt-2"));
    QCOMPARE(kv(*plan, "tokenizer.ggml.merges")->arraySize(), uint64_t(767));
}

// core/convert/README.md A.5: out_row[h·hd + 2i + j] = in_row[h·hd + j·hd/2 + i]
void TestHfToGguf::permutationByHand() {
    // 2 heads of 4 rows, 1 column: rows 0..7 → head 0: 0,2,1,3 ; head 1: 4,6,5,7
    const float in[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    float out[8];
    permuteQK(in, out, 8, 1, 2);
    const float expect[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    for (int i = 0; i < 8; ++i) QCOMPARE(out[i], expect[i]);
}

void TestHfToGguf::rejectsUnknownArchitecture() {
    auto a = archParamsFromConfig(R"({"model_type": "bert", "hidden_size": 8})", "x/config.json");
    QVERIFY(!a.ok());
    QVERIFY(a.error().message.find("bert") != std::string::npos);
    auto b = archParamsFromConfig(R"({"model_type": "llama", "hidden_size": 8})", "x/config.json");
    QVERIFY(!b.ok());
    QVERIFY(!archParamsFromConfig("not json", "x").ok());
    // A field of another type is an error naming the field, never an exception out of the JSON library.
    const std::string llama = R"("hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "vocab_size": 8)";
    const std::pair<std::string, std::string> wrongTypes[] = {
        {R"({"model_type": 5})", "\"model_type\" is not a string"},
        {R"({"model_type": "llama", "tie_word_embeddings": "yes", )" + llama + "}", "tie_word_embeddings"},
        {R"({"model_type": "llama", "rope_scaling": {"rope_type": 3}, )" + llama + "}", "rope_type"},
        {R"({"model_type": "llama", "rope_scaling": {"type": []}, )" + llama + "}", "\"type\" is not a string"},
        {R"({"model_type": "qwen3_moe", "norm_topk_prob": 1, "num_experts": 4, "moe_intermediate_size": 8, )" +
             llama + "}",
         "norm_topk_prob"}};
    for (const auto& [config, fragment] : wrongTypes) {
        Result<ArchParams> r = makeError("");
        try {
            r = archParamsFromConfig(config, "x/config.json");
        } catch (const std::exception& e) {
            QFAIL((config + " threw " + e.what()).c_str());
        }
        QVERIFY2(!r.ok(), config.c_str());
        QVERIFY2(r.error().message.find(fragment) != std::string::npos, r.error().message.c_str());
    }
}

void TestHfToGguf::sizeLabels() {
    QCOMPARE(sizeLabel(3410000), std::string("3.4M"));
    QCOMPARE(sizeLabel(6738415616ull), std::string("6.7B"));
    QCOMPARE(sizeLabel(124439808), std::string("124M"));
    QCOMPARE(sizeLabel(260032), std::string("260K"));
}

// Llama 3.1 rope_scaling: the factors convert_hf_to_gguf.py writes as rope_freqs.weight, worked by
// hand for head_dim 8, θ 10000, factor 8, low 1, high 4, original context 8192: the wavelengths
// 2π·10000^(i/8) are 6.28, 62.8, 628 (all < 8192/4 → 1) and 6283 (between: smooth 0.10127 → 4.68145).
void TestHfToGguf::llama3RopeFreqs() {
    auto a = archParamsFromConfig(R"({"model_type": "llama", "hidden_size": 16, "intermediate_size": 32,
        "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 10, "rope_theta": 10000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192}})", "x/config.json");
    QVERIFY2(a.ok(), a.ok() ? "" : a.error().message.c_str());
    QVERIFY(a->llama3Rope);
    const auto f = llama3RopeFactors(*a);
    QCOMPARE(f.size(), size_t(4));
    QCOMPARE(f[0], 1.0f);
    QCOMPARE(f[1], 1.0f);
    QCOMPARE(f[2], 1.0f);
    QVERIFY(std::fabs(f[3] - 4.68145f) < 1e-4f);
    auto yarn = archParamsFromConfig(R"({"model_type": "llama", "hidden_size": 16, "intermediate_size": 32,
        "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 10, "rope_scaling": {"type": "yarn"}})", "x");
    QVERIFY(!yarn.ok());
    QVERIFY(yarn.error().message.find("yarn") != std::string::npos);
}

QTEST_APPLESS_MAIN(TestHfToGguf)
#include "test_hf_to_gguf.moc"
