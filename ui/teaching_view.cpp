#include "teaching_view.h"

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QFutureWatcher>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QStackedWidget>
#include <QTableWidget>
#include <QTimer>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>
#include <algorithm>
#include <cmath>
#include <qcustomplot.h>

#include "exl2/exl2_export.h"
#include "exl2/exl2_measure.h"

namespace qz::ui {

namespace {

QCustomPlot* makePlot(QWidget* parent, const QString& objectName, int minHeight) {
    auto* p = new QCustomPlot(parent);
    p->setObjectName(objectName);
    p->setMinimumHeight(minHeight);
    p->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    p->legend->setVisible(true);
    p->legend->setBrush(QColor(255, 255, 255, 200));
    p->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignTop | Qt::AlignRight);
    return p;
}

void clearPlot(QCustomPlot* p) {
    p->clearPlottables();
    p->clearItems();
    p->yAxis2->setVisible(false);
    p->xAxis->setTicker(QSharedPointer<QCPAxisTicker>::create());
    p->yAxis->setTicker(QSharedPointer<QCPAxisTicker>::create());
}

QCPGraph* addPoints(QCustomPlot* p, const QString& name, const QVector<double>& x, const QVector<double>& y,
                    const QColor& color, QCPScatterStyle::ScatterShape shape, double size,
                    QCPAxis* valueAxis = nullptr) {
    QCPGraph* g = p->addGraph(p->xAxis, valueAxis ? valueAxis : p->yAxis);
    g->setName(name);
    g->setData(x, y);
    g->setLineStyle(QCPGraph::lsNone);
    g->setScatterStyle(QCPScatterStyle(shape, color, size));
    g->setPen(QPen(color));
    return g;
}

QCPItemLine* addLine(QCustomPlot* p, double x0, double y0, double x1, double y1, const QPen& pen) {
    auto* l = new QCPItemLine(p);
    l->start->setCoords(x0, y0);
    l->end->setCoords(x1, y1);
    l->setPen(pen);
    return l;
}

QCPItemText* addText(QCustomPlot* p, double x, double y, const QString& text, Qt::Alignment align) {
    auto* t = new QCPItemText(p);
    t->position->setCoords(x, y);
    t->setPositionAlignment(align);
    t->setText(text);
    t->setFont(QFont(p->font().family(), 8));
    return t;
}

QString num(double v, int prec = 4) {
    return QString::number(v, 'g', prec);
}

QLabel* captionLabel(QWidget* parent, const QString& objectName) {
    auto* l = new QLabel(parent);
    l->setObjectName(objectName);
    l->setWordWrap(true);
    l->setTextFormat(Qt::RichText);
    l->setStyleSheet(QStringLiteral("QLabel { background: #f6f6ee; border: 1px solid #ddd; padding: 6px; }"));
    return l;
}

QSpinBox* spin(QWidget* parent, const char* objectName, int lo, int hi, int value) {
    auto* s = new QSpinBox(parent);
    s->setObjectName(QString::fromLatin1(objectName));
    s->setRange(lo, hi);
    s->setValue(value);
    return s;
}

const QColor kBlue(31, 119, 180), kOrange(255, 127, 14), kRed(214, 39, 40), kGrey(150, 150, 150),
    kGreen(44, 160, 44);

} // namespace

TeachingView::TeachingView(QWidget* parent) : QWidget(parent) {
    auto* top = new QVBoxLayout(this);
    auto* head = new QHBoxLayout;
    m_viewCombo = new QComboBox(this);
    m_viewCombo->setObjectName(QStringLiteral("teachViewCombo"));
    m_viewCombo->addItems({tr("Absmax vs zero-point on a number line"), tr("A k-quant super-block opened up"),
                           tr("GPTQ's error feedback, column by column"), tr("EXL2's bits per layer")});
    head->addWidget(new QLabel(tr("View:"), this));
    head->addWidget(m_viewCombo);
    m_title = new QLabel(this);
    m_title->setObjectName(QStringLiteral("teachTitle"));
    head->addWidget(m_title, 1);
    top->addLayout(head);
    m_stack = new QStackedWidget(this);
    for (int v = 0; v < ViewCount; ++v) {
        m_captions[v] = captionLabel(this, QStringLiteral("teachCaption%1").arg(v));
        m_infos[v] = new QLabel(this);
        m_infos[v]->setObjectName(QStringLiteral("teachInfo%1").arg(v));
        m_infos[v]->setWordWrap(true);
        m_infos[v]->setTextInteractionFlags(Qt::TextSelectableByMouse);
    }
    m_stack->addWidget(buildNumberLinePage());
    m_stack->addWidget(buildSuperBlockPage());
    m_stack->addWidget(buildGptqPage());
    m_stack->addWidget(buildExl2Page());
    top->addWidget(m_stack, 1);
    connect(m_viewCombo, &QComboBox::currentIndexChanged, this, [this](int i) {
        m_stack->setCurrentIndex(i);
        if (i != GptqView) gptqPlay(false);
    });
    m_timer = new QTimer(this);
    m_timer->setInterval(400);
    connect(m_timer, &QTimer::timeout, this, [this] {
        if (!m_trace || m_step >= m_trace->cols) return gptqPlay(false);
        gptqStep(+1);
    });
    for (int v = 0; v < ViewCount; ++v)
        fail(View(v), tr("Open a model and select a tensor."));
}

TeachingView::~TeachingView() {
    if (m_calibCancel) *m_calibCancel = true;
    if (m_optCancel) *m_optCancel = true; // a running optimizer stops; it holds no reference to the view
}

QWidget* TeachingView::buildNumberLinePage() {
    auto* page = new QWidget(this);
    auto* l = new QVBoxLayout(page);
    auto* c = new QHBoxLayout;
    m_nlRow = spin(page, "nlRow", 0, 0, 0);
    m_nlCol = spin(page, "nlCol", 0, 0, 0);
    m_nlCount = spin(page, "nlCount", 2, 64, 16);
    m_nlBits = spin(page, "nlBits", 2, 8, 4);
    for (auto [label, w] : {std::pair{tr("row"), m_nlRow},
                            {tr("first column"), m_nlCol},
                            {tr("values"), m_nlCount},
                            {tr("bits"), m_nlBits}}) {
        c->addWidget(new QLabel(label, page));
        c->addWidget(w);
        connect(w, &QSpinBox::valueChanged, this, [this] {
            if (!m_updating) refreshNumberLine();
        });
    }
    c->addStretch(1);
    l->addLayout(c);
    m_plots[NumberLineView][0] = makePlot(page, QStringLiteral("numberLinePlot"), 320);
    l->addWidget(m_plots[NumberLineView][0], 1);
    l->addWidget(m_infos[NumberLineView]);
    l->addWidget(m_captions[NumberLineView]);
    return page;
}

