// Progress reporting and cancellation for long core operations.
// Every long operation takes a ProgressFn; it is called from the worker thread with the fraction done
// and a short description of the current step. Returning false asks the operation to stop: it then
// cleans up and returns cancelledError(). The GUI sets an atomic flag from the UI thread and returns
// !flag from its callback, so a busy worker sees a cancel at its next report.
#pragma once

#include <atomic>
#include <functional>
#include <string>

namespace qz {

struct ProgressInfo {
    double fraction = 0.0;   // 0..1 of the whole operation
    std::string step;        // e.g. the tensor being processed
};

using ProgressFn = std::function<bool(const ProgressInfo&)>;

// Thread-safe helper: many workers report "one more unit done"; the callback is invoked under a lock.
class ProgressTracker {
public:
    ProgressTracker(ProgressFn fn, double total) : m_fn(std::move(fn)), m_total(total > 0 ? total : 1) {}
    // Returns false when cancelled (now or earlier).
    bool report(double doneUnits, const std::string& step);
    bool advance(double units, const std::string& step);
    bool cancelled() const { return m_cancelled.load(std::memory_order_relaxed); }

private:
    ProgressFn m_fn;
    double m_total;
    double m_done = 0;
    std::atomic<bool> m_cancelled{false};
    std::atomic_flag m_lock = ATOMIC_FLAG_INIT;
};

}  // namespace qz
