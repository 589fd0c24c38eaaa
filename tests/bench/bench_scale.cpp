// Scale benchmark: time and peak memory of every stage a user runs, on Llama-2-7B-shaped models of
// several depths, to show that memory is set by one decoder layer and not by the model.
//
// For each depth (default 8 and 32 layers) it writes a synthetic Llama (bench_synthetic_llama.h: hidden
// 4096, ffn 11008, vocab 32000, 32 query / 32 KV heads, BF16, sharded as transformers shards it), then runs
// each stage as its own `quantzoo-cli` process and samples the child's /proc/PID/status every 10 ms:
//   open      info --no-tensors --histogram      (opening + the model-wide histogram of every weight)
//   f16, q8_0, q4_k_m  export --format gguf      (the Q4_K_M file is kept for the ppl stage)
//   imatrix   imatrix -c CTX --chunks K
//   ppl       perplexity of the Q4_K_M file, -c CTX --chunks K
//   gptq      export --format gptq --bits 4 --group-size 128 --samples S --seq-len L
//   exl2      export --format exl2 --bpw 4.0 --measure-rows R --measure-len L --rows R --len L
// Per stage and depth it prints wall time, CPU time (user + system, from wait4), and the peaks of RssAnon
// (anonymous memory: what the process allocated) and RssFile (mapped file pages, which the kernel can drop).
// Then, per stage, the ratio of the peak anonymous memory at the deepest model to the shallowest (1.0 =
// does not grow with depth), and for GPTQ and EXL2 the CPU time per decoder layer ((CPU(deep) − CPU(shallow))
// / (layers difference)) and a projection of the notebooks' settings (GPTQ: 128 windows × 2048 tokens;
// EXL2: exllamav2's defaults, 16 × 2048 measurement rows and 100 × 2048 quantization rows) on 32 layers and
// 16 cores, assuming the calibration work is linear in tokens and the threads scale perfectly (an
// optimistic lower bound: state it with the figure). GPTQ's CLI reports its own split of the CPU time
// into the calibration forward (grows with the tokens) and the quantization (does not): per layer both are
// printed, and only the first is scaled to the notebook's tokens, giving the calibration's share there.
//
// Usage: bench_scale [--layers 8,32] [--hidden 4096] [--ffn 11008] [--vocab 32000] [--heads 32]
//          [--kv-heads 32] [--stages open,f16,q8_0,q4_k_m,imatrix,ppl,gptq,exl2] [--ctx 512] [--chunks 2]
//          [--samples 4] [--seq-len 512] [--rows 4] [--threads 2] [--cli PATH] [--text FILE]
//          [--tmp DIR] [--shard-mb 5000] [--keep]
// The models and outputs live in a folder under --tmp (default: the system temporary folder) and are
// removed at the end unless --keep. Disk: about 2 × the BF16 model of the deepest depth (13.5 GB per
// 32-layer model, plus its outputs).
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_synthetic_llama.h"

using namespace qzbench;
namespace fs = std::filesystem;

namespace {

struct StageRun {
    bool ok = false;
    int exitCode = -1;
    double wall = 0, cpu = 0;
    long anonKb = 0, fileKb = 0, rssKb = 0;
    // GPTQ only: its own split of the time (the CLI's "gptq time:" line), -1 if absent.
    double calibCpu = -1, quantCpu = -1;
};

// The last "gptq time: calibration forward W s wall, C s CPU; quantization W s wall, Q s CPU" line of the log.
void readGptqSplit(const std::string& logPath, StageRun& r) {
    std::ifstream f(logPath);
    std::string line, last;
    while (std::getline(f, line))
        if (line.rfind("gptq time:", 0) == 0) last = line;
    double cw = 0, cc = 0, qw = 0, qc = 0;
    if (!last.empty() &&
        std::sscanf(last.c_str(),
                    "gptq time: calibration forward %lf s wall, %lf s CPU; quantization %lf s wall, %lf s CPU", &cw,
                    &cc, &qw, &qc) == 4) {
        r.calibCpu = cc;
        r.quantCpu = qc;
    }
}

void sample(pid_t pid, StageRun& r) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line)) {
        auto val = [&](const char* k) -> long {
            const size_t n = std::strlen(k);
            return line.compare(0, n, k) == 0 ? std::atol(line.c_str() + n) : -1;
        };
        long v;
        if ((v = val("VmRSS:")) >= 0) r.rssKb = std::max(r.rssKb, v);
        if ((v = val("RssAnon:")) >= 0) r.anonKb = std::max(r.anonKb, v);
        if ((v = val("RssFile:")) >= 0) r.fileKb = std::max(r.fileKb, v);
    }
}

