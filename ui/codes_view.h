// The "Codes" workspace: the raw integer codes of the selected tensor under the selected method, as the
// first notebook prints them (core/quant/README.md §1: the original weights next to their absmax / zero-point
// tensors and the dequantized ones). Shows a window of the stored tensor (rows × cols from a chosen
// top-left element) as four tables — original, codes, dequantized, error — with the scale / zero point
// of every quantization group touching the window, and a text tab with the same matrices as torch
// prints them (plus the whole tensor, summarised as in the notebook) that the user can copy.
//   absmax / zero-point: the b-bit integer codes; nf4 / fp4: the 4-bit code-book indices;
//   LLM.int8(): int8 codes per output feature, outlier input features (kept in fp16) highlighted —
//   the outlier features come from a finished LLM.int8() run (its calibration); without one the
//   window is shown without outliers and says so.
// The window is computed on a worker thread (qz::makeCodeWindow, quant/code_view.h); only the latest
// request is shown.
#pragma once

#include <QThreadPool>
#include <QWidget>
#include <atomic>
#include <memory>
#include <optional>

#include "qt_types.h"
#include "quant/code_view.h"

class QLabel;
class QPlainTextEdit;
class QPushButton;
class QSpinBox;
class QTableWidget;
class QTabWidget;

namespace qz::ui {

class CodesView : public QWidget {
    Q_OBJECT
  public:
    enum Table { Original = 0, Codes, Dequantized, Error };

    explicit CodesView(QWidget* parent = nullptr);
    ~CodesView() override;

    void setModel(ModelPtr model);           // clears the view
    void setTensor(const QString& name);     // the tensor to show (model's name)
    void setSpec(const qz::QuantSpec& spec); // the method to show
    // A finished quantize run: for LLM.int8() its per-tensor outlier features are used.
    void setResult(ResultPtr result);
    // Window: top-left element and size (clamped to the tensor when computed).
    void setWindow(int row0, int col0, int rows, int cols);

    QString tensorName() const { return m_tensor; }
    qz::QuantSpec spec() const { return m_spec; }
    // The window on screen (null before the first one or after a failure).
    const qz::CodeWindow* window() const { return m_window ? &*m_window : nullptr; }
    QString text() const;       // the copyable text (torch prints)
    QString scalesText() const; // the group parameters shown under the tables
    QString noteText() const;   // e.g. "no LLM.int8() run: shown without outlier features"
    QTableWidget* table(Table t) const { return m_tables[t]; }
    QPushButton* copyButton() const { return m_copy; }
    QPushButton* outlierButton() const { return m_toOutlier; }
    bool isBusy() const { return m_pending > 0; }

  signals:
    void windowShown(); // a computed window is on screen
    void failed(const QString& message);

  protected:
    void showEvent(QShowEvent* e) override;

  private:
    void refresh();
    void showWindow(std::shared_ptr<const qz::CodeWindow> w, const QString& name, bool inputIsRows);
    void clearTables(const QString& message);
    std::vector<int32_t> outliersFor(const QString& name) const;

    ModelPtr m_model;
    ResultPtr m_result;
    QString m_tensor;
    qz::QuantSpec m_spec;
    std::shared_ptr<const qz::CodeWindow> m_window;
    bool m_inputIsRows = false;

    QLabel* m_title;
    QLabel* m_note;
    QSpinBox* m_row0;
    QSpinBox* m_col0;
    QSpinBox* m_rows;
    QSpinBox* m_cols;
    QPushButton* m_toOutlier;
    QPushButton* m_copy;
    QTabWidget* m_tabs;
    QTableWidget* m_tables[4];
    QPlainTextEdit* m_scales;
    QPlainTextEdit* m_text;

    QThreadPool m_pool;
    std::atomic<quint64> m_request{0};
    int m_pending = 0;
    bool m_updating = false;
    bool m_dirty = false; // a change arrived while hidden: computed when shown
};

} // namespace qz::ui
