// Writes the seed corpora of the fuzz harnesses: small valid files made with QuantZoo's own writers
// (GGUF, GPTQ layer records, KLD bases, measurement.json), hand-made safetensors / legacy imatrix files,
// and small real files from tests/data (safetensors headers, tokenizer.model, the bard-llama imatrix,
// stories260K.gguf, the models' JSON files).
// Usage: fuzz_seeds <test data folder> <output folder>; creates <output>/<harness>/.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "exl2/exl2_measure.h"
#include "exl2/exl2_qparams.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_writer.h"
#include "gptq/gptq_layers.h"
#include "infer/perplexity.h"
#include "io/hf_folder.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/hf_vocab.h"

namespace fs = std::filesystem;

namespace {

std::string g_data, g_out;
int g_failures = 0;

void fail(const std::string& what) {
    std::fprintf(stderr, "fuzz_seeds: %s\n", what.c_str());
    ++g_failures;
}

std::string readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("cannot read " + path);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void writeSeed(const std::string& harness, const std::string& name, const std::string& bytes) {
    fs::create_directories(g_out + "/" + harness);
    std::ofstream(g_out + "/" + harness + "/" + name, std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void copySeed(const std::string& harness, const std::string& name, const std::string& src) {
    writeSeed(harness, name, readFile(g_data + "/" + src));
}

template <class T> void append(std::string& s, T v) {
    s.append(reinterpret_cast<const char*>(&v), sizeof v);
}

// Deterministic non-trivial bytes for tensor data.
std::vector<uint8_t> noise(size_t n, uint32_t seed) {
    std::vector<uint8_t> v(n);
    for (auto& b : v) {
        seed = seed * 1664525u + 1013904223u;
        b = static_cast<uint8_t>(seed >> 24);
    }
    return v;
}

void safetensorsSeeds() {
    const std::string header =
        R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
        R"("b":{"dtype":"BF16","shape":[2,2],"data_offsets":[8,16]},"c":{"dtype":"I8","shape":[],"data_offsets":[16,17]}})";
    std::string f;
    append<uint64_t>(f, header.size());
    f += header;
    f += std::string(17, '\x3f');
    writeSeed("safetensors", "tiny.safetensors", f);
    // Headers of the real test models (their data cut off: the parser then reports the missing bytes).
    for (const char* m : {"bard-llama", "bard-gpt2", "stories260K/hf"}) {
        const std::string bytes = readFile(g_data + "/models/" + m + "/model.safetensors");
        uint64_t n = 0;
        if (bytes.size() >= 8) std::memcpy(&n, bytes.data(), 8);
        if (n > bytes.size() - 8) {
            fail(std::string("bad safetensors header in ") + m);
            continue;
        }
        std::string name = m;
        for (auto& c : name)
            if (c == '/') c = '-';
        writeSeed("safetensors", name + "-header.safetensors", bytes.substr(0, 8 + n));
    }
}

void ggufSeeds() {
    copySeed("gguf", "stories260K.gguf", "models/stories260K/stories260K.gguf");
    copySeed("gguf", "imatrix.gguf", "golden/bard-llama/imatrix/bard-llama-imatrix.gguf");
    // stories260K's key/values with a few tiny tensors of different types.
    auto src = qz::GgufFile::open(g_data + "/models/stories260K/stories260K.gguf");
    if (!src) return fail(src.error().message);
    const std::string tmp = g_out + "/kv-llama.gguf";
    {
        qz::GgufWriter w(tmp);
        for (const auto& kv : (*src)->kvs)
            if (!w.setKv(kv.key, kv.value)) return fail("setKv " + kv.key);
        const std::pair<const char*, qz::DType> ts[] = {{"token_embd.weight", qz::DType::F32},
                                                        {"blk.0.attn_q.weight", qz::DType::F16},
                                                        {"blk.0.attn_k.weight", qz::DType::Q8_0},
                                                        {"blk.0.ffn_up.weight", qz::DType::Q4_K},
                                                        {"blk.0.ffn_down.weight", qz::DType::IQ4_NL}};
        for (const auto& [name, t] : ts) {
            const int64_t ne0 = qz::traits(t).blockSize == 1 ? 8 : qz::traits(t).blockSize;
            if (!w.addTensor(name, {ne0, 2}, t)) return fail(std::string("addTensor ") + name);
        }
        if (!w.begin()) return fail("begin");
        uint32_t seed = 1;
        for (const auto& t : w.tensors())
            if (!w.writeTensorData(noise(t.nbytes, seed++))) return fail("writeTensorData");
        if (!w.finish()) return fail("finish");
    }
    writeSeed("gguf", "kv-llama.gguf", readFile(tmp));
    fs::remove(tmp);
    // A byte-level BPE vocabulary (bard-gpt2's, as the GGUF exporter writes it).
    auto vocab = qz::loadHfVocab(g_data + "/models/bard-gpt2");
    if (!vocab) return fail(vocab.error().message);
    const std::string tmp2 = g_out + "/vocab-gpt2.gguf";
    {
        qz::GgufWriter w(tmp2);
        if (!w.setKv("general.architecture", qz::GgufValue::string("gpt2"))) return fail("setKv");
        for (const auto& kv : qz::tokenizerGgufKvs(*vocab))
            if (!w.setKv(kv.key, kv.value)) return fail("setKv " + kv.key);
        if (!w.begin() || !w.finish()) return fail("write vocab-gpt2.gguf");
    }
    writeSeed("gguf", "vocab-gpt2.gguf", readFile(tmp2));
    fs::remove(tmp2);
}

void spmSeeds() {
    copySeed("spm", "stories260K.model", "models/stories260K/hf/tokenizer.model");
    copySeed("spm", "bard-llama.model", "models/bard-llama/tokenizer.model");
}

void imatrixSeeds() {
    copySeed("imatrix", "bard-llama.gguf", "golden/bard-llama/imatrix/bard-llama-imatrix.gguf");
    // legacy .dat: n_entries, (name_len, name, ncall, nval, values)*, chunk_count, dataset_len, dataset.
    std::string d;
    append<int32_t>(d, 2);
    for (const char* name : {"blk.0.attn_q.weight", "blk.0.ffn_down.weight"}) {
        append<int32_t>(d, static_cast<int32_t>(std::strlen(name)));
        d += name;
        append<int32_t>(d, 3);
        append<int32_t>(d, 4);
        for (float v : {1.0f, 2.5f, 0.0f, 7.0f})
            append<float>(d, v);
    }
    append<int32_t>(d, 10);
    append<int32_t>(d, 9);
    d += "wiki.test";
    writeSeed("imatrix", "legacy.dat", d);
}

void exl2Seeds() {
    auto model = qz::openHfFolder(g_data + "/models/bard-llama");
    if (!model) return fail(model.error().message);
    auto plan = qz::exl2::planModel(**model);
    if (!plan) return fail(plan.error().message);
    std::vector<qz::exl2::ModuleMeasurement> ms;
    for (const auto& mod : plan->modules) {
        const auto& table = mod.attn ? qz::exl2::attnOptions() : qz::exl2::mlpOptions();
        qz::exl2::ModuleMeasurement mm;
        mm.key = mod.key;
        for (size_t i : {size_t{0}, table.size() - 1}) {
            qz::exl2::ModuleMeasurement::Option o;
            o.accuracy = i == 0 ? 0.93 : 0.999;
            o.qp = table[i];
            for (size_t s = 0; s < o.qp.size(); ++s) {
                const auto& lin = mod.linears[s];
                o.totalBits += o.qp[s].totalBits(lin.in, lin.out, !lin.biasName.empty());
            }
            mm.options.push_back(std::move(o));
        }
        ms.push_back(std::move(mm));
    }
    const std::string json = qz::exl2::measurementJson(ms, static_cast<int>(ms.size()) - 1);
    if (!qz::exl2::parseMeasurementJson(json, *plan, "seed"))
        fail("the measurement.json seed does not parse");
    writeSeed("exl2_measurement", "bard-llama.json", json);
}

void gptqSeeds() {
    qz::gptq::LayerRecord rec;
    rec.name = "model.layers.0.self_attn.q_proj.weight";
    auto& r = rec.result;
    r.rows = 4;
    r.cols = 8;
    r.bits = 4;
    r.groupSize = 4;
    r.nGroups = 2;
    r.codes = noise(32, 7);
    for (auto& c : r.codes)
        c &= 15;
    r.scales = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f};
    r.zeros = {8, 8, 7, 9, 8, 8, 8, 6};
    r.gIdx = {0, 0, 0, 0, 1, 1, 1, 1};
    r.loss = 0.25;
    r.dampUsed = 0.01;
    rec.relErr = 0.02;
    rec.relErrRtn = 0.03;
    rec.seconds = 1.5;
    const std::string path = g_out + "/layer.tmp";
    if (auto st = qz::gptq::saveLayerRecord(path, rec); !st) return fail(st.error().message);
    writeSeed("gptq_record", "layer.bin", readFile(path));
    fs::remove(path);
}

void kldSeeds() {
    qz::KldBase b;
    b.nCtx = 8;
    b.nVocab = 5;
    b.nChunks = 2;
    for (int i = 0; i < b.nCtx * b.nChunks; ++i)
        b.tokens.push_back(i % b.nVocab);
    const size_t nLp = static_cast<size_t>(b.nChunks) * (b.nCtx - 1 - b.nCtx / 2) * b.rowStride();
    const auto bytes = noise(nLp * 2, 3);
    b.logProbs.resize(nLp);
    std::memcpy(b.logProbs.data(), bytes.data(), bytes.size());
    const std::string path = g_out + "/kld.tmp";
    if (auto st = qz::saveKldBase(b, path); !st) return fail(st.error().message);
    writeSeed("kld_base", "base.kld", readFile(path));
    fs::remove(path);
}

void hfJsonSeeds() {
    // selector byte (bit 0: gpt2 tensors, bit 1: tokenizer.model present), then the three files.
    auto join = [](char sel, const std::string& dir) {
        std::string s(1, sel);
        for (const char* f : {"config.json", "tokenizer_config.json", "tokenizer.json"}) {
            if (f[0] != 'c') s.push_back('\0');
            if (fs::exists(g_data + "/" + dir + "/" + f)) s += readFile(g_data + "/" + dir + "/" + f);
        }
        return s;
    };
    writeSeed("hf_json", "bard-gpt2", join(1, "models/bard-gpt2"));
    writeSeed("hf_json", "bard-llama", join(2, "models/bard-llama"));
    writeSeed("hf_json", "stories260K", join(2, "models/stories260K/hf"));
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: fuzz_seeds <test data folder> <output folder>\n");
        return 2;
    }
    g_data = argv[1];
    g_out = argv[2];
    fs::create_directories(g_out);
    safetensorsSeeds();
    ggufSeeds();
    spmSeeds();
    imatrixSeeds();
    exl2Seeds();
    gptqSeeds();
    kldSeeds();
    hfJsonSeeds();
    return g_failures == 0 ? 0 : 1;
}
