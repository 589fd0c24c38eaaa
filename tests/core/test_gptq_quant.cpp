// GPTQ core pieces against hand computations and an independent, naive re-implementation:
// packing (core/gptq/README.md D.3 written word by word), find_params, RTN, GPTQ vs a plain double-precision
// OBQ loop (own Cholesky), act-order g_idx, dead columns, Hessian, calibration windows, layer records.
#include <QtTest>

#include <cmath>
#include <cstdio>
#include <random>
#include <set>

#include "gptq/gptq_calib.h"
#include "gptq/gptq_hessian.h"
#include "gptq/gptq_layers.h"
#include "gptq/gptq_pack.h"
#include "gptq/gptq_quant.h"

using namespace qz::gptq;

namespace {

// ---- independent reference (double precision, no Eigen) ----
std::vector<double> cholLower(const std::vector<double>& A, int n) {  // A = L Lᵀ
    std::vector<double> L(static_cast<size_t>(n) * n, 0.0);
    for (int j = 0; j < n; ++j) {
        double s = A[j * n + j];
        for (int k = 0; k < j; ++k) s -= L[j * n + k] * L[j * n + k];
        L[j * n + j] = std::sqrt(s);
        for (int i = j + 1; i < n; ++i) {
            double t = A[i * n + j];
            for (int k = 0; k < j; ++k) t -= L[i * n + k] * L[j * n + k];
            L[i * n + j] = t / L[j * n + j];
        }
    }
    return L;
}
std::vector<double> inverseSpd(const std::vector<double>& A, int n) {
    const auto L = cholLower(A, n);
    std::vector<double> inv(static_cast<size_t>(n) * n);
    for (int c = 0; c < n; ++c) {  // solve L y = e_c, Lᵀ x = y
        std::vector<double> y(n), x(n);
        for (int i = 0; i < n; ++i) {
            double s = (i == c) ? 1.0 : 0.0;
            for (int k = 0; k < i; ++k) s -= L[i * n + k] * y[k];
            y[i] = s / L[i * n + i];
        }
        for (int i = n - 1; i >= 0; --i) {
            double s = y[i];
            for (int k = i + 1; k < n; ++k) s -= L[k * n + i] * x[k];
            x[i] = s / L[i * n + i];
        }
        for (int i = 0; i < n; ++i) inv[i * n + c] = x[i];
    }
    return inv;
}

struct RefGrid {
    double scale, zero;
};
RefGrid refParams(const std::vector<double>& x, int bits, bool sym) {
    double mn = 0, mx = 0;
    for (double v : x) mn = std::min(mn, v), mx = std::max(mx, v);
    const double maxq = (1 << bits) - 1;
    if (sym) {
        mx = std::max(std::fabs(mn), mx);
        if (mn < 0) mn = -mx;
    }
    if (mn == 0 && mx == 0) mn = -1, mx = 1;
    double s = (mx - mn) / maxq, z = sym ? (maxq + 1) / 2 : std::nearbyint(-mn / s);
    if (!sym && z < 1) z = 1, s = mx / (maxq - 1);
    return {s, z};
}

// Plain OBQ / GPTQ loop (no act-order): every column quantized in order, the error spread over all
// later columns with row c of U (upper Cholesky factor of H⁻¹). With groups of groupSize (a multiple
// of the 128-column block), params come from the updated weights at the group start.
std::vector<int> refGptqCodes(const std::vector<float>& W, int rows, int cols, const std::vector<float>& Hf, int bits,
                              int gs, bool sym, double damp) {
    std::vector<double> H(Hf.begin(), Hf.end());
    double mean = 0;
    for (int i = 0; i < cols; ++i) mean += H[i * cols + i];
    mean /= cols;
    for (int i = 0; i < cols; ++i) H[i * cols + i] += damp * mean;
    const auto Hinv = inverseSpd(H, cols);
    const auto L = cholLower(Hinv, cols);  // Hinv = L Lᵀ -> U = Lᵀ
    auto U = [&](int i, int j) { return L[j * cols + i]; };
    std::vector<int> codes(static_cast<size_t>(rows) * cols);
    const int maxq = (1 << bits) - 1;
    for (int r = 0; r < rows; ++r) {
        std::vector<double> w(W.begin() + static_cast<size_t>(r) * cols, W.begin() + static_cast<size_t>(r + 1) * cols);
        RefGrid g = refParams(w, bits, sym);
        for (int c = 0; c < cols; ++c) {
            if (gs > 0 && c % gs == 0)
                g = refParams(std::vector<double>(w.begin() + c, w.begin() + std::min(cols, c + gs)), bits, sym);
            double q = std::nearbyint(w[c] / g.scale) + g.zero;
            q = std::clamp(q, 0.0, double(maxq));
            codes[static_cast<size_t>(r) * cols + c] = static_cast<int>(q);
            const double e = (w[c] - g.scale * (q - g.zero)) / U(c, c);
            for (int j = c + 1; j < cols; ++j) w[j] -= e * U(c, j);
        }
    }
    return codes;
}

// Correlated synthetic activations and their Hessian.
std::vector<float> syntheticHessian(int cols, int tokens, uint32_t seed, std::vector<float>* Xout = nullptr) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const int k = 8;  // low-rank structure + noise + per-channel scales
    std::vector<float> A(static_cast<size_t>(k) * cols), s(cols);
    for (auto& a : A) a = nd(rng);
    for (auto& v : s) v = 0.2f + std::fabs(nd(rng));
    std::vector<float> X(static_cast<size_t>(tokens) * cols);
    for (int t = 0; t < tokens; ++t) {
        float z[k];
        for (auto& v : z) v = nd(rng);
        for (int j = 0; j < cols; ++j) {
            float v = 0.3f * nd(rng);
            for (int i = 0; i < k; ++i) v += z[i] * A[i * cols + j];
            X[static_cast<size_t>(t) * cols + j] = v * s[j];
        }
    }
    HessianAccumulator acc(cols);
    acc.add(X.data(), tokens, 2);
    acc.countSample(1);
    if (Xout) *Xout = X;
    return acc.finish();
}

