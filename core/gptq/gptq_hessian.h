// GPTQ's Hessian accumulator lives in the calibration module (calib/hessian.h), shared with EXL2 and
// the engine-side statistics; this name stays for the GPTQ code and its tests.
#pragma once

#include "calib/hessian.h"

namespace qz::gptq {
using calib::HessianAccumulator;
}  // namespace qz::gptq
