// Glue between the engine (std types, namespace qz) and Qt: metatype declarations for the engine's
// values that travel through queued signals, and std::string <-> QString conversion.
#pragma once

#include <QMetaType>
#include <QString>
#include <memory>
#include <string>

#include "jobs/quantize_job.h"
#include "model/model.h"

namespace qz::ui {

using ModelPtr = std::shared_ptr<const qz::Model>;
using ResultPtr = std::shared_ptr<const qz::QuantizeResult>;

inline QString toQ(const std::string& s) { return QString::fromStdString(s); }
inline std::string toStd(const QString& s) { return s.toStdString(); }

}  // namespace qz::ui

Q_DECLARE_METATYPE(qz::ui::ModelPtr)
Q_DECLARE_METATYPE(qz::ui::ResultPtr)
Q_DECLARE_METATYPE(qz::TensorQuantResult)
