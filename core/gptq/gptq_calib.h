// GPTQ's calibration data: the windows (calib/windows.h) and the carried hidden states (calib/states.h)
// live in the calibration module shared with EXL2, imatrix and LLM.int8; these names stay for the GPTQ
// code and its tests.
#pragma once

#include "calib/states.h"
#include "calib/windows.h"

namespace qz::gptq {

using calib::CalibParams;
using calib::calibrationWindows;
using calib::splitmix64;
using calib::stateTypeName;
using calib::StateType;
using calib::tokenizeText;
using calib::tokenizeTextFile;
using CarriedStates = calib::StateStore;

}  // namespace qz::gptq