QWidget* TeachingView::buildSuperBlockPage() {
    auto* page = new QWidget(this);
    auto* l = new QVBoxLayout(page);
    auto* c = new QHBoxLayout;
    m_kqType = new QComboBox(page);
    m_kqType->setObjectName(QStringLiteral("kqType"));
    for (DType t : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K})
        m_kqType->addItem(toQ(std::string(dtypeName(t))), int(t));
    m_kqType->setCurrentIndex(2);
    m_kqRow = spin(page, "kqRow", 0, 0, 0);
    m_kqBlock = spin(page, "kqBlock", 0, 0, 0);
    c->addWidget(new QLabel(tr("type"), page));
    c->addWidget(m_kqType);
    c->addWidget(new QLabel(tr("row"), page));
    c->addWidget(m_kqRow);
    c->addWidget(new QLabel(tr("super-block"), page));
    c->addWidget(m_kqBlock);
    c->addStretch(1);
    connect(m_kqType, &QComboBox::currentIndexChanged, this, [this] {
        if (!m_updating) refreshSuperBlock();
    });
    for (QSpinBox* s : {m_kqRow, m_kqBlock})
        connect(s, &QSpinBox::valueChanged, this, [this] {
            if (!m_updating) refreshSuperBlock();
        });
    l->addLayout(c);
    m_plots[SuperBlockView][0] = makePlot(page, QStringLiteral("superBlockPlot"), 220);
    m_plots[SuperBlockView][1] = makePlot(page, QStringLiteral("superBlockCodesPlot"), 140);
    l->addWidget(m_plots[SuperBlockView][0], 2);
    l->addWidget(m_plots[SuperBlockView][1], 1);
    m_kqTable = new QTableWidget(page);
    m_kqTable->setObjectName(QStringLiteral("kqTable"));
    m_kqTable->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_kqTable->setMinimumHeight(120);
    l->addWidget(m_kqTable, 1);
    l->addWidget(m_infos[SuperBlockView]);
    l->addWidget(m_captions[SuperBlockView]);
    return page;
}

QWidget* TeachingView::buildGptqPage() {
    auto* page = new QWidget(this);
    auto* l = new QVBoxLayout(page);
    auto* c = new QHBoxLayout;
    m_gRow = spin(page, "gptqRow", 0, 0, 0);
    m_gCol = spin(page, "gptqCol", 0, 0, 0);
    m_gRows = spin(page, "gptqRows", 1, 16, 8);
    m_gCols = spin(page, "gptqCols", 2, 32, 16);
    m_gBits = new QComboBox(page);
    m_gBits->setObjectName(QStringLiteral("gptqBits"));
    for (int b : {2, 3, 4, 8})
        m_gBits->addItem(QString::number(b), b);
    m_gBits->setCurrentIndex(1);
    for (auto [label, w] : {std::pair{tr("first row"), m_gRow},
                            {tr("first column"), m_gCol},
                            {tr("rows"), m_gRows},
                            {tr("columns"), m_gCols}}) {
        c->addWidget(new QLabel(label, page));
        c->addWidget(w);
        connect(w, &QSpinBox::valueChanged, this, [this] {
            if (!m_updating) refreshGptq();
        });
    }
    c->addWidget(new QLabel(tr("bits"), page));
    c->addWidget(m_gBits);
    connect(m_gBits, &QComboBox::currentIndexChanged, this, [this] {
        if (!m_updating) refreshGptq();
    });
    c->addStretch(1);
    l->addLayout(c);
    auto* h = new QHBoxLayout;
    m_gHess = new QComboBox(page);
    m_gHess->setObjectName(QStringLiteral("gptqHessian"));
    m_gHess->addItems({tr("synthetic activations"), tr("calibration text")});
    m_gCalib = new QLineEdit(page);
    m_gCalib->setObjectName(QStringLiteral("gptqCalibPath"));
    m_gCalib->setPlaceholderText(tr("a text file to run through the model"));
    auto* browse = new QPushButton(tr("Browse…"), page);
    h->addWidget(new QLabel(tr("Hessian from"), page));
    h->addWidget(m_gHess);
    h->addWidget(m_gCalib, 1);
    h->addWidget(browse);
    connect(browse, &QPushButton::clicked, this, [this] {
        const QString p = QFileDialog::getOpenFileName(this, tr("Calibration text"), QString(),
                                                       tr("Text (*.txt);;All files (*)"));
        if (!p.isEmpty()) setGptqCalibration(p);
    });
    connect(m_gHess, &QComboBox::currentIndexChanged, this, [this](int i) {
        if (m_updating) return;
        setGptqCalibration(i == 1 ? m_gCalib->text() : QString());
    });
    connect(m_gCalib, &QLineEdit::editingFinished, this, [this] {
        if (m_gHess->currentIndex() == 1) setGptqCalibration(m_gCalib->text());
    });
    l->addLayout(h);
    auto* b = new QHBoxLayout;
    m_gReset = new QPushButton(tr("Start"), page);
    m_gPrev = new QPushButton(tr("◀ Previous"), page);
    m_gNext = new QPushButton(tr("Next ▶"), page);
    m_gPlay = new QPushButton(tr("Play"), page);
    m_gPlay->setCheckable(true);
    m_gStep = new QLabel(page);
    m_gStep->setObjectName(QStringLiteral("gptqStepLabel"));
    for (QPushButton* p : {m_gReset, m_gPrev, m_gNext, m_gPlay})
        b->addWidget(p);
    b->addWidget(m_gStep, 1);
    connect(m_gReset, &QPushButton::clicked, this, [this] { gptqSetStep(0); });
    connect(m_gPrev, &QPushButton::clicked, this, [this] { gptqStep(-1); });
    connect(m_gNext, &QPushButton::clicked, this, [this] { gptqStep(+1); });
    connect(m_gPlay, &QPushButton::toggled, this, [this](bool on) { gptqPlay(on); });
    l->addLayout(b);
    m_plots[GptqView][0] = makePlot(page, QStringLiteral("gptqChangePlot"), 220);
    m_plots[GptqView][1] = makePlot(page, QStringLiteral("gptqErrorPlot"), 160);
    l->addWidget(m_plots[GptqView][0], 3);
    l->addWidget(m_plots[GptqView][1], 2);
    l->addWidget(m_infos[GptqView]);
    l->addWidget(m_captions[GptqView]);
    return page;
}

