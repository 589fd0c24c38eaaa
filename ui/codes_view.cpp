#include "codes_view.h"

#include <QApplication>
#include <QClipboard>
#include <QFontDatabase>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QMetaObject>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QSplitter>
#include <QTabWidget>
#include <QTableWidget>
#include <QVBoxLayout>
#include <algorithm>
#include <exception>

#include "quant/llm_int8.h"

namespace qz::ui {

namespace {
const QColor kFp16Background(255, 224, 178); // outlier features kept in fp16

QString num(double v) {
    return QString::number(v, 'g', 6);
}

QString methodTitle(const qz::QuantSpec& s) {
    if (s.method == qz::QuantMethod::LlmInt8) return QObject::tr("int8 codes (LLM.int8())");
    if (qz::isBnbFourBit(s.method))
        return QObject::tr("4-bit code indices (%1)").arg(toQ(std::string(qz::methodName(s.method))));
    return QObject::tr("int%1 codes (%2)").arg(s.bits).arg(toQ(std::string(qz::methodName(s.method))));
}
} // namespace

CodesView::CodesView(QWidget* parent) : QWidget(parent) {
    m_pool.setMaxThreadCount(1);
    auto* layout = new QVBoxLayout(this);
    m_title = new QLabel(tr("Select a tensor to see its codes."), this);
    m_title->setObjectName(QStringLiteral("codesTitle"));
    m_title->setWordWrap(true);
    m_title->setTextInteractionFlags(Qt::TextSelectableByMouse);
    layout->addWidget(m_title);

    auto* controls = new QHBoxLayout();
    auto spin = [&](const QString& label, const char* name, int lo, int hi, int value) {
        auto* l = new QLabel(label, this);
        auto* s = new QSpinBox(this);
        s->setObjectName(QString::fromLatin1(name));
        s->setRange(lo, hi);
        s->setValue(value);
        l->setBuddy(s);
        controls->addWidget(l);
        controls->addWidget(s);
        connect(s, &QSpinBox::valueChanged, this, [this] {
            if (!m_updating) refresh();
        });
        return s;
    };
    m_rows = spin(tr("&Rows"), "codesRows", 1, 64, 8);
    m_cols = spin(tr("&Cols"), "codesCols", 1, 64, 8);
    m_row0 = spin(tr("from row"), "codesRow0", 0, 0, 0);
    m_col0 = spin(tr("from col"), "codesCol0", 0, 0, 0);
    m_toOutlier = new QPushButton(tr("Next &outlier feature"), this);
    m_toOutlier->setObjectName(QStringLiteral("codesNextOutlier"));
    m_toOutlier->setToolTip(tr("LLM.int8(): move the window to the next input feature kept in fp16"));
    m_toOutlier->setEnabled(false);
    controls->addWidget(m_toOutlier);
    controls->addStretch(1);
    m_copy = new QPushButton(tr("Cop&y text"), this);
    m_copy->setObjectName(QStringLiteral("codesCopy"));
    m_copy->setToolTip(tr("Copy the window and the whole tensor as torch prints them"));
    m_copy->setEnabled(false);
    controls->addWidget(m_copy);
    layout->addLayout(controls);

    m_note = new QLabel(this);
    m_note->setObjectName(QStringLiteral("codesNote"));
    m_note->setWordWrap(true);
    m_note->hide();
    layout->addWidget(m_note);

    m_tabs = new QTabWidget(this);
    auto* tablesPage = new QWidget(m_tabs);
    auto* grid = new QGridLayout(tablesPage);
    grid->setContentsMargins(0, 0, 0, 0);
    const QString titles[4] = {tr("Original"), tr("Codes"), tr("Dequantized"),
                               tr("Error (dequantized − original)")};
    const char* names[4] = {"codesOriginal", "codesCodes", "codesDequantized", "codesError"};
    const QFont mono = QFontDatabase::systemFont(QFontDatabase::FixedFont);
    for (int i = 0; i < 4; ++i) {
        auto* box = new QWidget(tablesPage);
        auto* v = new QVBoxLayout(box);
        v->setContentsMargins(0, 0, 0, 0);
        auto* label = new QLabel(titles[i], box);
        label->setObjectName(QString::fromLatin1(names[i]) + QStringLiteral("Label"));
        v->addWidget(label);
        m_tables[i] = new QTableWidget(box);
        m_tables[i]->setObjectName(QString::fromLatin1(names[i]));
        m_tables[i]->setEditTriggers(QAbstractItemView::NoEditTriggers);
        m_tables[i]->setFont(mono);
        m_tables[i]->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
        m_tables[i]->verticalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
        v->addWidget(m_tables[i]);
        grid->addWidget(box, i / 2, i % 2);
    }
    auto* split = new QSplitter(Qt::Vertical, this);
    split->addWidget(tablesPage);
    m_scales = new QPlainTextEdit(this);
    m_scales->setObjectName(QStringLiteral("codesScales"));
    m_scales->setReadOnly(true);
    m_scales->setFont(mono);
    m_scales->setPlaceholderText(tr("Scale and zero point of each group in the window"));
    split->addWidget(m_scales);
    split->setStretchFactor(0, 4);
    split->setStretchFactor(1, 1);
    m_tabs->addTab(split, tr("Tables"));
    m_text = new QPlainTextEdit(this);
    m_text->setObjectName(QStringLiteral("codesText"));
    m_text->setReadOnly(true);
    m_text->setFont(mono);
    m_text->setLineWrapMode(QPlainTextEdit::NoWrap);
    m_tabs->addTab(m_text, tr("Text (torch print)"));
    layout->addWidget(m_tabs, 1);

    connect(m_copy, &QPushButton::clicked, this, [this] { QApplication::clipboard()->setText(text()); });
    connect(m_toOutlier, &QPushButton::clicked, this, [this] {
        const auto outl = outliersFor(m_tensor);
        if (outl.empty()) return;
        QSpinBox* axis = m_inputIsRows ? m_row0 : m_col0;
        auto it = std::upper_bound(outl.begin(), outl.end(), axis->value());
        axis->setValue(it != outl.end() ? *it : outl.front()); // refreshes
    });
}

CodesView::~CodesView() {
    ++m_request;
    m_pool.waitForDone();
}

void CodesView::setModel(ModelPtr model) {
    // A window still being computed belongs to the previous model: drop it when it arrives (it would
    // otherwise be shown, with the old model's numbers, under the new one).
    ++m_request;
    m_dirty = false;
    m_model = std::move(model);
    m_result.reset();
    m_tensor.clear();
    m_window.reset();
    clearTables(tr("Select a tensor to see its codes."));
}

void CodesView::setTensor(const QString& name) {
    if (name == m_tensor && m_window) return;
    m_tensor = name;
    m_updating = true;
    m_row0->setValue(0);
    m_col0->setValue(0);
    m_updating = false;
    refresh();
}

void CodesView::setSpec(const qz::QuantSpec& spec) {
    m_spec = spec;
    refresh();
}

void CodesView::setResult(ResultPtr result) {
    m_result = std::move(result);
    refresh();
}

void CodesView::setWindow(int row0, int col0, int rows, int cols) {
    m_updating = true;
    m_rows->setValue(rows);
    m_cols->setValue(cols);
    m_row0->setMaximum(std::max(m_row0->maximum(), row0));
    m_col0->setMaximum(std::max(m_col0->maximum(), col0));
    m_row0->setValue(row0);
    m_col0->setValue(col0);
    m_updating = false;
    refresh();
}

std::vector<int32_t> CodesView::outliersFor(const QString& name) const {
    if (m_spec.method != qz::QuantMethod::LlmInt8 || !m_result ||
        m_result->spec.method != qz::QuantMethod::LlmInt8)
        return {};
    for (const auto& t : m_result->tensors)
        if (toQ(t.name) == name) return t.outlierFeatures;
    return {};
}

QString CodesView::text() const {
    return m_window ? toQ(qz::codeWindowText(*m_window, toStd(toDisplay(m_tensor)))) : QString();
}

QString CodesView::scalesText() const {
    return m_scales->toPlainText();
}

QString CodesView::noteText() const {
    return m_note->text();
}

void CodesView::clearTables(const QString& message) {
    m_title->setText(message);
    m_note->clear();
    m_note->hide();
    for (auto* t : m_tables) {
        t->clear();
        t->setRowCount(0);
        t->setColumnCount(0);
    }
    m_scales->clear();
    m_text->clear();
    m_copy->setEnabled(false);
    m_toOutlier->setEnabled(false);
}

void CodesView::showEvent(QShowEvent* e) {
    QWidget::showEvent(e);
    if (m_dirty) refresh();
}

void CodesView::refresh() {
    // Quantizing a whole tensor for a hidden tab would only cost CPU: wait until the view is shown.
    if (!isVisible() && m_model && !m_tensor.isEmpty()) {
        m_dirty = true;
        return;
    }
    m_dirty = false;
    if (!m_model || m_tensor.isEmpty()) {
        ++m_request;
        m_window.reset();
        clearTables(m_model ? tr("Select a tensor to see its codes.") : tr("Open a model to see codes."));
        return;
    }
    const qz::TensorInfo* info = m_model->find(toStd(m_tensor));
    if (!info) {
        ++m_request;
        m_window.reset();
        clearTables(tr("%1: not in the model").arg(toDisplay(m_tensor)));
        return;
    }
    if (auto st = m_spec.validate(); !st) {
        ++m_request;
        m_window.reset();
        clearTables(tr("Cannot show codes: %1").arg(toQ(st.error().message)));
        return;
    }
    // Window limits follow the tensor.
    m_updating = true;
    m_row0->setMaximum(int(std::clamp<int64_t>(info->rows() - 1, 0, INT_MAX)));
    m_col0->setMaximum(int(std::clamp<int64_t>(info->cols() - 1, 0, INT_MAX)));
    m_updating = false;

    qz::CodeWindowRequest req;
    req.row0 = m_row0->value();
    req.col0 = m_col0->value();
    req.rows = m_rows->value();
    req.cols = m_cols->value();
    const bool int8 = m_spec.method == qz::QuantMethod::LlmInt8;
    req.inputIsRows = int8 && info->shape.size() == 2 && qz::weightInputIsRows(info->name);
    req.outlierFeatures = outliersFor(m_tensor);
    const bool oneDim = info->shape.size() <= 1;
    const size_t index = size_t(info - m_model->tensors.data());
    const ModelPtr model = m_model;
    const qz::QuantSpec spec = m_spec;
    const QString name = m_tensor;
    const bool inputIsRows = req.inputIsRows;
    const quint64 request = ++m_request;
    ++m_pending;
    m_title->setText(tr("%1: computing codes…").arg(toDisplay(name)));
    m_pool.start([this, request, model, index, spec, req = std::move(req), oneDim, name, inputIsRows] {
        std::shared_ptr<const qz::CodeWindow> window;
        QString error;
        if (request == m_request) {
            try {
                const qz::TensorInfo& t = model->tensors[index];
                auto x = qz::readTensorF32(*model, t);
                if (!x) {
                    error = toDisplay(x.error().message);
                } else {
                    auto w = qz::makeCodeWindow(spec, x->data(), t.rows(), t.cols(), req, oneDim);
                    if (w)
                        window = std::make_shared<const qz::CodeWindow>(std::move(w.value()));
                    else
                        error = toDisplay(w.error().message);
                }
            } catch (const std::exception& e) {
                error = tr("codes failed: %1").arg(QString::fromUtf8(e.what()));
            }
        }
        QMetaObject::invokeMethod(
            this,
            [this, request, window, error, name, inputIsRows] {
                --m_pending;
                if (request != m_request) return;
                if (!window) {
                    m_window.reset();
                    clearTables(tr("%1: cannot show codes").arg(toDisplay(name)));
                    emit failed(error);
                    return;
                }
                showWindow(window, name, inputIsRows);
            },
            Qt::QueuedConnection);
    });
}

void CodesView::showWindow(std::shared_ptr<const qz::CodeWindow> wp, const QString& name, bool inputIsRows) {
    m_window = std::move(wp);
    m_inputIsRows = inputIsRows;
    const qz::CodeWindow& w = *m_window;
    const bool int8 = w.spec.method == qz::QuantMethod::LlmInt8;
    const bool fourBit = qz::isBnbFourBit(w.spec.method);
    m_title->setText(tr("<b>%1</b> [%2 × %3] — %4, rows %5–%6, cols %7–%8")
                         .arg(toDisplay(name).toHtmlEscaped())
                         .arg(w.tensorRows)
                         .arg(w.tensorCols)
                         .arg(toQ(w.spec.describe()).toHtmlEscaped())
                         .arg(w.row0)
                         .arg(w.row0 + w.rows - 1)
                         .arg(w.col0)
                         .arg(w.col0 + w.cols - 1));
    m_tables[Codes]
        ->parentWidget()
        ->findChild<QLabel*>(QStringLiteral("codesCodesLabel"))
        ->setText(methodTitle(w.spec));

    QString note;
    if (int8) {
        const auto outl = outliersFor(name);
        bool inRun = false;
        if (m_result)
            for (const auto& t : m_result->tensors)
                inRun = inRun || toQ(t.name) == name;
        if (m_result && m_result->spec.method == qz::QuantMethod::LlmInt8 && !inRun) {
            note = tr("This tensor was not in the LLM.int8() run: shown without outlier features.");
        } else if (!m_result || m_result->spec.method != qz::QuantMethod::LlmInt8) {
            note = tr(
                "No LLM.int8() run yet: the outlier features come from its calibration — press Run to find "
                "them. Shown without outliers (plain per-row int8).");
        } else {
            note =
                tr("%n outlier feature(s) kept in fp16 (calibration max|x| ≥ %1), highlighted; %2.", nullptr,
                   int(w.outlierFeatures))
                    .arg(m_result->spec.threshold)
                    .arg(inputIsRows
                             ? tr("GPT-2 Conv1D weight stored [in × out]: an input feature is a stored row")
                             : tr("an input feature is a column"));
        }
        m_toOutlier->setEnabled(!outl.empty());
    } else {
        m_toOutlier->setEnabled(false);
    }
    m_note->setText(note);
    m_note->setVisible(!note.isEmpty());

    std::vector<std::string> groupText(w.groups.size());
    for (size_t g = 0; g < w.groups.size(); ++g)
        groupText[g] = qz::describeGroup(w, w.groups[g]);
    for (int k = 0; k < 4; ++k) {
        QTableWidget* t = m_tables[k];
        t->clear();
        t->setRowCount(int(w.rows));
        t->setColumnCount(int(w.cols));
        QStringList rowLabels, colLabels;
        for (int64_t r = 0; r < w.rows; ++r) {
            const bool fp16Row = int8 && inputIsRows && w.cols > 0 && w.keptFp16[size_t(w.at(r, 0))];
            rowLabels << QString::number(w.row0 + r) + (fp16Row ? tr(" fp16") : QString());
        }
        for (int64_t c = 0; c < w.cols; ++c) {
            const bool fp16Col = int8 && !inputIsRows && w.rows > 0 && w.keptFp16[size_t(w.at(0, c))];
            colLabels << QString::number(w.col0 + c) + (fp16Col ? tr(" fp16") : QString());
        }
        t->setVerticalHeaderLabels(rowLabels);
        t->setHorizontalHeaderLabels(colLabels);
        for (int64_t r = 0; r < w.rows; ++r)
            for (int64_t c = 0; c < w.cols; ++c) {
                const size_t e = size_t(w.at(r, c));
                QString s;
                switch (k) {
                case Original:
                    s = num(w.original[e]);
                    break;
                case Codes:
                    s = QString::number(w.codes[e]);
                    break;
                case Dequantized:
                    s = num(w.dequantized[e]);
                    break;
                default:
                    s = num(double(w.dequantized[e]) - double(w.original[e]));
                    break;
                }
                auto* item = new QTableWidgetItem(s);
                item->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
                QString tip = toQ(groupText[size_t(w.group[e])]);
                if (k == Codes && fourBit && w.codes[e] >= 0 && size_t(w.codes[e]) < w.codeBook.size())
                    tip += tr("\ncode %1 = %2").arg(w.codes[e]).arg(num(w.codeBook[size_t(w.codes[e])]));
                if (w.keptFp16[e]) {
                    item->setBackground(kFp16Background);
                    tip += tr("\noutlier feature kept in fp16 (int8 code 0, value = fp16(x))");
                }
                item->setToolTip(tip);
                t->setItem(int(r), int(c), item);
            }
    }
    QString scales;
    for (const auto& g : groupText)
        scales += toQ(g) + QLatin1Char('\n');
    if (fourBit) {
        scales += tr("code book:");
        for (size_t i = 0; i < w.codeBook.size(); ++i)
            scales += QStringLiteral(" %1:%2").arg(i).arg(w.codeBook[i], 0, 'f', 4);
        scales += QLatin1Char('\n');
    }
    m_scales->setPlainText(scales);
    m_text->setPlainText(text());
    m_copy->setEnabled(true);
    emit windowShown();
}

} // namespace qz::ui
