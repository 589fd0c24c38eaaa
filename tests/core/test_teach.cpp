// The numbers of the teaching views (teach/teach.h) against hand-computed values: the number line of
// absmax / zero-point, k-quant super-blocks decoded field by field (hand-packed blocks, and the real
// quantizer's blocks against the dequantizer), GPTQ's column steps on a 1 × 3 slice worked by hand and
// against quantizeLayerGptq, and EXL2's candidate table.
#include <QtTest>

#include <cmath>
#include <cstring>
#include <random>

#include "common/fp16.h"
#include "ggml/block_types.h"
#include "gptq/gptq_calib.h"
#include "gptq/gptq_quant.h"
#include "teach/teach.h"

using namespace qz;

class TestTeach : public QObject {
    Q_OBJECT
  private slots:
    void numberLineByHand();
    void numberLineTwoBits();
    void numberLineRejects();
    void q4kHandPacked();
    void q6kHandPacked();
    void realBlocksDecodeToTheDequantizer_data();
    void realBlocksDecodeToTheDequantizer();
    void superBlockRejectsOtherTypes();
    void gptqByHand();
    void gptqEqualsTheQuantizer();
    void gptqDiagonalHessianIsRtn();
    void exl2Table();
    void exl2OptimizeByHand();
    void windowChecks();
    void calibrationHessianOfLayer0();
};

// x = {−1, 0.5, 2} at 8 bits.
//   absmax: s = 127/2 = 63.5; codes round(−63.5) = −64 (half to even), round(31.75) = 32, 127
//   zero-point: s = 255/3 = 85, zp = round(85 − 128) = −43; codes −128, round(−0.5) = 0, 127;
//               the codes cover (−128 + 43)/85 = −1 .. (127 + 43)/85 = 2
void TestTeach::numberLineByHand() {
    const float x[3] = {-1.f, 0.5f, 2.f};
    auto r = teach::numberLine(x, 3, 8);
    QVERIFY2(r, r ? "" : r.error().message.c_str());
    QCOMPARE(r->absmax.scale, 63.5f);
    QCOMPARE(r->absmax.zero, 0);
    QCOMPARE(r->absmax.codes, (std::vector<int32_t>{-64, 32, 127}));
    QCOMPARE(r->absmax.codeMin, -127);
    QCOMPARE(r->absmax.codeMax, 127);
    QCOMPARE(r->absmax.rangeLo, -2.f);
    QCOMPARE(r->absmax.rangeHi, 2.f);
    QVERIFY(std::fabs(r->absmax.dequantized[0] - (-64 / 63.5f)) < 1e-7f);
    QCOMPARE(r->zeroPoint.scale, 85.f);
    QCOMPARE(r->zeroPoint.zero, -43);
    QCOMPARE(r->zeroPoint.codes, (std::vector<int32_t>{-128, 0, 127}));
    QCOMPARE(r->zeroPoint.codeMin, -128);
    QCOMPARE(r->zeroPoint.codeMax, 127);
    QCOMPARE(r->zeroPoint.rangeLo, -1.f);
    QCOMPARE(r->zeroPoint.rangeHi, 2.f);
    QCOMPARE(r->zeroPoint.clipped, 0);
    // errors: absmax |−1 + 64/63.5| = 0.007874 is the largest
    QVERIFY(std::fabs(r->absmax.maxAbsError - (64 / 63.5 - 1)) < 1e-6);
}

// x = {−1, 0.5, 2} at 2 bits: absmax s = 1/2, codes 0 (round(−0.5) = −0), 0, 1;
// zero-point s = 3/3 = 1, zp = round(1 − 2) = −1, codes −2, round(−0.5) = 0, 1.
void TestTeach::numberLineTwoBits() {
    const float x[3] = {-1.f, 0.5f, 2.f};
    auto r = teach::numberLine(x, 3, 2);
    QVERIFY(r);
    QCOMPARE(r->absmax.scale, 0.5f);
    QCOMPARE(r->absmax.codes, (std::vector<int32_t>{0, 0, 1}));
    QCOMPARE(r->absmax.codeMin, -1);
    QCOMPARE(r->absmax.codeMax, 1);
    QCOMPARE(r->zeroPoint.scale, 1.f);
    QCOMPARE(r->zeroPoint.zero, -1);
    QCOMPARE(r->zeroPoint.codes, (std::vector<int32_t>{-2, 0, 1}));
    QCOMPARE(r->zeroPoint.dequantized, (std::vector<float>{-1.f, 1.f, 2.f}));
    QVERIFY(std::fabs(r->zeroPoint.mse - 0.25 / 3) < 1e-9);
}

