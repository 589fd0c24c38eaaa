// Right-hand panel: which quantization method and bit width, which granularity, which tensors, and
// the Run / Cancel buttons with the progress bar and ETA. Built from the MethodRegistry, so new
// methods appear without changes here. Emits requests only; the main window runs the job.
#pragma once

#include <QWidget>

#include "jobs/quantize_job.h"

class QComboBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;

namespace qz::ui {

class MethodOptionsEditor;

class MethodPanel : public QWidget {
    Q_OBJECT
public:
    explicit MethodPanel(QWidget* parent = nullptr);

    qz::QuantSpec spec() const;
    void setSpec(const qz::QuantSpec& spec);
    QString methodId() const;

    // The tensor filter; `treeSelection` is used in "selection in the tree" mode.
    qz::TensorFilter filter(const QStringList& treeSelection) const;
    qz::TensorSelection selectionMode() const;
    void setSelectionMode(qz::TensorSelection mode);
    void setRegex(const QString& regex);
    void setTreeSelectionCount(int n);
    // Empty when the choices can run; otherwise why not (bad regex, empty selection, no model).
    QString validationError() const;

    void setModelLoaded(bool loaded);
    void setRunning(bool running);
    void setProgress(double fraction, const QString& step, double etaSeconds);
    void setStatusText(const QString& text);

    QPushButton* runButton() const { return m_run; }
    QPushButton* cancelButton() const { return m_cancel; }
    QProgressBar* progressBar() const { return m_progress; }
    MethodOptionsEditor* optionsEditor() const { return m_options; }

signals:
    void runRequested();
    void cancelRequested();
    void choicesChanged();

private:
    void onMethodChanged();
    void updateEnabled();
    int groupSize() const;

    QComboBox* m_method;
    QLabel* m_methodHelp;
    QWidget* m_optionsHost;
    MethodOptionsEditor* m_options = nullptr;
    QSpinBox* m_bits;
    QComboBox* m_granularity;
    QComboBox* m_groupSize;
    QSpinBox* m_customGroup;
    QComboBox* m_selection;
    QLineEdit* m_regex;
    QLabel* m_selectionInfo;
    QPushButton* m_run;
    QPushButton* m_cancel;
    QProgressBar* m_progress;
    QLabel* m_status;
    bool m_modelLoaded = false;
    bool m_running = false;
    int m_treeSelection = 0;
};

}  // namespace qz::ui
