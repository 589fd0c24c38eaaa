#include "type_compare_view.h"

#include <QGridLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QListWidget>
#include <QMetaObject>
#include <QPointer>
#include <QSplitter>
#include <QTableWidget>
#include <QVBoxLayout>
#include <cmath>
#include <qcustomplot.h>

#include "histogram_plot.h"

namespace qz::ui {

namespace {
const char* const kDefaultTypes[] = {"Q2_K", "Q3_K", "Q4_0", "Q4_K", "Q5_K", "Q6_K", "Q8_0"};
const char* const kAllTypes[] = {"Q2_K", "Q3_K", "Q4_0", "Q4_1", "Q4_K", "Q5_0", "Q5_1", "Q5_K", "Q6_K", "Q8_0", "F16", "BF16"};
}  // namespace

TypeCompareView::TypeCompareView(QWidget* parent) : QWidget(parent) {
    m_pool.setMaxThreadCount(1);
    m_title = new QLabel(tr("Select a tensor in the plan to see it under several types."), this);
    m_types = new QListWidget(this);
    for (const char* t : kAllTypes) {
        auto* item = new QListWidgetItem(QString::fromLatin1(t), m_types);
        bool on = false;
        for (const char* d : kDefaultTypes) on = on || !qstrcmp(d, t);
        item->setCheckState(on ? Qt::Checked : Qt::Unchecked);
    }
    m_types->setMaximumWidth(110);
    connect(m_types, &QListWidget::itemChanged, this, [this] { recompute(); });

    auto* plotsHost = new QWidget(this);
    m_grid = new QGridLayout(plotsHost);
    m_grid->setContentsMargins(0, 0, 0, 0);
    m_table = new QTableWidget(0, 6, this);
    m_table->setHorizontalHeaderLabels({tr("type"), tr("bytes"), tr("bits/weight"), tr("MSE"), tr("SQNR dB"), tr("cosine")});
    m_table->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
    m_table->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_table->setSortingEnabled(true);

    auto* split = new QSplitter(Qt::Vertical, this);
    split->addWidget(plotsHost);
    split->addWidget(m_table);
    split->setStretchFactor(0, 3);
    auto* row = new QHBoxLayout;
    row->addWidget(m_types);
    row->addWidget(split, 1);
    auto* lay = new QVBoxLayout(this);
    lay->addWidget(m_title);
    lay->addLayout(row, 1);
}

TypeCompareView::~TypeCompareView() {
    ++m_request;
    m_pool.waitForDone();
}

void TypeCompareView::setModel(ModelPtr model) {
    m_model = std::move(model);
    m_tensor.clear();
    ++m_request;
    for (auto* p : m_plots) p->clear();
    m_table->setRowCount(0);
    m_title->setText(tr("Select a tensor in the plan to see it under several types."));
}

void TypeCompareView::showTensor(const QString& tensorName) {
    m_tensor = tensorName;
    recompute();
}

void TypeCompareView::recompute() {
    if (!m_model || m_tensor.isEmpty()) return;
    std::vector<qz::DType> types;
    for (int i = 0; i < m_types->count(); ++i)
        if (m_types->item(i)->checkState() == Qt::Checked)
            if (auto t = qz::dtypeFromName(toStd(m_types->item(i)->text()))) types.push_back(*t);
    const quint64 id = ++m_request;
    m_title->setText(tr("Quantizing %1 under %2 types…").arg(m_tensor).arg(types.size()));
    QPointer<TypeCompareView> self(this);
    auto model = m_model;
    const std::string name = toStd(m_tensor);
    m_pool.start([self, this, id, model, name, types] {
        if (!self || id != m_request.load()) return;
        auto r = qz::compareTensorTypes(*model, name, types, 120);
        QMetaObject::invokeMethod(
            self,
            [self, this, id, ok = r.ok(), c = r.ok() ? *r : qz::TypeComparison{},
             msg = r.ok() ? QString() : toDisplay(r.error().message)] {
                if (!self || id != m_request.load()) return;
                if (!ok) {
                    m_title->setText(msg);
                    return;
                }
                display(c);
            },
            Qt::QueuedConnection);
    });
}

void TypeCompareView::display(const qz::TypeComparison& c) {
    m_title->setText(tr("%1 [%2 × %3]: original (blue) and each type's dequantized weights, shared axes")
                         .arg(toDisplay(c.tensor))
                         .arg(c.ne.size() > 0 ? c.ne[0] : 0)
                         .arg(c.ne.size() > 1 ? c.ne[1] : 0));
    const int n = static_cast<int>(c.variants.size());
    while (m_plots.size() < n) {
        auto* p = new HistogramPlot(this);
        p->setMinimumHeight(160);
        m_plots.append(p);
    }
    for (auto* p : m_plots) {
        m_grid->removeWidget(p);
        p->hide();
    }
    const int cols = n <= 4 ? 2 : 3;
    double yMax = 0;
    for (int i = 0; i < n; ++i)
        for (uint64_t v : c.variants[i].histogram.counts) yMax = std::max(yMax, double(v));
    for (uint64_t v : c.original.counts) yMax = std::max(yMax, double(v));
    m_table->setSortingEnabled(false);
    m_table->setRowCount(n);
    for (int i = 0; i < n; ++i) {
        const auto& v = c.variants[i];
        const QString type = toQ(std::string(qz::dtypeName(v.type)));
        HistogramPlot* p = m_plots[i];
        p->setTitle(v.supported ? tr("%1 — %2 bpw, SQNR %3 dB").arg(type).arg(v.bitsPerWeight, 0, 'f', 3).arg(v.error.sqnrDb, 0, 'f', 1)
                                : tr("%1 — does not fit rows of %2").arg(type).arg(c.ne.empty() ? 0 : c.ne[0]));
        if (v.supported)
            p->setSeries({{tr("original"), c.original, HistogramPlot::originalColor()},
                          {type, v.histogram, HistogramPlot::quantizedColor()}});
        else
            p->clear(tr("not applicable"));
        // Shared axes: the same x range (the bins are shared) and the same count range everywhere.
        p->customPlot()->xAxis->setRange(c.original.lo, c.original.hi);
        if (!p->logScale()) p->customPlot()->yAxis->setRange(0, yMax * 1.05);
        p->customPlot()->replot();
        m_grid->addWidget(p, i / cols, i % cols);
        p->show();
        auto cell = [&](int col, const QString& text, double sortValue) {
            auto* item = new QTableWidgetItem(text);
            item->setData(Qt::UserRole, sortValue);
            m_table->setItem(i, col, item);
        };
        cell(0, type, i);
        cell(1, v.supported ? QString::number(v.bytes) : QStringLiteral("—"), double(v.bytes));
        cell(2, v.supported ? QString::number(v.bitsPerWeight, 'f', 3) : QStringLiteral("—"), v.bitsPerWeight);
        cell(3, v.supported ? QString::number(v.error.mse, 'e', 3) : QStringLiteral("—"), v.error.mse);
        cell(4, v.supported ? QString::number(v.error.sqnrDb, 'f', 2) : QStringLiteral("—"), v.error.sqnrDb);
        cell(5, v.supported ? QString::number(v.error.cosine, 'f', 6) : QStringLiteral("—"), v.error.cosine);
    }
    m_table->setSortingEnabled(true);
    emit ready();
}

}  // namespace qz::ui
