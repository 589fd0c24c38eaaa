#include "progress_line.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>

#include "common/safe_file.h"

namespace qzcli {

namespace {
std::atomic<int> g_signal{0};  // the first SIGINT / SIGTERM / SIGHUP received
static_assert(std::atomic<int>::is_always_lock_free);

// First signal: only the flag (the running job polls it, cancels, and removes its temporary files itself).
// Second signal: the registered temporary files are unlinked here (unlink is async-signal-safe) and the
// process ends at once with 128 + the first signal.
extern "C" void onSignal(int sig) {
    int expected = 0;
    if (g_signal.compare_exchange_strong(expected, sig)) return;
    qz::unlinkRegisteredTempFiles();
    ::_exit(128 + expected);
}
}  // namespace

void installInterruptHandler() {
    struct sigaction sa {};
    sa.sa_handler = onSignal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
}
bool interrupted() { return g_signal.load() != 0; }
int interruptSignal() { return g_signal.load(); }

ProgressLine::ProgressLine(std::string label, bool quiet)
    : m_label(std::move(label)), m_quiet(quiet), m_tty(::isatty(STDERR_FILENO) != 0),
      m_start(std::chrono::steady_clock::now()), m_lastPrint(m_start - std::chrono::hours(1)) {}

ProgressLine::~ProgressLine() { finish(); }

qz::ProgressFn ProgressLine::callback() {
    return [this](const qz::ProgressInfo& p) { return update(p); };
}

bool ProgressLine::update(const qz::ProgressInfo& p) {
    if (interrupted()) return false;
    if (m_quiet) return true;
    const auto now = std::chrono::steady_clock::now();
    const int pct = static_cast<int>(p.fraction * 100.0 + 1e-9);
    const double elapsed = std::chrono::duration<double>(now - m_start).count();
    const bool due = m_tty ? now - m_lastPrint > std::chrono::milliseconds(100)
                           : (now - m_lastPrint > std::chrono::seconds(1) && pct >= m_lastPercentPrinted + 10);
    if (!due && pct < 100) return true;
    m_lastPrint = now;
    m_lastPercentPrinted = pct;
    std::string eta = "--";
    if (p.fraction > 0.01 && elapsed > 0.5) {
        const double rest = elapsed * (1.0 - p.fraction) / p.fraction;
        eta = std::to_string(static_cast<long long>(rest + 0.5)) + "s";
    }
    std::string step = p.step;
    if (step.size() > 48) step = "…" + step.substr(step.size() - 47);
    std::fprintf(stderr, "%s%s [%3d%%] %-48s ETA %s%s", m_tty ? "\r" : "", m_label.c_str(), pct, step.c_str(),
                 eta.c_str(), m_tty ? "\x1b[K" : "\n");
    m_open = m_tty;
    return true;
}

void ProgressLine::finish() {
    if (m_open) std::fputc('\n', stderr);
    m_open = false;
}

}  // namespace qzcli
