// The "Compare" workspace: the open model's variants (core/variants/variants.h) side by side.
//  - left: every variant kept so far (each fake-quantized run, GGUF exports and files, GPTQ / EXL2 folders,
//    method specs added here); tick 2–8 of them; a tensor to look at;
//  - Histograms: the tensor's values in each variant as small multiples on shared axes (or all overlaid),
//    and the errors on shared axes;
//  - Per layer: the weights' SQNR per decoder layer, one line per variant;
//  - Table: the tensor's figures side by side (size, bits per weight, MSE, max error, SQNR, cosine) with
//    the variant's PPL / KLD / same-top once evaluated;
//  - Size vs KLD: bits per weight against mean KL-divergence (or PPL), the Pareto front drawn, llama.cpp's
//    standard mixes labelled; clicking a point selects that variant.
// Every figure exports PNG / SVG / PDF, every table CSV. The comparison (variants, settings, results)
// saves to a project file (JSON) and reopens. All work runs in a BackgroundJob.
#pragma once

#include <QWidget>
#include <optional>

#include "background_job.h"
#include "jobs/memory_estimate.h"
#include "qt_types.h"
#include "variants/variants.h"

class QCheckBox;
class QComboBox;
class QCustomPlot;
class QGridLayout;
class QLabel;
class QLineEdit;
class QListWidget;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTabWidget;
class QTableWidget;

namespace qz::ui {

class HistogramPlot;

class CompareWorkspace : public QWidget {
    Q_OBJECT
  public:
    enum Column {
        ColVariant,
        ColKind,
        ColBytes,
        ColBpw,
        ColMse,
        ColMaxAbs,
        ColSqnr,
        ColCosine,
        ColPpl,
        ColKld,
        ColSameTop,
        ColCount
    };

    explicit CompareWorkspace(QWidget* parent = nullptr);

    // The original model; variants of another model are dropped (a pending project is applied).
    void setModel(ModelPtr model);
    ModelPtr model() const { return m_model; }

    // Adds a variant (selected if fewer than 8 are); returns its index.
    int addVariant(qz::Variant v);
    // Opens a GGUF file / GPTQ / EXL2 folder in the background and adds it (false if a job is running).
    bool addFile(const QString& path);
    // Runs a method spec ("absmax:4:group:64", see qz::parseMethodSpec) in the background and adds it.
    bool addMethod(const QString& spec, QString* error = nullptr);
    // Exports llama.cpp's standard mixes of the model into `dir` (<model>.<TYPE>.gguf, byte-identical to
    // llama-quantize's) in the background and adds each as a variant.
    static QStringList standardMixes(); // Q8_0 Q6_K Q5_K_M Q4_K_M Q3_K_M Q2_K
    bool addStandardMixes(const QString& dir, const QStringList& types = standardMixes());
    int variantCount() const { return int(m_c.variants.size()); }
    const qz::Variant& variant(int i) const { return m_c.variants[size_t(i)]; }
    const qz::Comparison& comparison() const { return m_c; }

    void setSelected(const QList<int>& indices); // at most 8 are kept
    QList<int> selected() const;
    void setTensor(const QString& name);
    QString tensor() const;
    void setOverlay(bool on);
    void setYMetric(bool kld); // scatter's y: mean KLD (true) or PPL
    void setCurrentVariant(int index);
    int currentVariant() const { return m_current; }

    void setTextPath(const QString& path); // empty = the bundled sample
    void setContext(int nCtx);
    void setChunks(int nChunks); // 0 = all
    void setThreads(int threads);
    // The memory "Evaluate selected" needs (jobs/memory_estimate.h: one engine at a time; a fake-quantized
    // or GPTQ variant's weights are re-made in F32 and copied by the engine), shown beside the settings and
    // checked by evaluate(), which refuses when it exceeds the available memory (0: MemAvailable from
    // /proc/meminfo; settable for tests).
    qz::MemoryEstimate memoryEstimate() const;
    void setAvailableMemoryOverride(uint64_t bytes);
    QLabel* memoryLabel() const { return m_memory; }
    // Evaluates the selected variants (and the original) against the original; false if nothing starts.
    bool evaluate();
    void cancel();

    // Project file. open: applied now if the model is the open one, else modelRequested() is emitted and
    // the project is applied when setModel() gets that model.
    bool saveProject(const QString& path, QString* error = nullptr);
    bool openProject(const QString& path, QString* error = nullptr);

    // Figures by id ("histograms", "errors", "layers", "scatter") and tables ("tensor", "variants").
    bool exportFigure(const QString& id, const QString& path, QString* error = nullptr);
    bool exportTable(const QString& id, const QString& path, QString* error = nullptr);

    BackgroundJob* runner() const { return m_runner; }
    QListWidget* variantList() const { return m_list; }
    QTableWidget* table() const { return m_table; }
    QCustomPlot* scatter() const { return m_scatter; }
    QCustomPlot* layerPlot() const { return m_layers; }
    QList<HistogramPlot*> histogramPlots() const { return m_histPlots; }
    HistogramPlot* errorPlot() const { return m_errorPlot; }
    QTabWidget* views() const { return m_views; }
    QComboBox* tensorBox() const { return m_tensor; }
    QLabel* status() const { return m_status; }
    // The scatter's point of a variant in pixels (for tests and tooltips); nullopt if not drawn.
    std::optional<QPointF> scatterPoint(int variantIndex) const;

  signals:
    void variantsChanged();
    void histogramsShown();
    void evaluationFinished();
    void currentVariantChanged(int index);
    void modelRequested(const QString& path);
    void jobFinished();

  private:
    void rebuildList();
    void refresh(); // table, layers, scatter; histograms in the background
    void rebuildTable();
    void rebuildLayers();
    void rebuildScatter();
    void requestHistograms();
    void showHistograms(const qz::TensorComparison& tc, const QList<int>& order);
    void applyComparison(qz::Comparison c);
    void setRunning(bool on);
    void updateMemoryLabel();
    QString textPath() const;
    void chooseFile(bool folder);
    void exportDialog(const QString& id, bool table);

    ModelPtr m_model;
    qz::Comparison m_c;
    std::optional<qz::Comparison> m_pending;
    int m_current = -1;
    int m_threads = 0;
    quint64 m_histRequest = 0;
    bool m_histPending = false;
    bool m_evaluating = false;
    BackgroundJob* m_runner;  // add / evaluate
    BackgroundJob* m_histJob; // histograms of the shown tensor
    QListWidget* m_list;
    QComboBox* m_tensor;
    QCheckBox* m_overlay;
    QComboBox* m_yMetric;
    QComboBox* m_text;
    QSpinBox* m_ctx;
    QSpinBox* m_chunks;
    QLineEdit* m_spec;
    QPushButton* m_addSpec;
    QPushButton* m_addFile;
    QPushButton* m_addFolder;
    QPushButton* m_addMixes;
    QPushButton* m_evaluate;
    QPushButton* m_cancel;
    QPushButton* m_save;
    QPushButton* m_open;
    QTabWidget* m_views;
    QWidget* m_histPage;
    QGridLayout* m_histGrid;
    QList<HistogramPlot*> m_histPlots;
    HistogramPlot* m_errorPlot;
    QCustomPlot* m_layers;
    QTableWidget* m_table;
    QCustomPlot* m_scatter;
    QProgressBar* m_progress;
    QLabel* m_status;
    QLabel* m_memory;
    uint64_t m_availableOverride = 0;
};

} // namespace qz::ui
