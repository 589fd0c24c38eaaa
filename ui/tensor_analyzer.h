// On-demand analysis of one tensor (qz::analyzeTensor) on a worker thread: used when the user picks
// a tensor that the last job did not cover, or changes the number of bins of the tensor plots.
// Only the latest request is delivered. A matrix of more than kPreviewValues values is first previewed
// (qz::previewTensor: evenly spaced rows, kPreviewValues values at most) so that something is on screen
// at once, then analysed whole.
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

    static constexpr uint64_t kPreviewValues = 1u << 20;
    void analyze(ModelPtr model, size_t tensorIndex, const qz::QuantSpec& spec, int bins);

signals:
  void previewReady(const qz::TensorQuantResult& preview); // sampledRows > 0; ready follows
  void ready(const qz::TensorQuantResult& result);
  void failed(const QString& message);

private:
    QThreadPool m_pool;
    std::atomic<quint64> m_request{0};
};

}  // namespace qz::ui
