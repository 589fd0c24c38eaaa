// EXL2's one-layer quantizer (core/exl2: exl2_qparams.h, exl2_quant.h; README.md E.2-E.5) against hand
// computations and an independent plain-loop re-implementation of exllamav2's find_params / GPTQ written
// from the formulas: total_bits and groups for table settings worked out on paper, the candidate tables'
// shape, the fp16 scale math (incl. an fp16-subnormal tie), the q_weight bit positions of every width and
// the q_scale nibbles written out by hand, GPTQ against RTN and across bit widths, the Cholesky retry path,
// hostile QP JSON, and the packed tensors decoded by tests/exl2/read_check.py (numpy, written from
// exllamav2's loader) which must give exactly our dequantize(). A missing python3-numpy fails that test.
#include <QtTest>

#include <Eigen/Core>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "common/fp16.h"
#include "exl2/exl2_measure.h"
#include "exl2/exl2_qparams.h"
#include "exl2/exl2_quant.h"
#include "gptq/gptq_hessian.h"
#include "io/safetensors_writer.h"
#include "time_scale.h"

using namespace qz;
using namespace qz::exl2;

namespace {

QParams mk(std::map<int, int> gs, std::vector<int> bits, std::vector<double> prop) {
    QParams q;
    q.groupSize = std::move(gs);
    q.bits = std::move(bits);
    q.bitsProp = std::move(prop);
    return q;
}

// Correlated calibration inputs X [t][n] and H = XᵀX/t (float, row-major).
std::vector<float> makeHessian(int n, int t, uint32_t seed, std::vector<float>* Xout = nullptr) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd;
    std::vector<float> X(static_cast<size_t>(t) * n);
    std::vector<float> mix(n);
    for (int j = 0; j < n; ++j)
        mix[j] = nd(rng);
    for (int i = 0; i < t; ++i) {
        const float c = nd(rng);
        for (int j = 0; j < n; ++j)
            X[static_cast<size_t>(i) * n + j] =
                nd(rng) * (0.2f + 0.15f * static_cast<float>(j % 9)) + c * mix[j];
    }
    std::vector<float> H(static_cast<size_t>(n) * n);
    Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>> Xm(X.data(), n,
                                                                              t); // column i = x_i
    Eigen::Map<Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>> Hm(H.data(), n, n);
    Hm.noalias() = (Xm * Xm.transpose()) / static_cast<float>(t);
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < i; ++j)
            H[static_cast<size_t>(i) * n + j] = H[static_cast<size_t>(j) * n + i];
    if (Xout) *Xout = std::move(X);
    return H;
}

std::vector<float> makeWeights(int out, int in, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd;
    std::vector<float> W(static_cast<size_t>(out) * in);
    for (int o = 0; o < out; ++o) {
        const float rowScale = 0.01f + 0.02f * static_cast<float>(o % 5);
        for (int i = 0; i < in; ++i)
            W[static_cast<size_t>(o) * in + i] = nd(rng) * rowScale;
    }
    W[3] = 0.5f; // an outlier
    return W;
}

float h2f(uint16_t h) {
    return fp16ToFp32(h);
}
float f16(float x) {
    return fp16ToFp32(fp32ToFp16(x));
}

// ---- Independent reference of exllamav2's AdaptiveQuantizer.find_params + AdaptiveGPTQ.quantize
// (adaptivegptq.py, quantize.cu), plain loops, from core/exl2/README.md E.4. Only the first group can be
// compared bit for bit (later groups see a GEMM-ordered update).
struct RefGroup {
    std::vector<int> qs;
    uint16_t qsm;
    std::vector<float> scale;
};
RefGroup refFindParams(const std::vector<float>& Wt, int out, int a, int b, int bits) {
    const float maxq = std::pow(2.0f, bits) - 1, qzero = std::pow(2.0f, bits - 1);
    std::vector<float> base(out);
    float smax = 0;
    for (int n = 0; n < out; ++n) {
        float m = 0;
        for (int k = a; k < b; ++k)
            m = std::max(m, std::fabs(Wt[static_cast<size_t>(k) * out + n]));
        base[n] = (m + 1e-12f) / (maxq / 2);
        smax = std::max(smax, base[n]);
    }
    RefGroup g;
    std::vector<float> stw(out);
    for (int n = 0; n < out; ++n) {
        float q = std::nearbyint(std::sqrt(base[n] / smax) * 16.0f);
        q = std::clamp(q, 1.0f, 16.0f);
        g.qs.push_back(static_cast<int>(q));
        stw[n] = (q / 16.0f) * (q / 16.0f) * smax;
    }
    int best = -1;
    double bestErr = 0;
    for (int i = 0; i <= 96; ++i) {
        const float pi = static_cast<float>(i) / 96.0f;
        const float p = 0.7f * (1.0f - pi) + 1.2f * pi;
        double tot = 0;
        for (int n = 0; n < out; ++n) {
            float col = 0;
            const float s = stw[n] * p;
            for (int k = a; k < b; ++k) {
                const float w = Wt[static_cast<size_t>(k) * out + n];
                const float q = std::clamp(std::nearbyint(w / s), -qzero, maxq - qzero);
                const float e = std::fabs(q * s - w);
                col += e * e * e * std::sqrt(e); // |e|^3.5 in fp32 (the GPU uses __powf)
            }
            tot += col;
        }
        if (best < 0 || tot < bestErr) {
            bestErr = tot;
            best = i;
        }
    }
    const float pif = static_cast<float>(best) / 96.0f;
    const float bestP = 1.2f * pif + 0.7f * (1.0f - pif);
    g.qsm = fp32ToFp16(smax * bestP);
    const float pre = f16(h2f(g.qsm) * (1.0f / 256.0f));
    for (int n = 0; n < out; ++n)
        g.scale.push_back(f16(static_cast<float>(g.qs[n] * g.qs[n]) * pre));
    return g;
}

// Independent unpacker of one packed layer (core/exl2/README.md E.3 read as a bit stream, not pack()'s code).
std::vector<float> unpackRef(const PackedLinear& p, int in, int out) {
    std::vector<float> W(static_cast<size_t>(out) * in);
    const int G = static_cast<int>(p.qScaleMax.size());
    int row = 0;
    for (int g = 0; g < G; ++g) {
        const int bits = p.qGroups[2 * g];
        const int q0 = static_cast<uint16_t>(p.qGroups[2 * g + 1]);
        const int q1 = g + 1 < G ? static_cast<uint16_t>(p.qGroups[2 * g + 3]) : static_cast<int>(p.qRows);
        const int rows = (q1 - q0) * 32 / bits;
        const float pre = f16(h2f(p.qScaleMax[g]) / 256.0f);
        for (int n = 0; n < out; ++n) {
            const int qs =
                ((static_cast<uint32_t>(p.qScale[static_cast<size_t>(g) * (p.outPad / 8) + n / 8]) >>
                  (4 * (n % 8))) &
                 15) +
                1;
            const float scale = f16(static_cast<float>(qs * qs) * pre);
            for (int i = 0; i < rows; ++i) {
                uint64_t v = 0;
                for (int bit = 0; bit < bits; ++bit) {
                    const int pos = i * bits + bit;
                    const uint32_t word =
                        static_cast<uint32_t>(p.qWeight[static_cast<size_t>(q0 + pos / 32) * p.outPad + n]);
                    v |= static_cast<uint64_t>((word >> (pos % 32)) & 1u) << bit;
                }
                const int k = row + i;
                int orig = -1;
                for (int j = 0; j < in; ++j)
                    if (p.qInvperm[j] == k) orig = j; // perm = argsort(invperm)
                W[static_cast<size_t>(n) * in + orig] =
                    f16(static_cast<float>(static_cast<int>(v) - (1 << (bits - 1))) * scale);
            }
        }
        row += rows;
    }
    return W;
}

