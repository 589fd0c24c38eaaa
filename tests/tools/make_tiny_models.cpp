// Writes the tiny seeded models of tests/core/tiny_archs.h (one Hugging Face folder per architecture and variant)
// under OUTDIR, for the llama.cpp tests that export and run them.
// Usage: make_tiny_models OUTDIR TESTDATA
#include <cstdio>

#include "core/tiny_archs.h"

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: make_tiny_models OUTDIR TESTDATA\n");
        return 2;
    }
    std::vector<std::string> all = qztest::tinyArchNames();
    for (const auto& v : qztest::tinyVariantNames()) all.push_back(v);
    for (const auto& arch : all) {
        auto st = qztest::writeTinyModel(std::string(argv[1]) + "/" + arch, arch, argv[2]);
        if (!st) {
            std::fprintf(stderr, "make_tiny_models: %s: %s\n", arch.c_str(), st.error().message.c_str());
            return 1;
        }
        std::printf("%s/%s\n", argv[1], arch.c_str());
    }
    return 0;
}
