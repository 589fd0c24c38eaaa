// K-quant quantizers (ggml/kquants.h) and the imatrix reader (ggml/imatrix.h).
//
// Expected values come from outside our code:
//  * llama.cpp's own quantized files of bard-llama: sha256 of every tensor in
//    tests/data/golden/bard-llama/tensors.tsv (made by llama-quantize from bard-llama-F32.gguf, with and
//    without --imatrix). Our input is rebuilt from the HF safetensors (BF16 -> F32 is bits << 16, Q/K rows
//    permuted as convert does, core/convert/README.md A.5) and first checked against the F32 file's hashes.
//  * the FIPS SHA-256 vectors; ggml's test-quantize-fns data and error thresholds; hand-computed blocks.
#include <QtTest>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/fp16.h"
#include "ggml/imatrix.h"
#include "ggml/kquants.h"
#include "sha256.h"

using namespace qz;

namespace {

const std::string kData = QZ_TEST_DATA;

struct GoldenRow {
    std::string dir, file, tensor, type, ne, sha;
    int idx = -1;
};

std::vector<GoldenRow> readLlamaTsv() {
    std::vector<GoldenRow> rows;
    std::ifstream in(kData + "/golden/bard-llama/tensors.tsv");
    std::string line;
    std::getline(in, line);  // header: dir file file_sha256 idx tensor type ne n_elements n_bytes data_offset sha256
    while (std::getline(in, line)) {
        std::vector<std::string> f;
        std::stringstream ss(line);
        std::string c;
        while (std::getline(ss, c, '\t')) f.push_back(c);
        if (f.size() < 11) continue;
        GoldenRow r;
        r.dir = f[0];
        r.file = f[1];
        r.idx = std::stoi(f[3]);
        r.tensor = f[4];
        r.type = f[5];
        r.ne = f[6];
        r.sha = f[10];
        rows.push_back(r);
    }
    return rows;
}

struct F32Tensor {
    int64_t ne0 = 0, ne1 = 1;  // GGUF order: ne0 = columns
    std::vector<float> data;
};

// HF llama name -> GGUF name (core/convert/README.md A.4); empty if not mapped.
std::string ggufName(const std::string& hf) {
    if (hf == "lm_head.weight") return "output.weight";
    if (hf == "model.embed_tokens.weight") return "token_embd.weight";
    if (hf == "model.norm.weight") return "output_norm.weight";
    const std::string pre = "model.layers.";
    if (hf.rfind(pre, 0) != 0) return {};
    const size_t dot = hf.find('.', pre.size());
    const std::string layer = hf.substr(pre.size(), dot - pre.size());
    const std::string rest = hf.substr(dot + 1);
    static const std::map<std::string, std::string> m = {
        {"input_layernorm.weight", "attn_norm.weight"},  {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"self_attn.q_proj.weight", "attn_q.weight"},    {"self_attn.k_proj.weight", "attn_k.weight"},
        {"self_attn.v_proj.weight", "attn_v.weight"},    {"self_attn.o_proj.weight", "attn_output.weight"},
        {"mlp.gate_proj.weight", "ffn_gate.weight"},     {"mlp.up_proj.weight", "ffn_up.weight"},
        {"mlp.down_proj.weight", "ffn_down.weight"}};
    auto it = m.find(rest);
    return it == m.end() ? std::string() : "blk." + layer + "." + it->second;
}

// Q/K row permutation of convert_hf_to_gguf: out_row[h*hd + 2i + j] = in_row[h*hd + j*hd/2 + i].
std::vector<float> permuteRows(const std::vector<float>& w, int64_t rows, int64_t cols, int heads) {
    std::vector<float> out(w.size());
    const int64_t hd = rows / heads;
    for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < hd / 2; ++i)
            for (int64_t j = 0; j < 2; ++j) {
                const int64_t dst = h * hd + 2 * i + j, src = h * hd + j * (hd / 2) + i;
                std::memcpy(&out[dst * cols], &w[src * cols], cols * sizeof(float));
            }
    return out;
}

