// HF → GGUF for qwen3, qwen3moe, mixtral, gemma2, gemma3 and phi3 on tiny seeded models
// (tests/core/tiny_archs.h). Expected GGUF names, shapes and keys are written out here from llama.cpp's
// tensor and key tables for each architecture (core/convert/README.md B), not taken from the converter;
// values are checked against the safetensors source: Gemma's norms shifted by 1, experts stacked in
// expert order, phi3's fused tensors unchanged, the router kept F32.
#include <QTemporaryDir>
#include <QtTest>

#include <map>

#include "convert/hf_to_gguf.h"
#include "export/gguf_export.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_reader.h"
#include "infer/text_tokens.h"
#include "model/model.h"
#include "tiny_archs.h"

using namespace qz;
using namespace qztest;

namespace {

using Shapes = std::map<std::string, std::vector<int64_t>>;  // GGUF name -> ne

Shapes expectedTensors(const std::string& variant) {
    const std::string arch = tinyBase(variant);
    const TinyDims d = tinyDims(variant);
    const int64_t q = d.heads * d.headDim, kv = d.kvHeads * d.headDim, H = d.hidden;
    const bool gemma = arch == "gemma2" || arch == "gemma3";
    Shapes s;
    s["token_embd.weight"] = {H, d.vocab};
    s["output_norm.weight"] = {H};
    if (!gemma) s["output.weight"] = {H, d.vocab};
    for (int64_t l = 0; l < d.layers; ++l) {
        const std::string b = "blk." + std::to_string(l) + ".";
        s[b + "attn_norm.weight"] = {H};
        s[b + "attn_output.weight"] = {q, H};
        if (arch == "phi3") {
            s[b + "attn_qkv.weight"] = {H, q + 2 * kv};
        } else {
            s[b + "attn_q.weight"] = {H, q};
            s[b + "attn_k.weight"] = {H, kv};
            s[b + "attn_v.weight"] = {H, kv};
        }
        if (arch == "qwen3" || arch == "qwen3moe" || arch == "gemma3") {
            s[b + "attn_q_norm.weight"] = {d.headDim};
            s[b + "attn_k_norm.weight"] = {d.headDim};
        }
        s[b + "ffn_norm.weight"] = {H};
        if (gemma) {
            s[b + "post_attention_norm.weight"] = {H};
            s[b + "post_ffw_norm.weight"] = {H};
        }
        if (d.experts > 0) {
            const int64_t f = arch == "mixtral" ? d.ffn : d.expertFf;
            s[b + "ffn_gate_inp.weight"] = {H, d.experts};
            s[b + "ffn_gate_exps.weight"] = {H, f, d.experts};
            s[b + "ffn_up_exps.weight"] = {H, f, d.experts};
            s[b + "ffn_down_exps.weight"] = {f, H, d.experts};
        } else if (arch == "phi3") {
            s[b + "ffn_up.weight"] = {H, 2 * d.ffn};
            s[b + "ffn_down.weight"] = {d.ffn, H};
        } else {
            s[b + "ffn_gate.weight"] = {H, d.ffn};
            s[b + "ffn_up.weight"] = {H, d.ffn};
            s[b + "ffn_down.weight"] = {d.ffn, H};
        }
    }
    return s;
}

// tokenizer.ggml.add_space_prefix of a GGUF (SentencePiece's default true when absent).
bool spacePrefixOf(const Model& g) {
    const GgufFile* f = ggufOf(g);
    return f && f->getBool("tokenizer.ggml.add_space_prefix").value_or(true);
}

std::string ggufArchOf(const std::string& arch) { return arch == "mixtral" ? "llama" : arch; }

// The values of the text model's tensor hfName ("model.layers.1...") in the variant's layout.
std::vector<float> hfValues(const std::string& variant, std::string hfName) {
    if (hfName.rfind("model.", 0) == 0) hfName = tinyPrefix(variant) + hfName.substr(6);
    for (const auto& t : tinyTensors(variant))
        if (t.name == hfName) return tinyValues(variant, t);
    return {};
}

}  // namespace

