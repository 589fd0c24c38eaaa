// quantzoo-cli: the command line of QuantZoo — the same engine (core/) and the same options as the GUI.
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
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
    {"compare", qzcli::cmdCompare, "measure variants (GGUF files, GPTQ / EXL2 folders, methods) side by side against the model"},
    {"imatrix", qzcli::cmdImatrix, "compute an importance matrix (GGUF, as llama-imatrix) for imatrix quants"},
};

void usage(FILE* out) {
    std::fprintf(out, "usage: quantzoo-cli <command> [options] | --version\n\ncommands:\n");
    for (const auto& c : kCommands) std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
    std::fprintf(out, "\n'quantzoo-cli <command> --help' shows a command's options.\n"
                      "exit codes: 0 ok, 1 failed (reason on stderr), 2 usage error,\n"
                      "130 / 143 / 129 cancelled by SIGINT / SIGTERM / SIGHUP\n");
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
        if (!std::strcmp(argv[1], c.name)) {
            int rc = qzcli::kFailed;
            // No exception may end the process through std::terminate: the unwinding runs the writers'
            // destructors (temporary files removed) and the reason is printed.
            try {
                rc = c.run(argc, argv);
            } catch (const std::bad_alloc&) {
                std::fprintf(stderr, "quantzoo-cli: %s: out of memory\n", c.name);
                rc = qzcli::kFailed;
            } catch (const std::exception& e) {
                std::fprintf(stderr, "quantzoo-cli: %s: internal error: %s\n", c.name, e.what());
                rc = qzcli::kFailed;
            } catch (...) {
                std::fprintf(stderr, "quantzoo-cli: %s: internal error\n", c.name);
                rc = qzcli::kFailed;
            }
            // Stopped by a signal: 128 + its number (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).
            if (const int sig = qzcli::interruptSignal(); sig != 0 && rc != qzcli::kOk) rc = 128 + sig;
            return rc;
        }
    std::fprintf(stderr, "quantzoo-cli: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return qzcli::kUsage;
}