QWidget* TeachingView::buildExl2Page() {
    auto* page = new QWidget(this);
    auto* l = new QVBoxLayout(page);
    auto* c = new QHBoxLayout;
    m_exl2Module = new QComboBox(page);
    m_exl2Module->setObjectName(QStringLiteral("exl2Module"));
    c->addWidget(new QLabel(tr("module"), page));
    c->addWidget(m_exl2Module, 1);
    m_exl2Open = new QPushButton(tr("Open measurement.json…"), page);
    m_exl2Open->setObjectName(QStringLiteral("exl2OpenMeasurement"));
    m_exl2Target = new QDoubleSpinBox(page);
    m_exl2Target->setObjectName(QStringLiteral("exl2Target"));
    m_exl2Target->setRange(2.0, 8.0);
    m_exl2Target->setSingleStep(0.25);
    m_exl2Target->setValue(4.0);
    m_exl2Target->setSuffix(tr(" bpw"));
    c->addWidget(new QLabel(tr("target"), page));
    c->addWidget(m_exl2Target);
    c->addWidget(m_exl2Open);
    connect(m_exl2Open, &QPushButton::clicked, this, [this] {
        const QString p =
            QFileDialog::getOpenFileName(this, tr("Open an EXL2 measurement of this model"), QString(),
                                         tr("measurement.json (*.json);;All files (*)"));
        if (!p.isEmpty()) loadExl2Measurement(p, m_exl2Target->value());
    });
    // A new target re-runs the optimizer on the measurement last opened.
    connect(m_exl2Target, &QDoubleSpinBox::editingFinished, this, [this] {
        if (!m_exl2Path.isEmpty()) loadExl2Measurement(m_exl2Path, m_exl2Target->value());
    });
    connect(m_exl2Module, &QComboBox::currentIndexChanged, this, [this] {
        if (!m_updating) drawExl2Module();
    });
    l->addLayout(c);
    m_plots[Exl2View][0] = makePlot(page, QStringLiteral("exl2OptionsPlot"), 240);
    m_plots[Exl2View][1] = makePlot(page, QStringLiteral("exl2ChosenPlot"), 180);
    l->addWidget(m_plots[Exl2View][0], 3);
    l->addWidget(m_plots[Exl2View][1], 2);
    l->addWidget(m_infos[Exl2View]);
    l->addWidget(m_captions[Exl2View]);
    return page;
}

void TeachingView::setModel(ModelPtr model) {
    gptqPlay(false);
    if (m_optCancel) *m_optCancel = true;
    ++m_optRequest;
    m_exl2Path.clear();
    if (m_calibCancel) *m_calibCancel = true;
    ++m_calibRequest;
    m_hKey.clear();
    m_model = std::move(model);
    m_tensor.clear();
    m_exl2.reset();
    m_line.reset();
    m_block.reset();
    m_trace.reset();
    m_modules.clear();
    for (int v = 0; v < ViewCount; ++v)
        fail(View(v), tr("Select a tensor in the tree."));
    refreshExl2();
}

const TensorInfo* TeachingView::tensor() const {
    return m_model && !m_tensor.isEmpty() ? m_model->find(toStd(m_tensor)) : nullptr;
}

void TeachingView::setTensor(const QString& name) {
    if (!m_model) return;
    m_tensor = name;
    const TensorInfo* t = tensor();
    if (!t) return;
    m_title->setText(tr("<b>%1</b> %2 %3")
                         .arg(toDisplay(name).toHtmlEscaped(), toQ(t->shapeString()),
                              toQ(std::string(dtypeName(t->dtype)))));
    const int rows = int(std::min<int64_t>(t->rows(), 1 << 30)),
              cols = int(std::min<int64_t>(t->cols(), 1 << 30));
    m_updating = true;
    m_nlRow->setRange(0, rows - 1);
    m_nlRow->setValue(0);
    m_nlCol->setRange(0, std::max(0, cols - 2));
    m_nlCol->setValue(0);
    m_kqRow->setRange(0, rows - 1);
    m_kqRow->setValue(0);
    m_kqBlock->setRange(0, std::max(0, cols / 256 - 1));
    m_kqBlock->setValue(0);
    m_gRow->setRange(0, std::max(0, rows - 1));
    m_gRow->setValue(0);
    m_gCol->setRange(0, std::max(0, cols - 2));
    m_gCol->setValue(0);
    m_updating = false;
    refreshNumberLine();
    refreshSuperBlock();
    refreshGptq();
}

void TeachingView::setView(View v) {
    m_viewCombo->setCurrentIndex(int(v));
}
TeachingView::View TeachingView::view() const {
    return View(m_viewCombo->currentIndex());
}

void TeachingView::fail(View v, const QString& message) {
    m_errors[v] = message;
    for (QCustomPlot* p : m_plots[v])
        if (p) {
            clearPlot(p);
            p->replot(QCustomPlot::rpQueuedReplot);
        }
    m_infos[v]->setText(message);
    m_captions[v]->setText(caption(v));
    emit updated(v);
}

void TeachingView::refresh(View v) {
    switch (v) {
    case NumberLineView:
        refreshNumberLine();
        break;
    case SuperBlockView:
        refreshSuperBlock();
        break;
    case GptqView:
        refreshGptq();
        break;
    case Exl2View:
        refreshExl2();
        break;
    default:
        break;
    }
}

// ---- 1 ----

void TeachingView::setNumberLine(int row, int col0, int count, int bits) {
    m_updating = true;
    m_nlRow->setValue(row);
    m_nlCol->setValue(col0);
    m_nlCount->setValue(count);
    m_nlBits->setValue(bits);
    m_updating = false;
    refreshNumberLine();
}

