// Whole GGUF files in the i-quant / ternary mixes, byte for byte against llama.cpp's own llama-quantize:
// the pinned npm package's libllama (tests/llama, llama.cpp release v0.5.0) exports llama_model_quantize.
// We dlopen it and let it quantize an F32 GGUF into every mix below; then `exportGguf` of the same F32
// file must give the same bytes: tensor types (the mix rules and shape fallbacks), metadata and every
// block. Inputs: bard-llama's F32 GGUF (written by our exporter, which test_gguf_export shows to equal
// convert_hf_to_gguf's) with the golden imatrix, and without one where llama-quantize accepts that; a
// synthetic GQA-4, 8-layer Llama (seeded weights and imatrix) for the n_gqa and per-layer rules;
// stories260K (rows of 64 and 172: every i-quant tensor falls back); tiny qwen3moe and mixtral models
// (tests/core/tiny_archs.h) for the 3-D expert tensors and the expert rules.
// Also: without an imatrix, our export refuses the mixes llama-quantize refuses, naming the tensors.
// Without the library (tests/llama not set up) the comparisons report a skip, never a pass; with
// QZ_REQUIRE_ALL=1 or CI=true (test.sh) they fail.
#include <QtTest>

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "bench/bench_synthetic_llama.h"
#include "export/gguf_export.h"
#include "ggml/imatrix.h"
#include "ggml/mixes.h"
#include "infer/imatrix_collect.h"
#include "model/model.h"
#include "tiny_archs.h"

using namespace qz;

namespace {

const std::string kBins =
    std::string(QZ_TEST_DATA) + "/../llama/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/";
const std::string kImatrix = std::string(QZ_TEST_DATA) + "/golden/bard-llama/imatrix/bard-llama-imatrix.gguf";

// llama.h of the pinned release (struct llama_model_imatrix_data / llama_model_quantize_params).
struct LlamaImatrixData {
    const char* name;
    const float* data;
    size_t size;
};
struct LlamaKvOverride {
    int32_t tag; // 0 int, 1 float, 2 bool, 3 string
    char key[128];
    union {
        int64_t i64;
        double f64;
        bool b;
        char str[128];
    };
};
struct LlamaQuantizeParams {
    int32_t nthread;
    int32_t ftype;
    int32_t output_tensor_type;
    int32_t token_embedding_type;
    bool allow_requantize, quantize_output_tensor, only_copy, pure, keep_split, dry_run;
    const LlamaImatrixData* imatrix;
    const LlamaKvOverride* kv_overrides;
    const void* tt_overrides;
    const int32_t* prune_layers;
    size_t max_buf_size;
};
using DefaultParamsFn = LlamaQuantizeParams (*)();
using QuantizeFn = uint32_t (*)(const char*, const char*, const LlamaQuantizeParams*);
using LogSetFn = void (*)(void (*)(int, const char*, void*), void*);

struct Llama {
    void* handle = nullptr;
    DefaultParamsFn defaults = nullptr;
    QuantizeFn quantize = nullptr;
};

Llama& llama() {
    static Llama l = [] {
        Llama r;
        const std::string path = kBins + "libllama.v0.5.0.so";
        if (!std::filesystem::exists(path)) return r;
        r.handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!r.handle) return r;
        r.defaults =
            reinterpret_cast<DefaultParamsFn>(dlsym(r.handle, "llama_model_quantize_default_params"));
        r.quantize = reinterpret_cast<QuantizeFn>(dlsym(r.handle, "llama_model_quantize"));
        if (auto logSet = reinterpret_cast<LogSetFn>(dlsym(r.handle, "llama_log_set")))
            logSet([](int, const char*, void*) {}, nullptr);
        return r;
    }();
    return l;
}

std::vector<char> readAll(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

} // namespace

