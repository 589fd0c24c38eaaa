// Activation encoding and quantized dot products against llama.cpp's own CPU backend: the prebuilt
// ggml-cpu libraries that tests/llama/setup.sh installs with node-llama-cpp (npm, nothing built from
// source). llama.cpp ships one library per x86 level; we dlopen two and read their type_traits_cpu
// (ggml_get_type_traits_cpu: from_float, vec_dot, vec_dot_type):
//   * "haswell" (AVX2, FMA, F16C): the Q8_0 / Q8_1 AVX encoder and the AVX2 dot kernels;
//   * "x64" (baseline x86-64, no AVX): ggml's reference encoder.
// Checks:
//   * vecDotType equals ggml-cpu's vec_dot_type for every weight type;
//   * quantizeActivationRowWith gives the same bytes as the matching library's from_float for every
//     vec-dot type, on random data and on edge blocks (zeros, ±large, ±FLT_MAX, denormals, exact ties);
//   * vecDot and vecDotScalar agree with ggml-cpu's vec_dot for every weight type we quantize, on weights
//     made by our own quantizers, within the bound derived below; quantizedLinear equals vecDot.
// Without the libraries (tests/llama not set up) the test reports a skip, never a pass; with
// QZ_REQUIRE_ALL=1 or CI=true (test.sh) it fails.
//
// The bound. Every kernel (ours and ggml's, scalar or SIMD) computes per block an exact integer sum,
// turns it into a float term T_b with a few roundings (scale products, int -> float, the multiply;
// at most 8 counting SIMD lane reductions inside a block), and adds the nb terms in some order. The
// standard bound for a sum of nb terms in any order gives |computed − exact| <= (nb + 8)·u·S, u = 2^-24,
// S = Σ_b |T_b|, to first order. Two implementations differ by at most twice that:
//     |ours − ggml| <= 2·(nb + 8)·2^-24·S.
// S is bounded without the code under test: with w_i from ggml's dequantize_row_* and a_i the decoded
// activation, |T_b| <= Σ_{i in b} |w_i|·|a_i| for the symmetric types. For types with a min (Q4_1, Q5_1,
// Q2_K, Q4_K, Q5_K) the kernels add the scale and min parts separately, and ggml's AVX2 TQ1_0 / TQ2_0
// kernels multiply by the unsigned trit t + 1 and subtract Σ y (its float terms then reach
// Σ (|t + 1| + 1)·|y|, far above Σ |t|·|y| when many trits are 0). For these S = Σ (|w_i − m_i| +
// (1 + 2^-10)·|m_i|)·|a_i|, m_i = the block decoded with its quant bits zeroed (the min part, or −d for
// the ternary types; 2^-10 covers the fp16 rounding of Q8_1's stored sum). IQ1_S / IQ1_M add the ±1/8 delta
// separately: |g| + 1/8 <= (9/7)·|g ± 1/8| for a grid value g in {−1, 0, 1}, so S gets a factor 9/7 there
// (rounded up to 1.3). F16 / BF16 / F32 have block size 1 (nb = n): every product is one term.
#include <QtTest>

#include <dlfcn.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include "common/fp16.h"
#include "ggml/block_types.h"
#include "ggml/quantize.h"
#include "ggml/vec_dot.h"

using namespace qz;
using ggml::ActivationEncoder;

namespace {

const std::string kBinDir =
    std::string(QZ_TEST_DATA) + "/../llama/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/";

struct TraitsCpu { // ggml-cpu.h struct ggml_type_traits_cpu
    void (*fromFloat)(const float*, void*, int64_t);
    void (*vecDot)(int, float*, size_t, const void*, size_t, const void*, size_t, int);
    int vecDotType;
    int64_t nrows;
};
using GetTraitsFn = const TraitsCpu* (*)(int);
using RowFn = void (*)(const void*, float*, int64_t);

struct CpuLib {
    void* handle = nullptr;
    GetTraitsFn traits = nullptr;
    bool ok() const { return handle && traits; }
};

CpuLib openCpu(const char* variant) {
    CpuLib l;
    const std::string path = kBinDir + "libggml-cpu-" + variant + ".so";
    if (!std::filesystem::exists(path)) return l;
    l.handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!l.handle) return l;
    l.traits = reinterpret_cast<GetTraitsFn>(dlsym(l.handle, "ggml_get_type_traits_cpu"));
    if (auto init = reinterpret_cast<void (*)()>(dlsym(l.handle, "ggml_cpu_init"))) init();
    return l;
}