void TeachingView::refreshNumberLine() {
    m_line.reset();
    const TensorInfo* t = tensor();
    if (!t) return fail(NumberLineView, tr("Select a tensor in the tree."));
    const int64_t col0 = m_nlCol->value();
    const int64_t n = std::min<int64_t>(m_nlCount->value(), t->cols() - col0);
    auto x = teach::readTensorWindow(*m_model, *t, m_nlRow->value(), 1, col0, n);
    if (!x) return fail(NumberLineView, toDisplay(x.error().message));
    auto r = teach::numberLine(x->data(), int64_t(x->size()), m_nlBits->value());
    if (!r) return fail(NumberLineView, toDisplay(r.error().message));
    m_line = std::move(*r);
    m_errors[NumberLineView].clear();
    QCustomPlot* p = m_plots[NumberLineView][0];
    clearPlot(p);
    double lo = 0, hi = 0;
    const teach::SchemeLine* lines[2] = {&m_line->zeroPoint, &m_line->absmax};
    for (int lane = 0; lane < 2; ++lane) {
        const teach::SchemeLine& s = *lines[lane];
        const double y = lane;
        const QString nm = toQ(s.name);
        // the code grid: the value of every code
        QVector<double> gx, gy;
        for (int32_t c = s.codeMin; c <= s.codeMax; ++c) {
            gx << double(c - s.zero) / s.scale;
            gy << y;
        }
        QPainterPath tick;
        tick.moveTo(0, -5);
        tick.lineTo(0, 5);
        QCPGraph* grid = p->addGraph();
        grid->setName(tr("%1 code grid").arg(nm));
        grid->setData(gx, gy);
        grid->setLineStyle(QCPGraph::lsNone);
        grid->setScatterStyle(QCPScatterStyle(tick, QPen(kGrey, 1), Qt::NoBrush, 10));
        grid->setPen(QPen(kGrey));
        if (lane == 1) grid->removeFromLegend();
        QVector<double> vx, vy, qx, qy;
        for (size_t i = 0; i < m_line->values.size(); ++i) {
            vx << m_line->values[i];
            vy << y + 0.45;
            qx << s.dequantized[i];
            qy << y;
            addLine(p, m_line->values[i], y + 0.45, s.dequantized[i], y, QPen(QColor(0, 0, 0, 90), 1));
        }
        QCPGraph* vg = addPoints(p, tr("%1 values").arg(nm), vx, vy, kBlue, QCPScatterStyle::ssDisc, 6);
        QCPGraph* qg = addPoints(p, tr("%1 dequantized").arg(nm), qx, qy, kRed, QCPScatterStyle::ssCircle, 9);
        if (lane == 1) {
            vg->removeFromLegend();
            qg->removeFromLegend();
        }
        // the integer code under every grid point that a value landed on (when they fit)
        std::vector<std::pair<int32_t, float>> hit;
        for (size_t i = 0; i < s.codes.size(); ++i)
            hit.push_back({s.codes[i], s.dequantized[i]});
        std::sort(hit.begin(), hit.end());
        hit.erase(std::unique(hit.begin(), hit.end(),
                              [](const auto& a, const auto& b) { return a.first == b.first; }),
                  hit.end());
        if (hit.size() <= 24)
            for (const auto& [code, at] : hit)
                addText(p, at, y + 0.07, QString::number(code), Qt::AlignHCenter | Qt::AlignBottom)
                    ->setColor(kRed);
        // the covered range
        const QPen rangePen(kOrange, 2.5);
        addLine(p, s.rangeLo, y - 0.18, s.rangeLo, y + 0.18, rangePen);
        addLine(p, s.rangeHi, y - 0.18, s.rangeHi, y + 0.18, rangePen);
        addLine(p, s.rangeLo, y - 0.18, s.rangeHi, y - 0.18, QPen(kOrange, 1));
        // where 0 lands
        addLine(p, 0, y - 0.28, 0, y + 0.1, QPen(kGreen, 1.5, Qt::DashLine));
        addText(p, s.rangeLo, y - 0.22,
                tr("%1: scale %2, zero point %3, codes %4..%5 cover [%6, %7]")
                    .arg(nm, num(s.scale), QString::number(s.zero), QString::number(s.codeMin),
                         QString::number(s.codeMax), num(s.rangeLo), num(s.rangeHi)),
                Qt::AlignLeft | Qt::AlignTop);
        lo = std::min({lo, double(s.rangeLo)});
        hi = std::max({hi, double(s.rangeHi)});
    }
    auto ticker = QSharedPointer<QCPAxisTickerText>::create();
    ticker->addTick(0, tr("zero-point"));
    ticker->addTick(1, tr("absmax"));
    p->yAxis->setTicker(ticker);
    p->legend->setVisible(false); // the caption names the marks
    p->yAxis->setRange(-0.6, 1.7);
    const double pad = 0.05 * (hi - lo + 1e-12);
    p->xAxis->setRange(lo - pad, hi + pad);
    p->xAxis->setLabel(tr("weight value"));
    p->replot(QCustomPlot::rpQueuedReplot);
    const auto& a = m_line->absmax;
    const auto& z = m_line->zeroPoint;
    m_infos[NumberLineView]->setText(
        tr("%1 values of row %2 from column %3 at %4 bits. absmax: MSE %5, max error %6. zero-point: MSE %7, "
           "max "
           "error %8%9.")
            .arg(m_line->values.size())
            .arg(m_nlRow->value())
            .arg(m_nlCol->value())
            .arg(m_line->bits)
            .arg(num(a.mse), num(a.maxAbsError), num(z.mse), num(z.maxAbsError))
            .arg(a.clipped + z.clipped ? tr(", %1 value(s) clipped").arg(a.clipped + z.clipped) : QString()));
    m_captions[NumberLineView]->setText(caption(NumberLineView));
    emit updated(NumberLineView);
}

// ---- 2 ----

void TeachingView::setSuperBlock(DType type, int row, int block) {
    m_updating = true;
    const int i = m_kqType->findData(int(type));
    if (i >= 0) m_kqType->setCurrentIndex(i);
    m_kqRow->setValue(row);
    m_kqBlock->setValue(block);
    m_updating = false;
    refreshSuperBlock();
}

void TeachingView::refreshSuperBlock() {
    m_block.reset();
    m_kqTable->clear();
    m_kqTable->setRowCount(0);
    const TensorInfo* t = tensor();
    if (!t) return fail(SuperBlockView, tr("Select a tensor in the tree."));
    if (t->cols() < 256)
        return fail(SuperBlockView,
                    tr("%1: rows of %2 values are shorter than a super-block of 256; pick a larger "
                       "tensor.")
                        .arg(toDisplay(m_tensor))
                        .arg(t->cols()));
    const DType type = DType(m_kqType->currentData().toInt());
    auto x =
        teach::readTensorWindow(*m_model, *t, m_kqRow->value(), 1, int64_t(m_kqBlock->value()) * 256, 256);
    if (!x) return fail(SuperBlockView, toDisplay(x.error().message));
    auto b = teach::openSuperBlock(type, x->data());
    if (!b) return fail(SuperBlockView, toDisplay(b.error().message));
    m_block = std::move(*b);
    m_errors[SuperBlockView].clear();
    const teach::SuperBlock& s = *m_block;
    QCustomPlot* p = m_plots[SuperBlockView][0];
    clearPlot(p);
    QVector<double> idx, w, dq, err, codes;
    for (int e = 0; e < 256; ++e) {
        idx << e;
        w << s.weights[e];
        dq << s.dequantized[e];
        err << double(s.weights[e]) - s.dequantized[e];
        codes << s.codes[e];
    }
    addPoints(p, tr("weights"), idx, w, kBlue, QCPScatterStyle::ssDisc, 4);
    QCPGraph* rec = p->addGraph();
    rec->setName(tr("reconstruction (dequantized)"));
    rec->setData(idx, dq);
    rec->setLineStyle(QCPGraph::lsStepCenter);
    rec->setPen(QPen(kRed, 1.2));
    p->yAxis2->setVisible(true);
    p->yAxis2->setLabel(tr("error"));
    QCPGraph* eg = p->addGraph(p->xAxis, p->yAxis2);
    eg->setName(tr("error (right axis)"));
    eg->setData(idx, err);
    eg->setLineStyle(QCPGraph::lsImpulse);
    eg->setPen(QPen(QColor(120, 120, 120, 160)));
    p->rescaleAxes();
    const double ymax = std::max(std::fabs(p->yAxis->range().lower), std::fabs(p->yAxis->range().upper));
    p->yAxis->setRange(-ymax * 1.05, ymax * 1.05);
    const double emax = std::max(std::fabs(p->yAxis2->range().lower), std::fabs(p->yAxis2->range().upper));
    p->yAxis2->setRange(-emax * 1.05 - 1e-12, emax * 1.05 + 1e-12);
    for (int j = 1; j < s.subBlocks; ++j)
        addLine(p, j * s.subSize - 0.5, -ymax, j * s.subSize - 0.5, ymax, QPen(kGrey, 1, Qt::DotLine));
    p->xAxis->setRange(-1, 256);
    p->xAxis->setLabel(tr("weight in the super-block"));
    p->replot(QCustomPlot::rpQueuedReplot);

    QCustomPlot* pc = m_plots[SuperBlockView][1];
    clearPlot(pc);
    auto* bars = new QCPBars(pc->xAxis, pc->yAxis);
    bars->setName(tr("stored code (%1 bits)").arg(s.codeBits));
    bars->setData(idx, codes);
    bars->setWidth(0.8);
    bars->setPen(Qt::NoPen);
    bars->setBrush(kBlue);
    pc->xAxis->setRange(-1, 256);
    pc->yAxis->setRange(0, (1 << s.codeBits) - 0.5);
    for (int j = 1; j < s.subBlocks; ++j)
        addLine(pc, j * s.subSize - 0.5, 0, j * s.subSize - 0.5, (1 << s.codeBits),
                QPen(kGrey, 1, Qt::DotLine));
    pc->replot(QCustomPlot::rpQueuedReplot);

    const QStringList heads =
        s.hasMins ? QStringList{tr("weights"),    tr("min .. max"), tr("scale code"),
                                tr("scale d·sc"), tr("min code"),   tr("min dmin·m")}
                  : QStringList{tr("weights"), tr("min .. max"), tr("scale code"), tr("scale d·sc")};
    m_kqTable->setColumnCount(heads.size());
    m_kqTable->setHorizontalHeaderLabels(heads);
    m_kqTable->setRowCount(s.subBlocks);
    for (int j = 0; j < s.subBlocks; ++j) {
        const auto b0 = s.weights.begin() + j * s.subSize;
        const auto [mn, mx] = std::minmax_element(b0, b0 + s.subSize);
        QStringList cells{QStringLiteral("%1..%2").arg(j * s.subSize).arg((j + 1) * s.subSize - 1),
                          QStringLiteral("%1 .. %2").arg(num(*mn)).arg(num(*mx)),
                          QString::number(s.scaleCodes[j]), num(s.subScale[j], 6)};
        if (s.hasMins) cells << QString::number(s.minCodes[j]) << num(s.subMin[j], 6);
        for (int c = 0; c < cells.size(); ++c)
            m_kqTable->setItem(j, c, new QTableWidgetItem(cells[c]));
    }
    m_kqTable->verticalHeader()->setVisible(false);
    m_kqTable->resizeColumnsToContents();
    m_infos[SuperBlockView]->setText(
        tr("%1, row %2, super-block %3 (columns %4..%5): d = %6%7, %8 bytes = %9 bits per weight. MSE %10, "
           "max error "
           "%11.")
            .arg(toQ(std::string(dtypeName(s.type))))
            .arg(m_kqRow->value())
            .arg(m_kqBlock->value())
            .arg(m_kqBlock->value() * 256)
            .arg(m_kqBlock->value() * 256 + 255)
            .arg(num(s.d, 6), s.hasMins ? tr(", dmin = %1").arg(num(s.dmin, 6)) : QString())
            .arg(s.bytes.size())
            .arg(num(s.bytes.size() * 8.0 / 256, 4))
            .arg(num(s.mse), num(s.maxAbsError)));
    m_captions[SuperBlockView]->setText(caption(SuperBlockView));
    emit updated(SuperBlockView);
}

