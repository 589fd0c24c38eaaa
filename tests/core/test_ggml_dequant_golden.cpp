// Dequantization of llama.cpp's own quantized files: every tensor of every golden GGUF in
// tests/data/golden/<model>/ is dequantized through the GGUF reader and compared with the same tensor
// of the F32 file it was quantized from. A wrong block layout gives errors of the size of the weights
// themselves; a right one stays within the type's quantization noise.
// The F32 reference of bard-llama and bard-gpt2 is not committed (13.6 + 10.8 MB): it is made from the
// HF model by the converter and checked against the sha256 of llama.cpp's F32 file (tensors.tsv)
// before use, so it is llama.cpp's F32 file, byte for byte. stories260K's reference is its F32 GGUF.
#include <QtTest>

#include <cmath>
#include <filesystem>
#include <map>

#include "convert/hf_to_gguf.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_reader.h"
#include "golden.h"
#include "model/model.h"
#include "sha256.h"

using namespace qz;
namespace fs = std::filesystem;

namespace {
const std::string kGold = std::string(QZ_TEST_DATA) + "/golden";

// The F32 values of every tensor of a model's F32 GGUF, by tensor name, with its shape (outermost first).
using Reference = std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>>;

// From the HF model through the converter; every tensor must hash to llama.cpp's F32 file's.
QString referenceFromHf(const std::string& model, Reference& out) {
    auto m = openModel(std::string(QZ_TEST_DATA) + "/models/" + model);
    if (!m.ok()) return QString::fromStdString(m.error().message);
    auto plan = planHfToGguf(**m);
    if (!plan.ok()) return QString::fromStdString(plan.error().message);
    const auto gold = golden::forFile(
        golden::load(QString::fromStdString(kGold + "/" + model + "/tensors.tsv")), model + "-F32.gguf");
    if (gold.size() != plan->tensors.size())
        return QString("%1: %2 tensors planned, llama.cpp's F32 file has %3")
            .arg(model.c_str())
            .arg(plan->tensors.size())
            .arg(gold.size());
    for (const auto& g : gold) {
        const PlannedTensor* t = nullptr;
        for (const auto& p : plan->tensors)
            if (p.ggufName == g.tensor) t = &p;
        if (!t) return QString("%1: %2 not planned").arg(model.c_str(), g.tensor.c_str());
        std::vector<float> v;
        if (auto st = produceTensor(**m, *plan, *t, v); !st.ok())
            return QString::fromStdString(st.error().message);
        if (qz::test::sha256Hex(v.data(), v.size() * sizeof(float)) != g.sha256)
            return QString("%1: %2 differs from llama.cpp's F32 file").arg(model.c_str(), g.tensor.c_str());
        out[g.tensor] = {std::vector<int64_t>(t->ne.rbegin(), t->ne.rend()), std::move(v)}; // outermost first
    }
    return {};
}

// From an F32 GGUF file.
QString referenceFromGguf(const std::string& path, Reference& out) {
    auto m = openModel(path);
    if (!m.ok()) return QString::fromStdString(m.error().message);
    for (const auto& t : (*m)->tensors) {
        auto v = readTensorF32(**m, t);
        if (!v.ok()) return QString::fromStdString(v.error().message);
        out[t.name] = {t.shape, std::move(*v)};
    }
    return {};
}

// Upper bound of RMS(error) / RMS(weights) per storage type (generous: catches layout errors).
double bound(DType t) {
    switch (t) {
    case DType::F32: return 0.0;
    case DType::F16: case DType::BF16: return 0.01;
    case DType::Q8_0: return 0.02;
    case DType::Q6_K: return 0.05;
    case DType::Q5_0: case DType::Q5_1: case DType::Q5_K: return 0.08;
    case DType::Q4_0: case DType::Q4_1: case DType::Q4_K: case DType::IQ4_NL: return 0.16;
    case DType::Q3_K: return 0.3;
    case DType::Q2_K: return 0.6;
    default: return -1;
    }
}
}  // namespace

class TestGgmlDequantGolden : public QObject {
    Q_OBJECT
private slots:
    void goldenFilesAreLlamaCppBytes();
    void goldenFilesDequantizeCloseToF32();
};