// Reads bard-llama/model.safetensors (BF16) into F32 tensors keyed by GGUF name (test-local parser).
std::map<std::string, F32Tensor> loadBardLlama() {
    std::map<std::string, F32Tensor> out;
    std::ifstream in(kData + "/models/bard-llama/model.safetensors", std::ios::binary);
    if (!in) return out;
    std::vector<char> all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    uint64_t hlen;
    std::memcpy(&hlen, all.data(), 8);
    const auto header = nlohmann::json::parse(std::string(all.data() + 8, hlen));
    const char* base = all.data() + 8 + hlen;
    for (auto it = header.begin(); it != header.end(); ++it) {
        if (it.key() == "__metadata__") continue;
        const auto& v = it.value();
        if (v["dtype"] != "BF16") continue;
        const auto shape = v["shape"].get<std::vector<int64_t>>();
        const auto offs = v["data_offsets"].get<std::vector<uint64_t>>();
        F32Tensor t;
        t.ne0 = shape.back();
        t.ne1 = shape.size() == 2 ? shape[0] : 1;
        const size_t n = (offs[1] - offs[0]) / 2;
        t.data.resize(n);
        for (size_t i = 0; i < n; ++i) {
            uint16_t b;
            std::memcpy(&b, base + offs[0] + 2 * i, 2);
            t.data[i] = bf16ToFp32(b);
        }
        const std::string name = ggufName(it.key());
        if (name.find("attn_q.weight") != std::string::npos) t.data = permuteRows(t.data, t.ne1, t.ne0, 8);
        if (name.find("attn_k.weight") != std::string::npos) t.data = permuteRows(t.data, t.ne1, t.ne0, 4);
        if (!name.empty()) out[name] = std::move(t);
    }
    return out;
}

struct KType {
    const char* name;
    int typeSize;
    void (*fn)(const float*, uint8_t*, int64_t, int64_t, const float*);
};
const KType kTypes[] = {{"Q2_K", 84, ggml::quantizeRowsQ2_K},
                        {"Q3_K", 110, ggml::quantizeRowsQ3_K},
                        {"Q4_K", 144, ggml::quantizeRowsQ4_K},
                        {"Q5_K", 176, ggml::quantizeRowsQ5_K},
                        {"Q6_K", 210, ggml::quantizeRowsQ6_K}};
const KType* kType(const std::string& n) {
    for (const auto& k : kTypes)
        if (n == k.name) return &k;
    return nullptr;
}

std::vector<uint8_t> quantize(const KType& k, const F32Tensor& t, const float* imatrix) {
    std::vector<uint8_t> out(static_cast<size_t>(t.ne1 * (t.ne0 / 256) * k.typeSize));
    k.fn(t.data.data(), out.data(), t.ne1, t.ne0, imatrix);
    return out;
}

// ------------------------------------------------ test-local dequantizers (core/ggml/README.md B.3)
float h2f(const uint8_t* p) { return fp16ToFp32(static_cast<uint16_t>(p[0] | (p[1] << 8))); }

