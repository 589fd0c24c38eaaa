#include <cstdio>
#include <nlohmann/json.hpp>

#include "args.h"
#include "common/file_util.h"
#include "commands.h"
#include "model/model.h"

namespace qzcli {

namespace {
const char* kInfoHelp =
    "usage: quantzoo-cli info MODEL [--json] [--no-tensors]\n"
    "  MODEL         a Hugging Face folder, a .safetensors file or a .gguf file\n"
    "  --json        machine-readable output on stdout\n"
    "  --no-tensors  only the summary and metadata\n";

const char* formatName(qz::ModelFormat f) {
    switch (f) {
    case qz::ModelFormat::SafetensorsFile: return "safetensors";
    case qz::ModelFormat::HuggingFaceFolder: return "huggingface";
    case qz::ModelFormat::Gguf: return "gguf";
    }
    return "?";
}
}  // namespace

int cmdInfo(int argc, char** argv) {
    Args args({}, {"--json", "--no-tensors", "--help"});
    if (auto err = args.parse(argc, argv, 2); !err.empty()) {
        std::fprintf(stderr, "quantzoo-cli info: %s\n%s", err.c_str(), kInfoHelp);
        return kUsage;
    }
    if (args.has("--help")) {
        std::fputs(kInfoHelp, stdout);
        return kOk;
    }
    if (args.positional().size() != 1) {
        std::fprintf(stderr, "quantzoo-cli info: expected one MODEL\n%s", kInfoHelp);
        return kUsage;
    }
    auto model = qz::openModel(args.positional()[0]);
    if (!model) {
        std::fprintf(stderr, "quantzoo-cli: %s\n", model.error().message.c_str());
        return kFailed;
    }
    const qz::Model& m = **model;
    const bool tensors = !args.has("--no-tensors");
    if (args.has("--json")) {
        nlohmann::json j;
        j["path"] = m.path;
        j["format"] = formatName(m.format);
        j["architecture"] = m.architecture;
        j["parameters"] = m.totalParameters();
        j["bytes"] = m.totalBytes();
        j["metadata"] = nlohmann::json::object();
        for (const auto& kv : m.metadata) j["metadata"][kv.key] = kv.value;
        if (tensors) {
            j["tensors"] = nlohmann::json::array();
            for (const auto& t : m.tensors)
                j["tensors"].push_back({{"name", t.name}, {"type", std::string(qz::dtypeName(t.dtype))},
                                        {"shape", t.shape}, {"parameters", t.numel()}, {"bytes", t.nbytes}});
        }
        std::printf("%s\n", j.dump(2).c_str());
        return kOk;
    }
    std::printf("model:        %s\nformat:       %s\narchitecture: %s\ntensors:      %zu\nparameters:   %llu\n"
                "size:         %llu bytes\n",
                qz::printableText(m.path).c_str(), formatName(m.format),
                m.architecture.empty() ? "?" : qz::printableText(m.architecture).c_str(),
                m.tensors.size(), static_cast<unsigned long long>(m.totalParameters()),
                static_cast<unsigned long long>(m.totalBytes()));
    if (!m.metadata.empty()) {
        std::printf("\nmetadata:\n");
        for (const auto& kv : m.metadata)  // untrusted text: no terminal escape sequences reach the terminal
            std::printf("  %-44s %s\n", qz::printableText(kv.key).c_str(),
                        qz::printableText(kv.value).c_str());
    }
    if (tensors) {
        std::printf("\n%-48s %-8s %-20s %12s %12s\n", "tensor", "type", "shape", "params", "bytes");
        for (const auto& t : m.tensors)
            std::printf("%-48s %-8s %-20s %12llu %12llu\n", qz::printableText(t.name).c_str(),
                        std::string(qz::dtypeName(t.dtype)).c_str(),
                        t.shapeString().c_str(), static_cast<unsigned long long>(t.numel()),
                        static_cast<unsigned long long>(t.nbytes));
    }
    return kOk;
}

}  // namespace qzcli
