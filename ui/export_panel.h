// The "Export" workspace: write a GGUF file that llama.cpp loads.
//  - choose the type (F32/F16/BF16, Q8_0..Q5_1, the K-quant mixes), the output path (default
//    {model}.{TYPE}.gguf), an importance matrix, "pure", output / token-embedding types;
//  - before running, the plan: every tensor's planned type (editable per tensor: an edit becomes a
//    --tensor-type override), bytes, and the reason llama-quantize's rules give; the resulting file
//    size and bits per weight;
//  - run in the background with progress, ETA and Cancel; a live per-tensor log (name, shape, type,
//    bytes before → after); the final size and bits per weight;
//  - "Compare types": the selected tensor under several types side by side (TypeCompareView);
//  - "Target size": per-tensor types for the least predicted loss within a file size (TargetSizeView);
//    its "Use for export" sets the type and every tensor's type here, as per-tensor edits.
//  - gguf-split output (parts of at most a size or a tensor count) and --override-kv metadata, one
//    KEY=TYPE:VALUE per line; invalid entries are reported in the summary and nothing runs.
// The format box switches pages: GGUF (this panel's own widgets) and the calibrated formats, each a
// CalibratedExportPage with its options, progress, per-layer chart and result (GPTQ, EXL2; addFormatPage).
#pragma once

#include <QTimer>
#include <QWidget>

#include "background_job.h"
#include "evaluate_jobs.h"
#include "export/gguf_export.h"
#include "qt_types.h"

class QCheckBox;
class QComboBox;
class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;
class QStackedWidget;
class QTableWidget;

namespace qz::ui {

using ExportResultPtr = std::shared_ptr<const qz::GgufExportResult>;

class CalibratedExportPage;
class Exl2ExportPage;
class GptqExportPage;
class TargetSizeView;
class TypeCompareView;

class ExportPanel : public QWidget {
    Q_OBJECT
public:
    explicit ExportPanel(QWidget* parent = nullptr);

    void setModel(ModelPtr model);
    BackgroundJob* runner() const { return m_runner; }    // the export
    BackgroundJob* planner() const { return m_planner; }  // dry runs (a newer one supersedes an older)
    TypeCompareView* compareView() const { return m_compare; }
    TargetSizeView* targetView() const { return m_target; }
    QTableWidget* planTable() const { return m_plan; }
    QComboBox* typeBox() const { return m_type; }
    QLineEdit* outputEdit() const { return m_output; }
    QPushButton* exportButton() const { return m_run; }
    QPushButton* cancelButton() const { return m_cancel; }
    QPlainTextEdit* log() const { return m_log; }
    QLabel* summary() const { return m_summary; }
    QComboBox* formatBox() const { return m_format; }
    QComboBox* splitModeBox() const { return m_splitMode; }     // "none", "size", "tensors" (item data)
    QLineEdit* splitValueEdit() const { return m_splitValue; }  // "2G" / "500M", or a tensor count
    QPlainTextEdit* kvOverridesEdit() const { return m_kvOverrides; }
    GptqExportPage* gptqPage() const { return m_gptq; }
    Exl2ExportPage* exl2Page() const { return m_exl2; }
    // Shows the page of format id ("gguf", "gptq", ...); false if unknown.
    bool setFormat(const QString& id);
    // A format page with its own options and job; it gets the model with setModel.
    void addFormatPage(const QString& id, const QString& label, CalibratedExportPage* page);
    // The parameters the form describes (output path, type, overrides from edited rows, ...).
    qz::GgufExportParams params() const;
    // The split and --override-kv fields into p; an error message for the user, or empty.
    QString splitAndKvParams(qz::GgufExportParams& p) const;

signals:
    void exportFinished(const QString& path);
    void folderExported(const QString& format, const QString& dir);  // a calibrated export ("gptq", "exl2")
    void planShown();  // a dry run's plan is in the table
    // A calibrated export's result to measure in the Evaluate workspace.
    void variantReady(const QString& name, qz::ui::ModelPtr model, qz::ui::OverridesPtr overrides, quint64 bytes,
                      double bitsPerWeight);
    void evalVariantReady(const qz::ui::EvalVariant& variant);  // one read from its written folder

private:
    void schedulePlan();
    void plan();
    void showPlan(const ExportResultPtr& plan);
    void logTensor(const qz::GgufTensorLog& t);
    void showExported(const ExportResultPtr& r);
    void startExport();
    void onTypeChanged();
    void setRunning(bool on);
    void applyTargetPlan(const QString& fileType, const QMap<QString, QString>& types, const QString& imatrixPath);
    QString defaultOutputFor(const QString& type) const;
    QWidget* buildSplitAndKvFields();

    ModelPtr m_model;
    BackgroundJob* m_runner;
    BackgroundJob* m_planner;
    QTimer m_planTimer;
    QComboBox* m_format;
    QStackedWidget* m_pages;
    QList<CalibratedExportPage*> m_formatPages;
    GptqExportPage* m_gptq;
    Exl2ExportPage* m_exl2;
    QComboBox* m_type;
    QLineEdit* m_output;
    QLineEdit* m_imatrix;
    QCheckBox* m_pure;
    QComboBox* m_outputType;
    QComboBox* m_embdType;
    QComboBox* m_splitMode = nullptr;
    QLineEdit* m_splitValue = nullptr;
    QPlainTextEdit* m_kvOverrides = nullptr;
    QTableWidget* m_plan;
    QLabel* m_summary;
    QPushButton* m_run;
    QPushButton* m_cancel;
    QProgressBar* m_progress;
    QLabel* m_eta;
    QPlainTextEdit* m_log;
    TypeCompareView* m_compare;
    TargetSizeView* m_target;
    QMap<QString, QString> m_edits;   // GGUF tensor name -> type chosen by the user
    bool m_outputEdited = false;
    bool m_filling = false;
};

}  // namespace qz::ui