// ---- 3 ----

void TeachingView::setGptqSlice(int row0, int col0, int rows, int cols, int bits) {
    m_updating = true;
    m_gRow->setValue(row0);
    m_gCol->setValue(col0);
    m_gRows->setValue(rows);
    m_gCols->setValue(cols);
    const int i = m_gBits->findData(bits);
    if (i >= 0) m_gBits->setCurrentIndex(i);
    m_updating = false;
    refreshGptq();
}

void TeachingView::refreshGptq() {
    gptqPlay(false);
    m_trace.reset();
    m_step = 0;
    const TensorInfo* t = tensor();
    if (!t) return fail(GptqView, tr("Select a tensor in the tree."));
    const int64_t row0 = m_gRow->value(), col0 = m_gCol->value();
    const int rows = int(std::min<int64_t>(m_gRows->value(), t->rows() - row0));
    const int cols = int(std::min<int64_t>(m_gCols->value(), t->cols() - col0));
    if (rows < 1 || cols < 2)
        return fail(GptqView,
                    tr("%1: the slice needs at least 1 row and 2 columns.").arg(toDisplay(m_tensor)));
    auto w = teach::readTensorWindow(*m_model, *t, row0, rows, col0, cols);
    if (!w) return fail(GptqView, toDisplay(w.error().message));
    if (m_calibPath.isEmpty()) {
        if (m_calibCancel) *m_calibCancel = true; // a calibration still running is no longer wanted
        ++m_calibRequest;
        m_H = teach::syntheticHessian(cols, 4 * cols, 1);
        m_hKey.clear();
        return finishGptq(*w, rows, cols);
    }
    const QString key = QStringLiteral("%1|%2|%3|%4").arg(m_tensor).arg(col0).arg(cols).arg(m_calibPath);
    if (key == m_hKey && m_H.size() == size_t(cols) * cols) return finishGptq(*w, rows, cols);
    // The model runs on the calibration text on a worker; the slice is traced when its Hessian is there.
    // Not while the workspace is hidden: clicking through the tree must not start a model run per tensor.
    if (!isVisible()) {
        m_gptqDirty = true;
        return fail(GptqView,
                    tr("The Hessian of %1 is computed when this view is shown.").arg(toDisplay(m_tensor)));
    }
    m_gptqDirty = false;
    if (m_calibCancel) *m_calibCancel = true;
    m_calibCancel = std::make_shared<std::atomic<bool>>(false);
    const quint64 request = ++m_calibRequest;
    ++m_calibrating;
    fail(GptqView, tr("Running the model on %1 for the Hessian of %2…")
                       .arg(toDisplay(m_calibPath), toDisplay(m_tensor)));
    auto cancel = m_calibCancel;
    using HResult = std::shared_ptr<qz::Result<std::vector<float>>>;
    auto* watcher = new QFutureWatcher<HResult>(this);
    connect(watcher, &QFutureWatcherBase::finished, this,
            [this, watcher, request, key, win = *w, rows, cols] {
                watcher->deleteLater();
                --m_calibrating;
                if (request != m_calibRequest) return; // superseded
                const HResult r = watcher->result();
                if (!*r) {
                    if (!r->error().cancelled) fail(GptqView, toDisplay(r->error().message));
                    return;
                }
                m_H = std::move(**r);
                m_hKey = key;
                finishGptq(win, rows, cols);
            });
    watcher->setFuture(QtConcurrent::run([model = m_model, name = toStd(m_tensor), col0, cols,
                                          path = toStd(m_calibPath), cancel]() -> HResult {
        return std::make_shared<qz::Result<std::vector<float>>>(teach::calibrationHessian(
            *model, name, col0, cols, path, 16, 128, [cancel](const ProgressInfo&) { return !*cancel; }));
    }));
}

void TeachingView::showEvent(QShowEvent* e) {
    QWidget::showEvent(e);
    if (m_gptqDirty)
        QTimer::singleShot(0, this, [this] {
            if (m_gptqDirty && isVisible()) refreshGptq();
        });
}

void TeachingView::finishGptq(const std::vector<float>& w, int rows, int cols) {
    auto trace = teach::traceGptq(w.data(), rows, cols, m_H, m_gBits->currentData().toInt());
    if (!trace) return fail(GptqView, toDisplay(trace.error().message));
    m_trace = std::move(*trace);
    m_step = 0;
    m_errors[GptqView].clear();
    drawGptqStep();
}

void TeachingView::setGptqCalibration(const QString& textPath) {
    m_calibPath = textPath;
    m_updating = true;
    m_gHess->setCurrentIndex(textPath.isEmpty() ? 0 : 1);
    if (!textPath.isEmpty()) m_gCalib->setText(textPath);
    m_updating = false;
    refreshGptq();
}

