// The "Teaching" workspace: four views that open up what a quantizer does, each on the real values of the
// tensor selected in the tree, each with a short caption. The numbers come from core/teach/teach.h (the
// engine's own quantizers on a small piece of the tensor); the widgets only plot them.
//   1. Absmax vs zero-point: one row slice at b bits on a number line: the code grid of each scheme, the
//      range it covers, and a line from every value to the code it lands on.
//   2. K-quant super-block: 256 weights of a row quantized by ggml's reference quantizer (Q2_K..Q6_K): the
//      sub-block scales / mins and their integer codes, every weight's code, the reconstruction and error.
//   3. GPTQ step by step: a rows × cols slice, a Hessian from synthetic activations or from a calibration
//      text run through the model (on a worker), the column loop replayed (prev / next / play): what the
//      error of column j did to the later columns, RTN beside it.
//   4. EXL2 bit allocation: after an EXL2 export, per module the candidate settings the optimizer weighed
//      (bits per weight against error) with its choice highlighted, and the bits chosen per module; or from
//      a measurement.json of this model, with the export's optimizer run for a chosen target (on a worker).
// Everything is computed on the UI thread: a teaching slice is at most a few hundred values (one tensor
// row is read, never the tensor).
#pragma once

#include <QWidget>
#include <atomic>
#include <memory>
#include <optional>
#include <vector>

#include "qt_types.h"
#include "teach/teach.h"

class QCPColorScale;
class QComboBox;
class QDoubleSpinBox;
class QCustomPlot;
class QLabel;
class QLineEdit;
class QPushButton;
class QSpinBox;
class QStackedWidget;
class QTableWidget;
class QTimer;

namespace qz::exl2 {
struct ExportResult;
}

namespace qz::ui {

class TeachingView : public QWidget {
    Q_OBJECT
  public:
    enum View { NumberLineView = 0, SuperBlockView, GptqView, Exl2View, ViewCount };

    explicit TeachingView(QWidget* parent = nullptr);
    ~TeachingView() override;

    void setModel(ModelPtr model);
    void setTensor(const QString& name);
    // A finished EXL2 export of the open model (its measurement and the optimizer's choice).
    void setExl2Result(std::shared_ptr<const qz::exl2::ExportResult> result);
    void setView(View v);
    View view() const;

    // View 1
    void setNumberLine(int row, int col0, int count, int bits);
    // View 2
    void setSuperBlock(qz::DType type, int row, int block);
    // View 3
    void setGptqSlice(int row0, int col0, int rows, int cols, int bits);
    void gptqStep(int delta); // −1 / +1, clamped to 0..cols
    void gptqSetStep(int step);
    int gptqStepIndex() const { return m_step; }
    void gptqPlay(bool on);
    // The Hessian's source: empty = synthetic activations, else a calibration text (computed on a worker).
    void setGptqCalibration(const QString& textPath);
    QString gptqCalibration() const { return m_calibPath; }
    const std::vector<float>& gptqHessian() const { return m_H; }
    bool isCalibrating() const { return m_calibrating > 0; }
    // View 4
    void setExl2Module(int index);
    // Reads a measurement.json of the open model and runs the EXL2 export's optimizer for targetBpw on a
    // worker (seed and proposals per temperature as the export takes them); exl2Optimized() when shown.
    // False (error(Exl2View) says why) when the file cannot be used.
    bool loadExl2Measurement(const QString& path, double targetBpw, quint64 seed = 0,
                             int annealIterations = 1000);
    bool isOptimizing() const { return m_optimizing > 0; }

    // What is on screen (null / empty when the view could not be computed; error() says why).
    const qz::teach::NumberLine* numberLine() const { return m_line ? &*m_line : nullptr; }
    const qz::teach::SuperBlock* superBlock() const { return m_block ? &*m_block : nullptr; }
    const qz::teach::GptqTrace* gptqTrace() const { return m_trace ? &*m_trace : nullptr; }
    const std::vector<qz::teach::Exl2Module>& exl2Modules() const { return m_modules; }
    QString error(View v) const { return m_errors[v]; }
    QString caption(View v) const;
    QString info(View v) const;
    QCustomPlot* plot(View v, int which = 0) const;
    // The y (or x for the number line) values of a named plottable in a view's plot, as plotted.
    QVector<double> plotted(View v, const QString& name, bool keys = false, int which = 0) const;
    QTableWidget* superBlockTable() const { return m_kqTable; }
    QComboBox* viewCombo() const { return m_viewCombo; }
    QComboBox* exl2ModuleCombo() const { return m_exl2Module; }
    QPushButton* gptqButton(const char* id) const; // "prev", "next", "play", "reset"

  signals:
    void updated(int view); // a view was recomputed and replotted
    void exl2Optimized();   // a measurement's choice is on screen (loadExl2Measurement)

  protected:
    void showEvent(QShowEvent* e) override;

  private:
    QWidget* buildNumberLinePage();
    QWidget* buildSuperBlockPage();
    QWidget* buildGptqPage();
    QWidget* buildExl2Page();
    void refresh(View v);
    void refreshNumberLine();
    void refreshSuperBlock();
    void refreshGptq();
    void drawGptqStep();
    void refreshExl2();
    void drawExl2Module();
    void fail(View v, const QString& message);
    const qz::TensorInfo* tensor() const;

    ModelPtr m_model;
    QString m_tensor;
    std::shared_ptr<const qz::exl2::ExportResult> m_exl2;
    bool m_updating = false;

    QComboBox* m_viewCombo;
    QStackedWidget* m_stack;
    QLabel* m_title;
    QLabel* m_captions[ViewCount];
    QLabel* m_infos[ViewCount];
    QString m_errors[ViewCount];
    QCustomPlot* m_plots[ViewCount][2] = {};

    QSpinBox *m_nlRow, *m_nlCol, *m_nlCount, *m_nlBits;
    QComboBox* m_kqType;
    QSpinBox *m_kqRow, *m_kqBlock;
    QTableWidget* m_kqTable;
    QSpinBox *m_gRow, *m_gCol, *m_gRows, *m_gCols;
    QComboBox* m_gBits;
    QPushButton *m_gPrev, *m_gNext, *m_gPlay, *m_gReset;
    QLabel* m_gStep;
    QCPColorScale* m_gScale = nullptr;
    QComboBox* m_gHess;
    QLineEdit* m_gCalib;
    QString m_calibPath;    // the Hessian's calibration text (empty: synthetic)
    std::vector<float> m_H; // the Hessian of the trace on screen
    QString m_hKey;         // what m_H was computed for (tensor, columns, text)
    std::shared_ptr<std::atomic<bool>> m_calibCancel;
    quint64 m_calibRequest = 0;
    int m_calibrating = 0;
    bool m_gptqDirty = false; // a calibration Hessian is wanted but the view was hidden
    void finishGptq(const std::vector<float>& w, int rows, int cols);
    QTimer* m_timer;
    QComboBox* m_exl2Module;
    QDoubleSpinBox* m_exl2Target;
    QPushButton* m_exl2Open;
    QString m_exl2Path;
    std::shared_ptr<std::atomic<bool>> m_optCancel;
    quint64 m_optRequest = 0;
    int m_optimizing = 0;

    std::optional<qz::teach::NumberLine> m_line;
    std::optional<qz::teach::SuperBlock> m_block;
    std::optional<qz::teach::GptqTrace> m_trace;
    int m_step = 0;
    std::vector<qz::teach::Exl2Module> m_modules;
};

} // namespace qz::ui
