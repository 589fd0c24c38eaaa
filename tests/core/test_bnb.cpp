// bitsandbytes' NF4 / FP4 (quant/bnb.h).
//
// Expected values come from bitsandbytes' published source and the QLoRA paper, pasted here:
//  * NF4 code values: bitsandbytes/functional.py get_4bit_type("nf4") (= QLoRA appendix E).
//  * FP4 code values: get_4bit_type("fp4") = [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, ...] / 12, which the CUDA
//    decoder dDequantizeFP4Tree (csrc/kernels.cu) writes as 0, 5.208333333e-03, 0.66666667, 1, 0.33333333,
//    0.5, 0.16666667, 0.25.
//  * Decision thresholds: the CUDA encoders dQuantizeNF4 / dQuantizeFP4 (x > threshold -> upper code;
//    NF4's printed to 16 digits, FP4's to 7-8 digits; both are midpoints of neighbouring code values).
//  * Dynamic 8-bit map: create_dynamic_map(signed=True) worked by hand (midpoints of linspace(0.1, 1,
//    2^i + 1) times 10^(i-6), both signs, plus 0 and 1).
//  * Double-quantization footprint: QLoRA §3 "Double Quantization": 32/64 = 0.5 bits per parameter of
//    scales become 8/64 + 32/(64·256) = 0.127 bits.
// Model figures: NF4 (block 64) against RTN absmax 4-bit per group of 64 on the test models, perplexity
// and KL-divergence through infer/evaluate.h (-c 128, 16 chunks of shakespeare-valid.txt). NF4 must have
// a perplexity <= RTN's and a KLD <= RTN's (its perplexity may land below the original's).
#include <QtTest>

#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include "infer/evaluate.h"
#include "jobs/quantize_job.h"
#include "model/model.h"
#include "quant/bnb.h"
#include "quant/simple_quant.h"

using namespace qz;
using namespace qz::bnb;

namespace {

const std::string kData = QZ_TEST_DATA;

// bitsandbytes get_4bit_type("nf4").
const double kNf4Published[16] = {-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                                  -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                                  0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
                                  0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                                  0.7229568362236023, 1.0};
// dDequantizeFP4Tree, codes 0..7 (codes 8..15: the same, negative).
const double kFp4Published[8] = {0.0, 5.208333333e-03, 0.66666667, 1.0, 0.33333333, 0.5, 0.16666667, 0.25};

// dQuantizeNF4: threshold between code i and i+1 (ascending).
const float kNf4Thresholds[15] = {-0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f,
                                  -0.33967943489551544f, -0.23460740596055984f, -0.13791173323988914f,
                                  -0.045525018125772476f, 0.03979014977812767f, 0.1202552504837513f,
                                  0.2035212516784668f, 0.2920137718319893f, 0.3893125355243683f,
                                  0.5016634166240692f, 0.6427869200706482f, 0.8614784181118011f};
// dQuantizeFP4 magnitudes: threshold, code below, code above.
struct Fp4Cut { float t; int below, above; };
const Fp4Cut kFp4Cuts[7] = {{0.00260417f, 0, 1}, {0.0859375f, 1, 6}, {0.20833333f, 6, 7}, {0.29166667f, 7, 4},
                            {0.4166667f, 4, 5},  {0.583333f, 5, 2},  {0.8333333f, 2, 3}};

std::string readText(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// Sorted code values from the published tables.
std::vector<double> sortedLevels(FourBit t) {
    std::vector<double> v;
    if (t == FourBit::Nf4) {
        v.assign(std::begin(kNf4Published), std::end(kNf4Published));
    } else {
        for (double x : kFp4Published) {
            v.push_back(x);
            if (x != 0) v.push_back(-x);
        }
    }
    std::sort(v.begin(), v.end());
    return v;
}

// Gap of the published code values around u (the interval that contains u).
double gapAround(const std::vector<double>& lv, double u) {
    for (size_t i = 0; i + 1 < lv.size(); ++i)
        if (u >= lv[i] && u <= lv[i + 1]) return lv[i + 1] - lv[i];
    return 0;
}

bool isModelTensorToQuantize(const TensorInfo& t) {
    // bitsandbytes replaces the linear layers; embeddings and the LM head stay (transformers' default).
    if (t.shape.size() != 2) return false;
    for (const char* skip : {"embed_tokens", "wte", "wpe", "lm_head"})
        if (t.name.find(skip) != std::string::npos) return false;
    return true;
}

struct Variant {
    double ppl = 0, kld = 0;
};

}  // namespace

class TestBnb : public QObject {
    Q_OBJECT
private slots:
    void nf4CodebookIsPublished() {
        const auto& cb = codebook(FourBit::Nf4);
        for (int i = 0; i < 16; ++i) QCOMPARE(cb[i], static_cast<float>(kNf4Published[i]));
        QCOMPARE(quantize4(FourBit::Nf4, 0.0f), uint8_t(7));
        QCOMPARE(codeValues(QuantSpec{QuantMethod::Nf4}).size(), size_t(16));
        QCOMPARE(codeValues(QuantSpec{QuantMethod::Nf4})[15], 1.0f);
        QVERIFY(codeValues(QuantSpec{QuantMethod::Absmax}).empty());
    }

