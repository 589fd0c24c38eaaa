// The "Evaluate" workspace: measure what quantization costs.
//  - a text (the bundled resources/texts/shakespeare-valid.txt, or any file), a context size (-c) and
//    a chunk count, as llama-perplexity takes them;
//  - a table: the original model and each variant - size, bits per weight, perplexity (± its error),
//    ΔPPL, mean KL-divergence and same-top-token % against the original on the same chunks;
//  - variants: the main window's fake-quantized result (setQuantizeResult: the dequantized weights are
//    rebuilt on the worker with analyzeTensor), any (model, overrides) pair (addVariant), and GGUF
//    files (addGgufFile, e.g. an export);
//  - generation: one prompt and seed through the original and a chosen variant, side by side, tokens
//    streamed as they come;
//  - every job runs in the background (a BackgroundJob running ui/evaluate_jobs.h) with progress and Cancel.
#pragma once

#include <QWidget>

#include "background_job.h"
#include "evaluate_jobs.h"
#include "qt_types.h"

class QComboBox;
class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTableWidget;

namespace qz::ui {

class EvaluatePanel : public QWidget {
    Q_OBJECT
public:
    enum Column { ColName, ColSize, ColBpw, ColPpl, ColDeltaPpl, ColKld, ColSameTop, ColCount };

    explicit EvaluatePanel(QWidget* parent = nullptr);

    // The original model; clears the variants and the table.
    void setModel(ModelPtr model);
    // The main window's fake-quantized result of `model` (replaces an earlier one of this kind).
    void setQuantizeResult(ModelPtr model, ResultPtr result);
    // Any variant: a model (the original's, or another file) with optional overridden weights.
    // bytes / bits per weight are shown when known (0 = unknown).
    void addVariant(const QString& name, ModelPtr model, std::shared_ptr<const qz::WeightOverrides> overrides,
                    uint64_t bytes = 0, double bitsPerWeight = 0);
    // Opens a GGUF (or any model) file as a variant; false with a message if it cannot be opened.
    bool addGgufFile(const QString& path, QString* error = nullptr);
    // Any prepared variant (e.g. runnableEvalVariant of a GPTQ / EXL2 folder).
    void addEvalVariant(EvalVariant v);
    int variantCount() const { return int(m_variants.size()); }

    void setTextPath(const QString& path);  // empty = the bundled sample
    QString textPath() const;
    void setContext(int nCtx);
    void setChunks(int nChunks);            // 0 = all
    void setThreads(int threads);

    // The memory an evaluation with the current settings and variants needs (jobs/memory_estimate.h),
    // shown under the settings and checked by evaluate(), which refuses when it exceeds the available
    // memory. The available memory compared with (0: MemAvailable from /proc/meminfo); settable for tests.
    qz::MemoryEstimate memoryEstimate() const;
    void setAvailableMemoryOverride(uint64_t bytes);
    QLabel* memoryLabel() const { return m_memory; }

    // Start / stop jobs (the buttons call these). false if nothing can start.
    bool evaluate();
    bool generate();
    void cancel();

    BackgroundJob* runner() const { return m_runner; }
    QTableWidget* table() const { return m_table; }
    QPushButton* evaluateButton() const { return m_evaluate; }
    QPushButton* generateButton() const { return m_generate; }
    QPushButton* cancelButton() const { return m_cancel; }
    QLineEdit* promptEdit() const { return m_prompt; }
    QSpinBox* tokensSpin() const { return m_tokens; }
    QComboBox* variantBox() const { return m_variantBox; }
    QPlainTextEdit* originalText() const { return m_originalText; }
    QPlainTextEdit* variantText() const { return m_variantText; }
    QLabel* status() const { return m_status; }

signals:
    void evaluationFinished();
    void generationFinished();
    void tokenShown(int index, const QString& piece);  // a generated piece was appended (0 = original)

private:
    void rebuildTable();
    void updateMemoryLabel();
    void showRow(const EvalRow& row);
    void setRunning(bool on);
    void chooseTextFile();
    void chooseGgufFile();
    EvalVariant originalVariant() const;

    ModelPtr m_model;
    std::vector<EvalVariant> m_variants;
    int m_quantizedIndex = -1;   // m_variants index of the setQuantizeResult variant
    int m_threads = 0;
    QString m_textPath;
    BackgroundJob* m_runner;
    QComboBox* m_text;
    QSpinBox* m_ctx;
    QSpinBox* m_chunks;
    QPushButton* m_addGguf;
    QPushButton* m_evaluate;
    QPushButton* m_cancel;
    QTableWidget* m_table;
    QLineEdit* m_prompt;
    QSpinBox* m_tokens;
    QSpinBox* m_seed;
    QSpinBox* m_topK;
    QComboBox* m_variantBox;
    QPushButton* m_generate;
    QPlainTextEdit* m_originalText;
    QPlainTextEdit* m_variantText;
    QProgressBar* m_progress;
    QLabel* m_status;
    QLabel* m_memory;
    uint64_t m_availableOverride = 0;
    int m_generatingVariant = -1;   // m_variants index shown on the right during a generation
};

}  // namespace qz::ui
