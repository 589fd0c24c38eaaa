// absmax / zero-point as the first notebook defines them (core/quant/README.md §1): the worked examples, and
// properties on seeded random data.
#include <QtTest>

#include <cmath>
#include <random>

#include "jobs/quantize_job.h"
#include "quant/simple_quant.h"

using namespace qz;

class TestSimpleQuant : public QObject {
    Q_OBJECT
private slots:
    void absmaxWorkedExample();
    void zeroPointWorkedExample();
    void properties_data();
    void properties();
    void groupsHaveTheirOwnScale();
    void constantAndZeroInputs();
    void previewFromEvenlySpacedRows();
    void sizeAccounting();
    void rejectsBadSpecs();
};

// Notebook: max 3.2, weight 0.1 → 4 → 0.1008
void TestSimpleQuant::absmaxWorkedExample() {
    const float x[3] = {3.2f, 0.1f, -1.0f};
    float out[3];
    int8_t codes[3];
    QuantSpec spec{QuantMethod::Absmax, 8, Granularity::Tensor, 0};
    quantizeDequantize(spec, x, 1, 3, out, codes);
    QCOMPARE(int(codes[0]), 127);
    QCOMPARE(int(codes[1]), 4);
    QVERIFY(std::fabs(out[1] - 0.1008f) < 5e-5f);  // 4 / (127/3.2) = 0.100787
}

// Notebook: max 3.2, min −3.0 → scale 41.13, zp −5, 0.1 → −1
void TestSimpleQuant::zeroPointWorkedExample() {
    const float x[3] = {3.2f, -3.0f, 0.1f};
    const GroupParams p = computeGroupParams(QuantMethod::ZeroPoint, 8, x, 3);
    QVERIFY(std::fabs(p.scale - 41.13f) < 0.01f);
    QCOMPARE(p.zero, -5);
    QCOMPARE(quantizeValue(QuantMethod::ZeroPoint, 8, p, 0.1f), -1);
    // the extremes map to the ends of the int8 range
    QCOMPARE(quantizeValue(QuantMethod::ZeroPoint, 8, p, -3.0f), -128);
    QCOMPARE(quantizeValue(QuantMethod::ZeroPoint, 8, p, 3.2f), 127);
}

void TestSimpleQuant::properties_data() {
    QTest::addColumn<int>("method");
    QTest::addColumn<int>("bits");
    QTest::addColumn<int>("gran");
    QTest::addColumn<int>("group");
    for (int m = 0; m < 2; ++m)
        for (int b = 2; b <= 8; ++b)
            for (int g = 0; g < 3; ++g) {
                const int gs = g == 2 ? (b % 2 ? 32 : 64) : 0;
                QTest::addRow("%s-%d-%d", m ? "zp" : "absmax", b, g) << m << b << g << gs;
            }
}

// For every method, width and granularity: codes stay in range, the error of each value is at most
// half a quantization step of its group (step = 1/scale), and dequantize(code) is what came out.
void TestSimpleQuant::properties() {
    QFETCH(int, method);
    QFETCH(int, bits);
    QFETCH(int, gran);
    QFETCH(int, group);
    QuantSpec spec{static_cast<QuantMethod>(method), bits, static_cast<Granularity>(gran), group};
    const int rows = 37, cols = 200;  // 200 is not a multiple of 32 or 64: exercises a short last group
    std::mt19937 rng(1234 + bits);
    std::normal_distribution<float> nd(0.1f, 0.7f);
    std::vector<float> x(rows * cols), out(x.size());
    std::vector<int8_t> codes(x.size());
    for (auto& v : x) v = nd(rng);
    x[5] = 6.0f;  // an outlier
    quantizeDequantize(spec, x.data(), rows, cols, out.data(), codes.data());

    const int lo = method == 0 ? -((1 << (bits - 1)) - 1) : -(1 << (bits - 1));
    const int hi = (1 << (bits - 1)) - 1;
    const int g = gran == 0 ? rows * cols : gran == 1 ? cols : group;
    // Recompute each group's parameters independently of quantizeDequantize's loop structure.
    for (int r = 0; r < rows; ++r) {
        for (int c0 = 0; c0 < cols; c0 += (gran == 0 ? cols : g)) {
            const float* base = gran == 0 ? x.data() : x.data() + r * cols + c0;
            const int len = gran == 0 ? rows * cols : std::min(g, cols - c0);
            const GroupParams p = computeGroupParams(spec.method, bits, base, len);
            const int begin = gran == 0 ? r * cols : r * cols + c0;
            const int end = gran == 0 ? r * cols + cols : begin + len;
            for (int i = begin; i < end; ++i) {
                QVERIFY(codes[i] >= lo && codes[i] <= hi);
                QCOMPARE(out[i], dequantizeValue(p, codes[i]));
                QVERIFY2(std::fabs(out[i] - x[i]) <= 0.5f / p.scale * 1.0001f + 1e-7f,
                         qPrintable(QString("i=%1 x=%2 out=%3 step=%4").arg(i).arg(x[i]).arg(out[i]).arg(1 / p.scale)));
            }
        }
    }
}