QString findPython() {
    if (QFileInfo::exists("/usr/bin/python3")) return "/usr/bin/python3";
    return QStandardPaths::findExecutable("python3");
}

} // namespace

class TestExl2Quant : public QObject {
    Q_OBJECT
  private slots:
    void totalBitsByHand();
    void groupsPerBitsEdge();
    void tables();
    void descAndJson();
    void hostileJson();
    void reduced();
    void fp16RoundMatchesConversion();
    void scaleMathByHand();
    void packBitPositionsByHand();
    void packPaddingAndScales();
    void planErrors();
    void hessianPrepared();
    void hessianRetryAndFailure();
    void firstGroupMatchesReference();
    void gptqBeatsRtn();
    void rtnWithPerm();
    void errorFallsWithBits();
    void dequantizeMatchesUnpack();
    void zeroAndHugeWeights();
    void sameForAnyThreadCount();
    void cancelStops();
    void readCheckPython();
};

void TestExl2Quant::totalBitsByHand() {
    // attn option 4, q_proj: QParams(128, [4, 3], [0.1, 0.9]) on a 4096 x 4096 layer.
    //   4 bits: ceil(min(409.6, 4096)/128) = ceil(3.2) = 4 groups = 512 rows; remaining 3584
    //   3 bits: ceil(min(3686.4, 3584)/128) = 28 groups = 3584 rows; remaining 0
    //   q_weight 512·4096·4 + 3584·4096·3 = 8,388,608 + 44,040,192 = 52,428,800
    //   + 32·16 (q_scale_max) + 32·32 (q_groups) + 32·4096·4 (q_scale) + 4096·32 (q_invperm)
    //   = 52,428,800 + 512 + 1,024 + 524,288 + 131,072 = 53,085,696 bits
    const QParams& q = attnOptions()[4][0];
    QCOMPARE(q.groupsPerBits(4096), (std::vector<int>{4, 28}));
    QCOMPARE(q.totalBits(4096, 4096), int64_t(53085696));
    QCOMPARE(q.bpw(4096, 4096), 53085696.0 / 16777216.0);
    QCOMPARE(q.totalBits(4096, 4096, true), int64_t(53085696 + 16 * 4096));
    QCOMPARE(q.bpw(4096, 4096, true), (53085696.0 + 65536.0) / (16777216.0 + 4096.0));

    // mlp option 0, down_proj: QParams([32, 64, 64], [6, 3, 2], [0.05, 0.2, 0.75]), rows 11008, cols 4096.
    //   6 bits: ceil(550.4/32) = ceil(17.2) = 18 groups = 576 rows; remaining 10432
    //   3 bits: ceil(2201.6/64) = ceil(34.4) = 35 groups = 2240 rows; remaining 8192
    //   2 bits: ceil(min(8256, 8192)/64) = 128 groups = 8192 rows; remaining 0; G = 181
    //   q_weight 576·4096·6 + 2240·4096·3 + 8192·4096·2 = 14,155,776 + 27,525,120 + 67,108,864 = 108,789,760
    //   + 181·16 + 181·32 + 181·4096·4 + 11008·32 = 2,896 + 5,792 + 2,965,504 + 352,256 -> 112,116,208
    const QParams& d = mlpOptions()[0][2];
    QCOMPARE(d.groupsPerBits(11008), (std::vector<int>{18, 35, 128}));
    QCOMPARE(d.totalBits(11008, 4096), int64_t(112116208));

    // head option 6: QParams(128, [8, 6], [0.15, 0.85]) on 256 rows x 512 columns:
    //   8 bits: ceil(38.4/128) = 1 group = 128 rows, remaining 128; 6 bits: ceil(min(217.6, 128)/128) = 1
    //   q_weight 128·512·8 + 128·512·6 = 524,288 + 393,216 = 917,504; + 2·16 + 2·32 + 2·512·4 + 256·32
    //   = 917,504 + 32 + 64 + 4,096 + 8,192 = 929,888
    auto h = headOptions(6);
    QVERIFY(h.ok());
    QCOMPARE(h->groupsPerBits(256), (std::vector<int>{1, 1}));
    QCOMPARE(h->totalBits(256, 512), int64_t(929888));
}

void TestExl2Quant::groupsPerBitsEdge() {
    // 32 rows, QParams(64, [3, 2], [0.05, 0.95]): 3 bits ceil(1.6/64) = 1 group (64 > 32 rows), remaining
    // −32; 2 bits: ceil(min(30.4, −32)/64) = ceil(−0.5) = 0. One group of 32 rows.
    const QParams& q = attnOptions()[0][0];
    QCOMPARE(q.groupsPerBits(32), (std::vector<int>{1, 0}));
    // total_bits caps the rows: 32·10·3 + 16 + 32 + 10·4 + 32·32 = 960 + 16 + 32 + 40 + 1024
    QCOMPARE(q.totalBits(32, 10), int64_t(960 + 16 + 32 + 40 + 1024));
    auto plan = planGroups(q, 32);
    QVERIFY(plan.ok());
    QCOMPARE(plan->size(), size_t(1));
    QCOMPARE((*plan)[0].rows, 32);
    QCOMPARE((*plan)[0].bits, 3);
}

void TestExl2Quant::tables() {
    QCOMPARE(attnOptions().size(), size_t(19));
    QCOMPARE(mlpOptions().size(), size_t(17));
    auto check = [](const QParams& q) {
        QVERIFY2(validateQParams(q).ok(), qPrintable(QString::fromStdString(q.desc())));
        double s = 0;
        for (double p : q.bitsProp)
            s += p;
        QCOMPARE(s, 1.0); // exllamav2 asserts sum(bits_prop) == 1 exactly
        for (size_t j = 1; j < q.bits.size(); ++j)
            QVERIFY(q.bits[j] < q.bits[j - 1]);
        for (int b : q.bits) {
            const int gs = q.groupSize.at(b);
            QVERIFY(gs % 32 == 0 || (b == 2 && gs % 16 == 0));
        }
        // Every shape of the usual models can be planned.
        for (int in : {256, 768, 2048, 4096, 5120, 8192, 11008, 13824, 14336, 28672})
            QVERIFY2(planGroups(q, in).ok(),
                     qPrintable(QString::fromStdString(q.desc()) + " " + QString::number(in)));
    };
    for (const auto& o : attnOptions()) {
        QCOMPARE(o.size(), size_t(4));
        for (const auto& q : o)
            check(q);
    }
    for (const auto& o : mlpOptions()) {
        QCOMPARE(o.size(), size_t(3));
        for (const auto& q : o)
            check(q);
    }
    for (int hb : {2, 3, 4, 5, 6, 8}) {
        auto h = headOptions(hb);
        QVERIFY(h.ok());
        check(*h);
    }
    QVERIFY(!headOptions(7).ok());
    QVERIFY(!headOptions(16).ok());
    // Spot checks against qparams.py.
    QCOMPARE(attnOptions()[17][2].desc(), std::string("1:8b_32g s4"));
    QCOMPARE(attnOptions()[17][0].desc(), std::string("1:6b_32g s4"));
    QCOMPARE(attnOptions()[1][2].desc(), std::string("0.25:3b_64g/0.75:2b_64g s4"));
    QCOMPARE(mlpOptions()[0][2].desc(), std::string("0.05:6b_32g/0.2:3b_64g/0.75:2b_64g s4"));
    QCOMPARE(mlpOptions()[4][2].desc(), std::string("0.05:8b_32g/0.1:4b_128g/0.85:3b_128g s4"));
    QCOMPARE(mlpOptions()[14][2].desc(), std::string("0.15:8b_128g/0.85:6b_128g s4"));
    QCOMPARE(headOptions(2)->desc(), std::string("0.3:4b_32g/0.7:2b_32g s4"));
    QCOMPARE(headOptions(5)->desc(), std::string("0.15:6b_128g/0.85:5b_128g s4"));
}