void TestTeach::numberLineRejects() {
    const float x[1] = {1.f};
    QVERIFY(!teach::numberLine(x, 1, 1));
    QVERIFY(!teach::numberLine(x, 1, 9));
    QVERIFY(!teach::numberLine(x, 0, 8));
}

// A Q4_K block packed by hand (core/ggml/README.md B.2): d = 0.5, dmin = 0.25;
//   sub-block 0: scale 3 (scales[0]), min 2 (scales[4]); element 0 = low nibble of qs[0] = 10
//     -> 0.5·3·10 − 0.25·2 = 14.5
//   sub-block 5: scale = (scales[9] & 15) | (scales[1] >> 6) << 4 = 1 | 16 = 17, min = scales[9] >> 4 = 2;
//     element 160 = high nibble of qs[64] = 7 -> 0.5·17·7 − 0.25·2 = 59
//   sub-block 1: scale = scales[1] & 63 = 0, min 0: element 32 (high nibble of qs[0] = 5) -> 0
void TestTeach::q4kHandPacked() {
    ggml::BlockQ4_K b{};
    b.d = fp32ToFp16(0.5f);
    b.dmin = fp32ToFp16(0.25f);
    b.scales[0] = 3;
    b.scales[4] = 2;
    b.scales[1] = 0x40;
    b.scales[9] = 0x21;
    b.qs[0] = 0x5A;
    b.qs[64] = 0x70;
    auto r = teach::decodeSuperBlock(DType::Q4_K, reinterpret_cast<const uint8_t*>(&b));
    QVERIFY2(r, r ? "" : r.error().message.c_str());
    QCOMPARE(r->subBlocks, 8);
    QCOMPARE(r->subSize, 32);
    QCOMPARE(r->d, 0.5f);
    QCOMPARE(r->dmin, 0.25f);
    QCOMPARE(r->scaleCodes[0], 3);
    QCOMPARE(r->minCodes[0], 2);
    QCOMPARE(r->scaleCodes[1], 0);
    QCOMPARE(r->scaleCodes[5], 17);
    QCOMPARE(r->minCodes[5], 2);
    QCOMPARE(r->codes[0], 10);
    QCOMPARE(r->codes[32], 5);
    QCOMPARE(r->codes[160], 7);
    QCOMPARE(r->fromFields[0], 14.5f);
    QCOMPARE(r->fromFields[32], 0.f);
    QCOMPARE(r->fromFields[160], 59.f);
    QCOMPARE(r->dequantized[0], 14.5f);
    QCOMPARE(r->dequantized[160], 59.f);
    QCOMPARE(r->fromFields, r->dequantized);
}

// A Q6_K block by hand: d = 0.5, sub-block 3 (elements 48..63) scale −2; element 50 is in the second
// quarter of the first half (k = 1, p = 18): low nibble of ql[18 + 32] = 3, bits 2..3 of qh[18] = 1
// -> code 3 + 16 = 19 -> 0.5·(−2)·(19 − 32) = 13. Every other element of the sub-block: code 0 -> 32.
void TestTeach::q6kHandPacked() {
    ggml::BlockQ6_K b{};
    b.d = fp32ToFp16(0.5f);
    b.scales[3] = -2;
    b.ql[50] = 0x03;
    b.qh[18] = 0x04;
    auto r = teach::decodeSuperBlock(DType::Q6_K, reinterpret_cast<const uint8_t*>(&b));
    QVERIFY(r);
    QCOMPARE(r->subBlocks, 16);
    QCOMPARE(r->hasMins, false);
    QCOMPARE(r->codeOffset, 32);
    QCOMPARE(r->scaleCodes[3], -2);
    QCOMPARE(r->codes[50], 19);
    QCOMPARE(r->fromFields[50], 13.f);
    QCOMPARE(r->fromFields[49], 32.f);
    QCOMPARE(r->fromFields[47], 0.f); // sub-block 2: scale 0
    QCOMPARE(r->fromFields, r->dequantized);
}

