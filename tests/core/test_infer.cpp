// Inference engine: logits against an independent reference forward pass, cache/batch consistency,
// GGUF vs HF layouts (Q/K permutation), overrides, the calibration observer, bad input.
//
// Expected logits come from an independent pure-Python forward pass (written separately from the
// engine, double precision, HF layouts) run on the same safetensors files; the selected values are
// quoted here (token index -> logit) for three positions of a short token sequence.
#include <QtTest>

#include <cmath>
#include <map>
#include <set>

#include "infer/engine.h"
#include "infer/matmul.h"
#include "model/model.h"

using namespace qz;

namespace {

const std::string kData = QZ_TEST_DATA;

struct RefRow {
    int pos;
    std::vector<int> idx;
    std::vector<float> val;
};

std::shared_ptr<Model> open(const std::string& rel) {
    auto m = openModel(kData + "/" + rel);
    if (!m) qWarning("%s", m.error().message.c_str());
    return m ? *m : nullptr;
}

// Exact float semantics (no llama.cpp fp16 emulation) for comparisons with the float reference.
EngineOptions exactOptions() {
    EngineOptions o;
    o.kvF16 = false;
    o.ggmlGelu = false;
    return o;
}

std::vector<float> logitsAll(Engine& e, const std::vector<int32_t>& toks) {
    std::vector<float> out(toks.size() * e.nVocab());
    e.reset();
    auto st = e.eval(toks, 0, out.data(), 0);
    if (!st) qWarning("%s", st.error().message.c_str());
    return st ? out : std::vector<float>();
}

void checkRef(const std::vector<float>& logits, int nVocab, const std::vector<RefRow>& ref, float tol) {
    QVERIFY(!logits.empty());
    for (const auto& r : ref)
        for (size_t i = 0; i < r.idx.size(); ++i) {
            const float got = logits[static_cast<size_t>(r.pos) * nVocab + r.idx[i]];
            if (std::fabs(got - r.val[i]) > tol)
                QFAIL(qPrintable(QString("pos %1 token %2: got %3, reference %4")
                                     .arg(r.pos).arg(r.idx[i]).arg(got, 0, 'f', 6).arg(r.val[i], 0, 'f', 6)));
        }
}

float maxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size() || a.empty()) return INFINITY;
    float m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

}  // namespace

class TestInfer : public QObject {
    Q_OBJECT
private slots:
    void stories260KMatchesReference() {
        auto m = open("models/stories260K/hf");
        QVERIFY(m);
        auto e = Engine::load(*m, exactOptions());
        QVERIFY2(e, e ? "" : e.error().message.c_str());
        QCOMPARE((*e)->nVocab(), 512);
        QCOMPARE((*e)->hparams().nHeadKv, 4);
        const std::vector<int32_t> toks = {1, 400, 30, 200, 17, 5, 99};
        const std::vector<int> idx = {0, 1, 13, 100, 257, 400, 511};
        const std::vector<RefRow> ref = {
            {0, idx, {-6.222914f, 8.404342f, 6.449807f, -6.222722f, -6.222970f, 3.953947f, -4.405519f}},
            {3, idx, {-15.442842f, 1.342077f, 2.465045f, -15.442576f, -15.443184f, 6.579258f, -11.344088f}},
            {6, idx, {-13.995786f, 1.793913f, 2.575919f, -13.995715f, -13.996222f, 5.773313f, -10.429475f}},
        };
        checkRef(logitsAll(**e, toks), 512, ref, 2e-3f);
    }

    void bardLlamaBf16MatchesReference() {
        auto m = open("models/bard-llama");
        QVERIFY(m);
        auto e = Engine::load(*m, exactOptions());
        QVERIFY2(e, e ? "" : e.error().message.c_str());
        QVERIFY((*e)->hparams().addBos);
        QCOMPARE((*e)->hparams().bosId, 1);
        const std::vector<int32_t> toks = {1, 300, 17, 400, 42};
        const std::vector<int> idx = {0, 1, 13, 100, 257, 400, 511};
        const std::vector<RefRow> ref = {
            {0, idx, {-19.576803f, -19.500083f, 2.115316f, -19.493858f, -19.502741f, -1.595823f, -19.429767f}},
            {2, idx, {-14.504224f, -14.630832f, 4.297272f, -14.675174f, -14.446113f, 0.369027f, -14.633827f}},
            {4, idx, {-18.796004f, -18.918562f, 3.671052f, -18.837467f, -18.690751f, 0.231236f, -18.840963f}},
        };
        checkRef(logitsAll(**e, toks), 512, ref, 3e-3f);
    }

