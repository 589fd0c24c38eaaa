// Perplexity and KL-divergence as llama-perplexity computes them.
//
// Expected figures: llama.cpp's own (tests/data/golden/*/ppl.tsv, llama-perplexity -c 128 --chunks 32 on
// shakespeare-valid.txt): bard-llama F32 8.2872 +/- 0.35352, bard-gpt2 F32 25.2283. The chunking rules
// are also checked against an independent re-computation from raw logits written in this test.
#include <QtTest>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ggml/dequantize.h"
#include "ggml/quantize.h"
#include "infer/evaluate.h"
#include "infer/perplexity.h"
#include "infer/text_tokens.h"
#include "model/model.h"

using namespace qz;

namespace {

const std::string kData = QZ_TEST_DATA;

std::string readText(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

struct Run {
    PerplexityResult ppl;
    KldBase base;
};

// Full llama-perplexity run (-c 128 --chunks 32) of a model on shakespeare-valid.txt.
std::optional<Run> runPpl(const std::string& modelPath, bool forceBos, int threads = 0) {
    auto m = openModel(modelPath);
    if (!m) {
        qWarning("%s", m.error().message.c_str());
        return std::nullopt;
    }
    auto in = tokenizeForPerplexity(**m, readText(kData + "/text/shakespeare-valid.txt"), forceBos);
    if (!in) {
        qWarning("%s", in.error().message.c_str());
        return std::nullopt;
    }
    EngineOptions opt;
    opt.nCtx = 128;
    opt.threads = threads;
    auto e = Engine::load(**m, opt);
    if (!e) {
        qWarning("%s", e.error().message.c_str());
        return std::nullopt;
    }
    PerplexityParams p = in->params;
    p.nCtx = 128;
    p.nChunks = 32;
    Run r;
    auto res = computePerplexity(**e, in->tokens, p, {}, &r.base);
    if (!res) {
        qWarning("%s", res.error().message.c_str());
        return std::nullopt;
    }
    r.ppl = *res;
    qInfo("%s: %s", modelPath.c_str(), formatFinalEstimate(r.ppl).c_str());
    return r;
}

bool within(double got, double want, double rel) { return std::fabs(got - want) <= rel * std::fabs(want); }

}  // namespace

class TestInferPpl : public QObject {
    Q_OBJECT
private slots:
    void bardLlamaMatchesLlamaCpp() {
        auto r = runPpl(kData + "/models/bard-llama", false);
        QVERIFY(r);
        QCOMPARE(r->ppl.nChunks, 32);
        QCOMPARE(r->ppl.count, int64_t(32 * 63));
        QVERIFY2(within(r->ppl.ppl, 8.2872, 0.001), qPrintable(QString::number(r->ppl.ppl, 'f', 5)));
        QVERIFY2(within(r->ppl.pplError, 0.35352, 0.001), qPrintable(QString::number(r->ppl.pplError, 'f', 6)));
        // Our figure lands on llama.cpp's printed digits (F16 KV cache emulated).
        QVERIFY(std::fabs(r->ppl.ppl - 8.2872) < 0.0002);
        QCOMPARE(QString::fromStdString(formatFinalEstimate(r->ppl)).left(29), QString("Final estimate: PPL = 8.2872 "));
    }

    void bardGpt2MatchesLlamaCpp() {
        // llama.cpp's golden 25.2283 is reproduced only with a BOS (id 1023) in front of the text and at
        // every chunk start, although the GGUF says add_bos_token = false; see the report.
        auto r = runPpl(kData + "/models/bard-gpt2", true);
        QVERIFY(r);
        QVERIFY2(within(r->ppl.ppl, 25.2283, 0.001), qPrintable(QString::number(r->ppl.ppl, 'f', 5)));
        auto plain = runPpl(kData + "/models/bard-gpt2", false);
        QVERIFY(plain);
        QVERIFY(std::fabs(plain->ppl.ppl - r->ppl.ppl) > 0.01);  // BOS does matter
    }

