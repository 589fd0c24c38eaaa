// Text generation (core/infer/generate.h). Expected values: hand-computed sampling cases, the
// statistics of many draws against the softmax computed here, and greedy generation checked against a
// from-scratch re-evaluation of the whole sequence at every step (no KV cache reuse).
#include <QtTest>

#include <cmath>
#include <random>

#include "infer/generate.h"
#include "model/model.h"
#include "tokenizer/model_vocab.h"
#include "tokenizer/tokenizer.h"

using namespace qz;

namespace {
const std::string kData = QZ_TEST_DATA;
}

class TestGenerate : public QObject {
    Q_OBJECT
private slots:
    void greedyAndTopK1();
    void samplingFollowsSoftmax();
    void topPCutsTail();
    void oneDrawByHand();
    void greedyMatchesFullRecompute();
    void seededIsDeterministicAndStreams();
    void notebookPreset();
    void cancel();
};

void TestGenerate::greedyAndTopK1() {
    const float z[5] = {0.1f, 2.0f, -1.0f, 2.0f, 1.9f};
    GenerateParams p;
    p.greedy = true;
    std::mt19937_64 rng(1);
    QCOMPARE(sampleToken(z, 5, p, rng), 1);  // ties: lowest id
    p.greedy = false;
    p.temperature = 0.0f;
    QCOMPARE(sampleToken(z, 5, p, rng), 1);
    p.temperature = 1.0f;
    p.topK = 1;
    for (int i = 0; i < 50; ++i) QCOMPARE(sampleToken(z, 5, p, rng), 1);
    p.topK = 2;  // {1, 3}, equally likely
    int seen[5] = {};
    for (int i = 0; i < 2000; ++i) ++seen[sampleToken(z, 5, p, rng)];
    QCOMPARE(seen[0] + seen[2] + seen[4], 0);
    QVERIFY(seen[1] > 850 && seen[3] > 850);
}

void TestGenerate::samplingFollowsSoftmax() {
    const float z[4] = {1.0f, 0.0f, -1.0f, 0.5f};
    for (float T : {1.0f, 0.5f, 2.0f}) {
        GenerateParams p;
        p.temperature = T;
        std::mt19937_64 rng(123);
        const int n = 40000;
        int seen[4] = {};
        for (int i = 0; i < n; ++i) ++seen[sampleToken(z, 4, p, rng)];
        double e[4], s = 0;
        for (int i = 0; i < 4; ++i) s += (e[i] = std::exp(z[i] / T));
        for (int i = 0; i < 4; ++i) {
            const double prob = e[i] / s, sd = std::sqrt(prob * (1 - prob) / n);
            QVERIFY2(std::fabs(double(seen[i]) / n - prob) < 5 * sd,
                     qPrintable(QString("T %1 token %2: %3 vs %4").arg(T).arg(i).arg(double(seen[i]) / n).arg(prob)));
        }
    }
}

void TestGenerate::topPCutsTail() {
    // probabilities 0.5, 0.3, 0.2 (logits = log p): top-p 0.6 keeps {0, 1} renormalised to 5/8, 3/8.
    const float z[3] = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
    GenerateParams p;
    p.topP = 0.6f;
    std::mt19937_64 rng(7);
    int seen[3] = {};
    const int n = 20000;
    for (int i = 0; i < n; ++i) ++seen[sampleToken(z, 3, p, rng)];
    QCOMPARE(seen[2], 0);
    QVERIFY(std::fabs(seen[0] / double(n) - 0.625) < 0.02);
    p.topP = 0.5f;  // the first token alone reaches 0.5
    for (int i = 0; i < 100; ++i) QCOMPARE(sampleToken(z, 3, p, rng), 0);
}

void TestGenerate::oneDrawByHand() {
    // One draw: u from the documented formula, candidates in descending order {2: 3.0, 0: 1.0, 1: 0.0}.
    const float z[3] = {1.0f, 0.0f, 3.0f};
    for (uint64_t seed : {1ull, 42ull, 99ull, 12345ull}) {
        std::mt19937_64 ref(seed);
        const double u = double(ref() >> 11) * std::ldexp(1.0, -53);
        const double e2 = 1.0, e0 = std::exp(-2.0), e1 = std::exp(-3.0), s = e0 + e1 + e2;
        const int expect = u * s < e2 ? 2 : (u * s < e2 + e0 ? 0 : 1);
        GenerateParams p;
        p.seed = seed;
        std::mt19937_64 rng(seed);
        QCOMPARE(sampleToken(z, 3, p, rng), expect);
    }
}