    void bardGpt2MatchesReference() {
        auto m = open("models/bard-gpt2");
        QVERIFY(m);
        auto e = Engine::load(*m, exactOptions());
        QVERIFY2(e, e ? "" : e.error().message.c_str());
        QVERIFY(!(*e)->hparams().addBos);
        QCOMPARE((*e)->nVocab(), 1024);
        QCOMPARE((*e)->nCtxMax(), 256);
        const std::vector<int32_t> toks = {5, 300, 17, 900, 42};
        const std::vector<int> idx = {0, 1, 13, 100, 257, 700, 1023};
        const std::vector<RefRow> ref = {
            {0, idx, {0.669164f, -7.874219f, 0.448339f, -7.946050f, 0.405361f, -2.874960f, -8.014758f}},
            {2, idx, {5.426590f, -12.385701f, 6.500176f, -12.403755f, -5.544811f, -8.324444f, -12.213394f}},
            {4, idx, {1.606910f, -14.124900f, 1.785157f, -14.051860f, -1.700921f, 0.291540f, -14.217389f}},
        };
        checkRef(logitsAll(**e, toks), 1024, ref, 3e-3f);
    }

    // The GGUF (ggml's interleaved-pair Q/K rows, GGUF names) and the HF folder of stories260K give the
    // same logits: checks the un-permutation and the name mapping independently of any reference.
    void ggufMatchesHf() {
        auto hf = open("models/stories260K/hf");
        auto gg = open("models/stories260K/stories260K.gguf");
        QVERIFY(hf && gg);
        QCOMPARE(gg->format, ModelFormat::Gguf);
        auto eh = Engine::load(*hf, exactOptions());
        auto eg = Engine::load(*gg, exactOptions());
        QVERIFY2(eg, eg ? "" : eg.error().message.c_str());
        QVERIFY(eh);
        QCOMPARE((*eg)->hparams().nHeadKv, (*eh)->hparams().nHeadKv);
        QCOMPARE((*eg)->hparams().headDim, 8);
        const std::vector<int32_t> toks = {1, 400, 30, 200, 17, 5, 99, 250, 3, 77, 301, 12};
        const auto a = logitsAll(**eh, toks), b = logitsAll(**eg, toks);
        QVERIFY2(maxAbsDiff(a, b) < 1e-4f, qPrintable(QString::number(maxAbsDiff(a, b))));
        // Without the un-permutation the logits would differ: make sure the test can see that.
        WeightOverrides ov;
        for (int l = 0; l < 5; ++l) {
            const std::string n = "model.layers." + std::to_string(l) + ".self_attn.q_proj.weight";
            auto w = readTensorF32(*hf, *hf->find(n));
            QVERIFY(w);
            std::vector<float> p(w->size());  // apply convert's permute: gguf[h*hd+2i+j] = hf[h*hd+j*hd/2+i]
            for (int h = 0; h < 8; ++h)
                for (int i = 0; i < 4; ++i)
                    for (int j = 0; j < 2; ++j)
                        std::copy_n(w->begin() + (h * 8 + j * 4 + i) * 64, 64, p.begin() + (h * 8 + 2 * i + j) * 64);
            ov[n] = p;
        }
        EngineOptions o = exactOptions();
        o.overrides = &ov;
        auto wrong = Engine::load(*hf, o);
        QVERIFY(wrong);
        QVERIFY(maxAbsDiff(a, logitsAll(**wrong, toks)) > 1e-2f);
    }

