// A one-line progress display on stderr ("[ 42%] blk.3.ffn_up.weight  ETA 12s"), rewritten in place
// on a terminal and printed at most once per second (and per 10 %) otherwise, plus SIGINT → cancel.
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

// Installs a SIGINT handler that sets a flag; a second Ctrl-C kills the process as usual.
void installInterruptHandler();
bool interrupted();

}  // namespace qzcli