CpuLib& haswell() {
    static CpuLib l = openCpu("haswell");
    return l;
}
CpuLib& baseline() {
    static CpuLib l = openCpu("x64");
    return l;
}
void* baseLib() {
    static void* h = [] {
        const std::string p = kBinDir + "libggml-base.so";
        return std::filesystem::exists(p) ? dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL) : nullptr;
    }();
    return h;
}

bool cpuHasAvx2() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

// ggml's dequantize_row_<type> from libggml-base (F16 / BF16 / F32 decoded here).
void ggmlDecode(DType t, const uint8_t* src, float* dst, int64_t n) {
    if (t == DType::F32) {
        std::memcpy(dst, src, n * 4);
        return;
    }
    if (t == DType::F16 || t == DType::BF16) {
        for (int64_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, src + 2 * i, 2);
            dst[i] = t == DType::F16 ? fp16ToFp32(h) : bf16ToFp32(h);
        }
        return;
    }
    std::string name(dtypeName(t));
    for (auto& c : name)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (name.size() > 2 && name.substr(name.size() - 2) == "_k") name[name.size() - 1] = 'K';
    auto fn = reinterpret_cast<RowFn>(dlsym(baseLib(), ("dequantize_row_" + name).c_str()));
    QVERIFY2(fn, qPrintable(QString::fromStdString("dequantize_row_" + name + " missing")));
    fn(src, dst, n);
}

// Activation rows decoded by their trivial formulas.
std::vector<float> decodeActivation(DType vd, const uint8_t* p, int64_t n) {
    std::vector<float> a(n);
    for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        switch (vd) {
        case DType::F32:
            std::memcpy(&a[i], p + 4 * i, 4);
            break;
        case DType::F16:
            std::memcpy(&h, p + 2 * i, 2);
            a[i] = fp16ToFp32(h);
            break;
        case DType::BF16:
            std::memcpy(&h, p + 2 * i, 2);
            a[i] = bf16ToFp32(h);
            break;
        case DType::Q8_0: {
            const uint8_t* b = p + (i / 32) * 34;
            std::memcpy(&h, b, 2);
            a[i] = fp16ToFp32(h) * static_cast<int8_t>(b[2 + i % 32]);
            break;
        }
        case DType::Q8_1: {
            const uint8_t* b = p + (i / 32) * 36;
            std::memcpy(&h, b, 2);
            a[i] = fp16ToFp32(h) * static_cast<int8_t>(b[4 + i % 32]);
            break;
        }
        case DType::Q8_K: {
            const uint8_t* b = p + (i / 256) * 292;
            float d;
            std::memcpy(&d, b, 4);
            a[i] = d * static_cast<int8_t>(b[4 + i % 256]);
            break;
        }
        default:
            break;
        }
    }
    return a;
}

// Byte ranges holding the quant bits of one block, for the types whose kernels add a min or an offset
// part separately.
std::vector<std::pair<int, int>> quantBitRanges(DType t) {
    switch (t) {
    case DType::Q4_1:
        return {{4, 16}};
    case DType::Q5_1:
        return {{4, 4}, {8, 16}};
    case DType::Q2_K:
        return {{16, 64}};
    case DType::Q4_K:
        return {{16, 128}};
    case DType::Q5_K:
        return {{16, 32}, {48, 128}};
    case DType::TQ1_0:
        return {{0, 52}};
    case DType::TQ2_0:
        return {{0, 64}};
    default:
        return {};
    }
}

// S of the header comment for one weight row and one encoded activation row.
double magnitudeSum(DType t, const uint8_t* wRow, const uint8_t* act, int64_t n) {
    std::vector<float> w(n), m(n, 0.f);
    ggmlDecode(t, wRow, w.data(), n);
    const auto ranges = quantBitRanges(t);
    if (!ranges.empty()) {
        const size_t bytes = *bytesFor(t, n);
        std::vector<uint8_t> z(wRow, wRow + bytes);
        const size_t bs = traits(t).typeSize;
        for (size_t b = 0; b < bytes / bs; ++b)
            for (auto [off, len] : ranges)
                std::memset(z.data() + b * bs + off, 0, len);
        ggmlDecode(t, z.data(), m.data(), n);
    }
    const auto a = decodeActivation(ggml::vecDotType(t), act, n);
    double s = 0;
    for (int64_t i = 0; i < n; ++i)
        s += (std::fabs(double(w[i]) - m[i]) + (1 + std::ldexp(1.0, -10)) * std::fabs(double(m[i]))) *
             std::fabs(double(a[i]));
    if (t == DType::IQ1_S || t == DType::IQ1_M) s *= 1.3;
    return s;
}

