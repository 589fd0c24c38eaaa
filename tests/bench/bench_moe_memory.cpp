// Peak anonymous memory of the EXL2 and GPTQ exports on one mixture-of-experts decoder layer at a real shape.
//
// Writes a one-layer Qwen3-MoE-shaped model (default: Qwen3-30B-A3B's layer — hidden 2048, 32 query / 4 KV
// heads of 128, E experts of width 768, top 8 — with bard-gpt2's 1024-token vocabulary, BF16, seeded values as
// bench_synthetic_llama.h makes them) into a temporary folder, then runs each export in a CHILD process (this
// executable re-executed with --child) and samples the child's RssAnon / RssFile from /proc every 10 ms:
//   exl2        exportExl2 (measurement + quantization, 4.0 bpw, ROWS × LEN tokens for both)
//   gptq        exportGptq 4 bits g128 without a Hessian budget (all experts of a group in one pass)
//   gptq-budget the same with maxHessianMemory = BUDGET MiB (the CLI's --max-memory)
// and prints, per export, the peak RssAnon against the layer's F32 size ("one decoder layer in F32") and the
// experts' Hessians, plus the GPTQ budget run's peak against the unbounded run's (the ratio of this run).
//
// Usage: bench_moe_memory [--experts 16] [--hidden 2048] [--expert-ffn 768] [--top-k 8] [--rows 4] [--len 128]
//          [--threads 2] [--budget-mib 64] [--what exl2,gptq,gptq-budget] [--tmp DIR] [--keep]
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_synthetic_llama.h"
#include "exl2/exl2_export.h"
#include "gptq/gptq_export.h"
#include "model/model.h"

using namespace qz;
using namespace qzbench;
namespace fs = std::filesystem;

namespace {

struct MoeShape {
    int64_t hidden = 2048, experts = 16, expertFf = 768, topK = 8, heads = 32, kvHeads = 4, headDim = 128;
    int64_t vocab = 1024;  // bard-gpt2's BPE vocabulary
    int64_t layerNumel() const {
        const int64_t q = heads * headDim, kv = kvHeads * headDim;
        return 3 * experts * expertFf * hidden + experts * hidden + 2 * q * hidden + 2 * kv * hidden;
    }
};

std::vector<SyntheticTensor> moeTensors(const MoeShape& s) {
    const int64_t q = s.heads * s.headDim, kv = s.kvHeads * s.headDim;
    std::vector<SyntheticTensor> t;
    t.push_back({"lm_head.weight", {s.vocab, s.hidden}});
    t.push_back({"model.embed_tokens.weight", {s.vocab, s.hidden}});
    const std::string p = "model.layers.0.";
    t.push_back({p + "input_layernorm.weight", {s.hidden}, true});
    std::vector<std::string> experts;
    for (int64_t e = 0; e < s.experts; ++e) experts.push_back(std::to_string(e));
    std::sort(experts.begin(), experts.end());  // save_pretrained's order: "10" before "2"
    for (const auto& e : experts) {
        const std::string ex = p + "mlp.experts." + e + ".";
        t.push_back({ex + "down_proj.weight", {s.hidden, s.expertFf}});
        t.push_back({ex + "gate_proj.weight", {s.expertFf, s.hidden}});
        t.push_back({ex + "up_proj.weight", {s.expertFf, s.hidden}});
    }
    t.push_back({p + "mlp.gate.weight", {s.experts, s.hidden}});
    t.push_back({p + "post_attention_layernorm.weight", {s.hidden}, true});
    t.push_back({p + "self_attn.k_norm.weight", {s.headDim}, true});
    t.push_back({p + "self_attn.k_proj.weight", {kv, s.hidden}});
    t.push_back({p + "self_attn.o_proj.weight", {s.hidden, q}});
    t.push_back({p + "self_attn.q_norm.weight", {s.headDim}, true});
    t.push_back({p + "self_attn.q_proj.weight", {q, s.hidden}});
    t.push_back({p + "self_attn.v_proj.weight", {kv, s.hidden}});
    t.push_back({"model.norm.weight", {s.hidden}, true});
    return t;
}

std::string moeConfig(const MoeShape& s) {
    auto i = [](int64_t v) { return std::to_string(v); };
    return "{\"architectures\": [\"Qwen3MoeForCausalLM\"], \"model_type\": \"qwen3_moe\", \"hidden_size\": " +
           i(s.hidden) + ", \"intermediate_size\": 6144, \"num_hidden_layers\": 1, \"num_attention_heads\": " +
           i(s.heads) + ", \"num_key_value_heads\": " + i(s.kvHeads) + ", \"head_dim\": " + i(s.headDim) +
           ", \"vocab_size\": " + i(s.vocab) +
           ", \"max_position_embeddings\": 4096, \"hidden_act\": \"silu\", \"rms_norm_eps\": 1e-06, "
           "\"rope_theta\": 1000000.0, \"rope_scaling\": null, \"attention_bias\": false, "
           "\"use_sliding_window\": false, \"sliding_window\": null, \"max_window_layers\": 48, "
           "\"tie_word_embeddings\": false, \"decoder_sparse_step\": 1, \"moe_intermediate_size\": " +
           i(s.expertFf) + ", \"num_experts\": " + i(s.experts) + ", \"num_experts_per_tok\": " + i(s.topK) +
           ", \"norm_topk_prob\": true, \"mlp_only_layers\": [], \"bos_token_id\": 0, \"eos_token_id\": 0, "
           "\"torch_dtype\": \"bfloat16\"}\n";
}

Status writeMoe(const std::string& dir, const MoeShape& s) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return makeError("cannot create " + dir + ": " + ec.message());
    const auto tensors = moeTensors(s);
    std::vector<SafetensorsTensorDecl> decls;
    for (const auto& t : tensors) decls.push_back({t.name, DType::BF16, t.shape});
    ShardedSafetensorsWriter w;
    ShardedWriteOptions opt;
    opt.maxShardBytes = 4'000'000'000ull;
    if (auto st = w.open(dir, decls, opt); !st) return st;
    std::vector<float> chunk(1 << 20);
    std::vector<uint8_t> bytes;
    for (size_t i = 0; i < tensors.size(); ++i) {
        const int64_t n = tensors[i].numel();
        for (int64_t start = 0; start < n; start += static_cast<int64_t>(chunk.size())) {
            const int64_t m = std::min<int64_t>(static_cast<int64_t>(chunk.size()), n - start);
            syntheticValues(tensors[i], i, start, chunk.data(), m);
            bytes.resize(static_cast<size_t>(m) * 2);
            auto* p = reinterpret_cast<uint16_t*>(bytes.data());
            for (int64_t k = 0; k < m; ++k) p[k] = fp32ToBf16(chunk[static_cast<size_t>(k)]);
            if (auto st = w.writeChunk(bytes); !st) return st;
        }
    }
    if (auto st = w.finish(); !st) return st;
    std::ofstream(dir + "/config.json") << moeConfig(s);
    const std::string src = sourceDir() + "/../data/models/bard-gpt2/";
    for (const char* name : {"tokenizer.json", "vocab.json", "merges.txt", "special_tokens_map.json",
                             "tokenizer_config.json"}) {
        fs::copy_file(src + name, dir + "/" + name, fs::copy_options::overwrite_existing, ec);
        if (ec) return makeError(std::string("cannot copy ") + name + ": " + ec.message());
    }
    return okStatus();
}

