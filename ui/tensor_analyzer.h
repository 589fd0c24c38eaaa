// On-demand analysis of one tensor (qz::analyzeTensor) on a worker thread: used when the user picks
// a tensor that the last job did not cover, or changes the number of bins of the tensor plots.
// Only the latest request is delivered.
#pragma once

#include <QObject>
#include <QThreadPool>
#include <atomic>

#include "qt_types.h"

namespace qz::ui {

class TensorAnalyzer : public QObject {
    Q_OBJECT
public:
    explicit TensorAnalyzer(QObject* parent = nullptr);
    ~TensorAnalyzer() override;

    void analyze(ModelPtr model, size_t tensorIndex, const qz::QuantSpec& spec, int bins);

signals:
    void ready(const qz::TensorQuantResult& result);
    void failed(const QString& message);

private:
    QThreadPool m_pool;
    std::atomic<quint64> m_request{0};
};

}  // namespace qz::ui
