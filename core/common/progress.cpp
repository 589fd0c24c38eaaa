#include "common/progress.h"

namespace qz {

namespace {
struct SpinGuard {
    std::atomic_flag& f;
    explicit SpinGuard(std::atomic_flag& fl) : f(fl) {
        while (f.test_and_set(std::memory_order_acquire)) f.wait(true, std::memory_order_relaxed);
    }
    ~SpinGuard() {
        f.clear(std::memory_order_release);
        f.notify_one();
    }
};
}  // namespace

bool ProgressTracker::report(double doneUnits, const std::string& step) {
    SpinGuard g(m_lock);
    m_done = doneUnits;
    if (m_cancelled.load(std::memory_order_relaxed)) return false;
    if (m_fn && !m_fn(ProgressInfo{m_done / m_total, step})) m_cancelled = true;
    return !m_cancelled;
}

bool ProgressTracker::advance(double units, const std::string& step) {
    SpinGuard g(m_lock);
    m_done += units;
    if (m_cancelled.load(std::memory_order_relaxed)) return false;
    if (m_fn && !m_fn(ProgressInfo{m_done / m_total, step})) m_cancelled = true;
    return !m_cancelled;
}

}  // namespace qz