void TestExl2Quant::descAndJson() {
    const QParams& q = mlpOptions()[0][2];
    QCOMPARE(
        q.toJson(),
        std::string(
            R"({"group_size":{"6":32,"3":64,"2":64},"bits":[6,3,2],"bits_prop":[0.05,0.2,0.75],"scale_bits":4})"));
    auto back = qparamsFromJson(q.toJson());
    QVERIFY(back.ok());
    QVERIFY(*back == q);
    // exllamav2's measurement.json form (json.dumps: spaces, string keys) and the other group_size forms.
    auto a = qparamsFromJson(
        R"({"group_size": {"4": 128, "3": 128}, "bits": [4, 3], "bits_prop": [0.1, 0.9], "scale_bits": 4})");
    QVERIFY(a.ok());
    QVERIFY(*a == attnOptions()[4][0]);
    auto b =
        qparamsFromJson(R"({"group_size": 128, "bits": [4, 3], "bits_prop": [0.1, 0.9], "scale_bits": 4})");
    QVERIFY(b.ok() && *b == attnOptions()[4][0]);
    auto c = qparamsFromJson(
        R"({"group_size": [32, 64, 64], "bits": [6, 3, 2], "bits_prop": [0.05, 0.2, 0.75], "scale_bits": 4})");
    QVERIFY(c.ok() && *c == q);
    QCOMPARE(attnOptions()[6][0].toJson(),
             std::string(R"({"group_size":{"4":128},"bits":[4],"bits_prop":[1],"scale_bits":4})"));
    for (const auto& o : attnOptions())
        for (const auto& x : o) {
            auto r = qparamsFromJson(x.toJson());
            QVERIFY(r.ok() && *r == x);
        }
}

void TestExl2Quant::hostileJson() {
    const char* bad[] = {
        "",
        "not json",
        "[]",
        "{}",
        R"({"group_size": {"4": 128}, "bits": [4], "bits_prop": [1]})", // no scale_bits
        R"({"group_size": {"4": 128}, "bits": [4], "bits_prop": [1], "scale_bits": 3})",
        R"({"group_size": {"4": 128}, "bits": [7], "bits_prop": [1], "scale_bits": 4})",
        R"({"group_size": {"4": 128}, "bits": [4.5], "bits_prop": [1], "scale_bits": 4})",
        R"({"group_size": {"4": 128}, "bits": ["4"], "bits_prop": [1], "scale_bits": 4})",
        R"({"group_size": {"4": 128}, "bits": [4294967300], "bits_prop": [1], "scale_bits": 4})",
        R"({"group_size": {"4": 128}, "bits": [-4294967292], "bits_prop": [1], "scale_bits": 4})",
        R"({"group_size": {"4": 128}, "bits": [], "bits_prop": [], "scale_bits": 4})",
        R"({"group_size": {"4": 128}, "bits": [4], "bits_prop": [0.5], "scale_bits": 4})", // sum != 1
        R"({"group_size": {"4": 128}, "bits": [4], "bits_prop": [1, 0], "scale_bits": 4})",
        R"({"group_size": {"4": 128, "3": 128}, "bits": [3, 4], "bits_prop": [0.5, 0.5], "scale_bits": 4})",
        R"({"group_size": {"4": 128, "3": 128}, "bits": [4, 4], "bits_prop": [0.5, 0.5], "scale_bits": 4})",
        R"({"group_size": {"4": 128, "3": 128}, "bits": [4, 3], "bits_prop": [1.5, -0.5], "scale_bits": 4})",
        R"({"group_size": {"4": 100}, "bits": [4], "bits_prop": [1], "scale_bits": 4})", // not x32
        R"({"group_size": {"4": 16}, "bits": [4], "bits_prop": [1], "scale_bits": 4})",  // 16 only for 2 bits
        R"({"group_size": {"4": 0}, "bits": [4], "bits_prop": [1], "scale_bits": 4})",
        R"({"group_size": {"4": -128}, "bits": [4], "bits_prop": [1], "scale_bits": 4})",
        R"({"group_size": {"4": 1e30}, "bits": [4], "bits_prop": [1], "scale_bits": 4})",
        R"({"group_size": {"4": 1099511627776}, "bits": [4], "bits_prop": [1], "scale_bits": 4})",
        R"({"group_size": {"3": 128}, "bits": [4], "bits_prop": [1], "scale_bits": 4})", // no gs for 4
        R"({"group_size": {"x": 128, "4": 128}, "bits": [4], "bits_prop": [1], "scale_bits": 4})",
        R"({"group_size": {"04x": 128}, "bits": [4], "bits_prop": [1], "scale_bits": 4})",
        R"({"group_size": "128", "bits": [4], "bits_prop": [1], "scale_bits": 4})",
        R"({"group_size": [128, 128], "bits": [4], "bits_prop": [1], "scale_bits": 4})",
        R"({"group_size": {"4": 128}, "bits": 4, "bits_prop": [1], "scale_bits": 4})",
        R"({"group_size": {"4": 128}, "bits": [4], "bits_prop": 1, "scale_bits": 4})",
        R"({"group_size": {"4": 128}, "bits": [4], "bits_prop": ["1"], "scale_bits": 4})",
        R"({"group_size": {"4": 128}, "bits": [8,6,5,4,3,2,2], "bits_prop": [1,0,0,0,0,0,0], "scale_bits": 4})",
    };
    for (const char* s : bad) {
        auto r = qparamsFromJson(s);
        QVERIFY2(!r.ok(), s);
        QVERIFY(!r.error().message.empty());
    }
    // Deep nesting and an oversized text are refused without crashing.
    std::string deep(100000, '[');
    QVERIFY(!qparamsFromJson(deep).ok());
    std::string big =
        R"({"group_size": {"4": 128}, "bits": [4], "bits_prop": [1], "scale_bits": 4, "pad": ")" +
        std::string(2 << 20, 'x') + "\"}";
    QVERIFY(!qparamsFromJson(big).ok());
    // Extra group sizes for widths not in bits are ignored.
    auto ok = qparamsFromJson(
        R"({"group_size": {"8": 32, "4": 128}, "bits": [4], "bits_prop": [1], "scale_bits": 4})");
    QVERIFY(ok.ok());
    QCOMPARE(ok->groupSize.size(), size_t(1));
}