void TestGenerate::greedyMatchesFullRecompute() {
    auto m = openModel(kData + "/models/stories260K/stories260K.gguf");
    QVERIFY2(m, m ? "" : m.error().message.c_str());
    auto vocab = vocabForModel(**m);
    QVERIFY(vocab);
    auto tok = Tokenizer::create(*vocab);
    QVERIFY(tok);
    auto e = Engine::load(**m);
    QVERIFY(e);
    GenerateParams p;
    p.prompt = "Once upon a time";
    p.greedy = true;
    p.nPredict = 24;
    p.stopAtEos = false;
    auto r = generate(**e, **tok, p);
    QVERIFY2(r, r ? "" : r.error().message.c_str());
    QCOMPARE(int(r->tokens.size()), 24);
    // Reference: evaluate the whole sequence from scratch for each step and take the argmax.
    std::vector<int32_t> seq = r->promptTokens;
    std::vector<float> logits(size_t((*e)->nVocab()));
    for (int i = 0; i < 24; ++i) {
        (*e)->reset();
        QVERIFY((*e)->eval(seq, 0, logits.data(), int(seq.size()) - 1));
        int best = 0;
        for (int v = 1; v < (*e)->nVocab(); ++v)
            if (logits[size_t(v)] > logits[size_t(best)]) best = v;
        QCOMPARE(r->tokens[size_t(i)], best);
        seq.push_back(best);
    }
    QVERIFY(r->fullText.rfind("Once upon a time", 0) == 0);
    QVERIFY(!r->text.empty());
}

void TestGenerate::seededIsDeterministicAndStreams() {
    auto m = openModel(kData + "/models/stories260K/stories260K.gguf");
    QVERIFY(m);
    GenerateParams p;
    p.prompt = "Once upon a time";
    p.nPredict = 30;
    p.topK = 40;
    p.topP = 0.95f;
    p.temperature = 0.8f;
    p.seed = 2024;
    p.stopAtEos = false;
    std::string streamed;
    int calls = 0;
    auto r1 = generateText(**m, p, [&](int32_t, const std::string& piece) {
        streamed += piece;
        ++calls;
        return true;
    });
    QVERIFY(r1);
    QCOMPARE(calls, 30);
    QCOMPARE(streamed, r1->text);
    auto r2 = generateText(**m, p);
    QVERIFY(r2);
    QCOMPARE(r2->tokens, r1->tokens);
    p.seed = 2025;
    auto r3 = generateText(**m, p);
    QVERIFY(r3);
    QVERIFY(r3->tokens != r1->tokens);  // 30 sampled tokens: a different seed changes something
}

void TestGenerate::notebookPreset() {
    auto p = generatePreset("notebook");
    QVERIFY(p);
    QCOMPARE(p->prompt, std::string("I have a dream"));
    QCOMPARE(p->topK, 30);
    QCOMPARE(p->maxLength, 50);
    QVERIFY(!generatePreset("nope"));
    auto m = openModel(kData + "/models/bard-gpt2");
    QVERIFY2(m, m ? "" : m.error().message.c_str());
    p->stopAtEos = false;
    auto r = generateText(**m, *p);
    QVERIFY2(r, r ? "" : r.error().message.c_str());
    QCOMPARE(int(r->promptTokens.size() + r->tokens.size()), 50);  // 50 tokens in total
    QVERIFY(r->fullText.rfind("I have a dream", 0) == 0);
}

void TestGenerate::cancel() {
    auto m = openModel(kData + "/models/stories260K/stories260K.gguf");
    QVERIFY(m);
    GenerateParams p;
    p.prompt = "Once";
    p.nPredict = 40;
    p.stopAtEos = false;
    int calls = 0;
    auto r = generateText(**m, p, [&](int32_t, const std::string&) { return ++calls < 5; });
    QVERIFY(!r);
    QVERIFY(r.error().cancelled);
    QCOMPARE(calls, 5);
    auto r2 = generateText(**m, p, {}, [](const ProgressInfo& i) { return i.fraction < 0.5; });
    QVERIFY(!r2);
    QVERIFY(r2.error().cancelled);
}

QTEST_GUILESS_MAIN(TestGenerate)
#include "test_generate.moc"
