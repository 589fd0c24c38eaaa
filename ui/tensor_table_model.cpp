#include "tensor_table_model.h"

#include <cmath>

#include "format.h"
#include "qt_types.h"

namespace qz::ui {

TensorTableModel::TensorTableModel(QObject* parent) : QAbstractTableModel(parent) {}

int TensorTableModel::rowCount(const QModelIndex& parent) const {
    return parent.isValid() ? 0 : int(m_rows.size());
}

int TensorTableModel::columnCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : ColumnCount; }

QVariant TensorTableModel::headerData(int section, Qt::Orientation o, int role) const {
    if (o != Qt::Horizontal || role != Qt::DisplayRole) return QAbstractTableModel::headerData(section, o, role);
    static const char* names[] = {"Name",  "Shape", "DType",         "Params",  "Bytes before", "Bytes after",
                                  "Bits/weight", "MSE", "Max |error|", "SQNR dB", "Cosine"};
    return (section >= 0 && section < ColumnCount) ? tr(names[section]) : QVariant();
}

QVariant TensorTableModel::data(const QModelIndex& index, int role) const {
    if (!index.isValid() || index.row() >= int(m_rows.size())) return {};
    const auto& r = m_rows[size_t(index.row())];
    const int col = index.column();
    if (role == Qt::TextAlignmentRole)
        return col <= DType ? QVariant(Qt::AlignLeft | Qt::AlignVCenter) : QVariant(Qt::AlignRight | Qt::AlignVCenter);
    if (role == Qt::ToolTipRole && col == Name) return toDisplay(r.name);
    if (role == SortRole) {
        switch (col) {
        case Name: return double(r.tensorIndex);  // model order
        case Shape: return double(r.numel);
        case DType: return QString::fromUtf8(qz::dtypeName(r.dtype));
        case Params: return double(r.numel);
        case BytesBefore: return double(r.bytesBefore);
        case BytesAfter: return double(r.bytesAfter);
        case Bpw: return r.bitsPerWeight;
        case Mse: return r.error.mse;
        case MaxAbs: return r.error.maxAbs;
        case Sqnr: return std::isfinite(r.error.sqnrDb) ? r.error.sqnrDb : 1e300;
        case Cosine: return r.error.cosine;
        }
        return {};
    }
    if (role != Qt::DisplayRole) return {};
    switch (col) {
    case Name: return toDisplay(r.name);
    case Shape: {
        qz::TensorInfo t;
        t.shape = r.shape;
        return toQ(t.shapeString());
    }
    case DType: return QString::fromUtf8(qz::dtypeName(r.dtype));
    case Params: return formatCount(r.numel);
    case BytesBefore: return formatBytes(r.bytesBefore);
    case BytesAfter: return formatBytes(r.bytesAfter);
    case Bpw: return QString::number(r.bitsPerWeight, 'f', 3);
    case Mse: return formatDouble(r.error.mse, 4);
    case MaxAbs: return formatDouble(r.error.maxAbs, 4);
    case Sqnr: return formatDouble(r.error.sqnrDb, 4);
    case Cosine: return QString::number(r.error.cosine, 'f', 6);
    }
    return {};
}

void TensorTableModel::addResult(const qz::TensorQuantResult& r) {
    const int row = int(m_rows.size());
    beginInsertRows(QModelIndex(), row, row);
    m_rows.push_back(r);
    endInsertRows();
}

void TensorTableModel::setResults(const std::vector<qz::TensorQuantResult>& results) {
    beginResetModel();
    m_rows = results;
    endResetModel();
}

void TensorTableModel::clear() {
    beginResetModel();
    m_rows.clear();
    endResetModel();
}

const qz::TensorQuantResult* TensorTableModel::find(const QString& name) const {
    const std::string n = toStd(name);
    for (const auto& r : m_rows)
        if (r.name == n) return &r;
    return nullptr;
}

}  // namespace qz::ui
