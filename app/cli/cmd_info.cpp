#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "args.h"
#include "common/file_util.h"
#include "commands.h"
#include "jobs/model_histogram.h"
#include "model/model.h"
#include "progress_line.h"

namespace qzcli {

namespace {
const char* kInfoHelp =
    "usage: quantzoo-cli info MODEL [--json] [--no-tensors] [--histogram [--bins 150] [--range lo,hi]]\n"
    "  MODEL         a Hugging Face folder, a .safetensors file or a .gguf file\n"
    "  --json        machine-readable output on stdout\n"
    "  --no-tensors  only the summary and metadata\n"
    "  --histogram   the model-wide histogram of all 2-D weights, streamed tensor by tensor (range: the\n"
    "                0.1 %..99.9 % percentiles unless --range lo,hi; values beyond it are counted)\n";

const char* formatName(qz::ModelFormat f) {
    switch (f) {
    case qz::ModelFormat::SafetensorsFile: return "safetensors";
    case qz::ModelFormat::HuggingFaceFolder: return "huggingface";
    case qz::ModelFormat::Gguf: return "gguf";
    }
    return "?";
}
// One text bar per bin, scaled to the fullest bin.
void printHistogram(const qz::ModelHistogramResult& r) {
    const qz::Histogram& h = r.histogram;
    const uint64_t peak = h.counts.empty() ? 0 : *std::max_element(h.counts.begin(), h.counts.end());
    std::printf("\nhistogram of %llu values in %llu tensors (%.2f s): range [%.6g, %.6g], %d bins, %llu below, "
                "%llu above, %llu NaN/Inf\n",
                static_cast<unsigned long long>(r.values), static_cast<unsigned long long>(r.tensors), r.seconds,
                h.lo, h.hi, h.bins(), static_cast<unsigned long long>(h.below),
                static_cast<unsigned long long>(h.above), static_cast<unsigned long long>(h.nonFinite));
    for (int i = 0; i < h.bins(); ++i) {
        const int width = peak ? static_cast<int>(60.0 * static_cast<double>(h.counts[i]) / peak + 0.5) : 0;
        std::printf("%12.6g %12llu %s\n", h.binCenter(i), static_cast<unsigned long long>(h.counts[i]),
                    std::string(width, '#').c_str());
    }
}

}  // namespace

int cmdInfo(int argc, char** argv) {
    Args args({"--bins", "--range"}, {"--json", "--no-tensors", "--histogram", "--help"});
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
    const bool wantHistogram = args.has("--histogram");
    if (!wantHistogram && (args.has("--bins") || args.has("--range"))) {
        std::fprintf(stderr, "quantzoo-cli info: --bins and --range apply to --histogram\n%s", kInfoHelp);
        return kUsage;
    }
    qz::ModelHistogramParams hp;
    if (wantHistogram) {
        std::string err;
        hp.spec.bins = static_cast<int>(args.intOr("--bins", 150, err));
        if (err.empty() && (hp.spec.bins < 1 || hp.spec.bins > 100000)) err = "--bins must be 1..100000";
        if (auto r = args.value("--range"); r && err.empty()) {
            std::istringstream in(*r);
            char comma = 0;
            if (!(in >> hp.spec.lo >> comma >> hp.spec.hi) || comma != ',' || !(hp.spec.lo < hp.spec.hi))
                err = "--range needs lo,hi with lo < hi (e.g. -2,2)";
            hp.spec.mode = qz::HistogramRangeMode::Fixed;
        }
        if (!err.empty()) {
            std::fprintf(stderr, "quantzoo-cli info: %s\n%s", err.c_str(), kInfoHelp);
            return kUsage;
        }
        installInterruptHandler();
    }
    auto model = qz::openModel(args.positional()[0]);
    if (!model) {
        std::fprintf(stderr, "quantzoo-cli: %s\n", model.error().message.c_str());
        return kFailed;
    }
    const qz::Model& m = **model;
    std::optional<qz::ModelHistogramResult> hist;
    if (wantHistogram) {
        ProgressLine line("histogram", args.has("--json"));
        auto r = qz::computeModelHistogram(m, hp, line.callback());
        line.finish();
        if (!r) {
            std::fprintf(stderr, "quantzoo-cli: %s\n", r.error().message.c_str());
            return interrupted() ? 128 + interruptSignal() : kFailed;
        }
        hist = std::move(*r);
    }
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
        if (hist) {
            const qz::Histogram& h = hist->histogram;
            j["histogram"] = {{"lo", h.lo},           {"hi", h.hi},         {"counts", h.counts},
                              {"below", h.below},     {"above", h.above},   {"non_finite", h.nonFinite},
                              {"tensors", hist->tensors}, {"values", hist->values}, {"seconds", hist->seconds}};
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
    if (hist) printHistogram(*hist);
    return kOk;
}

}  // namespace qzcli
