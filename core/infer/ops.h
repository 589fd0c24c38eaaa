// Building blocks of the forward pass shared by the engine (infer/engine.cpp) and EXL2's per-module
// forward (exl2/exl2_measure.cpp), so both compute exactly the same thing. Activations are column-major:
// token t's vector starts at x + t·ld.
#pragma once

#include <cstdint>
#include <vector>

#include "infer/hparams.h"

namespace qz {

// out = x / sqrt(mean(x²) + eps) · g per token (the sum in double, as ggml does). out may not alias x.
void rmsNormColumns(const float* x, int64_t nTok, int64_t dim, const float* g, float eps, float* out);

// x[i] = the nearest fp16 value of x[i] (round to nearest even), as widened back to float: the engine's
// emulation of llama.cpp's F16 KV cache. F16C when the CPU has it (the same values; a NaN stays a NaN).
void roundToFp16(float* x, int64_t n);

// Rotate-half RoPE on rows [h·hd, h·hd + nRot) of every head of every token; token t is at position
// pos0 + t (divided by linearScale), with the angle position · invFreq[i].
void applyRopeColumns(float* m, int64_t nTok, int64_t ld, int nHeads, int hd, int nRot, int64_t pos0,
                      const std::vector<double>& invFreq, float linearScale);

// θ^(−2i/nRot) for i < nRot/2.
std::vector<double> ropeBaseFrequencies(const InferHParams& hp);
// Llama-3.1's rope_scaling as a divisor per frequency (HF _compute_llama3_parameters); empty when the
// model has none. The engine divides the base frequencies by these (as llama.cpp's rope_freqs tensor).
std::vector<float> llama3RopeFactors(const InferHParams& hp, const std::vector<double>& base);

}  // namespace qz
