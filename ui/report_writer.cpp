#include "report_writer.h"

#include <QDir>
#include <QFileInfo>

#include "histogram_plot.h"
#include "histograms_tab.h"
#include "jobs/report.h"

namespace qz::ui {

const qz::TensorQuantResult* largestTensor(const qz::QuantizeResult& r) {
    const qz::TensorQuantResult* best = nullptr;
    for (const auto& t : r.tensors)
        if (!best || t.numel > best->numel) best = &t;
    return best;
}

qz::Result<QStringList> writeReportFolder(const QString& dir, const qz::Model& model, const qz::QuantizeResult& r,
                                          const qz::TensorQuantResult* focus) {
    if (!QDir().mkpath(dir)) return qz::makeError(toStd(dir) + ": cannot create the report folder");
    const QDir d(dir);
    if (!focus) focus = largestTensor(r);
    QStringList written;

    // Plots first, so the Markdown can link the ones that exist.
    HistogramsTab plots;  // never shown; the same widgets the window uses
    const QString method = toQ(r.spec.describe());
    plots.showModel(r.modelOriginal, r.modelDequantized, method);
    if (focus) plots.showTensor(*focus, method);
    struct Plot {
        HistogramPlot* plot;
        QString file, alt;
    };
    QList<Plot> list = {{plots.modelPlot(), QStringLiteral("histogram_model.png"), QStringLiteral("All selected weights")}};
    if (focus) {
        list.append({plots.tensorPlot(), QStringLiteral("histogram_tensor.png"), QStringLiteral("Tensor histogram")});
        list.append({plots.errorPlot(), QStringLiteral("histogram_tensor_error.png"), QStringLiteral("Tensor error")});
    }
    QString plotsMd = QStringLiteral("\n## Plots\n\n");
    for (const Plot& p : list) {
        QString error;
        const QString path = d.filePath(p.file);
        if (!p.plot->exportTo(path, 1000, 600, &error)) return qz::makeError(toStd(error));
        written << path;
        plotsMd += QStringLiteral("![%1](%2)\n\n").arg(p.alt, p.file);
    }
    if (focus) plotsMd += QStringLiteral("Tensor plots show `%1`.\n").arg(toQ(focus->name));

    const QString json = d.filePath(QStringLiteral("report.json"));
    if (auto st = qz::writeFileAtomic(toStd(json), qz::reportJson(model, r)); !st) return st.error();
    written << json;
    const QString md = d.filePath(QStringLiteral("report.md"));
    if (auto st = qz::writeFileAtomic(toStd(md), qz::reportMarkdown(model, r) + toStd(plotsMd)); !st)
        return st.error();
    written << md;
    return written;
}

}  // namespace qz::ui
