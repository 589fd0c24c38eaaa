// Variants of a model (core/variants): method specs, a fake-quantized variant's figures and re-made values
// against absmax computed by hand here, a llama.cpp-written GGUF (tests/data/golden) matched tensor by
// tensor with the HF original and its error computed here by a plain loop, a GPTQ folder read back equal
// to the exporter's own dequantized weights, the Pareto front on hand-made points, and the project file
// (round trip, hostile files refused with the file and field named).
#include <QtTest>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "gptq/gptq_export.h"
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
