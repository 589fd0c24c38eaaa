// A one-line progress display on stderr ("[ 42%] blk.3.ffn_up.weight  ETA 12s"), rewritten in place
// on a terminal and printed at most once per second (and per 10 %) otherwise, plus SIGINT/SIGTERM/SIGHUP
// → cancel.
#pragma once

#include <chrono>
#include <string>

#include "common/progress.h"

namespace qzcli {

class ProgressLine {
public:
    explicit ProgressLine(std::string label, bool quiet = false);
    ~ProgressLine();
    // The callback to hand to core jobs: returns false once Ctrl-C was pressed.
    qz::ProgressFn callback();
    void finish();  // ends the line

private:
    bool update(const qz::ProgressInfo& p);
    std::string m_label;
    bool m_quiet, m_tty, m_open = false;
    int m_lastPercentPrinted = -100;
    std::chrono::steady_clock::time_point m_start, m_lastPrint;
};

// Installs a handler for SIGINT, SIGTERM and SIGHUP: the first sets a flag (jobs cancel, clean up, and the
// process exits with 128 + the signal: 130, 143, 129); a second one removes the registered temporary
// files (common/safe_file.h) and exits at once with the same code.
void installInterruptHandler();
bool interrupted();
int interruptSignal();  // the first signal received, or 0

}  // namespace qzcli
