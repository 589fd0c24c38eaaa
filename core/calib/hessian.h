// Hessian of one linear layer for GPTQ and EXL2: H = 2/nSamples · Σ over all calibration tokens of x·xᵀ
// (AutoGPTQ's add_batch: nSamples counts sequences, not tokens; padding tokens would be included -
// our calibration windows have none). Sums are kept in float as AutoGPTQ does. The lower triangle is
// cut into a fixed grid of 256-feature blocks that depends on nIn only; each block is computed by one of
// our threads, with single-threaded OpenBLAS SSYRK + SGEMM calls (Debian's libopenblas-dev, found at
// configure time; one block column per task) or else the engine's dot-product kernel (infer/matmul.h;
// one 256 × 256 tile per task). Nothing is summed across blocks, so the result is bit-identical for any
// thread count (checked in test_gptq_quant for 1, 2, 3, 5 threads). Across CPUs (OpenBLAS picks its kernel
// from the CPU, or OPENBLAS_CORETYPE) the summation order inside a block differs: the results then agree
// to float rounding, not to the bit.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "infer/engine.h"

namespace qz::calib {

// With OpenBLAS (QZ_HAVE_OPENBLAS): sets its process-wide thread count to one (once), so that calls made
// from several of our threads each run in the calling thread (see hessian.cpp). No-op without it.
void useOpenBlasSingleThreaded();

class HessianAccumulator {
public:
    explicit HessianAccumulator(int nIn = 0) { reset(nIn); }
    void reset(int nIn);
    int dim() const { return m_n; }
    // x: row-major [nTokens][nIn] (one token's input vector per row).
    void add(const float* x, int64_t nTokens, int threads = 0);
    // One more calibration sequence has been fed (the 1/nSamples normaliser).
    void countSample(int64_t n = 1) { m_samples += n; }
    int64_t samples() const { return m_samples; }
    // The finished H, row-major [nIn][nIn] (full symmetric): 2/nSamples · Σ x·xᵀ.
    std::vector<float> finish() const;
    // The same matrix made in the accumulator's own storage, which is handed over (no second copy of a
    // [nIn × nIn] matrix); the accumulator is empty afterwards.
    std::vector<float> take();

private:
    int m_n = 0;
    int64_t m_samples = 0;
    std::vector<float> m_sum;  // column-major Σ x·xᵀ (full)
};

// XᵀX of selected layers seen through an engine observer (infer/engine.h LinearObserver): register the
// model's weight names, then hand observer() to Engine::forwardLayer / setObserver; each call adds its
// tokens' x·xᵀ (call countSample per sequence). Layers not tracked, or of another width, are ignored.
class HessianObserver {
public:
    void track(const std::string& weightName, int nIn);
    LinearObserver observer();
    HessianAccumulator* find(const std::string& weightName);
    void countSample(int64_t n = 1);
    void setThreads(int t) { m_threads = t; }

private:
    std::map<std::string, HessianAccumulator> m_acc;
    int m_threads = 0;
};

}  // namespace qz::calib
