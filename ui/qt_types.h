// Glue between the engine (std types, namespace qz) and Qt: metatype declarations for the engine's
// values that travel through queued signals, and std::string <-> QString conversion.
#pragma once

#include <QMetaType>
#include <QString>
#include <memory>
#include <string>

#include "common/file_util.h"
#include "jobs/quantize_job.h"
#include "model/model.h"

namespace qz::ui {

using ModelPtr = std::shared_ptr<const qz::Model>;
using ResultPtr = std::shared_ptr<const qz::QuantizeResult>;

inline QString toQ(const std::string& s) { return QString::fromStdString(s); }
inline std::string toStd(const QString& s) { return s.toStdString(); }
// An untrusted string from a model (metadata, tensor and model names, paths) for display: control
// characters escaped as the CLI prints them (qz::printableText). Never for lookups: keep toQ there.
inline QString toDisplay(const std::string& s) { return QString::fromStdString(qz::printableText(s)); }
// The same for a name already held as a QString (the raw form, kept for lookups).
inline QString toDisplay(const QString& s) {
    return toDisplay(s.toStdString());
}

}  // namespace qz::ui

Q_DECLARE_METATYPE(qz::ui::ModelPtr)
Q_DECLARE_METATYPE(qz::ui::ResultPtr)
Q_DECLARE_METATYPE(qz::TensorQuantResult)