void dequantQ2K(const uint8_t* b, float* y) {
    const float d = h2f(b + 80), dmin = h2f(b + 82);
    for (int e = 0; e < 256; ++e) {
        const int h = e / 128, s = (e % 128) / 32, l = e % 32;
        const int q = (b[16 + 32 * h + l] >> (2 * s)) & 3;
        const uint8_t sc = b[e / 16];
        y[e] = d * (sc & 0xF) * q - dmin * (sc >> 4);
    }
}
void dequantQ3K(const uint8_t* b, float* y) {
    const float d = h2f(b + 108);
    const uint8_t* sc = b + 96;
    for (int e = 0; e < 256; ++e) {
        const int h = e / 128, s = (e % 128) / 32, l = e % 32;
        const int q2 = (b[32 + 32 * h + l] >> (2 * s)) & 3;
        const int hbit = (b[e % 32] >> (e / 32)) & 1;
        const int j = e / 16;
        const int lo = j < 8 ? (sc[j] & 0xF) : (sc[j - 8] >> 4);
        const int hi = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
        const int s6 = lo | (hi << 4);
        y[e] = d * (s6 - 32) * (q2 - (hbit ? 0 : 4));
    }
}
void scaleMinK4(int j, const uint8_t* s, int& sc, int& m) {
    if (j < 4) {
        sc = s[j] & 63;
        m = s[j + 4] & 63;
    } else {
        sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}
void dequantQ45K(const uint8_t* b, float* y, bool five) {
    const float d = h2f(b), dmin = h2f(b + 2);
    const uint8_t* qs = b + (five ? 48 : 16);
    for (int e = 0; e < 256; ++e) {
        const int c = e / 64, r = e % 64, l = r % 32, hiNib = r / 32;
        int q = hiNib ? (qs[32 * c + l] >> 4) : (qs[32 * c + l] & 0xF);
        if (five) q |= ((b[16 + l] >> (2 * c + hiNib)) & 1) << 4;
        int sc, m;
        scaleMinK4(e / 32, b + 4, sc, m);
        y[e] = d * sc * q - dmin * m;
    }
}
void dequantQ6K(const uint8_t* b, float* y) {
    const float d = h2f(b + 208);
    for (int e = 0; e < 256; ++e) {
        const int h = e / 128, r = e % 128, l = r % 32, quarter = r / 32;
        const uint8_t qlb = b[64 * h + (quarter % 2) * 32 + l];
        const int lo = quarter < 2 ? (qlb & 0xF) : (qlb >> 4);
        const int hi = (b[128 + 32 * h + l] >> (2 * quarter)) & 3;
        y[e] = d * static_cast<int8_t>(b[192 + e / 16]) * ((lo | (hi << 4)) - 32);
    }
}
void dequantIQ4NL(const uint8_t* b, float* y) {
    const float d = h2f(b);
    for (int e = 0; e < 32; ++e) {
        const int idx = e < 16 ? (b[2 + e] & 0xF) : (b[2 + e - 16] >> 4);
        y[e] = d * ggml::kIQ4NLValues[idx];
    }
}

void dequantIQ4XS(const uint8_t* b, float* y) {
    const float d = h2f(b);
    const int sh = b[2] | (b[3] << 8);
    for (int e = 0; e < 256; ++e) {
        const int ib = e / 32, r = e % 32;
        const int ls = ((b[4 + ib / 2] >> (4 * (ib % 2))) & 0xF) | (((sh >> (2 * ib)) & 3) << 4);
        const uint8_t q = b[8 + 16 * ib + r % 16];
        const int idx = r < 16 ? (q & 0xF) : (q >> 4);
        y[e] = d * (ls - 32) * ggml::kIQ4NLValues[idx];
    }
}

// Dequantizes n elements of the named type.
std::vector<float> dequant(const std::string& type, const std::vector<uint8_t>& q, int64_t n) {
    std::vector<float> y(n);
    if (type == "IQ4_NL") {
        for (int64_t b = 0; b < n / 32; ++b) dequantIQ4NL(q.data() + 18 * b, y.data() + 32 * b);
        return y;
    }
    if (type == "IQ4_XS") {
        for (int64_t b = 0; b < n / 256; ++b) dequantIQ4XS(q.data() + 136 * b, y.data() + 256 * b);
        return y;
    }
    const KType* k = kType(type);
    for (int64_t b = 0; b < n / 256; ++b) {
        const uint8_t* blk = q.data() + b * k->typeSize;
        float* out = y.data() + 256 * b;
        if (type == "Q2_K") dequantQ2K(blk, out);
        if (type == "Q3_K") dequantQ3K(blk, out);
        if (type == "Q4_K") dequantQ45K(blk, out, false);
        if (type == "Q5_K") dequantQ45K(blk, out, true);
        if (type == "Q6_K") dequantQ6K(blk, out);
    }
    return y;
}

std::vector<uint8_t> quantizeAny(const std::string& type, const float* x, int64_t nrows, int64_t ncols,
                                 const float* imat) {
    if (type == "IQ4_NL") {
        std::vector<uint8_t> q(static_cast<size_t>(nrows * ncols / 32 * 18));
        ggml::quantizeRowsIQ4_NL(x, q.data(), nrows, ncols, imat);
        return q;
    }
    if (type == "IQ4_XS") {
        std::vector<uint8_t> q(static_cast<size_t>(nrows * ncols / 256 * 136));
        ggml::quantizeRowsIQ4_XS(x, q.data(), nrows, ncols, imat);
        return q;
    }
    const KType* k = kType(type);
    std::vector<uint8_t> q(static_cast<size_t>(nrows * ncols / 256 * k->typeSize));
    k->fn(x, q.data(), nrows, ncols, imat);
    return q;
}

}  // namespace

