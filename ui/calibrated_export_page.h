// The common page of the calibrated exports in the Export workspace (GPTQ, EXL2; ui/gptq_export_page.h,
// ui/exl2_export_page.h). A format subclass adds its options to optionsForm() and supplies the job; the
// page does everything around it:
//  - calibration text (the bundled Shakespeare, or a file), windows × tokens, output folder;
//  - Export / Cancel, progress with ETA (BackgroundJob: the core runs off the UI thread and stops at
//    its next progress report after Cancel; the UI is idle at once); "resumed N layers" when the core
//    picked up a partial run in the same output folder;
//  - a per-layer bar chart filled by the core's LayerReports as layers finish (the subclass decides the
//    series), a layer table and a log;
//  - after the run: "Before / after" histograms of a chosen layer (original weights vs the dequantized
//    result the core returned, computed on a worker; without "keep", the layer decoded from the written
//    folder's codes), and "Evaluate": our engine's perplexity (and
//    KL-divergence) of the original and the result on a text (ui/evaluate_jobs.h), or "Send to Evaluate
//    workspace" (variantReady, or evalVariantReady for a result read from its folder) to measure it there
//    next to the other variants. Without "keep" the evaluation reads the folder row by row while the engine
//    multiplies (no F32 copy of the model).
#pragma once

#include <QWidget>
#include <functional>
#include <memory>
#include <optional>

#include "background_job.h"
#include "evaluate_jobs.h"
#include "jobs/memory_estimate.h"
#include "qt_types.h"
#include "variants/variants.h"

class QComboBox;
class QFormLayout;
class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTabWidget;
class QTableWidget;
class QCheckBox;

namespace qz::ui {

class HistogramPlot;
class LayerBarChart;

class CalibratedExportPage : public QWidget {
    Q_OBJECT
public:
    enum EvalColumn { EvalName, EvalPpl, EvalPplError, EvalDelta, EvalKld, EvalColumnCount };

    ~CalibratedExportPage() override;

    void setModel(ModelPtr model);
    ModelPtr model() const { return m_model; }
    QString formatName() const { return m_formatName; }

    bool start();     // the Export button; false (with a message in the log) if it cannot start
    void cancel();
    bool isRunning() const;
    bool evaluate();  // perplexity of the original and the result (needs a finished run)
    void showLayer(const QString& weightName);  // before / after histograms

    void setCalibrationPath(const QString& path);  // adds the file to the box and selects it
    QString calibrationPath() const;
    bool hasResult() const { return m_overrides != nullptr || m_folder != nullptr; }
    OverridesPtr resultOverrides() const { return m_overrides; }  // null unless "keep" was on
    // The written folder as a variant when the dequantized weights were not kept (else null).
    std::shared_ptr<const qz::Variant> resultFolder() const { return m_folder; }
    int resumedLayers() const { return m_resumed; }

    // The "keep the dequantized weights" option costs 4 bytes per quantized weight (per kept variant) for
    // as long as the result is shown: it is checked by default only for models of at most this many
    // parameters (the label says so, with the size for the opened model). Settable for tests.
    static constexpr uint64_t kKeepDefaultMaxParameters = 500'000'000;
    void setKeepDefaultMaxParameters(uint64_t n) { m_keepMaxParams = n; }

    // A user-chosen text must be a readable, non-empty, text (no NUL byte in its first 64 KiB) file of at
    // most maxBytes; otherwise *error names the file and the problem. Cheap (UI thread): size + 64 KiB.
    static bool checkTextFile(const QString& path, qint64 maxBytes, QString* error);

    // The memory this export needs with the current settings (jobs/memory_estimate.h), shown on the page
    // and checked by start(), which refuses with the estimate when it exceeds the available memory.
    qz::MemoryEstimate memoryEstimate() const;
    QLabel* memoryLabel() const { return m_memory; }
    // The available memory start() compares with (0: read /proc/meminfo). Settable for tests.
    void setAvailableMemoryOverride(uint64_t bytes) { m_availableOverride = bytes; }
    static constexpr qint64 kMaxCalibrationBytes = qint64(64) << 20;