double dotBound(DType t, int64_t n, double S) {
    const int64_t nb = n / traits(t).blockSize;
    return 2.0 * double(nb + 8) * std::ldexp(1.0, -24) * S;
}

// Activation test rows (n a multiple of 256): flavour selects the edge case.
std::vector<float> makeActivations(int64_t n, int flavour, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::student_t_distribution<float> td(2.0f);
    std::vector<float> x(n);
    for (int64_t i = 0; i < n; ++i) {
        const int64_t blk = i / 32;
        switch (flavour) {
        case 0:
            x[i] = nd(rng);
            break;
        case 1:
            x[i] = td(rng) * 3.f;
            break; // heavy tails
        case 2:
            x[i] = (i / 256) % 2 ? 0.f : nd(rng);
            break; // all-zero blocks of 32 and 256
        case 3:
            x[i] = (blk % 2 ? 1e30f : -3e37f) * nd(rng);
            break; // large
        case 4:
            x[i] = (i % 32 == 5) ? (blk % 2 ? FLT_MAX : -FLT_MAX) : nd(rng) * 1e37f;
            break;
        case 5:
            x[i] = nd(rng) * 1e-39f;
            break; // blocks of denormals only
        case 6:
            x[i] = (i % 32 == 0) ? 1e-3f : nd(rng) * 1e-40f;
            break; // denormals beside a normal max
        case 7: {  // exact ties: max 127·2^k, values (m + 0.5)·2^k
            const float scale = std::ldexp(1.f, int(blk % 9) - 4);
            const int m = static_cast<int>(rng() % 253) - 126;
            x[i] = (i % 32 == 0 ? 127.f : float(m) + 0.5f) * scale * ((i % 64) == 0 ? -1.f : 1.f);
            break;
        }
        case 8:
            x[i] = std::ldexp(nd(rng), int(rng() % 60) - 30);
            break; // wide dynamic range
        default:
            x[i] = std::ldexp(nd(rng), int(rng() % 24) - 12);
            break; // within fp16 scales
        }
    }
    return x;
}
constexpr int kFlavours = 10;
// Flavours for the dot products: the others overflow Q8_0's fp16 scale (ggml's result is then inf/NaN too).
constexpr int kDotFlavours[] = {0, 1, 2, 6, 7, 9};

const DType kWeightTypes[] = {DType::F32,   DType::F16,     DType::BF16,  DType::Q4_0,    DType::Q4_1,
                              DType::Q5_0,  DType::Q5_1,    DType::Q8_0,  DType::Q2_K,    DType::Q3_K,
                              DType::Q4_K,  DType::Q5_K,    DType::Q6_K,  DType::IQ4_NL,  DType::IQ4_XS,
                              DType::TQ1_0, DType::TQ2_0,   DType::MXFP4, DType::IQ2_XXS, DType::IQ2_XS,
                              DType::IQ2_S, DType::IQ3_XXS, DType::IQ3_S, DType::IQ1_S,   DType::IQ1_M};

// nRows weight rows of nIn elements quantized by our own quantizers (with an imatrix: IQ2_XXS, IQ2_XS
// and IQ1_S need one).
std::vector<uint8_t> makeWeights(DType t, int64_t nRows, int64_t nIn, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.f, 0.02f);
    std::vector<float> w(nRows * nIn), im(nIn);
    for (int64_t i = 0; i < nRows * nIn; ++i)
        w[i] = nd(rng) + ((i % 97) == 0 ? 0.3f : 0.f);
    std::uniform_real_distribution<float> ud(0.1f, 2.f);
    for (auto& v : im)
        v = ud(rng);
    std::vector<uint8_t> out(nRows * *bytesFor(t, nIn));
    if (t == DType::F32)
        std::memcpy(out.data(), w.data(), out.size());
    else if (!ggml::quantizeTensor(t, w.data(), nRows, nIn, im.data(), out.data(), 1).ok())
        out.clear();
    return out;
}

} // namespace