void TeachingView::gptqStep(int delta) {
    gptqSetStep(m_step + delta);
}

void TeachingView::gptqSetStep(int step) {
    if (!m_trace) return;
    m_step = std::clamp(step, 0, m_trace->cols);
    drawGptqStep();
}

void TeachingView::gptqPlay(bool on) {
    if (on && m_trace && m_step >= m_trace->cols) gptqSetStep(0);
    if (on && m_trace)
        m_timer->start();
    else
        m_timer->stop();
    if (m_gPlay && m_gPlay->isChecked() != m_timer->isActive()) {
        const QSignalBlocker block(m_gPlay);
        m_gPlay->setChecked(m_timer->isActive());
    }
}

QPushButton* TeachingView::gptqButton(const char* id) const {
    const QString s = QString::fromLatin1(id);
    if (s == QLatin1String("prev")) return m_gPrev;
    if (s == QLatin1String("next")) return m_gNext;
    if (s == QLatin1String("play")) return m_gPlay;
    if (s == QLatin1String("reset")) return m_gReset;
    return nullptr;
}

void TeachingView::drawGptqStep() {
    if (!m_trace) return;
    const teach::GptqTrace& g = *m_trace;
    const int rows = g.rows, cols = g.cols, step = m_step;
    // Top: how much every weight has moved so far (working − original), the quantized columns left of the
    // line.
    QCustomPlot* p = m_plots[GptqView][0];
    clearPlot(p);
    auto* map = new QCPColorMap(p->xAxis, p->yAxis);
    map->setName(tr("change to the weights so far"));
    map->data()->setSize(cols, rows);
    map->data()->setRange(QCPRange(0, cols - 1), QCPRange(0, rows - 1));
    const std::vector<float>& cur = g.working[step];
    double amax = 1e-12;
    for (const auto& wk : g.working)
        for (size_t i = 0; i < wk.size(); ++i)
            amax = std::max(amax, std::fabs(double(wk[i]) - g.original[i]));
    for (int r = 0; r < rows; ++r)
        for (int k = 0; k < cols; ++k) {
            const size_t i = size_t(r) * cols + k;
            map->data()->setCell(k, rows - 1 - r, double(cur[i]) - g.original[i]); // row 0 at the top
        }
    QCPColorGradient diverging; // blue (moved down) – white (unchanged) – red (moved up)
    diverging.setColorStopAt(0.0, QColor(33, 102, 172));
    diverging.setColorStopAt(0.5, Qt::white);
    diverging.setColorStopAt(1.0, QColor(178, 24, 43));
    if (!m_gScale) {
        m_gScale = new QCPColorScale(p);
        p->plotLayout()->addElement(0, 1, m_gScale);
        m_gScale->setLabel(tr("moved by"));
        auto* group = new QCPMarginGroup(p);
        p->axisRect()->setMarginGroup(QCP::msBottom | QCP::msTop, group);
        m_gScale->setMarginGroup(QCP::msBottom | QCP::msTop, group);
    }
    map->setColorScale(m_gScale); // first: the map takes the scale's gradient and range, set next
    map->setGradient(diverging);
    map->setDataRange(QCPRange(-amax, amax));
    map->setInterpolate(false);
    auto xt = QSharedPointer<QCPAxisTickerText>::create();
    for (int k = 0; k < cols; ++k)
        xt->addTick(k, QString::number(m_gCol->value() + k));
    auto yt = QSharedPointer<QCPAxisTickerText>::create();
    for (int r = 0; r < rows; ++r)
        yt->addTick(rows - 1 - r, QString::number(m_gRow->value() + r));
    p->xAxis->setTicker(xt);
    p->yAxis->setTicker(yt);
    p->legend->setVisible(false);
    if (step < cols) addLine(p, step - 0.5, -0.5, step - 0.5, rows - 0.5, QPen(Qt::black, 2));
    if (step > 0) {
        auto* rect = new QCPItemRect(p);
        rect->topLeft->setCoords(step - 1 - 0.5, rows - 0.5);
        rect->bottomRight->setCoords(step - 1 + 0.5, -0.5);
        rect->setPen(QPen(kOrange, 2));
    }
    p->xAxis->setRange(-0.5, cols - 0.5);
    p->yAxis->setRange(-0.5, rows - 0.5);
    p->xAxis->setLabel(
        tr("column (input feature); left of the line: quantized, orange: the column just done"));
    p->yAxis->setLabel(tr("row"));
    p->replot(QCustomPlot::rpQueuedReplot);

    // Bottom: per column Σ|w − q| over the rows: GPTQ's (columns done so far) beside RTN's.
    QCustomPlot* pe = m_plots[GptqView][1];
    clearPlot(pe);
    QVector<double> kx, gv, rv;
    for (int k = 0; k < cols; ++k) {
        double sg = 0, sr = 0;
        for (int r = 0; r < rows; ++r) {
            const size_t i = size_t(r) * cols + k;
            sg += std::fabs(double(g.original[i]) - g.dequantized[i]);
            sr += std::fabs(double(g.original[i]) - g.rtnDequantized[i]);
        }
        kx << k;
        rv << sr;
        gv << (k < step ? sg : qQNaN());
    }
    auto* group = new QCPBarsGroup(pe);
    auto* rb = new QCPBars(pe->xAxis, pe->yAxis);
    rb->setName(tr("RTN Σ|w − ŵ|"));
    rb->setData(kx, rv);
    rb->setBrush(kGrey);
    rb->setPen(Qt::NoPen);
    rb->setWidth(0.4);
    rb->setBarsGroup(group);
    auto* gb = new QCPBars(pe->xAxis, pe->yAxis);
    gb->setName(tr("GPTQ Σ|w − ŵ|"));
    QVector<double> gk, gvv;
    for (int k = 0; k < step; ++k) {
        gk << k;
        gvv << gv[k];
    }
    gb->setData(gk, gvv);
    gb->setBrush(kBlue);
    gb->setPen(Qt::NoPen);
    gb->setWidth(0.4);
    gb->setBarsGroup(group);
    pe->rescaleAxes();
    pe->xAxis->setRange(-0.5, cols - 0.5);
    pe->yAxis->setRange(0, pe->yAxis->range().upper * 1.1 + 1e-12);
    auto et = QSharedPointer<QCPAxisTickerText>::create();
    for (int k = 0; k < cols; ++k)
        et->addTick(k, QString::number(m_gCol->value() + k));
    pe->xAxis->setTicker(et);
    pe->xAxis->setLabel(tr("column; per column Σ over the rows of |w − ŵ|, w original, ŵ dequantized"));
    pe->replot(QCustomPlot::rpQueuedReplot);

    m_gStep->setText(step == 0 ? tr("Step 0 of %1: nothing quantized yet").arg(cols)
                               : tr("Step %1 of %2: column %3 quantized").arg(step).arg(cols).arg(step - 1));
    m_gPrev->setEnabled(step > 0);
    m_gNext->setEnabled(step < cols);
    QString info = tr("Rows %1..%2, columns %3..%4, %5 bits, damp %6. ")
                       .arg(m_gRow->value())
                       .arg(m_gRow->value() + rows - 1)
                       .arg(m_gCol->value())
                       .arg(m_gCol->value() + cols - 1)
                       .arg(g.bits)
                       .arg(num(g.damp, 3));
    if (step > 0) {
        const int j = step - 1;
        double e = 0;
        for (int r = 0; r < rows; ++r)
            e += std::fabs(double(g.colError[size_t(r) * cols + j]));
        info +=
            tr("Column %1: Σ|w − q| = %2; the errors divided by U(%4,%4) = %3 went to the later columns with "
               "row %4 of U. ")
                .arg(m_gCol->value() + j)
                .arg(num(e))
                .arg(num(g.hinv[size_t(j) * cols + j]))
                .arg(j);
    }
    if (step == cols)
        info += tr("Done — output error tr(ΔW H ΔWᵀ)/tr(W H Wᵀ): GPTQ %1, RTN %2.")
                    .arg(num(g.gptqOutputError), num(g.rtnOutputError));
    m_infos[GptqView]->setText(info);
    m_captions[GptqView]->setText(caption(GptqView));
    emit updated(GptqView);
}