class TestArchConvert : public QObject {
    Q_OBJECT
private slots:
    void namesShapesAndKeys_data() {
        QTest::addColumn<QString>("arch");
        for (const auto& a : tinyArchNames()) QTest::newRow(a.c_str()) << QString::fromStdString(a);
        for (const auto& a : tinyVariantNames()) QTest::newRow(a.c_str()) << QString::fromStdString(a);
    }
    void namesShapesAndKeys() {
        QFETCH(QString, arch);
        const std::string variant = arch.toStdString(), a = tinyBase(variant);
        QTemporaryDir tmp;
        const std::string dir = tmp.filePath("model").toStdString();
        auto st = writeTinyModel(dir, variant, QZ_TEST_DATA);
        QVERIFY2(st, st ? "" : st.error().message.c_str());
        auto m = openModel(dir);
        QVERIFY2(m, m ? "" : m.error().message.c_str());
        GgufExportParams p;
        p.outputPath = tmp.filePath("out.gguf").toStdString();
        p.type = "F32";
        auto r = exportGguf(**m, p, {}, {});
        QVERIFY2(r, r ? "" : r.error().message.c_str());
        auto g = openModel(p.outputPath);
        QVERIFY2(g, g ? "" : g.error().message.c_str());
        const GgufFile* f = ggufOf(**g);
        QVERIFY(f);

        // Tensors: exactly the expected names and shapes; every one F32 in an F32 export.
        const Shapes want = expectedTensors(variant);  // the vision tower and projector are not in it
        QCOMPARE((*g)->tensors.size(), want.size());
        for (const auto& t : (*g)->tensors) {
            auto it = want.find(t.name);
            QVERIFY2(it != want.end(), qPrintable("unexpected tensor " + QString::fromStdString(t.name)));
            const std::vector<int64_t> ne(t.shape.rbegin(), t.shape.rend());
            QVERIFY2(ne == it->second, qPrintable("shape of " + QString::fromStdString(t.name)));
        }

        // Keys llama.cpp's loader reads for this architecture.
        const std::string ga = ggufArchOf(a);
        const TinyDims d = tinyDims(variant);
        QCOMPARE(f->getString("general.architecture").value_or(""), ga);
        QCOMPARE(f->getUInt(ga + ".block_count").value_or(0), uint64_t(d.layers));
        QCOMPARE(f->getUInt(ga + ".embedding_length").value_or(0), uint64_t(d.hidden));
        QCOMPARE(f->getUInt(ga + ".attention.head_count").value_or(0), uint64_t(d.heads));
        QCOMPARE(f->getUInt(ga + ".attention.head_count_kv").value_or(0), uint64_t(d.kvHeads));
        if (d.experts > 0) {
            QCOMPARE(f->getUInt(ga + ".expert_count").value_or(0), uint64_t(d.experts));
            QCOMPARE(f->getUInt(ga + ".expert_used_count").value_or(0), uint64_t(d.expertsUsed));
        } else {
            QVERIFY(!f->getUInt(ga + ".expert_count"));
        }
        if (a == "qwen3moe") QCOMPARE(f->getUInt(ga + ".expert_feed_forward_length").value_or(0), uint64_t(d.expertFf));
        if (a == "qwen3" || a == "qwen3moe" || a == "gemma2" || a == "gemma3")
            QCOMPARE(f->getUInt(ga + ".attention.key_length").value_or(0), uint64_t(d.headDim));
        if (a == "gemma2") {
            QCOMPARE(f->getDouble(ga + ".attn_logit_softcapping").value_or(0), 50.0);
            QCOMPARE(f->getDouble(ga + ".final_logit_softcapping").value_or(0), 30.0);
            QCOMPARE(f->getUInt(ga + ".attention.sliding_window").value_or(0), uint64_t(32));
        }
        if (a == "gemma3") {
            QCOMPARE(f->getDouble(ga + ".rope.freq_base").value_or(0), 1000000.0);
            QCOMPARE(f->getDouble(ga + ".rope.freq_base_swa").value_or(0), 10000.0);
            QCOMPARE(f->getUInt(ga + ".attention.sliding_window").value_or(0), uint64_t(32));
            QVERIFY(!f->getDouble(ga + ".final_logit_softcapping"));  // null in config.json: not written
            // convert's Gemma3Model writes rope_scaling (linear) as rope.scaling.type / factor; llama.cpp's
            // gemma3 graph applies it to the global layers only (core/convert/README.md B).
            if (variant == "gemma3-rope8") {
                QCOMPARE(f->getString(ga + ".rope.scaling.type").value_or(""), std::string("linear"));
                QCOMPARE(f->getDouble(ga + ".rope.scaling.factor").value_or(0), 8.0);
            } else {
                QVERIFY(!f->getString(ga + ".rope.scaling.type"));
                QVERIFY(!f->getDouble(ga + ".rope.scaling.factor"));
            }
        }
        if (a == "gemma2" || a == "gemma3")
            QCOMPARE(f->getBool("tokenizer.ggml.add_space_prefix").value_or(true), false);
        if (a == "phi3") {
            // convert's Phi3MiniModel: int(partial_rotary_factor · hidden_size) // heads = 0.75 · 256 / 4 = 48.
            QCOMPARE(f->getUInt(ga + ".rope.dimension_count").value_or(0),
                     uint64_t(variant == "phi3-partial" ? 48 : d.headDim));
            QCOMPARE(f->getUInt(ga + ".rope.scaling.original_context_length").value_or(0), uint64_t(512));
            QCOMPARE(f->getUInt(ga + ".attention.sliding_window").value_or(0), uint64_t(256));
        }
    }