class TestVecDot : public QObject {
    Q_OBJECT
  private slots:
    void initTestCase();
    void vecDotTypesMatchGgml();
    void activationBytesMatchGgml_data();
    void activationBytesMatchGgml();
    void vecDotMatchesGgml_data();
    void vecDotMatchesGgml();
    void exactDotsMatchGgmlBitwise_data();
    void exactDotsMatchGgmlBitwise();
    void quantizedLinearMatchesGgml_data();
    void quantizedLinearMatchesGgml();
    void quantizedLinearPanelsAndThreads();
    void quantizedLinearTiles_data();
    void quantizedLinearTiles();
    void refusesBadSizes();
};

void TestVecDot::initTestCase() {
    if (!haswell().ok() || !baseline().ok() || !baseLib()) {
        const QString why =
            QString("llama.cpp's ggml-cpu libraries not available (%1; run tests/llama/setup.sh): "
                    "nothing compared")
                .arg(QString::fromStdString(kBinDir));
        if (qgetenv("QZ_REQUIRE_ALL") == "1" || qgetenv("CI") == "true")
            QFAIL(qPrintable(why + " (QZ_REQUIRE_ALL=1 or CI=true: required)"));
        QSKIP(qPrintable(why));
    }
    // The haswell library runs AVX2/FMA/F16C code: a CPU without them cannot serve as the reference.
    QVERIFY2(cpuHasAvx2(), "this CPU lacks AVX2/FMA/F16C, which llama.cpp's haswell library needs");
    qInfo("vecDot kernels on this CPU: Q4_K %s, Q8_0 %s, IQ2_XXS %s", ggml::vecDotKernelName(DType::Q4_K),
          ggml::vecDotKernelName(DType::Q8_0), ggml::vecDotKernelName(DType::IQ2_XXS));
    qInfo("quantizedLinear kernels on this CPU: Q4_K %s, Q6_K %s, Q8_0 %s, IQ2_XXS %s",
          ggml::quantizedLinearKernelName(DType::Q4_K), ggml::quantizedLinearKernelName(DType::Q6_K),
          ggml::quantizedLinearKernelName(DType::Q8_0), ggml::quantizedLinearKernelName(DType::IQ2_XXS));
}

void TestVecDot::vecDotTypesMatchGgml() {
    for (DType t : kWeightTypes) {
        QVERIFY(ggml::vecDotSupported(t));
        const TraitsCpu* tr = haswell().traits(traits(t).ggmlId);
        QVERIFY(tr && tr->vecDot);
        const DType vd = ggml::vecDotType(t);
        QVERIFY2(vd != DType::Count, qPrintable(QString::fromStdString(std::string(dtypeName(t)))));
        QCOMPARE(traits(vd).ggmlId, tr->vecDotType);
        QCOMPARE(baseline().traits(traits(t).ggmlId)->vecDotType, tr->vecDotType);
        QCOMPARE(ggml::vecDotType(vd), vd);
    }
    QCOMPARE(ggml::vecDotType(DType::Q8_K), DType::Q8_K);
    QCOMPARE(ggml::vecDotType(DType::I32), DType::Count);
    QVERIFY(!ggml::vecDotSupported(DType::Q8_K));
}

void TestVecDot::activationBytesMatchGgml_data() {
    QTest::addColumn<QString>("type");
    QTest::addColumn<bool>("avx");
    for (const char* t : {"Q8_0", "Q8_1", "Q8_K", "F16", "BF16", "F32"}) {
        QTest::newRow((std::string(t) + " avx").c_str()) << QString(t) << true;
        QTest::newRow((std::string(t) + " reference").c_str()) << QString(t) << false;
    }
}

