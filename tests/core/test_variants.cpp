// Variants of a model (core/variants): method specs, a fake-quantized variant's figures and re-made values
// against absmax computed by hand here, a llama.cpp-written GGUF (tests/data/golden) matched tensor by
// tensor with the HF original and its error computed here by a plain loop, a GPTQ folder read back equal
// to the exporter's own dequantized weights, an EXL2 folder read back equal to the EXL2 exporter's own
// dequantized weights (which tests/exl2/read_check.py, an independent reader, decodes equal in
// test_exl2_model) and evaluated near the original's perplexity, variants evaluated from engine row
// sources equal to the F32-override path bit for bit, a phi3 EXL2 folder's split q/k/v and gate/up linears
// read back as the original's fused tensors, the Pareto front on hand-made points, and the
// project file (round trip, hostile files refused with the file and field named).
#include <QtTest>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "exl2/exl2_export.h"
#include "gptq/gptq_export.h"
#include "infer/evaluate.h"
#include "infer/matmul.h"
#include "quant/llm_int8.h"
#include "tiny_archs.h"
#include "variants/exl2_reader.h"
#include "variants/gptq_reader.h"
#include "variants/variants.h"

using namespace qz;
namespace fs = std::filesystem;

namespace {
const std::string kData = QZ_TEST_DATA;
const std::string kHf = kData + "/models/stories260K/hf";
const std::string kQ4 = kData + "/golden/stories260K/stories260K-Q4_K_M.gguf";

std::shared_ptr<const Model> open(const std::string& p) {
    auto m = openModel(p);
    if (!m) qFatal("%s", m.error().message.c_str());
    return std::move(*m);
}

std::vector<float> read(const Model& m, const std::string& name) {
    const TensorInfo* t = m.find(name);
    if (!t) qFatal("no tensor %s", name.c_str());
    auto v = readTensorF32(m, *t);
    if (!v) qFatal("%s", v.error().message.c_str());
    return std::move(*v);
}

bool close(double a, double b, double rel) {
    return std::fabs(a - b) <= rel * std::max(std::fabs(a), std::fabs(b));
}

std::string readText(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

// Every row of a source, decoded in panels of 7 rows (any split gives the same rows).
std::vector<float> decodeAll(const WeightRowSource& s) {
    std::vector<float> v(size_t(s.rows() * s.cols()));
    for (int64_t r = 0; r < s.rows(); r += 7)
        s.decodeRows(r, std::min(s.rows(), r + 7), v.data() + r * s.cols());
    return v;
}

// A source's values in the tensor's own layout: a transposed source's rows (a Conv1D weight's [out, in])
// put back into the stored [in, out] by this plain loop.
std::vector<float> storedLayout(const WeightRowSource& s) {
    std::vector<float> v = decodeAll(s);
    if (!s.transposed()) return v;
    std::vector<float> t(v.size());
    for (int64_t r = 0; r < s.rows(); ++r)
        for (int64_t c = 0; c < s.cols(); ++c)
            t[size_t(c * s.rows() + r)] = v[size_t(r * s.cols() + c)];
    return t;
}

bool sameBits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The variant's runnable with row sources equals the one with F32 overrides: every source decodes the
// override's values bit for bit; tensors without a source are overrides in both. Returns the sources.
void checkSourcesEqualOverrides(const std::shared_ptr<const Model>& m, const Variant& v, size_t* nSources) {
    auto withSources = variantRunnable(m, v, {}, true);
    auto whole = variantRunnable(m, v, {}, false);
    QVERIFY2(withSources && whole, withSources ? "" : withSources.error().message.c_str());
    QVERIFY(whole->sources.empty());
    QCOMPARE(withSources->sources.size() + withSources->overrides.size(), whole->overrides.size());
    for (const auto& [name, src] : withSources->sources) {
        auto it = whole->overrides.find(name);
        QVERIFY2(it != whole->overrides.end(), name.c_str());
        QVERIFY2(sameBits(storedLayout(*src), it->second), (v.name + ": " + name).c_str());
        QCOMPARE(src->transposed(), weightInputIsRows(name));
    }
    for (const auto& [name, values] : withSources->overrides)
        QVERIFY2(sameBits(values, whole->overrides.at(name)), name.c_str());
    *nSources = withSources->sources.size();
}

fs::path tempDir(const char* name) {
    fs::path d = fs::temp_directory_path() /
                 (std::string("qz_test_variants_") + name + "_" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}
} // namespace

class TestVariants : public QObject {
    Q_OBJECT
  private slots:
    void methodSpecs() {
        auto a = parseMethodSpec("absmax:8:tensor");
        QVERIFY(a);
        QCOMPARE(int(a->method), int(QuantMethod::Absmax));
        QCOMPARE(a->bits, 8);
        QCOMPARE(int(a->granularity), int(Granularity::Tensor));
        auto z = parseMethodSpec("zeropoint:4:group:64");
        QVERIFY(z);
        QCOMPARE(int(z->method), int(QuantMethod::ZeroPoint));
        QCOMPARE(z->groupSize, 64);
        auto n = parseMethodSpec("nf4-dq:128");
        QVERIFY(n);
        QVERIFY(n->doubleQuant);
        QCOMPARE(n->blockSize, 128);
        auto l = parseMethodSpec("llm-int8:4.5");
        QVERIFY(l);
        QCOMPARE(l->threshold, 4.5f);
        for (const char* s : {"absmax:8:tensor", "zeropoint:3:row", "absmax:5:group:32", "nf4:64",
                              "fp4-dq:256", "llm-int8:6"})
            QCOMPARE(methodSpecString(*parseMethodSpec(s)), std::string(s));
        for (const char* bad : {"", "absmax", "absmax:9", "absmax:x", "absmax:4:cols", "absmax:4:row:32",
                                "nf4:63", "gptq:4", "llm-int8:-1", "zeropoint:4:group:0"}) {
            auto r = parseMethodSpec(bad);
            QVERIFY2(!r, bad);
            QVERIFY(r.error().message.find("variant '") != std::string::npos);
        }
    }

    // absmax 8-bit per tensor as the first notebook writes it: s = 127 / max|X|, Xq = round(s·X), X' = Xq /
    // s.
    void fakeQuantAgainstHandAbsmax() {
        auto m = open(kHf);
        auto v = makeFakeQuantVariant(*m, *parseMethodSpec("absmax:8:tensor"));
        QVERIFY2(v, v ? "" : v.error().message.c_str());
        QCOMPARE(int(v->kind), int(VariantKind::FakeQuant));
        const std::string name = "model.layers.2.mlp.down_proj.weight";
        const VariantTensor* t = v->find(name);
        QVERIFY(t);
        const auto x = read(*m, name);
        float amax = 0;
        for (float f : x)
            amax = std::max(amax, std::fabs(f));
        const float s = 127.0f / amax;
        double se = 0;
        std::vector<float> hand(x.size());
        for (size_t i = 0; i < x.size(); ++i) {
            hand[i] = std::nearbyint(s * x[i]) / s;
            se += double(hand[i] - x[i]) * double(hand[i] - x[i]);
        }
        QVERIFY2(close(t->error.mse, se / double(x.size()), 1e-9), qPrintable(QString::number(t->error.mse)));
        QCOMPARE(t->numel, uint64_t(x.size()));
        QCOMPARE(t->layer, 2);
        // 8-bit codes + one F32 scale
        QCOMPARE(t->bytes, uint64_t(x.size()) + 4);
        // The values re-made on demand are the hand-computed ones.
        auto pair = variantTensorPair(*m, *v, name);
        QVERIFY(pair);
        QCOMPARE(pair->variant.size(), hand.size());
        for (size_t i = 0; i < hand.size(); ++i)
            QCOMPARE(pair->variant[i], hand[i]);
        QCOMPARE(pair->original, x);
        // The whole model's size: the quantized tensors' bytes + the rest unchanged.
        uint64_t bytes = m->totalBytes();
        for (const auto& vt : v->tensors)
            bytes = bytes - m->find(vt.name)->nbytes + vt.bytes;
        QCOMPARE(v->bytes, bytes);
        QVERIFY(close(v->bitsPerWeight, 8.0 * double(bytes) / double(m->totalParameters()), 1e-12));
        // Per layer: the layer's tensors merged.
        for (const auto& [layer, e] : perLayerError(*v)) {
            uint64_t n = 0;
            for (const auto& vt : v->tensors)
                if (vt.layer == layer) n += vt.numel;
            QCOMPARE(e.n, n);
        }
    }

    // llama.cpp's own Q4_K_M file of the same model: matched through the conversion plan.
    void ggufFileAgainstOriginal() {
        auto m = open(kHf);
        auto v = openFileVariant(*m, kQ4);
        QVERIFY2(v, v ? "" : v.error().message.c_str());
        QCOMPARE(int(v->kind), int(VariantKind::GgufFile));
        QCOMPARE(v->label, std::string("Q4_K_M"));
        QVERIFY(isStandardMix(v->label));
        auto g = open(kQ4);
        QCOMPARE(v->bytes, g->totalBytes());
        // Every 2-D weight of the original has figures (stories260K: 5 layers × 7 + embeddings; no lm_head).
        uint64_t n2d = 0;
        for (const auto& t : m->tensors)
            n2d += t.shape.size() == 2;
        QCOMPARE(uint64_t(v->tensors.size()), n2d);
        // ffn_down (no Q/K permutation): the error by a plain loop over the two files' values.
        const auto x = read(*m, "model.layers.1.mlp.down_proj.weight");
        const auto y = read(*g, "blk.1.ffn_down.weight");
        QCOMPARE(x.size(), y.size());
        double se = 0, mx = 0;
        for (size_t i = 0; i < x.size(); ++i) {
            se += double(y[i] - x[i]) * double(y[i] - x[i]);
            mx = std::max(mx, double(std::fabs(y[i] - x[i])));
        }
        const VariantTensor* t = v->find("model.layers.1.mlp.down_proj.weight");
        QVERIFY(t);
        QVERIFY(close(t->error.mse, se / double(x.size()), 1e-9));
        QCOMPARE(t->error.maxAbs, mx);
        QCOMPARE(t->bytes, g->find("blk.1.ffn_down.weight")->nbytes);
        // q_proj (rows permuted in the GGUF): its sums of squares match the two files' own, whatever the
        // order.
        const VariantTensor* q = v->find("model.layers.0.self_attn.q_proj.weight");
        QVERIFY(q);
        const auto xq = read(*m, "model.layers.0.self_attn.q_proj.weight");
        const auto yq = read(*g, "blk.0.attn_q.weight");
        double so = 0, sd = 0;
        for (float f : xq)
            so += double(f) * f;
        for (float f : yq)
            sd += double(f) * f;
        QVERIFY(close(q->error.sumSqOrig, so, 1e-9));
        QVERIFY(close(q->error.sumSqDeq, sd, 1e-9));
        QVERIFY(q->error.mse > 0 && q->error.mse < 0.01 * so / double(xq.size()));
        // The same file against itself as the original: no error anywhere.
        auto self = openFileVariant(*g, kQ4);
        QVERIFY(self);
        for (const auto& vt : self->tensors)
            QCOMPARE(vt.error.sumSqErr, 0.0);
        // Not a variant: a HF folder, a missing file, another model's GGUF.
        QVERIFY(!openFileVariant(*m, kHf));
        auto missing = openFileVariant(*m, "/no/such.gguf");
        QVERIFY(!missing && missing.error().message.find("/no/such.gguf") != std::string::npos);
        auto other = openFileVariant(*open(kData + "/models/bard-llama"), kQ4);
        QVERIFY(!other);
    }

    // Our GPTQ folder read back: the reader's values equal the exporter's own dequantized weights.
    void gptqFolderRoundTrip() {
        auto m = open(kData + "/models/bard-llama");
        const fs::path dir = tempDir("gptq");
        gptq::ExportParams p;
        p.quant.bits = 4;
        p.quant.groupSize = 32;
        p.quant.sym = false;
        p.method = gptq::Method::Rtn;
        p.outputDir = (dir / "out").string();
        p.keepOverrides = true;
        auto r = gptq::exportGptq(*m, p);
        QVERIFY2(r, r ? "" : r.error().message.c_str());
        QVERIFY(looksLikeGptqFolder(p.outputDir));
        auto v = openFileVariant(*m, p.outputDir);
        QVERIFY2(v, v ? "" : v.error().message.c_str());
        QCOMPARE(int(v->kind), int(VariantKind::GptqFolder));
        QCOMPARE(v->label, std::string("GPTQ 4-bit g32"));
        auto folder = openGptqFolder(p.outputDir);
        QVERIFY(folder);
        int compared = 0;
        for (const auto& [name, want] : r->overrides) {
            if (name.size() < 7 || name.compare(name.size() - 7, 7, ".weight")) continue;
            auto w = readGptqWeight(*folder, name);
            QVERIFY2(w && w->found && w->quantized, name.c_str());
            QCOMPARE(w->values.size(), want.size());
            for (size_t i = 0; i < want.size(); ++i)
                if (w->values[i] != want[i])
                    QFAIL(qPrintable(QStringLiteral("%1[%2]").arg(QString::fromStdString(name)).arg(i)));
            const VariantTensor* t = v->find(name);
            QVERIFY(t);
            const auto x = read(*m, name);
            QVERIFY(close(t->error.mse, errorStats(x.data(), want.data(), x.size()).mse, 1e-12));
            ++compared;
        }
        QCOMPARE(compared, int(v->tensors.size()));
        QVERIFY(compared >= 7);
        // Evaluated from the mapped folder: every row source decodes the exporter's own weights.
        auto run = variantRunnable(m, *v);
        QVERIFY2(run, run ? "" : run.error().message.c_str());
        QVERIFY(run->overrides.empty());
        QCOMPARE(run->sources.size(), v->tensors.size());
        for (const auto& [name, src] : run->sources)
            QVERIFY2(sameBits(decodeAll(*src), r->overrides.at(name)), name.c_str());
        // A g_idx entry beyond the groups is refused with the file and the tensor named.
        {
            std::string file;
            uint64_t offset = 0;
            {
                auto gm = openModel(p.outputDir);
                QVERIFY(gm);
                const TensorInfo* gi = (*gm)->find("model.layers.1.mlp.up_proj.g_idx");
                QVERIFY(gi);
                offset = gi->offset + 4 * 5; // the sixth entry
                file = (*gm)->files[gi->fileIndex]->path();
            }
            std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
            f.seekp(std::streamoff(offset));
            const int32_t big = 9999;
            f.write(reinterpret_cast<const char*>(&big), 4);
        }
        auto badIdx = openFileVariant(*m, p.outputDir);
        QVERIFY(!badIdx);
        QVERIFY2(badIdx.error().message.find("model.layers.1.mlp.up_proj.weight: g_idx entry 9999") !=
                     std::string::npos,
                 badIdx.error().message.c_str());
        // A config claiming 8 bits for the 4-bit words: the shapes disagree, refused with the folder named.
        fs::path cfg = fs::path(p.outputDir) / "quantize_config.json";
        std::string text;
        {
            std::ifstream f(cfg);
            text.assign(std::istreambuf_iterator<char>(f), {});
        }
        const auto at = text.find("\"bits\": 4");
        QVERIFY(at != std::string::npos);
        text.replace(at, 9, "\"bits\": 8");
        {
            std::ofstream f(cfg, std::ios::trunc);
            f << text;
        }
        auto bad = openFileVariant(*m, p.outputDir);
        QVERIFY(!bad);
        QVERIFY2(bad.error().message.find(p.outputDir) != std::string::npos, bad.error().message.c_str());
        fs::remove_all(dir);
    }

    // GPT-2's GPTQ folder: the Conv1D weights (quantized as W [out, in], README.md D.1) are evaluated from
    // transposed sources decoding the mapped codes, equal to the exporter's own dequantized weights; none
    // is made whole.
    void gptqGpt2Conv1d() {
        auto m = open(kData + "/models/bard-gpt2");
        const fs::path dir = tempDir("gptq_gpt2");
        gptq::ExportParams p;
        p.quant.bits = 4;
        p.quant.groupSize = 32;
        p.method = gptq::Method::Rtn;
        p.outputDir = (dir / "out").string();
        p.keepOverrides = true;
        auto r = gptq::exportGptq(*m, p);
        QVERIFY2(r, r ? "" : r.error().message.c_str());
        auto v = openFileVariant(*m, p.outputDir);
        QVERIFY2(v, v ? "" : v.error().message.c_str());
        size_t n = 0;
        checkSourcesEqualOverrides(m, *v, &n);
        QCOMPARE(n, v->tensors.size());
        auto run = variantRunnable(m, *v);
        QVERIFY(run && run->overrides.empty());
        int conv1d = 0;
        for (const auto& [name, src] : run->sources) {
            QVERIFY2(sameBits(storedLayout(*src), r->overrides.at(name)), name.c_str());
            conv1d += src->transposed() ? 1 : 0;
        }
        QCOMPARE(conv1d, 12); // 3 blocks × c_attn, c_proj, c_fc, c_proj
        fs::remove_all(dir);
    }

    // Fake-quantized variants evaluated from row sources: the same values as the F32 overrides for every
    // method, the same perplexity and KL-divergence bit for bit, and a fraction of the engine's memory.
    void sourcesEqualOverrides() {
        auto m = open(kData + "/models/bard-llama");
        for (const char* spec : {"absmax:8:tensor", "zeropoint:4:group:32", "absmax:4:row",
                                 "zeropoint:3:tensor", "nf4:64", "fp4-dq:128", "nf4:1024", "llm-int8:6"}) {
            const bool int8 = std::string(spec).rfind("llm-int8", 0) == 0;
            // LLM.int8()'s run needs a calibration text: its tensors from a plain run, its outlier features
            // set here as a calibration would decide them.
            auto v = makeFakeQuantVariant(*m, *parseMethodSpec(int8 ? "absmax:8:row" : spec));
            QVERIFY2(v, spec);
            if (int8) {
                v->spec = *parseMethodSpec(spec);
                for (const auto& t : v->tensors)
                    v->outlierFeatures[t.name] = {0, 3, 17};
            }
            size_t n = 0;
            checkSourcesEqualOverrides(m, *v, &n);
            QCOMPARE(n, v->tensors.size()); // every 2-D weight of a llama is read by rows
        }
        // A GGUF original (block-quantized rows) and GPT-2 (Conv1D weights are made whole).
        {
            auto g = open(kQ4);
            auto v = makeFakeQuantVariant(*g, *parseMethodSpec("absmax:6:row"));
            QVERIFY(v);
            size_t n = 0;
            checkSourcesEqualOverrides(g, *v, &n);
            QCOMPARE(n, v->tensors.size());
        }
        // GPT-2's Conv1D weights (stored [in, out]) from transposed sources, every method: per-row and
        // per-group parameters along the stored rows, NF4 blocks in stored order, LLM.int8() per output.
        auto gpt2 = open(kData + "/models/bard-gpt2");
        for (const char* spec : {"zeropoint:8:row", "absmax:4:group:32", "zeropoint:3:group:100",
                                 "absmax:8:tensor", "nf4:64", "fp4-dq:128", "llm-int8:6"}) {
            const bool int8 = std::string(spec).rfind("llm-int8", 0) == 0;
            auto vg = makeFakeQuantVariant(*gpt2, *parseMethodSpec(int8 ? "absmax:8:row" : spec));
            QVERIFY2(vg, spec);
            if (int8) {
                vg->spec = *parseMethodSpec(spec);
                for (const auto& t : vg->tensors)
                    vg->outlierFeatures[t.name] = {0, 3, 17};
            }
            size_t ng = 0;
            checkSourcesEqualOverrides(gpt2, *vg, &ng);
            QCOMPARE(ng, vg->tensors.size()); // wte and the Conv1D weights: none made whole
        }

        // End to end: perplexity and KL-divergence of both paths are identical.
        const std::string text = readText(kData + "/text/shakespeare-valid.txt");
        EvalParams ep;
        ep.nCtx = 64;
        ep.nChunks = 4;
        for (const auto& [model, spec] : std::vector<std::pair<std::shared_ptr<const Model>, std::string>>{
                 {m, "absmax:8:tensor"}, {m, "nf4-dq:64"}, {gpt2, "absmax:4:group:32"}}) {
            KldBase base;
            auto p0 = evaluatePerplexity(*model, text, ep, {}, nullptr, &base);
            QVERIFY(p0);
            auto v = makeFakeQuantVariant(*model, *parseMethodSpec(spec));
            QVERIFY(v);
            auto a = variantRunnable(model, *v, {}, true);
            auto b = variantRunnable(model, *v, {}, false);
            QVERIFY(a && b);
            auto ka = evaluateKlDivergence(*model, base, ep, {},
                                           a->overrides.empty() ? nullptr : &a->overrides, &a->sources);
            auto kb = evaluateKlDivergence(*model, base, ep, {}, &b->overrides);
            QVERIFY2(ka && kb, ka ? "" : ka.error().message.c_str());
            qInfo("%s: PPL %.6f (original %.6f), mean KLD %.6g", spec.c_str(), ka->pplQ, p0->ppl,
                  ka->meanKld);
            if (std::string(linearKernelName()) ==
                "avx2-fma") { // one dot product per output, any panel split
                QCOMPARE(ka->pplQ, kb->pplQ);
                QCOMPARE(ka->meanKld, kb->meanKld);
                QCOMPARE(ka->sameTop, kb->sameTop);
            } else { // Eigen's GEMM blocks by the matrix size: equal to float rounding
                QVERIFY(close(ka->pplQ, kb->pplQ, 1e-5));
                QVERIFY(close(ka->meanKld, kb->meanKld, 1e-3));
            }
            QVERIFY(ka->meanKld > 0);
        }
        // Memory: the engine holds no F32 copy of a source's tensor.
        {
            auto v = makeFakeQuantVariant(*m, *parseMethodSpec("absmax:8:tensor"));
            auto a = variantRunnable(m, *v, {}, true);
            auto b = variantRunnable(m, *v, {}, false);
            EngineOptions oa, ob;
            oa.sources = &a->sources;
            ob.overrides = &b->overrides;
            auto ea = Engine::load(*m, oa), eb = Engine::load(*m, ob), e0 = Engine::load(*m);
            QVERIFY(ea && eb && e0);
            uint64_t overrideBytes = 0;
            for (const auto& [name, values] : b->overrides)
                overrideBytes += 4 * values.size();
            qInfo("resident weight bytes: original %llu, sources %llu, overrides %llu",
                  (unsigned long long)(*e0)->residentWeightBytes(),
                  (unsigned long long)(*ea)->residentWeightBytes(),
                  (unsigned long long)(*eb)->residentWeightBytes());
            QCOMPARE((*ea)->residentWeightBytes(), (*e0)->residentWeightBytes());
            QVERIFY((*eb)->residentWeightBytes() >= (*e0)->residentWeightBytes() + overrideBytes);
            // A source of the wrong shape, or for a tensor the engine does not read by rows, is refused.
            const auto& src = a->sources.at("model.layers.0.mlp.up_proj.weight");
            QVERIFY(!(*ea)->setWeightSource("model.layers.0.mlp.down_proj.weight", src));
            QVERIFY(!(*ea)->setWeightSource("model.layers.0.input_layernorm.weight", src));
            QVERIFY(!(*ea)->setWeightSource("no.such.weight", src));
            // resetWeight returns to the file's values: the original's perplexity again.
            for (const auto& [name, s2] : a->sources)
                QVERIFY((*ea)->resetWeight(name));
        }
        // GPT-2: the engine holds its HF Conv1D weights as F32 transposes of the file; from transposed
        // sources it holds none of them, only the sources' group parameters (8 bytes per stored row here),
        // and reading them back from the file (resetWeight) restores the original's copies.
        {
            auto v = makeFakeQuantVariant(*gpt2, *parseMethodSpec("zeropoint:8:row"));
            auto a = variantRunnable(gpt2, *v, {}, true);
            QVERIFY(a && a->overrides.empty());
            EngineOptions oa;
            oa.sources = &a->sources;
            auto ea = Engine::load(*gpt2, oa), e0 = Engine::load(*gpt2);
            QVERIFY2(ea && e0, ea ? "" : ea.error().message.c_str());
            uint64_t conv1dBytes = 0, sourceBytes = 0, paramBytes = 0;
            for (const auto& t : gpt2->tensors)
                if (weightInputIsRows(t.name)) {
                    conv1dBytes += 4 * t.numel();
                    paramBytes += 8 * uint64_t(t.shape[0]);
                }
            for (const auto& [name, src] : a->sources)
                sourceBytes += src->residentBytes();
            qInfo("GPT-2 resident weight bytes: original %llu, sources %llu (Conv1D F32 %llu)",
                  (unsigned long long)(*e0)->residentWeightBytes(),
                  (unsigned long long)(*ea)->residentWeightBytes(), (unsigned long long)conv1dBytes);
            QVERIFY(conv1dBytes > 0);
            QCOMPARE(sourceBytes, paramBytes);
            QCOMPARE((*ea)->residentWeightBytes(), (*e0)->residentWeightBytes() - conv1dBytes + sourceBytes);
            // A transposed source fits only a Conv1D weight; its rows are the transpose's.
            const auto& c = a->sources.at("transformer.h.0.attn.c_attn.weight");
            QVERIFY(c->transposed());
            QVERIFY(!(*ea)->setWeightSource("transformer.wte.weight", c));
            QVERIFY(!(*ea)->setWeightSource("transformer.h.0.mlp.c_fc.weight", c));
            for (const auto& [name, s2] : a->sources)
                QVERIFY((*ea)->resetWeight(name));
            QCOMPARE((*ea)->residentWeightBytes(), (*e0)->residentWeightBytes());
        }
    }

    // Our EXL2 folder opened as a variant: the reader's values equal the EXL2 exporter's own dequantized
    // weights (what exllamav2's loader reconstructs; read_check.py checks them independently in
    // test_exl2_model), its size is the q_* tensors', and its perplexity from the row sources equals the
    // exporter's weights run as overrides and lies near the original's.
    void exl2FolderAsVariant() {
        auto m = open(kData + "/models/bard-llama");
        const fs::path dir = tempDir("exl2");
        exl2::ExportParams p;
        p.targetBpw = 6.0;
        p.calibPath = kData + "/text/shakespeare-train.txt";
        p.measureCalib = {4, 128, 1};
        p.quantCalib = {8, 128, 1};
        p.seed = 1;
        p.annealIterations = 10;
        p.outputDir = (dir / "out").string();
        p.keepOverrides = true;
        auto r = exl2::exportExl2(*m, p);
        QVERIFY2(r, r ? "" : r.error().message.c_str());
        QVERIFY(looksLikeExl2Folder(p.outputDir));
        QVERIFY(!looksLikeGptqFolder(p.outputDir));
        auto v = openFileVariant(*m, p.outputDir);
        QVERIFY2(v, v ? "" : v.error().message.c_str());
        QCOMPARE(int(v->kind), int(VariantKind::Exl2Folder));
        QCOMPARE(v->label, std::string("EXL2 6.00 bpw h6"));
        auto folder = openExl2Folder(p.outputDir, *m);
        QVERIFY(folder);
        auto fm = open(p.outputDir);
        int compared = 0;
        uint64_t qbytes = 0, qnumel = 0;
        for (const auto& [name, want] : r->overrides) {
            if (name.size() < 7 || name.compare(name.size() - 7, 7, ".weight")) continue;
            const TensorInfo* t = m->find(name);
            QVERIFY(t);
            auto w = readExl2Weight(*folder, name, t->shape[0], t->shape[1]);
            QVERIFY2(w && w->found && w->quantized, name.c_str());
            QVERIFY2(sameBits(w->values, want), name.c_str());
            const VariantTensor* vt = v->find(name);
            QVERIFY(vt);
            const auto x = read(*m, name);
            QVERIFY(close(vt->error.mse, errorStats(x.data(), want.data(), x.size()).mse, 1e-12));
            uint64_t b = 0;
            const std::string prefix = name.substr(0, name.size() - 7);
            for (const char* suf : {".q_weight", ".q_scale", ".q_scale_max", ".q_groups", ".q_invperm"})
                b += fm->find(prefix + suf)->nbytes;
            QCOMPARE(vt->bytes, b);
            qbytes += b;
            qnumel += x.size();
            auto pair = variantTensorPair(*m, *v, name);
            QVERIFY(pair && sameBits(pair->variant, want));
            ++compared;
        }
        QCOMPARE(compared, 29); // 4 layers × 7 linears + lm_head
        QCOMPARE(compared, int(v->tensors.size()));
        // The decoder's bits per weight as the exporter counts them (without the head), from the file.
        const double headBits = 8.0 * double(v->find("lm_head.weight")->bytes);
        const double decBpw =
            (8.0 * double(qbytes) - headBits) / double(qnumel - m->find("lm_head.weight")->numel());
        qInfo("EXL2 decoder %.4f bpw (exporter %.4f), variant %.4f bpw", decBpw, r->achievedBpw,
              v->bitsPerWeight);
        QVERIFY(std::fabs(decBpw - r->achievedBpw) < 1e-9);

        // Evaluated from the row sources: the exporter's weights run as overrides give the same numbers.
        const std::string text = readText(kData + "/text/shakespeare-valid.txt");
        Comparison c;
        c.variants.push_back(*v);
        EvalParams ep;
        ep.nCtx = 128;
        ep.nChunks = 8;
        auto st = evaluateComparison(m, c, text, ep);
        QVERIFY2(st, st ? "" : st.error().message.c_str());
        QVERIFY2(c.variants[0].eval.done, c.variants[0].eval.error.c_str());
        KldBase base;
        auto p0 = evaluatePerplexity(*m, text, ep, {}, nullptr, &base);
        auto k = evaluateKlDivergence(*m, base, ep, {}, &r->overrides);
        QVERIFY(p0 && k);
        qInfo("EXL2 6.0 bpw: PPL %.4f, original %.4f, mean KLD %.5f", c.variants[0].eval.ppl, p0->ppl,
              c.variants[0].eval.meanKld);
        QCOMPARE(c.variants[0].eval.ppl, k->pplQ);
        QCOMPARE(c.variants[0].eval.meanKld, k->meanKld);
        QVERIFY(std::fabs(c.variants[0].eval.ppl / p0->ppl - 1) < 0.02);

        // Hostile folders: refused with the folder and the tensor named.
        auto patch = [&](const std::string& tensor, uint64_t at, const void* bytes, size_t n) {
            const TensorInfo* t = fm->find(tensor);
            QVERIFY(t);
            std::fstream f(fm->files[t->fileIndex]->path(), std::ios::in | std::ios::out | std::ios::binary);
            f.seekp(std::streamoff(t->offset + at));
            f.write(reinterpret_cast<const char*>(bytes), std::streamsize(n));
        };
        const std::string pre = "model.layers.1.mlp.up_proj";
        int16_t firstBits = 0;
        std::memcpy(&firstBits, fm->rawBytes(*fm->find(pre + ".q_groups")).data(), 2);
        const int16_t sevenBits = 7;
        patch(pre + ".q_groups", 0, &sevenBits, 2);
        auto bad = openFileVariant(*m, p.outputDir);
        QVERIFY(!bad);
        QVERIFY2(bad.error().message.find(pre + ": group 0 has 7 bits") != std::string::npos &&
                     bad.error().message.find(p.outputDir) != std::string::npos,
                 bad.error().message.c_str());
        patch(pre + ".q_groups", 0, &firstBits, 2);
        const int32_t dup[2] = {0, 0};
        patch(pre + ".q_invperm", 0, dup, 8);
        auto bad2 = openFileVariant(*m, p.outputDir);
        QVERIFY(!bad2);
        QVERIFY2(bad2.error().message.find(pre + ": q_invperm is not a permutation") != std::string::npos,
                 bad2.error().message.c_str());
        fs::remove_all(dir);
    }

    // phi3's EXL2 folder stores its fused qkv_proj and gate_up_proj split into q/k/v and gate/up (as
    // exllamav2 loads them): the variant reads the fused tensor from the parts, rows in the original's order
    // (q, k, v; gate, up). Its values equal the exporter's dequantized parts stacked, each part equal to
    // that part read alone, and differ from the original's; figures, bytes and the row source the
    // evaluation runs follow from the quantized parts, not from the original's weights.
    void phi3Exl2FusedTensors() {
        const fs::path dir = tempDir("exl2_phi3");
        const std::string modelDir = (dir / "model").string();
        auto w = qztest::writeTinyModel(modelDir, "phi3", kData);
        QVERIFY2(w, w ? "" : w.error().message.c_str());
        auto m = open(modelDir);
        exl2::ExportParams p;
        p.targetBpw = 4.0;
        p.calibPath = kData + "/text/shakespeare-train.txt";
        p.measureCalib = {2, 64, 1};
        p.quantCalib = {4, 64, 1};
        p.seed = 1;
        p.annealIterations = 10;
        p.outputDir = (dir / "out").string();
        p.keepOverrides = true;
        auto r = exl2::exportExl2(*m, p);
        QVERIFY2(r, r ? "" : r.error().message.c_str());
        auto fm = open(p.outputDir);
        QVERIFY(!fm->find("model.layers.0.self_attn.qkv_proj.q_weight")); // stored split only
        QVERIFY(fm->find("model.layers.0.self_attn.k_proj.q_weight"));
        auto v = openFileVariant(*m, p.outputDir);
        QVERIFY2(v, v ? "" : v.error().message.c_str());
        auto folder = openExl2Folder(p.outputDir, *m);
        QVERIFY(folder);
        const qztest::TinyDims d = qztest::tinyDims("phi3");
        const int64_t q = d.heads * d.headDim, kv = d.kvHeads * d.headDim, in = d.hidden;
        struct Part {
            const char* name;
            int64_t row0, rows;
        };
        const std::vector<std::pair<std::string, std::vector<Part>>> fused = {
            {"self_attn.qkv_proj",
             {{"self_attn.q_proj", 0, q}, {"self_attn.k_proj", q, kv}, {"self_attn.v_proj", q + kv, kv}}},
            {"mlp.gate_up_proj", {{"mlp.gate_proj", 0, d.ffn}, {"mlp.up_proj", d.ffn, d.ffn}}}};
        auto run = variantRunnable(m, *v);
        QVERIFY2(run, run ? "" : run.error().message.c_str());
        QVERIFY(run->overrides.empty());
        int checked = 0;
        for (int64_t l = 0; l < d.layers; ++l)
            for (const auto& [fname, parts] : fused) {
                const std::string base = "model.layers." + std::to_string(l) + ".";
                const std::string name = base + fname + ".weight";
                const TensorInfo* t = m->find(name);
                QVERIFY(t);
                const auto x = read(*m, name);
                auto want = r->overrides.find(name);
                QVERIFY2(want != r->overrides.end(), name.c_str());
                QCOMPARE(want->second.size(), x.size());
                // Each part as the folder stores it, against its rows of the exporter's fused weights.
                uint64_t bytes = 0;
                for (const Part& part : parts) {
                    const std::string pn = base + part.name;
                    auto pw = readExl2Weight(*folder, pn + ".weight", part.rows, in);
                    QVERIFY2(pw && pw->found && pw->quantized, pn.c_str());
                    const std::vector<float> rows(want->second.begin() + part.row0 * in,
                                                  want->second.begin() + (part.row0 + part.rows) * in);
                    QVERIFY2(sameBits(pw->values, rows), pn.c_str());
                    for (const char* suf :
                         {".q_weight", ".q_scale", ".q_scale_max", ".q_groups", ".q_invperm"})
                        bytes += fm->find(pn + suf)->nbytes;
                }
                auto fw = readExl2Weight(*folder, name, t->shape[0], t->shape[1]);
                QVERIFY2(fw && fw->found && fw->quantized, name.c_str());
                QVERIFY2(sameBits(fw->values, want->second), name.c_str());
                QVERIFY(!sameBits(fw->values, x));
                const VariantTensor* vt = v->find(name);
                QVERIFY2(vt, name.c_str());
                QCOMPARE(vt->bytes, bytes);
                const ErrorStats e = errorStats(x.data(), want->second.data(), x.size());
                QVERIFY(e.mse > 0);
                QVERIFY(close(vt->error.mse, e.mse, 1e-12));
                auto pair = variantTensorPair(*m, *v, name);
                QVERIFY2(pair, pair ? "" : pair.error().message.c_str());
                QVERIFY(sameBits(pair->variant, want->second) && sameBits(pair->original, x));
                auto src = run->sources.find(name);
                QVERIFY2(src != run->sources.end(), name.c_str());
                QVERIFY(sameBits(decodeAll(*src->second), want->second));
                ++checked;
            }
        QCOMPARE(checked, int(2 * d.layers));
        QCOMPARE(int(v->tensors.size()), int(4 * d.layers + 1)); // qkv, o, gate_up, down per layer + lm_head
        // Evaluated from the row sources: the exporter's weights run as overrides give the same numbers.
        const std::string text = readText(kData + "/text/shakespeare-valid.txt");
        Comparison c;
        c.variants.push_back(*v);
        EvalParams ep;
        ep.nCtx = 64;
        ep.nChunks = 4;
        auto st = evaluateComparison(m, c, text, ep);
        QVERIFY2(st, st ? "" : st.error().message.c_str());
        QVERIFY2(c.variants[0].eval.done, c.variants[0].eval.error.c_str());
        KldBase base;
        auto p0 = evaluatePerplexity(*m, text, ep, {}, nullptr, &base);
        auto k = evaluateKlDivergence(*m, base, ep, {}, &r->overrides);
        QVERIFY(p0 && k);
        qInfo("phi3 EXL2 4.0 bpw: PPL %.4f, original %.4f, mean KLD %.5f", c.variants[0].eval.ppl, p0->ppl,
              c.variants[0].eval.meanKld);
        QVERIFY(close(c.variants[0].eval.ppl, k->pplQ, 1e-5));
        QVERIFY(close(c.variants[0].eval.meanKld, k->meanKld, 1e-3));
        QVERIFY(c.variants[0].eval.meanKld > 0);
        // A folder with one part of a fused weight missing (its q_weight renamed in the header) is refused,
        // naming the folder, the fused weight and the part.
        {
            const std::string file =
                fm->files[fm->find("model.layers.1.self_attn.k_proj.q_weight")->fileIndex]->path();
            fm.reset();
            std::string bytes = readText(file);
            const std::string from = "model.layers.1.self_attn.k_proj.q_weight";
            const auto at = bytes.find(from);
            QVERIFY(at != std::string::npos);
            bytes.replace(at, from.size(), "model.layers.1.self_attn.k_prxj.q_weight");
            std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
        }
        auto bad = openFileVariant(*m, p.outputDir);
        QVERIFY(!bad);
        QVERIFY2(bad.error().message.find(p.outputDir) != std::string::npos &&
                     bad.error().message.find("model.layers.1.self_attn.qkv_proj.weight is stored split") !=
                         std::string::npos &&
                     bad.error().message.find("model.layers.1.self_attn.k_proj.weight has no q_weight") !=
                         std::string::npos,
                 bad.error().message.c_str());
        fs::remove_all(dir);
    }

    // A phi3 GPTQ folder keeps the fused qkv_proj and gate_up_proj under their own names (AutoGPTQ's
    // phi3 module groups, core/gptq/README.md D.1): the variant reads them as they are, quantized, equal to
    // the exporter's dequantized weights, from row sources.
    void phi3GptqFusedTensors() {
        const fs::path dir = tempDir("gptq_phi3");
        const std::string modelDir = (dir / "model").string();
        auto w = qztest::writeTinyModel(modelDir, "phi3", kData);
        QVERIFY2(w, w ? "" : w.error().message.c_str());
        auto m = open(modelDir);
        gptq::ExportParams p;
        p.quant.bits = 4;
        p.quant.groupSize = 32;
        p.method = gptq::Method::Rtn;
        p.outputDir = (dir / "out").string();
        p.keepOverrides = true;
        auto r = gptq::exportGptq(*m, p);
        QVERIFY2(r, r ? "" : r.error().message.c_str());
        auto v = openFileVariant(*m, p.outputDir);
        QVERIFY2(v, v ? "" : v.error().message.c_str());
        auto run = variantRunnable(m, *v);
        QVERIFY2(run, run ? "" : run.error().message.c_str());
        int fused = 0;
        for (const char* name :
             {"model.layers.0.self_attn.qkv_proj.weight", "model.layers.1.mlp.gate_up_proj.weight"}) {
            const VariantTensor* vt = v->find(name);
            QVERIFY2(vt, name);
            const auto x = read(*m, name);
            const auto& want = r->overrides.at(name);
            QVERIFY(!sameBits(want, x));
            QVERIFY(close(vt->error.mse, errorStats(x.data(), want.data(), x.size()).mse, 1e-12));
            auto pair = variantTensorPair(*m, *v, name);
            QVERIFY(pair && sameBits(pair->variant, want));
            QVERIFY(sameBits(decodeAll(*run->sources.at(name)), want));
            ++fused;
        }
        QCOMPARE(fused, 2);
        fs::remove_all(dir);
    }

    void pareto() {
        // (bpw, kld): a dominates b; c and d are the trade-off; e has a NaN.
        const std::vector<double> x{4.0, 4.5, 8.0, 2.5, 3.0, NAN, 8.0};
        const std::vector<double> y{0.10, 0.20, 0.01, 0.50, 0.60, 0.0, 0.02};
        const auto f = paretoFront(x, y);
        QCOMPARE(f, (std::vector<size_t>{3, 0, 2}));
        QVERIFY(paretoFront({}, {}).empty());
    }

    void projectFile() {
        auto m = open(kHf);
        Comparison c;
        c.modelPath = m->path;
        c.textPath = kData + "/text/shakespeare-valid.txt";
        c.nCtx = 64;
        c.nChunks = 3;
        c.tensor = "model.layers.0.mlp.up_proj.weight";
        auto a = makeFakeQuantVariant(*m, *parseMethodSpec("zeropoint:4:group:32"));
        QVERIFY(a);
        a->eval = {true, 130.5, 11.25, 0.125, 0.75, 1200, ""};
        c.variants.push_back(*a);
        auto g = openFileVariant(*m, kQ4);
        QVERIFY(g);
        g->eval.error = "failed for a reason";
        c.variants.push_back(*g);
        c.selected = {1, 0};
        c.originalEval = VariantEval{true, 124.5, 10.5, 0, 1, 1200, ""};
        const fs::path dir = tempDir("project");
        const std::string path = (dir / "c.json").string();
        QVERIFY(saveComparison(c, path));
        auto back = loadComparison(path);
        QVERIFY2(back, back ? "" : back.error().message.c_str());
        QCOMPARE(back->modelPath, c.modelPath);
        QCOMPARE(back->textPath, c.textPath);
        QCOMPARE(back->nCtx, 64);
        QCOMPARE(back->nChunks, 3);
        QCOMPARE(back->tensor, c.tensor);
        QCOMPARE(back->selected, c.selected);
        QVERIFY(back->originalEval && back->originalEval->ppl == 124.5);
        QCOMPARE(back->variants.size(), size_t(2));
        for (size_t i = 0; i < 2; ++i) {
            const Variant &x = c.variants[i], &y = back->variants[i];
            QCOMPARE(y.name, x.name);
            QCOMPARE(int(y.kind), int(x.kind));
            QCOMPARE(y.path, x.path);
            QCOMPARE(y.label, x.label);
            QCOMPARE(y.bytes, x.bytes);
            QCOMPARE(y.bitsPerWeight, x.bitsPerWeight);
            QCOMPARE(y.eval.done, x.eval.done);
            QCOMPARE(y.eval.ppl, x.eval.ppl);
            QCOMPARE(y.eval.meanKld, x.eval.meanKld);
            QCOMPARE(y.eval.error, x.eval.error);
            QCOMPARE(y.tensors.size(), x.tensors.size());
            for (size_t k = 0; k < x.tensors.size(); ++k) {
                QCOMPARE(y.tensors[k].name, x.tensors[k].name);
                QCOMPARE(y.tensors[k].error.mse, x.tensors[k].error.mse);
                QCOMPARE(y.tensors[k].error.sqnrDb, x.tensors[k].error.sqnrDb);
                QCOMPARE(y.tensors[k].error.maxAbs, x.tensors[k].error.maxAbs);
            }
        }
        QCOMPARE(methodSpecString(back->variants[0].spec), std::string("zeropoint:4:group:32"));
        // The reopened fake-quant variant re-makes the same values.
        auto p1 = variantTensorPair(*m, c.variants[0], c.tensor),
             p2 = variantTensorPair(*m, back->variants[0], c.tensor);
        QVERIFY(p1 && p2);
        QCOMPARE(p1->variant, p2->variant);
        // CSV: header + original + 2 rows; the evaluated row carries its figures.
        const std::string csv = comparisonCsv(c, 32.0, m->totalBytes());
        QCOMPARE(std::count(csv.begin(), csv.end(), '\n'), 4L);
        QVERIFY(csv.find(",130.5,11.25,0.125,75\n") != std::string::npos);
        const std::string svg = sizeKldSvg(c);
        QCOMPARE(size_t(std::count(svg.begin(), svg.end(), '\n')) > 5, true);
        QVERIFY(svg.find("class=\"variant\"") != std::string::npos); // the one evaluated variant

        // Hostile files: each refused with the file and the field named.
        const std::string good = comparisonToJson(c);
        struct Case {
            std::string from, to, field;
        };
        const std::vector<Case> cases{
            {"\"quantzoo-compare\"", "\"other\"", "not a QuantZoo comparison"},
            {"\"version\": 1", "\"version\": 7", "version 7"},
            {"\"nCtx\": 64", "\"nCtx\": -5", "nCtx"},
            {"\"kind\": \"gguf\"", "\"kind\": \"exe\"", "variants[1].kind"},
            {"\"bytes\": " + std::to_string(c.variants[0].bytes), "\"bytes\": \"many\"", "variants[0].bytes"},
            {"\"method\": \"zeropoint\"", "\"method\": \"zeropoint\", \"bits\": 99, \"x\": 0", ""},
        };
        for (const auto& k : cases) {
            std::string text = good;
            const auto at = text.find(k.from);
            QVERIFY2(at != std::string::npos, k.from.c_str());
            text.replace(at, k.from.size(), k.to);
            auto r = comparisonFromJson(text, "bad.json");
            QVERIFY2(!r, k.to.c_str());
            QVERIFY2(r.error().message.rfind("bad.json", 0) == 0, r.error().message.c_str());
            QVERIFY2(r.error().message.find(k.field) != std::string::npos, r.error().message.c_str());
        }
        std::string sel = good;
        sel.replace(sel.find("\"selected\": ["), 13, "\"selected\": [5,");
        QVERIFY(!comparisonFromJson(sel, "bad.json"));
        QVERIFY(!comparisonFromJson(std::string(100000, '['), "deep.json"));
        QVERIFY(!comparisonFromJson("", "empty.json"));
        QVERIFY(!loadComparison((dir / "missing.json").string()));
        fs::remove_all(dir);
    }
};

QTEST_GUILESS_MAIN(TestVariants)
#include "test_variants.moc"