    // computePerplexity against a re-computation from raw logits: chunking, BOS replacement, second half.
    void chunkRulesIndependent() {
        auto m = openModel(kData + "/models/stories260K/hf");
        QVERIFY(m);
        EngineOptions opt;
        opt.nCtx = 16;
        auto e = Engine::load(**m, opt);
        QVERIFY(e);
        Engine& en = **e;
        std::vector<int32_t> toks;
        for (int i = 0; i < 75; ++i) toks.push_back((i * 131 + 7) % 512);  // 4 whole chunks of 16, 11 left
        PerplexityParams p;
        p.nCtx = 16;
        p.nChunks = -1;
        p.addBos = true;
        p.bosId = 1;
        auto r = computePerplexity(en, toks, p);
        QVERIFY(r);
        QCOMPARE(r->nChunks, 4);
        QCOMPARE(r->count, int64_t(4 * 7));
        double sum = 0, sum2 = 0;
        int n = 0;
        std::vector<float> logits(16 * 512);
        for (int c = 0; c < 4; ++c) {
            std::vector<int32_t> in(toks.begin() + c * 16, toks.begin() + c * 16 + 16);
            in[0] = 1;
            en.reset();
            QVERIFY(en.eval(in, 0, logits.data(), 0).ok());
            for (int pos = 8; pos < 15; ++pos) {  // logits at 8..14 predict tokens 9..15
                const float* l = logits.data() + pos * 512;
                double mx = -1e30, z = 0;
                for (int i = 0; i < 512; ++i) mx = std::max(mx, double(l[i]));
                for (int i = 0; i < 512; ++i) z += std::exp(double(l[i]) - mx);
                const double nll = -(double(l[toks[c * 16 + pos + 1]]) - mx - std::log(z));
                sum += nll;
                sum2 += nll * nll;
                ++n;
            }
        }
        const double mean = sum / n, ppl = std::exp(mean);
        const double err = ppl * std::sqrt((sum2 / n - mean * mean) / (n - 1));
        QVERIFY(within(r->ppl, ppl, 1e-6));
        QVERIFY(within(r->pplError, err, 1e-5));
        QCOMPARE(r->runningPpl.size(), size_t(4));
        QVERIFY(within(r->runningPpl.back(), r->ppl, 1e-12));
        // --chunks limits the count.
        p.nChunks = 2;
        auto r2 = computePerplexity(en, toks, p);
        QVERIFY(r2);
        QCOMPARE(r2->nChunks, 2);
        QVERIFY(within(r2->runningPpl[1], r->runningPpl[1], 1e-12));
        // Too few tokens, a context larger than the engine's, cancellation.
        QVERIFY(!computePerplexity(en, std::span(toks.data(), 31), p).ok());
        p.nCtx = 32;
        QVERIFY(!computePerplexity(en, toks, p).ok());
        p.nCtx = 16;
        auto cancelled = computePerplexity(en, toks, p, [](const ProgressInfo&) { return false; });
        QVERIFY(!cancelled);
        QVERIFY(cancelled.error().cancelled);
    }

    // A model against its own stored log-probabilities: only the uint16 storage separates them.
    void kldSelfAndFileRoundTrip() {
        auto m = openModel(kData + "/models/stories260K/hf");
        QVERIFY(m);
        EngineOptions opt;
        opt.nCtx = 64;
        auto e = Engine::load(**m, opt);
        QVERIFY(e);
        auto in = tokenizeForPerplexity(**m, readText(kData + "/text/shakespeare-valid.txt"));
        QVERIFY2(in, in ? "" : in.error().message.c_str());
        QVERIFY(in->params.addBos);
        QCOMPARE(in->tokens.front(), 1);
        PerplexityParams p = in->params;
        p.nCtx = 64;
        p.nChunks = 8;
        KldBase base;
        auto r = computePerplexity(**e, in->tokens, p, {}, &base);
        QVERIFY(r);
        QCOMPARE(base.nChunks, 8);
        QCOMPARE(base.logProbs.size(), size_t(8 * 31 * (512 + 4)));
        auto k = computeKlDivergence(**e, base, p);
        QVERIFY(k);
        QCOMPARE(k->count, int64_t(8 * 31));
        QVERIFY(std::fabs(k->meanKld) < 1e-4);
        QVERIFY(k->maxKld < 1e-3);
        QVERIFY(k->sameTop > 0.99);
        QVERIFY(within(k->pplQ, r->ppl, 1e-4));
        // The stored base clamps log-probabilities below (max logit − 16) - stories260K on Shakespeare has
        // such targets - so PPL(base) can only be lower than the real one.
        qInfo("PPL %.4f, PPL(Q) %.4f, PPL(base) %.4f", r->ppl, k->pplQ, k->pplBase);
        QVERIFY(k->pplBase <= r->ppl * (1 + 1e-4));
        QVERIFY(k->pplBase > 0.5 * r->ppl);
        QVERIFY(k->rmsDp < 1e-3);
        const std::string report = formatKldReport(*k);
        QVERIFY(report.find("Mean    KLD:") != std::string::npos);
        QVERIFY(report.find("Same top p:") != std::string::npos);

        // llama-perplexity's logits file: save, load, identical.
        const std::string path = QDir::tempPath().toStdString() + "/qz_test_kld_base.bin";
        QVERIFY(saveKldBase(base, path).ok());
        auto back = loadKldBase(path);
        QVERIFY(back);
        QCOMPARE(back->nCtx, 64);
        QVERIFY(back->tokens == base.tokens);
        QVERIFY(back->logProbs == base.logProbs);
        // Truncated file: a clear error.
        std::filesystem::resize_file(path, std::filesystem::file_size(path) - 2);
        QVERIFY(!loadKldBase(path).ok());
        std::filesystem::remove(path);
    }

