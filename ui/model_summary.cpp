#include "model_summary.h"

#include "format.h"

namespace qz::ui {

ModelSummary::ModelSummary(QWidget* parent) : QTextBrowser(parent) {
    setObjectName(QStringLiteral("modelSummary"));
    setOpenLinks(false);
    setModel(nullptr);
}

QString ModelSummary::formatName(qz::ModelFormat f) {
    switch (f) {
    case qz::ModelFormat::SafetensorsFile: return QStringLiteral("safetensors file");
    case qz::ModelFormat::HuggingFaceFolder: return QStringLiteral("Hugging Face folder");
    case qz::ModelFormat::Gguf: return QStringLiteral("GGUF");
    }
    return {};
}

void ModelSummary::setModel(ModelPtr model) {
    if (!model) {
        setHtml(tr("<p><i>No model open.</i></p><p>Use <b>File › Open</b> or drop a model folder, "
                   "a .safetensors or a .gguf file onto the window.</p>"));
        return;
    }
    uint64_t disk = 0;
    for (const auto& f : model->files)
        if (f) disk += f->size();
    auto row = [](const QString& k, const QString& v) {
        return QStringLiteral("<tr><td><b>%1</b></td><td>%2</td></tr>").arg(k.toHtmlEscaped(), v.toHtmlEscaped());
    };
    QString html = QStringLiteral("<h3>%1</h3><table cellspacing='2'>").arg(toDisplay(model->name).toHtmlEscaped());
    html += row(tr("Architecture"), model->architecture.empty() ? tr("(unknown)") : toDisplay(model->architecture));
    html += row(tr("Format"), formatName(model->format));
    html += row(tr("Tensors"), QString::number(model->tensors.size()));
    html += row(tr("Parameters"), formatCount(model->totalParameters()) +
                                      QStringLiteral(" (%1)").arg(model->totalParameters()));
    html += row(tr("Tensor data"), formatBytes(model->totalBytes()));
    html += row(tr("Size on disk"), formatBytes(disk) + tr(" in %n file(s)", nullptr, int(model->files.size())));
    html += row(tr("Path"), toDisplay(model->path));
    html += QStringLiteral("</table>");
    if (!model->metadata.empty()) {
        html += tr("<h4>Metadata</h4>") + QStringLiteral("<table cellspacing='2'>");
        int shown = 0;
        for (const auto& m : model->metadata) {
            QString v = toDisplay(m.value);
            if (v.size() > 200) v = v.left(200) + QStringLiteral("…");
            html += row(toDisplay(m.key), v);
            if (++shown >= 200) break;  // GGUF files may carry huge vocabularies
        }
        html += QStringLiteral("</table>");
    }
    setHtml(html);
}

}  // namespace qz::ui