    void fp4CodebookIsPublished() {
        const auto& cb = codebook(FourBit::Fp4);
        for (int i = 0; i < 8; ++i) {
            QVERIFY2(std::fabs(cb[i] - kFp4Published[i]) < 1e-7, qPrintable(QString::number(i)));
            QVERIFY(std::fabs(cb[i + 8] + kFp4Published[i]) < 1e-7);
        }
        QVERIFY(std::signbit(cb[8]) && cb[8] == 0.0f);  // code 8 is -0
        const auto v = codeValues(QuantSpec{QuantMethod::Fp4});
        QCOMPARE(v.size(), size_t(16));
        QCOMPARE(v[3], 1.0f);
    }

    // The encoders' decision boundaries equal bitsandbytes' CUDA thresholds: the threshold itself goes to
    // the lower code, the next float above it to the upper code.
    void thresholdsMatchKernels() {
        // Ours are the exact midpoints of the code values rounded to float; the kernel's 16-digit literals
        // can round to the neighbouring float, so compare 1e-6 either side.
        for (int i = 0; i < 15; ++i) {
            const float t = kNf4Thresholds[i];
            QCOMPARE(int(quantize4(FourBit::Nf4, t - 1e-6f)), i);
            QCOMPARE(int(quantize4(FourBit::Nf4, t + 1e-6f)), i + 1);
        }
        // dQuantizeFP4's literals are the midpoints rounded to 7-8 digits (0.00260417 for 0.0026041667):
        // ours are the exact midpoints of the code values, so compare 1e-6 either side.
        for (const auto& c : kFp4Cuts) {
            QCOMPARE(int(quantize4(FourBit::Fp4, c.t - 1e-6f)), c.below);
            QCOMPARE(int(quantize4(FourBit::Fp4, c.t + 1e-6f)), c.above);
            QCOMPARE(int(quantize4(FourBit::Fp4, -(c.t + 1e-6f))), c.above + 8);
            QCOMPARE(int(quantize4(FourBit::Fp4, -(c.t - 1e-6f))), c.below + 8);
        }
        QCOMPARE(int(quantize4(FourBit::Fp4, 1.0f)), 3);
        QCOMPARE(int(quantize4(FourBit::Fp4, -1.0f)), 11);
        QCOMPARE(int(quantize4(FourBit::Nf4, -1.0f)), 0);
    }

    void dynamicMapByHand() {
        const auto& m = dynamicMap();
        for (int i = 1; i < 256; ++i) QVERIFY(m[i - 1] < m[i]);
        QCOMPARE(m[127], 0.0f);
        QCOMPARE(m[255], 1.0f);
        // Largest below 1: mean of the last two of linspace(0.1, 1, 65) = (0.9859375 + 1) / 2.
        QVERIFY(std::fabs(m[254] - 0.99296875) < 1e-6);
        QVERIFY(std::fabs(m[0] + 0.99296875) < 1e-6);
        // Smallest magnitude: 10^-6 · (0.1 + 1) / 2.
        QVERIFY(std::fabs(m[128] - 5.5e-7) < 1e-12);
        QVERIFY(std::fabs(m[126] + 5.5e-7) < 1e-12);
        // 2^i values per decade [10^(i-7), 10^(i-6)) on each side (i = 0..6); 1.0 on its own.
        for (int i = 0; i < 7; ++i) {
            const double lo = std::pow(10.0, i - 7), hi = std::pow(10.0, i - 6);
            int pos = 0, neg = 0;
            for (float v : m) {
                pos += v >= lo && v < hi;
                neg += -v >= lo && -v < hi;
            }
            QCOMPARE(pos, 1 << i);
            QCOMPARE(neg, 1 << i);
        }
        // Second decade from the top: 10^-1 · midpoints of linspace(0.1, 1, 33): first (0.1 + 0.128125)/2.
        QVERIFY(std::fabs(m[255 - 64 - 32] - 0.1 * 0.1140625) < 1e-8);
        // Nearest entry, ties to the lower index.
        QCOMPARE(int(quantizeDynamic(0.0f)), 127);
        QCOMPARE(int(quantizeDynamic(1.0f)), 255);
        QCOMPARE(int(quantizeDynamic(-1.0f)), 0);
        QCOMPARE(int(quantizeDynamic(0.999f)), 255);
        QCOMPARE(int(quantizeDynamic(0.995f)), 254);
    }

