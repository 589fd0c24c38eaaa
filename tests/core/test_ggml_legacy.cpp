// Legacy ggml quantizers (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and F32/F16/BF16 conversion, byte for byte
// against llama.cpp's outputs: the sha256 of every tensor of that type in
// tests/data/golden/{bard-llama,bard-gpt2,stories260K}/tensors.tsv (convert_hf_to_gguf + llama-quantize
// from the same inputs). The tensors are rebuilt here from the source models with the HF -> GGUF
// mapping written out in this test (names, llama Q/K permutation, GPT-2 transposes; core/convert/README.md
// A.4, A.5). Every golden tensor of a checked type must be matched: none is skipped.
// Also: quantize -> dequantize error bounds on ggml's test-quantize-fns data for every type we
// produce, imatrix paths, and hand-computed dequantization of single blocks.
#include <QtTest>

#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "common/fp16.h"
#include "ggml/block_types.h"
#include "ggml/dequantize.h"
#include "ggml/quantize.h"
#include "ggml/quants_legacy.h"
#include "model/model.h"
#include "sha256.h"

using namespace qz;

namespace {

const std::string kData = QZ_TEST_DATA;

struct GoldenRow {
    std::string type;  // "Q4_0", "F32", ...
    std::string sha;
};
// file -> tensor -> row
using Golden = std::map<std::string, std::map<std::string, GoldenRow>>;

// Reads tensors.tsv in either layout: with a header "dir file file_sha256 idx tensor type ..."
// (bard-llama; only dir "." rows), or headerless "file tensor type_id ne sha256".
Golden loadGolden(const std::string& path) {
    Golden g;
    std::ifstream in(path);
    std::string line;
    bool headed = false;
    while (std::getline(in, line)) {
        std::vector<std::string> f;
        std::stringstream ss(line);
        for (std::string c; std::getline(ss, c, '\t');) f.push_back(c);
        if (f.empty()) continue;
        if (f[0] == "dir") {
            headed = true;
            continue;
        }
        if (headed) {
            if (f.size() < 11 || f[0] != ".") continue;
            g[f[1]][f[4]] = {f[5], f[10]};
        } else if (f.size() >= 5) {
            const auto dt = dtypeFromGgmlId(static_cast<uint32_t>(std::stoul(f[2])));
            g[f[0]][f[1]] = {dt ? std::string(dtypeName(*dt)) : "?" + f[2], f[4]};
        }
    }
    return g;
}

struct Source {
    std::string name;  // GGUF name
    int64_t rows = 1, cols = 1;
    std::vector<float> data;
};

// core/convert/README.md A.5: out_row[h*hd + 2i + j] = in_row[h*hd + j*hd/2 + i].
std::vector<float> permuteQK(const std::vector<float>& w, int64_t rows, int64_t cols, int64_t heads) {
    std::vector<float> out(w.size());
    const int64_t hd = rows / heads;
    for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < hd / 2; ++i)
            for (int64_t j = 0; j < 2; ++j) {
                const int64_t dst = h * hd + 2 * i + j, src = h * hd + j * (hd / 2) + i;
                std::copy_n(w.begin() + src * cols, cols, out.begin() + dst * cols);
            }
    return out;
}

std::vector<float> transpose(const std::vector<float>& w, int64_t rows, int64_t cols) {
    std::vector<float> out(w.size());
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) out[c * rows + r] = w[r * cols + c];
    return out;
}

