// Importance-matrix collection moved to the calibration module (calib/imatrix.h); this header keeps the
// old include working.
#pragma once

#include "calib/imatrix.h"