// An imatrix file for our exporter and the same values as llama_model_imatrix_data, plus the KVs that
// tools/quantize/quantize.cpp adds when it passes an imatrix to llama_model_quantize (the file name as
// given on its command line; our exporter records the file name).
struct ImatrixSet {
    std::string path;
    ggml::Imatrix imatrix;
    std::vector<LlamaImatrixData> data;
    std::vector<LlamaKvOverride> kvs;
    bool load(const std::string& file) {
        path = file;
        auto im = ggml::loadImatrix(file);
        if (!im) return false;
        imatrix = std::move(*im);
        for (const auto& [name, v] : imatrix.values)
            data.push_back({name.c_str(), v.data(), v.size()});
        data.push_back({nullptr, nullptr, 0});
        auto kv = [&](const char* key, int32_t tag, int64_t i, const std::string& str) {
            LlamaKvOverride o{};
            o.tag = tag;
            std::snprintf(o.key, sizeof o.key, "%s", key);
            if (tag == 3)
                std::snprintf(o.str, sizeof o.str, "%s", str.c_str());
            else
                o.i64 = i;
            kvs.push_back(o);
        };
        kv("quantize.imatrix.file", 3, 0, std::filesystem::path(file).filename().string());
        if (!imatrix.datasets.empty()) kv("quantize.imatrix.dataset", 3, 0, imatrix.datasets.front());
        kv("quantize.imatrix.entries_count", 0, static_cast<int64_t>(imatrix.values.size()), "");
        if (imatrix.chunkCount > 0) kv("quantize.imatrix.chunks_count", 0, imatrix.chunkCount, "");
        kvs.push_back(LlamaKvOverride{});
        return true;
    }
};

class TestGgufIquantFiles : public QObject {
    Q_OBJECT
    QTemporaryDir dir_;
    std::string f32_, gqaF32_;
    ImatrixSet bardImatrix_, gqaImatrix_;
  private slots:
    void initTestCase();
    void sameFileAsLlamaQuantize_data();
    void sameFileAsLlamaQuantize();
    void refusesWithoutImatrix_data();
    void refusesWithoutImatrix();
};

void TestGgufIquantFiles::initTestCase() {
    QVERIFY(dir_.isValid());
    auto m = openModel(QZ_TEST_DATA "/models/bard-llama");
    QVERIFY(m);
    GgufExportParams p;
    p.type = "F32";
    f32_ = dir_.filePath("bard-llama-F32.gguf").toStdString();
    p.outputPath = f32_;
    QVERIFY(exportGguf(**m, p, {}).ok());
    QVERIFY(bardImatrix_.load(kImatrix));

    // A synthetic Llama with grouped-query attention 4 and 8 layers (bard-llama has 2 and 4), so that the
    // n_gqa >= 4 rules and the "first n/8 layers" / "middle layers" rules come into play.
    qzbench::LlamaShape shape;
    shape.hidden = 256;
    shape.layers = 8;
    shape.ffn = 512;
    shape.vocab = 512;
    shape.heads = 8;
    shape.kvHeads = 2;
    const std::string hf = dir_.filePath("gqa-hf").toStdString();
    QVERIFY(
        qzbench::writeSyntheticLlama(hf, shape, DType::BF16, 1ull << 40, QZ_TEST_DATA "/models/bard-llama"));
    auto g = openModel(hf);
    QVERIFY(g);
    gqaF32_ = dir_.filePath("gqa-F32.gguf").toStdString();
    p.outputPath = gqaF32_;
    QVERIFY(exportGguf(**g, p, {}).ok());
    // its imatrix: seeded positive column weights for every 2-D blk.* weight, one count
    auto gg = openModel(gqaF32_);
    QVERIFY(gg);
    ImatrixData d;
    d.datasets = {"synthetic"};
    d.chunkCount = 3;
    d.chunkSize = 512;
    std::mt19937 rng(77);
    std::uniform_real_distribution<double> ud(0.05, 3.0);
    for (const TensorInfo& t : (*gg)->tensors) {
        if (t.shape.size() != 2 || t.name.rfind("blk.", 0) != 0) continue;
        ImatrixEntry e;
        e.sum2.resize(static_cast<size_t>(t.shape.back()));
        for (auto& v : e.sum2)
            v = ud(rng) * ud(rng);
        e.count = 1;
        d.entries[t.name] = std::move(e);
    }
    const std::string gqaIm = dir_.filePath("gqa-imatrix.gguf").toStdString();
    QVERIFY(writeImatrixGguf(d, gqaIm));
    QVERIFY(gqaImatrix_.load(gqaIm));

    // Mixtures of experts (tests/core/tiny_archs.h): 3-D ffn_*_exps tensors, the router kept F32, and
    // llama-quantize's expert rules (mixtral has 8 experts: the n_expert == 8 rules; qwen3moe 4).
    for (const char* arch : {"qwen3moe", "mixtral"}) {
        const std::string hfDir = dir_.filePath(QString("%1-hf").arg(arch)).toStdString();
        QVERIFY(qztest::writeTinyModel(hfDir, arch, QZ_TEST_DATA));
        auto mm = openModel(hfDir);
        QVERIFY(mm);
        p.outputPath = dir_.filePath(QString("%1-F32.gguf").arg(arch)).toStdString();
        QVERIFY(exportGguf(**mm, p, {}).ok());
    }
}