std::vector<float> randomWeights(int rows, int cols, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 0.05f);
    std::vector<float> W(static_cast<size_t>(rows) * cols);
    for (auto& w : W) w = nd(rng);
    return W;
}

}  // namespace

class TestGptqQuant : public QObject {
    Q_OBJECT
private slots:
    void packingByHand();
    void packing3BitLayout();
    void qzerosSymmetricWords();
    void findParamsByHand();
    void rtnByHand();
    void diagonalHessianEqualsRtn();
    void gptqMatchesNaiveReference_data();
    void gptqMatchesNaiveReference();
    void gptqBeatsRtn();
    void actOrderGidx();
    void staticGroupsActOrder();
    void deadColumns();
    void dequantizeIsFp16();
    void hessianByHand();
    void calibrationWindows();
    void layerRecordRoundTrip();
    void rejectsBadConfig();
    void sameForAnyThreadCount();
};

void TestGptqQuant::packingByHand() {
    // 4 bits, one output column, 32 inputs: codes k % 16 -> words 0x76543210, 0xFEDCBA98, ...
    std::vector<uint8_t> codes(32);
    for (int k = 0; k < 32; ++k) codes[k] = static_cast<uint8_t>(k % 16);
    auto q = packQweight(codes.data(), 1, 32, 4);
    QCOMPARE(q.size(), size_t(4));
    QCOMPARE(static_cast<uint32_t>(q[0]), 0x76543210u);
    QCOMPARE(static_cast<uint32_t>(q[1]), 0xFEDCBA98u);
    // 8 bits: 4 per word LSB first; 2 bits: 16 per word.
    for (int k = 0; k < 32; ++k) codes[k] = static_cast<uint8_t>(k + 200 > 255 ? k : k + 200);
    q = packQweight(codes.data(), 1, 32, 8);
    QCOMPARE(static_cast<uint32_t>(q[0]), (203u << 24) | (202u << 16) | (201u << 8) | 200u);
    for (int k = 0; k < 32; ++k) codes[k] = static_cast<uint8_t>(k % 4);
    q = packQweight(codes.data(), 1, 32, 2);
    QCOMPARE(static_cast<uint32_t>(q[0]), 0xE4E4E4E4u);  // 0,1,2,3 -> 0b11100100
    // Two output columns: qweight is [words][out], column n holds output n.
    std::vector<uint8_t> c2(64);
    for (int k = 0; k < 32; ++k) c2[k] = 1, c2[32 + k] = 2;
    q = packQweight(c2.data(), 2, 32, 4);
    QCOMPARE(static_cast<uint32_t>(q[0]), 0x11111111u);
    QCOMPARE(static_cast<uint32_t>(q[1]), 0x22222222u);
    auto back = unpackQweight(q.data(), 2, 32, 4);
    QVERIFY(back == c2);
}