void TestTeach::realBlocksDecodeToTheDequantizer_data() {
    QTest::addColumn<int>("type");
    QTest::addColumn<int>("subBlocks");
    QTest::addColumn<int>("codeBits");
    QTest::newRow("Q2_K") << int(DType::Q2_K) << 16 << 2;
    QTest::newRow("Q3_K") << int(DType::Q3_K) << 16 << 3;
    QTest::newRow("Q4_K") << int(DType::Q4_K) << 8 << 4;
    QTest::newRow("Q5_K") << int(DType::Q5_K) << 8 << 5;
    QTest::newRow("Q6_K") << int(DType::Q6_K) << 16 << 6;
}

// The real quantizer's block: the codes and scales decoded here reproduce the dequantizer's values bit for
// bit, every code is in range, and the error shrinks with the code width.
void TestTeach::realBlocksDecodeToTheDequantizer() {
    QFETCH(int, type);
    QFETCH(int, subBlocks);
    QFETCH(int, codeBits);
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.f, 0.02f);
    std::vector<float> x(256);
    for (int seed = 0; seed < 4; ++seed) {
        for (auto& v : x)
            v = nd(rng);
        x[17 * seed + 3] = 0.15f; // an outlier
        auto r = teach::openSuperBlock(DType(type), x.data());
        QVERIFY2(r, r ? "" : r.error().message.c_str());
        QCOMPARE(r->subBlocks, subBlocks);
        QCOMPARE(r->codeBits, codeBits);
        QCOMPARE(int(r->bytes.size()), int(traits(DType(type)).typeSize));
        QCOMPARE(r->fromFields, r->dequantized);
        for (int c : r->codes)
            QVERIFY(c >= 0 && c < (1 << codeBits));
        QCOMPARE(r->weights, x);
        QVERIFY(r->maxAbsError > 0 && r->maxAbsError < 0.1);
        // the round trip: decoding the block's own bytes gives the same fields
        auto again = teach::decodeSuperBlock(DType(type), r->bytes.data());
        QVERIFY(again);
        QCOMPARE(again->codes, r->codes);
        QCOMPARE(again->scaleCodes, r->scaleCodes);
    }
}

void TestTeach::superBlockRejectsOtherTypes() {
    std::vector<float> x(256, 0.f);
    QVERIFY(!teach::openSuperBlock(DType::Q8_0, x.data()));
    QVERIFY(!teach::openSuperBlock(DType::F16, x.data()));
}

// W = [0.11, −0.218, 0.3], 4 bits symmetric: scale = 2·0.3/15 = 0.04, zero 8.
// H = [[2, 1, 0], [1, 2, 0], [0, 0, 2]], damp 1 % of mean diag 2 -> 2.02 on the diagonal.
//   H⁻¹ of the 2 × 2 block = [[2.02, −1], [−1, 2.02]] / 3.0804 = [[0.655759, −0.324633], [.., 0.655759]]
//   U (H⁻¹ = UᵀU): U00 = √0.655759 = 0.809790, U01 = −0.324633 / 0.809790 = −0.400885
// column 0: 0.11/0.04 = 2.75 -> 3, code 11, q = 0.12; err = (0.11 − 0.12)/0.809790 = −0.0123489
// column 1 becomes −0.218 − U01·err = −0.218 − 0.0049505 = −0.2229505; /0.04 = −5.574 -> −6, code 2
//   (RTN: −0.218/0.04 = −5.45 -> −5, code 3)
// column 2: 0.3 is the extreme: code 15 either way.
void TestTeach::gptqByHand() {
    const float W[3] = {0.11f, -0.218f, 0.3f};
    const std::vector<float> H = {2, 1, 0, 1, 2, 0, 0, 0, 2};
    auto t = teach::traceGptq(W, 1, 3, H, 4, 0.01);
    QVERIFY2(t, t ? "" : t.error().message.c_str());
    QVERIFY(std::fabs(t->hinv[0] - 0.809790f) < 1e-5f);
    QVERIFY(std::fabs(t->hinv[1] + 0.400885f) < 1e-5f);
    QCOMPARE(t->hinv[2], 0.f);
    QVERIFY(std::fabs(t->scale[0] - 0.04f) < 1e-7f);
    QCOMPARE(t->zero[0], 8.f);
    QCOMPARE(int(t->working.size()), 4);
    QCOMPARE(t->working[0][1], -0.218f);
    QVERIFY(std::fabs(t->working[1][1] + 0.2229505f) < 1e-6f);
    QCOMPARE(t->working[1][2], 0.3f); // no correlation with column 2: nothing spread there
    QCOMPARE(t->codes, (std::vector<uint8_t>{11, 2, 15}));
    QVERIFY(std::fabs(t->colError[0] + 0.01f) < 1e-6f);
    QVERIFY(std::fabs(t->rtnDequantized[1] + 0.2f) < 1e-6f); // RTN code 3: 0.04·(3 − 8)
    QVERIFY(std::fabs(t->dequantized[1] + 0.24f) < 1e-6f);
}

