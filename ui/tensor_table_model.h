// Table model of per-tensor quantization results (one row per tensor, added live while a job
// runs): name, shape, dtype, parameters, bytes before/after, bits per weight, MSE, max |error|,
// SQNR (dB) and cosine similarity. Qt::UserRole gives the numeric sort key of every column.
#pragma once

#include <QAbstractTableModel>
#include <vector>

#include "jobs/quantize_job.h"

namespace qz::ui {

class TensorTableModel : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { Name, Shape, DType, Params, BytesBefore, BytesAfter, Bpw, Mse, MaxAbs, Sqnr, Cosine, ColumnCount };
    static constexpr int SortRole = Qt::UserRole;

    explicit TensorTableModel(QObject* parent = nullptr);

    int rowCount(const QModelIndex& parent = QModelIndex()) const override;
    int columnCount(const QModelIndex& parent = QModelIndex()) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation o, int role = Qt::DisplayRole) const override;

    void addResult(const qz::TensorQuantResult& r);
    void setResults(const std::vector<qz::TensorQuantResult>& results);
    void clear();
    const qz::TensorQuantResult& result(int row) const { return m_rows[size_t(row)]; }
    const qz::TensorQuantResult* find(const QString& name) const;

private:
    std::vector<qz::TensorQuantResult> m_rows;
};

}  // namespace qz::ui
