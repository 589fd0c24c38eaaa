// Helpers shared by the benchmarks in tests/bench: a synthetic Llama written as a (sharded) Hugging Face
// safetensors folder with seeded pseudo-random weights, peak-memory readings from /proc, timing.
//
// The synthetic model has the tensors and config.json keys of a real LlamaForCausalLM (names as
// transformers writes them, untied lm_head, GQA) and the tokenizer of tests/data/models/bard-llama
// (a 512-token SentencePiece model; config.json's vocab_size may be larger: the GGUF converter pads the
// vocabulary with [PAD] tokens, as convert_hf_to_gguf.py does). Values: linear weights uniform in
// ±sqrt(3)·0.02 (std 0.02), norm weights 1 + small noise, from a 64-bit xorshift seeded per tensor, so
// the same shape gives the same bytes on every run. Tensors are produced in chunks of 1 M values, so
// writing a 1 B-parameter model takes a few MB of memory.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/fp16.h"
#include "common/result.h"
#include "io/safetensors_writer.h"

namespace qzbench {

struct LlamaShape {
    int64_t hidden = 2048;
    int64_t layers = 22;
    int64_t ffn = 5632;
    int64_t vocab = 32000;
    int64_t heads = 32;
    int64_t kvHeads = 4;
    int64_t headDim() const { return hidden / heads; }
};

struct SyntheticTensor {
    std::string name;
    std::vector<int64_t> shape;
    bool norm = false;
    int64_t numel() const {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        return n;
    }
};

// In the order transformers' save_pretrained writes them (sorted names).
inline std::vector<SyntheticTensor> llamaTensors(const LlamaShape& s) {
    std::vector<SyntheticTensor> t;
    const int64_t kv = s.kvHeads * s.headDim();
    t.push_back({"lm_head.weight", {s.vocab, s.hidden}});
    t.push_back({"model.embed_tokens.weight", {s.vocab, s.hidden}});
    std::vector<std::string> names;
    for (int64_t l = 0; l < s.layers; ++l) names.push_back("model.layers." + std::to_string(l) + ".");
    std::sort(names.begin(), names.end());  // "model.layers.10." before "model.layers.2."
    for (const std::string& p : names) {
        t.push_back({p + "input_layernorm.weight", {s.hidden}, true});
        t.push_back({p + "mlp.down_proj.weight", {s.hidden, s.ffn}});
        t.push_back({p + "mlp.gate_proj.weight", {s.ffn, s.hidden}});
        t.push_back({p + "mlp.up_proj.weight", {s.ffn, s.hidden}});
        t.push_back({p + "post_attention_layernorm.weight", {s.hidden}, true});
        t.push_back({p + "self_attn.k_proj.weight", {kv, s.hidden}});
        t.push_back({p + "self_attn.o_proj.weight", {s.hidden, s.hidden}});
        t.push_back({p + "self_attn.q_proj.weight", {s.hidden, s.hidden}});
        t.push_back({p + "self_attn.v_proj.weight", {kv, s.hidden}});
    }
    t.push_back({"model.norm.weight", {s.hidden}, true});
    return t;
}

inline int64_t parameterCount(const LlamaShape& s) {
    int64_t n = 0;
    for (const auto& t : llamaTensors(s)) n += t.numel();
    return n;
}

// Fills out[0..n) with the values at positions [start, start+n) of tensor number `index`.
// The generator is restarted per chunk from (index, start) so chunks can be produced independently.
inline void syntheticValues(const SyntheticTensor& t, uint64_t index, int64_t start, float* out, int64_t n) {
    uint64_t x = 0x9E3779B97F4A7C15ull * (index + 1) ^ (static_cast<uint64_t>(start) * 0xD1B54A32D192ED03ull);
    if (x == 0) x = 1;
    const float amp = t.norm ? 0.05f : 0.0346410f;  // linear: std 0.02 (uniform ±0.02·√3)
    for (int64_t i = 0; i < n; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        const float u = static_cast<float>(x >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f;  // [-1, 1)
        out[i] = (t.norm ? 1.0f : 0.0f) + amp * u;
    }
}

inline std::string configJson(const LlamaShape& s, const char* dtype) {
    char buf[1024];
    std::snprintf(buf, sizeof buf,
                  "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
                  "  \"hidden_size\": %lld,\n  \"intermediate_size\": %lld,\n  \"num_hidden_layers\": %lld,\n"
                  "  \"num_attention_heads\": %lld,\n  \"num_key_value_heads\": %lld,\n  \"head_dim\": %lld,\n"
                  "  \"hidden_act\": \"silu\",\n  \"max_position_embeddings\": 2048,\n"
                  "  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": 10000.0,\n  \"rope_scaling\": null,\n"
                  "  \"attention_bias\": false,\n  \"mlp_bias\": false,\n  \"tie_word_embeddings\": false,\n"
                  "  \"vocab_size\": %lld,\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n"
                  "  \"torch_dtype\": \"%s\"\n}\n",
                  static_cast<long long>(s.hidden), static_cast<long long>(s.ffn),
                  static_cast<long long>(s.layers), static_cast<long long>(s.heads),
                  static_cast<long long>(s.kvHeads), static_cast<long long>(s.headDim()),
                  static_cast<long long>(s.vocab), dtype);
    return buf;
}

// Writes the synthetic model into `dir` (created) as safetensors of `dtype` (F32, F16 or BF16), split
// into shards of at most maxShardBytes (always with model.safetensors.index.json), plus config.json and
// bard-llama's tokenizer files taken from `tokenizerDir`.
inline qz::Status writeSyntheticLlama(const std::string& dir, const LlamaShape& s, qz::DType dtype,
                                      uint64_t maxShardBytes, const std::string& tokenizerDir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return qz::makeError("cannot create " + dir + ": " + ec.message());
    const auto tensors = llamaTensors(s);
    std::vector<qz::SafetensorsTensorDecl> decls;
    for (const auto& t : tensors) decls.push_back({t.name, dtype, t.shape});
    qz::ShardedSafetensorsWriter w;
    qz::ShardedWriteOptions opt;
    opt.maxShardBytes = maxShardBytes;
    opt.alwaysIndex = true;
    if (auto st = w.open(dir, decls, opt); !st) return st;
    std::vector<float> chunk(1 << 20);
    for (size_t i = 0; i < tensors.size(); ++i) {
        const int64_t n = tensors[i].numel();
        for (int64_t start = 0; start < n; start += static_cast<int64_t>(chunk.size())) {
            const int64_t m = std::min<int64_t>(static_cast<int64_t>(chunk.size()), n - start);
            syntheticValues(tensors[i], i, start, chunk.data(), m);
            // writeTensorFromF32 takes a whole tensor; convert chunk-wise through writeChunk instead.
            std::vector<uint8_t> bytes;
            if (dtype == qz::DType::F32) {
                bytes.assign(reinterpret_cast<const uint8_t*>(chunk.data()),
                             reinterpret_cast<const uint8_t*>(chunk.data() + m));
            } else {
                bytes.resize(static_cast<size_t>(m) * 2);
                auto* p = reinterpret_cast<uint16_t*>(bytes.data());
                for (int64_t k = 0; k < m; ++k)
                    p[k] = dtype == qz::DType::BF16 ? qz::fp32ToBf16(chunk[k]) : qz::fp32ToFp16(chunk[k]);
            }
            if (auto st = w.writeChunk(bytes); !st) return st;
        }
    }
    if (auto st = w.finish(); !st) return st;
    {
        std::ofstream f(dir + "/config.json");
        f << configJson(s, dtype == qz::DType::F32 ? "float32" : dtype == qz::DType::F16 ? "float16" : "bfloat16");
        if (!f) return qz::makeError("cannot write config.json in " + dir);
    }
    for (const char* name : {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"}) {
        fs::copy_file(tokenizerDir + "/" + name, dir + "/" + name, fs::copy_options::overwrite_existing, ec);
        if (ec) return qz::makeError(std::string("cannot copy ") + name + ": " + ec.message());
    }
    return qz::okStatus();
}

// Peak / current resident memory of this process from /proc/self/status, in KiB (0 if unknown).
inline long procStatusKb(const char* key) {
    std::ifstream f("/proc/self/status");
    std::string line;
    const std::string k = std::string(key) + ":";
    while (std::getline(f, line))
        if (line.compare(0, k.size(), k) == 0) return std::atol(line.c_str() + k.size());
    return 0;
}

inline double secondsSince(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

inline std::string sourceDir() {
#ifdef QZ_BENCH_SOURCE_DIR
    return QZ_BENCH_SOURCE_DIR;
#endif
    std::string here = __FILE__;
    return here.substr(0, here.find_last_of('/'));
}

inline double mib(double bytes) { return bytes / (1024.0 * 1024.0); }

}  // namespace qzbench
