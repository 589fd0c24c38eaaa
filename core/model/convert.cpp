#include "model/convert.h"

#include <cstring>

#include "common/fp16.h"
#include "common/parallel.h"
#include "ggml/dequantize.h"

namespace qz {

bool canConvertToF32(DType t) {
    switch (t) {
    case DType::F32: case DType::F16: case DType::BF16: case DType::F64:
    case DType::I8: case DType::U8: case DType::I16: case DType::U16: case DType::I32:
        return true;
    default:
        return traits(t).isQuantized && ggml::canDequantize(t);
    }
}

namespace {
template <class T>
T load(const uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}
}  // namespace

Status convertToF32(DType t, const uint8_t* src, uint64_t n, float* dst) {
    const auto& tr = traits(t);
    if (tr.isQuantized) {
        if (!ggml::canDequantize(t)) return makeError("cannot dequantize " + std::string(tr.name));
        const uint64_t blocks = n / tr.blockSize;
        // Parallel over blocks; each chunk is a whole number of blocks.
        parallelFor(blocks, [&](size_t b0, size_t b1, int) {
            ggml::dequantize(t, src + b0 * tr.typeSize, dst + b0 * tr.blockSize,
                             static_cast<int64_t>((b1 - b0) * tr.blockSize));
        }, 0, 4096);
        return okStatus();
    }
    const size_t es = tr.typeSize;
    auto run = [&](auto conv) {
        parallelFor(n, [&](size_t i0, size_t i1, int) {
            for (size_t i = i0; i < i1; ++i) dst[i] = conv(src + i * es);
        }, 0, 1 << 16);
    };
    switch (t) {
    case DType::F32:
        if (n) std::memcpy(dst, src, n * 4);  // n == 0: dst may be null
        break;
    case DType::F16: run([](const uint8_t* p) { return fp16ToFp32(load<uint16_t>(p)); }); break;
    case DType::BF16: run([](const uint8_t* p) { return bf16ToFp32(load<uint16_t>(p)); }); break;
    case DType::F64: run([](const uint8_t* p) { return static_cast<float>(load<double>(p)); }); break;
    case DType::I8: run([](const uint8_t* p) { return static_cast<float>(load<int8_t>(p)); }); break;
    case DType::U8: run([](const uint8_t* p) { return static_cast<float>(*p); }); break;
    case DType::I16: run([](const uint8_t* p) { return static_cast<float>(load<int16_t>(p)); }); break;
    case DType::U16: run([](const uint8_t* p) { return static_cast<float>(load<uint16_t>(p)); }); break;
    case DType::I32: run([](const uint8_t* p) { return static_cast<float>(load<int32_t>(p)); }); break;
    default: return makeError("cannot convert " + std::string(tr.name) + " to F32");
    }
    return okStatus();
}

}  // namespace qz
