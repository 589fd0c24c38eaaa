#include "gptq/gptq_pack.h"

#include <cstddef>

namespace qz::gptq {

void packStream(const int32_t* v, int64_t n, int64_t stride, int bits, uint32_t* out, int64_t outStride) {
    const int64_t nWords = n * bits / 32;
    for (int64_t w = 0; w < nWords; ++w) out[w * outStride] = 0;
    const uint32_t mask = (1u << bits) - 1u;
    for (int64_t t = 0; t < n; ++t) {
        const uint32_t val = static_cast<uint32_t>(v[t * stride]) & mask;
        const int64_t bit = t * bits;
        const int64_t w = bit / 32;
        const int off = static_cast<int>(bit % 32);
        out[w * outStride] |= val << off;
        if (off + bits > 32) out[(w + 1) * outStride] |= val >> (32 - off);
    }
}

void unpackStream(const uint32_t* words, int64_t nWords, int64_t wordStride, int bits, int32_t* v, int64_t stride) {
    const int64_t n = nWords * 32 / bits;
    const uint32_t mask = (1u << bits) - 1u;
    for (int64_t t = 0; t < n; ++t) {
        const int64_t bit = t * bits;
        const int64_t w = bit / 32;
        const int off = static_cast<int>(bit % 32);
        uint32_t val = words[w * wordStride] >> off;
        if (off + bits > 32) val |= words[(w + 1) * wordStride] << (32 - off);
        v[t * stride] = static_cast<int32_t>(val & mask);
    }
}

std::vector<int32_t> packQweight(const uint8_t* codes, int out, int in, int bits) {
    const int64_t wordsPerCol = static_cast<int64_t>(in) * bits / 32;
    std::vector<int32_t> q(static_cast<size_t>(wordsPerCol) * out);
    std::vector<int32_t> col(in);
    for (int n = 0; n < out; ++n) {
        for (int k = 0; k < in; ++k) col[k] = codes[static_cast<size_t>(n) * in + k];
        packStream(col.data(), in, 1, bits, reinterpret_cast<uint32_t*>(q.data()) + n, out);
    }
    return q;
}

std::vector<int32_t> packQzeros(const int32_t* zeros, int groups, int out, int bits, bool v1) {
    const int64_t wordsPerRow = static_cast<int64_t>(out) * bits / 32;
    std::vector<int32_t> q(static_cast<size_t>(wordsPerRow) * groups);
    std::vector<int32_t> row(out);
    for (int g = 0; g < groups; ++g) {
        for (int n = 0; n < out; ++n) row[n] = zeros[static_cast<size_t>(g) * out + n] - (v1 ? 1 : 0);
        packStream(row.data(), out, 1, bits, reinterpret_cast<uint32_t*>(q.data()) + g * wordsPerRow, 1);
    }
    return q;
}

std::vector<uint8_t> unpackQweight(const int32_t* qweight, int out, int in, int bits) {
    std::vector<uint8_t> codes(static_cast<size_t>(out) * in);
    std::vector<int32_t> col(in);
    const int64_t wordsPerCol = static_cast<int64_t>(in) * bits / 32;
    for (int n = 0; n < out; ++n) {
        unpackStream(reinterpret_cast<const uint32_t*>(qweight) + n, wordsPerCol, out, bits, col.data(), 1);
        for (int k = 0; k < in; ++k) codes[static_cast<size_t>(n) * in + k] = static_cast<uint8_t>(col[k]);
    }
    return codes;
}

std::vector<int32_t> unpackQzeros(const int32_t* qzeros, int groups, int out, int bits, bool v1) {
    std::vector<int32_t> z(static_cast<size_t>(groups) * out);
    const int64_t wordsPerRow = static_cast<int64_t>(out) * bits / 32;
    for (int g = 0; g < groups; ++g) {
        unpackStream(reinterpret_cast<const uint32_t*>(qzeros) + g * wordsPerRow, wordsPerRow, 1, bits,
                     z.data() + static_cast<size_t>(g) * out, 1);
        if (v1)
            for (int n = 0; n < out; ++n) z[static_cast<size_t>(g) * out + n] += 1;
    }
    return z;
}

}  // namespace qz::gptq