    // q/k/v biases (qwen2's path), supplied as overrides (an override may add an optional tensor).
    void biases() {
        auto hf = open("models/stories260K/hf");
        auto gg = open("models/stories260K/stories260K.gguf");
        QVERIFY(hf && gg);
        const std::vector<int32_t> toks = {1, 400, 30, 200, 17, 5};
        auto plain = Engine::load(*hf, exactOptions());
        QVERIFY(plain);
        const auto ref = logitsAll(**plain, toks);
        // A v bias b adds Σ p·b = b to every head's output, i.e. Wo·b to the residual: same as an o bias.
        std::vector<float> b(32);
        for (int i = 0; i < 32; ++i) b[i] = 0.05f * ((i * 7) % 11 - 5);
        auto wo = readTensorF32(*hf, *hf->find("model.layers.1.self_attn.o_proj.weight"));
        QVERIFY(wo);
        // GQA: query head h (8 of them, head size 8) reads KV head h/2, so attention-output columns
        // h*8 .. h*8+7 get b[(h/2)*8 ..].
        std::vector<float> ob(64, 0.0f);
        for (int o = 0; o < 64; ++o)
            for (int h = 0; h < 8; ++h)
                for (int d = 0; d < 8; ++d) ob[o] += (*wo)[o * 64 + h * 8 + d] * b[(h / 2) * 8 + d];
        WeightOverrides vb, obias;
        vb["model.layers.1.self_attn.v_proj.bias"] = b;
        obias["model.layers.1.self_attn.o_proj.bias"] = ob;
        EngineOptions o1 = exactOptions(), o2 = exactOptions();
        o1.overrides = &vb;
        o2.overrides = &obias;
        auto e1 = Engine::load(*hf, o1);
        auto e2 = Engine::load(*hf, o2);
        QVERIFY(e1 && e2);
        const auto l1 = logitsAll(**e1, toks), l2 = logitsAll(**e2, toks);
        QVERIFY(maxAbsDiff(ref, l1) > 1e-3f);
        QVERIFY2(maxAbsDiff(l1, l2) < 1e-4f, qPrintable(QString::number(maxAbsDiff(l1, l2))));
        // A q/k bias in HF layout and permuted (core/convert/README.md A.5) on the GGUF: same logits.
        std::vector<float> qb(64), kb(32), qbp(64), kbp(32);
        for (int i = 0; i < 64; ++i) qb[i] = 0.1f * ((i * 5) % 13 - 6);
        for (int i = 0; i < 32; ++i) kb[i] = 0.1f * ((i * 3) % 7 - 3);
        auto perm = [](const std::vector<float>& x, std::vector<float>& y, int heads) {
            const int hd = static_cast<int>(x.size()) / heads;
            for (int h = 0; h < heads; ++h)
                for (int i = 0; i < hd / 2; ++i)
                    for (int j = 0; j < 2; ++j) y[h * hd + 2 * i + j] = x[h * hd + j * hd / 2 + i];
        };
        perm(qb, qbp, 8);
        perm(kb, kbp, 4);
        WeightOverrides hfo, ggo;
        hfo["model.layers.2.self_attn.q_proj.bias"] = qb;
        hfo["model.layers.2.self_attn.k_proj.bias"] = kb;
        ggo["blk.2.attn_q.bias"] = qbp;
        ggo["blk.2.attn_k.bias"] = kbp;
        o1.overrides = &hfo;
        o2.overrides = &ggo;
        auto eh = Engine::load(*hf, o1);
        auto eg = Engine::load(*gg, o2);
        QVERIFY(eh && eg);
        const auto lh = logitsAll(**eh, toks), lg = logitsAll(**eg, toks);
        QVERIFY(maxAbsDiff(ref, lh) > 1e-3f);
        QVERIFY2(maxAbsDiff(lh, lg) < 1e-4f, qPrintable(QString::number(maxAbsDiff(lh, lg))));
    }