void TestExl2Quant::reduced() {
    // Attention slot 2 (v_proj) has distinct settings in first-seen order; option 0 maps to setting 0
    // everywhere.
    auto r = reduceQParams(attnOptions());
    QCOMPARE(r.perSlot.size(), size_t(4));
    QCOMPARE(r.maps.size(), size_t(19));
    QCOMPARE(r.maps[0], (std::vector<int>{0, 0, 0, 0}));
    // q_proj settings in the table: 0.05:3/2 64, 0.1:3/2 64, 4/3 128, 4 128, 4 64, 4 32, 5/4 128, 5/4 64,
    // 5/4 32, 6/5 128, 6/5 32, 6 128, 6 32, 8 128 -> 14 distinct.
    QCOMPARE(r.perSlot[0].size(), size_t(14));
    for (size_t o = 0; o < attnOptions().size(); ++o)
        for (int s = 0; s < 4; ++s)
            QVERIFY(r.perSlot[s][r.maps[o][s]] == attnOptions()[o][s]);
    auto m = reduceQParams(mlpOptions(), true);
    QVERIFY(m.perSlot[0].empty());
    QCOMPARE(m.maps[0].size(), size_t(2));
    for (size_t o = 0; o < mlpOptions().size(); ++o)
        for (int s = 1; s < 3; ++s)
            QVERIFY(m.perSlot[s][m.maps[o][s - 1]] == mlpOptions()[o][s]);
}

void TestExl2Quant::fp16RoundMatchesConversion() {
    std::mt19937 rng(5);
    std::uniform_int_distribution<uint32_t> bitsDist;
    for (int i = 0; i < 2000000; ++i) {
        uint32_t u = bitsDist(rng);
        if (i % 2)
            u = (u & 0x80FFFFFFu) | ((0x30u + (u >> 24) % 0x18u) << 24); // focus on |x| in [2^-31, 2^17)
        float x;
        std::memcpy(&x, &u, 4);
        const float a = fp16Round(x), b = h2f(fp32ToFp16(x));
        if (std::isnan(b)) {
            QVERIFY(std::isnan(a));
            continue;
        }
        if (a != b || std::signbit(a) != std::signbit(b))
            QFAIL(qPrintable(
                QString("fp16Round(%1) = %2, conversion gives %3").arg(x, 0, 'g', 9).arg(a).arg(b)));
    }
    QCOMPARE(fp16Round(65504.0f), 65504.0f);
    QCOMPARE(fp16Round(65519.0f), 65504.0f);
    QVERIFY(std::isinf(fp16Round(65520.0f)));
    QCOMPARE(fp16Round(std::ldexp(1.5f, -25)), std::ldexp(1.0f, -24)); // 1.5 units -> 2 (even)
    QCOMPARE(fp16Round(std::ldexp(2.5f, -24)), std::ldexp(2.0f, -24)); // 2.5 units -> 2 (even)
}

void TestExl2Quant::scaleMathByHand() {
    // q_scale_max = 1.0 (0x3C00): 1/256 exact; qs = 16 -> 256/256 = 1; qs = 1 -> 1/256.
    QCOMPARE(groupScale(16, 0x3C00), 1.0f);
    QCOMPARE(groupScale(1, 0x3C00), 1.0f / 256.0f);
    // q_scale_max = 0x2E66 = 2^-4·(1 + 614/1024) = 0.0999755859375; /256 = 1.599609375·2^-12 (exact).
    // qs = 3: 9·1.599609375 = 14.396484375 -> 1.79956054688·2^-9; mantissa·1024 = 1842.75 -> 1843:
    // 1843/1024·2^-9 = 0.0035152435302734375.
    QCOMPARE(groupScale(3, 0x2E66), 0.0035152435302734375f);
    // q_scale_max = 0x2123 = 2^-7·(1 + 291/1024) = 1.2841796875/128; /256 = 1.2841796875·2^-15 is an fp16
    // subnormal: 1.2841796875·2^9 = 657.5 units of 2^-24, a tie -> 658 (even). qs = 16: 256·658·2^-24 =
    // 658/65536 = 0.010040283203125 (without the intermediate fp16 rounding it would be 0.0100326538...).
    QCOMPARE(groupScale(1, 0x2123), 658.0f / 16777216.0f);
    QCOMPARE(groupScale(16, 0x2123), 0.010040283203125f);

    // A hand-built one-group layer: 32 rows x 1 column, 4 bits, qs = 16, q_scale_max = 1.0 -> scale 1:
    // W[k] = code − 8. invperm reversed: stored row k is original row 31 − k.
    QuantizedLinear q;
    q.in = 32;
    q.out = 1;
    q.qp = mk({{4, 32}}, {4}, {1.0});
    q.groups = {{4, 0, 32, 0}};
    for (int k = 0; k < 32; ++k) {
        q.perm.push_back(31 - k);
        q.codes.push_back(static_cast<uint16_t>(k % 16));
    }
    q.invperm = q.perm; // reversal is its own inverse
    q.qscale = {16};
    q.qscaleMax = {0x3C00};
    const auto W = dequantize(q);
    for (int k = 0; k < 32; ++k)
        QCOMPARE(W[31 - k], static_cast<float>(k % 16 - 8));
    // qs = 3, q_scale_max 0x2E66: W = (code − 8)·0.0035152435302734375 rounded to fp16; code 15 -> 7·s =
    // 0.0246067047119140625 = 1.5748291015625·2^-6: mantissa·1024 = 1612.625 -> 1613 -> 1613/1024·2^-6.
    q.qscale = {3};
    q.qscaleMax = {0x2E66};
    const auto W2 = dequantize(q);
    QCOMPARE(W2[31 - 15], 1613.0f / 1024.0f / 64.0f);
    QCOMPARE(W2[31 - 8], 0.0f);
    QCOMPARE(W2[31 - 0], -8.0f * 0.0035152435302734375f); // exact: 8·s has the same mantissa
}

