// IEEE binary16 and bfloat16 conversions.
// fp32 -> fp16 rounds to nearest even, NaN -> 0x7E00 (sign kept), as ggml does (core/ggml/README.md B.1).
// fp32 -> bf16 rounds to nearest even with NaN kept quiet, matching ggml_compute_fp32_to_bf16 and torch.
#pragma once

#include <cstdint>
#include <cstring>

namespace qz {

inline uint32_t floatBits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline float bitsFloat(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline float fp16ToFp32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t mant = h & 0x3FF;
    if (exp == 0) {
        if (mant == 0) return bitsFloat(sign);
        // subnormal: normalise
        int e = -1;
        do {
            ++e;
            mant <<= 1;
        } while ((mant & 0x400) == 0);
        mant &= 0x3FF;
        return bitsFloat(sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | (mant << 13));
    }
    if (exp == 31) return bitsFloat(sign | 0x7F800000u | (mant << 13));
    return bitsFloat(sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

inline uint16_t fp32ToFp16(float f) {
    const uint32_t x = floatBits(f);
    const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
    const uint32_t ax = x & 0x7FFFFFFFu;
    if (ax > 0x7F800000u) return sign | 0x7E00u;  // NaN
    const int e = static_cast<int>(ax >> 23) - 127;
    if (e > 15) return sign | 0x7C00u;           // overflow (and infinity)
    const uint32_t mant = ax & 0x7FFFFFu;
    if (e >= -14) {                               // normal half: keep 10 of 23 mantissa bits, round to even
        uint32_t h = (static_cast<uint32_t>(e + 15) << 10) | (mant >> 13);
        const uint32_t rest = mant & 0x1FFFu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry may reach infinity: correct
        return static_cast<uint16_t>(sign | h);
    }
    // subnormal half (unit 2^-24): value = (1.mant) * 2^e = m * 2^(e-23), m has 24 bits
    const int shift = -(e + 1);                   // e = -15 -> 14 ... e = -25 -> 24
    if (shift > 24) return sign;
    const uint32_t m = mant | 0x800000u;
    uint32_t h = m >> shift;
    const uint32_t rest = m & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
}

inline float bf16ToFp32(uint16_t b) { return bitsFloat(static_cast<uint32_t>(b) << 16); }

inline uint16_t fp32ToBf16(float f) {
    uint32_t u = floatBits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 64);  // quiet NaN
    return static_cast<uint16_t>((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

}  // namespace qz