    // rope_scaling "llama3" from config.json (against the reference forward pass) and the same scaling as
    // a GGUF rope_freqs.weight tensor (per-frequency divisors, supplied here as an override).
    void llama3RopeScaling() {
        auto hf = open("models/stories260K/hf");
        auto gg = open("models/stories260K/stories260K.gguf");
        QVERIFY(hf && gg);
        Model scaled = *hf;
        scaled.configJson = scaled.configJson.substr(0, scaled.configJson.rfind('}')) +
                            R"(, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 1024}})";
        auto e = Engine::load(scaled, exactOptions());
        QVERIFY2(e, e ? "" : e.error().message.c_str());
        QVERIFY((*e)->hparams().ropeLlama3);
        const std::vector<int32_t> toks = {1, 400, 30, 200, 17, 5, 99, 250, 3, 77, 301, 12, 40, 41, 42, 43, 44, 45, 46, 47};
        const std::vector<int> idx = {0, 1, 13, 100, 257, 400, 511};
        const std::vector<RefRow> ref = {
            {2, idx, {-15.437902f, 0.640344f, 1.957230f, -15.437420f, -15.438210f, 7.325975f, -11.358567f}},
            {10, idx, {-16.022990f, 2.822163f, -0.130091f, -16.021228f, -16.021390f, 3.104634f, -13.028074f}},
            {19, idx, {-13.491650f, 1.593671f, 2.141418f, -13.491872f, -13.492106f, 5.115504f, -10.331534f}},
        };
        const auto got = logitsAll(**e, toks);
        checkRef(got, 512, ref, 2e-3f);
        auto plain = Engine::load(*hf, exactOptions());
        QVERIFY(plain);
        QVERIFY(maxAbsDiff(got, logitsAll(**plain, toks)) > 1e-2f);  // the scaling matters here
        // Divisors by hand: head_dim 8, θ = 1e4 -> frequencies 1, 0.1, 0.01, 0.001, wavelengths 2π/f;
        // high-frequency bound 1024/4 = 256, low 1024/1 = 1024: f0, f1 kept (divisor 1); f2 (wavelength
        // 628.3) smoothed: s = (1024/628.3 − 1)/3, divisor = 1/((1 − s)/8 + s); f3 divided by 8.
        const double s2 = (1024.0 / (2 * M_PI / 0.01) - 1.0) / 3.0;
        WeightOverrides ov;
        ov["rope_freqs.weight"] = {1.0f, 1.0f, float(1.0 / ((1 - s2) / 8 + s2)), 8.0f};
        EngineOptions o = exactOptions();
        o.overrides = &ov;
        auto eg = Engine::load(*gg, o);
        QVERIFY(eg);
        QVERIFY2(maxAbsDiff(got, logitsAll(**eg, toks)) < 1e-4f, qPrintable(QString::number(maxAbsDiff(got, logitsAll(**eg, toks)))));
    }

    // llama.cpp emulation (F16 KV cache, fp16 GELU table) moves logits only slightly.
    void llamaCppEmulationClose() {
        auto m = open("models/bard-gpt2");
        QVERIFY(m);
        auto exact = Engine::load(*m, exactOptions());
        auto emu = Engine::load(*m, {});
        QVERIFY(exact && emu);
        const std::vector<int32_t> toks = {5, 300, 17, 900, 42, 8, 77, 1000};
        const float d = maxAbsDiff(logitsAll(**exact, toks), logitsAll(**emu, toks));
        QVERIFY2(d > 0 && d < 0.05f, qPrintable(QString::number(d)));
    }

    // Token-by-token evaluation through the KV cache, and split batches, give the batched logits.
    void cacheMatchesBatch_data() {
        QTest::addColumn<QString>("model");
        QTest::newRow("llama") << "models/bard-llama";
        QTest::newRow("gpt2") << "models/bard-gpt2";
    }
    void cacheMatchesBatch() {
        QFETCH(QString, model);
        auto m = open(model.toStdString());
        QVERIFY(m);
        for (int threads : {1, 2}) {
            EngineOptions opt = exactOptions();  // fp16 rounding would amplify summation-order noise
            opt.threads = threads;
            auto e = Engine::load(*m, opt);
            QVERIFY(e);
            Engine& en = **e;
            std::vector<int32_t> toks;
            for (int i = 0; i < 40; ++i) toks.push_back((i * 37 + 11) % en.nVocab());
            const auto all = logitsAll(en, toks);
            const int V = en.nVocab();
            // one at a time
            en.reset();
            std::vector<float> one(V), seq;
            for (size_t i = 0; i < toks.size(); ++i) {
                QVERIFY(en.eval(std::span(&toks[i], 1), static_cast<int>(i), one.data(), 0).ok());
                seq.insert(seq.end(), one.begin(), one.end());
            }
            QVERIFY2(maxAbsDiff(all, seq) < 1e-3f, qPrintable(QString::number(maxAbsDiff(all, seq))));
            // two batches 0..24, 25..39, last-only logits
            en.reset();
            std::vector<float> part(15 * V);
            QVERIFY(en.eval(std::span(toks.data(), 25), 0, nullptr).ok());
            QVERIFY(en.eval(std::span(toks.data() + 25, 15), 25, part.data(), 0).ok());
            std::vector<float> tail(all.begin() + 25 * V, all.end());
            QVERIFY(maxAbsDiff(tail, part) < 1e-3f);
            // rewind: re-evaluating from position 25 overwrites the cache
            std::vector<float> last(V);
            QVERIFY(en.eval(std::span(toks.data() + 25, 15), 25, last.data(), 14).ok());
            std::vector<float> lastRef(all.end() - V, all.end());
            QVERIFY(maxAbsDiff(lastRef, last) < 1e-3f);
        }
    }