// Stepped to the end, the trace is what quantizeLayerGptq computes (one block holding all columns):
// the same codes and scales, on a 16 × 32 slice with a correlated Hessian, for 2, 3, 4 and 8 bits.
void TestTeach::gptqEqualsTheQuantizer() {
    std::mt19937 rng(11);
    std::normal_distribution<float> nd(0.f, 0.05f);
    const int rows = 16, cols = 32;
    std::vector<float> W(rows * cols);
    for (auto& v : W)
        v = nd(rng);
    const std::vector<float> H = teach::syntheticHessian(cols, 128, 5);
    for (int bits : {2, 3, 4, 8}) {
        auto t = teach::traceGptq(W.data(), rows, cols, H, bits, 0.01);
        QVERIFY2(t, t ? "" : t.error().message.c_str());
        gptq::QuantConfig c;
        c.bits = bits;
        c.groupSize = -1;
        c.sym = true;
        c.blockSize = 128;
        c.threads = 1;
        auto g = gptq::quantizeLayerGptq(W.data(), rows, cols, H, c);
        QVERIFY(g);
        QCOMPARE(t->codes, g->codes);
        QCOMPARE(t->scale, g->scales);
        QCOMPARE(t->damp, g->dampUsed);
        // GPTQ's point: the output error on this Hessian is below RTN's
        QVERIFY2(t->gptqOutputError < t->rtnOutputError, qPrintable(QStringLiteral("%1 bits: GPTQ %2, RTN %3")
                                                                        .arg(bits)
                                                                        .arg(t->gptqOutputError)
                                                                        .arg(t->rtnOutputError)));
        // and the codes differ from RTN's somewhere: the feedback did something
        if (bits <= 4) QVERIFY(t->dequantized != t->rtnDequantized);
    }
}

// A diagonal Hessian spreads nothing (U is diagonal): GPTQ is RTN.
void TestTeach::gptqDiagonalHessianIsRtn() {
    const float W[8] = {0.1f, -0.4f, 0.25f, 0.33f, -0.07f, 0.5f, -0.5f, 0.01f};
    std::vector<float> H(16, 0.f);
    for (int i = 0; i < 4; ++i)
        H[i * 4 + i] = float(i + 1);
    auto t = teach::traceGptq(W, 2, 4, H, 3, 0.01);
    QVERIFY(t);
    QCOMPARE(t->dequantized, t->rtnDequantized);
    for (int s = 1; s <= 4; ++s)
        for (int k = s; k < 4; ++k)
            QCOMPARE(t->working[s][k], W[k]);
    QVERIFY(!teach::traceGptq(W, 2, 4, H, 5, 0.01));                          // bits
    QVERIFY(!teach::traceGptq(W, 2, 4, std::vector<float>(9, 1.f), 4, 0.01)); // Hessian size
}

