// One tensor under several ggml types: ordering of the errors, sizes from the block layouts, the
// shared bins, and the types a row length rules out.
#include <QtTest>

#include <cmath>

#include "jobs/type_compare.h"

using namespace qz;

class TestTypeCompare : public QObject {
    Q_OBJECT
private slots:
    void moreBitsLessError();
    void rowLengthRulesOutBlocks();
    void unknownTensor();
};

void TestTypeCompare::moreBitsLessError() {
    auto m = openModel(QZ_TEST_DATA "/models/bard-llama");
    QVERIFY(m.ok());
    const std::vector<DType> types = {DType::Q2_K, DType::Q4_0, DType::Q4_K, DType::Q6_K, DType::Q8_0, DType::F16};
    auto c = compareTensorTypes(**m, "model.layers.1.mlp.down_proj.weight", types, 100);
    QVERIFY2(c.ok(), c.ok() ? "" : c.error().message.c_str());
    QCOMPARE(c->ne, (std::vector<int64_t>{768, 256}));
    QCOMPARE(c->variants.size(), types.size());
    for (size_t i = 0; i + 1 < c->variants.size(); ++i) {
        QVERIFY(c->variants[i].supported);
        QVERIFY2(c->variants[i].error.mse > c->variants[i + 1].error.mse,
                 qPrintable(QStringLiteral("%1 vs next").arg(QString::fromLatin1(dtypeName(types[i]).data()))));
    }
    // Sizes are the block layouts: 256 rows of 768 values.
    QCOMPARE(c->variants[0].bytes, uint64_t(256 * 3 * 84));   // Q2_K: 3 blocks of 256 per row, 84 bytes each
    QCOMPARE(c->variants[4].bytes, uint64_t(256 * 24 * 34));  // Q8_0: 24 blocks of 32, 34 bytes
    QCOMPARE(c->variants[4].bitsPerWeight, 8.5);
    // Q8_0: |error| ≤ half a step of its block, step = max|x|/127 (and fp16 rounding of the scale)
    const double maxAbs = std::max(std::fabs(c->original.lo), std::fabs(c->original.hi));
    QVERIFY(c->variants[4].error.maxAbs <= maxAbs / 127 * 0.5 * 1.01);
    // Shared bins: every histogram counts every value over the original's range.
    for (const auto& v : c->variants) {
        QCOMPARE(v.histogram.bins(), 100);
        QCOMPARE(v.histogram.lo, c->original.lo);
        QCOMPARE(v.histogram.total(), uint64_t(768 * 256));
    }
}

void TestTypeCompare::rowLengthRulesOutBlocks() {
    auto m = openModel(QZ_TEST_DATA "/models/stories260K/hf");
    QVERIFY(m.ok());
    // down_proj rows are 172 long: no block type of 32 or 256 fits, F16 does.
    auto c = compareTensorTypes(**m, "model.layers.0.mlp.down_proj.weight", {DType::Q4_K, DType::Q8_0, DType::F16}, 50);
    QVERIFY(c.ok());
    QVERIFY(!c->variants[0].supported);
    QVERIFY(!c->variants[1].supported);
    QVERIFY(c->variants[2].supported);
    QVERIFY(c->variants[2].error.sqnrDb > 50);
}

void TestTypeCompare::unknownTensor() {
    auto m = openModel(QZ_TEST_DATA "/models/stories260K/hf");
    QVERIFY(m.ok());
    QVERIFY(!compareTensorTypes(**m, "nope", {DType::Q8_0}, 10).ok());
    QVERIFY(!compareTensorTypes(**m, "model.norm.weight", {DType::Q8_0}, 10).ok());
}

QTEST_APPLESS_MAIN(TestTypeCompare)
#include "test_type_compare.moc"