    // Weights computed as stored: a Q4_K_M file (llama-quantize's, Q/K rows in ggml's order, K types,
    // Q6_K head, quantized embedding) holds no F32 copy; with F32 activations it gives exactly what the
    // same weights dequantized once and passed as overrides (owned F32, multiplied in F32) give; with
    // ggml's activation encoding (its default) close to that but not equal; setWeight / resetWeight swap a
    // tensor in and out, and only the swapped tensor takes memory.
    void storedWeights() {
        auto m = open("golden/stories260K/stories260K-Q4_K_M.gguf");
        QVERIFY(m);
        const std::vector<int32_t> toks = {1, 400, 30, 200, 17, 5, 99, 250, 3, 77};
        auto viewed = Engine::load(*m, {});
        QVERIFY2(viewed, viewed ? "" : viewed.error().message.c_str());
        Engine& ev = **viewed;
        QVERIFY(ev.ggmlActivations());
        const InferHParams& hp = ev.hparams();
        // Resident: the norms (F32) and the Q/K row maps only, far below one F32 copy of the weights.
        const uint64_t norms = 4ull * (static_cast<uint64_t>(hp.nLayer) * 2 * hp.nEmbd + hp.nEmbd);
        const uint64_t rowMaps = 4ull * hp.nLayer * (hp.nHead + hp.nHeadKv) * hp.headDim;
        QCOMPARE(ev.residentWeightBytes(), norms + rowMaps);
        QVERIFY(ev.residentWeightBytes() * 50 < m->totalParameters() * 4);
        const auto ggmlLogits = logitsAll(ev, toks);

        EngineOptions fo;
        fo.ggmlActivations = false;
        auto flt = Engine::load(*m, fo);
        QVERIFY(flt);
        const auto floatLogits = logitsAll(**flt, toks);
        WeightOverrides ov;
        for (const TensorInfo& t : m->tensors) {
            if (t.shape.size() != 2) continue;
            auto v = readTensorF32(*m, t);
            QVERIFY(v);
            ov[t.name] = std::move(*v);
        }
        QVERIFY(ov.size() >= 2 + 7 * static_cast<size_t>(hp.nLayer) - 1);
        fo.overrides = &ov;
        auto owned = Engine::load(*m, fo);
        QVERIFY(owned);
        QVERIFY((*owned)->residentWeightBytes() > m->totalParameters() * 4 * 9 / 10);
        QCOMPARE(maxAbsDiff(floatLogits, logitsAll(**owned, toks)), 0.0f);
        const float d = maxAbsDiff(floatLogits, ggmlLogits);
        qInfo("8-bit activations vs F32 activations: max logit difference %.5f", d);
        QVERIFY(d > 0.0f && d < 0.5f);

        // setWeight takes memory for that tensor only; resetWeight returns to the file's bytes.
        const std::string name = "blk.1.attn_k.weight";
        const uint64_t before = ev.residentWeightBytes();
        const auto& kv = ov[name];
        QVERIFY(ev.setWeight(name, kv).ok());
        QCOMPARE(ev.residentWeightBytes(), before + 4 * kv.size());
        const auto swapped = logitsAll(ev, toks);
        QVERIFY(maxAbsDiff(swapped, ggmlLogits) > 0.0f);  // F32 activations for that layer now
        QVERIFY(ev.resetWeight(name).ok());
        QCOMPARE(ev.residentWeightBytes(), before);
        QCOMPARE(maxAbsDiff(ggmlLogits, logitsAll(ev, toks)), 0.0f);
        QVERIFY(!ev.resetWeight("no.such.tensor").ok());
        // A norm (held as F32) is re-read from the file.
        const std::string norm = "blk.0.attn_norm.weight";
        std::vector<float> g(static_cast<size_t>(hp.nEmbd), 0.5f);
        QVERIFY(ev.setWeight(norm, g).ok());
        QVERIFY(maxAbsDiff(ggmlLogits, logitsAll(ev, toks)) > 0.0f);
        QVERIFY(ev.resetWeight(norm).ok());
        QCOMPARE(maxAbsDiff(ggmlLogits, logitsAll(ev, toks)), 0.0f);
    }