std::vector<Source> bardLlamaSources() {
    std::vector<Source> out;
    auto m = openModel(kData + "/models/bard-llama");
    if (!m) return out;
    for (const auto& t : (*m)->tensors) {
        std::string n = t.name;
        auto v = readTensorF32(**m, t);
        if (!v) continue;
        Source s;
        s.rows = t.rows();
        s.cols = t.cols();
        s.data = std::move(*v);
        static const std::pair<const char*, const char*> map[] = {
            {"self_attn.q_proj.weight", "attn_q.weight"}, {"self_attn.k_proj.weight", "attn_k.weight"},
            {"self_attn.v_proj.weight", "attn_v.weight"}, {"self_attn.o_proj.weight", "attn_output.weight"},
            {"mlp.gate_proj.weight", "ffn_gate.weight"},  {"mlp.up_proj.weight", "ffn_up.weight"},
            {"mlp.down_proj.weight", "ffn_down.weight"},  {"input_layernorm.weight", "attn_norm.weight"},
            {"post_attention_layernorm.weight", "ffn_norm.weight"}};
        if (n == "model.embed_tokens.weight") s.name = "token_embd.weight";
        else if (n == "lm_head.weight") s.name = "output.weight";
        else if (n == "model.norm.weight") s.name = "output_norm.weight";
        else if (n.rfind("model.layers.", 0) == 0) {
            const size_t dot = n.find('.', 13);
            const std::string layer = n.substr(13, dot - 13), rest = n.substr(dot + 1);
            for (const auto& [hf, gg] : map)
                if (rest == hf) s.name = "blk." + layer + "." + gg;
            if (rest == "self_attn.q_proj.weight") s.data = permuteQK(s.data, s.rows, s.cols, 8);
            if (rest == "self_attn.k_proj.weight") s.data = permuteQK(s.data, s.rows, s.cols, 4);  // n_head_kv
        }
        if (!s.name.empty()) out.push_back(std::move(s));
    }
    return out;
}

std::vector<Source> bardGpt2Sources() {
    std::vector<Source> out;
    auto m = openModel(kData + "/models/bard-gpt2");
    if (!m) return out;
    for (const auto& t : (*m)->tensors) {
        std::string n = t.name;
        if (n.rfind("transformer.", 0) == 0) n = n.substr(12);
        auto v = readTensorF32(**m, t);
        if (!v) continue;
        Source s;
        s.rows = t.rows();
        s.cols = t.cols();
        s.data = std::move(*v);
        static const std::pair<const char*, const char*> map[] = {
            {"attn.c_attn.weight", "attn_qkv.weight"}, {"attn.c_attn.bias", "attn_qkv.bias"},
            {"attn.c_proj.weight", "attn_output.weight"}, {"attn.c_proj.bias", "attn_output.bias"},
            {"ln_1.weight", "attn_norm.weight"}, {"ln_1.bias", "attn_norm.bias"},
            {"ln_2.weight", "ffn_norm.weight"}, {"ln_2.bias", "ffn_norm.bias"},
            {"mlp.c_fc.weight", "ffn_up.weight"}, {"mlp.c_fc.bias", "ffn_up.bias"},
            {"mlp.c_proj.weight", "ffn_down.weight"}, {"mlp.c_proj.bias", "ffn_down.bias"}};
        if (n == "wte.weight") {
            s.name = "token_embd.weight";
            Source o = s;
            o.name = "output.weight";  // GPT-2 ties them; convert emits a copy
            out.push_back(std::move(o));
        } else if (n == "wpe.weight") s.name = "position_embd.weight";
        else if (n == "ln_f.weight") s.name = "output_norm.weight";
        else if (n == "ln_f.bias") s.name = "output_norm.bias";
        else if (n.rfind("h.", 0) == 0) {
            const size_t dot = n.find('.', 2);
            const std::string layer = n.substr(2, dot - 2), rest = n.substr(dot + 1);
            for (const auto& [hf, gg] : map)
                if (rest == hf) s.name = "blk." + layer + "." + gg;
            if (s.data.size() > static_cast<size_t>(s.cols)) {  // Conv1D [in, out] -> [out, in]
                s.data = transpose(s.data, s.rows, s.cols);
                std::swap(s.rows, s.cols);
            }
        }
        if (!s.name.empty()) out.push_back(std::move(s));
    }
    return out;
}

std::vector<Source> storiesSources() {
    std::vector<Source> out;
    auto m = openModel(kData + "/models/stories260K/stories260K.gguf");
    if (!m) return out;
    for (const auto& t : (*m)->tensors) {
        auto v = readTensorF32(**m, t);
        if (!v) continue;
        out.push_back(Source{t.name, t.rows(), t.cols(), std::move(*v)});
    }
    return out;
}