    // Evaluation of a fake-quantized model without any file: bard-llama's weights quantized in memory to
    // llama-quantize's Q4_0 mix (every 2-D weight Q4_0, the output head Q6_K; ppl.tsv: F32:9,Q4_0:29,
    // Q6_K:1), dequantized, passed as overrides. Rows are quantized independently, so HF's row order
    // (before the Q/K permutation) quantizes to the same blocks. llama.cpp: PPL 8.2733, KLD 0.006287,
    // same top 93.750 %, RMS dp 2.245 % (it also rounds activations to 8 bits: close, not equal).
    void fakeQuantizedOverrides() {
        auto m = openModel(kData + "/models/bard-llama");
        QVERIFY(m);
        const Model& model = **m;
        WeightOverrides ov;
        for (const TensorInfo& t : model.tensors) {
            if (t.shape.size() != 2) continue;
            const DType type = t.name == "lm_head.weight" ? DType::Q6_K : DType::Q4_0;
            auto w = readTensorF32(model, t);
            QVERIFY(w);
            const auto rowBytes = bytesFor(type, static_cast<uint64_t>(t.cols()));
            QVERIFY(rowBytes);
            std::vector<uint8_t> q(*rowBytes * t.rows());
            QVERIFY(ggml::quantizeTensor(type, w->data(), t.rows(), t.cols(), nullptr, q.data(), 0).ok());
            std::vector<float> back(w->size());
            QVERIFY(ggml::dequantize(type, q.data(), back.data(), static_cast<int64_t>(back.size())));
            ov[t.name] = std::move(back);
        }
        QCOMPARE(ov.size(), size_t(30));
        const std::string text = readText(kData + "/text/shakespeare-valid.txt");
        EvalParams ep;
        ep.nCtx = 128;
        ep.nChunks = 32;
        KldBase base;
        double lastFraction = -1;
        bool monotone = true;
        auto pr = evaluatePerplexity(model, text, ep, [&](const ProgressInfo& i) {
            monotone = monotone && i.fraction >= lastFraction - 1e-12;
            lastFraction = i.fraction;
            return true;
        }, nullptr, &base);
        QVERIFY(pr);
        QVERIFY(monotone);
        QCOMPARE(lastFraction, 1.0);
        QVERIFY(std::fabs(pr->ppl - 8.2872) < 0.0002);
        auto q = evaluatePerplexity(model, text, ep, {}, &ov);
        QVERIFY(q);
        auto k = evaluateKlDivergence(model, base, ep, {}, &ov);
        QVERIFY2(k, k ? "" : k.error().message.c_str());
        qInfo("fake Q4_0: %s; KLD %.6f, 99%% %.6f, max %.6f, same top %.3f %%, RMS dp %.3f %%",
              formatFinalEstimate(*q).c_str(), k->meanKld, k->kld99, k->maxKld, 100 * k->sameTop, 100 * k->rmsDp);
        QVERIFY(within(q->ppl, 8.2733, 0.002));
        QVERIFY(within(k->pplQ, q->ppl, 1e-4));
        QVERIFY(within(k->meanKld, 0.006287, 0.05));
        QVERIFY(std::fabs(100 * k->sameTop - 93.750) < 1.0);
        QVERIFY(std::fabs(100 * k->rmsDp - 2.245) < 0.1);
    }