    void overrides() {
        auto m = open("models/stories260K/hf");
        QVERIFY(m);
        const std::vector<int32_t> toks = {1, 400, 30, 200};
        auto base = Engine::load(*m, {});
        QVERIFY(base);
        const auto ref = logitsAll(**base, toks);
        // Same values as an override: identical logits.
        const std::string name = "model.layers.2.mlp.down_proj.weight";
        const TensorInfo* t = m->find(name);
        QVERIFY(t);
        auto vals = readTensorF32(*m, *t);
        QVERIFY(vals);
        WeightOverrides ov;
        ov[name] = *vals;
        EngineOptions opt;
        opt.overrides = &ov;
        auto same = Engine::load(*m, opt);
        QVERIFY(same);
        QCOMPARE(maxAbsDiff(ref, logitsAll(**same, toks)), 0.0f);
        // Perturbed values: the logits move.
        for (auto& v : ov[name]) v *= 1.5f;
        auto diff = Engine::load(*m, opt);
        QVERIFY(diff);
        QVERIFY(maxAbsDiff(ref, logitsAll(**diff, toks)) > 1e-3f);
        // setWeight on the loaded engine gives what the override gave at load, for a GGUF too
        // (Q rows permuted in the file) and for GPT-2's transposed Conv1D weights.
        auto live = Engine::load(*m, {});
        QVERIFY(live);
        QVERIFY((*live)->hasWeight(name));
        QVERIFY((*live)->setWeight(name, ov[name]).ok());
        QCOMPARE(maxAbsDiff(logitsAll(**diff, toks), logitsAll(**live, toks)), 0.0f);
        QVERIFY(!(*live)->setWeight("no.such.tensor", ov[name]).ok());
        QVERIFY(!(*live)->setWeight(name, std::span(ov[name].data(), 3)).ok());
        {
            auto gg = open("models/stories260K/stories260K.gguf");
            QVERIFY(gg);
            auto eg = Engine::load(*gg, {});
            QVERIFY(eg);
            const auto before = logitsAll(**eg, toks);
            auto q = readTensorF32(*gg, *gg->find("blk.1.attn_q.weight"));
            QVERIFY(q);
            QVERIFY((*eg)->setWeight("blk.1.attn_q.weight", *q).ok());  // same values: same logits
            QCOMPARE(maxAbsDiff(before, logitsAll(**eg, toks)), 0.0f);
            auto g2 = open("models/bard-gpt2");
            QVERIFY(g2);
            auto e2 = Engine::load(*g2, {});
            QVERIFY(e2);
            const std::vector<int32_t> gt = {5, 300, 17};
            const auto b2 = logitsAll(**e2, gt);
            auto c = readTensorF32(*g2, *g2->find("transformer.h.1.mlp.c_fc.weight"));
            QVERIFY(c);
            QVERIFY((*e2)->setWeight("transformer.h.1.mlp.c_fc.weight", *c).ok());
            QCOMPARE(maxAbsDiff(b2, logitsAll(**e2, gt)), 0.0f);
            (*c)[5] += 1.0f;
            QVERIFY((*e2)->setWeight("transformer.h.1.mlp.c_fc.weight", *c).ok());
            QVERIFY(maxAbsDiff(b2, logitsAll(**e2, gt)) > 0.0f);
        }
        // Wrong size: a clear error.
        ov[name].pop_back();
        auto bad = Engine::load(*m, opt);
        QVERIFY(!bad);
        QVERIFY(bad.error().message.find(name) != std::string::npos);
    }