bool isLegacyOrFloat(const std::string& type) {
    for (const char* t : {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "F16", "BF16", "F32"})
        if (type == t) return true;
    return false;
}

// Compares every golden tensor whose type passes `want` with our quantization of the source.
// Returns the number compared; fails the test on any mismatch or any golden tensor without source.
int compareAll(const std::vector<Source>& sources, const Golden& golden, bool (*want)(const std::string&)) {
    std::map<std::string, const Source*> byName;
    for (const auto& s : sources) byName[s.name] = &s;
    int compared = 0;
    for (const auto& [file, tensors] : golden) {
        for (const auto& [name, row] : tensors) {
            if (!want(row.type)) continue;
            const auto it = byName.find(name);
            if (it == byName.end()) {
                QTest::qFail(qPrintable(QString("no source for %1 / %2").arg(file.c_str(), name.c_str())), __FILE__,
                             __LINE__);
                return -1;
            }
            const Source& s = *it->second;
            const DType type = *dtypeFromName(row.type);
            const uint64_t bytes = s.rows * *bytesFor(type, static_cast<uint64_t>(s.cols));
            std::vector<uint8_t> dst(bytes);
            auto st = ggml::quantizeTensor(type, s.data.data(), s.rows, s.cols, nullptr, dst.data(), 2);
            if (!st) {
                QTest::qFail(qPrintable(QString::fromStdString(file + " / " + name + ": " + st.error().message)),
                             __FILE__, __LINE__);
                return -1;
            }
            const std::string got = test::sha256Hex(dst.data(), dst.size());
            if (got != row.sha) {
                QTest::qFail(qPrintable(QString::fromStdString(file + " / " + name + " (" + row.type +
                                                               "): sha256 differs from llama.cpp's")),
                             __FILE__, __LINE__);
                return -1;
            }
            ++compared;
        }
    }
    return compared;
}

// ggml tests/test-quantize-fns.cpp data and error measure: 0.1 + 2 cos(i + offset); sqrt(sum d^2)/n.
std::vector<float> cosData(size_t n, float offset) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = 0.1f + 2.0f * std::cos(static_cast<float>(i) + offset);
    return v;
}
double totalError(const std::vector<float>& a, const std::vector<float>& b) {
    double sum = 0;
    for (size_t i = 0; i < a.size(); ++i) sum += double(a[i] - b[i]) * double(a[i] - b[i]);
    return std::sqrt(sum) / static_cast<double>(a.size());
}

std::vector<float> roundTrip(DType t, const std::vector<float>& x, int64_t rows, const float* imatrix = nullptr) {
    const int64_t cols = static_cast<int64_t>(x.size()) / rows;
    std::vector<uint8_t> q(rows * *bytesFor(t, cols));
    if (!ggml::quantizeTensor(t, x.data(), rows, cols, imatrix, q.data(), 2)) return {};
    std::vector<float> y(x.size());
    if (t == DType::F32) std::memcpy(y.data(), q.data(), q.size());
    else if (t == DType::F16 || t == DType::BF16) {
        for (size_t i = 0; i < y.size(); ++i) {
            uint16_t h;
            std::memcpy(&h, q.data() + 2 * i, 2);
            y[i] = t == DType::F16 ? fp16ToFp32(h) : bf16ToFp32(h);
        }
    } else if (!ggml::dequantize(t, q.data(), y.data(), static_cast<int64_t>(y.size()))) {
        return {};
    }
    return y;
}

}  // namespace

class TestGgmlLegacy : public QObject {
    Q_OBJECT
private slots:
    void bardLlamaLegacyAndFloat();
    void bardGpt2LegacyAndFloat();
    void stories260KFallbackTensors();
    void kQuantsThroughDispatcher();
    void roundTripErrorBounds_data();
    void roundTripErrorBounds();
    void imatrixPaths();
    void threadsDoNotChangeBytes();
    void dispatcherRejects();
    void dequantizeByHand();
    void q8_0ReferenceByHand();
};