void TestGptqQuant::packing3BitLayout() {
    // core/gptq/README.md D.3: word0 = v0..v9 at 3t, low 2 bits of v10 at 30; word1 = bit 2 of v10 at 0,
    // v11..v20 at 3(t-11)+1, bit 0 of v21 at 31; word2 = bits 1-2 of v21 at 0, v22..v31 at 3(t-22)+2.
    std::mt19937 rng(5);
    for (int trial = 0; trial < 20; ++trial) {
        std::vector<uint8_t> v(32);
        for (auto& x : v) x = static_cast<uint8_t>(rng() % 8);
        uint32_t w0 = 0, w1 = 0, w2 = 0;
        for (int t = 0; t < 10; ++t) w0 |= uint32_t(v[t]) << (3 * t);
        w0 |= uint32_t(v[10] & 3) << 30;
        w1 |= uint32_t(v[10] >> 2) & 1;
        for (int t = 11; t < 21; ++t) w1 |= uint32_t(v[t]) << (3 * (t - 11) + 1);
        w1 |= uint32_t(v[21] & 1) << 31;
        w2 |= uint32_t(v[21] >> 1) & 3;
        for (int t = 22; t < 32; ++t) w2 |= uint32_t(v[t]) << (3 * (t - 22) + 2);
        auto q = packQweight(v.data(), 1, 32, 3);
        QCOMPARE(q.size(), size_t(3));
        QCOMPARE(static_cast<uint32_t>(q[0]), w0);
        QCOMPARE(static_cast<uint32_t>(q[1]), w1);
        QCOMPARE(static_cast<uint32_t>(q[2]), w2);
        QVERIFY(unpackQweight(q.data(), 1, 32, 3) == v);
    }
}

void TestGptqQuant::qzerosSymmetricWords() {
    for (auto [bits, word] : {std::pair{4, 0x77777777u}, std::pair{8, 0x7F7F7F7Fu}, std::pair{2, 0x55555555u}}) {
        std::vector<int32_t> z(2 * 64, 1 << (bits - 1));
        auto q = packQzeros(z.data(), 2, 64, bits, true);
        QCOMPARE(q.size(), size_t(2 * 64 * bits / 32));
        for (int32_t w : q) QCOMPARE(static_cast<uint32_t>(w), word);
        QVERIFY(unpackQzeros(q.data(), 2, 64, bits, true) == z);
    }
    // 3 bits: zero 4 stored as 3 in every field of the 96-bit stream: 011 repeated.
    std::vector<int32_t> z(32, 4);
    auto q = packQzeros(z.data(), 1, 32, 3, true);
    uint32_t w[3] = {0, 0, 0};
    for (int t = 0; t < 32; ++t)
        for (int b = 0; b < 3; ++b)
            if ((3 >> b) & 1) w[(3 * t + b) / 32] |= 1u << ((3 * t + b) % 32);
    for (int i = 0; i < 3; ++i) QCOMPARE(static_cast<uint32_t>(q[i]), w[i]);
    QCOMPARE(static_cast<uint32_t>(q[0]), 0xDB6DB6DBu);
}

