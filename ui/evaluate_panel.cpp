#include "evaluate_panel.h"

#include <QComboBox>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QSplitter>
#include <QTableWidget>
#include <QVBoxLayout>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <optional>

#include "app_options.h"
#include "variants/row_sources.h"
#include "variants/variants.h"
#include "text_choice.h"

namespace qz::ui {

namespace {
QString bundledText() { return sampleTextPath(); }

uint64_t parameterCount(const qz::Model& m) {
    uint64_t n = 0;
    for (const auto& t : m.tensors) {
        uint64_t e = 1;
        for (int64_t d : t.shape) e *= uint64_t(std::max<int64_t>(d, 0));
        n += e;
    }
    return n;
}
uint64_t tensorBytes(const qz::Model& m) {
    uint64_t n = 0;
    for (const auto& t : m.tensors) n += t.nbytes;
    return n;
}
QString mib(uint64_t b) {
    return b ? QStringLiteral("%1 MiB").arg(double(b) / 1048576.0, 0, 'f', 2) : QStringLiteral("?");
}
QTableWidgetItem* cell(const QString& text, bool right = true) {
    auto* it = new QTableWidgetItem(text);
    it->setFlags(it->flags() & ~Qt::ItemIsEditable);
    if (right) it->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
    return it;
}
}  // namespace

EvaluatePanel::EvaluatePanel(QWidget* parent) : QWidget(parent), m_runner(new BackgroundJob(this)) {
    auto* root = new QVBoxLayout(this);

    auto* setup = new QGroupBox(tr("Perplexity and KL-divergence (llama-perplexity's method)"), this);
    auto* setupLayout = new QVBoxLayout(setup);
    auto* form = new QHBoxLayout;
    setupLayout->addLayout(form);
    m_text = new QComboBox(setup);
    m_text->addItem(tr("shakespeare-valid.txt (bundled)"), bundledText());
    m_text->addItem(tr("Choose a file…"), QString());
    auto* ctxLabel = new QLabel(tr("Context (-c)"), setup);
    m_ctx = new QSpinBox(setup);
    m_ctx->setRange(8, 32768);
    m_ctx->setValue(128);
    auto* chunksLabel = new QLabel(tr("Chunks"), setup);
    m_chunks = new QSpinBox(setup);
    m_chunks->setRange(0, 100000);
    m_chunks->setSpecialValueText(tr("all"));
    m_chunks->setValue(32);
    m_addGguf = new QPushButton(tr("Add GGUF…"), setup);
    m_evaluate = new QPushButton(tr("Evaluate"), setup);
    m_cancel = new QPushButton(tr("Cancel"), setup);
    m_cancel->setEnabled(false);
    form->addWidget(new QLabel(tr("Text"), setup));
    form->addWidget(m_text, 1);
    form->addWidget(ctxLabel);
    form->addWidget(m_ctx);
    form->addWidget(chunksLabel);
    form->addWidget(m_chunks);
    form->addWidget(m_addGguf);
    form->addWidget(m_evaluate);
    form->addWidget(m_cancel);
    m_memory = new QLabel(setup);
    m_memory->setTextFormat(Qt::PlainText);
    setupLayout->addWidget(m_memory);
    root->addWidget(setup);

    m_table = new QTableWidget(0, ColCount, this);
    m_table->setHorizontalHeaderLabels({tr("Model"), tr("Size"), tr("Bits/weight"), tr("PPL"), tr("ΔPPL"),
                                        tr("Mean KLD"), tr("Same top %")});
    m_table->horizontalHeader()->setSectionResizeMode(ColName, QHeaderView::Stretch);
    m_table->verticalHeader()->setVisible(false);
    m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
    auto* splitter = new QSplitter(Qt::Vertical, this);
    splitter->addWidget(m_table);

    auto* gen = new QGroupBox(tr("Generation (same prompt and seed)"), this);
    auto* gl = new QVBoxLayout(gen);
    auto* row = new QHBoxLayout;
    m_prompt = new QLineEdit(QStringLiteral("I have a dream"), gen);
    m_tokens = new QSpinBox(gen);
    m_tokens->setRange(1, 4096);
    m_tokens->setValue(46);
    m_seed = new QSpinBox(gen);
    m_seed->setRange(0, 1 << 30);
    m_seed->setValue(42);
    m_topK = new QSpinBox(gen);
    m_topK->setRange(0, 100000);
    m_topK->setSpecialValueText(tr("greedy"));
    m_topK->setValue(30);
    m_variantBox = new QComboBox(gen);
    m_generate = new QPushButton(tr("Generate"), gen);
    row->addWidget(new QLabel(tr("Prompt"), gen));
    row->addWidget(m_prompt, 1);
    row->addWidget(new QLabel(tr("New tokens"), gen));
    row->addWidget(m_tokens);
    row->addWidget(new QLabel(tr("Seed"), gen));
    row->addWidget(m_seed);
    row->addWidget(new QLabel(tr("Top-k"), gen));
    row->addWidget(m_topK);
    row->addWidget(new QLabel(tr("vs"), gen));
    row->addWidget(m_variantBox);
    row->addWidget(m_generate);
    gl->addLayout(row);
    auto* texts = new QSplitter(Qt::Horizontal, gen);
    m_originalText = new QPlainTextEdit(texts);
    m_originalText->setReadOnly(true);
    m_originalText->setPlaceholderText(tr("original"));
    m_variantText = new QPlainTextEdit(texts);
    m_variantText->setReadOnly(true);
    m_variantText->setPlaceholderText(tr("variant"));
    texts->addWidget(m_originalText);
    texts->addWidget(m_variantText);
    gl->addWidget(texts, 1);
    splitter->addWidget(gen);
    root->addWidget(splitter, 1);

    auto* bottom = new QHBoxLayout;
    m_progress = new QProgressBar(this);
    m_progress->setRange(0, 1000);
    m_progress->setValue(0);
    m_status = new QLabel(this);
    bottom->addWidget(m_progress, 1);
    bottom->addWidget(m_status, 2);
    root->addLayout(bottom);

    connect(m_text, qOverload<int>(&QComboBox::activated), this, [this](int i) {
        if (m_text->itemData(i).toString().isEmpty()) chooseTextFile();
    });
    connect(m_text, qOverload<int>(&QComboBox::currentIndexChanged), this, &EvaluatePanel::updateMemoryLabel);
    connect(m_ctx, &QSpinBox::valueChanged, this, &EvaluatePanel::updateMemoryLabel);
    connect(m_chunks, &QSpinBox::valueChanged, this, &EvaluatePanel::updateMemoryLabel);
    connect(m_addGguf, &QPushButton::clicked, this, &EvaluatePanel::chooseGgufFile);
    connect(m_evaluate, &QPushButton::clicked, this, [this] { evaluate(); });
    connect(m_generate, &QPushButton::clicked, this, [this] { generate(); });
    connect(m_cancel, &QPushButton::clicked, this, &EvaluatePanel::cancel);

    connect(m_runner, &BackgroundJob::progress, this, [this](double f, const QString& step) {
        m_progress->setValue(int(std::lround(1000 * std::clamp(f, 0.0, 1.0))));
        m_status->setText(step);
    });
    connect(m_runner, &BackgroundJob::finished, this, [this] {
        const bool wasGenerating = m_generatingVariant != -2;
        setRunning(false);
        m_progress->setValue(1000);
        m_status->setText(tr("done"));
        if (wasGenerating)
            emit generationFinished();
        else
            emit evaluationFinished();
    });
    connect(m_runner, &BackgroundJob::failed, this, [this](const QString& msg) {
        setRunning(false);
        m_status->setText(tr("failed: %1").arg(msg));
    });
    connect(m_runner, &BackgroundJob::cancelled, this, [this] {
        setRunning(false);
        m_status->setText(tr("cancelled"));
    });
    rebuildTable();
}

EvalVariant EvaluatePanel::originalVariant() const {
    EvalVariant v;
    v.name = tr("original");
    v.model = m_model;
    if (m_model) {
        v.bytes = tensorBytes(*m_model);
        const uint64_t p = parameterCount(*m_model);
        v.bitsPerWeight = p ? 8.0 * double(v.bytes) / double(p) : 0;
    }
    return v;
}

void EvaluatePanel::setModel(ModelPtr model) {
    m_runner->cancel();
    m_model = std::move(model);
    m_variants.clear();
    m_quantizedIndex = -1;
    m_originalText->clear();
    m_variantText->clear();
    rebuildTable();
}

void EvaluatePanel::setQuantizeResult(ModelPtr model, ResultPtr result) {
    if (!model || !result) return;
    if (model != m_model) setModel(model);
    // The run's method re-made row by row while the engine multiplies (no F32 copy of the model); only
    // tensors no source reads by rows (GPT-2's Conv1D weights) are made whole.
    const uint64_t p = parameterCount(*model);
    EvalVariant v = runnableEvalVariant(
        tr("fake-quantized (%1)").arg(toQ(result->spec.describe())), model,
        std::make_shared<const qz::Variant>(qz::variantFromQuantizeResult(*model, *result)),
        result->modelBytesAfter, p ? 8.0 * double(result->modelBytesAfter) / double(p) : 0);
    if (m_quantizedIndex >= 0 && m_quantizedIndex < int(m_variants.size()))
        m_variants[size_t(m_quantizedIndex)] = std::move(v);
    else {
        m_quantizedIndex = int(m_variants.size());
        m_variants.push_back(std::move(v));
    }
    rebuildTable();
}

void EvaluatePanel::addVariant(const QString& name, ModelPtr model, std::shared_ptr<const qz::WeightOverrides> overrides,
                               uint64_t bytes, double bitsPerWeight) {
    if (!model) return;
    EvalVariant v;
    v.name = name;
    v.model = std::move(model);
    v.overrides = std::move(overrides);
    v.bytes = bytes;
    v.bitsPerWeight = bitsPerWeight;
    m_variants.push_back(std::move(v));
    rebuildTable();
}

void EvaluatePanel::addEvalVariant(EvalVariant v) {
    if (!v.model) return;
    m_variants.push_back(std::move(v));
    rebuildTable();
}

bool EvaluatePanel::addGgufFile(const QString& path, QString* error) {
    auto m = qz::openModel(toStd(path));
    if (!m) {
        if (error) *error = toDisplay(m.error().message);
        return false;
    }
    ModelPtr model(std::move(*m));
    const uint64_t bytes = tensorBytes(*model), p = parameterCount(*model);
    addVariant(QFileInfo(path).fileName(), model, nullptr, bytes, p ? 8.0 * double(bytes) / double(p) : 0);
    return true;
}

void EvaluatePanel::setTextPath(const QString& path) { selectTextFile(m_text, path); }

QString EvaluatePanel::textPath() const {
    const QString p = m_text->currentData().toString();
    return p.isEmpty() ? bundledText() : p;
}

void EvaluatePanel::setContext(int nCtx) { m_ctx->setValue(nCtx); }
void EvaluatePanel::setChunks(int nChunks) { m_chunks->setValue(nChunks); }

void EvaluatePanel::chooseTextFile() {
    const QString f = QFileDialog::getOpenFileName(this, tr("Evaluation text"), QString(), tr("Text (*.txt);;All files (*)"));
    if (f.isEmpty()) {
        m_text->setCurrentIndex(0);
        return;
    }
    setTextPath(f);
}

void EvaluatePanel::chooseGgufFile() {
    const QString f = QFileDialog::getOpenFileName(this, tr("Add a GGUF variant"), QString(), tr("GGUF (*.gguf);;All files (*)"));
    if (f.isEmpty()) return;
    QString err;
    if (!addGgufFile(f, &err)) QMessageBox::warning(this, tr("Add GGUF"), err);
}

void EvaluatePanel::rebuildTable() {
    const int rows = m_model ? int(m_variants.size()) + 1 : 0;
    m_table->setRowCount(rows);
    for (int r = 0; r < rows; ++r) {
        const EvalVariant v = r == 0 ? originalVariant() : m_variants[size_t(r - 1)];
        m_table->setItem(r, ColName, cell(toDisplay(v.name), false)); // names may come from file names
        m_table->setItem(r, ColSize, cell(mib(v.bytes)));
        m_table->setItem(r, ColBpw, cell(v.bitsPerWeight > 0 ? QString::number(v.bitsPerWeight, 'f', 3) : QStringLiteral("?")));
        for (int c = ColPpl; c < ColCount; ++c) m_table->setItem(r, c, cell(QString()));
    }
    const QString current = m_variantBox->currentText();
    m_variantBox->clear();
    for (const auto& v : m_variants)
        m_variantBox->addItem(toDisplay(v.name));
    const int keep = m_variantBox->findText(current);
    m_variantBox->setCurrentIndex(keep >= 0 ? keep : m_variantBox->count() - 1);
    m_evaluate->setEnabled(m_model && !m_runner->isRunning());
    m_generate->setEnabled(m_model && !m_runner->isRunning());
    updateMemoryLabel();
}

void EvaluatePanel::setThreads(int threads) {
    m_threads = threads;
    updateMemoryLabel();
}

void EvaluatePanel::setAvailableMemoryOverride(uint64_t bytes) {
    m_availableOverride = bytes;
    updateMemoryLabel();
}

qz::MemoryEstimate EvaluatePanel::memoryEstimate() const {
    if (!m_model) return {};
    qz::EvalMemorySettings s;
    s.nCtx = m_ctx->value();
    s.nChunks = m_chunks->value() > 0 ? m_chunks->value() : -1;
    s.threads = m_threads;
    s.textBytes = uint64_t(std::max<qint64>(0, QFileInfo(textPath()).size()));
    // The job keeps what it makes until it ends (the fake-quantized variant caches its weights).
    s.keepMadeOverrides = true;
    for (const auto& v : m_variants) {
        qz::EvalVariantMemory m = variantMemory(v);
        if (v.model && v.model != m_model) m.fileBytes = v.model->totalBytes();
        s.variants.push_back(m);
    }
    return evaluationMemory(*m_model, s);
}

void EvaluatePanel::updateMemoryLabel() {
    showMemoryEstimate(m_memory, memoryEstimate(), availableMemory(m_availableOverride));
}

void EvaluatePanel::showRow(const EvalRow& row) {
    if (row.index < 0 || row.index >= m_table->rowCount()) return;
    const int r = row.index;
    if (!row.ok) {
        m_table->setItem(r, ColPpl, cell(tr("error")));
        m_table->item(r, ColPpl)->setToolTip(row.error);
        return;
    }
    m_table->setItem(r, ColPpl, cell(QStringLiteral("%1 ± %2").arg(row.ppl, 0, 'f', 4).arg(row.pplError, 0, 'f', 4)));
    m_table->item(r, ColPpl)->setData(Qt::UserRole, row.ppl);
    auto num = [&](int col, double v, int prec, const QString& text) {
        m_table->setItem(r, col, cell(text));
        m_table->item(r, col)->setData(Qt::UserRole, v);
        (void)prec;
    };
    if (r == 0) {
        num(ColDeltaPpl, 0.0, 4, QStringLiteral("—"));
        num(ColKld, 0.0, 6, QStringLiteral("—"));
        num(ColSameTop, 100.0, 3, QStringLiteral("—"));
    } else {
        num(ColDeltaPpl, row.deltaPpl, 4, QStringLiteral("%1%2").arg(row.deltaPpl >= 0 ? QStringLiteral("+") : QString())
                                                 .arg(row.deltaPpl, 0, 'f', 4));
        num(ColKld, row.meanKld, 6, QString::number(row.meanKld, 'f', 6));
        num(ColSameTop, row.sameTopPercent, 3, QString::number(row.sameTopPercent, 'f', 3));
    }
    m_table->item(r, ColPpl)->setToolTip(tr("%1 scored tokens").arg(row.tokens));
}

void EvaluatePanel::setRunning(bool on) {
    m_cancel->setEnabled(on);
    m_evaluate->setEnabled(!on && m_model);
    m_generate->setEnabled(!on && m_model);
    m_addGguf->setEnabled(!on);
    if (on) m_progress->setValue(0);
}

bool EvaluatePanel::evaluate() {
    if (!m_model || m_runner->isRunning()) return false;
    QFile f(textPath());
    if (!f.open(QIODevice::ReadOnly)) {
        m_status->setText(tr("cannot read %1").arg(textPath()));
        return false;
    }
    if (auto fits = qz::checkMemoryFits(memoryEstimate(), availableMemory(m_availableOverride)); !fits) {
        m_status->setText(
            tr("Not enough memory: %1. Use a shorter context or fewer chunks, or evaluate fewer "
               "variants.")
                .arg(toQ(fits.error().message)));
        return false;
    }
    const QByteArray bytes = f.readAll();
    qz::EvalParams p;
    p.nCtx = m_ctx->value();
    p.nChunks = m_chunks->value() > 0 ? m_chunks->value() : -1;
    p.threads = m_threads;
    rebuildTable();
    m_generatingVariant = -2;
    auto onRow = [this](const EvalRow& row) { showRow(row); };
    if (!m_runner->start(evaluateWork(originalVariant(), m_variants,
                                      std::string(bytes.constData(), size_t(bytes.size())), p, onRow)))
        return false;
    setRunning(true);
    return true;
}

bool EvaluatePanel::generate() {
    if (!m_model || m_runner->isRunning()) return false;
    qz::GenerateParams p;
    p.prompt = toStd(m_prompt->text());
    p.nPredict = m_tokens->value();
    p.seed = uint64_t(m_seed->value());
    p.topK = m_topK->value();
    p.greedy = m_topK->value() == 0;
    std::vector<EvalVariant> vs;
    const int vi = m_variantBox->currentIndex();
    if (vi >= 0 && vi < int(m_variants.size())) vs.push_back(m_variants[size_t(vi)]);
    m_originalText->setPlainText(m_prompt->text());
    m_variantText->setPlainText(vs.empty() ? QString() : m_prompt->text());
    m_generatingVariant = vi;
    auto onToken = [this](int index, const QString& piece) {
        QPlainTextEdit* e = index == 0 ? m_originalText : m_variantText;
        e->moveCursor(QTextCursor::End);
        e->insertPlainText(piece);
        emit tokenShown(index, piece);
    };
    auto onDone = [this](int index, const QString&, double tps) {
        m_status->setText(
            tr("%1: %2 tokens/s").arg(index == 0 ? tr("original") : tr("variant")).arg(tps, 0, 'f', 1));
    };
    if (!m_runner->start(generateWork(originalVariant(), vs, p, m_threads, onToken, onDone))) return false;
    setRunning(true);
    return true;
}

void EvaluatePanel::cancel() { m_runner->cancel(); }

}  // namespace qz::ui