// ---- 4 ----

void TeachingView::setExl2Result(std::shared_ptr<const exl2::ExportResult> result) {
    m_exl2 = std::move(result);
    refreshExl2();
}

void TeachingView::refreshExl2() {
    m_modules.clear();
    m_updating = true;
    m_exl2Module->clear();
    m_updating = false;
    if (!m_exl2 || !m_model)
        return fail(Exl2View,
                    tr("Run an EXL2 export (Export › EXL2) on this model, or open a measurement.json "
                       "of it: the measurement and the optimizer's choice appear here."));
    auto plan = exl2::planModel(*m_model);
    if (!plan) return fail(Exl2View, toDisplay(plan.error().message));
    std::vector<int64_t> numel;
    for (const auto& m : m_exl2->measurement) {
        int64_t n = 0;
        for (const auto& mr : plan->modules)
            if (mr.key == m.key) n = mr.numel();
        numel.push_back(n);
    }
    auto mods = teach::exl2Allocation(m_exl2->measurement, m_exl2->strategy, numel);
    if (!mods) return fail(Exl2View, toDisplay(mods.error().message));
    m_modules = std::move(*mods);
    m_errors[Exl2View].clear();
    m_updating = true;
    for (const auto& m : m_modules)
        m_exl2Module->addItem(toDisplay(m.key));
    m_updating = false;

    QCustomPlot* pc = m_plots[Exl2View][1];
    clearPlot(pc);
    QVector<double> x, y;
    auto ticker = QSharedPointer<QCPAxisTickerText>::create();
    for (size_t i = 0; i < m_modules.size(); ++i) {
        const auto& m = m_modules[i];
        x << double(i);
        y << m.options[m.chosen].bpw;
        QString k = toDisplay(m.key);
        k.remove(QStringLiteral("model.layers."));
        ticker->addTick(double(i), k.replace(QStringLiteral(".self_attn"), QStringLiteral(" attn"))
                                       .replace(QStringLiteral(".mlp"), QStringLiteral(" mlp")));
    }
    auto* bars = new QCPBars(pc->xAxis, pc->yAxis);
    bars->setName(tr("bits per weight chosen"));
    bars->setData(x, y);
    bars->setBrush(kBlue);
    bars->setPen(Qt::NoPen);
    pc->xAxis->setTicker(ticker);
    pc->xAxis->setTickLabelRotation(60);
    pc->rescaleAxes();
    pc->xAxis->setRange(-0.7, double(m_modules.size()) - 0.3);
    pc->yAxis->setRange(0, std::max(pc->yAxis->range().upper, m_exl2->targetBpw) * 1.15);
    auto* target = new QCPItemStraightLine(pc);
    target->point1->setCoords(0, m_exl2->targetBpw);
    target->point2->setCoords(1, m_exl2->targetBpw);
    target->setPen(QPen(kRed, 1.5, Qt::DashLine));
    addText(pc, -0.5, m_exl2->targetBpw, tr("target %1 bpw").arg(num(m_exl2->targetBpw)),
            Qt::AlignLeft | Qt::AlignBottom);
    pc->replot(QCustomPlot::rpQueuedReplot);
    setExl2Module(0);
}

bool TeachingView::loadExl2Measurement(const QString& path, double targetBpw, quint64 seed,
                                       int annealIterations) {
    if (!m_model) {
        fail(Exl2View, tr("Open the model the measurement was made for first."));
        return false;
    }
    auto plan = exl2::planModel(*m_model);
    if (!plan) {
        fail(Exl2View, toDisplay(plan.error().message));
        return false;
    }
    auto meas = exl2::readMeasurementJson(toStd(path), *plan);
    if (!meas) {
        fail(Exl2View, toDisplay(meas.error().message));
        return false;
    }
    std::vector<int64_t> numel;
    for (const auto& mm : *meas) {
        int64_t n = 0;
        for (const auto& mr : plan->modules)
            if (mr.key == mm.key) n = mr.numel();
        numel.push_back(n);
    }
    m_exl2Path = path;
    if (m_optCancel) *m_optCancel = true;
    m_optCancel = std::make_shared<std::atomic<bool>>(false);
    const quint64 request = ++m_optRequest;
    ++m_optimizing;
    m_infos[Exl2View]->setText(tr("Optimizing %1 for %2 bits per weight…").arg(path).arg(targetBpw));
    auto cancel = m_optCancel;
    auto* watcher = new QFutureWatcher<std::shared_ptr<qz::Result<exl2::ExportResult>>>(this);
    connect(watcher, &QFutureWatcherBase::finished, this, [this, watcher, request] {
        watcher->deleteLater();
        --m_optimizing;
        if (request != m_optRequest) return; // superseded
        const auto r = watcher->result();
        if (!*r) {
            if (!r->error().cancelled) fail(Exl2View, toDisplay(r->error().message));
            return;
        }
        setExl2Result(std::make_shared<const exl2::ExportResult>(std::move(**r)));
        emit exl2Optimized();
    });
    watcher->setFuture(QtConcurrent::run([m = std::move(*meas), numel, targetBpw, seed, annealIterations,
                                          cancel] {
        return std::make_shared<qz::Result<exl2::ExportResult>>(teach::optimizeMeasurement(
            m, numel, targetBpw, seed, annealIterations, [cancel](const ProgressInfo&) { return !*cancel; }));
    }));
    return true;
}

void TeachingView::setExl2Module(int index) {
    if (index < 0 || index >= int(m_modules.size())) return;
    if (m_exl2Module->currentIndex() != index) {
        m_updating = true;
        m_exl2Module->setCurrentIndex(index);
        m_updating = false;
    }
    drawExl2Module();
}