// Per-row and per-group scales differ between rows/groups with different ranges.
void TestSimpleQuant::groupsHaveTheirOwnScale() {
    std::vector<float> x(2 * 64);
    for (int i = 0; i < 64; ++i) {
        x[i] = (i < 32 ? 0.01f : 1.0f) * std::sin(float(i) + 1);
        x[64 + i] = 10.0f * std::cos(float(i));
    }
    std::vector<float> perTensor(x.size()), perRow(x.size()), perGroup(x.size());
    quantizeDequantize({QuantMethod::Absmax, 4, Granularity::Tensor, 0}, x.data(), 2, 64, perTensor.data());
    quantizeDequantize({QuantMethod::Absmax, 4, Granularity::Row, 0}, x.data(), 2, 64, perRow.data());
    quantizeDequantize({QuantMethod::Absmax, 4, Granularity::Group, 32}, x.data(), 2, 64, perGroup.data());
    auto err = [&](const std::vector<float>& y, int b, int e) {
        double s = 0;
        for (int i = b; i < e; ++i) s += (y[i] - x[i]) * (y[i] - x[i]);
        return s;
    };
    // Row 0 is tiny compared with row 1: per-tensor wipes it out, per-row keeps it.
    QVERIFY(err(perRow, 0, 64) < err(perTensor, 0, 64) / 10);
    // The first 32 values of row 0 are 100x smaller than the rest: only groups resolve them.
    QVERIFY(err(perGroup, 0, 32) < err(perRow, 0, 32) / 10);
}

void TestSimpleQuant::constantAndZeroInputs() {
    std::vector<float> zeros(64, 0.f), out(64, 1.f);
    quantizeDequantize({QuantMethod::Absmax, 8, Granularity::Row, 0}, zeros.data(), 1, 64, out.data());
    for (float v : out) QCOMPARE(v, 0.f);
    std::vector<float> c(64, 0.5f);
    quantizeDequantize({QuantMethod::ZeroPoint, 8, Granularity::Tensor, 0}, c.data(), 1, 64, out.data());
    for (float v : out) QVERIFY(std::isfinite(v) && std::fabs(v - 0.5f) < 0.01f);
}

void TestSimpleQuant::sizeAccounting() {
    // 4-bit per group of 128 on 256×1024: codes 256*1024/2 bytes + one F32 scale per group.
    const QuantSpec s{QuantMethod::Absmax, 4, Granularity::Group, 128};
    QCOMPARE(quantizedBytes(s, 256, 1024), uint64_t(256 * 1024 / 2 + 256 * 8 * 4));
    const QuantSpec z{QuantMethod::ZeroPoint, 8, Granularity::Tensor, 0};
    QCOMPARE(quantizedBytes(z, 10, 10), uint64_t(100 + 6));
}

void TestSimpleQuant::rejectsBadSpecs() {
    QVERIFY(!QuantSpec({QuantMethod::Absmax, 1, Granularity::Tensor, 0}).validate());
    QVERIFY(!QuantSpec({QuantMethod::Absmax, 9, Granularity::Tensor, 0}).validate());
    QVERIFY(!QuantSpec({QuantMethod::Absmax, 4, Granularity::Group, 0}).validate());
    QVERIFY(QuantSpec({QuantMethod::ZeroPoint, 2, Granularity::Group, 32}).validate().ok());
}

// previewTensor (jobs/quantize_job.h): the figures of evenly spaced whole rows, checked against absmax per
// row worked out here on those rows of bard-llama's q_proj [256 × 256]; all rows give analyzeTensor's.
void TestSimpleQuant::previewFromEvenlySpacedRows() {
    auto m = openModel(QZ_TEST_DATA "/models/bard-llama");
    QVERIFY(m);
    const Model& mod = **m;
    const TensorInfo* t = mod.find("model.layers.0.self_attn.q_proj.weight");
    QVERIFY(t);
    const size_t idx = size_t(t - mod.tensors.data());
    auto all = readTensorF32(mod, *t);
    QVERIFY(all);
    QuantSpec s;
    s.granularity = Granularity::Row;
    auto p = previewTensor(mod, idx, s, 40, 64 * 256);
    QVERIFY2(p, p ? "" : p.error().message.c_str());
    QCOMPARE(p->sampledRows, int64_t(64));
    QCOMPARE(p->numel, uint64_t(256 * 256)); // the tensor's, as bytesAfter
    // Rows 0, 4, ..., 252 by hand: s = 127 / max|x| per row, x' = round(s·x) / s.
    double se = 0;
    float lo = INFINITY, hi = -INFINITY;
    for (int k = 0; k < 64; ++k) {
        const float* row = all->data() + size_t(k * 4) * 256;
        float amax = 0;
        for (int c = 0; c < 256; ++c)
            amax = std::max(amax, std::fabs(row[c]));
        const float sc = 127.0f / amax;
        for (int c = 0; c < 256; ++c) {
            const double d = double(std::nearbyint(sc * row[c]) / sc) - double(row[c]);
            se += d * d;
            lo = std::min(lo, row[c]);
            hi = std::max(hi, row[c]);
        }
    }
    QVERIFY(std::fabs(p->error.mse - se / (64 * 256)) <= 1e-6 * se / (64 * 256));
    QCOMPARE(p->range.min, lo);
    QCOMPARE(p->range.max, hi);
    QCOMPARE(p->histOriginal.total(), uint64_t(64 * 256));
    // Enough values for every row: the full analysis.
    auto whole = previewTensor(mod, idx, s, 40, 1u << 20);
    auto full = analyzeTensor(mod, idx, s, 40);
    QVERIFY(whole && full);
    QCOMPARE(whole->sampledRows, int64_t(256));
    QVERIFY(whole->histOriginal.counts == full->histOriginal.counts);
    QVERIFY(whole->histError.counts == full->histError.counts);
    QCOMPARE(whole->error.mse, full->error.mse);
    // LLM.int8() and vectors have no preview.
    QuantSpec i8;
    i8.method = QuantMethod::LlmInt8;
    QVERIFY(!previewTensor(mod, idx, i8, 40, 1000));
    const TensorInfo* norm = mod.find("model.norm.weight");
    QVERIFY(norm);
    QVERIFY(!previewTensor(mod, size_t(norm - mod.tensors.data()), s, 40, 1000));
}

QTEST_APPLESS_MAIN(TestSimpleQuant)
#include "test_simple_quant.moc"
