// Memory estimates (jobs/memory_estimate.h) against sizes worked out by hand for Llama-2-7B's shape
// (hidden 4096, ffn 11008, 32 layers, 32 heads of 128, vocab 32000), the spill rule for calibration
// states, and the refusal message when a run does not fit.
#include <QtTest>

#include "jobs/memory_estimate.h"

using namespace qz;

namespace {
InferHParams llama7b() {
    InferHParams hp;
    hp.nVocab = 32000;
    hp.nEmbd = 4096;
    hp.nLayer = 32;
    hp.nHead = 32;
    hp.nHeadKv = 32;
    hp.headDim = 128;
    hp.nFf = 11008;
    hp.nCtxTrain = 4096;
    return hp;
}

uint64_t part(const MemoryEstimate& e, const std::string& prefix) {
    for (const auto& p : e.parts)
        if (p.what.rfind(prefix, 0) == 0) return p.bytes;
    return UINT64_MAX;
}
}  // namespace

class TestMemoryEstimate : public QObject {
    Q_OBJECT
private slots:
    void evaluationOf7b() {
        EvalMemorySettings s;
        s.nCtx = 512;
        s.threads = 2;
        const auto e = estimateEvaluation(llama7b(), 13'476'839'424ull, s);
        // K and V, F32: 32 layers × 512 positions × 4096 × 2 × 4 bytes = 536,870,912.
        QCOMPARE(part(e, "KV cache"), uint64_t(536870912));
        // Logits of the second half of the window, one buffer: 256 × 32000 × 4 = 32,768,000.
        QCOMPARE(part(e, "logits"), uint64_t(32768000));
        // Activations of the widest product encoded as Q8_K plus their tile copy: 512 × 43 × 292 + 512 × 11008.
        QCOMPARE(part(e, "encoded activations"), uint64_t(12064768));
        QCOMPARE(e.mappedBytes, uint64_t(13'476'839'424ull));
        // Far below the model's F32 size (27 GB): the weights are not copied.
        QVERIFY(e.anonBytes() < 1'000'000'000ull);
        QVERIFY(e.anonBytes() > 536870912ull);
    }

    void evaluationWithVariants() {
        EvalMemorySettings s;
        s.nCtx = 512;
        s.threads = 2;
        s.nChunks = 32;
        s.textBytes = 1'000'000;
        const auto alone = estimateEvaluation(llama7b(), 13'476'839'424ull, s);
        // Without variants nothing is kept for a KL-divergence.
        QCOMPARE(part(alone, "original's log-probabilities"), UINT64_MAX);
        // The text: 1,000,000 bytes and at most 1,000,002 int32 tokens = 5,000,008.
        QCOMPARE(part(alone, "text and its tokens"), uint64_t(5000008));
        // A fake-quantized variant of 6,476,005,376 weights, not yet made; a GGUF of 7 GB.
        s.variants.push_back({6'476'005'376ull, false, 0});
        s.variants.push_back({0, false, 7'000'000'000ull});
        const auto e = estimateEvaluation(llama7b(), 13'476'839'424ull, s);
        // 32 chunks × (512 tokens × 4 + 255 rows × (2 × 16000 + 4) uint16 × 2) = 32 × 16,324,088.
        QCOMPARE(part(e, "original's log-probabilities"), uint64_t(522370816));
        // The variant's F32 values, made once, and the engine's copy of them.
        QCOMPARE(part(e, "variant weights made"), uint64_t(25'904'021'504ull));
        QCOMPARE(part(e, "engine's copy"), uint64_t(25'904'021'504ull));
        // One engine at a time: the KV cache is not multiplied by the variants.
        QCOMPARE(part(e, "KV cache"), uint64_t(536870912));
        QCOMPARE(e.mappedBytes, uint64_t(13'476'839'424ull + 7'000'000'000ull));
        // Already in memory: only the engine's copy is new.
        s.variants[0].overridesHeld = true;
        const auto held = estimateEvaluation(llama7b(), 0, s);
        QCOMPARE(part(held, "variant weights made"), UINT64_MAX);
        QCOMPARE(part(held, "engine's copy"), uint64_t(25'904'021'504ull));
        // Two variants made in turn (freed in between) or kept until the end.
        s.variants = {{1000, false, 0}, {3000, false, 0}};
        QCOMPARE(part(estimateEvaluation(llama7b(), 0, s), "variant weights made"), uint64_t(12000));
        s.keepMadeOverrides = true;
        QCOMPARE(part(estimateEvaluation(llama7b(), 0, s), "variant weights made"), uint64_t(16000));
        // All chunks: bounded by the text, floor((100,000 + 2) / 512) = 195 chunks.
        s.nChunks = -1;
        s.textBytes = 100'000;
        QCOMPARE(part(estimateEvaluation(llama7b(), 0, s), "original's log-probabilities"),
                 uint64_t(195ull * 16324088ull));
    }

    void calibratedExportOf7b() {
        CalibMemorySettings s;
        s.windows = 128;
        s.seqLen = 2048;
        s.stateBytesPerValue = 2;
        const auto e = estimateCalibratedExport(llama7b(), 13'476'839'424ull, s);
        // One layer in F32: 4096 × (2 × 4096 + 2 × 4096 + 3 × 11008) × 4 = 809,500,672 bytes.
        QCOMPARE(part(e, "one decoder layer"), uint64_t(809500672));
        // States: 128 × 2048 × 4096 × 2 = 2,147,483,648.
        QCOMPARE(part(e, "calibration states"), uint64_t(2147483648ull));
        // Hessians: (2 × 4096² + 4096² + 11008²) × 4 + 11008² × 4 = 1,170,735,104.
        QCOMPARE(part(e, "Hessians"), uint64_t(1170735104));
        // The same with a 1 GB budget: the states go to a file, one window in memory.
        s.maxStateMemory = 1'000'000'000;
        const auto spilled = estimateCalibratedExport(llama7b(), 0, s);
        QCOMPARE(part(spilled, "calibration states (spilled"), uint64_t(2048ull * 4096 * 4 * 2));
        QVERIFY(spilled.anonBytes() < e.anonBytes() - 2'000'000'000ull);
    }

    // Qwen3-30B-A3B's shape (hidden 2048, 32 heads of 128, 4 KV heads, 128 experts of width 768): GPTQ
    // holds every expert's gate/up and down Hessian of one block.
    void calibratedExportOfMoe() {
        InferHParams hp = llama7b();
        hp.nEmbd = 2048;
        hp.nHead = 32;
        hp.nHeadKv = 4;
        hp.headDim = 128;
        hp.nFf = 6144;
        hp.nExpert = 128;
        hp.nExpertUsed = 8;
        hp.nFfExpert = 768;
        CalibMemorySettings s;
        const auto e = estimateCalibratedExport(hp, 0, s);
        // (2048² + 128 × 2048² + 4096² + 128 × 768²) × 4 + 2 × 4096² × 4 = 2,667,577,344.
        QCOMPARE(part(e, "Hessians"), uint64_t(2667577344ull));
        // One layer: 2048 × (2 × 4096 + 2 × 512 + 3 × 128 × 768 + 128) × 4 = 2,492,465,152.
        QCOMPARE(part(e, "one decoder layer"), uint64_t(2492465152ull));
    }

    void refusesWhenItDoesNotFit() {
        CalibMemorySettings s;
        const auto e = estimateCalibratedExport(llama7b(), 0, s);
        QVERIFY(checkMemoryFits(e, 64'000'000'000ull));
        const auto st = checkMemoryFits(e, 2'000'000'000ull);
        QVERIFY(!st);
        QVERIFY2(st.error().message.find("needs about") != std::string::npos, st.error().message.c_str());
        QVERIFY(st.error().message.find("2.00 GB") != std::string::npos);
        QVERIFY(st.error().message.find("calibration states") != std::string::npos);
        QVERIFY(checkMemoryFits(e, 0));  // unknown availability: no refusal
    }

    void availableMemoryIsRead() {
        const uint64_t a = availableMemoryBytes();
        QVERIFY(a > (64ull << 20));  // any machine that runs the tests has more than 64 MiB free
    }
};

QTEST_GUILESS_MAIN(TestMemoryEstimate)
#include "test_memory_estimate.moc"
