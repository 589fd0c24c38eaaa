// bitsandbytes' 4-bit formats (QLoRA, Dettmers et al. 2023): NF4 and FP4 with block-wise absmax
// scaling, and the optional "double quantization" of the block scales. Written from the QLoRA paper
// and from reading bitsandbytes' public source (functional.py quantize_4bit / quantize_blockwise /
// create_dynamic_map / get_4bit_type, backends/default/ops.py, csrc kernels dQuantizeNF4 / dQuantizeFP4).
//
// What is implemented, exactly:
//   * The tensor is flattened (row-major, as torch's reshape(-1)) and cut into blocks of B consecutive
//     values (B = 64 by default; a shorter last block when B does not divide n). Blocks cross row
//     boundaries, as in bitsandbytes.
//   * Per block: absmax = max|x| (fp32); u = clamp(x · (1/absmax), −1, 1) (reciprocal then multiply, in
//     float, as the kernels do); code = the nearest entry of the 16-value code book. NF4: thresholds are
//     the midpoints of neighbouring code values (computed in double, rounded to float; the CUDA
//     literals are the same midpoints printed to 16 digits, which may round to the neighbouring float:
//     a value within one float ulp of a midpoint can code differently), u > midpoint takes the upper
//     code, so ties go to the lower value. FP4: sign bit = (u < 0), magnitude by the same
//     midpoint rule over the 8 magnitudes, ties to the smaller magnitude (dQuantizeFP4). An all-zero
//     block (absmax 0) gets the code of 0.0 (bitsandbytes would compute 0·inf; the decoded value is 0
//     either way).
//   * Dequantization: code_value[code] · absmax (float). bitsandbytes then rounds to the compute dtype
//     (fp16/bf16); we keep fp32.
//   * Packing: two codes per byte, the first element in the high nibble; an odd n is padded with the
//     code of 0.0. ceil(n/2) bytes.
//   * Double quantization (compress_statistics=True): offset = mean(absmax) (fp32 scalar); the centred
//     scales absmax − offset are quantized block-wise in blocks of 256 with bitsandbytes' signed
//     dynamic 8-bit map (create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), emulating
//     torch's float32 linspace and arithmetic): per 256-block an fp32 absmax2, u = clamp(c·(1/absmax2),
//     −1, 1), code = argmin |u − map| (ties: lower index, as torch.argmin in the reference backend).
//     Decoded scale = map[q]·absmax2 + offset. The 4-bit codes are computed with the exact fp32 absmax
//     (quantize first, compress the statistics afterwards), the weights are decoded with the decoded
//     scales - as bitsandbytes does.
//   * Bytes (per tensor, data only; the 16-entry and 256-entry code books are shared constants and not
//     counted, although bitsandbytes' serialisation stores a copy per tensor):
//       plain:        ceil(n/2) + 4·nBlocks
//       double quant: ceil(n/2) + nBlocks + 4·ceil(nBlocks/256) + 4 (the fp32 offset)
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace qz::bnb {

enum class FourBit { Nf4, Fp4 };

// The 16 code values in code order (index = the 4-bit code): NF4 sorted ascending from −1 to 1 (code 7
// is 0.0); FP4 codes 0..7 positive, bit 3 = sign: {0, 0.0625, 8, 12, 4, 6, 2, 3} / 12 (code 8 is −0.0).
const std::array<float, 16>& codebook(FourBit type);

// bitsandbytes' signed dynamic 8-bit map (sorted ascending, 256 values, map[127] = 0, map[255] = 1).
const std::array<float, 256>& dynamicMap();

// Nearest 4-bit code of a value already divided by the block absmax (see the tie rules above).
uint8_t quantize4(FourBit type, float u);
// Nearest entry of the dynamic map (argmin, ties to the lower index). u is clamped to [−1, 1].
uint8_t quantizeDynamic(float u);

constexpr int kNestedBlock = 256;

struct FourBitParams {
    FourBit type = FourBit::Nf4;
    int blockSize = 64;
    bool doubleQuant = false;
};

struct FourBitTensor {
    std::vector<uint8_t> codes;      // one 4-bit code per value (0..15), unpacked
    std::vector<float> absmax;       // exact fp32 block absmax (what the codes were computed with)
    // Double quantization only:
    float offset = 0;                // mean of absmax
    std::vector<uint8_t> qabsmax;    // dynamic-map index of absmax − offset, per block
    std::vector<float> absmax2;      // fp32 absmax of the centred scales, per 256 blocks
    // The scales used for decoding: absmax, or the decoded double-quantized scales.
    std::vector<float> scales;
};

int64_t blockCount(int64_t n, int blockSize);

// Quantizes n values. blockSize must be > 0.
FourBitTensor quantize4bit(const float* x, int64_t n, const FourBitParams& params);
// Decodes into out (n values).
void dequantize4bit(const FourBitTensor& q, const FourBitParams& params, int64_t n, float* out);
// Packs the codes two per byte (first value in the high nibble).
std::vector<uint8_t> pack4bit(const FourBitTensor& q, FourBit type);

// Block-wise 8-bit quantization with the dynamic map (bitsandbytes quantize_blockwise): codes[n],
// absmax[ceil(n/blockSize)]; and its inverse.
void quantizeBlockwise8(const float* x, int64_t n, int blockSize, uint8_t* codes, float* absmax);
void dequantizeBlockwise8(const uint8_t* codes, const float* absmax, int64_t n, int blockSize, float* out);

// Storage of a tensor of n values (see above).
uint64_t fourBitBytes(int64_t n, const FourBitParams& params);

// Fake quantization: out[i] = decoded value (out may alias x); codes (optional) receive the 4-bit codes.
void fakeQuantize4bit(const FourBitParams& params, const float* x, int64_t n, float* out, int8_t* codes);

}  // namespace qz::bnb