void TestGptqQuant::findParamsByHand() {
    QuantConfig c;
    c.bits = 4;
    float s, z;
    const float x[3] = {-1.0f, 0.5f, 2.0f};
    c.sym = true;
    findParams(x, 3, 1, c, s, z);
    QCOMPARE(s, 4.0f / 15.0f);
    QCOMPARE(z, 8.0f);
    c.sym = false;
    findParams(x, 3, 1, c, s, z);
    QCOMPARE(s, 3.0f / 15.0f);
    QCOMPARE(z, 5.0f);  // round(1/0.2)
    const float zeros[2] = {0, 0};
    findParams(zeros, 2, 1, c, s, z);
    QCOMPARE(s, 2.0f / 15.0f);
    QCOMPARE(z, 7.0f);  // float: 1/fl(2/15) = 7.4999996 -> 7
    const float pos[2] = {0.5f, 1.0f};
    findParams(pos, 2, 1, c, s, z);  // zero would be 0: v1 cannot store it -> zero 1, scale xmax/14
    QCOMPARE(z, 1.0f);
    QCOMPARE(s, 1.0f / 14.0f);
    c.sym = true;  // sym with all >= 0 keeps xmin = 0 (AutoGPTQ): scale xmax/15, zero 8
    findParams(pos, 2, 1, c, s, z);
    QCOMPARE(s, 1.0f / 15.0f);
    QCOMPARE(z, 8.0f);
    // stride
    const float strided[6] = {-3, 99, 1, 99, 2, 99};
    findParams(strided, 3, 2, c, s, z);
    QCOMPARE(s, 6.0f / 15.0f);
}

void TestGptqQuant::rtnByHand() {
    QuantConfig c;
    c.bits = 4;
    c.sym = true;
    c.groupSize = 32;
    std::vector<float> W(64);
    for (int k = 0; k < 64; ++k) W[k] = (k < 32 ? 0.1f : 1.0f) * static_cast<float>(k % 7 - 3);
    auto r = quantizeLayerRtn(W.data(), 1, 64, c);
    QCOMPARE(r.nGroups, 2);
    QCOMPARE(r.scales[0], 0.6f / 15.0f);
    QCOMPARE(r.scales[1], 6.0f / 15.0f);
    for (int k = 0; k < 64; ++k) {
        const float s = r.scales[k / 32];
        const float q = std::clamp(std::nearbyint(W[k] / s) + 8.0f, 0.0f, 15.0f);
        QCOMPARE(int(r.codes[k]), int(q));
        QCOMPARE(r.gIdx[k], k / 32);
    }
}

void TestGptqQuant::diagonalHessianEqualsRtn() {
    // H diagonal -> U diagonal -> no error feedback: GPTQ == RTN (any group size, no act-order).
    const int rows = 48, cols = 256;
    auto W = randomWeights(rows, cols, 1);
    std::vector<float> H(static_cast<size_t>(cols) * cols, 0.0f);
    for (int i = 0; i < cols; ++i) H[i * cols + i] = 1.0f + static_cast<float>(i % 5);
    for (int gs : {-1, 32, 128}) {
        QuantConfig c;
        c.bits = 3;
        c.groupSize = gs;
        c.sym = false;
        auto g = quantizeLayerGptq(W.data(), rows, cols, H, c);
        QVERIFY(g.ok());
        auto r = quantizeLayerRtn(W.data(), rows, cols, c);
        QVERIFY(g->codes == r.codes);
        QVERIFY(g->scales == r.scales);
        QVERIFY(g->zeros == r.zeros);
    }
}