void TestVecDot::activationBytesMatchGgml() {
    QFETCH(QString, type);
    QFETCH(bool, avx);
    const DType vd = *dtypeFromName(type.toStdString());
    const CpuLib& lib = avx ? haswell() : baseline();
    const TraitsCpu* tr = lib.traits(traits(vd).ggmlId);
    QVERIFY(tr && tr->fromFloat);
    const ActivationEncoder enc = avx ? ActivationEncoder::Avx : ActivationEncoder::Reference;
    const int64_t n = 1024;
    const size_t bytes = ggml::vecDotRowBytes(vd, n);
    QCOMPARE(bytes, size_t(*bytesFor(vd, n)));
    for (int flavour = 0; flavour < kFlavours; ++flavour) {
        for (uint32_t seed : {1u, 2u}) {
            const auto x = makeActivations(n, flavour, seed + 10 * flavour);
            // ggml leaves the bsums of an all-zero Q8_K block unwritten; we write zeros: start both at 0.
            std::vector<uint8_t> ours(bytes, 0x5A), theirs(bytes, vd == DType::Q8_K ? 0 : 0x5A);
            QVERIFY(ggml::quantizeActivationRowWith(enc, vd, x.data(), ours.data(), n));
            tr->fromFloat(x.data(), theirs.data(), n);
            if (ours != theirs) {
                size_t i = 0;
                while (ours[i] == theirs[i])
                    ++i;
                QFAIL(qPrintable(QString("%1 flavour %2 seed %3: first difference at byte %4: %5 vs ggml %6")
                                     .arg(QTest::currentDataTag())
                                     .arg(flavour)
                                     .arg(seed)
                                     .arg(i)
                                     .arg(ours[i])
                                     .arg(theirs[i])));
            }
        }
    }
    // the default encoder is the one llama.cpp uses on this CPU (AVX here)
    QCOMPARE(ggml::defaultActivationEncoder(), ActivationEncoder::Avx);
}

void TestVecDot::vecDotMatchesGgml_data() {
    QTest::addColumn<QString>("type");
    for (DType t : kWeightTypes)
        QTest::newRow(std::string(dtypeName(t)).c_str()) << QString::fromStdString(std::string(dtypeName(t)));
}

void TestVecDot::vecDotMatchesGgml() {
    QFETCH(QString, type);
    const DType t = *dtypeFromName(type.toStdString());
    const DType vd = ggml::vecDotType(t);
    const TraitsCpu* tr = haswell().traits(traits(t).ggmlId);
    const TraitsCpu* trVd = haswell().traits(traits(vd).ggmlId);
    QVERIFY(tr && tr->vecDot && trVd && trVd->fromFloat);
    double worst = 0; // largest |difference| / bound seen
    for (int64_t nIn : {int64_t(256), int64_t(4096), int64_t(256 * 11)}) {
        const int64_t rows = 6;
        const auto W = makeWeights(t, rows, nIn, 7 + uint32_t(nIn));
        QVERIFY2(!W.empty(), "our quantizer failed");
        const size_t rowBytes = *bytesFor(t, nIn);
        for (int flavour : kDotFlavours) {
            const auto x = makeActivations(nIn, flavour, 3 + uint32_t(flavour));
            std::vector<uint8_t> act(ggml::vecDotRowBytes(t, nIn)), ggmlAct(act.size(), 0);
            QVERIFY(ggml::quantizeActivationRow(t, x.data(), act.data(), nIn));
            trVd->fromFloat(x.data(), ggmlAct.data(), nIn);
            QVERIFY(act == ggmlAct);
            for (int64_t r = 0; r < rows; ++r) {
                const uint8_t* w = W.data() + r * rowBytes;
                float ref = 0;
                tr->vecDot(int(nIn), &ref, 0, w, 0, act.data(), 0, 1);
                const double bound = dotBound(t, nIn, magnitudeSum(t, w, act.data(), nIn));
                // The block types' kernels add one exact integer per block with the same float expression
                // whatever the instruction set: AVX2 and scalar agree bit for bit there.
                if (traits(t).blockSize > 1)
                    QCOMPARE(floatBits(ggml::vecDot(t, nIn, w, act.data())),
                             floatBits(ggml::vecDotScalar(t, nIn, w, act.data())));
                for (bool scalar : {false, true}) {
                    const float v = scalar ? ggml::vecDotScalar(t, nIn, w, act.data())
                                           : ggml::vecDot(t, nIn, w, act.data());
                    const double diff = std::fabs(double(v) - ref);
                    if (!(diff <= bound))
                        QFAIL(qPrintable(
                            QString("%1 n=%2 flavour %3 row %4 (%5): %6 vs ggml %7, |diff| %8 > bound %9")
                                .arg(type)
                                .arg(nIn)
                                .arg(flavour)
                                .arg(r)
                                .arg(scalar ? "scalar" : ggml::vecDotKernelName(t))
                                .arg(double(v), 0, 'g', 9)
                                .arg(double(ref), 0, 'g', 9)
                                .arg(diff)
                                .arg(bound)));
                    if (bound > 0) worst = std::max(worst, diff / bound);
                }
            }
        }
    }
    qInfo("%s: largest |ours - ggml| = %.3g of the bound", qPrintable(type), worst);
}