// Runs argv (argv[0] = the program) with stdout/stderr appended to logPath, sampling its memory.
StageRun runSampled(const std::vector<std::string>& argv, const std::string& logPath) {
    StageRun r;
    const auto t0 = std::chrono::steady_clock::now();
    const pid_t pid = fork();
    if (pid < 0) return r;
    if (pid == 0) {
        FILE* log = std::fopen(logPath.c_str(), "a");
        if (log) {
            dup2(fileno(log), 1);
            dup2(fileno(log), 2);
        }
        std::vector<char*> args;
        for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        execv(args[0], args.data());
        std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
        _exit(127);
    }
    int status = 0;
    struct rusage ru {};
    for (;;) {
        const pid_t w = wait4(pid, &status, WNOHANG, &ru);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) return r;
        sample(pid, r);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    r.wall = secondsSince(t0);
    r.cpu = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
            1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    r.rssKb = std::max(r.rssKb, ru.ru_maxrss);
    r.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.ok = r.exitCode == 0;
    return r;
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, sep))
        if (!item.empty()) out.push_back(item);
    return out;
}

std::string exeDir() {
    std::error_code ec;
    const fs::path p = fs::read_symlink("/proc/self/exe", ec);
    return ec ? std::string(".") : p.parent_path().string();
}

