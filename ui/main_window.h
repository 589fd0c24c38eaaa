// The main window only lays out the panels and wires them to the jobs:
//   left: model tree + summary | centre: workspace tabs (Histograms, Tensors table, Codes, Evaluate,
//   Export, Teaching) | right: method panel with Run/Cancel | bottom: log dock.
// Models open on a worker (ModelLoader), quantization runs on a worker (BackgroundJob), tensor
// views are recomputed on demand (TensorAnalyzer). Errors go to a non-blocking message box, the
// status bar and the log — never a crash.
#pragma once

#include <QMainWindow>

#include "qt_types.h"

class QLabel;

namespace qz::ui {

class CodesView;
class CompareWorkspace;
class EvaluatePanel;
class ExportPanel;
class HistogramsTab;
class LogDock;
class MethodPanel;
class ModelLoader;
class ModelSummary;
class ModelTree;
class BackgroundJob;
class ModelHistogramJob;
class RecentFiles;
class TensorAnalyzer;
class TensorTable;
class TeachingView;
class WorkspaceTabs;

class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    explicit MainWindow(QWidget* parent = nullptr);
    ~MainWindow() override;

    void openPath(const QString& path);
    bool startRun();
    void cancelRun();
    void focusTensor(const QString& name);
    bool exportReport(const QString& dir, QString* error = nullptr);

    ModelPtr model() const { return m_model; }
    ResultPtr result() const { return m_result; }
    QString lastError() const { return m_lastError; }
    QString statusText() const;
    MethodPanel* methodPanel() const { return m_panel; }
    ModelTree* modelTree() const { return m_tree; }
    HistogramsTab* histograms() const { return m_histograms; }
    TensorTable* tensorTable() const { return m_table; }
    BackgroundJob* runner() const { return m_runner; }
    ModelHistogramJob* modelHistogramJob() const { return m_modelHistogram; }
    WorkspaceTabs* workspaces() const { return m_tabs; }
    CodesView* codesView() const { return m_codes; }
    TeachingView* teachingView() const { return m_teach; }
    CompareWorkspace* compareWorkspace() const { return m_compare; }
    QAction* exportAction() const { return m_exportAction; }
    QAction* aboutAction() const { return m_aboutAction; }

signals:
    void modelOpened();
    void modelFailed(const QString& message);
    void runFinished();
    void tensorShown(const QString& name);
    // A large matrix's first histograms, from some of its rows (TensorAnalyzer); tensorShown follows.
    void tensorPreviewShown(const QString& name);

  protected:
    void dragEnterEvent(QDragEnterEvent* e) override;
    void dropEvent(QDropEvent* e) override;
    void closeEvent(QCloseEvent* e) override;

private:
    void buildMenus();
    void fitToScreen();
    void wireJobs();
    void onModelLoaded(ModelPtr model);
    void onRunFinished(ResultPtr result);
    void onRunCancelled();
    void showError(const QString& title, const QString& message);
    void setStatus(const QString& text);

    ModelPtr m_model;
    ResultPtr m_result;
    qz::QuantSpec m_runSpec;      // spec of the job whose rows the table shows
    qz::QuantSpec m_previewSpec;  // spec of the on-demand tensor analysis
    QString m_focus;
    bool m_focusIsDefault = false;  // m_focus was chosen on opening the model, not by the user
    QString m_lastError;

    ModelLoader* m_loader;
    BackgroundJob* m_runner;
    ModelHistogramJob* m_modelHistogram;
    TensorAnalyzer* m_analyzer;
    ModelTree* m_tree;
    ModelSummary* m_summary;
    MethodPanel* m_panel;
    WorkspaceTabs* m_tabs;
    HistogramsTab* m_histograms;
    TensorTable* m_table;
    CodesView* m_codes;
    EvaluatePanel* m_evaluate;
    ExportPanel* m_export;
    TeachingView* m_teach;
    CompareWorkspace* m_compare;
    LogDock* m_log;
    RecentFiles* m_recent = nullptr;
    QAction* m_exportAction = nullptr;
    QAction* m_aboutAction = nullptr;
    QLabel* m_statusLabel;
};

}  // namespace qz::ui