// The integer part of every block product is exact (ours and ggml's): with every scale a power of two
// and activations that encode exactly, all float operations are exact too, whatever their order, so
// the results must be equal bit for bit. An integer slip of one unit, which the bound above could
// hide (one unit is a few u of S for a 256-block), fails here.
void TestVecDot::exactDotsMatchGgmlBitwise_data() {
    QTest::addColumn<QString>("type");
    for (DType t : kWeightTypes)
        if (traits(t).isQuantized)
            QTest::newRow(std::string(dtypeName(t)).c_str())
                << QString::fromStdString(std::string(dtypeName(t)));
}

void TestVecDot::exactDotsMatchGgmlBitwise() {
    QFETCH(QString, type);
    const DType t = *dtypeFromName(type.toStdString());
    const TraitsCpu* tr = haswell().traits(traits(t).ggmlId);
    const int64_t nIn = 1024, rows = 4;
    auto W = makeWeights(t, rows, nIn, 5);
    QVERIFY(!W.empty());
    // fp16 scale fields per block: d = 2^-5, min / dmin = 2^-6
    std::vector<std::pair<int, uint16_t>> fields;
    switch (t) {
    case DType::Q4_1:
    case DType::Q5_1:
    case DType::Q4_K:
    case DType::Q5_K:
        fields = {{0, 0x2800}, {2, 0x2400}};
        break;
    case DType::Q2_K:
        fields = {{80, 0x2800}, {82, 0x2400}};
        break;
    case DType::Q3_K:
        fields = {{108, 0x2800}};
        break;
    case DType::Q6_K:
        fields = {{208, 0x2800}};
        break;
    case DType::TQ1_0:
        fields = {{52, 0x2800}};
        break;
    case DType::TQ2_0:
        fields = {{64, 0x2800}};
        break;
    case DType::MXFP4:
    case DType::IQ1_M:
        break;
    default:
        fields = {{0, 0x2800}};
        break;
    }
    const size_t bs = traits(t).typeSize;
    for (size_t b = 0; b < W.size() / bs; ++b) {
        uint8_t* blk = W.data() + b * bs;
        for (auto [off, h] : fields)
            std::memcpy(blk + off, &h, 2);
        if (t == DType::MXFP4) blk[0] = 123; // 2^(e-128) = 2^-5
        if (t == DType::IQ1_M)               // the fp16 scale is spread over the top nibbles of 4 u16 at 48
            for (int k = 0; k < 4; ++k) {
                uint16_t v;
                std::memcpy(&v, blk + 48 + 2 * k, 2);
                v = static_cast<uint16_t>((v & 0x0FFF) | (((0x2800 >> (4 * k)) & 0xF) << 12));
                std::memcpy(blk + 48 + 2 * k, &v, 2);
            }
    }
    // activations: integers in [-127, 127] times 2^-3, each block of 32 led by +127·2^-3, so that every
    // encoder's scale is 2^-3 (or -2^-3) and the codes are the integers themselves
    std::mt19937 rng(17);
    std::vector<float> x(nIn);
    for (int64_t i = 0; i < nIn; ++i)
        x[i] = (i % 32 == 0 ? 127.f : float(int(rng() % 255) - 127)) * 0.125f;
    std::vector<uint8_t> act(ggml::vecDotRowBytes(t, nIn));
    QVERIFY(ggml::quantizeActivationRow(t, x.data(), act.data(), nIn));
    const size_t rowBytes = *bytesFor(t, nIn);
    for (int64_t r = 0; r < rows; ++r) {
        const uint8_t* w = W.data() + r * rowBytes;
        float ref = 0;
        tr->vecDot(int(nIn), &ref, 0, w, 0, act.data(), 0, 1);
        QVERIFY(std::isfinite(ref) && ref != 0.f);
        QCOMPARE(ggml::vecDot(t, nIn, w, act.data()), ref);
        QCOMPARE(ggml::vecDotScalar(t, nIn, w, act.data()), ref);
    }
}

void TestVecDot::quantizedLinearMatchesGgml_data() {
    vecDotMatchesGgml_data();
}