void TestGptqQuant::gptqMatchesNaiveReference_data() {
    QTest::addColumn<int>("bits");
    QTest::addColumn<int>("gs");
    QTest::addColumn<bool>("sym");
    QTest::newRow("4bit g-1 sym") << 4 << -1 << true;
    QTest::newRow("4bit g128 sym") << 4 << 128 << true;
    QTest::newRow("3bit g128 asym") << 3 << 128 << false;
    QTest::newRow("2bit g256 asym") << 2 << 256 << false;
    QTest::newRow("8bit g-1 asym") << 8 << -1 << false;
}

void TestGptqQuant::gptqMatchesNaiveReference() {
    QFETCH(int, bits);
    QFETCH(int, gs);
    QFETCH(bool, sym);
    const int rows = 32, cols = 384;  // 3 lazy blocks of 128
    auto W = randomWeights(rows, cols, 11);
    auto H = syntheticHessian(cols, 1024, 3);
    QuantConfig c;
    c.bits = bits;
    c.groupSize = gs;
    c.sym = sym;
    auto g = quantizeLayerGptq(W.data(), rows, cols, H, c);
    QVERIFY(g.ok());
    const auto ref = refGptqCodes(W, rows, cols, H, bits, gs, sym, c.dampPercent);
    // Float vs double rounding may flip a code at a near-tie (and then diverge a little); demand near-identity.
    int same = 0;
    for (size_t i = 0; i < ref.size(); ++i) same += ref[i] == g->codes[i];
    const double frac = double(same) / ref.size();
    QVERIFY2(frac > 0.99, qPrintable(QString("only %1 of codes equal the naive reference").arg(frac)));
}

void TestGptqQuant::gptqBeatsRtn() {
    const int rows = 64, cols = 512;
    auto W = randomWeights(rows, cols, 21);
    auto H = syntheticHessian(cols, 2048, 4);
    for (int bits : {2, 3, 4}) {
        QuantConfig c;
        c.bits = bits;
        c.groupSize = 128;
        auto g = quantizeLayerGptq(W.data(), rows, cols, H, c);
        QVERIFY(g.ok());
        const double eg = relativeOutputError(W.data(), dequantize(*g), rows, cols, H);
        const double er = relativeOutputError(W.data(), dequantize(quantizeLayerRtn(W.data(), rows, cols, c)), rows, cols, H);
        QVERIFY2(eg < 0.8 * er, qPrintable(QString("bits %1: gptq %2 rtn %3").arg(bits).arg(eg).arg(er)));
        c.descAct = true;
        auto ga = quantizeLayerGptq(W.data(), rows, cols, H, c);
        QVERIFY(ga.ok());
        const double ea = relativeOutputError(W.data(), dequantize(*ga), rows, cols, H);
        QVERIFY2(ea < 0.8 * er, qPrintable(QString("act-order bits %1: %2 vs rtn %3").arg(bits).arg(ea).arg(er)));
    }
}

void TestGptqQuant::actOrderGidx() {
    // Diagonal H increasing with k -> act-order processes columns in reverse: position of k = cols-1-k.
    const int rows = 16, cols = 128, gs = 32;
    auto W = randomWeights(rows, cols, 2);
    std::vector<float> H(static_cast<size_t>(cols) * cols, 0.0f);
    for (int i = 0; i < cols; ++i) H[i * cols + i] = 1.0f + i;
    QuantConfig c;
    c.groupSize = gs;
    c.descAct = true;
    auto g = quantizeLayerGptq(W.data(), rows, cols, H, c);
    QVERIFY(g.ok());
    for (int k = 0; k < cols; ++k) QCOMPARE(g->gIdx[k], (cols - 1 - k) / gs);
    // With diagonal H (no feedback) each group's params are those of its columns: RTN on reversed groups.
    for (int n = 0; n < rows; ++n)
        for (int grp = 0; grp < cols / gs; ++grp) {
            // processing group grp holds original columns cols-1-grp*gs ... cols-(grp+1)*gs
            float mx = 0;
            for (int j = 0; j < gs; ++j) mx = std::max(mx, std::fabs(W[n * cols + cols - 1 - grp * gs - j]));
            QCOMPARE(g->scales[static_cast<size_t>(grp) * rows + n], 2 * mx / 15.0f);
        }
}