    // A hand-computed block: absmax 2, u = x / 2.
    void handBlock() {
        const float x[6] = {1.0f, -2.0f, 0.5f, 0.0f, 0.16f, -0.2f};
        FourBitParams p;
        p.blockSize = 64;
        auto q = quantize4bit(x, 6, p);
        QCOMPARE(q.absmax.size(), size_t(1));
        QCOMPARE(q.absmax[0], 2.0f);
        // u = 0.5 -> nearest of 0.4407 (d 0.0593) and 0.5626 (d 0.0626): code 12. u = -1 -> 0. u = 0.25 ->
        // 0.2461 (code 10). u = 0 -> 7. u = 0.08 -> 0.0796 (code 8). u = -0.1 -> -0.0911 (code 6).
        const uint8_t want[6] = {12, 0, 10, 7, 8, 6};
        for (int i = 0; i < 6; ++i) QCOMPARE(int(q.codes[i]), int(want[i]));
        std::vector<float> back(6);
        dequantize4bit(q, p, 6, back.data());
        QCOMPARE(back[0], static_cast<float>(kNf4Published[12]) * 2.0f);
        QCOMPARE(back[1], -2.0f);
        QCOMPARE(back[3], 0.0f);
        // FP4: u = 0.5 -> 0.5 (code 5); -1 -> code 11; 0.25 -> code 7; 0 -> 0; 0.08 < 0.0859375 -> 0.0052
        // (code 1); -0.1 -> -0.1667 (code 6 + sign 8 = 14).
        p.type = FourBit::Fp4;
        q = quantize4bit(x, 6, p);
        const uint8_t wantFp4[6] = {5, 11, 7, 0, 1, 14};
        for (int i = 0; i < 6; ++i) QCOMPARE(int(q.codes[i]), int(wantFp4[i]));
        // Packing: first value in the high nibble; the odd tail padded with the code of 0.
        const auto packed = pack4bit(q, FourBit::Fp4);
        QCOMPARE(packed.size(), size_t(3));
        QCOMPARE(int(packed[0]), (5 << 4) | 11);
        QCOMPARE(int(packed[2]), (1 << 4) | 14);
        const float y[3] = {1.0f, 1.0f, 1.0f};
        auto q3 = quantize4bit(y, 3, FourBitParams{});
        const auto p3 = pack4bit(q3, FourBit::Nf4);
        QCOMPARE(int(p3[1]), (15 << 4) | 7);
        // All-zero block: the code of 0.0, decoded 0.
        const float z[4] = {0, 0, 0, 0};
        auto qz4 = quantize4bit(z, 4, FourBitParams{});
        QCOMPARE(int(qz4.codes[2]), 7);
    }

