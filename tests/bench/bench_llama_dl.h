// Run-time access to the real llama.cpp library shipped by node-llama-cpp (tests/llama, see its README:
// llama.cpp release v0.5.0, libllama.v0.5.0.so + libggml*.so), for the benchmarks that compare
// QuantZoo with llama.cpp in one process. The library is dlopen'ed (never linked, never built, never
// committed); run tests/llama/setup.sh once to install it.
//
// The structs below are declared from that version's include/llama.h (field for field, same types and
// order, so the same layout on x86-64 SysV): only what the benchmarks use. Enums are int-sized in C.
// The default-params functions return the structs by value; their sizes are checked with static_asserts
// and a few default values are checked at run time (a layout mismatch would show there first).
#pragma once

#include <dlfcn.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "bench_synthetic_llama.h"

namespace qzbench {

// llama_model_quantize_params
struct LlamaQuantizeParams {
    int32_t nthread;               // <= 0: hardware_concurrency
    int32_t ftype;                 // enum llama_ftype
    int32_t output_tensor_type;    // enum ggml_type
    int32_t token_embedding_type;  // enum ggml_type
    bool allow_requantize;
    bool quantize_output_tensor;
    bool only_copy;
    bool pure;
    bool keep_split;
    bool dry_run;
    const void* imatrix;           // const struct llama_model_imatrix_data *
    const void* kv_overrides;      // const struct llama_model_kv_override *
    const void* tt_overrides;      // const struct llama_model_tensor_override *
    const int32_t* prune_layers;
    size_t max_buf_size;
};
static_assert(sizeof(LlamaQuantizeParams) == 64);

// llama_model_params
struct LlamaModelParams {
    void* devices;                 // ggml_backend_dev_t *
    const void* tensor_buft_overrides;
    int32_t n_gpu_layers;
    int32_t split_mode;            // enum llama_split_mode
    int32_t load_mode;             // enum llama_load_mode
    int32_t lazy_mode;             // enum llama_lazy_mode
    int32_t main_gpu;
    const float* tensor_split;
    bool (*progress_callback)(float, void*);
    void* progress_callback_user_data;
    const void* kv_overrides;
    bool vocab_only;
    bool check_tensors;
    bool use_extra_bufts;
    bool no_host;
    bool no_alloc;
    bool load_mtp;
};
static_assert(sizeof(LlamaModelParams) == 80);

// llama_context_params
struct LlamaContextParams {
    uint32_t n_ctx;
    uint32_t n_batch;
    uint32_t n_ubatch;
    uint32_t n_seq_max;
    uint32_t n_rs_seq;
    uint32_t n_outputs_max;
    uint32_t n_outputs_max_per_seq;
    int32_t n_threads;
    int32_t n_threads_batch;
    int32_t ctx_type;              // enum llama_context_type
    int32_t rope_scaling_type;
    int32_t pooling_type;
    int32_t attention_type;
    int32_t flash_attn_type;       // -1 auto, 0 off, 1 on
    float rope_freq_base;
    float rope_freq_scale;
    float yarn_ext_factor;
    float yarn_attn_factor;
    float yarn_beta_fast;
    float yarn_beta_slow;
    uint32_t yarn_orig_ctx;
    float defrag_thold;
    void* cb_eval;                 // ggml_backend_sched_eval_callback
    void* cb_eval_user_data;
    int32_t type_k;                // enum ggml_type
    int32_t type_v;
    void* abort_callback;          // ggml_abort_callback
    void* abort_callback_data;
    bool embeddings;
    bool offload_kqv;
    bool no_perf;
    bool op_offload;
    bool swa_full;
    bool kv_unified;
    void* samplers;                // struct llama_sampler_seq_config *
    size_t n_samplers;
    void* ctx_other;               // struct llama_context *
};
static_assert(sizeof(LlamaContextParams) == 160);

// llama_batch
struct LlamaBatch {
    int32_t n_tokens;
    int32_t* token;
    float* embd;
    int32_t* pos;
    int32_t* n_seq_id;
    int32_t** seq_id;
    int8_t* logits;
};
static_assert(sizeof(LlamaBatch) == 56);

// The library's entry points used by the benchmarks.
struct LlamaApi {
    void* handle = nullptr;
    void* ggmlHandle = nullptr;
    std::string dir;
    void (*backend_init)() = nullptr;
    void (*log_set)(void (*)(int, const char*, void*), void*) = nullptr;
    LlamaQuantizeParams (*model_quantize_default_params)() = nullptr;
    uint32_t (*model_quantize)(const char*, const char*, const LlamaQuantizeParams*) = nullptr;
    LlamaModelParams (*model_default_params)() = nullptr;
    LlamaContextParams (*context_default_params)() = nullptr;
    void* (*model_load_from_file)(const char*, LlamaModelParams) = nullptr;
    void (*model_free)(void*) = nullptr;
    void* (*init_from_model)(void*, LlamaContextParams) = nullptr;
    void (*free)(void*) = nullptr;
    LlamaBatch (*batch_init)(int32_t, int32_t, int32_t) = nullptr;
    void (*batch_free)(LlamaBatch) = nullptr;
    int32_t (*decode)(void*, LlamaBatch) = nullptr;
    void (*synchronize)(void*) = nullptr;
    void* (*get_memory)(const void*) = nullptr;
    void (*memory_clear)(void*, bool) = nullptr;
    float* (*get_logits)(void*) = nullptr;
    const char* (*print_system_info)() = nullptr;
    void (*backend_load_all_from_path)(const char*) = nullptr;
};

inline std::string defaultLlamaLib() {
    if (const char* e = std::getenv("QZ_LLAMA_LIB"); e && *e) return e;
    return sourceDir() + "/../llama/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libllama.v0.5.0.so";
}

inline void quietLog(int level, const char* text, void*) {
    if (level >= 4) std::fputs(text, stderr);  // GGML_LOG_LEVEL_ERROR = 4
}

// Loads libllama (and libggml from the same folder for the backend loader). On failure returns false
// with a message in `error`.
inline bool loadLlama(const std::string& libPath, LlamaApi& api, std::string& error) {
    api.dir = libPath.substr(0, libPath.find_last_of('/'));
    api.handle = dlopen(libPath.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!api.handle) {
        error = std::string("cannot load llama.cpp (") + dlerror() +
                "); run tests/llama/setup.sh first, or set QZ_LLAMA_LIB to libllama.v0.5.0.so";
        return false;
    }
    api.ggmlHandle = dlopen((api.dir + "/libggml.v0.5.0.so").c_str(), RTLD_NOW | RTLD_LOCAL);
    bool ok = true;
    auto sym = [&](void* h, const char* name, auto& fn) {
        void* p = h ? dlsym(h, name) : nullptr;
        if (!p) {
            error += std::string(error.empty() ? "" : ", ") + "missing symbol " + name;
            ok = false;
        }
        fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(p);
    };
    sym(api.handle, "llama_backend_init", api.backend_init);
    sym(api.handle, "llama_log_set", api.log_set);
    sym(api.handle, "llama_model_quantize_default_params", api.model_quantize_default_params);
    sym(api.handle, "llama_model_quantize", api.model_quantize);
    sym(api.handle, "llama_model_default_params", api.model_default_params);
    sym(api.handle, "llama_context_default_params", api.context_default_params);
    sym(api.handle, "llama_model_load_from_file", api.model_load_from_file);
    sym(api.handle, "llama_model_free", api.model_free);
    sym(api.handle, "llama_init_from_model", api.init_from_model);
    sym(api.handle, "llama_free", api.free);
    sym(api.handle, "llama_batch_init", api.batch_init);
    sym(api.handle, "llama_batch_free", api.batch_free);
    sym(api.handle, "llama_decode", api.decode);
    sym(api.handle, "llama_synchronize", api.synchronize);
    sym(api.handle, "llama_get_memory", api.get_memory);
    sym(api.handle, "llama_memory_clear", api.memory_clear);
    sym(api.handle, "llama_get_logits", api.get_logits);
    sym(api.handle, "llama_print_system_info", api.print_system_info);
    sym(api.ggmlHandle, "ggml_backend_load_all_from_path", api.backend_load_all_from_path);
    if (!ok) return false;
    api.log_set(quietLog, nullptr);
    api.backend_load_all_from_path(api.dir.c_str());  // picks the best libggml-cpu-*.so for this CPU
    api.backend_init();
    return true;
}

}  // namespace qzbench
