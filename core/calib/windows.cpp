#include "calib/windows.h"

#include <fstream>

#include "infer/text_tokens.h"

namespace qz::calib {

uint64_t splitmix64(uint64_t& state) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

Result<std::vector<std::vector<int32_t>>> calibrationWindows(std::span<const int32_t> tokens, const CalibParams& p) {
    if (p.samples <= 0 || p.seqLen <= 0) return makeError("calibration: samples and sequence length must be positive");
    if (p.samples > 1'000'000 || p.seqLen > 1'000'000) return makeError("calibration: too many samples or tokens");
    if (tokens.size() < static_cast<size_t>(p.seqLen))
        return makeError("calibration: the text has " + std::to_string(tokens.size()) + " tokens, fewer than one window of " +
                         std::to_string(p.seqLen));
    const uint64_t range = tokens.size() - static_cast<size_t>(p.seqLen) + 1;
    uint64_t state = p.seed;
    std::vector<std::vector<int32_t>> out;
    out.reserve(p.samples);
    for (int i = 0; i < p.samples; ++i) {
        const uint64_t start = splitmix64(state) % range;
        out.emplace_back(tokens.begin() + static_cast<ptrdiff_t>(start),
                         tokens.begin() + static_cast<ptrdiff_t>(start + p.seqLen));
    }
    return out;
}

Result<std::vector<int32_t>> tokenizeTextFile(const Model& model, const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return makeError("cannot open text file " + path);
    f.seekg(0, std::ios::end);
    const auto size = static_cast<int64_t>(f.tellg());
    if (size < 0 || size > (int64_t{1} << 30)) return makeError("text file " + path + " is too large (max 1 GiB)");
    f.seekg(0);
    std::string text(static_cast<size_t>(size), '\0');
    if (!f.read(text.data(), size)) return makeError("cannot read text file " + path);
    return tokenizeText(model, text, path);
}

Result<std::vector<int32_t>> tokenizeText(const Model& model, const std::string& text, const std::string& name) {
    auto in = tokenizeForPerplexity(model, text);
    if (!in) return makeError(name + ": " + in.error().message);
    return std::move(in->tokens);
}

}  // namespace qz::calib