// One module of 1000 weights with three options: 4000 bits / accuracy 0.99, 3000 / 0.98, 5000 / 0.985.
// bpw 4, 3, 5; errors 0.01, 0.02, 0.015; the third costs more than the first for a larger error: off the
// front.
void TestTeach::exl2Table() {
    exl2::ModuleMeasurement m;
    m.key = "model.layers.0.self_attn";
    m.options = {{0.99, 4000, {}}, {0.98, 3000, {}}, {0.985, 5000, {}}};
    auto r = teach::exl2Allocation({m}, {0}, {1000});
    QVERIFY2(r, r ? "" : r.error().message.c_str());
    QCOMPARE(int(r->size()), 1);
    const auto& mod = r->front();
    QCOMPARE(mod.chosen, 0);
    QCOMPARE(mod.options[0].bpw, 4.0);
    QCOMPARE(mod.options[1].bpw, 3.0);
    QCOMPARE(mod.options[2].bpw, 5.0);
    QVERIFY(std::fabs(mod.options[1].error - 0.02) < 1e-12);
    QCOMPARE(mod.options[0].pareto, true);
    QCOMPARE(mod.options[1].pareto, true);
    QCOMPARE(mod.options[2].pareto, false);
    QVERIFY(!teach::exl2Allocation({m}, {3}, {1000})); // choice out of range
    QVERIFY(!teach::exl2Allocation({m}, {0}, {}));     // sizes disagree
    QVERIFY(!teach::exl2Allocation({m}, {0}, {0}));    // no weights
}

// Two modules of 1000 weights, each at 2 or 4 bpw: A errors 0.1 / 0.01, B errors 0.05 / 0.001. A target of
// 3 bpw (budget 6000 bits) pays for one upgrade: upgrading A leaves errors {0.01, 0.05} (largest 0.05, and
// Σ e^n = 0.001 + 0.0112 at n = 1.5), upgrading B leaves {0.1, 0.001} (largest 0.1, Σ 0.0316): A is upgraded
// at every norm in [1.5, 3.5]. At 4 bpw both are, at 2 both stay; below 2 bpw no choice fits.
void TestTeach::exl2OptimizeByHand() {
    exl2::ModuleMeasurement a, b;
    a.key = "model.layers.0.self_attn";
    a.options = {{0.9, 2000, {}}, {0.99, 4000, {}}};
    b.key = "model.layers.0.mlp";
    b.options = {{0.95, 2000, {}}, {0.999, 4000, {}}};
    auto r = teach::optimizeMeasurement({a, b}, {1000, 1000}, 3.0, 1, 5);
    QVERIFY2(r, r ? "" : r.error().message.c_str());
    QCOMPARE(r->strategy, (std::vector<int>{1, 0}));
    QCOMPARE(r->achievedBpw, 3.0);
    QCOMPARE(r->targetBpw, 3.0);
    QVERIFY(r->errorNorm >= 1.5 && r->errorNorm <= 3.5);
    QCOMPARE(int(r->measurement.size()), 2);
    auto all = teach::optimizeMeasurement({a, b}, {1000, 1000}, 4.0, 1, 5);
    QVERIFY(all);
    QCOMPARE(all->strategy, (std::vector<int>{1, 1}));
    auto none = teach::optimizeMeasurement({a, b}, {1000, 1000}, 2.5, 1, 5);
    QVERIFY(none);
    QCOMPARE(none->strategy, (std::vector<int>{0, 0}));
    QVERIFY(!teach::optimizeMeasurement({a, b}, {1000, 1000}, 1.5, 1, 5)); // below the cheapest
    QVERIFY(!teach::optimizeMeasurement({a, b}, {1000}, 3.0, 1, 5));       // sizes disagree
    auto alloc = teach::exl2Allocation(r->measurement, r->strategy, {1000, 1000});
    QVERIFY(alloc);
    QCOMPARE((*alloc)[0].options[(*alloc)[0].chosen].bpw, 4.0);
    QCOMPARE((*alloc)[1].options[(*alloc)[1].chosen].bpw, 2.0);
}