void TestVecDot::quantizedLinearMatchesGgml() {
    QFETCH(QString, type);
    const DType t = *dtypeFromName(type.toStdString());
    const TraitsCpu* tr = haswell().traits(traits(t).ggmlId);
    const TraitsCpu* trVd = haswell().traits(traits(ggml::vecDotType(t)).ggmlId);
    const int64_t nOut = 37, nIn = 512, n = 5, ldy = nOut + 3;
    const auto W = makeWeights(t, nOut, nIn, 99);
    QVERIFY(!W.empty());
    const size_t rowBytes = *bytesFor(t, nIn);
    std::vector<float> X(nIn * n);
    for (int64_t j = 0; j < n; ++j) {
        const auto col = makeActivations(nIn, kDotFlavours[j % 6], 40 + uint32_t(j));
        std::copy(col.begin(), col.end(), X.begin() + j * nIn);
    }
    std::vector<float> Y(ldy * n, -7.f);
    QVERIFY(ggml::quantizedLinear(t, W.data(), rowBytes, nOut, nIn, X.data(), n, Y.data(), ldy, 2));
    std::vector<uint8_t> act(ggml::vecDotRowBytes(t, nIn));
    for (int64_t j = 0; j < n; ++j) {
        trVd->fromFloat(X.data() + j * nIn, act.data(), nIn);
        for (int64_t i = 0; i < nOut; ++i) {
            const uint8_t* w = W.data() + i * rowBytes;
            float ref = 0;
            tr->vecDot(int(nIn), &ref, 0, w, 0, act.data(), 0, 1);
            const float y = Y[i + j * ldy];
            const double bound = dotBound(t, nIn, magnitudeSum(t, w, act.data(), nIn));
            QVERIFY2(std::fabs(double(y) - ref) <= bound,
                     qPrintable(QString("row %1 token %2: %3 vs ggml %4").arg(i).arg(j).arg(y).arg(ref)));
            // the same kernel as vecDot, bit for bit
            QCOMPARE(floatBits(y), floatBits(ggml::vecDot(t, nIn, w, act.data())));
        }
        for (int64_t i = nOut; i < ldy; ++i)
            QCOMPARE(Y[i + j * ldy], -7.f); // padding untouched
    }
}

// Long rows split the float types' tokens into panels (256 KiB of decoded activations each: 8 tokens of
// 8192 here); 13 tokens leave partial groups of 4; 9 rows give pairs and a single. Every result must be
// vecDot's, whatever the thread count.
void TestVecDot::quantizedLinearPanelsAndThreads() {
    for (DType t : {DType::F16, DType::BF16, DType::Q4_K, DType::Q8_0, DType::IQ4_XS}) {
        const int64_t nOut = 9, nIn = 8192, n = 13;
        const auto W = makeWeights(t, nOut, nIn, 21);
        QVERIFY(!W.empty());
        const size_t rowBytes = *bytesFor(t, nIn);
        std::vector<float> X(nIn * n);
        std::mt19937 rng(3);
        std::normal_distribution<float> nd(0.f, 1.f);
        for (auto& v : X)
            v = nd(rng);
        std::vector<float> Y1(nOut * n), Y3(nOut * n);
        QVERIFY(ggml::quantizedLinear(t, W.data(), rowBytes, nOut, nIn, X.data(), n, Y1.data(), nOut, 1));
        QVERIFY(ggml::quantizedLinear(t, W.data(), rowBytes, nOut, nIn, X.data(), n, Y3.data(), nOut, 3));
        std::vector<uint8_t> act(ggml::vecDotRowBytes(t, nIn));
        for (int64_t j = 0; j < n; ++j) {
            QVERIFY(ggml::quantizeActivationRow(t, X.data() + j * nIn, act.data(), nIn));
            for (int64_t i = 0; i < nOut; ++i) {
                const float v = ggml::vecDot(t, nIn, W.data() + i * rowBytes, act.data());
                QCOMPARE(floatBits(Y1[i + j * nOut]), floatBits(v));
                QCOMPARE(floatBits(Y3[i + j * nOut]), floatBits(v));
            }
        }
    }
}

// Shapes for the tile kernels (AMX where the CPU has it; the float types' AVX-512 kernel takes 4 rows at a
// time): 45 rows = two tiles of 16 + 13 rows left to the AVX2 kernels, 21 tokens = one group of 16 + a group of 5 padded with zeros, 1 and 2 threads, tokens of
// every activation flavour (zeros, large values, ties, ...). Every result must be vecDot's, bit for bit.
void TestVecDot::quantizedLinearTiles_data() {
    vecDotMatchesGgml_data();
}