// --child WHAT MODEL OUT ROWS LEN THREADS BUDGET_BYTES RESULT_FILE
int runChild(char** argv) {
    const std::string what = argv[2], dir = argv[3], out = argv[4], resultFile = argv[9];
    const int rows = std::atoi(argv[5]), len = std::atoi(argv[6]), threads = std::atoi(argv[7]);
    const uint64_t budget = std::strtoull(argv[8], nullptr, 10);
    const std::string calib = sourceDir() + "/../data/text/shakespeare-train.txt";
    auto m = openModel(dir);
    if (!m) {
        std::fprintf(stderr, "child: %s\n", m.error().message.c_str());
        return 1;
    }
    std::ofstream f(resultFile);
    if (what == "exl2") {
        exl2::ExportParams p;
        p.calibPath = calib;
        p.measureCalib = {rows, len, 1};
        p.quantCalib = {rows, len, 1};
        p.targetBpw = 4.0;
        p.seed = 1;
        p.annealIterations = 20;
        p.threads = threads;
        p.outputDir = out;
        auto r = exl2::exportExl2(**m, p);
        if (!r) {
            std::fprintf(stderr, "child: exl2: %s\n", r.error().message.c_str());
            return 1;
        }
        f << "seconds " << r->seconds << "\nbpw " << r->achievedBpw << "\n";
    } else {
        gptq::ExportParams p;
        p.quant.bits = 4;
        p.quant.groupSize = 128;
        p.quant.threads = threads;
        p.calibPath = calib;
        p.calib = {rows, len, 1};
        p.maxHessianMemory = budget;
        p.outputDir = out;
        auto r = gptq::exportGptq(**m, p);
        if (!r) {
            std::fprintf(stderr, "child: gptq: %s\n", r.error().message.c_str());
            return 1;
        }
        f << "seconds " << r->seconds << "\npasses " << r->calibrationPasses << "\nchunks " << r->hessianChunks
          << "\npeak_hessian " << r->peakHessianBytes << "\n";
    }
    return f ? 0 : 1;
}

struct Peaks {
    long anon = 0, file = 0;
};

void sample(pid_t pid, Peaks& pk) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("RssAnon:", 0) == 0) pk.anon = std::max(pk.anon, std::atol(line.c_str() + 8));
        if (line.rfind("RssFile:", 0) == 0) pk.file = std::max(pk.file, std::atol(line.c_str() + 8));
    }
}

