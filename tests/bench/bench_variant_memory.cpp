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
// --gpt2: a synthetic GPT-2 of GPT-2 XL's layer shape instead (hidden 1600, 25 heads, ffn 6400, 1024
// positions; bard-gpt2's 1024-token vocabulary; F32 as GPT-2 checkpoints are), whose attention and MLP
// weights are HF Conv1D, stored [in, out]: the engine holds the original's as F32 transposes, the override
// path makes them whole twice, and row sources read them transposed (rows of [out, in]) from the file.
//
// Usage: bench_variant_memory [--layers 2] [--gpt2] [--spec absmax:8:tensor] [--threads 2] [--tmp DIR]
//        [--keep]
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

// GPT-2's tensors as transformers' GPT2LMHeadModel saves them (tied head; Conv1D weights [in, out]).
std::vector<SyntheticTensor> gpt2Tensors(int64_t hidden, int64_t layers, int64_t vocab, int64_t positions) {
    std::vector<SyntheticTensor> t;
    const int64_t H = hidden, F = 4 * hidden;
    for (int64_t l = 0; l < layers; ++l) {
        const std::string p = "transformer.h." + std::to_string(l) + ".";
        t.push_back({p + "attn.c_attn.bias", {3 * H}});
        t.push_back({p + "attn.c_attn.weight", {H, 3 * H}});
        t.push_back({p + "attn.c_proj.bias", {H}});
        t.push_back({p + "attn.c_proj.weight", {H, H}});
        t.push_back({p + "ln_1.bias", {H}});
        t.push_back({p + "ln_1.weight", {H}, true});
        t.push_back({p + "ln_2.bias", {H}});
        t.push_back({p + "ln_2.weight", {H}, true});
        t.push_back({p + "mlp.c_fc.bias", {F}});
        t.push_back({p + "mlp.c_fc.weight", {H, F}});
        t.push_back({p + "mlp.c_proj.bias", {H}});
        t.push_back({p + "mlp.c_proj.weight", {F, H}});
    }
    t.push_back({"transformer.ln_f.bias", {H}});
    t.push_back({"transformer.ln_f.weight", {H}, true});
    t.push_back({"transformer.wpe.weight", {positions, H}});
    t.push_back({"transformer.wte.weight", {vocab, H}});
    return t;
}

// Writes the synthetic GPT-2 (F32, one shard) with config.json and bard-gpt2's tokenizer.
Status writeSyntheticGpt2(const std::string& dir, int64_t layers, const std::string& tokenizerDir) {
    namespace fs = std::filesystem;
    const int64_t hidden = 1600, vocab = 1024, positions = 1024;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return makeError("cannot create " + dir + ": " + ec.message());
    const auto tensors = gpt2Tensors(hidden, layers, vocab, positions);
    std::vector<SafetensorsTensorDecl> decls;
    for (const auto& t : tensors)
        decls.push_back({t.name, DType::F32, t.shape});
    SafetensorsWriter w;
    if (auto st = w.open(dir + "/model.safetensors", decls); !st) return st;
    std::vector<float> chunk(1 << 20);
    for (size_t i = 0; i < tensors.size(); ++i) {
        const int64_t n = tensors[i].numel();
        for (int64_t start = 0; start < n; start += int64_t(chunk.size())) {
            const int64_t m = std::min<int64_t>(int64_t(chunk.size()), n - start);
            syntheticValues(tensors[i], i, start, chunk.data(), m);
            if (auto st = w.writeChunkFromF32({chunk.data(), size_t(m)}); !st) return st;
        }
    }
    if (auto st = w.finish(); !st) return st;
    {
        std::ofstream f(dir + "/config.json");
        f << "{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": \"gpt2\", \"n_embd\": " << hidden
          << ", \"n_layer\": " << layers << ", \"n_head\": 25, \"n_positions\": " << positions
          << ", \"n_ctx\": " << positions << ", \"n_inner\": null, \"activation_function\": \"gelu_new\", "
          << "\"layer_norm_epsilon\": 1e-05, \"vocab_size\": " << vocab
          << ", \"bos_token_id\": 1023, \"eos_token_id\": 1023, \"tie_word_embeddings\": true, "
          << "\"torch_dtype\": \"float32\"}\n";
        if (!f) return makeError("cannot write config.json in " + dir);
    }
    for (const char* name :
         {"tokenizer.json", "vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"}) {
        fs::copy_file(tokenizerDir + "/" + name, dir + "/" + name, fs::copy_options::overwrite_existing, ec);
        if (ec) return makeError(std::string("cannot copy ") + name + ": " + ec.message());
    }
    return okStatus();
}

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
    bool keep = false, gpt2 = false;
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
        else if (a == "--gpt2")
            gpt2 = true;
        else {
            std::fprintf(stderr, "usage: bench_variant_memory [--layers 2] [--gpt2] [--spec absmax:8:tensor] "
                                 "[--threads 2] [--tmp DIR] [--keep]\n");
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
    if (gpt2) {
        if (auto st = writeSyntheticGpt2(dir, shape.layers, data + "/models/bard-gpt2"); !st) {
            std::fprintf(stderr, "%s\n", st.error().message.c_str());
            return 1;
        }
        int64_t params = 0, conv = 0;
        for (const auto& t : gpt2Tensors(1600, shape.layers, 1024, 1024)) {
            params += t.numel();
            if (t.shape.size() == 2 && t.name.find(".h.") != std::string::npos) conv += t.numel();
        }
        std::printf(
            "synthetic GPT-2: %lld layers, hidden 1600, ffn 6400, vocab 1024, %.3f B parameters (Conv1D "
            "weights %.0f MiB as F32), F32 (written in %.1f s); variant %s, perplexity -c 128 "
            "--chunks 2, %d threads\n",
            (long long)shape.layers, double(params) / 1e9, mib(4.0 * double(conv)), secondsSince(t0),
            spec.c_str(), threads);
    } else if (auto st =
                   writeSyntheticLlama(dir, shape, DType::BF16, 2000ull << 20, data + "/models/bard-llama");
               !st) {
        std::fprintf(stderr, "%s\n", st.error().message.c_str());
        return 1;
    } else
        std::printf(
            "synthetic Llama: %lld layers, hidden %lld, ffn %lld, vocab %lld, %.2f B parameters, BF16 "
            "%.0f MiB (written in %.1f s); variant %s, perplexity -c 128 --chunks 2, %d threads\n",
            (long long)shape.layers, (long long)shape.hidden, (long long)shape.ffn, (long long)shape.vocab,
            double(parameterCount(shape)) / 1e9, mib(2.0 * double(parameterCount(shape))), secondsSince(t0),
            spec.c_str(), threads);
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