    // llama.cpp's own GGUF files (tests/data/golden) against the F32 logits, evaluated from the stored
    // weights with activations encoded as llama.cpp's CPU backend does (Q8_0 / Q8_K codes, BF16): the
    // figures of ppl.tsv (llama-perplexity on the machine that made the goldens). They agree to the order
    // of float additions and the CPU's kernel choice (llama.cpp itself moves the PPL of these files by up
    // to 1e-3 between CPUs, tests/llama/README.md); the KL-divergences agree to 1 %, which F32 activations
    // (HF semantics) do not reach for Q4_0 and Q3_K_M (checked below). The F32 base comes from the HF
    // model, which is the same function as llama.cpp's F32 file (test_hf_to_gguf checks the converted
    // tensors byte for byte).
    void goldenGgufFiles() {
        auto base = runPpl(kData + "/models/bard-llama", false);
        QVERIFY(base);
        QVERIFY(std::fabs(base->ppl.ppl - 8.2872) < 0.0002);
        struct Golden {
            const char* type;
            double ppl, kld, sameTop, rmsDp;
            bool floatMisses;  // F32 activations give a KLD outside 1 %
        };
        // ppl.tsv: ppl, mean_kld, same_top_p_pct, rms_dp_pct.
        const Golden goldens[] = {{"Q4_0", 8.2733, 0.006287, 93.750, 2.245, true},
                                  {"Q2_K", 8.7002, 0.061792, 84.077, 7.086, false},
                                  {"Q3_K_M", 8.4072, 0.012910, 92.659, 3.267, true}};
        for (const Golden& g : goldens) {
            auto m = openModel(kData + "/golden/bard-llama/bard-llama-" + g.type + ".gguf");
            QVERIFY(m);
            for (bool ggml : {true, false}) {
                EngineOptions opt;
                opt.nCtx = 128;
                opt.ggmlActivations = ggml;
                auto e = Engine::load(**m, opt);
                QVERIFY(e);
                PerplexityParams p = defaultPerplexityParams(**e, 128, 32);
                auto k = computeKlDivergence(**e, base->base, p);
                QVERIFY(k);
                qInfo("%s (%s activations): PPL %.4f KLD %.6f 99%% %.6f max %.6f same top %.3f%% RMS dp %.3f%%", g.type,
                      ggml ? "ggml" : "F32", k->pplQ, k->meanKld, k->kld99, k->maxKld, 100 * k->sameTop, 100 * k->rmsDp);
                if (!ggml) {
                    QCOMPARE(!within(k->meanKld, g.kld, 0.01), g.floatMisses);
                    continue;
                }
                QVERIFY(within(k->pplQ, g.ppl, 1e-3));
                QVERIFY(within(k->meanKld, g.kld, 0.01));
                QVERIFY(std::fabs(100 * k->sameTop - g.sameTop) < 0.3);
                QVERIFY(std::fabs(100 * k->rmsDp - g.rmsDp) < 0.03);
            }
        }
        // stories260K's K-quant files (ppl.tsv: Q2_K 123.817695, Q4_K_M 124.230568).
        for (auto [file, want] : {std::pair{"stories260K-Q2_K.gguf", 123.817695}, {"stories260K-Q4_K_M.gguf", 124.230568}}) {
            auto r = runPpl(kData + "/golden/stories260K/" + file, false);
            QVERIFY(r);
            QVERIFY2(within(r->ppl.ppl, want, 1e-3), qPrintable(QString::number(r->ppl.ppl, 'f', 4)));
        }
        // GPT-2 from its GGUF (fused attn_qkv already [out, in], position_embd, token_embd as output).
        const std::string g2 = kData + "/golden/bard-gpt2/bard-gpt2-BF16.gguf";
        auto gr = runPpl(g2, true);
        QVERIFY(gr);
        qInfo("bard-gpt2-BF16.gguf: PPL %.6f", gr->ppl.ppl);
        // llama.cpp on this file (ppl.tsv): 25.231337, with activations rounded to BF16 inside its dot
        // products as ours are (F32 activations give 25.2318, the F32 model 25.2283: both outside this bound).
        QVERIFY(within(gr->ppl.ppl, 25.231337, 1e-5));
    }
};

QTEST_GUILESS_MAIN(TestInferPpl)
#include "test_infer_ppl.moc"