void TestExl2Quant::packBitPositionsByHand() {
    // One column, one group of 32 rows per width; one marked code per width, all others 0; words by hand.
    struct Case {
        int bits;
        int row;
        uint16_t code;
        std::vector<uint32_t> words;
    };
    const std::vector<Case> cases = {
        {2, 15, 3, {0xC0000000u, 0}},              // rows 0..15 in word 0: row 15 -> bits 30-31
        {2, 16, 1, {0, 0x00000001u}},              // row 16 -> word 1 bit 0
        {3, 10, 7, {0xC0000000u, 0x00000001u, 0}}, // bits 30..32 straddle words 0/1
        {3, 21, 5, {0, 0x80000000u, 0x00000002u}}, // bits 63..65: 101b -> bit 63 = 1, 64 = 0, 65 = 1
        {4, 7, 0xA, {0xA0000000u, 0, 0, 0}},
        {5, 6, 31, {0xC0000000u, 0x00000007u, 0, 0, 0}}, // bits 30..34
        {5, 31, 0x11, {0, 0, 0, 0, 0x88000000u}},        // bits 155..159: 10001b -> bits 155 and 159
        {6, 5, 63, {0xC0000000u, 0x0000000Fu, 0}},       // bits 30..35
        {6, 16, 0x2A, {0, 0, 0, 0x0000002Au, 0, 0}}, // second run (rows 16..31 in words 3..5) starts at bit 0
        {6, 21, 0x2A, {0, 0, 0, 0x80000000u, 0x0000000Au, 0}}, // bits 126..131: 101010b -> bits 127, 129, 131
        {8, 3, 0x81, {0x81000000u, 0}},
        {8, 4, 0x7F, {0, 0x0000007Fu}},
    };
    for (const auto& c : cases) {
        QuantizedLinear q;
        q.in = 32;
        q.out = 1;
        q.qp = mk({{c.bits, 32}}, {c.bits}, {1.0});
        q.groups = {{c.bits, 0, 32, 0}};
        for (int k = 0; k < 32; ++k)
            q.perm.push_back(k);
        q.invperm = q.perm;
        q.codes.assign(32, 0);
        q.codes[c.row] = c.code;
        q.qscale = {1};
        q.qscaleMax = {0x3C00};
        const PackedLinear p = pack(q);
        QCOMPARE(p.outPad, int64_t(32));
        QCOMPARE(p.qRows, int64_t(c.bits)); // 32 rows · bits / 32
        for (size_t w = 0; w < c.words.size(); ++w)
            QVERIFY2(static_cast<uint32_t>(p.qWeight[w * 32 + 0]) == c.words[w],
                     qPrintable(QString("bits %1 row %2 word %3: %4")
                                    .arg(c.bits)
                                    .arg(c.row)
                                    .arg(w)
                                    .arg(static_cast<uint32_t>(p.qWeight[w * 32]), 8, 16, QChar('0'))));
    }
}

void TestExl2Quant::packPaddingAndScales() {
    // 3 bits, out = 1: columns 1..31 are padding with value 4 (100b) in every row. Value i sits at bits
    // 3i..3i+2, so bit 3i+2 is set: word 0 bits 2,5,..,29 = 0x24924924; word 1 bits 0,3,..,30 = 0x49249249;
    // word 2 bits 1,4,..,31 = 0x92492492.
    QuantizedLinear q;
    q.in = 32;
    q.out = 10;
    q.qp = mk({{3, 32}}, {3}, {1.0});
    q.groups = {{3, 0, 32, 0}};
    for (int k = 0; k < 32; ++k)
        q.perm.push_back(k);
    q.invperm = q.perm;
    q.codes.assign(32 * 10, 0);
    for (int n = 0; n < 10; ++n)
        q.qscale.push_back(static_cast<uint8_t>(n + 1 > 16 ? 16 : n + 1));
    q.qscale[8] = 16;
    q.qscale[9] = 11;
    q.qscaleMax = {0x3C00};
    const PackedLinear p = pack(q);
    QCOMPARE(p.qRows, int64_t(3));
    QCOMPARE(p.outPad, int64_t(32));
    for (int n = 10; n < 32; ++n) {
        QCOMPARE(static_cast<uint32_t>(p.qWeight[0 * 32 + n]), 0x24924924u);
        QCOMPARE(static_cast<uint32_t>(p.qWeight[1 * 32 + n]), 0x49249249u);
        QCOMPARE(static_cast<uint32_t>(p.qWeight[2 * 32 + n]), 0x92492492u);
    }
    QCOMPARE(static_cast<uint32_t>(p.qWeight[0]), 0u);
    // q_scale: qscale − 1 per nibble, column 8w+i at bits 4i: columns 0..7 -> 0x76543210; columns 8, 9 ->
    // 15, 10 and padding (15) above: 0xFFFFFFAF; words 2, 3: all padding.
    QCOMPARE(p.qScale.size(), size_t(4));
    QCOMPARE(static_cast<uint32_t>(p.qScale[0]), 0x76543210u);
    QCOMPARE(static_cast<uint32_t>(p.qScale[1]), 0xFFFFFFAFu);
    QCOMPARE(static_cast<uint32_t>(p.qScale[2]), 0xFFFFFFFFu);
    QCOMPARE(static_cast<uint32_t>(p.qScale[3]), 0xFFFFFFFFu);
    QCOMPARE(p.qGroups, (std::vector<int16_t>{3, 0}));
    QCOMPARE(p.qScaleMax, (std::vector<uint16_t>{0x3C00}));
}

void TestExl2Quant::planErrors() {
    const QParams q4 = mk({{4, 32}}, {4}, {1.0});
    QVERIFY(!planGroups(q4, 48).ok()); // not a multiple of 32
    QVERIFY(!planGroups(q4, 0).ok());
    QVERIFY(!planGroups(q4, 65536 + 32).ok());
    QVERIFY(planGroups(q4, 64).ok());
    // 2 bits with 16-row groups and 6 bits with 32: rows·bits fill words.
    auto p = planGroups(mk({{6, 32}, {2, 16}}, {6, 2}, {0.5, 0.5}), 64);
    QVERIFY(p.ok());
    QCOMPARE(p->size(), size_t(3));
    QCOMPARE((*p)[0].qRow, 0);
    QCOMPARE((*p)[1].qRow, 6); // 32 rows · 6 bits / 32
    QCOMPARE((*p)[2].qRow, 7); // + 16 · 2 / 32
    QCOMPARE((*p)[2].firstRow, 48);
    // increasing bits, bad proportions
    QVERIFY(!planGroups(mk({{4, 32}, {6, 32}}, {4, 6}, {0.5, 0.5}), 64).ok());
    QVERIFY(!planGroups(mk({{4, 32}}, {4}, {0.9}), 64).ok());
    // Shape errors from the quantizer name the problem.
    std::vector<float> W(48 * 4, 0.1f);
    auto r = quantizeLinearRtn(W.data(), 4, 48, q4);
    QVERIFY(!r.ok());
    QVERIFY(r.error().message.find("multiple of 32") != std::string::npos);
    std::vector<float> W2(64 * 4, 0.1f);
    W2[5] = std::nanf("");
    auto r2 = quantizeLinearRtn(W2.data(), 4, 64, q4);
    QVERIFY(!r2.ok());
    QVERIFY(r2.error().message.find("not finite") != std::string::npos);
    auto h = prepareHessian(makeHessian(64, 128, 1), 64);
    QVERIFY(h.ok());
    auto r3 = quantizeLinear(W2.data(), 2, 128, *h, q4); // Hessian for 64 inputs, layer 128
    QVERIFY(!r3.ok());
}

