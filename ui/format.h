// Number formatting for display: byte sizes (KiB/MiB/GiB), parameter counts (K/M/B) and
// engineering notation (mantissa with an SI prefix whose exponent is a multiple of three).
#pragma once

#include <QString>
#include <cstdint>

namespace qz::ui {

QString formatBytes(uint64_t bytes);        // "1.00 MiB"
QString formatCount(uint64_t n);            // "6.74 B", "260.1 K", "512"
QString formatEngineering(double v, int precision = 3);  // 1500000 -> "1.5M", 0.002 -> "2m"
QString formatDouble(double v, int precision = 4);       // finite -> %g, inf -> "∞", nan -> "—"

}  // namespace qz::ui
