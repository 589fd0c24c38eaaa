// Peak memory of the streaming GGUF export on a realistic-size model.
//
// Writes a synthetic Llama (default: TinyLlama's shape — hidden 2048, 22 layers, ffn 5632, vocab 32000,
// 32 query / 4 KV heads, 1.1 B parameters) as sharded BF16 safetensors (model-0000i-of-0000n +
// index + config.json + bard-llama's tokenizer) into a temporary folder, then exports it with
// qz::exportGguf to each requested type in a CHILD process (this executable re-executed with --child), so
// that every measurement has its own address space. Per export it prints the child's peak RSS (wait4
// ru_maxrss and the child's own VmHWM), the peaks of its anonymous and file-backed resident memory
// (sampled from /proc/PID/status every 10 ms), the time and the output size, and the ratios
// peak / model size and peak / (largest tensor as F32 + its quantized bytes) — the latter is what a
// streaming exporter should stay close to. The folder is removed at the end (unless --keep).
//
// Usage: bench_export_memory [--layers 22] [--hidden 2048] [--ffn 5632] [--vocab 32000] [--heads 32]
//          [--kv-heads 4] [--types F16,Q8_0,Q4_K_M] [--threads 2] [--shard-mb 1000] [--tmp DIR (default: the system temporary folder)] [--keep]
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_synthetic_llama.h"
#include "export/gguf_export.h"
#include "model/model.h"

using namespace qz;
using namespace qzbench;

