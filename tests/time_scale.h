// Time limits of the tests' own waits (child processes), scaled for slow builds: QZ_TEST_TIME_SCALE=N
// (1..100) multiplies them. tests/sanitize.sh sets it: instrumented code on a loaded machine runs several
// times slower, and a wait that runs out there is not a finding.
#pragma once

#include <QtGlobal>

inline int scaledMs(int ms) {
    const int s = qEnvironmentVariableIntValue("QZ_TEST_TIME_SCALE");
    return s > 1 && s <= 100 ? int(qMin<qint64>(qint64(ms) * s, 2147483647)) : ms;
}