double mibOf(long kb) { return static_cast<double>(kb) / 1024.0; }

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    LlamaShape shape;
    shape.hidden = 4096;
    shape.ffn = 11008;
    shape.vocab = 32000;
    shape.heads = 32;
    shape.kvHeads = 32;
    std::vector<int64_t> depths = {8, 32};
    std::vector<std::string> stages = {"open", "f16", "q8_0", "q4_k_m", "imatrix", "ppl", "gptq", "exl2"};
    int ctx = 512, chunks = 2, samples = 4, seqLen = 512, rows = 4, threads = 2;
    uint64_t shardMb = 5000;
    std::string cli = exeDir() + "/../app/quantzoo-cli";
    std::string text = sourceDir() + "/../data/text/shakespeare-valid.txt";
    std::string tmpRoot = fs::temp_directory_path().string();
    bool keep = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "%s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--layers") {
            depths.clear();
            for (const auto& d : split(next(), ',')) depths.push_back(std::atoll(d.c_str()));
        } else if (a == "--hidden") shape.hidden = std::atoll(next().c_str());
        else if (a == "--ffn") shape.ffn = std::atoll(next().c_str());
        else if (a == "--vocab") shape.vocab = std::atoll(next().c_str());
        else if (a == "--heads") shape.heads = std::atoll(next().c_str());
        else if (a == "--kv-heads") shape.kvHeads = std::atoll(next().c_str());
        else if (a == "--stages") stages = split(next(), ',');
        else if (a == "--ctx") ctx = std::atoi(next().c_str());
        else if (a == "--chunks") chunks = std::atoi(next().c_str());
        else if (a == "--samples") samples = std::atoi(next().c_str());
        else if (a == "--seq-len") seqLen = std::atoi(next().c_str());
        else if (a == "--rows") rows = std::atoi(next().c_str());
        else if (a == "--threads") threads = std::atoi(next().c_str());
        else if (a == "--cli") cli = next();
        else if (a == "--text") text = next();
        else if (a == "--tmp") tmpRoot = next();
        else if (a == "--shard-mb") shardMb = std::strtoull(next().c_str(), nullptr, 10);
        else if (a == "--keep") keep = true;
        else {
            std::fprintf(stderr, "unknown option %s (see the comment at the top of bench_scale.cpp)\n", a.c_str());
            return 2;
        }
    }
    if (depths.empty() || shape.heads <= 0 || shape.kvHeads <= 0 || shape.hidden % shape.heads != 0 ||
        threads < 1 || ctx < 8 || chunks < 1 || samples < 1 || seqLen < 8 || rows < 1) {
        std::fprintf(stderr, "bad options\n");
        return 2;
    }
    if (access(cli.c_str(), X_OK) != 0) {
        std::fprintf(stderr, "quantzoo-cli not found at %s (use --cli PATH)\n", cli.c_str());
        return 2;
    }
    const std::string root = tmpRoot + "/qz-bench-scale-" + std::to_string(getpid());
    fs::create_directories(root);
    const std::string log = root + "/stages.log";
    const std::string tokDir = sourceDir() + "/../data/models/bard-llama";
    const std::string th = std::to_string(threads);
    setenv("QZ_THREADS", th.c_str(), 1);  // the GGUF export takes its thread count from the environment
    std::printf("bench_scale: hidden %lld, ffn %lld, vocab %lld, heads %lld/%lld, BF16; %d threads; logs in %s\n",
                static_cast<long long>(shape.hidden), static_cast<long long>(shape.ffn),
                static_cast<long long>(shape.vocab), static_cast<long long>(shape.heads),
                static_cast<long long>(shape.kvHeads), threads, log.c_str());
    std::printf("%-8s %6s %10s %10s %12s %12s %12s  %s\n", "stage", "layers", "wall s", "cpu s", "RssAnon MiB",
                "RssFile MiB", "peak RSS MiB", "");

    std::map<std::string, std::map<int64_t, StageRun>> results;
    int failures = 0;
    for (int64_t layers : depths) {
        LlamaShape s = shape;
        s.layers = layers;
        const std::string dir = root + "/model-" + std::to_string(layers);
        const std::string out = root + "/out-" + std::to_string(layers);
        fs::create_directories(out);
        const auto tw = std::chrono::steady_clock::now();
        if (auto st = writeSyntheticLlama(dir, s, qz::DType::BF16, shardMb << 20, tokDir); !st) {
            std::fprintf(stderr, "cannot write the model: %s\n", st.error().message.c_str());
            return 1;
        }
        std::printf("# %lld layers: %.2f B parameters written in %.0f s\n", static_cast<long long>(layers),
                    static_cast<double>(parameterCount(s)) * 1e-9, secondsSince(tw));
        const std::string q4 = out + "/q4_k_m.gguf";
        for (const auto& stage : stages) {
            std::vector<std::string> cmd = {cli};
            if (stage == "open") {
                cmd.insert(cmd.end(), {"info", dir, "--no-tensors", "--histogram"});
            } else if (stage == "f16" || stage == "q8_0" || stage == "q4_k_m") {
                std::string type = stage == "f16" ? "F16" : stage == "q8_0" ? "Q8_0" : "Q4_K_M";
                const std::string o = out + "/" + stage + ".gguf";
                cmd.insert(cmd.end(), {"export", dir, "--format", "gguf", "--type", type, "-o", o, "--quiet"});
            } else if (stage == "imatrix") {
                cmd.insert(cmd.end(), {"imatrix", dir, "-f", text, "-o", out + "/imatrix.gguf", "-c",
                                       std::to_string(ctx), "--chunks", std::to_string(chunks), "--threads", th,
                                       "--quiet"});
            } else if (stage == "ppl") {
                cmd.insert(cmd.end(), {"perplexity", q4, "-f", text, "-c", std::to_string(ctx), "--chunks",
                                       std::to_string(chunks), "--threads", th, "--quiet"});
            } else if (stage == "gptq") {
                cmd.insert(cmd.end(), {"export", dir, "--format", "gptq", "--bits", "4", "--group-size", "128",
                                       "--calib", text, "--samples", std::to_string(samples), "--seq-len",
                                       std::to_string(seqLen), "--threads", th, "-o", out + "/gptq", "--quiet"});
            } else if (stage == "exl2") {
                cmd.insert(cmd.end(), {"export", dir, "--format", "exl2", "--bpw", "4.0", "--calib", text,
                                       "--measure-rows", std::to_string(rows), "--measure-len",
                                       std::to_string(seqLen), "--rows", std::to_string(rows), "--len",
                                       std::to_string(seqLen), "--threads", th, "-o", out + "/exl2", "--quiet"});
            } else {
                std::fprintf(stderr, "unknown stage %s\n", stage.c_str());
                return 2;
            }
            {
                std::ofstream l(log, std::ios::app);
                l << "\n$";
                for (const auto& c : cmd) l << ' ' << c;
                l << '\n';
            }
            StageRun r = runSampled(cmd, log);
            if (stage == "gptq" && r.ok) readGptqSplit(log, r);
            results[stage][layers] = r;
            if (!r.ok) ++failures;
            std::string note = r.ok ? "" : "FAILED (exit " + std::to_string(r.exitCode) + ", see the log)";
            if (r.calibCpu >= 0) {
                char buf[128];
                std::snprintf(buf, sizeof buf, "calibration forward %.1f CPU s, quantization %.1f CPU s", r.calibCpu,
                              r.quantCpu);
                note = buf;
            }
            std::printf("%-8s %6lld %10.1f %10.1f %12.0f %12.0f %12.0f  %s\n", stage.c_str(),
                        static_cast<long long>(layers), r.wall, r.cpu, mibOf(r.anonKb), mibOf(r.fileKb), mibOf(r.rssKb),
                        note.c_str());
            // Outputs other than the Q4_K_M file are not needed by later stages.
            if (stage == "f16" || stage == "q8_0") fs::remove(out + "/" + stage + ".gguf");
            if (stage == "gptq" || stage == "exl2") fs::remove_all(out + "/" + stage);
        }
        if (!keep) {
            fs::remove_all(dir);
            fs::remove_all(out);
        }
    }

    if (depths.size() >= 2) {
        const int64_t d0 = depths.front(), d1 = depths.back();
        std::printf("\nPeak anonymous memory, %lld layers / %lld layers (1.00 = independent of depth):\n",
                    static_cast<long long>(d1), static_cast<long long>(d0));
        for (const auto& stage : stages) {
            const auto& a = results[stage][d0];
            const auto& b = results[stage][d1];
            if (a.ok && b.ok && a.anonKb > 0)
                std::printf("  %-8s %.2f  (%.0f MiB -> %.0f MiB)\n", stage.c_str(),
                            static_cast<double>(b.anonKb) / static_cast<double>(a.anonKb), mibOf(a.anonKb),
                            mibOf(b.anonKb));
        }
        const double dl = static_cast<double>(d1 - d0);
        for (const char* stage : {"gptq", "exl2"}) {
            const auto& a = results[stage][d0];
            const auto& b = results[stage][d1];
            if (!a.ok || !b.ok || dl <= 0) continue;
            const double perLayer = (b.cpu - a.cpu) / dl;
            const double benchTokens = std::string(stage) == "gptq" ? static_cast<double>(samples) * seqLen
                                                                    : 2.0 * rows * seqLen;
            const double notebookTokens = std::string(stage) == "gptq" ? 128.0 * 2048 : (16.0 + 100.0) * 2048;
            const double scale = notebookTokens / benchTokens;
            if (a.calibCpu >= 0 && b.calibCpu >= 0) {
                // GPTQ: only the calibration forward (embedding, Hessian passes, carries) grows with the
                // tokens; the quantization (factors, the column loop, errors) depends on the shapes alone.
                const double calib = (b.calibCpu - a.calibCpu) / dl, quant = (b.quantCpu - a.quantCpu) / dl;
                const double calibN = calib * scale, totalN = calibN + quant;
                std::printf("%s: %.1f CPU s per decoder layer at %.0f calibration tokens: calibration forward "
                            "%.1f s (%.1f %%), quantization %.1f s\n",
                            stage, perLayer, benchTokens, calib, calib + quant > 0 ? 100.0 * calib / (calib + quant) : 0.0,
                            quant);
                std::printf("%s: notebook settings (%.0f tokens): per layer calibration forward ~%.0f CPU s "
                            "(x%.0f) + quantization %.1f CPU s, calibration share %.1f %%; 32 layers, 16 cores: "
                            "~%.0f min wall (calibration linear in tokens: attention grows faster with the window "
                            "length; perfect-scaling lower bound)\n",
                            stage, notebookTokens, calibN, scale, quant, 100.0 * calibN / totalN,
                            totalN * 32.0 / 16.0 / 60.0);
                continue;
            }
            const double projected = perLayer * scale * 32.0 / 16.0;
            std::printf("%s: %.1f CPU s per decoder layer at %.0f calibration tokens; notebook settings "
                        "(%.0f tokens), 32 layers, 16 cores: ~%.0f min wall (linear-in-tokens, perfect-scaling "
                        "lower bound)\n",
                        stage, perLayer, benchTokens, notebookTokens, projected / 60.0);
        }
    }
    if (!keep) fs::remove_all(root);
    return failures == 0 ? 0 : 1;
}
