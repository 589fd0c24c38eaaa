#include "common/dtype.h"

#include <array>
#include <cctype>

namespace qz {

namespace {
constexpr std::array<DTypeTraits, static_cast<size_t>(DType::Count)> kTraits = {{
    {"F32", 0, 1, 4, true, false},
    {"F16", 1, 1, 2, true, false},
    {"BF16", 30, 1, 2, true, false},
    {"F64", 28, 1, 8, true, false},
    {"I8", 24, 1, 1, false, false},
    {"U8", -1, 1, 1, false, false},
    {"I16", 25, 1, 2, false, false},
    {"U16", -1, 1, 2, false, false},
    {"I32", 26, 1, 4, false, false},
    {"U32", -1, 1, 4, false, false},
    {"I64", 27, 1, 8, false, false},
    {"U64", -1, 1, 8, false, false},
    {"BOOL", -1, 1, 1, false, false},
    {"F8_E4M3", -1, 1, 1, true, false},
    {"F8_E5M2", -1, 1, 1, true, false},
    {"Q4_0", 2, 32, 18, false, true},
    {"Q4_1", 3, 32, 20, false, true},
    {"Q5_0", 6, 32, 22, false, true},
    {"Q5_1", 7, 32, 24, false, true},
    {"Q8_0", 8, 32, 34, false, true},
    {"Q8_1", 9, 32, 36, false, true},
    {"Q2_K", 10, 256, 84, false, true},
    {"Q3_K", 11, 256, 110, false, true},
    {"Q4_K", 12, 256, 144, false, true},
    {"Q5_K", 13, 256, 176, false, true},
    {"Q6_K", 14, 256, 210, false, true},
    {"Q8_K", 15, 256, 292, false, true},
    {"IQ2_XXS", 16, 256, 66, false, true},
    {"IQ2_XS", 17, 256, 74, false, true},
    {"IQ3_XXS", 18, 256, 98, false, true},
    {"IQ1_S", 19, 256, 50, false, true},
    {"IQ4_NL", 20, 32, 18, false, true},
    {"IQ3_S", 21, 256, 110, false, true},
    {"IQ2_S", 22, 256, 82, false, true},
    {"IQ4_XS", 23, 256, 136, false, true},
    {"IQ1_M", 29, 256, 56, false, true},
    {"TQ1_0", 34, 256, 54, false, true},
    {"TQ2_0", 35, 256, 66, false, true},
    {"MXFP4", 39, 32, 17, false, true},
}};

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (std::toupper(static_cast<unsigned char>(a[i])) != std::toupper(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}
}  // namespace

const DTypeTraits& traits(DType t) { return kTraits.at(static_cast<size_t>(t)); }

std::optional<uint64_t> bytesFor(DType t, uint64_t n) {
    const auto& tr = traits(t);
    if (n % tr.blockSize != 0) return std::nullopt;
    const uint64_t blocks = n / tr.blockSize;
    if (blocks != 0 && tr.typeSize > UINT64_MAX / blocks) return std::nullopt;
    return blocks * tr.typeSize;
}

double bitsPerWeight(DType t) {
    const auto& tr = traits(t);
    return 8.0 * tr.typeSize / tr.blockSize;
}

std::optional<DType> dtypeFromSafetensors(std::string_view s) {
    // safetensors spelling: F64 F32 F16 BF16 I64 I32 I16 I8 U8 U16 U32 U64 BOOL F8_E4M3 F8_E5M2
    for (size_t i = 0; i <= static_cast<size_t>(DType::F8_E5M2); ++i)
        if (kTraits[i].name == s) return static_cast<DType>(i);
    return std::nullopt;
}

std::optional<DType> dtypeFromGgmlId(uint32_t id) {
    for (size_t i = 0; i < kTraits.size(); ++i)
        if (kTraits[i].ggmlId >= 0 && static_cast<uint32_t>(kTraits[i].ggmlId) == id) return static_cast<DType>(i);
    return std::nullopt;
}

std::optional<DType> dtypeFromName(std::string_view name) {
    for (size_t i = 0; i < kTraits.size(); ++i)
        if (iequals(kTraits[i].name, name)) return static_cast<DType>(i);
    return std::nullopt;
}

}  // namespace qz