void TestExl2Quant::hessianPrepared() {
    const int n = 96;
    auto H = makeHessian(n, 300, 3);
    H[5 * n + 5] = H[7 * n + 7]; // a tie in the diagonal: the lower original index comes first
    auto h = prepareHessian(H, n);
    QVERIFY(h.ok());
    QCOMPARE(h->dampTries, 1);
    double mean = 0;
    for (int i = 0; i < n; ++i)
        mean += H[i * n + i];
    mean /= n;
    QVERIFY(std::fabs(h->damp - 0.12 * mean) < 1e-9 * mean);
    // perm sorts the diagonal in descending order
    for (int k = 1; k < n; ++k) {
        const float a = H[h->perm[k - 1] * n + h->perm[k - 1]], b = H[h->perm[k] * n + h->perm[k]];
        QVERIFY(a >= b);
        if (a == b) QVERIFY(h->perm[k - 1] < h->perm[k]);
    }
    // U upper with positive diagonal and UᵀU·(H_perm + damp·I) = I.
    Eigen::MatrixXd U(n, n), Hp(n, n);
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < n; ++j) {
            U(i, j) = h->hinv[i * n + j];
            Hp(i, j) = H[h->perm[i] * n + h->perm[j]] + (i == j ? h->damp : 0.0);
        }
    for (int i = 0; i < n; ++i) {
        QVERIFY(U(i, i) > 0);
        for (int j = 0; j < i; ++j)
            QCOMPARE(U(i, j), 0.0);
    }
    const Eigen::MatrixXd I = U.transpose() * U * Hp;
    QVERIFY2((I - Eigen::MatrixXd::Identity(n, n)).cwiseAbs().maxCoeff() < 1e-4,
             qPrintable(QString::number((I - Eigen::MatrixXd::Identity(n, n)).cwiseAbs().maxCoeff())));
    // Bad input
    QVERIFY(!prepareHessian(std::vector<float>(10, 1.0f), 4).ok());
    auto Hn = H;
    Hn[17] = std::numeric_limits<float>::infinity();
    QVERIFY(!prepareHessian(Hn, n).ok());
}

void TestExl2Quant::hessianRetryAndFailure() {
    // Rank-one (singular) H = 1·1ᵀ: the damp alone makes it positive definite, first try.
    {
        const int n = 32;
        auto h = prepareHessian(std::vector<float>(n * n, 1.0f), n);
        QVERIFY(h.ok());
        QCOMPARE(h->dampTries, 1);
        QCOMPARE(h->damp, 0.12);
    }
    // All-zero H: damp = max(0, 1e-5) = 1e-5, U = I/sqrt(1e-5).
    {
        const int n = 32;
        auto h = prepareHessian(std::vector<float>(n * n, 0.0f), n);
        QVERIFY(h.ok());
        QCOMPARE(h->damp, 1e-5);
        QVERIFY(std::fabs(h->hinv[0] - 1.0 / std::sqrt(1e-5)) < 1e-2);
    }
    // Indefinite: diag 1, off-diagonal pairs 2 (eigenvalues 3 and −1 per pair). damp 0.12 per try: needs
    // k·0.12 > 1 -> k = 9 tries, damp 1.08.
    {
        const int n = 4;
        std::vector<float> H(n * n, 0.0f);
        for (int i = 0; i < n; ++i)
            H[i * n + i] = 1.0f;
        H[0 * n + 1] = H[1 * n + 0] = 2.0f;
        H[2 * n + 3] = H[3 * n + 2] = 2.0f;
        auto h = prepareHessian(H, n);
        QVERIFY(h.ok());
        QCOMPARE(h->dampTries, 9);
        QVERIFY(std::fabs(h->damp - 1.08) < 1e-12);
    }
    // Off-diagonal 3 (eigenvalue −2): 10 tries reach only 1.2 -> error.
    {
        const int n = 2;
        std::vector<float> H = {1.0f, 3.0f, 3.0f, 1.0f};
        auto h = prepareHessian(H, n);
        QVERIFY(!h.ok());
        QVERIFY(h.error().message.find("not invertible") != std::string::npos);
    }
}

void TestExl2Quant::firstGroupMatchesReference() {
    const int in = 128, out = 72;
    auto W = makeWeights(out, in, 11);
    auto H = makeHessian(in, 400, 12);
    auto h = prepareHessian(H, in);
    QVERIFY(h.ok());
    for (const QParams& qp : {mk({{4, 64}}, {4}, {1.0}), mk({{3, 32}, {2, 32}}, {3, 2}, {0.25, 0.75}),
                              mk({{8, 32}, {5, 64}}, {8, 5}, {0.25, 0.75}), mk({{6, 128}}, {6}, {1.0})}) {
        auto q = quantizeLinear(W.data(), out, in, *h, qp, {}, 2);
        QVERIFY(q.ok());
        // Wt in stored order, as the reference sees it before any update.
        std::vector<float> Wt(static_cast<size_t>(in) * out);
        for (int k = 0; k < in; ++k)
            for (int n = 0; n < out; ++n)
                Wt[k * out + n] = W[n * in + h->perm[k]];
        const auto& g0 = q->groups[0];
        const RefGroup ref = refFindParams(Wt, out, 0, g0.rows, g0.bits);
        QCOMPARE(q->qscaleMax[0], ref.qsm);
        for (int n = 0; n < out; ++n)
            QCOMPARE(static_cast<int>(q->qscale[n]), ref.qs[n]);
        // Codes of the first group with the in-group feedback (plain loops).
        const float maxq = std::pow(2.0f, g0.bits) - 1, qzero = std::pow(2.0f, g0.bits - 1);
        int diff = 0;
        for (int c = 0; c < g0.rows; ++c) {
            const float d = h->hinv[c * in + c];
            for (int n = 0; n < out; ++n) {
                const float w = Wt[c * out + n];
                const float code = std::clamp(std::nearbyint(w / ref.scale[n]) + qzero, 0.0f, maxq);
                if (static_cast<int>(code) != q->codes[c * out + n]) ++diff;
                const float deq = f16((code - qzero) * ref.scale[n]);
                const float e = (w - deq) / d;
                for (int j = c + 1; j < g0.rows; ++j)
                    Wt[j * out + n] -= h->hinv[c * in + j] * e;
            }
        }
        QCOMPARE(diff, 0);
    }
}

void TestExl2Quant::gptqBeatsRtn() {
    const int in = 256, out = 96;
    auto W = makeWeights(out, in, 21);
    auto H = makeHessian(in, 600, 22);
    auto h = prepareHessian(H, in);
    QVERIFY(h.ok());
    for (const QParams& qp :
         {attnOptions()[0][0], attnOptions()[4][0], attnOptions()[9][0], mlpOptions()[0][2]}) {
        auto g = quantizeLinear(W.data(), out, in, *h, qp);
        auto r = quantizeLinearRtn(W.data(), out, in, qp);
        QVERIFY(g.ok() && r.ok());
        const double eg = relativeOutputError(W.data(), dequantize(*g), out, in, H);
        const double er = relativeOutputError(W.data(), dequantize(*r), out, in, H);
        qInfo("%s: GPTQ %.5f RTN %.5f", qp.desc().c_str(), eg, er);
        QVERIFY2(eg < er, qPrintable(QString("%1 vs %2").arg(eg).arg(er)));
        QVERIFY(eg > 0);
    }
}

void TestExl2Quant::rtnWithPerm() {
    // The head's RTN path keeps the act-order permutation: the same codes as identity RTN on the permuted
    // columns when every group has one bit width and gs covers whole permuted blocks.
    const int in = 64, out = 16;
    auto W = makeWeights(out, in, 61);
    auto H = makeHessian(in, 200, 62);
    const auto perm = actOrderPerm(H, in);
    auto h = prepareHessian(H, in);
    QVERIFY(h.ok());
    QCOMPARE(perm, h->perm);
    std::vector<float> Wp(W.size());
    for (int o = 0; o < out; ++o)
        for (int k = 0; k < in; ++k)
            Wp[o * in + k] = W[o * in + perm[k]];
    const QParams qp = mk({{4, 32}, {2, 32}}, {4, 2}, {0.5, 0.5});
    auto a = quantizeLinearRtn(W.data(), out, in, qp, 0, perm);
    auto b = quantizeLinearRtn(Wp.data(), out, in, qp);
    QVERIFY(a.ok() && b.ok());
    QCOMPARE(a->codes, b->codes);
    QCOMPARE(a->qscaleMax, b->qscaleMax);
    QCOMPARE(a->perm, perm);
    std::vector<int32_t> bad = perm;
    bad[0] = bad[1];
    QVERIFY(!quantizeLinearRtn(W.data(), out, in, qp, 0, bad).ok());
}