    void observer() {
        auto m = open("models/bard-llama");
        QVERIFY(m);
        auto e = Engine::load(*m, {});
        QVERIFY(e);
        std::map<std::string, std::pair<int64_t, int64_t>> seen;
        std::vector<float> firstNormed;
        (*e)->setObserver([&](const std::string& name, const float* x, int64_t n, int64_t nIn) {
            seen[name] = {n, nIn};
            if (name == "model.layers.0.self_attn.q_proj.weight") firstNormed.assign(x, x + n * nIn);
        });
        const std::vector<int32_t> toks = {1, 300, 17, 400, 42};
        std::vector<float> logits(512);
        QVERIFY((*e)->eval(toks, 0, logits.data(), 4).ok());
        QCOMPARE(seen.size(), size_t(4 * 7 + 1));
        QCOMPARE(seen["model.layers.3.mlp.down_proj.weight"], std::make_pair(int64_t(5), int64_t(768)));
        QCOMPARE(seen["model.layers.0.self_attn.o_proj.weight"], std::make_pair(int64_t(5), int64_t(256)));
        QCOMPARE(seen["lm_head.weight"], std::make_pair(int64_t(1), int64_t(256)));
        // The q_proj input of token 2 is RMSNorm(embedding of token 17) · g: check by hand.
        auto emb = readTensorF32(*m, *m->find("model.embed_tokens.weight"));
        auto g = readTensorF32(*m, *m->find("model.layers.0.input_layernorm.weight"));
        QVERIFY(emb && g);
        double ss = 0;
        for (int i = 0; i < 256; ++i) ss += double((*emb)[17 * 256 + i]) * (*emb)[17 * 256 + i];
        const double sc = 1.0 / std::sqrt(ss / 256 + 1e-5);
        for (int i = 0; i < 256; i += 17)
            QVERIFY(std::fabs(firstNormed[2 * 256 + i] - (*emb)[17 * 256 + i] * sc * (*g)[i]) < 1e-5);

        // Layer limit: the first two blocks only, same activations as in the full pass.
        std::map<std::string, std::vector<float>> full, part;
        auto keep = [](std::map<std::string, std::vector<float>>& dst) {
            return [&dst](const std::string& name, const float* x, int64_t n, int64_t nIn) {
                dst[name].assign(x, x + n * nIn);
            };
        };
        (*e)->setObserver(keep(full));
        (*e)->reset();
        QVERIFY((*e)->eval(toks, 0, nullptr).ok());
        (*e)->setLayerLimit(2);
        QCOMPARE((*e)->layerLimit(), 2);
        (*e)->setObserver(keep(part));
        QVERIFY((*e)->eval(toks, 0, nullptr).ok());
        QVERIFY(!(*e)->eval(toks, 0, logits.data(), 4).ok());  // no logits while limited
        QCOMPARE(part.size(), size_t(2 * 7));
        QVERIFY(part.count("model.layers.1.mlp.down_proj.weight") && !part.count("model.layers.2.self_attn.q_proj.weight"));
        for (const auto& [name, x] : part) QVERIFY(x == full[name]);
        (*e)->setLayerLimit(0);
        QCOMPARE((*e)->layerLimit(), 4);
        QVERIFY((*e)->eval(toks, 0, logits.data(), 4).ok());
    }

