// Peak memory of evaluating a fake-quantized variant: the F32-override path (every quantized tensor made
// whole as F32 before the engine loads) against engine row sources (variants/row_sources.h: rows re-made
// from the original's mapped weights while the engine multiplies, nothing held per weight).
//
// Writes a synthetic Llama of Llama-2-7B's layer shape (bench_synthetic_llama.h; default 2 layers: hidden
// 4096, ffn 11008, vocab 32000, 32 heads, 32 KV heads, 0.67 B parameters) as BF16 safetensors into a
// temporary folder, then in a CHILD process per mode (fork, one address space each) evaluates the
// perplexity of the original, of the variant through F32 overrides, and of the variant through row
// sources, on the bundled text (-c 128, 2 chunks). Per mode it prints the peak RssAnon and RssFile
// (sampled from /proc/self/status every 10 ms), the time and the perplexity; the two variant paths must
// print the same perplexity (the process exits 1 otherwise), and the last lines give the ratios against
// the override path of the same run.
//
// Usage: bench_variant_memory [--layers 2] [--spec absmax:8:tensor] [--threads 2] [--tmp DIR] [--keep]
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "bench_synthetic_llama.h"
#include "infer/evaluate.h"
#include "model/model.h"
#include "variants/variants.h"

using namespace qz;
using namespace qzbench;

namespace {

struct Sample {
    long anonKb = 0, fileKb = 0;
    double seconds = 0, ppl = 0;
    int ok = 0;
};

// Runs in the child: mode 0 = original, 1 = overrides, 2 = sources.
Sample runMode(const std::string& dir, const std::string& spec, int mode, int threads,
               const std::string& text) {
    Sample s;
    std::atomic<bool> done{false};
    std::thread sampler([&] {
        while (!done) {
            s.anonKb = std::max(s.anonKb, procStatusKb("RssAnon"));
            s.fileKb = std::max(s.fileKb, procStatusKb("RssFile"));
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    });
    const auto t0 = std::chrono::steady_clock::now();
    auto finish = [&] {
        done = true;
        sampler.join();
        s.seconds = secondsSince(t0);
        return s;
    };
    auto opened = openModel(dir);
    if (!opened) {
        std::fprintf(stderr, "%s\n", opened.error().message.c_str());
        return finish();
    }
    std::shared_ptr<const Model> m = std::move(*opened);
    EvalParams ep;
    ep.nCtx = 128;
    ep.nChunks = 2;
    ep.threads = threads;
    Result<PerplexityResult> r = makeError("not run");
    if (mode == 0) {
        r = evaluatePerplexity(*m, text, ep);
    } else {
        Variant v; // the variant as a comparison keeps it: its method and the tensors it quantized
        v.kind = VariantKind::FakeQuant;
        v.spec = *parseMethodSpec(spec);
        for (const auto& t : m->tensors)
            if (t.shape.size() == 2) {
                VariantTensor vt;
                vt.name = t.name;
                vt.numel = t.numel();
                v.tensors.push_back(vt);
            }
        auto run = variantRunnable(m, v, {}, mode == 2);
        if (!run) {
            std::fprintf(stderr, "%s\n", run.error().message.c_str());
            return finish();
        }
        r = evaluatePerplexity(*m, text, ep, {}, run->overrides.empty() ? nullptr : &run->overrides, nullptr,
                               run->sources.empty() ? nullptr : &run->sources);
    }
    if (!r) {
        std::fprintf(stderr, "%s\n", r.error().message.c_str());
        return finish();
    }
    s.ppl = r->ppl;
    s.ok = 1;
    return finish();
}

} // namespace

int main(int argc, char** argv) {
    LlamaShape shape;
    shape.hidden = 4096;
    shape.ffn = 11008;
    shape.vocab = 32000;
    shape.heads = 32;
    shape.kvHeads = 32;
    shape.layers = 2;
    std::string spec = "absmax:8:tensor", tmp = std::filesystem::temp_directory_path().string();
    int threads = 2;
    bool keep = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
        if (a == "--layers")
            shape.layers = std::atoi(next().c_str());
        else if (a == "--spec")
            spec = next();
        else if (a == "--threads")
            threads = std::atoi(next().c_str());
        else if (a == "--tmp")
            tmp = next();
        else if (a == "--keep")
            keep = true;
        else {
            std::fprintf(stderr,
                         "usage: bench_variant_memory [--layers 2] [--spec absmax:8:tensor] [--threads 2] "
                         "[--tmp DIR] [--keep]\n");
            return 2;
        }
    }
    if (!parseMethodSpec(spec)) {
        std::fprintf(stderr, "bad --spec %s\n", spec.c_str());
        return 2;
    }
    const std::string data = sourceDir() + "/../data";
    std::string text;
    {
        std::ifstream f(data + "/text/shakespeare-valid.txt", std::ios::binary);
        text.assign(std::istreambuf_iterator<char>(f), {});
    }
    const std::string dir = tmp + "/qz-bench-variant-" + std::to_string(::getpid());
    const auto t0 = std::chrono::steady_clock::now();
    if (auto st = writeSyntheticLlama(dir, shape, DType::BF16, 2000ull << 20, data + "/models/bard-llama");
        !st) {
        std::fprintf(stderr, "%s\n", st.error().message.c_str());
        return 1;
    }
    std::printf("synthetic Llama: %lld layers, hidden %lld, ffn %lld, vocab %lld, %.2f B parameters, BF16 "
                "%.0f MiB (written in %.1f s); variant %s, perplexity -c 128 --chunks 2, %d threads\n",
                (long long)shape.layers, (long long)shape.hidden, (long long)shape.ffn,
                (long long)shape.vocab, double(parameterCount(shape)) / 1e9,
                mib(2.0 * double(parameterCount(shape))), secondsSince(t0), spec.c_str(), threads);
    const char* names[3] = {"original", "variant, F32 overrides", "variant, row sources"};
    Sample res[3];
    for (int mode = 0; mode < 3; ++mode) {
        int fds[2];
        if (pipe(fds) != 0) return 1;
        const pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            const Sample s = runMode(dir, spec, mode, threads, text);
            if (write(fds[1], &s, sizeof s) != ssize_t(sizeof s)) _exit(1);
            _exit(0);
        }
        close(fds[1]);
        if (read(fds[0], &res[mode], sizeof(Sample)) != ssize_t(sizeof(Sample))) res[mode] = Sample();
        close(fds[0]);
        int status = 0;
        waitpid(pid, &status, 0);
        std::printf("%-24s peak RssAnon %8.1f MiB  peak RssFile %8.1f MiB  %7.1f s  PPL %.6f%s\n",
                    names[mode], double(res[mode].anonKb) / 1024, double(res[mode].fileKb) / 1024,
                    res[mode].seconds, res[mode].ppl, res[mode].ok ? "" : "  FAILED");
        std::fflush(stdout);
    }
    if (!keep) std::filesystem::remove_all(dir);
    const bool same = res[1].ok && res[2].ok && res[1].ppl == res[2].ppl;
    std::printf("row sources / overrides: peak RssAnon %.3f, time %.2f; same perplexity: %s\n",
                double(res[2].anonKb) / double(std::max(1L, res[1].anonKb)),
                res[2].seconds / std::max(1e-9, res[1].seconds), same ? "yes" : "NO");
    std::printf("row sources - original: peak RssAnon %+.1f MiB; overrides - original: %+.1f MiB\n",
                double(res[2].anonKb - res[0].anonKb) / 1024, double(res[1].anonKb - res[0].anonKb) / 1024);
    return same ? 0 : 1;
}