void TeachingView::drawExl2Module() {
    const int index = m_exl2Module->currentIndex();
    if (index < 0 || index >= int(m_modules.size())) return;
    const teach::Exl2Module& m = m_modules[index];
    QCustomPlot* p = m_plots[Exl2View][0];
    clearPlot(p);
    QVector<double> bx, by;
    std::vector<std::pair<double, double>> front;
    for (const auto& o : m.options) {
        bx << o.bpw;
        by << o.error;
        if (o.pareto) front.push_back({o.bpw, o.error});
    }
    std::sort(front.begin(), front.end());
    addPoints(p, tr("candidate settings"), bx, by, kGrey, QCPScatterStyle::ssCircle, 7);
    QVector<double> fx, fy;
    for (auto [a, b] : front)
        fx << a, fy << b;
    QCPGraph* fg =
        addPoints(p, tr("best error for the bits (front)"), fx, fy, kBlue, QCPScatterStyle::ssDisc, 5);
    fg->setLineStyle(QCPGraph::lsLine);
    const auto& c = m.options[m.chosen];
    if (QCustomPlot* pc = m_plots[Exl2View][1]) { // the module's bar in the lower chart, highlighted
        for (int i = pc->plottableCount() - 1; i >= 0; --i)
            if (pc->plottable(i)->name() == tr("this module")) pc->removePlottable(i);
        auto* sel = new QCPBars(pc->xAxis, pc->yAxis);
        sel->setName(tr("this module"));
        sel->setData(QVector<double>{double(index)}, QVector<double>{c.bpw});
        sel->setBrush(kRed);
        sel->setPen(Qt::NoPen);
        pc->replot(QCustomPlot::rpQueuedReplot);
    }
    addPoints(p, tr("chosen"), {c.bpw}, {c.error}, kRed, QCPScatterStyle::ssStar, 16);
    addText(p, c.bpw, c.error, QStringLiteral("  ") + toQ(c.setting), Qt::AlignLeft | Qt::AlignBottom);
    p->yAxis->setScaleType(QCPAxis::stLogarithmic);
    p->yAxis->setTicker(QSharedPointer<QCPAxisTickerLog>::create());
    p->rescaleAxes();
    p->xAxis->scaleRange(1.1);
    p->yAxis->setRange(p->yAxis->range().lower / 1.5, p->yAxis->range().upper * 1.5);
    p->xAxis->setLabel(tr("bits per weight of the module"));
    p->yAxis->setLabel(tr("error = 1 − accuracy (log)"));
    p->replot(QCustomPlot::rpQueuedReplot);
    m_infos[Exl2View]->setText(
        tr("%1: %2 candidates, chosen %3 bpw with error %4 (%5). Whole decoder: %6 bpw for a "
           "target of %7; the optimizer minimised Σ error^%8.")
            .arg(toDisplay(m.key))
            .arg(m.options.size())
            .arg(num(c.bpw))
            .arg(num(c.error))
            .arg(toQ(c.setting))
            .arg(num(m_exl2->achievedBpw))
            .arg(num(m_exl2->targetBpw))
            .arg(num(m_exl2->errorNorm, 3)));
    m_captions[Exl2View]->setText(caption(Exl2View));
    emit updated(Exl2View);
}

// ---- captions ----

QString TeachingView::caption(View v) const {
    switch (v) {
    case NumberLineView:
        return tr(
            "<b>Two ways to turn numbers into small integers.</b> <i>Absmax</i> divides by the largest "
            "|value| so that it lands on ±(2<sup>b−1</sup>−1): code = round(x · (2<sup>b−1</sup>−1) / "
            "max|x|), a grid symmetric around 0 that wastes half its codes when the values lean to one side. "
            "<i>Zero-point</i> stretches the grid from min to max instead: code = round(x · "
            "(2<sup>b</sup>−1)/(max−min) + zp), where the zero point zp is the code that 0 lands on (green "
            "line). Blue dots are the real weights, each joined to the red circle (and its integer code) it "
            "comes back as; grey ticks are the code grid and orange brackets the range it covers.");
    case SuperBlockView:
        return tr(
            "<b>What a k-quant stores for 256 weights.</b> The block is cut into sub-blocks of 16 or 32 "
            "weights; each gets its own scale (and for Q2_K, Q4_K, Q5_K a minimum), but those are stored "
            "as small integer codes (4, 6 or 8 bits) times one fp16 number d (and dmin) for the whole "
            "block — quantization of the scales themselves. A weight comes back as d·sc·q − dmin·m "
            "(Q3_K, Q6_K: d·sc·(q − offset)). These are the exact bytes llama-quantize writes without an "
            "importance matrix; the red line is what llama.cpp reads back.");
    case GptqView:
        return tr("<b>GPTQ fixes the rounding error as it goes.</b> Columns are quantized left to right; the "
                  "error of column j, divided by the j-th diagonal of the Cholesky factor U of H⁻¹, is "
                  "subtracted from the columns not yet quantized with weights from row j of U, so that the "
                  "layer's <i>output</i> stays close even though each weight moves (colours: how far each "
                  "weight has been moved so far). %1 RTN rounds every weight on the same grid independently "
                  "(grey "
                  "bars).")
            .arg(m_calibPath.isEmpty()
                     ? tr("H = 2/n·Σ x·xᵀ here comes from <b>synthetic</b> activations (correlated "
                          "neighbouring "
                          "features), not from a calibration text.")
                     : tr("H = 2/n·Σ x·xᵀ here comes from the layer's real inputs while the model reads "
                          "<b>%1</b> (16 pieces of 128 tokens).")
                           .arg(QFileInfo(m_calibPath).fileName().toHtmlEscaped()));
    case Exl2View:
        return tr(
            "<b>EXL2 spends bits where they matter.</b> For every attention and MLP block the measurement "
            "tried each of exllamav2's candidate settings (mixes of 2–8 bit groups) and recorded bits "
            "against error "
            "(1 − accuracy of the block's output). The optimizer then picks one setting per block so "
            "that the whole model fits the target bits per weight with the least total error: sensitive "
            "blocks get more bits (red star: the chosen setting; blue: settings no other one beats).");
    default:
        return {};
    }
}

QString TeachingView::info(View v) const {
    return m_infos[v]->text();
}

QCustomPlot* TeachingView::plot(View v, int which) const {
    return m_plots[v][which];
}

QVector<double> TeachingView::plotted(View v, const QString& name, bool keys, int which) const {
    QVector<double> out;
    QCustomPlot* p = m_plots[v][which];
    if (!p) return out;
    for (int i = 0; i < p->plottableCount(); ++i) {
        QCPAbstractPlottable* pl = p->plottable(i);
        if (pl->name() != name) continue;
        if (auto* g = qobject_cast<QCPGraph*>(pl)) {
            for (auto it = g->data()->constBegin(); it != g->data()->constEnd(); ++it)
                out << (keys ? it->key : it->value);
        } else if (auto* b = qobject_cast<QCPBars*>(pl)) {
            for (auto it = b->data()->constBegin(); it != b->data()->constEnd(); ++it)
                out << (keys ? it->key : it->value);
        } else if (auto* m = qobject_cast<QCPColorMap*>(pl)) {
            const int nx = m->data()->keySize(), ny = m->data()->valueSize();
            for (int y = ny - 1; y >= 0; --y)
                for (int x = 0; x < nx; ++x)
                    out << m->data()->cell(x, y);
        }
        break;
    }
    return out;
}

} // namespace qz::ui