    // Every value decodes within half the gap between the two published code values around x/absmax,
    // relative to its block's absmax; the block's extreme value is reproduced exactly.
    void roundTripWithinHalfStep() {
        std::mt19937 rng(7);
        std::normal_distribution<float> nd(0.0f, 0.02f);
        const int64_t n = 64 * 37 + 23;  // a partial last block
        std::vector<float> x(n);
        for (auto& v : x) v = nd(rng);
        x[100] = 0.5f;  // an outlier inside block 1
        for (FourBit t : {FourBit::Nf4, FourBit::Fp4}) {
            for (int bs : {64, 128}) {
                FourBitParams p;
                p.type = t;
                p.blockSize = bs;
                const auto lv = sortedLevels(t);
                std::vector<float> y(n);
                std::vector<int8_t> codes(n);
                fakeQuantize4bit(p, x.data(), n, y.data(), codes.data());
                const int64_t nb = blockCount(n, bs);
                QCOMPARE(nb, (n + bs - 1) / bs);
                for (int64_t b = 0; b < nb; ++b) {
                    const int64_t b0 = b * bs, b1 = std::min(n, b0 + bs);
                    double amax = 0;
                    int64_t arg = b0;
                    for (int64_t i = b0; i < b1; ++i)
                        if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), arg = i;
                    QCOMPARE(y[arg], x[arg]);
                    for (int64_t i = b0; i < b1; ++i) {
                        const double u = x[i] / amax;
                        const double bound = amax * gapAround(lv, u) / 2 * (1 + 1e-5) + 1e-9;
                        if (std::fabs(y[i] - x[i]) > bound)
                            QFAIL(qPrintable(QString("value %1 of block %2: |%3 - %4| > %5")
                                                 .arg(i).arg(b).arg(y[i]).arg(x[i]).arg(bound)));
                        QVERIFY(codes[i] >= 0 && codes[i] < 16);
                    }
                }
            }
        }
    }

    // Double quantization: offset = mean of the block absmax; each decoded scale is within half the
    // largest gap of the dynamic map (0.9/64/2, the top decade) of its nested block's absmax2.
    void doubleQuantScaleError() {
        std::mt19937 rng(11);
        std::lognormal_distribution<float> scaleDist(-4.0f, 0.7f);
        std::normal_distribution<float> nd(0.0f, 1.0f);
        const int bs = 64;
        const int64_t nb = 600;  // 3 nested blocks (256, 256, 88)
        std::vector<float> x(static_cast<size_t>(nb * bs));
        for (int64_t b = 0; b < nb; ++b) {
            const float s = scaleDist(rng);
            for (int i = 0; i < bs; ++i) x[b * bs + i] = s * nd(rng);
        }
        FourBitParams p;
        p.doubleQuant = true;
        const auto q = quantize4bit(x.data(), static_cast<int64_t>(x.size()), p);
        QCOMPARE(q.absmax.size(), size_t(nb));
        QCOMPARE(q.qabsmax.size(), size_t(nb));
        QCOMPARE(q.absmax2.size(), size_t(3));
        double sum = 0;
        for (int64_t b = 0; b < nb; ++b) {
            double a = 0;
            for (int i = 0; i < bs; ++i) a = std::max(a, double(std::fabs(x[b * bs + i])));
            QCOMPARE(q.absmax[b], float(a));
            sum += a;
        }
        QVERIFY(std::fabs(q.offset - sum / nb) <= 1e-6 * std::fabs(sum / nb));
        const double halfGap = 0.9 / 64 / 2;
        double relSum = 0;
        for (int64_t b = 0; b < nb; ++b) {
            const int64_t k = b / 256;
            double a2 = 0;
            for (int64_t c = k * 256; c < std::min<int64_t>(nb, (k + 1) * 256); ++c)
                a2 = std::max(a2, std::fabs(double(q.absmax[c]) - q.offset));
            QCOMPARE(q.absmax2[k], float(a2));
            const double err = std::fabs(double(q.scales[b]) - q.absmax[b]);
            QVERIFY2(err <= a2 * halfGap * (1 + 1e-4) + 1e-6 * q.absmax[b], qPrintable(QString("block %1: %2").arg(b).arg(err)));
            relSum += err / q.absmax[b];
        }
        qInfo("double quant: mean relative scale error %.4f %% (lognormal scales, sigma 0.7)", 100 * relSum / nb);
        // Without double quantization the scales are the exact absmax.
        const auto q1 = quantize4bit(x.data(), static_cast<int64_t>(x.size()), FourBitParams{});
        QVERIFY(q1.scales == q1.absmax);
        QVERIFY(q1.qabsmax.empty());
    }