std::string fileText(const std::string& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    if (argc >= 10 && std::strcmp(argv[1], "--child") == 0) return runChild(argv);
    MoeShape s;
    int rows = 4, len = 128, threads = 2;
    uint64_t budgetMib = 64;
    std::string what = "exl2,gptq,gptq-budget", tmpRoot = fs::temp_directory_path().string();
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
        if (a == "--experts") s.experts = std::atoll(next().c_str());
        else if (a == "--hidden") s.hidden = std::atoll(next().c_str());
        else if (a == "--expert-ffn") s.expertFf = std::atoll(next().c_str());
        else if (a == "--top-k") s.topK = std::atoll(next().c_str());
        else if (a == "--rows") rows = std::atoi(next().c_str());
        else if (a == "--len") len = std::atoi(next().c_str());
        else if (a == "--threads") threads = std::atoi(next().c_str());
        else if (a == "--budget-mib") budgetMib = std::strtoull(next().c_str(), nullptr, 10);
        else if (a == "--what") what = next();
        else if (a == "--tmp") tmpRoot = next();
        else if (a == "--keep") keep = true;
        else {
            std::fprintf(stderr, "unknown option %s (see the comment at the top of bench_moe_memory.cpp)\n", a.c_str());
            return 2;
        }
    }
    s.topK = std::min(s.topK, s.experts);
    std::string tmpl = tmpRoot + "/qz-bench-moe-XXXXXX";
    if (!mkdtemp(tmpl.data())) {
        std::perror("mkdtemp");
        return 1;
    }
    const std::string work = tmpl, modelDir = work + "/model";
    const double layerF32 = static_cast<double>(s.layerNumel()) * 4;
    const double expertHessians = static_cast<double>(s.experts) *
                                  static_cast<double>(s.hidden * s.hidden + s.expertFf * s.expertFf) * 4;
    std::printf("one Qwen3-MoE layer: hidden %lld, %lld experts of %lld, top %lld; %.1f MiB in F32, experts' "
                "Hessians (gate/up + down) %.1f MiB; calibration %d x %d tokens, threads %d\n",
                static_cast<long long>(s.hidden), static_cast<long long>(s.experts),
                static_cast<long long>(s.expertFf), static_cast<long long>(s.topK), mib(layerF32),
                mib(expertHessians), rows, len, threads);
    if (auto st = writeMoe(modelDir, s); !st) {
        std::fprintf(stderr, "writing the model: %s\n", st.error().message.c_str());
        fs::remove_all(work);
        return 1;
    }
    std::printf("%-12s %9s %11s %11s %12s %14s  %s\n", "export", "time s", "anonPk MiB", "filePk MiB",
                "anon/layerF32", "anon/unbounded", "details");
    double unboundedGptq = 0;
    int failures = 0;
    std::stringstream ws(what);
    for (std::string w; std::getline(ws, w, ',');) {
        const std::string out = work + "/out-" + w, result = work + "/result-" + w;
        const uint64_t budget = w == "gptq-budget" ? budgetMib << 20 : 0;
        const std::string kind = w == "exl2" ? "exl2" : "gptq";
        const std::string sRows = std::to_string(rows), sLen = std::to_string(len), sThreads = std::to_string(threads),
                          sBudget = std::to_string(budget);
        const auto t0 = std::chrono::steady_clock::now();
        const pid_t pid = fork();
        if (pid == 0) {
            const char* args[] = {argv[0],        "--child",        kind.c_str(),    modelDir.c_str(),
                                  out.c_str(),    sRows.c_str(),    sLen.c_str(),    sThreads.c_str(),
                                  sBudget.c_str(), result.c_str(), nullptr};
            execv("/proc/self/exe", const_cast<char* const*>(args));
            _exit(127);
        }
        Peaks pk;
        int status = 0;
        while (waitpid(pid, &status, WNOHANG) == 0) {
            sample(pid, pk);
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        const double secs = secondsSince(t0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            std::printf("%-12s failed (status %d)\n", w.c_str(), status);
            ++failures;
            continue;
        }
        const double anon = pk.anon * 1024.0;
        if (w == "gptq") unboundedGptq = anon;
        std::string details = fileText(result);
        for (char& c : details)
            if (c == '\n') c = ' ';
        char rel[32] = "-";
        if (w == "gptq-budget" && unboundedGptq > 0) std::snprintf(rel, sizeof rel, "%.3f", anon / unboundedGptq);
        std::printf("%-12s %9.1f %11.1f %11.1f %12.3f %14s  %s\n", w.c_str(), secs, mib(anon), pk.file / 1024.0,
                    anon / layerF32, rel, details.c_str());
        fs::remove_all(out);
    }
    if (keep)
        std::printf("kept %s\n", work.c_str());
    else
        fs::remove_all(work);
    return failures ? 1 : 0;
}