void TestVecDot::quantizedLinearTiles() {
    QFETCH(QString, type);
    const DType t = *dtypeFromName(type.toStdString());
    // the float types: 48 elements of 16, one of 8 and 3 left for the scalar tail
    const int64_t nOut = 45, nIn = traits(t).blockSize == 1 ? 779 : 768, n = 21, ldy = nOut + 2;
    const auto W = makeWeights(t, nOut, nIn, 5);
    QVERIFY(!W.empty());
    const size_t rowBytes = *bytesFor(t, nIn);
    std::vector<float> X(nIn * n);
    for (int64_t j = 0; j < n; ++j) {
        const auto col = makeActivations(nIn, kDotFlavours[j % 6], 60 + uint32_t(j));
        std::copy(col.begin(), col.end(), X.begin() + j * nIn);
    }
    std::vector<uint8_t> act(ggml::vecDotRowBytes(t, nIn));
    for (int threads : {1, 2}) {
        std::vector<float> Y(ldy * n, -7.f);
        QVERIFY(ggml::quantizedLinear(t, W.data(), rowBytes, nOut, nIn, X.data(), n, Y.data(), ldy, threads));
        for (int64_t j = 0; j < n; ++j) {
            QVERIFY(ggml::quantizeActivationRow(t, X.data() + j * nIn, act.data(), nIn));
            for (int64_t i = 0; i < nOut; ++i) {
                const float v = ggml::vecDot(t, nIn, W.data() + i * rowBytes, act.data());
                if (floatBits(Y[i + j * ldy]) != floatBits(v))
                    QFAIL(qPrintable(QString("%1 row %2 token %3 (%4, %5 threads): %6 vs vecDot %7")
                                         .arg(type)
                                         .arg(i)
                                         .arg(j)
                                         .arg(ggml::quantizedLinearKernelName(t))
                                         .arg(threads)
                                         .arg(double(Y[i + j * ldy]), 0, 'g', 9)
                                         .arg(double(v), 0, 'g', 9)));
            }
            for (int64_t i = nOut; i < ldy; ++i)
                QCOMPARE(Y[i + j * ldy], -7.f);
        }
    }
}

void TestVecDot::refusesBadSizes() {
    QCOMPARE(ggml::vecDotRowBytes(DType::Q4_K, 100), size_t(0));
    QCOMPARE(ggml::vecDotRowBytes(DType::Q4_K, -256), size_t(0));
    QCOMPARE(ggml::vecDotRowBytes(DType::Q4_K, 512), size_t(2 * 292));
    QCOMPARE(ggml::vecDotRowBytes(DType::Q4_1, 64), size_t(2 * 36));
    QCOMPARE(ggml::vecDotRowBytes(DType::I32, 64), size_t(0));
    QCOMPARE(ggml::vecDotRowBytes(DType::F32, INT64_MAX), size_t(0)); // 4·n overflows 64 bits
    std::vector<float> x(100, 1.f), y(4, -1.f);
    std::vector<uint8_t> buf(1024, 0);
    QVERIFY(!ggml::quantizeActivationRow(DType::Q8_0, x.data(), buf.data(), 100));
    QVERIFY(!ggml::quantizeActivationRow(DType::I32, x.data(), buf.data(), 64));
    QVERIFY(!ggml::quantizedLinear(DType::Q4_0, buf.data(), 18, 1, 100, x.data(), 1, y.data(), 1, 1));
    QVERIFY(!ggml::quantizedLinear(DType::Q8_K, buf.data(), 292, 1, 256, x.data(), 1, y.data(), 1, 1));
    QCOMPARE(y[0], -1.f);
    // nothing is read for a bad length or type (null rows would crash otherwise)
    QCOMPARE(ggml::vecDot(DType::Q4_K, 100, nullptr, nullptr), 0.f);
    QCOMPARE(ggml::vecDot(DType::Q4_K, -256, nullptr, nullptr), 0.f);
    QCOMPARE(ggml::vecDotScalar(DType::Q8_K, 256, nullptr, nullptr), 0.f);
}

QTEST_GUILESS_MAIN(TestVecDot)
#include "test_vec_dot.moc"
