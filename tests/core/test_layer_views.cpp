// The engine-side views of a result: a layer's before / after histograms (computeLayerHistograms) and
// a quantize result's weights as engine overrides (overridesFromQuantizeResult), on the bundled tiny
// model. Expected values come from direct loops over the tensors and from quantizeDequantize itself.
#include <QtTest>

#include <algorithm>
#include <cmath>

#include "jobs/layer_histograms.h"
#include "jobs/quantize_job.h"
#include "jobs/quantize_overrides.h"
#include "quant/simple_quant.h"

using namespace qz;

namespace {
const std::string kModel = std::string(QZ_RESOURCES_DIR) + "/demo/stories260K";
const std::string kLayer = "model.layers.1.mlp.down_proj.weight";
}  // namespace

class TestLayerViews : public QObject {
    Q_OBJECT
private slots:
    void layerHistograms() {
        auto m = openModel(kModel);
        QVERIFY(m.ok());
        const TensorInfo* t = (*m)->find(kLayer);
        QVERIFY(t);
        auto w = readTensorF32(**m, *t);
        QVERIFY(w.ok());
        std::vector<float> result(*w);
        for (float& v : result) v = std::round(v * 16.f) / 16.f;  // a coarse grid
        result[3] = 40.f;  // one wild value: it must not stretch the range
        auto h = computeLayerHistograms(**m, kLayer, result, 64);
        QVERIFY2(h.ok(), h.ok() ? "" : h.error().message.c_str());
        QCOMPARE(h->original.bins(), 64);
        QCOMPARE(h->original.lo, h->result.lo);
        QCOMPARE(h->original.hi, h->result.hi);
        QVERIFY(h->result.hi < 40.0);
        QCOMPARE(h->result.above, uint64_t(std::count_if(result.begin(), result.end(),
                                                         [&](float v) { return v > h->result.hi; })));
        QVERIFY(h->result.above >= 1);
        QCOMPARE(h->original.total(), uint64_t(w->size()));
        QCOMPARE(h->result.total(), uint64_t(w->size()));
        // Bin counts as a direct loop over the same bins gives them.
        std::vector<uint64_t> direct(64, 0);
        const double width = (h->original.hi - h->original.lo) / 64;
        for (float v : *w)
            if (v >= h->original.lo && v <= h->original.hi)
                ++direct[std::min<size_t>(63, size_t((v - h->original.lo) / width))];
        QCOMPARE(h->original.counts, direct);
        double maxAbs = 0;
        for (size_t i = 0; i < w->size(); ++i)
            maxAbs = std::max(maxAbs, std::fabs(double(result[i]) - (*w)[i]));
        QCOMPARE(h->stats.maxAbs, maxAbs);

        // Hostile inputs: clear errors naming the tensor.
        auto missing = computeLayerHistograms(**m, "no.such.weight", result, 64);
        QVERIFY(!missing.ok());
        QVERIFY(missing.error().message.find("no.such.weight") != std::string::npos);
        std::vector<float> shorter(result.begin(), result.end() - 1);
        auto bad = computeLayerHistograms(**m, kLayer, shorter, 64);
        QVERIFY(!bad.ok());
        QVERIFY(bad.error().message.find(kLayer) != std::string::npos);
        QVERIFY(!computeLayerHistograms(**m, kLayer, result, 0).ok());
    }

    void overridesOfAResult() {
        auto m = openModel(kModel);
        QVERIFY(m.ok());
        QuantizeParams params;
        params.spec.bits = 4;
        params.spec.granularity = Granularity::Row;
        params.filter.mode = TensorSelection::Regex;
        params.filter.regex = "layers\\.1\\.";
        auto r = runQuantize(**m, params, {});
        QVERIFY(r.ok());
        QCOMPARE(r->tensors.size(), size_t(9));  // 7 matrices and 2 norms
        int reports = 0;
        auto ov = overridesFromQuantizeResult(**m, *r, [&](const ProgressInfo&) { return ++reports, true; });
        QVERIFY(ov.ok());
        QCOMPARE(ov->size(), size_t(9));
        QVERIFY(reports >= 9);
        for (const auto& t : r->tensors) {
            const TensorInfo& info = (*m)->tensors[t.tensorIndex];
            auto x = readTensorF32(**m, info);
            QVERIFY(x.ok());
            std::vector<float> y(x->size());
            quantizeDequantize(params.spec, x->data(), info.rows(), info.cols(), y.data(), nullptr);
            QCOMPARE(ov->at(t.name), y);
        }
        // Cancelled at the first report.
        auto cancelled = overridesFromQuantizeResult(**m, *r, [](const ProgressInfo&) { return false; });
        QVERIFY(!cancelled.ok());
        QVERIFY(cancelled.error().cancelled);
    }
};

QTEST_APPLESS_MAIN(TestLayerViews)
#include "test_layer_views.moc"
