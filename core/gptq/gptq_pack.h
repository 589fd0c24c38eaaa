// AutoGPTQ's int32 bit packing (README.md D.3), for 2, 3, 4 and 8 bits.
//
// Values are written LSB-first into a little-endian stream of 32-bit words: value t occupies stream
// bits [bits·t, bits·t + bits). For 2/4/8 bits that is 32/bits values per word; for 3 bits, 32 values
// fill 3 words exactly (a value may straddle two words: values 10 and 21 of each 32), which is the
// layout AutoGPTQ's pack() builds with its explicit shifts.
//   qweight [in·bits/32][out]: codes packed along the input dimension (column n of the word matrix
//     holds output n's codes for input rows r·32/bits ...).
//   qzeros  [G][out·bits/32]: zero points packed along the output dimension, stored minus one
//     (v1 "gptq" format) or as is (v2).
// The unpack functions invert these (used by tests and by the resume check).
#pragma once

#include <cstdint>
#include <vector>

namespace qz::gptq {

// Packs n values (n·bits divisible by 32) read as v[i·stride] into n·bits/32 words.
void packStream(const int32_t* v, int64_t n, int64_t stride, int bits, uint32_t* out, int64_t outStride);
void unpackStream(const uint32_t* words, int64_t nWords, int64_t wordStride, int bits, int32_t* v, int64_t stride);

// codes row-major [out][in] -> qweight row-major [in·bits/32][out].
std::vector<int32_t> packQweight(const uint8_t* codes, int out, int in, int bits);
// zeros row-major [G][out] -> qzeros row-major [G][out·bits/32]; v1: store zero − 1 (masked to bits).
std::vector<int32_t> packQzeros(const int32_t* zeros, int groups, int out, int bits, bool v1 = true);

std::vector<uint8_t> unpackQweight(const int32_t* qweight, int out, int in, int bits);
std::vector<int32_t> unpackQzeros(const int32_t* qzeros, int groups, int out, int bits, bool v1 = true);

}  // namespace qz::gptq