void TestGptqQuant::staticGroupsActOrder() {
    const int rows = 16, cols = 256, gs = 64;
    auto W = randomWeights(rows, cols, 9);
    auto H = syntheticHessian(cols, 512, 8);
    QuantConfig c;
    c.groupSize = gs;
    c.descAct = true;
    c.staticGroups = true;
    auto g = quantizeLayerGptq(W.data(), rows, cols, H, c);
    QVERIFY(g.ok());
    for (int k = 0; k < cols; ++k) QCOMPARE(g->gIdx[k], k / gs);  // monotone (core/gptq/README.md D.5)
    // Static params come from the unmodified weights: equal to RTN's.
    auto r = quantizeLayerRtn(W.data(), rows, cols, c);
    QVERIFY(g->scales == r.scales);
    QVERIFY(g->zeros == r.zeros);
}

void TestGptqQuant::deadColumns() {
    const int rows = 8, cols = 64;
    auto W = randomWeights(rows, cols, 3);
    std::vector<float> X;
    auto H = syntheticHessian(cols, 256, 6, &X);
    for (int j : {5, 40}) {  // never-active inputs
        for (int i = 0; i < cols; ++i) H[j * cols + i] = H[i * cols + j] = 0;
    }
    QuantConfig c;
    c.groupSize = 32;
    c.descAct = true;
    auto g = quantizeLayerGptq(W.data(), rows, cols, H, c);
    QVERIFY(g.ok());
    auto d = dequantize(*g);
    for (int n = 0; n < rows; ++n) {
        QCOMPARE(d[n * cols + 5], 0.0f);
        QCOMPARE(d[n * cols + 40], 0.0f);
    }
}

void TestGptqQuant::dequantizeIsFp16() {
    LayerResult r;
    r.rows = 1;
    r.cols = 2;
    r.bits = 8;
    r.nGroups = 1;
    r.codes = {255, 0};
    r.scales = {0.1f};
    r.zeros = {128};
    r.gIdx = {0, 0};
    auto d = dequantize(r);
    // fp16(0.1) = 0.0999755859375; ×127 = 12.6968994140625 -> fp16 12.6953125; ×(−128) = −12.796875 exact
    QCOMPARE(d[0], 12.6953125f);
    QCOMPARE(d[1], -12.796875f);
}

