// quantzoo-cli: the command line of QuantZoo — the same engine (core/) and the same options as the GUI.
#include <cstdio>
#include <cstring>
#include <string>

#include "commands.h"
#include "progress_line.h"
#include "quantzoo_config.h"

namespace {

struct Command {
    const char* name;
    int (*run)(int, char**);
    const char* summary;
};

const Command kCommands[] = {
    {"info", qzcli::cmdInfo, "list a model's metadata and tensors (HF folder, .safetensors, .gguf)"},
    {"quantize", qzcli::cmdQuantize, "fake-quantize tensors (absmax / zero-point) and report the error"},
    {"export", qzcli::cmdExport, "write a GGUF file (llama.cpp), a GPTQ checkpoint or an EXL2 folder (exllamav2)"},
    {"perplexity", qzcli::cmdPerplexity, "perplexity / KL-divergence on a text, as llama-perplexity computes them"},
    {"generate", qzcli::cmdGenerate, "generate text from a prompt (greedy or sampled with a seed)"},
    {"imatrix", qzcli::cmdImatrix, "compute an importance matrix (GGUF, as llama-imatrix) for imatrix quants"},
};

void usage(FILE* out) {
    std::fprintf(out, "usage: quantzoo-cli <command> [options] | --version\n\ncommands:\n");
    for (const auto& c : kCommands) std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
    std::fprintf(out, "\n'quantzoo-cli <command> --help' shows a command's options.\n"
                      "exit codes: 0 ok, 1 failed (reason on stderr), 2 usage error, 130 cancelled\n");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? qzcli::kUsage : qzcli::kOk;
    }
    if (!std::strcmp(argv[1], "--version")) {
        std::printf("quantzoo-cli %s\n", QZ_VERSION);
        return qzcli::kOk;
    }
    qzcli::installInterruptHandler();
    for (const auto& c : kCommands)
        if (!std::strcmp(argv[1], c.name)) return c.run(argc, argv);
    std::fprintf(stderr, "quantzoo-cli: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return qzcli::kUsage;
}