void TestGgufIquantFiles::sameFileAsLlamaQuantize_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<QString>("type");
    QTest::addColumn<bool>("withImatrix");
    // bard-llama: rows of 256 and 768, every rule at its nominal type
    for (const char* t : {"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M",
                          "IQ1_S", "IQ1_M", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "Q2_K_S"})
        QTest::newRow(("bard-llama " + std::string(t) + " imatrix").c_str()) << "bard" << QString(t) << true;
    // the GQA-4 synthetic model, with and without an imatrix
    for (const char* t : {"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M",
                          "IQ1_S", "IQ1_M", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0"})
        QTest::newRow(("gqa4 " + std::string(t) + " imatrix").c_str()) << "gqa" << QString(t) << true;
    // the mixes llama-quantize makes without an imatrix (IQ3_S's and IQ3_M's tensors need none)
    for (const char* t : {"IQ3_S", "IQ3_M", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0"})
        QTest::newRow(("gqa4 " + std::string(t)).c_str()) << "gqa" << QString(t) << false;
    // stories260K: rows of 64 and 172, so every i-quant / ternary tensor takes the shape fallback (IQ4_NL,
    // Q4_0, then F16), and the imatrix requirement is judged on the type after it
    for (const char* t : {"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M",
                          "IQ1_S", "IQ1_M", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0"})
        QTest::newRow(("stories260K " + std::string(t)).c_str()) << "s260" << QString(t) << false;
    // mixtures of experts, the mixes that need no imatrix
    for (const char* arch : {"qwen3moe", "mixtral"})
        for (const char* t : {"Q2_K", "Q3_K_S", "Q3_K_M", "Q4_K_S", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "IQ3_S",
                              "IQ4_XS", "IQ4_NL", "MXFP4_MOE"})
            QTest::newRow((std::string(arch) + " " + t).c_str()) << QString(arch) << QString(t) << false;
}

void TestGgufIquantFiles::sameFileAsLlamaQuantize() {
    QFETCH(QString, model);
    QFETCH(QString, type);
    QFETCH(bool, withImatrix);
    const std::string input = model == "bard" ? f32_
                              : model == "gqa" ? gqaF32_
                              : model == "s260"
                                  ? std::string(QZ_TEST_DATA "/models/stories260K/stories260K.gguf")
                                  : dir_.filePath(model + "-F32.gguf").toStdString();
    const ImatrixSet& ims = model == "gqa" ? gqaImatrix_ : bardImatrix_;
    if (!llama().quantize || !llama().defaults) {
        const QString why = QString::fromStdString("llama.cpp's libllama not available in " + kBins +
                                                   " (run tests/llama/setup.sh): nothing compared");
        // An optional component: a skip on a developer's machine, a failure where everything is required.
        if (qgetenv("QZ_REQUIRE_ALL") == "1" || qgetenv("CI") == "true")
            QFAIL(qPrintable(why + " (QZ_REQUIRE_ALL=1 or CI=true: required)"));
        QSKIP(qPrintable(why));
    }
    const auto ftype = ggml::fileTypeFromName(type.toStdString());
    QVERIFY(ftype);
    const std::string theirs = dir_.filePath("llama-" + model + type + ".gguf").toStdString();
    const std::string ours = dir_.filePath("qz-" + model + type + ".gguf").toStdString();
    LlamaQuantizeParams lp = llama().defaults();
    lp.nthread = 2;
    lp.ftype = static_cast<int32_t>(*ftype);
    lp.imatrix = withImatrix ? ims.data.data() : nullptr;
    lp.kv_overrides = withImatrix ? ims.kvs.data() : nullptr;
    QCOMPARE(llama().quantize(input.c_str(), theirs.c_str(), &lp), 0u);
    // QZ_KEEP_LLAMA_FILES=DIR keeps llama.cpp's files (their perplexities are tests/llama.cmake's figures)
    if (const char* keep = std::getenv("QZ_KEEP_LLAMA_FILES"))
        std::filesystem::copy_file(theirs,
                                   std::string(keep) + "/" + model.toStdString() + "-" + type.toStdString() +
                                       (withImatrix ? "-imat" : "") + ".gguf",
                                   std::filesystem::copy_options::overwrite_existing);

    auto m = openModel(input);
    QVERIFY(m);
    GgufExportParams p;
    p.type = type.toStdString();
    p.outputPath = ours;
    if (withImatrix) p.imatrixPath = ims.path;
    p.threads = 2;
    auto r = exportGguf(**m, p, {});
    QVERIFY2(r, r ? "" : r.error().message.c_str());

    const auto a = readAll(ours), b = readAll(theirs);
    QVERIFY(!b.empty());
    if (a != b) {
        // name the first differing tensor to make a failure readable
        auto ga = openModel(ours), gb = openModel(theirs);
        QVERIFY(ga && gb);
        QCOMPARE((*ga)->tensors.size(), (*gb)->tensors.size());
        for (size_t i = 0; i < (*ga)->tensors.size(); ++i) {
            const auto& ta = (*ga)->tensors[i];
            const auto& tb = (*gb)->tensors[i];
            QCOMPARE(ta.name, tb.name);
            QVERIFY2(ta.dtype == tb.dtype,
                     qPrintable(QString::fromStdString(ta.name + ": " + std::string(dtypeName(ta.dtype)) +
                                                       " vs llama.cpp " + std::string(dtypeName(tb.dtype)))));
            const auto ra = (*ga)->rawBytes(ta), rb = (*gb)->rawBytes(tb);
            QVERIFY2(ra.size() == rb.size() && std::equal(ra.begin(), ra.end(), rb.begin()),
                     qPrintable(QString::fromStdString(ta.name + ": tensor bytes differ")));
        }
        QFAIL(qPrintable(QString("%1: tensors equal but the files differ (metadata / layout), %2 vs %3 bytes")
                             .arg(type)
                             .arg(a.size())
                             .arg(b.size())));
    }
}

void TestGgufIquantFiles::refusesWithoutImatrix_data() {
    QTest::addColumn<QString>("type");
    QTest::addColumn<QString>("tensor");
    // llama-quantize: "this quantization requires an imatrix!" for these on bard-llama
    QTest::newRow("IQ2_XXS") << "IQ2_XXS"
                             << "blk.0.attn_q.weight (IQ2_XXS)";
    QTest::newRow("IQ1_M") << "IQ1_M"
                           << "blk.0.attn_q.weight (IQ1_M)";
    QTest::newRow("IQ3_XXS") << "IQ3_XXS"
                             << "blk.0.attn_k.weight (IQ2_S)";
    QTest::newRow("IQ3_XS") << "IQ3_XS"
                            << "blk.0.attn_k.weight (IQ3_XXS)";
    QTest::newRow("Q2_K_S") << "Q2_K_S"
                            << "blk.0.attn_output.weight (Q2_K)";
}

void TestGgufIquantFiles::refusesWithoutImatrix() {
    QFETCH(QString, type);
    QFETCH(QString, tensor);
    auto m = openModel(f32_);
    QVERIFY(m);
    GgufExportParams p;
    p.type = type.toStdString();
    p.outputPath = dir_.filePath("refused-" + type + ".gguf").toStdString();
    auto r = exportGguf(**m, p, {});
    QVERIFY(!r);
    QVERIFY2(r.error().message.find("importance matrix") != std::string::npos, r.error().message.c_str());
    QVERIFY2(r.error().message.find(tensor.toStdString()) != std::string::npos, r.error().message.c_str());
    QVERIFY(!std::filesystem::exists(p.outputPath));
    // llama.cpp refuses the same mix
    if (llama().quantize) {
        LlamaQuantizeParams lp = llama().defaults();
        lp.nthread = 2;
        lp.ftype = static_cast<int32_t>(*ggml::fileTypeFromName(p.type));
        const std::string out = dir_.filePath("llama-refused-" + type + ".gguf").toStdString();
        QVERIFY(llama().quantize(f32_.c_str(), out.c_str(), &lp) != 0);
    }
}

QTEST_GUILESS_MAIN(TestGgufIquantFiles)
#include "test_gguf_iquant_files.moc"