    // Widgets (for tests and the screenshot).
    QFormLayout* optionsForm() const { return m_options; }
    LayerBarChart* chart() const { return m_chart; }
    QLineEdit* outputEdit() const { return m_output; }
    QComboBox* calibrationBox() const { return m_calib; }
    QSpinBox* samplesSpin() const { return m_samples; }
    QSpinBox* seqLenSpin() const { return m_seqLen; }
    QCheckBox* resumeCheck() const { return m_resume; }
    QPushButton* exportButton() const { return m_run; }
    QPushButton* cancelButton() const { return m_cancel; }
    QProgressBar* progressBar() const { return m_progress; }
    QLabel* etaLabel() const { return m_eta; }
    QLabel* summary() const { return m_summary; }
    QPlainTextEdit* log() const { return m_log; }
    QTableWidget* layerTable() const { return m_layers; }
    QComboBox* layerBox() const { return m_layerBox; }
    HistogramPlot* histogram() const { return m_hist; }
    QLabel* histogramStats() const { return m_histStats; }
    QSpinBox* evalContextSpin() const { return m_evalCtx; }
    QSpinBox* evalChunksSpin() const { return m_evalChunks; }
    QPushButton* evaluateButton() const { return m_evaluate; }
    QPushButton* sendButton() const { return m_send; }
    QTableWidget* evalTable() const { return m_evalTable; }
    QTabWidget* tabs() const { return m_tabs; }
    BackgroundJob* job() const { return m_job; }
    BackgroundJob* evalJob() const { return m_evalJob; }
    BackgroundJob* histogramJob() const { return m_histJob; }

signals:
    void runningChanged(bool running);
    void layerReported(const QString& weightName);   // a bar was added
    void exportFinished(const QString& outputDir);
    void exportCancelled();
    void exportFailed(const QString& message);
    void layerShown(const QString& weightName);      // histograms drawn
    void evaluationFinished();
    // A result to measure in the Evaluate workspace (the original model with these weights).
    void variantReady(const QString& name, qz::ui::ModelPtr model, qz::ui::OverridesPtr overrides,
                      quint64 bytes, double bitsPerWeight);
    // The same for a result read from its written folder.
    void evalVariantReady(const qz::ui::EvalVariant& variant);

protected:
    CalibratedExportPage(const QString& formatName, QWidget* parent);

    // The job for the current settings (core params are built on the UI thread, the work runs on the
    // worker and posts its reports). Return an empty Work with *error set if the settings are invalid.
    virtual BackgroundJob::Work makeWork(const QString& outputDir, const QString& calibPath, QString* error) = 0;
    // The calibration settings that set the memory (windows, tokens, state storage); the default reads the
    // page's windows × tokens with F32 states.
    virtual qz::CalibMemorySettings memorySettings() const;
    void updateMemoryLabel();
    virtual QString defaultOutputName() const = 0;   // e.g. "bard-llama-GPTQ-4bit-g128"
    virtual void prepareRun() = 0;                    // reset chart / table before a run
    virtual void modelChanged() {}
    virtual QString resultName() const = 0;           // the variant's name, e.g. "GPTQ 4-bit g128"
    // The kind of folder the export writes, read back when the dequantized weights are not kept (none: the
    // result has no histograms or evaluation without them).
    virtual std::optional<qz::VariantKind> folderKind() const { return std::nullopt; }

    // For the subclasses (UI thread).
    void updateDefaultOutput();
    void appendLog(const QString& line);
    void addLayerRow(const QStringList& cells, bool resumed);
    void setLayerColumns(const QStringList& headers);
    void noteLayer(const QString& weightName, bool resumed);  // counts resumed layers, emits layerReported
    // The finished run: its dequantized weights (may be null), an optional second variant to evaluate
    // (e.g. the RTN baseline), the summary, and the size for the Evaluate workspace.
    void setResult(const QString& outputDir, OverridesPtr overrides, const QString& extraName, OverridesPtr extra,
                   const QString& summary, quint64 bytes, double bitsPerWeight);
    int threads() const { return 0; }
    // The subclass's keep box; copies() = how many 4-byte-per-weight variants a run keeps (GPTQ with
    // the RTN baseline: 2). The base sets its default and label whenever the model changes.
    void registerKeepCheck(QCheckBox* box, std::function<int()> copies);
    void updateKeepLabel();

private:
    void setRunning(bool on);
    void chooseCalibrationFile();
    void onEvalRow(const EvalRow& row);

    QString m_formatName;
    ModelPtr m_model;
    BackgroundJob* m_job;
    BackgroundJob* m_evalJob;
    BackgroundJob* m_histJob;  // a layer's histograms; a newer request supersedes an older one
    OverridesPtr m_overrides, m_extra;
    std::shared_ptr<const qz::Variant> m_folder;  // the written folder, when the weights were not kept
    QString m_extraName, m_outputDir;
    QString m_cancelledDir;  // the output folder of the last cancelled run
    quint64 m_bytes = 0;
    double m_bpw = 0;
    int m_resumed = 0, m_reported = 0;
    bool m_outputEdited = false;
    QCheckBox* m_keepBox = nullptr;
    QLabel* m_memory = nullptr;
    uint64_t m_availableOverride = 0;
    std::function<int()> m_keepCopies;
    uint64_t m_keepMaxParams = kKeepDefaultMaxParameters;

    QWidget* m_optionsBox;
    QFormLayout* m_options;
    QComboBox* m_calib;
    QSpinBox* m_samples;
    QSpinBox* m_seqLen;
    QCheckBox* m_resume;
    QLineEdit* m_output;
    QPushButton* m_run;
    QPushButton* m_cancel;
    QProgressBar* m_progress;
    QLabel* m_eta;
    QLabel* m_summary;
    LayerBarChart* m_chart;
    QTabWidget* m_tabs;
    QTableWidget* m_layers;
    QPlainTextEdit* m_log;
    QComboBox* m_layerBox;
    HistogramPlot* m_hist;
    QLabel* m_histStats;
    QComboBox* m_evalText;
    QSpinBox* m_evalCtx;
    QSpinBox* m_evalChunks;
    QPushButton* m_evaluate;
    QPushButton* m_evalCancel;
    QPushButton* m_send;
    QTableWidget* m_evalTable;
    QLabel* m_evalStatus;
};

}  // namespace qz::ui