void TestGptqQuant::hessianByHand() {
    // Two sequences: x = (1,2), (0,1) and (3,0): H = 2/2 · Σ x xᵀ = [[10,2],[2,5]].
    HessianAccumulator acc(2);
    const float a[4] = {1, 2, 0, 1}, b[2] = {3, 0};
    acc.add(a, 2, 1);
    acc.add(b, 1, 2);
    acc.countSample(2);
    auto H = acc.finish();
    QCOMPARE(H[0], 10.0f);
    QCOMPARE(H[1], 2.0f);
    QCOMPARE(H[2], 2.0f);
    QCOMPARE(H[3], 5.0f);
    // Larger (several tiles of the fixed grid, a partial last one, two add() calls): bit-identical for
    // 1, 2, 3 and 5 threads, and within the worst-case float error bound of a double-precision sum.
    for (const int n : {200, 600}) {
        const int T1 = 700, T2 = 411;
        std::vector<float> X(static_cast<size_t>(n) * (T1 + T2));
        std::mt19937 rng(1 + n);
        std::normal_distribution<float> nd(0.0f, 1.0f);
        for (size_t i = 0; i < X.size(); ++i) X[i] = nd(rng) * ((i % n) % 37 == 0 ? 20.0f : 1.0f);
        std::vector<std::vector<float>> Hs;
        for (const int threads : {1, 2, 3, 5}) {
            HessianAccumulator acc(n);
            acc.add(X.data(), T1, threads);
            acc.add(X.data() + static_cast<size_t>(T1) * n, T2, threads);
            acc.countSample(3);
            Hs.push_back(acc.finish());
        }
        for (size_t k = 1; k < Hs.size(); ++k)
            QVERIFY2(Hs[k] == Hs[0], qPrintable(QString("n %1, thread run %2").arg(n).arg(k)));
        // Any float summation order of T products (recursive, blocked, pairwise, with or without FMA)
        // is within γ_T·Σ|x_i·x_j| of the exact sum (Higham, Accuracy and Stability, eq. 3.5), γ_T ≈ T·u,
        // u = 2⁻²⁴; the scaling by fl(2/3) adds 2u. A bound that every BLAS kernel meets, so this does not
        // depend on the CPU; a missing, doubled or misplaced tile is off by far more.
        const int T = T1 + T2;
        const double u = std::ldexp(1.0, -24), f = 2.0 / 3.0;
        const auto& H = Hs[0];
        double worst = 0;  // largest error as a fraction of the bound
        for (int i = 0; i < n; ++i)
            for (int j = 0; j <= i; ++j) {
                double s = 0, a = 0;
                for (int t = 0; t < T; ++t) {
                    const double p = double(X[size_t(t) * n + i]) * X[size_t(t) * n + j];
                    s += p;
                    a += std::fabs(p);
                }
                const double bound = (T + 3) * u * f * a * 1.01;
                const double err = std::fabs(H[size_t(i) * n + j] - f * s);
                worst = std::max(worst, err / bound);
                if (!(err <= bound))
                    QFAIL(qPrintable(QString("H[%1][%2] = %3, double sum %4, bound %5").arg(i).arg(j)
                                         .arg(H[size_t(i) * n + j]).arg(f * s).arg(bound)));
                QCOMPARE(H[size_t(j) * n + i], H[size_t(i) * n + j]);  // full symmetric
            }
        qInfo("n %d: largest error %.3g of the worst-case bound", n, worst);
    }
}

void TestGptqQuant::calibrationWindows() {
    std::vector<int32_t> toks(1000);
    for (int i = 0; i < 1000; ++i) toks[i] = i;
    CalibParams p;
    p.samples = 50;
    p.seqLen = 100;
    p.seed = 42;
    auto a = qz::gptq::calibrationWindows(toks, p);
    QVERIFY(a.ok());
    QCOMPARE(a->size(), size_t(50));
    // splitmix64: the published test vector (seed 1234567 -> 6457827717110365317, 3203168211198807973),
    // and the windows start at next() mod (1000 - 100 + 1).
    uint64_t sv = 1234567;
    QCOMPARE(splitmix64(sv), 6457827717110365317ull);
    QCOMPARE(splitmix64(sv), 3203168211198807973ull);
    uint64_t st = 42;
    const uint64_t first = splitmix64(st);
    QCOMPARE((*a)[0][0], static_cast<int32_t>(first % 901));
    std::set<int32_t> starts;
    for (const auto& w : *a) {
        QCOMPARE(w.size(), size_t(100));
        for (int i = 1; i < 100; ++i) QCOMPARE(w[i], w[0] + i);
        starts.insert(w[0]);
    }
    QVERIFY(starts.size() > 40);
    auto b = qz::gptq::calibrationWindows(toks, p);
    QVERIFY(*a == *b);
    p.seed = 43;
    QVERIFY(*qz::gptq::calibrationWindows(toks, p) != *a);
    p.seqLen = 1001;
    QVERIFY(!qz::gptq::calibrationWindows(toks, p).ok());
    p.seqLen = 1000;
    QVERIFY(qz::gptq::calibrationWindows(toks, p).ok());
}