    // Values: Gemma's norms are w + 1, experts are stacked in expert order, phi3's fused tensors and the
    // router are copied unchanged.
    void values_data() { namesShapesAndKeys_data(); }
    void values() {
        QFETCH(QString, arch);
        const std::string variant = arch.toStdString(), a = tinyBase(variant);
        QTemporaryDir tmp;
        const std::string dir = tmp.filePath("model").toStdString();
        QVERIFY(writeTinyModel(dir, variant, QZ_TEST_DATA));
        auto m = openModel(dir);
        QVERIFY(m);
        GgufExportParams p;
        p.outputPath = tmp.filePath("out.gguf").toStdString();
        p.type = "F32";
        QVERIFY(exportGguf(**m, p, {}, {}));
        auto g = openModel(p.outputPath);
        QVERIFY(g);
        auto tensorOf = [&](const std::string& name) -> std::vector<float> {
            const TensorInfo* t = (*g)->find(name);
            if (!t) return {};
            auto v = readTensorF32(**g, *t);
            return v ? *v : std::vector<float>();
        };
        const bool gemma = a == "gemma2" || a == "gemma3";
        {
            const auto got = tensorOf("blk.1.attn_norm.weight");
            auto src = hfValues(variant, "model.layers.1.input_layernorm.weight");
            QCOMPARE(got.size(), src.size());
            for (size_t i = 0; i < src.size(); ++i) QCOMPARE(got[i], gemma ? src[i] + 1.0f : src[i]);
        }
        if (gemma) {
            const auto got = tensorOf("blk.0.post_ffw_norm.weight");
            auto src = hfValues(variant, "model.layers.0.post_feedforward_layernorm.weight");
            QCOMPARE(got.size(), src.size());
            for (size_t i = 0; i < src.size(); ++i) QCOMPARE(got[i], src[i] + 1.0f);
        }
        if (a == "gemma3" || a == "qwen3") {
            const auto got = tensorOf("blk.0.attn_q_norm.weight");
            auto src = hfValues(variant, "model.layers.0.self_attn.q_norm.weight");
            QCOMPARE(got.size(), src.size());
            for (size_t i = 0; i < src.size(); ++i) QCOMPARE(got[i], a == "gemma3" ? src[i] + 1.0f : src[i]);
        }
        if (a == "phi3") {
            QCOMPARE(tensorOf("blk.1.attn_qkv.weight"), hfValues(variant, "model.layers.1.self_attn.qkv_proj.weight"));
            QCOMPARE(tensorOf("blk.1.ffn_up.weight"), hfValues(variant, "model.layers.1.mlp.gate_up_proj.weight"));
        }
        const TinyDims d = tinyDims(a);
        if (d.experts > 0) {
            const std::string moe = a == "mixtral" ? "block_sparse_moe." : "mlp.";
            QCOMPARE(tensorOf("blk.1.ffn_gate_inp.weight"), hfValues(variant, "model.layers.1." + moe + "gate.weight"));
            const TensorInfo* gi = (*g)->find("blk.1.ffn_gate_inp.weight");
            QVERIFY(gi && gi->dtype == DType::F32);
            const char* hfProj[3] = {a == "mixtral" ? "w1" : "gate_proj", a == "mixtral" ? "w3" : "up_proj",
                                     a == "mixtral" ? "w2" : "down_proj"};
            const char* ggufProj[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
            for (int k = 0; k < 3; ++k) {
                const auto stacked = tensorOf(std::string("blk.1.") + ggufProj[k] + ".weight");
                std::vector<float> want;
                for (int64_t e = 0; e < d.experts; ++e) {
                    auto v = hfValues(variant, "model.layers.1." + moe + "experts." + std::to_string(e) + "." + hfProj[k] +
                                             ".weight");
                    want.insert(want.end(), v.begin(), v.end());
                }
                QVERIFY2(stacked == want, ggufProj[k]);
            }
        }
    }

    // A quantized mix of an MoE model: the stacked experts are quantized like any FFN tensor, the router
    // and norms stay F32.
    void moeQ4KM() {
        QTemporaryDir tmp;
        const std::string dir = tmp.filePath("model").toStdString();
        QVERIFY(writeTinyModel(dir, "qwen3moe", QZ_TEST_DATA));
        auto m = openModel(dir);
        QVERIFY(m);
        GgufExportParams p;
        p.outputPath = tmp.filePath("q.gguf").toStdString();
        p.type = "Q8_0";
        auto r = exportGguf(**m, p, {}, {});
        QVERIFY2(r, r ? "" : r.error().message.c_str());
        auto g = openModel(p.outputPath);
        QVERIFY(g);
        QCOMPARE((*g)->find("blk.0.ffn_up_exps.weight")->dtype, DType::Q8_0);
        QCOMPARE((*g)->find("blk.0.ffn_gate_inp.weight")->dtype, DType::F32);
        QCOMPARE((*g)->find("blk.0.attn_q_norm.weight")->dtype, DType::F32);
    }

    // A Gemma folder and its GGUF tokenize a text alike: convert writes add_space_prefix false for Gemma
    // whatever the SentencePiece model says (the tiny models' says true), and the folder is read so too.
    void gemmaFolderTokenizesLikeItsGguf_data() {
        QTest::addColumn<QString>("arch");
        for (const char* a : {"gemma2", "gemma3", "gemma3-mm", "phi3"}) QTest::newRow(a) << QString(a);
    }
    void gemmaFolderTokenizesLikeItsGguf() {
        QFETCH(QString, arch);
        const std::string a = arch.toStdString();
        QTemporaryDir tmp;
        const std::string dir = tmp.filePath("model").toStdString();
        QVERIFY(writeTinyModel(dir, a, QZ_TEST_DATA));
        auto m = openModel(dir);
        QVERIFY(m);
        GgufExportParams p;
        p.outputPath = tmp.filePath("out.gguf").toStdString();
        p.type = "F32";
        QVERIFY(exportGguf(**m, p, {}, {}));
        auto g = openModel(p.outputPath);
        QVERIFY(g);
        const std::string text = "First Citizen:\nBefore we proceed any further, hear me speak.\n";
        auto th = tokenizeForPerplexity(**m, text);
        QVERIFY2(th, th ? "" : th.error().message.c_str());
        auto tg = tokenizeForPerplexity(**g, text);
        QVERIFY2(tg, tg ? "" : tg.error().message.c_str());
        QCOMPARE(th->tokens, tg->tokens);
        // Gemma's GGUF has no space prefix, phi3's (llama's SentencePiece path) has.
        QCOMPARE(spacePrefixOf(**g), a == "phi3");
    }

    void refusals() {
        QTemporaryDir tmp;
        const std::string dir = tmp.filePath("model").toStdString();
        QVERIFY(writeTinyModel(dir, "qwen3", QZ_TEST_DATA));
        auto bad = [&](const std::string& config, const char* expect) {
            auto r = archParamsFromConfig(config, "x");
            QVERIFY(!r);
            QVERIFY2(r.error().message.find(expect) != std::string::npos, r.error().message.c_str());
        };
        bad(R"({"model_type": "falcon", "hidden_size": 64})", "qwen3_moe, gemma2, gemma3 (text), phi3");
        std::string moe = tinyConfig("qwen3moe");
        bad(moe.replace(moe.find("\"mlp_only_layers\": []"), 21, "\"mlp_only_layers\": [0]"), "dense layers");
        std::string ex = tinyConfig("mixtral");
        bad(ex.replace(ex.find("\"num_experts_per_tok\": 2"), 24, "\"num_experts_per_tok\": 9"), "out of range");
        std::string phi = tinyConfig("phi3");
        bad(phi.replace(phi.find("\"rope_scaling\": null"), 20, R"("rope_scaling": {"type": "longrope"})"),
            "not supported");
        // A missing expert is named.
        std::string mix = tmp.filePath("mix").toStdString();
        QVERIFY(writeTinyModel(mix, "mixtral", QZ_TEST_DATA));
        std::string cfg = tinyConfig("mixtral");
        cfg.replace(cfg.find("\"num_local_experts\": 8"), 22, "\"num_local_experts\": 9");
        {
            std::ofstream f(mix + "/config.json");
            f << cfg;
        }
        auto m = openModel(mix);
        QVERIFY(m);
        auto plan = planHfToGguf(**m);
        QVERIFY(!plan);
        QVERIFY2(plan.error().message.find("expert tensors") != std::string::npos, plan.error().message.c_str());
    }
};

QTEST_GUILESS_MAIN(TestArchConvert)
#include "test_arch_convert.moc"