// readTensorWindow on the demo model: a window equals the same part of the whole tensor; outside fails.
void TestTeach::windowChecks() {
    auto model = openModel(QZ_RESOURCES_DIR "/demo/stories260K");
    QVERIFY2(model, model ? "" : model.error().message.c_str());
    const TensorInfo* t = nullptr;
    for (const auto& ti : (*model)->tensors)
        if (ti.shape.size() == 2 && ti.rows() >= 8 && ti.cols() >= 16) {
            t = &ti;
            break;
        }
    QVERIFY(t);
    auto all = readTensorF32(**model, *t);
    QVERIFY(all);
    auto w = teach::readTensorWindow(**model, *t, 3, 4, 5, 10);
    QVERIFY2(w, w ? "" : w.error().message.c_str());
    for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 10; ++c)
            QCOMPARE((*w)[r * 10 + c], (*all)[(3 + r) * t->cols() + 5 + c]);
    QVERIFY(!teach::readTensorWindow(**model, *t, t->rows() - 1, 2, 0, 1));
    QVERIFY(!teach::readTensorWindow(**model, *t, 0, 1, t->cols() - 3, 4));
    QVERIFY(!teach::readTensorWindow(**model, *t, -1, 1, 0, 1));
    auto bad = teach::readTensorWindow(**model, *t, 0, 1, 0, t->cols() + 1);
    QVERIFY(!bad && bad.error().message.find(t->name) != std::string::npos);
}

// Layer 0's q_proj sees RMSNorm(embedding)·g of every token (stories260K: eps 1e-5 from its config.json), so
// its Hessian over input features 8..23 is computed here from the embedding table and the norm weight alone,
// on the same calibration windows (4 rows of 32 tokens of the sample text, seed 0).
void TestTeach::calibrationHessianOfLayer0() {
    auto model = openModel(QZ_RESOURCES_DIR "/demo/stories260K");
    QVERIFY(model);
    const std::string text = QZ_RESOURCES_DIR "/texts/shakespeare-valid.txt";
    const int col0 = 8, cols = 16;
    auto H =
        teach::calibrationHessian(**model, "model.layers.0.self_attn.q_proj.weight", col0, cols, text, 4, 32);
    QVERIFY2(H, H ? "" : H.error().message.c_str());
    QCOMPARE(int(H->size()), cols * cols);

    auto tokens = gptq::tokenizeTextFile(**model, text);
    QVERIFY(tokens);
    auto windows = gptq::calibrationWindows(*tokens, {4, 32, 0});
    QVERIFY(windows);
    auto emb = readTensorF32(**model, *(*model)->find("model.embed_tokens.weight"));
    auto g = readTensorF32(**model, *(*model)->find("model.layers.0.input_layernorm.weight"));
    QVERIFY(emb && g);
    const int dim = 64;
    std::vector<double> E(cols * cols, 0.0);
    int64_t n = 0;
    for (const auto& w : *windows)
        for (int32_t tok : w) {
            const float* e = emb->data() + size_t(tok) * dim;
            double ss = 0;
            for (int i = 0; i < dim; ++i)
                ss += double(e[i]) * e[i];
            const double inv = 1.0 / std::sqrt(ss / dim + 1e-5);
            std::vector<double> x(cols);
            for (int i = 0; i < cols; ++i)
                x[i] = e[col0 + i] * inv * (*g)[col0 + i];
            for (int i = 0; i < cols; ++i)
                for (int j = 0; j < cols; ++j)
                    E[i * cols + j] += x[i] * x[j];
            ++n;
        }
    double scale = 0;
    for (auto& v : E)
        scale = std::max(scale, std::fabs(v *= 2.0 / double(n)));
    for (int i = 0; i < cols * cols; ++i)
        QVERIFY2(std::fabs((*H)[i] - E[i]) <= 1e-4 * scale,
                 qPrintable(QStringLiteral("%1: %2 vs %3").arg(i).arg((*H)[i]).arg(E[i])));
    // not a decoder block's linear weight; outside the tensor; no such tensor
    QVERIFY(!teach::calibrationHessian(**model, "model.embed_tokens.weight", 0, 8, text, 1, 16));
    QVERIFY(
        !teach::calibrationHessian(**model, "model.layers.0.self_attn.q_proj.weight", 60, 8, text, 1, 16));
    QVERIFY(!teach::calibrationHessian(**model, "nope.weight", 0, 8, text, 1, 16));
    // cancelled
    auto c = teach::calibrationHessian(**model, "model.layers.0.self_attn.q_proj.weight", 0, 8, text, 2, 16,
                                       [](const ProgressInfo&) { return false; });
    QVERIFY(!c && c.error().cancelled);
}

QTEST_GUILESS_MAIN(TestTeach)
#include "test_teach.moc"