    void footprint() {
        FourBitParams p;
        // 4096 × 4096: 8 388 608 code bytes, 262 144 blocks of 64.
        const int64_t n = 4096ll * 4096;
        QCOMPARE(fourBitBytes(n, p), uint64_t(8388608 + 4 * 262144));
        p.doubleQuant = true;
        QCOMPARE(fourBitBytes(n, p), uint64_t(8388608 + 262144 + 4 * 1024 + 4));
        // QLoRA: the scales cost 8/64 + 32/(64·256) = 0.127 bits per parameter (vs 0.5).
        const double extraBits = 8.0 * double(fourBitBytes(n, p) - n / 2) / double(n);
        QVERIFY(std::fabs(extraBits - 0.127) < 0.001);
        p.doubleQuant = false;
        QCOMPARE(8.0 * double(fourBitBytes(n, p) - n / 2) / double(n), 0.5);
        // Odd sizes: 65 values -> 33 bytes of codes, 2 blocks.
        QCOMPARE(fourBitBytes(65, p), uint64_t(33 + 8));
        p.doubleQuant = true;
        QCOMPARE(fourBitBytes(65, p), uint64_t(33 + 2 + 4 + 4));
        // Through the spec API.
        QuantSpec s;
        s.method = QuantMethod::Nf4;
        s.blockSize = 128;
        QCOMPARE(quantizedBytes(s, 256, 512), uint64_t(65536 + 4 * 1024));
    }

    void specApi() {
        QCOMPARE(parseMethod("nf4"), std::optional<QuantMethod>(QuantMethod::Nf4));
        QCOMPARE(parseMethod("fp4"), std::optional<QuantMethod>(QuantMethod::Fp4));
        QCOMPARE(parseMethod("llm-int8"), std::optional<QuantMethod>(QuantMethod::LlmInt8));
        QCOMPARE(std::string(methodName(QuantMethod::Nf4)), std::string("nf4"));
        QCOMPARE(std::string(methodName(QuantMethod::LlmInt8)), std::string("llm-int8"));
        QuantSpec s;
        s.method = QuantMethod::Fp4;
        s.bits = 99;  // ignored by the 4-bit formats
        QVERIFY(s.validate().ok());
        s.blockSize = 48;
        QVERIFY(!s.validate().ok());
        s.blockSize = 8192;
        QVERIFY(!s.validate().ok());
        s.blockSize = 32;
        s.doubleQuant = true;
        QVERIFY(s.validate().ok());
        QCOMPARE(s.describe(), std::string("fp4 block 32 + double quant"));
        QCOMPARE(effectiveBits(s), 4);
        // quantizeDequantize dispatches to the same code as bnb::fakeQuantize4bit.
        std::vector<float> x(300), a(300), b(300);
        for (int i = 0; i < 300; ++i) x[i] = std::sin(0.37f * i) * (1 + i % 7);
        quantizeDequantize(s, x.data(), 3, 100, a.data());
        FourBitParams p{FourBit::Fp4, 32, true};
        fakeQuantize4bit(p, x.data(), 300, b.data(), nullptr);
        QVERIFY(a == b);
    }

    // The job's per-tensor analysis hands out the 4-bit codes (raw-code view) and decodes with the code book.
    void analyzeTensorCodes() {
        auto m = openModel(kData + "/models/bard-llama");
        QVERIFY(m);
        const Model& mod = **m;
        const auto* t = mod.find("model.layers.0.self_attn.q_proj.weight");
        QVERIFY(t);
        const size_t idx = static_cast<size_t>(t - mod.tensors.data());
        QuantSpec s;
        s.method = QuantMethod::Nf4;
        std::vector<float> deq, orig;
        std::vector<int8_t> codes;
        auto r = analyzeTensor(mod, idx, s, 50, &deq, &codes, &orig);
        QVERIFY2(r, r ? "" : r.error().message.c_str());
        QCOMPARE(r->bytesAfter, uint64_t(256 * 256 / 2 + 4 * 1024));
        QCOMPARE(r->bitsPerWeight, 4.5);
        const auto cv = codeValues(s);
        for (size_t b = 0; b < orig.size() / 64; ++b) {
            float amax = 0;
            for (size_t i = b * 64; i < b * 64 + 64; ++i) amax = std::max(amax, std::fabs(orig[i]));
            for (size_t i = b * 64; i < b * 64 + 64; ++i) {
                QVERIFY(codes[i] >= 0 && codes[i] < 16);
                QCOMPARE(deq[i], cv[codes[i]] * amax);
            }
        }
    }