namespace {

// --child MODEL_DIR TYPE OUT.gguf THREADS RESULT_FILE
int runChild(char** argv) {
    const std::string dir = argv[2], type = argv[3], out = argv[4], resultFile = argv[6];
    const int threads = std::atoi(argv[5]);
    const auto t0 = std::chrono::steady_clock::now();
    auto m = openModel(dir);
    if (!m) {
        std::fprintf(stderr, "child: %s\n", m.error().message.c_str());
        return 1;
    }
    const long hwmAfterOpen = procStatusKb("VmHWM");
    GgufExportParams p;
    p.outputPath = out;
    p.type = type;
    p.threads = threads;
    uint64_t streamBound = 0;  // max over tensors of (F32 bytes + quantized bytes)
    auto r = exportGguf(**m, p, {}, [&](const GgufTensorLog& t) {
        uint64_t numel = 1;
        for (int64_t d : t.ne) numel *= static_cast<uint64_t>(d);
        streamBound = std::max<uint64_t>(streamBound, numel * 4 + t.bytesAfter);
    });
    if (!r) {
        std::fprintf(stderr, "child: export %s: %s\n", type.c_str(), r.error().message.c_str());
        return 1;
    }
    std::ofstream f(resultFile);
    f << "seconds " << r->seconds << "\n"
      << "total_seconds " << secondsSince(t0) << "\n"
      << "file_bytes " << r->fileBytes << "\n"
      << "bpw " << r->bitsPerWeight << "\n"
      << "stream_bound " << streamBound << "\n"
      << "hwm_kb " << procStatusKb("VmHWM") << "\n"
      << "hwm_after_open_kb " << hwmAfterOpen << "\n";
    return f ? 0 : 1;
}

struct ProcPeaks {
    long rss = 0, anon = 0, file = 0;
};

void sampleStatus(pid_t pid, ProcPeaks& pk) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line)) {
        auto val = [&](const char* k) -> long {
            const size_t n = std::strlen(k);
            return line.compare(0, n, k) == 0 ? std::atol(line.c_str() + n) : -1;
        };
        long v;
        if ((v = val("VmRSS:")) >= 0) pk.rss = std::max(pk.rss, v);
        if ((v = val("RssAnon:")) >= 0) pk.anon = std::max(pk.anon, v);
        if ((v = val("RssFile:")) >= 0) pk.file = std::max(pk.file, v);
    }
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, sep))
        if (!item.empty()) out.push_back(item);
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress visible when redirected
    if (argc >= 7 && std::strcmp(argv[1], "--child") == 0) return runChild(argv);

    LlamaShape shape;
    std::vector<std::string> types = {"F16", "Q8_0", "Q4_K_M"};
    int threads = 2;
    uint64_t shardMb = 1000;
    std::string tmpRoot = std::filesystem::temp_directory_path().string();
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
        if (a == "--layers") shape.layers = std::atoll(next().c_str());
        else if (a == "--hidden") shape.hidden = std::atoll(next().c_str());
        else if (a == "--ffn") shape.ffn = std::atoll(next().c_str());
        else if (a == "--vocab") shape.vocab = std::atoll(next().c_str());
        else if (a == "--heads") shape.heads = std::atoll(next().c_str());
        else if (a == "--kv-heads") shape.kvHeads = std::atoll(next().c_str());
        else if (a == "--types") types = split(next(), ',');
        else if (a == "--threads") threads = std::atoi(next().c_str());
        else if (a == "--shard-mb") shardMb = std::strtoull(next().c_str(), nullptr, 10);
        else if (a == "--tmp") tmpRoot = next();
        else if (a == "--keep") keep = true;
        else {
            std::fprintf(stderr, "unknown option %s (see the comment at the top of bench_export_memory.cpp)\n",
                         a.c_str());
            return 2;
        }
    }

    std::string tmpl = tmpRoot + "/qz-bench-export-XXXXXX";
    if (!mkdtemp(tmpl.data())) {
        std::fprintf(stderr, "mkdtemp %s: %s\n", tmpl.c_str(), std::strerror(errno));
        return 1;
    }
    const std::string work = tmpl, modelDir = work + "/model";
    const int64_t params = parameterCount(shape);
    const uint64_t modelBytes = static_cast<uint64_t>(params) * 2;
    const uint64_t largestF32 = static_cast<uint64_t>(shape.vocab * shape.hidden) * 4;
    std::printf("synthetic llama: hidden %lld, layers %lld, ffn %lld, vocab %lld, heads %lld/%lld: %.3f B parameters\n",
                static_cast<long long>(shape.hidden), static_cast<long long>(shape.layers),
                static_cast<long long>(shape.ffn), static_cast<long long>(shape.vocab),
                static_cast<long long>(shape.heads), static_cast<long long>(shape.kvHeads), params / 1e9);
    auto t0 = std::chrono::steady_clock::now();
    if (auto st = writeSyntheticLlama(modelDir, shape, DType::BF16, shardMb * 1000000ull,
                                      sourceDir() + "/../data/models/bard-llama");
        !st) {
        std::fprintf(stderr, "writing the model: %s\n", st.error().message.c_str());
        std::filesystem::remove_all(work);
        return 1;
    }
    int shards = 0;
    for (const auto& e : std::filesystem::directory_iterator(modelDir))
        if (e.path().extension() == ".safetensors") ++shards;
    std::printf("written %s: %d BF16 shards, %.1f MiB of tensor data, in %.1f s (writer peak RSS %.1f MiB)\n",
                modelDir.c_str(), shards, mib(modelBytes), secondsSince(t0), procStatusKb("VmHWM") / 1024.0);
    std::printf("largest tensor (embed_tokens / lm_head) as F32: %.1f MiB; threads %d; host has %u cores "
                "(shared: wall times are noisy)\n\n",
                mib(largestF32), threads, std::thread::hardware_concurrency());
    std::printf("%-7s %8s %9s %9s %9s %9s %9s %9s %8s %8s %10s\n", "type", "time s", "out MiB", "maxrss",
                "VmHWM", "anonPk", "filePk", "bound", "pk/model", "pk/bound", "pk/largest");

    int failures = 0;
    for (const std::string& type : types) {
        const std::string out = work + "/out-" + type + ".gguf", resFile = work + "/result-" + type + ".txt";
        const std::string thr = std::to_string(threads);
        const pid_t pid = fork();
        if (pid < 0) {
            std::perror("fork");
            return 1;
        }
        if (pid == 0) {
            const char* args[] = {argv[0], "--child", modelDir.c_str(), type.c_str(), out.c_str(), thr.c_str(),
                                  resFile.c_str(), nullptr};
            execv("/proc/self/exe", const_cast<char* const*>(args));
            std::perror("execv");
            _exit(127);
        }
        ProcPeaks pk;
        int status = 0;
        rusage ru{};
        const auto tc = std::chrono::steady_clock::now();
        for (;;) {
            const pid_t w = wait4(pid, &status, WNOHANG, &ru);
            if (w == pid) break;
            if (w < 0) {
                std::perror("wait4");
                return 1;
            }
            sampleStatus(pid, pk);
            usleep(10000);
        }
        const double wall = secondsSince(tc);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            std::printf("%-7s FAILED (status %d)\n", type.c_str(), status);
            ++failures;
            continue;
        }
        std::ifstream rf(resFile);
        std::string key;
        double seconds = 0, fileBytes = 0, bound = 0, hwm = 0, bpw = 0, hwmOpen = 0, total = 0, v = 0;
        while (rf >> key >> v) {
            if (key == "seconds") seconds = v;
            else if (key == "total_seconds") total = v;
            else if (key == "file_bytes") fileBytes = v;
            else if (key == "stream_bound") bound = v;
            else if (key == "hwm_kb") hwm = v * 1024;
            else if (key == "hwm_after_open_kb") hwmOpen = v * 1024;
            else if (key == "bpw") bpw = v;
        }
        const double maxrss = static_cast<double>(ru.ru_maxrss) * 1024;
        std::printf("%-7s %8.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %8.3f %8.2f %10.2f\n", type.c_str(), seconds,
                    mib(fileBytes), mib(maxrss), mib(hwm), pk.anon / 1024.0, pk.file / 1024.0, mib(bound),
                    maxrss / modelBytes, maxrss / bound, maxrss / largestF32);
        std::printf("        (%.2f bpw; child wall %.1f s incl. open %.1f s, user %.1f s, sys %.1f s; "
                    "VmHWM after openModel %.1f MiB)\n",
                    bpw, wall, total - seconds, ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
                    ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6, mib(hwmOpen));
        std::error_code ec;
        std::filesystem::remove(out, ec);
    }
    std::printf("\nMiB columns: maxrss = wait4 ru_maxrss of the child, VmHWM = the child's own high-water mark,\n"
                "anonPk / filePk = peaks of RssAnon / RssFile sampled every 10 ms, bound = max over tensors of\n"
                "(F32 bytes + output bytes); model = %.1f MiB BF16.\n",
                mib(modelBytes));
    if (keep) std::printf("kept %s\n", work.c_str());
    else std::filesystem::remove_all(work);
    return failures ? 1 : 0;
}