void TestExl2Quant::errorFallsWithBits() {
    const int in = 256, out = 64;
    auto W = makeWeights(out, in, 31);
    auto H = makeHessian(in, 600, 32);
    auto h = prepareHessian(H, in);
    QVERIFY(h.ok());
    double prevG = 1e9, prevR = 1e9;
    for (int b : {2, 3, 4, 5, 6, 8}) {
        const QParams qp = mk({{b, 32}}, {b}, {1.0});
        auto g = quantizeLinear(W.data(), out, in, *h, qp);
        auto r = quantizeLinearRtn(W.data(), out, in, qp);
        QVERIFY(g.ok() && r.ok());
        const double eg = relativeOutputError(W.data(), dequantize(*g), out, in, H);
        const double er = relativeOutputError(W.data(), dequantize(*r), out, in, H);
        qInfo("%d bits: GPTQ %.3g RTN %.3g", b, eg, er);
        QVERIFY(eg < prevG);
        QVERIFY(er < prevR);
        prevG = eg;
        prevR = er;
        for (uint16_t c : g->codes)
            QVERIFY(c < (1u << b));
        for (uint8_t s : g->qscale)
            QVERIFY(s >= 1 && s <= 16);
    }
    QVERIFY(prevG < 1e-4);
}

void TestExl2Quant::dequantizeMatchesUnpack() {
    const int in = 192, out = 100;
    auto W = makeWeights(out, in, 41);
    auto H = makeHessian(in, 500, 42);
    auto h = prepareHessian(H, in);
    QVERIFY(h.ok());
    const QParams qp = mk({{8, 32}, {6, 32}, {5, 32}, {4, 32}, {3, 32}, {2, 16}}, {8, 6, 5, 4, 3, 2},
                          {1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6});
    auto q = quantizeLinear(W.data(), out, in, *h, qp);
    QVERIFY(q.ok());
    const PackedLinear p = pack(*q);
    QCOMPARE(p.outPad, int64_t(128));
    const auto a = dequantize(*q), b = unpackRef(p, in, out);
    QCOMPARE(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i)
        if (a[i] != b[i]) QFAIL(qPrintable(QString("element %1: %2 vs %3").arg(i).arg(a[i]).arg(b[i])));
    // and the dequantized weights are close to W
    double maxErr = 0;
    for (size_t i = 0; i < a.size(); ++i)
        maxErr = std::max(maxErr, std::fabs(double(a[i]) - W[i]));
    QVERIFY(maxErr < 0.2);
}

void TestExl2Quant::zeroAndHugeWeights() {
    const int in = 64, out = 16;
    const QParams qp = mk({{4, 32}}, {4}, {1.0});
    // An all-zero group: q_scale_max underflows to fp16 0, every code is qzero, everything decodes to 0.
    auto W = makeWeights(out, in, 71);
    for (int o = 0; o < out; ++o)
        for (int k = 0; k < 32; ++k)
            W[o * in + k] = 0.0f;
    auto r = quantizeLinearRtn(W.data(), out, in, qp);
    QVERIFY(r.ok());
    QCOMPARE(r->qscaleMax[0], uint16_t(0));
    for (int k = 0; k < 32; ++k)
        for (int n = 0; n < out; ++n)
            QCOMPARE(int(r->codes[k * out + n]), 8);
    const auto d = dequantize(*r);
    for (int o = 0; o < out; ++o)
        for (int k = 0; k < 32; ++k)
            QCOMPARE(d[o * in + k], 0.0f);
    // All zero with GPTQ.
    std::vector<float> Z(out * in, 0.0f);
    auto h = prepareHessian(makeHessian(in, 200, 72), in);
    QVERIFY(h.ok());
    auto z = quantizeLinear(Z.data(), out, in, *h, qp);
    QVERIFY(z.ok());
    for (float v : dequantize(*z))
        QCOMPARE(v, 0.0f);
    // Too large for fp16 scales: a clear error, not garbage.
    std::vector<float> B(out * in, 1.0e6f);
    auto b = quantizeLinear(B.data(), out, in, *h, qp);
    QVERIFY(!b.ok());
    QVERIFY(b.error().message.find("too large") != std::string::npos);
}

void TestExl2Quant::sameForAnyThreadCount() {
    // The whole chain for one layer, bit-identical for 1, 2, 3, 5 threads: the Hessian from the
    // calibration rows (a fixed grid of tiles), its preparation (fixed Cholesky blocks and row chunks,
    // fixed inversion blocks) and the quantization (every column computed the same way whatever the
    // column chunks). 320 inputs: two Hessian tiles, three Cholesky blocks.
    const int in = 320, out = 200, rows = 600;
    auto W = makeWeights(out, in, 81);
    std::vector<float> X;
    makeHessian(in, rows, 82, &X);
    const QParams& qp = mlpOptions()[0][2];
    std::vector<float> H1;
    PreparedHessian h1;
    QuantizedLinear q1;
    for (const int t : {1, 2, 3, 5}) {
        gptq::HessianAccumulator acc(in);
        acc.add(X.data(), rows, t);
        acc.countSample(1);
        auto H = exl2Hessian(acc);
        auto h = prepareHessian(H, in, {}, t);
        QVERIFY(h.ok());
        auto q = quantizeLinear(W.data(), out, in, *h, qp, {}, t);
        QVERIFY(q.ok());
        if (t == 1) {
            H1 = H;
            h1 = *h;
            q1 = *q;
            continue;
        }
        QVERIFY2(H == H1, qPrintable(QString("Hessian, %1 threads").arg(t)));
        QCOMPARE(h->perm, h1.perm);
        QVERIFY2(h->hinv == h1.hinv, qPrintable(QString("H⁻¹ factor, %1 threads").arg(t)));
        QCOMPARE(h->dampTries, h1.dampTries);
        QCOMPARE(q->codes, q1.codes);
        QCOMPARE(q->qscale, q1.qscale);
        QCOMPARE(q->qscaleMax, q1.qscaleMax);
    }
}

void TestExl2Quant::cancelStops() {
    const int in = 128, out = 64;
    auto W = makeWeights(out, in, 51);
    auto h = prepareHessian(makeHessian(in, 300, 52), in);
    QVERIFY(h.ok());
    int calls = 0;
    auto q = quantizeLinear(W.data(), out, in, *h, mk({{4, 32}}, {4}, {1.0}), [&] { return ++calls >= 2; });
    QVERIFY(!q.ok());
    QVERIFY(q.error().cancelled);
    QCOMPARE(calls, 2);
    // prepareHessian polls inside the factorization (blocks of 128) and the inversion.
    for (int stopAt : {1, 2, 3, 5}) {
        int c = 0;
        auto hc = prepareHessian(
            makeHessian(384, 500, 53), 384, [&] { return ++c >= stopAt; }, 2);
        QVERIFY(!hc.ok());
        QVERIFY(hc.error().cancelled);
    }
}