// The committed files are llama.cpp's, byte for byte: every tensor's data hashes to its tensors.tsv entry.
void TestGgmlDequantGolden::goldenFilesAreLlamaCppBytes() {
    int files = 0, tensors = 0;
    for (const std::string dir : {"bard-llama", "bard-gpt2", "stories260K"}) {
        const auto all = golden::load(QString::fromStdString(kGold + "/" + dir + "/tensors.tsv"));
        QVERIFY2(!all.empty(), dir.c_str());
        for (const auto& e : fs::directory_iterator(kGold + "/" + dir)) {
            if (e.path().extension() != ".gguf") continue;
            const std::string name = e.path().filename().string();
            const auto gold = golden::forFile(all, name);
            QVERIFY2(!gold.empty(), (name + ": not in tensors.tsv").c_str());
            auto f = GgufFile::open(e.path().string());
            QVERIFY2(f.ok(), f.ok() ? "" : f.error().message.c_str());
            QCOMPARE((*f)->tensors.size(), gold.size());
            for (const auto& g : gold) {
                const GgufTensor* t = nullptr;
                for (const auto& x : (*f)->tensors)
                    if (x.name == g.tensor) t = &x;
                QVERIFY2(t, (name + " " + g.tensor).c_str());
                const auto bytes = (*f)->tensorBytes(*t);
                QVERIFY2(qz::test::sha256Hex(bytes.data(), bytes.size()) == g.sha256,
                         (name + " " + g.tensor + ": not llama.cpp's bytes").c_str());
                ++tensors;
            }
            ++files;
        }
    }
    QVERIFY(files >= 6);
    qInfo("%d golden files, %d tensors: sha256 as in tensors.tsv", files, tensors);
}

void TestGgmlDequantGolden::goldenFilesDequantizeCloseToF32() {
    std::map<DType, int> checked;
    int files = 0;
    for (const std::string dir : {"bard-llama", "bard-gpt2", "stories260K"}) {
        Reference ref;
        const QString err =
            dir == "stories260K"
                ? referenceFromGguf(std::string(QZ_TEST_DATA) + "/models/stories260K/stories260K.gguf", ref)
                : referenceFromHf(dir, ref);
        QVERIFY2(err.isEmpty(), qPrintable(err));
        int filesHere = 0;
        for (const auto& e : fs::directory_iterator(kGold + "/" + dir)) {
            if (e.path().extension() != ".gguf") continue;
            ++files;
            ++filesHere;
            auto m = openModel(e.path().string());
            QVERIFY2(m.ok(), m.ok() ? "" : m.error().message.c_str());
            for (const auto& t : (*m)->tensors) {
                const auto r = ref.find(t.name);
                QVERIFY2(r != ref.end(), t.name.c_str());
                QCOMPARE(t.shape, r->second.first);
                const double b = bound(t.dtype);
                QVERIFY2(b >= 0, qPrintable(QString("%1: unexpected type %2").arg(t.name.c_str(),
                                                                                 dtypeName(t.dtype).data())));
                const std::vector<float>& x = r->second.second;
                auto y = readTensorF32(**m, t);
                QVERIFY2(y.ok(), y.ok() ? "" : y.error().message.c_str());
                QCOMPARE(y->size(), x.size());
                double se = 0, sx = 0;
                for (size_t i = 0; i < x.size(); ++i) {
                    se += double(x[i] - (*y)[i]) * double(x[i] - (*y)[i]);
                    sx += double(x[i]) * double(x[i]);
                }
                const double rel = sx > 0 ? std::sqrt(se / sx) : std::sqrt(se);
                QVERIFY2(rel <= b, qPrintable(QString("%1 %2 (%3): relative error %4 > %5")
                                                  .arg(e.path().filename().c_str(), t.name.c_str(),
                                                       dtypeName(t.dtype).data())
                                                  .arg(rel).arg(b)));
                ++checked[t.dtype];
            }
        }
        QVERIFY2(filesHere > 0, (dir + ": no golden GGUF file").c_str());
    }
    // The committed files hold every type but Q4_1 and Q5_1 (only llama.cpp's 2.2 and 2.6 MB bard-llama
    // Q4_1 / Q5_1 files have those; test_ggml_vs_libggml compares their dequantization with libggml's).
    for (DType t : {DType::Q4_0, DType::Q5_0, DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K,
                    DType::Q6_K, DType::F16, DType::BF16})
        QVERIFY2(checked[t] > 0, dtypeName(t).data());
    QString summary;
    for (const auto& [t, n] : checked) summary += QString("%1:%2 ").arg(dtypeName(t).data()).arg(n);
    qInfo("checked %d golden files; tensors per type: %s", files, qPrintable(summary));
}

QTEST_GUILESS_MAIN(TestGgmlDequantGolden)
#include "test_ggml_dequant_golden.moc"
