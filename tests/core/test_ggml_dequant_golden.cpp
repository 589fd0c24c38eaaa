// Dequantization of llama.cpp's own quantized files: every tensor of every golden GGUF in
// /work/shared/golden (not in the repo) is dequantized through the GGUF reader and compared with the
// same tensor of the F32 file it was quantized from. A wrong block layout gives errors of the size
// of the weights themselves; a right one stays within the type's quantization noise.
// Without /work/shared the test reports a skip (never a pass).
#include <QtTest>

#include <cmath>
#include <filesystem>
#include <map>

#include "gguf/gguf_reader.h"
#include "model/model.h"

using namespace qz;
namespace fs = std::filesystem;

namespace {
const std::string kGold = "/work/shared/golden";

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
    void goldenFilesDequantizeCloseToF32();
};

void TestGgmlDequantGolden::goldenFilesDequantizeCloseToF32() {
    if (!fs::exists(kGold)) QSKIP("/work/shared/golden not present: llama.cpp quantized files not checked");
    const std::map<std::string, std::string> base = {
        {"bard-llama", kGold + "/bard-llama/bard-llama-F32.gguf"},
        {"bard-gpt2", kGold + "/bard-gpt2/bard-gpt2-F32.gguf"},
        {"stories260K", std::string(QZ_TEST_DATA) + "/models/stories260K/stories260K.gguf"}};
    std::map<DType, int> checked;
    for (const auto& [dir, f32Path] : base) {
        auto ref = openModel(f32Path);
        QVERIFY2(ref.ok(), f32Path.c_str());
        for (const auto& e : fs::directory_iterator(kGold + "/" + dir)) {
            if (e.path().extension() != ".gguf") continue;
            auto m = openModel(e.path().string());
            QVERIFY2(m.ok(), m.ok() ? "" : m.error().message.c_str());
            for (const auto& t : (*m)->tensors) {
                const TensorInfo* r = (*ref)->find(t.name);
                QVERIFY2(r, t.name.c_str());
                QCOMPARE(t.shape, r->shape);
                const double b = bound(t.dtype);
                QVERIFY2(b >= 0, qPrintable(QString("%1: unexpected type %2").arg(t.name.c_str(),
                                                                                 dtypeName(t.dtype).data())));
                auto x = readTensorF32(**ref, *r);
                auto y = readTensorF32(**m, t);
                QVERIFY2(y.ok(), y.ok() ? "" : y.error().message.c_str());
                double se = 0, sx = 0;
                for (size_t i = 0; i < x->size(); ++i) {
                    se += double((*x)[i] - (*y)[i]) * double((*x)[i] - (*y)[i]);
                    sx += double((*x)[i]) * double((*x)[i]);
                }
                const double rel = sx > 0 ? std::sqrt(se / sx) : std::sqrt(se);
                QVERIFY2(rel <= b, qPrintable(QString("%1 %2 (%3): relative error %4 > %5")
                                                  .arg(e.path().filename().c_str(), t.name.c_str(),
                                                       dtypeName(t.dtype).data())
                                                  .arg(rel).arg(b)));
                ++checked[t.dtype];
            }
        }
    }
    for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K,
                    DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::F16, DType::BF16})
        QVERIFY2(checked[t] > 0, dtypeName(t).data());
    QString summary;
    for (const auto& [t, n] : checked) summary += QString("%1:%2 ").arg(dtypeName(t).data()).arg(n);
    qInfo("checked tensors per type: %s", qPrintable(summary));
}

QTEST_GUILESS_MAIN(TestGgmlDequantGolden)
#include "test_ggml_dequant_golden.moc"
