// Reference quantizers of ggml's ternary types TQ1_0 and TQ2_0 (README.md B.5, B.7), byte-identical
// to quantize_row_tq{1,2}_0_ref. Per block of 256: d = max|x| (stored fp16), each weight becomes the
// trit lroundf(x/d) in {-1, 0, 1}, stored +1. TQ2_0 packs 4 trits per byte as 2-bit fields (element
// 128*(j/32) + 32n + m in bits 2n of byte j+m); TQ1_0 packs 5 trits per byte in base 3, scaled so
// that a byte times 3^n (mod 256) keeps trit n in its top bits: byte = ceil(sum * 256 / 243) —
// 160 weights in qs[0..31], 80 in qs[32..47], 16 in qh[0..3] (4 trits, shifted one trit up).
// Both ignore an imatrix.
#pragma once

#include <cstdint>

namespace qz::ggml {

void quantizeRowsTQ1_0(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix);
void quantizeRowsTQ2_0(const float* src, uint8_t* dst, int64_t nrows, int64_t ncols, const float* imatrix);

}  // namespace qz::ggml