void TestGptqQuant::layerRecordRoundTrip() {
    QTemporaryDir dir;
    const std::string path = (dir.path() + "/x.qzl").toStdString();
    LayerRecord rec;
    rec.name = "model.layers.0.mlp.down_proj.weight";
    auto W = randomWeights(32, 64, 4);
    QuantConfig c;
    c.groupSize = 32;
    rec.result = quantizeLayerRtn(W.data(), 32, 64, c);
    rec.relErr = 0.25;
    QVERIFY(saveLayerRecord(path, rec).ok());
    auto back = loadLayerRecord(path);
    QVERIFY(back.ok());
    QCOMPARE(back->name, rec.name);
    QVERIFY(back->result.codes == rec.result.codes);
    QVERIFY(back->result.scales == rec.result.scales);
    QVERIFY(back->result.gIdx == rec.result.gIdx);
    QCOMPARE(back->relErr, 0.25);
    // truncated / garbage files are rejected
    QFile f(QString::fromStdString(path));
    QVERIFY(f.open(QIODevice::ReadWrite));
    const qint64 size = f.size();
    QVERIFY(f.resize(size - 3));
    f.close();
    QVERIFY(!loadLayerRecord(path).ok());
    QVERIFY(f.open(QIODevice::WriteOnly | QIODevice::Truncate));
    f.write("QZGPTQL1\xff\xff\xff\x7f");
    f.close();
    QVERIFY(!loadLayerRecord(path).ok());
}

void TestGptqQuant::rejectsBadConfig() {
    QuantConfig c;
    c.bits = 5;
    QVERIFY(!validateConfig(c).ok());
    c.bits = 4;
    c.groupSize = 0;
    QVERIFY(!validateConfig(c).ok());
    c.groupSize = 128;
    c.dampPercent = 1.0;
    QVERIFY(!validateConfig(c).ok());
    c.dampPercent = 0.01;
    QVERIFY(validateConfig(c).ok());
    QVERIFY(!checkLayerShape(c, 64, 48).ok());   // in % 32
    c.bits = 3;
    QVERIFY(!checkLayerShape(c, 48, 64).ok());   // 3-bit out % 32
    QVERIFY(checkLayerShape(c, 64, 64).ok());
    std::vector<float> W(64 * 64, 0.1f), H(10);
    QVERIFY(!quantizeLayerGptq(W.data(), 64, 64, H, c).ok());  // Hessian of the wrong size
}

void TestGptqQuant::sameForAnyThreadCount() {
    // Rows are quantized in fixed chunks, so codes, scales, zeros and the loss are bit-identical for 1, 2,
    // 3, 5 threads; 150 rows split evenly over 3 threads would leave chunks of 50 rows (not a multiple of
    // Eigen's 4-row panels), whose last rows GEMM rounds differently.
    const int rows = 150, cols = 256;
    auto W = randomWeights(rows, cols, 21);
    auto H = syntheticHessian(cols, 700, 22);
    for (const bool act : {false, true}) {
        QuantConfig c;
        c.bits = 4;
        c.groupSize = 64;
        c.descAct = act;
        c.blockSize = 64;
        c.threads = 1;
        auto a = quantizeLayerGptq(W.data(), rows, cols, H, c);
        QVERIFY(a.ok());
        for (const int t : {2, 3, 5}) {
            c.threads = t;
            auto b = quantizeLayerGptq(W.data(), rows, cols, H, c);
            QVERIFY(b.ok());
            QVERIFY2(a->codes == b->codes, qPrintable(QString("act-order %1, %2 threads").arg(act).arg(t)));
            QVERIFY(a->scales == b->scales);
            QVERIFY(a->zeros == b->zeros);
            QVERIFY(a->gIdx == b->gIdx);
            QVERIFY(a->loss == b->loss);  // exact, not QCOMPARE's fuzzy compare
        }
    }
}

QTEST_GUILESS_MAIN(TestGptqQuant)
#include "test_gptq_quant.moc"