    // Hostile values never crash or write outside: NaN / inf inside blocks.
    void nonFiniteInput() {
        std::vector<float> x(200, 0.5f), y(200);
        std::vector<int8_t> c(200);
        x[3] = NAN;
        x[70] = INFINITY;
        x[150] = -INFINITY;
        for (FourBit t : {FourBit::Nf4, FourBit::Fp4})
            for (bool dq : {false, true}) {
                FourBitParams p{t, 64, dq};
                fakeQuantize4bit(p, x.data(), 200, y.data(), c.data());
                for (int8_t v : c) QVERIFY(v >= 0 && v < 16);
            }
        // A finite block next to them still decodes exactly at its absmax.
        FourBitParams p;
        fakeQuantize4bit(p, x.data(), 200, y.data(), nullptr);
        QCOMPARE(y[199], 0.5f);
    }

    // NF4 at block 64 is at least as good as RTN absmax 4-bit per group of 64 on both test models
    // (perplexity and KLD against the unquantized model). FP4 and double quantization are measured.
    void modelsNf4VsRtn_data() {
        QTest::addColumn<QString>("model");
        QTest::newRow("bard-llama") << "bard-llama";
        QTest::newRow("bard-gpt2") << "bard-gpt2";
    }
    void modelsNf4VsRtn() {
        QFETCH(QString, model);
        auto m = openModel(kData + "/models/" + model.toStdString());
        QVERIFY(m);
        const Model& mod = **m;
        const std::string text = readText(kData + "/text/shakespeare-valid.txt");
        EvalParams ep;
        ep.nCtx = 128;
        ep.nChunks = 16;
        KldBase base;
        auto pr = evaluatePerplexity(mod, text, ep, {}, nullptr, &base);
        QVERIFY2(pr, pr ? "" : pr.error().message.c_str());

        auto run = [&](const QuantSpec& spec, uint64_t* bytes) -> Variant {
            WeightOverrides ov;
            *bytes = 0;
            for (const TensorInfo& t : mod.tensors) {
                if (!isModelTensorToQuantize(t)) continue;
                auto w = readTensorF32(mod, t);
                if (!w) return {};
                std::vector<float> y(w->size());
                quantizeDequantize(spec, w->data(), t.rows(), t.cols(), y.data());
                *bytes += quantizedBytes(spec, t.rows(), t.cols());
                ov[t.name] = std::move(y);
            }
            Variant v;
            auto q = evaluatePerplexity(mod, text, ep, {}, &ov);
            auto k = evaluateKlDivergence(mod, base, ep, {}, &ov);
            if (!q || !k) return {};
            v.ppl = q->ppl;
            v.kld = k->meanKld;
            return v;
        };
        QuantSpec rtn{QuantMethod::Absmax, 4, Granularity::Group, 64};
        QuantSpec nf4;
        nf4.method = QuantMethod::Nf4;
        QuantSpec nf4dq = nf4;
        nf4dq.doubleQuant = true;
        QuantSpec fp4 = nf4;
        fp4.method = QuantMethod::Fp4;
        uint64_t bR = 0, bN = 0, bD = 0, bF = 0;
        const Variant r = run(rtn, &bR), n = run(nf4, &bN), d = run(nf4dq, &bD), f = run(fp4, &bF);
        QVERIFY(r.ppl > 0 && n.ppl > 0 && d.ppl > 0 && f.ppl > 0);
        qInfo("%s (-c 128, 16 chunks): base PPL %.4f | RTN absmax 4-bit g64: PPL %.4f KLD %.6f (%llu B) | NF4 b64: "
              "PPL %.4f KLD %.6f (%llu B) | NF4 b64 + DQ: PPL %.4f KLD %.6f (%llu B) | FP4 b64: PPL %.4f KLD %.6f",
              qPrintable(model), pr->ppl, r.ppl, r.kld, (unsigned long long)bR, n.ppl, n.kld,
              (unsigned long long)bN, d.ppl, d.kld, (unsigned long long)bD, f.ppl, f.kld);
        // "At least as good": lower or equal perplexity, and no further from the original distribution.
        QVERIFY(n.kld <= r.kld);
        QVERIFY(n.ppl <= r.ppl);
        QVERIFY(d.kld <= r.kld);
        // Same codes, 4-byte scales -> 1-byte scales: smaller, and only slightly worse.
        QVERIFY(bD < bN);
        QVERIFY(d.kld <= 1.25 * n.kld + 1e-5);
    }
};

QTEST_GUILESS_MAIN(TestBnb)
#include "test_bnb.moc"