void TestGgmlLegacy::bardLlamaLegacyAndFloat() {
    const auto src = bardLlamaSources();
    QCOMPARE(src.size(), size_t(39));
    const Golden g = loadGolden(kData + "/golden/bard-llama/tensors.tsv");
    const int n = compareAll(src, g, isLegacyOrFloat);
    // F32 39, F16 30+9, BF16 30+9, Q4_0/Q4_1/Q5_0/Q5_1 29+9 each (output is Q6_K), Q8_0 30+9,
    // and the 9 F32 norms of each of the 9 K-mix files.
    QCOMPARE(n, 39 * 3 + 4 * (29 + 9) + (30 + 9) + 9 * 9);
}

void TestGgmlLegacy::bardGpt2LegacyAndFloat() {
    const auto src = bardGpt2Sources();
    QCOMPARE(src.size(), size_t(41));  // 40 HF tensors + the output.weight copy of wte
    const Golden g = loadGolden(kData + "/golden/bard-gpt2/tensors.tsv");
    const int n = compareAll(src, g, isLegacyOrFloat);
    // F32 40, F16 40, BF16 40, Q5_0 12+27, Q8_0 13+27, plus the 27 F32 tensors of Q4_K_M and Q6_K
    QCOMPARE(n, 40 * 3 + 39 + 40 + 27 * 2);
}

void TestGgmlLegacy::stories260KFallbackTensors() {
    const auto src = storiesSources();
    QCOMPARE(src.size(), size_t(48));
    const Golden g = loadGolden(kData + "/golden/stories260K/tensors.tsv");
    const int n = compareAll(src, g, isLegacyOrFloat);
    QCOMPARE(n, 96);  // every tensor of both mixes is F32, F16, Q4_0, Q5_0 or Q8_0
}

void TestGgmlLegacy::kQuantsThroughDispatcher() {
    // The K-quantizers belong to ggml/kquants.cpp; here they are only reached through
    // quantizeTensor, to prove the dispatcher passes rows and sizes correctly.
    if (!ggml::canQuantizeTo(DType::Q4_K)) QFAIL("K-quants are not compiled in");
    auto isK = [](const std::string& t) { return t.find("_K") != std::string::npos; };
    const Golden gl = loadGolden(kData + "/golden/bard-llama/tensors.tsv");
    const int n = compareAll(bardLlamaSources(), gl, isK);
    QVERIFY(n > 200);
    const Golden gg = loadGolden(kData + "/golden/bard-gpt2/tensors.tsv");
    QCOMPARE(compareAll(bardGpt2Sources(), gg, isK), 10 + 3 + 1 + 13);
}

