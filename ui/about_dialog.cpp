#include "about_dialog.h"

#include <QDialogButtonBox>
#include <QIcon>
#include <QLabel>
#include <QVBoxLayout>
#include <qcustomplot.h>

#include "quantzoo_config.h"

namespace qz::ui {

QString AboutDialog::text() {
    const QString openblas = QStringLiteral(QZ_BUILT_WITH_OPENBLAS);
    const QString rows = tr("<tr><td><b>Qt</b> %1</td><td>LGPL-3.0 — The Qt Company</td></tr>"
                            "<tr><td><b>QCustomPlot</b> %2</td><td>GPL-3.0 — Emanuel Eichhammer</td></tr>"
                            "<tr><td><b>Eigen</b> %3</td><td>MPL-2.0</td></tr>"
                            "<tr><td><b>OpenBLAS</b> %4</td><td>BSD-3-Clause</td></tr>"
                            "<tr><td><b>nlohmann/json</b></td><td>MIT — Niels Lohmann</td></tr>")
                             .arg(QString::fromLatin1(qVersion()), QStringLiteral(QCUSTOMPLOT_VERSION_STR),
                                  QStringLiteral(QZ_BUILT_WITH_EIGEN),
                                  openblas.isEmpty() ? tr("(not used in this build)") : openblas);
    return tr("<h2>QuantZoo %1</h2>"
              "<p>A workstation for quantizing language models: open, quantize, compare histograms and "
              "errors, "
              "measure, export.</p>"
              "<p>Copyright © 2026 The QuantZoo authors. QuantZoo is free software under the <b>MIT "
              "licence</b>. "
              "The programs link QCustomPlot, so the executables as a whole are distributed under the terms "
              "of "
              "the GPL-3.0.</p>"
              "<p><b>Built on</b></p><table cellspacing=\"4\">%2</table>"
              "<p><b>Bundled data</b></p>"
              "<table cellspacing=\"4\">"
              "<tr><td>Demo model <i>stories260K</i></td><td>Andrej Karpathy's tinyllamas, trained on "
              "TinyStories — MIT</td></tr>"
              "<tr><td>Sample text <i>shakespeare-valid.txt</i></td><td>tiny-shakespeare, validation split — "
              "public domain</td></tr>"
              "</table>"
              "<p>The licence texts are installed with the data (share/quantzoo).</p>")
        .arg(QStringLiteral(QZ_VERSION), rows);
}

AboutDialog::AboutDialog(QWidget* parent) : QDialog(parent) {
    setObjectName(QStringLiteral("aboutDialog"));
    setWindowTitle(tr("About QuantZoo"));
    auto* icon = new QLabel(this);
    icon->setPixmap(QIcon(QStringLiteral(":/icons/quantzoo.svg")).pixmap(64, 64));
    icon->setAlignment(Qt::AlignTop);
    auto* label = new QLabel(text(), this);
    label->setObjectName(QStringLiteral("aboutText"));
    label->setWordWrap(true);
    label->setTextInteractionFlags(Qt::TextBrowserInteraction);
    label->setMinimumWidth(520);
    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close, this);
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    auto* row = new QHBoxLayout;
    row->addWidget(icon);
    row->addWidget(label, 1);
    auto* layout = new QVBoxLayout(this);
    layout->addLayout(row);
    layout->addWidget(buttons);
}

} // namespace qz::ui