class TestKQuants : public QObject {
    Q_OBJECT

private:
    std::map<std::string, F32Tensor> m_src;
    std::vector<GoldenRow> m_golden;

private slots:
    void initTestCase() {
        m_src = loadBardLlama();
        m_golden = readLlamaTsv();
        QVERIFY2(m_src.size() == 39, "bard-llama safetensors not read");
        QVERIFY2(m_golden.size() > 1000, "golden tensors.tsv not read");
    }

    void sha256Vectors() {
        QCOMPARE(qz::test::sha256Hex(reinterpret_cast<const uint8_t*>("abc"), 3),
                 std::string("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
        QCOMPARE(qz::test::sha256Hex(nullptr, 0),
                 std::string("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        const char* m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        QCOMPARE(qz::test::sha256Hex(reinterpret_cast<const uint8_t*>(m), std::strlen(m)),
                 std::string("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    }

    // Our F32 input equals llama.cpp's bard-llama-F32.gguf tensor by tensor (so any later mismatch is
    // the quantizer's fault, not the input's).
    void sourceMatchesGoldenF32() {
        int checked = 0;
        for (const auto& g : m_golden) {
            if (g.dir != "." || g.file != "bard-llama-F32.gguf") continue;
            auto it = m_src.find(g.tensor);
            QVERIFY2(it != m_src.end(), g.tensor.c_str());
            const auto& d = it->second.data;
            QCOMPARE(qz::test::sha256Hex(reinterpret_cast<const uint8_t*>(d.data()), d.size() * 4), g.sha);
            ++checked;
        }
        QCOMPARE(checked, 39);
    }

    // Every K-type tensor of every llama-quantize golden file (no imatrix) is reproduced byte for byte.
    void goldenWithoutImatrix() {
        std::map<std::string, int> perType;
        int mismatches = 0;
        for (const auto& g : m_golden) {
            if (g.dir != ".") continue;
            const KType* k = kType(g.type);
            if (!k) continue;
            const auto& t = m_src.at(g.tensor);
            const auto q = quantize(*k, t, nullptr);
            const std::string got = qz::test::sha256Hex(q.data(), q.size());
            if (got != g.sha) {
                ++mismatches;
                qWarning("mismatch %s %s (%s)", g.file.c_str(), g.tensor.c_str(), g.type.c_str());
            }
            ++perType[g.type];
        }
        QCOMPARE(mismatches, 0);
        for (const auto& k : kTypes) QVERIFY2(perType[k.name] > 0, k.name);  // each type really compared
        qInfo("compared: Q2_K %d, Q3_K %d, Q4_K %d, Q5_K %d, Q6_K %d tensors", perType["Q2_K"], perType["Q3_K"],
              perType["Q4_K"], perType["Q5_K"], perType["Q6_K"]);
    }

    // The llama-imatrix GGUF file: metadata as written by llama-imatrix (see golden README and the file).
    void imatrixGgufMetadata() {
        auto im = ggml::loadImatrix(kData + "/golden/bard-llama/imatrix/bard-llama-imatrix.gguf");
        QVERIFY2(im.ok(), im.ok() ? "" : im.error().message.c_str());
        QCOMPARE(int(im->values.size()), 28);  // 4 layers x (q, k, v, output, gate, up, down)
        QCOMPARE(im->chunkCount, int64_t(4869));
        QCOMPARE(im->chunkSize, int64_t(128));
        QCOMPARE(int(im->datasets.size()), 1);
        QCOMPARE(im->datasets[0], std::string("data/shakespeare-train.txt"));
        QVERIFY(!im->legacy);
        QCOMPARE(int(im->values.at("blk.3.ffn_down.weight").size()), 768);
        auto none = im->lookup("output.weight", 256);
        QVERIFY(none.ok() && *none == nullptr);
        auto wrong = im->lookup("blk.0.attn_q.weight", 512);
        QVERIFY(!wrong.ok());
        auto emb = im->lookup("token_embd.weight", 512);  // token_embd: size mismatch is not an error
        QVERIFY(emb.ok());
    }

    // llama-quantize --imatrix goldens (Q4_K_M-imat, Q3_K_S-imat) reproduced byte for byte.
    void goldenWithImatrix() {
        auto im = ggml::loadImatrix(kData + "/golden/bard-llama/imatrix/bard-llama-imatrix.gguf");
        QVERIFY(im.ok());
        std::map<std::string, int> perType;
        int withImatrix = 0, mismatches = 0;
        for (const auto& g : m_golden) {
            if (g.dir != "imatrix") continue;
            const KType* k = kType(g.type);
            if (!k) continue;
            const auto& t = m_src.at(g.tensor);
            auto w = im->lookup(g.tensor, t.ne0);
            QVERIFY(w.ok());
            if (*w) ++withImatrix;
            const auto q = quantize(*k, t, *w);
            if (qz::test::sha256Hex(q.data(), q.size()) != g.sha) {
                ++mismatches;
                qWarning("imatrix mismatch %s %s (%s)", g.file.c_str(), g.tensor.c_str(), g.type.c_str());
            }
            ++perType[g.type];
        }
        QCOMPARE(mismatches, 0);
        QCOMPARE(withImatrix, 56);  // 28 weights in each of the two files used the imatrix
        QVERIFY(perType["Q3_K"] > 0 && perType["Q4_K"] > 0 && perType["Q6_K"] > 0);
        qInfo("compared with imatrix: Q3_K %d, Q4_K %d, Q5_K %d, Q6_K %d", perType["Q3_K"], perType["Q4_K"],
              perType["Q5_K"], perType["Q6_K"]);
    }

    // Paths for Q2_K and Q5_K with imatrix have no llama.cpp golden here: check that the importance
    // weighting actually reduces the importance-weighted error (aggregate over many rows).
    void imatrixReducesWeightedError_data() {
        QTest::addColumn<QString>("type");
        for (const char* t : {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"})
            QTest::newRow(t) << QString(t);
    }
    void imatrixReducesWeightedError() {
        QFETCH(QString, type);
        const int64_t rows = 64, cols = 512;
        std::mt19937 rng(1234);
        std::normal_distribution<float> nd(0.f, 1.f);
        std::vector<float> x(rows * cols), imat(cols);
        for (auto& v : x) v = nd(rng);
        for (auto& v : imat) v = std::exp(2.5f * nd(rng));
        const std::string t = type.toStdString();
        const auto y0 = dequant(t, quantizeAny(t, x.data(), rows, cols, nullptr), rows * cols);
        const auto y1 = dequant(t, quantizeAny(t, x.data(), rows, cols, imat.data()), rows * cols);
        double e0 = 0, e1 = 0;
        for (int64_t i = 0; i < rows * cols; ++i) {
            e0 += imat[i % cols] * double(x[i] - y0[i]) * (x[i] - y0[i]);
            e1 += imat[i % cols] * double(x[i] - y1[i]) * (x[i] - y1[i]);
        }
        qInfo("%s weighted error: ref %.4g, imatrix %.4g", t.c_str(), e0, e1);
        QVERIFY(e1 < e0);
    }

    // ggml's test-quantize-fns: data 0.1 + 2 cos(i + offset), RMSE thresholds 0.0075 (2 bits),
    // 0.0040 (3 bits), 0.002 (others).
    void roundTripLikeGgml_data() {
        QTest::addColumn<QString>("type");
        QTest::addColumn<double>("maxErr");
        QTest::newRow("Q2_K") << QString("Q2_K") << 0.0075;
        QTest::newRow("Q3_K") << QString("Q3_K") << 0.0040;
        QTest::newRow("Q4_K") << QString("Q4_K") << 0.002;
        QTest::newRow("Q5_K") << QString("Q5_K") << 0.002;
        QTest::newRow("Q6_K") << QString("Q6_K") << 0.002;
        QTest::newRow("IQ4_NL") << QString("IQ4_NL") << 0.002;
        QTest::newRow("IQ4_XS") << QString("IQ4_XS") << 0.002;
    }
    void roundTripLikeGgml() {
        QFETCH(QString, type);
        QFETCH(double, maxErr);
        const int64_t n = 32 * 128;
        std::vector<float> x(n);
        for (int64_t i = 0; i < n; ++i) x[i] = 0.1f + 2 * std::cos(float(i) + 0.0f);
        const std::string t = type.toStdString();
        const auto y = dequant(t, quantizeAny(t, x.data(), 1, n, nullptr), n);
        double s = 0;
        for (int64_t i = 0; i < n; ++i) s += double(x[i] - y[i]) * (x[i] - y[i]);
        const double rmse = std::sqrt(s) / n;  // ggml's array_rmse: sqrt(sum)/n
        qInfo("%s: %.6f", t.c_str(), rmse);
        QVERIFY(rmse < maxErr);
    }

    // Relative RMSE on seeded Gaussian data: every type is within a loose bound derived from its bits
    // (uniform-quantizer theory: step ~ range / 2^b) and more bits give less error.
    void roundTripGaussian() {
        const int64_t rows = 32, cols = 1024;
        std::mt19937 rng(42);
        std::normal_distribution<float> nd(0.f, 1.f);
        std::vector<float> x(rows * cols);
        for (auto& v : x) v = nd(rng);
        const std::vector<std::pair<std::string, double>> bounds = {
            {"Q2_K", 0.45}, {"Q3_K", 0.25}, {"Q4_K", 0.12}, {"Q5_K", 0.06}, {"Q6_K", 0.03}};
        double prev = 1e9;
        for (const auto& [t, bound] : bounds) {
            const auto y = dequant(t, quantizeAny(t, x.data(), rows, cols, nullptr), rows * cols);
            double s = 0, s2 = 0;
            for (size_t i = 0; i < x.size(); ++i) {
                s += double(x[i] - y[i]) * (x[i] - y[i]);
                s2 += double(x[i]) * x[i];
            }
            const double rel = std::sqrt(s / s2);
            qInfo("%s relative RMSE %.4f", t.c_str(), rel);
            QVERIFY2(rel < bound, t.c_str());
            QVERIFY2(rel < prev, t.c_str());
            prev = rel;
        }
    }

    // Hand-computed: a zero block gives all-zero bytes for K types; IQ4_NL gives d = 0 and every index
    // 8 (the level nearest to 0 is +1), i.e. bytes 0x88.
    void zeroInput() {
        std::vector<float> x(512, 0.f);
        for (const auto& k : kTypes) {
            for (const float* imat : {static_cast<const float*>(nullptr), static_cast<const float*>(x.data())}) {
                std::vector<uint8_t> q(2 * k.typeSize, 0xAB);
                std::vector<float> ones(512, 1.f);
                k.fn(x.data(), q.data(), 1, 512, imat ? ones.data() : nullptr);
                for (uint8_t b : q) QCOMPARE(int(b), 0);
            }
        }
        std::vector<uint8_t> q(18 * 16, 0xAB);
        ggml::quantizeRowsIQ4_NL(x.data(), q.data(), 1, 512, nullptr);
        for (int b = 0; b < 16; ++b) {
            QCOMPARE(int(q[18 * b]), 0);
            QCOMPARE(int(q[18 * b + 1]), 0);
            for (int i = 2; i < 18; ++i) QCOMPARE(int(q[18 * b + i]), 0x88);
        }
    }

    // Hand-computed: a zero IQ4_XS block has d = -0/32 = -0 (fp16 0x8000), every sub-block scale code
    // 0 + 32 (low nibble 0, high bits 2 -> scales_h 0xAAAA) and every index 8.
    void zeroInputIQ4XS() {
        std::vector<float> x(256, 0.f);
        uint8_t q[136];
        std::memset(q, 0xAB, sizeof q);
        ggml::quantizeRowsIQ4_XS(x.data(), q, 1, 256, nullptr);
        QCOMPARE(int(q[0]), 0x00);
        QCOMPARE(int(q[1]), 0x80);
        QCOMPARE(int(q[2]), 0xAA);
        QCOMPARE(int(q[3]), 0xAA);
        for (int i = 4; i < 8; ++i) QCOMPARE(int(q[i]), 0);
        for (int i = 8; i < 136; ++i) QCOMPARE(int(q[i]), 0x88);
    }

    // Hand-computed IQ4_NL block: x = values[idx]/10 with a known index pattern reproduces the indices,
    // and d is near 0.1.
    void iq4nlExactLevels() {
        float x[32];
        int idx[32];
        for (int i = 0; i < 32; ++i) {
            idx[i] = (i * 7 + 3) % 16;
            x[i] = ggml::kIQ4NLValues[idx[i]] / 10.0f;
        }
        x[5] = ggml::kIQ4NLValues[0] / 10.0f;  // make sure the largest magnitude is present
        idx[5] = 0;
        uint8_t q[18];
        ggml::quantizeRowsIQ4_NL(x, q, 1, 32, nullptr);
        QVERIFY(std::fabs(h2f(q) - 0.1f) < 1e-3f);
        for (int e = 0; e < 32; ++e) {
            const int got = e < 16 ? (q[2 + e] & 0xF) : (q[2 + e - 16] >> 4);
            QCOMPARE(got, idx[e]);
        }
    }

    // Rows are independent: quantizing rows in any split gives the same bytes (so the dispatcher can
    // split rows across threads).
    void rowsIndependent() {
        const int64_t rows = 6, cols = 768;
        std::mt19937 rng(7);
        std::normal_distribution<float> nd(0.f, 0.3f);
        std::vector<float> x(rows * cols), imat(cols);
        for (auto& v : x) v = nd(rng);
        for (auto& v : imat) v = std::fabs(nd(rng)) + 0.01f;
        for (const auto& k : kTypes) {
            for (const float* im : {static_cast<const float*>(nullptr), static_cast<const float*>(imat.data())}) {
                const int64_t rowBytes = cols / 256 * k.typeSize;
                std::vector<uint8_t> all(rows * rowBytes), split(rows * rowBytes);
                k.fn(x.data(), all.data(), rows, cols, im);
                k.fn(x.data(), split.data(), 2, cols, im);
                k.fn(x.data() + 2 * cols, split.data() + 2 * rowBytes, 4, cols, im);
                QVERIFY(all == split);
            }
        }
    }

    // The branch-free IQ4_NL level search equals ggml's best_index_int8 (binary search, ties to the upper
    // index; written from core/ggml/README.md B.5) on every float near each level and midpoint, on random
    // values and on NaN / infinities.
    void iq4nlIndexMatchesBinarySearch() {
        auto reference = [](float x) {
            const int8_t* val = ggml::kIQ4NLValues;
            if (x <= val[0]) return 0;
            if (x >= val[15]) return 15;
            int ml = 0, mu = 15;
            while (mu - ml > 1) {
                const int mav = (ml + mu) / 2;
                if (x < val[mav]) mu = mav;
                else ml = mav;
            }
            return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
        };
        std::vector<float> probes = {std::nanf(""), -std::nanf(""), INFINITY, -INFINITY, 0.f, -0.f, 1e30f, -1e30f};
        for (int k = 0; k < 16; ++k) {
            const float v = ggml::kIQ4NLValues[k];
            const float mid = k < 15 ? (v + ggml::kIQ4NLValues[k + 1]) / 2 : v;
            for (float c : {v, mid}) {
                float up = c, down = c;
                for (int s = 0; s < 64; ++s) {
                    probes.push_back(up);
                    probes.push_back(down);
                    up = std::nextafter(up, INFINITY);
                    down = std::nextafter(down, -INFINITY);
                }
            }
        }
        std::mt19937 rng(9);
        std::uniform_real_distribution<float> ud(-140.f, 140.f);
        for (int i = 0; i < 200000; ++i) probes.push_back(ud(rng));
        int mismatches = 0;
        for (float x : probes)
            if (ggml::iq4nlNearestIndex(x) != reference(x)) ++mismatches;
        QCOMPARE(mismatches, 0);
        // the vectorised form the quantizers use (AVX2 on this CPU unless QZ_NO_AVX2=1)
        while (probes.size() % 8)
            probes.push_back(0.f);
        for (size_t i = 0; i < probes.size(); i += 8) {
            int got[8];
            ggml::iq4nlNearestIndex8(probes.data() + i, got);
            for (int k = 0; k < 8; ++k)
                if (got[k] != reference(probes[i + k])) ++mismatches;
        }
        QCOMPARE(mismatches, 0);
        QCOMPARE(ggml::iq4nlNearestIndex(-4.5f), 8);   // hand: 5.5 from -10 and 5.5 from 1: a tie -> upper (1)
        QCOMPARE(ggml::iq4nlNearestIndex(-4.6f), 7);   // 5.4 < 5.6 -> -10 (index 7)
        QCOMPARE(ggml::iq4nlNearestIndex(-4.4f), 8);   // 5.6 > 5.4 -> 1 (index 8)
    }

    // NaN / Inf / huge inputs (hostile model data): no write outside the row, no crash.
    void nonFiniteInput() {
        const int64_t cols = 512;
        std::vector<float> x(cols, 0.5f);
        x[3] = std::nanf("");
        x[100] = INFINITY;
        x[300] = -INFINITY;
        x[400] = 3e38f;
        std::vector<float> imat(cols, 1.f);
        imat[7] = std::nanf("");
        for (const std::string t : {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"}) {
            const int64_t bytes = t == "IQ4_NL" ? cols / 32 * 18 : t == "IQ4_XS" ? cols / 256 * 136
                                                                                 : cols / 256 * kType(t)->typeSize;
            for (const float* im : {static_cast<const float*>(nullptr), static_cast<const float*>(imat.data())}) {
                std::vector<uint8_t> buf(bytes + 64, 0xCD);
                if (t == "IQ4_NL")
                    ggml::quantizeRowsIQ4_NL(x.data(), buf.data(), 1, cols, im);
                else if (t == "IQ4_XS")
                    ggml::quantizeRowsIQ4_XS(x.data(), buf.data(), 1, cols, im);
                else
                    kType(t)->fn(x.data(), buf.data(), 1, cols, im);
                for (int64_t i = bytes; i < bytes + 64; ++i) QCOMPARE(int(buf[i]), 0xCD);
            }
        }
    }

    // Legacy .dat format, built by hand: values = sums / ncall; ncall 0 keeps the sums.
    void imatrixLegacy() {
        std::vector<uint8_t> b;
        auto put32 = [&](int32_t v) {
            uint8_t t[4];
            std::memcpy(t, &v, 4);
            b.insert(b.end(), t, t + 4);
        };
        auto putF = [&](float v) {
            uint8_t t[4];
            std::memcpy(t, &v, 4);
            b.insert(b.end(), t, t + 4);
        };
        put32(2);
        put32(3);
        b.insert(b.end(), {'a', '.', 'w'});
        put32(4);  // ncall
        put32(2);
        putF(2.f);
        putF(6.f);
        put32(1);
        b.push_back('z');
        put32(0);  // ncall 0
        put32(1);
        putF(5.f);
        put32(17);  // trailer: chunk count, dataset
        put32(3);
        b.insert(b.end(), {'d', 'a', 't'});
        auto im = ggml::parseImatrix(b, "test.dat");
        QVERIFY2(im.ok(), im.ok() ? "" : im.error().message.c_str());
        QVERIFY(im->legacy);
        QCOMPARE(im->values.at("a.w"), (std::vector<float>{0.5f, 1.5f}));
        QCOMPARE(im->values.at("z"), (std::vector<float>{5.f}));
        QCOMPARE(im->chunkCount, int64_t(17));
        QCOMPARE(im->datasets, (std::vector<std::string>{"dat"}));
        // truncated at every length: an error or a shorter valid prefix, never a crash
        QCOMPARE(int(b.size()), 55);
        for (size_t len = 0; len < b.size(); ++len) {  // entries end at byte 44; the trailer is optional
            auto r = ggml::parseImatrix(std::span<const uint8_t>(b.data(), len), "t.dat");
            QCOMPARE(r.ok(), len >= 44);
        }
    }

    // Truncated or corrupted GGUF imatrix files give errors, not crashes.
    void imatrixGgufHostile() {
        std::ifstream in(kData + "/golden/bard-llama/imatrix/bard-llama-imatrix.gguf", std::ios::binary);
        std::vector<uint8_t> b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        QVERIFY(b.size() > 40000);
        for (size_t len : {size_t(3), size_t(4), size_t(23), size_t(100), size_t(500), size_t(3000), size_t(3700), b.size() - 30}) {
            auto r = ggml::parseImatrix(std::span<const uint8_t>(b.data(), len), "cut.gguf");
            QVERIFY(!r.ok());
        }
        std::mt19937 rng(3);
        for (int k = 0; k < 300; ++k) {
            auto c = b;
            const size_t pos = rng() % 3600;  // header, KVs and tensor infos
            c[pos] ^= static_cast<uint8_t>(1 + rng() % 255);
            auto r = ggml::parseImatrix(c, "flip.gguf");
            (void)r;  // must simply not crash or hang
        }
    }
};

QTEST_APPLESS_MAIN(TestKQuants)
#include "test_kquants.moc"