void TestGgmlLegacy::roundTripErrorBounds_data() {
    QTest::addColumn<QString>("type");
    QTest::addColumn<double>("bound");
    // Thresholds of ggml's test-quantize-fns (MAX_QUANTIZATION_TOTAL_ERROR and friends).
    for (const char* t : {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS", "F16", "BF16"})
        QTest::newRow(t) << QString(t) << 0.002;
    QTest::newRow("TQ1_0") << QString("TQ1_0") << 0.01;
    QTest::newRow("TQ2_0") << QString("TQ2_0") << 0.01;
    QTest::newRow("Q3_K") << QString("Q3_K") << 0.0040;
    QTest::newRow("Q2_K") << QString("Q2_K") << 0.0075;
    QTest::newRow("F32") << QString("F32") << 0.0;
}

void TestGgmlLegacy::roundTripErrorBounds() {
    QFETCH(QString, type);
    QFETCH(double, bound);
    const DType t = *dtypeFromName(type.toStdString());
    if (!ggml::canQuantizeTo(t)) QFAIL("type not available in this build");
    const auto x = cosData(32 * 128, 0.0f);
    const auto y = roundTrip(t, x, 4);
    QCOMPARE(y.size(), x.size());
    const double err = totalError(x, y);
    QVERIFY2(err <= bound, qPrintable(QString("%1: error %2 > %3").arg(type).arg(err).arg(bound)));
    if (traits(t).isQuantized) QVERIFY(err > 0);
}

void TestGgmlLegacy::imatrixPaths() {
    std::mt19937 rng(1234);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::uniform_real_distribution<float> ud(0.05f, 3.f);
    const int64_t rows = 16, cols = 256;
    std::vector<float> x(rows * cols), im(cols);
    for (auto& v : x) v = nd(rng) * 0.05f;
    for (auto& v : im) v = ud(rng);
    for (const char* name : {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"}) {
        const DType t = *dtypeFromName(name);
        const size_t bytes = rows * *bytesFor(t, cols);
        std::vector<uint8_t> a(bytes), b(bytes);
        QVERIFY(ggml::quantizeTensor(t, x.data(), rows, cols, nullptr, a.data(), 1).ok());
        QVERIFY(ggml::quantizeTensor(t, x.data(), rows, cols, im.data(), b.data(), 1).ok());
        if (t == DType::Q8_0) {
            QVERIFY2(a == b, "Q8_0 ignores the imatrix");
            continue;
        }
        QVERIFY2(a != b, name);
        // The weighted path minimises the imatrix-weighted error: compare it with the reference's.
        std::vector<float> ya(x.size()), yb(x.size());
        QVERIFY(ggml::dequantize(t, a.data(), ya.data(), rows * cols));
        QVERIFY(ggml::dequantize(t, b.data(), yb.data(), rows * cols));
        double ea = 0, eb = 0;
        for (int64_t i = 0; i < rows * cols; ++i) {
            const double w = im[i % cols];
            ea += w * double(x[i] - ya[i]) * double(x[i] - ya[i]);
            eb += w * double(x[i] - yb[i]) * double(x[i] - yb[i]);
        }
        QVERIFY2(eb < ea, qPrintable(QString("%1: weighted error %2 (imatrix) vs %3 (ref)").arg(name).arg(eb).arg(ea)));
        const double rel = std::sqrt(eb / ea);
        QVERIFY2(rel > 0.5, qPrintable(QString("%1: implausible gain %2").arg(name).arg(rel)));
    }
}

void TestGgmlLegacy::threadsDoNotChangeBytes() {
    const auto x = cosData(256 * 300, 0.7f);
    for (const char* name : {"Q4_0", "Q5_1", "Q8_0", "F16", "Q4_K"}) {
        const DType t = *dtypeFromName(name);
        const size_t bytes = 300 * *bytesFor(t, 256);
        std::vector<uint8_t> a(bytes), b(bytes);
        QVERIFY(ggml::quantizeTensor(t, x.data(), 300, 256, nullptr, a.data(), 1).ok());
        QVERIFY(ggml::quantizeTensor(t, x.data(), 300, 256, nullptr, b.data(), 7).ok());
        QVERIFY2(a == b, name);
    }
}

void TestGgmlLegacy::dispatcherRejects() {
    std::vector<float> x(48);
    std::vector<uint8_t> d(1024, 0xAB);
    auto s = ggml::quantizeTensor(DType::Q4_0, x.data(), 1, 48, nullptr, d.data(), 1);
    QVERIFY(!s.ok());
    QVERIFY(s.error().message.find("not a multiple of 32") != std::string::npos);
    // ggml asserts an importance matrix for IQ2_XXS, IQ2_XS and IQ1_S: refused before any row is read.
    for (DType t : {DType::IQ2_XXS, DType::IQ2_XS, DType::IQ1_S}) {
        QVERIFY(ggml::canQuantizeTo(t));
        auto r = ggml::quantizeTensor(t, x.data(), 1, 256, nullptr, d.data(), 1);
        QVERIFY(!r.ok());
        QVERIFY(r.error().message.find("importance matrix") != std::string::npos);
    }
    QVERIFY(!ggml::quantizeTensor(DType::U8, x.data(), 1, 32, nullptr, d.data(), 1).ok());
    QCOMPARE(d[0], uint8_t(0xAB));
    QVERIFY(!ggml::canQuantizeTo(DType::Q8_1));
    QVERIFY(!ggml::dequantize(DType::U8, d.data(), reinterpret_cast<float*>(x.data()), 32));
    QVERIFY(!ggml::dequantize(DType::Q4_0, d.data(), x.data(), 16));
}

void TestGgmlLegacy::dequantizeByHand() {
    using namespace ggml;
    float y[256];
    {   // Q4_0: d = 0.5 (fp16 0x3800); qs[j] = j | (15-j) << 4 -> y[j] = (j-8)/2, y[16+j] = (7-j)/2
        BlockQ4_0 b{};
        b.d = 0x3800;
        for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(j | ((15 - j) << 4));
        QVERIFY(dequantize(DType::Q4_0, reinterpret_cast<uint8_t*>(&b), y, 32));
        for (int j = 0; j < 16; ++j) {
            QCOMPARE(y[j], (j - 8) * 0.5f);
            QCOMPARE(y[16 + j], (7 - j) * 0.5f);
        }
    }
    {   // Q4_1: d = 2, m = -1 -> y = 2q - 1
        BlockQ4_1 b{};
        b.d = 0x4000;
        b.m = 0xBC00;
        for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(3 | (12 << 4));
        QVERIFY(dequantize(DType::Q4_1, reinterpret_cast<uint8_t*>(&b), y, 32));
        QCOMPARE(y[0], 5.0f);
        QCOMPARE(y[31], 23.0f);
    }
    {   // Q5_0: d = 1; element 3 has high bit (qh bit 3) and nibble 1 -> 17-16 = 1; element 20 (bit 20), nibble 0 -> 0
        BlockQ5_0 b{};
        b.d = 0x3C00;
        const uint32_t qh = (1u << 3) | (1u << 20);
        std::memcpy(b.qh, &qh, 4);
        b.qs[3] = 0x01;
        QVERIFY(dequantize(DType::Q5_0, reinterpret_cast<uint8_t*>(&b), y, 32));
        QCOMPARE(y[3], 1.0f);
        QCOMPARE(y[20], 0.0f);
        QCOMPARE(y[0], -16.0f);
        QCOMPARE(y[19], -16.0f);
    }
    {   // Q5_1: d = 0.5, m = 1; element 31: nibble 15 (high nibble of qs[15]) + bit 31 -> 31 -> 16.5
        BlockQ5_1 b{};
        b.d = 0x3800;
        b.m = 0x3C00;
        const uint32_t qh = 1u << 31;
        std::memcpy(b.qh, &qh, 4);
        b.qs[15] = 0xF0;
        QVERIFY(dequantize(DType::Q5_1, reinterpret_cast<uint8_t*>(&b), y, 32));
        QCOMPARE(y[31], 16.5f);
        QCOMPARE(y[15], 1.0f);
    }
    {   // Q2_K: d = 1, dmin = 0.5, all scales 0x23 (sc 3, m 2) -> y = 3q - 1;
        // element 128 + 32*2 + 5 = 197 sits at (qs[32 + 5] >> 4) & 3
        BlockQ2_K b{};
        b.d = 0x3C00;
        b.dmin = 0x3800;
        std::memset(b.scales, 0x23, 16);
        b.qs[37] = uint8_t(2 << 4);
        QVERIFY(dequantize(DType::Q2_K, reinterpret_cast<uint8_t*>(&b), y, 256));
        QCOMPARE(y[197], 5.0f);
        QCOMPARE(y[0], -1.0f);
    }
    {   // Q6_K: d = 1, scales[e/16] = e/16 - 8; element 128 + 64 + 7 = 199: high nibble of ql[64+7], bits 4-5 of qh[32+7]
        BlockQ6_K b{};
        b.d = 0x3C00;
        for (int j = 0; j < 16; ++j) b.scales[j] = int8_t(j - 8);
        b.ql[71] = 0x50;            // low 4 bits of q = 5
        b.qh[39] = uint8_t(3 << 4); // high 2 bits = 3 -> q = 53 -> 53 - 32 = 21
        QVERIFY(dequantize(DType::Q6_K, reinterpret_cast<uint8_t*>(&b), y, 256));
        QCOMPARE(y[199], float((199 / 16 - 8) * 21));
        QCOMPARE(y[0], float(-8 * -32));
    }
    {   // Q4_K: d = 1, dmin = 1; sub-block 5 (elements 160..191): sc = (scales[9] & 15) | (scales[1] >> 6) << 4,
        // m = (scales[9] >> 4) | (scales[5] >> 6) << 4; element 160 + 4 = high nibble of qs[64 + 4]
        BlockQ4_K b{};
        b.d = 0x3C00;
        b.dmin = 0x3C00;
        b.scales[9] = 0x32;         // sc low 2, m low 3
        b.scales[1] = 0x40;         // sc high bit 4 -> sc = 18
        b.scales[5] = 0x80;         // m high 2 -> m = 35
        b.qs[68] = 0x70;            // q = 7
        QVERIFY(dequantize(DType::Q4_K, reinterpret_cast<uint8_t*>(&b), y, 256));
        QCOMPARE(y[164], 18.0f * 7 - 35);
    }
    {   // TQ2_0: d = 1; element 128*(j/32) + 32n + m = (qs[j+m] >> 2n) & 3, minus 1
        BlockTQ2_0 b{};
        b.d = 0x3C00;
        b.qs[32 + 3] = uint8_t(2 << 4);  // j = 32, m = 3, n = 2 -> element 128 + 64 + 3
        QVERIFY(dequantize(DType::TQ2_0, reinterpret_cast<uint8_t*>(&b), y, 256));
        QCOMPARE(y[195], 1.0f);
        QCOMPARE(y[0], -1.0f);
    }
    {   // IQ4_NL: d = 1, index 15 -> 113, index 0 -> -127
        BlockIQ4_NL b{};
        b.d = 0x3C00;
        b.qs[0] = 0x0F;
        QVERIFY(dequantize(DType::IQ4_NL, reinterpret_cast<uint8_t*>(&b), y, 32));
        QCOMPARE(y[0], 113.0f);
        QCOMPARE(y[16], -127.0f);
    }
}

void TestGgmlLegacy::q8_0ReferenceByHand() {
    // One block: x = j/31 * 2.54 (amax 2.54, d = 0.02, id = 50): q = roundf(50 x), halves away from zero
    float x[32];
    for (int j = 0; j < 32; ++j) x[j] = 0.0f;
    x[0] = 2.54f;
    x[1] = -2.54f;
    x[2] = 0.01f;   // 0.5 -> 1 (roundf)
    x[3] = -0.01f;  // -0.5 -> -1
    x[4] = 1.0f;    // 50
    ggml::BlockQ8_0 b{};
    ggml::quantizeRowQ8_0Ref(x, reinterpret_cast<uint8_t*>(&b), 32);
    QCOMPARE(b.d, fp32ToFp16(2.54f / 127));
    QCOMPARE(int(b.qs[0]), 127);
    QCOMPARE(int(b.qs[1]), -127);
    QCOMPARE(std::abs(int(b.qs[2])), std::abs(int(std::roundf(0.01f * (1.0f / (2.54f / 127))))));
    QCOMPARE(int(b.qs[4]), int(std::roundf(1.0f * (1.0f / (2.54f / 127)))));
    // Q4_0 by hand: max = -4 (largest magnitude, negative) -> d = 0.5, id = 2: q = min(15, (int8)(2x + 8.5))
    float z[32] = {};
    z[0] = -4.0f;
    z[1] = 3.9f;   // 7.8 + 8.5 = 16.3 -> 16 -> clamped 15
    z[2] = 0.24f;  // 0.48 + 8.5 = 8.98 -> 8
    z[17] = -1.0f; // -2 + 8.5 = 6.5 -> 6
    ggml::BlockQ4_0 q{};
    ggml::quantizeRowQ4_0Ref(z, reinterpret_cast<uint8_t*>(&q), 32);
    QCOMPARE(q.d, uint16_t(0x3800));
    QCOMPARE(q.qs[0] & 0xF, 0);
    QCOMPARE(q.qs[1] & 0xF, 15);
    QCOMPARE(q.qs[2] & 0xF, 8);
    QCOMPARE(q.qs[1] >> 4, 6);
    QCOMPARE(q.qs[3] >> 4, 8);
}

QTEST_GUILESS_MAIN(TestGgmlLegacy)
#include "test_ggml_legacy.moc"