void TestExl2Quant::readCheckPython() {
    // Several layers packed into a safetensors file with our writer, plus our dequantize() as
    // "<prefix>.weight" in a reference file; tests/exl2/read_check.py decodes the q_* tensors as
    // exllamav2's loader does and must reproduce the reference exactly.
    const QString py = findPython();
    QVERIFY2(!py.isEmpty(), "python3 not found (test.sh installs python3 and python3-numpy)");
    {
        QProcess chk;
        chk.start(py, {"-c", "import numpy"});
        QVERIFY(chk.waitForFinished(scaledMs(60000)));
        QVERIFY2(chk.exitStatus() == QProcess::NormalExit && chk.exitCode() == 0,
                 "python3 cannot import numpy (apt-get install python3-numpy)");
    }
    struct Layer {
        std::string name;
        int in, out;
        QParams qp;
        bool rtn;
    };
    const std::vector<Layer> layers = {
        {"model.layers.0.self_attn.q_proj", 256, 96,
         mk({{8, 32}, {6, 32}, {5, 32}, {4, 32}, {3, 32}, {2, 16}}, {8, 6, 5, 4, 3, 2},
            {0.125, 0.125, 0.125, 0.125, 0.25, 0.25}),
         false},
        {"model.layers.0.self_attn.o_proj", 128, 100, mk({{6, 32}, {5, 64}}, {6, 5}, {0.25, 0.75}), false},
        {"model.layers.0.mlp.down_proj", 96, 64, mk({{3, 64}, {2, 16}}, {3, 2}, {0.5, 0.5}), false},
        {"model.layers.1.mlp.up_proj", 64, 40, mk({{8, 64}}, {8}, {1.0}), false},
        {"lm_head", 128, 70, *headOptions(2), true},
        {"model.layers.1.self_attn.k_proj", 256, 32, attnOptions()[10][1], false},
    };
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    const std::string qdir = dir.path().toStdString() + "/model";
    QDir().mkpath(QString::fromStdString(qdir));
    std::vector<SafetensorsTensorDecl> qdecl, rdecl;
    std::vector<PackedLinear> packed;
    std::vector<std::vector<float>> refs;
    uint32_t seed = 100;
    for (const auto& L : layers) {
        auto W = makeWeights(L.out, L.in, seed++);
        const auto H = makeHessian(L.in, 3 * L.in, seed++);
        Result<QuantizedLinear> q = [&]() -> Result<QuantizedLinear> {
            if (L.rtn) return quantizeLinearRtn(W.data(), L.out, L.in, L.qp, 0, actOrderPerm(H, L.in));
            auto h = prepareHessian(H, L.in);
            if (!h) return h.error();
            return quantizeLinear(W.data(), L.out, L.in, *h, L.qp);
        }();
        QVERIFY2(q.ok(), q.ok() ? "" : q.error().message.c_str());
        packed.push_back(pack(*q));
        refs.push_back(dequantize(*q));
        const auto& p = packed.back();
        const int64_t G = static_cast<int64_t>(p.qScaleMax.size());
        qdecl.push_back({L.name + ".q_weight", DType::I32, {p.qRows, p.outPad}});
        qdecl.push_back({L.name + ".q_scale", DType::I32, {G, p.outPad / 8}});
        qdecl.push_back({L.name + ".q_scale_max", DType::F16, {G}});
        qdecl.push_back({L.name + ".q_groups", DType::I16, {2 * G}});
        qdecl.push_back({L.name + ".q_invperm", DType::I32, {L.in}});
        rdecl.push_back({L.name + ".weight", DType::F32, {L.out, L.in}});
    }
    // A plain (unquantized) tensor in both: the checker compares it as stored.
    qdecl.push_back({"model.norm.weight", DType::F16, {8}});
    rdecl.push_back({"model.norm.weight", DType::F32, {8}});
    const std::vector<uint16_t> norm = {0x3C00, 0x3800, 0xBC00, 0x0001, 0x7BFF, 0x0000, 0x8000, 0x3555};
    auto bytes = [](const auto& v) {
        return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(v[0]));
    };
    {
        SafetensorsWriter w;
        QVERIFY(w.open(qdir + "/output.safetensors", qdecl).ok());
        for (const auto& p : packed) {
            QVERIFY(w.writeTensor(bytes(p.qWeight)).ok());
            QVERIFY(w.writeTensor(bytes(p.qScale)).ok());
            QVERIFY(w.writeTensor(bytes(p.qScaleMax)).ok());
            QVERIFY(w.writeTensor(bytes(p.qGroups)).ok());
            QVERIFY(w.writeTensor(bytes(p.qInvperm)).ok());
        }
        QVERIFY(w.writeTensor(bytes(norm)).ok());
        QVERIFY(w.finish().ok());
    }
    const std::string refPath = dir.path().toStdString() + "/ref.safetensors";
    {
        SafetensorsWriter w;
        QVERIFY(w.open(refPath, rdecl).ok());
        for (const auto& r : refs)
            QVERIFY(w.writeTensor(bytes(r)).ok());
        std::vector<float> nf;
        for (uint16_t h : norm)
            nf.push_back(h2f(h));
        QVERIFY(w.writeTensor(bytes(nf)).ok());
        QVERIFY(w.finish().ok());
    }
    const QString script = QStringLiteral(QZ_TEST_DATA) + "/../exl2/read_check.py";
    auto run = [&](const QStringList& args, QString& outText) {
        QProcess p;
        p.setProcessChannelMode(QProcess::MergedChannels);
        p.start(py, QStringList{script} + args);
        if (!p.waitForFinished(scaledMs(300000))) return -1;
        outText = QString::fromUtf8(p.readAll());
        return p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1;
    };
    QString out;
    int rc = run({QString::fromStdString(qdir), QString::fromStdString(refPath)}, out);
    qInfo("%s", qPrintable(out.trimmed()));
    QCOMPARE(rc, 0);
    QVERIFY(out.contains("7 of 7 tensors equal"));
    // The single-file form works too.
    rc = run({QString::fromStdString(qdir + "/output.safetensors"), QString::fromStdString(refPath)}, out);
    QCOMPARE(rc, 0);

    // The checker can fail: one flipped bit in the first layer's q_weight must be reported.
    {
        QFile f(QString::fromStdString(qdir + "/output.safetensors"));
        QVERIFY(f.open(QIODevice::ReadWrite));
        QByteArray all = f.readAll();
        uint64_t hlen = 0;
        std::memcpy(&hlen, all.constData(), 8);
        const auto header = nlohmann::json::parse(std::string(all.constData() + 8, hlen));
        const int64_t off =
            header["model.layers.0.self_attn.q_proj.q_weight"]["data_offsets"][0].get<int64_t>();
        const qsizetype pos = static_cast<qsizetype>(8 + hlen + off + 4 * 5); // word 5 of row 0
        all[pos] = static_cast<char>(all[pos] ^ 0x10);
        f.seek(0);
        f.write(all);
        f.close();
    }
    rc = run({QString::fromStdString(qdir), QString::fromStdString(refPath)}, out);
    qInfo("%s", qPrintable(out.trimmed()));
    QVERIFY(rc != 0);
    QVERIFY(out.contains("MISMATCH model.layers.0.self_attn.q_proj"));
}

QTEST_GUILESS_MAIN(TestExl2Quant)
#include "test_exl2_quant.moc"