    void badInput() {
        auto m = open("models/stories260K/hf");
        QVERIFY(m);
        EngineOptions opt;
        opt.nCtx = 16;
        auto e = Engine::load(*m, opt);
        QVERIFY(e);
        Engine& en = **e;
        std::vector<float> out(512);
        const std::vector<int32_t> badTok = {1, 512};
        QVERIFY(!en.eval(badTok, 0, out.data(), 1).ok());
        const std::vector<int32_t> neg = {-1};
        QVERIFY(!en.eval(neg, 0, out.data(), 0).ok());
        std::vector<int32_t> tooMany(17, 3);
        QVERIFY(!en.eval(tooMany, 0, nullptr).ok());
        en.reset();
        const std::vector<int32_t> ok = {1, 2};
        QVERIFY(!en.eval(ok, 5, nullptr).ok());  // nPast beyond the cache
        QVERIFY(!en.eval(ok, 0, out.data(), 2).ok());  // logitsFrom out of range
        QVERIFY(en.eval(ok, 0, out.data(), 1).ok());
        // Hostile or unsupported config.json: clear errors, no crash.
        for (const char* cfg : {"not json", "[1, 2]", R"({"model_type": "bert"})",
                                R"({"model_type": "llama", "hidden_size": 64})",
                                R"({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 5, "num_attention_heads": 0,
                                    "intermediate_size": 172})",
                                R"({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 5, "num_attention_heads": 8,
                                    "num_key_value_heads": 3, "intermediate_size": 172})",
                                R"({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 99999999999,
                                    "num_attention_heads": 8, "intermediate_size": 172})",
                                R"({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 6, "num_attention_heads": 8,
                                    "intermediate_size": 172})",
                                R"({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 5, "num_attention_heads": 8,
                                    "intermediate_size": 172, "rope_scaling": {"rope_type": "yarn"}})"}) {
            Model bad = *m;
            bad.configJson = cfg;
            auto r = Engine::load(bad, {});
            QVERIFY2(!r, cfg);
            QVERIFY(!r.error().message.empty());
        }
        // A folder that is not a supported architecture / missing tensor.
        Model fake = *m;
        fake.tensors.erase(fake.tensors.begin() + 3);
        auto bad = Engine::load(fake, {});
        QVERIFY(!bad);
    }

    // The linear-layer kernel (AVX2 when the CPU has it) and the Eigen path against double-precision sums,
    // on sizes that exercise every remainder (rows % 4, tokens % 3, columns % 8) and a leading dimension.
    void linearKernel() {
        qInfo("kernel: %s", linearKernelName());
        for (int nOut : {1, 5, 8, 37}) {
            for (int nIn : {1, 7, 8, 33, 172}) {
                for (int n : {1, 2, 3, 4, 11}) {
                    std::vector<float> W(size_t(nOut) * nIn), X(size_t(nIn) * n);
                    for (size_t i = 0; i < W.size(); ++i) W[i] = float((i * 7919) % 201) / 100.0f - 1.0f;
                    for (size_t i = 0; i < X.size(); ++i) X[i] = float((i * 104729) % 199) / 50.0f - 2.0f;
                    const int ldy = nOut + 3;
                    std::vector<float> Y(size_t(ldy) * n, -7.0f), Ye(size_t(ldy) * n, -7.0f);
                    for (int threads : {1, 2}) {
                        linearForward(W.data(), nOut, nIn, X.data(), n, Y.data(), ldy, threads);
                        linearForwardEigen(W.data(), nOut, nIn, X.data(), n, Ye.data(), ldy, threads);
                        for (int t = 0; t < n; ++t) {
                            for (int o = 0; o < nOut; ++o) {
                                double ref = 0;
                                for (int i = 0; i < nIn; ++i) ref += double(W[size_t(o) * nIn + i]) * X[size_t(t) * nIn + i];
                                const double tol = 1e-5 * (1 + std::fabs(ref)) * std::sqrt(double(nIn));
                                QVERIFY(std::fabs(Y[size_t(t) * ldy + o] - ref) < tol);
                                QVERIFY(std::fabs(Ye[size_t(t) * ldy + o] - ref) < tol);
                            }
                            for (int o = nOut; o < ldy; ++o) QCOMPARE(Y[size_t(t) * ldy + o], -7.0f);  // padding untouched
                        }
                    }
                }
            }
        }
    }

    void cancelLoad() {
        auto m = open("models/stories260K/hf");
        QVERIFY(m);
        int calls = 0;
        auto e = Engine::load(*m, {}, [&](const ProgressInfo&) { return ++calls < 5; });
        QVERIFY(!e);
        QVERIFY(e.error().cancelled);
    }
};

QTEST_GUILESS_MAIN(TestInfer)
#include "test_infer.moc"
