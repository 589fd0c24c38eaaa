// libFuzzer harness: a Hugging Face folder's JSON files as QuantZoo reads them: config.json (the model's
// metadata, core/io/hf_folder.h, and the engine's hyper-parameters, core/infer/hparams.h),
// tokenizer_config.json and tokenizer.json (the vocabulary, core/tokenizer/hf_vocab.h, then a tokenizer
// built from it).
//
// Input: one selector byte, then config.json NUL tokenizer_config.json NUL tokenizer.json (an empty part
// leaves that file out). Selector bit 0: the tensors are those of stories260K (llama) or bard-gpt2;
// bit 1: the folder also holds stories260K's tokenizer.model (SentencePiece instead of BPE).
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "fuzz_util.h"
#include "fuzz_vocab_use.h"
#include "infer/hparams.h"
#include "io/hf_folder.h"
#include "tokenizer/hf_vocab.h"

namespace fs = std::filesystem;

namespace {

struct Setup {
    std::shared_ptr<qz::Model> llama, gpt2;
    std::string dir;
    std::string spm; // tokenizer.model bytes
};

std::shared_ptr<qz::Model> openOrDie(const std::string& path) {
    auto m = qz::openHfFolder(path);
    if (!m) {
        std::fprintf(stderr, "fuzz_hf_json: %s\n", m.error().message.c_str());
        std::abort();
    }
    return *m;
}

const Setup& setup() {
    static const Setup s = [] {
        Setup r;
        r.llama = openOrDie(qzfuzz::testData() + "/models/stories260K/hf");
        r.gpt2 = openOrDie(qzfuzz::testData() + "/models/bard-gpt2");
        std::ifstream in(qzfuzz::testData() + "/models/stories260K/hf/tokenizer.model", std::ios::binary);
        r.spm.assign(std::istreambuf_iterator<char>(in), {});
        const char* base = fs::exists("/dev/shm") ? "/dev/shm" : "/tmp";
        std::string tmpl = std::string(base) + "/qz-fuzz-hf-XXXXXX";
        if (!mkdtemp(tmpl.data())) std::abort();
        r.dir = tmpl;
        // The folder is removed at exit; the path is kept apart from Setup, which is destroyed before
        // this handler runs (it was registered while Setup was being constructed).
        static const std::string* dirAtExit = new std::string(r.dir);
        std::atexit([] {
            std::error_code ec;
            fs::remove_all(*dirAtExit, ec);
        });
        return r;
    }();
    return s;
}

void put(const std::string& path, const std::string& text, bool present) {
    if (!present) {
        std::error_code ec;
        fs::remove(path, ec);
        return;
    }
    std::ofstream(path, std::ios::binary | std::ios::trunc)
        .write(text.data(), static_cast<std::streamsize>(text.size()));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const Setup& s = setup();
    if (size < 1) return 0;
    const uint8_t sel = data[0];
    const auto parts = qzfuzz::splitParts(data + 1, size - 1, 3);
    put(s.dir + "/config.json", parts[0], !parts[0].empty());
    put(s.dir + "/tokenizer_config.json", parts[1], !parts[1].empty());
    put(s.dir + "/tokenizer.json", parts[2], !parts[2].empty());
    put(s.dir + "/tokenizer.model", s.spm, (sel & 2) != 0);

    qz::Model m = (sel & 1) ? *s.gpt2 : *s.llama;
    if (!parts[0].empty() && qz::applyHfConfig(m, s.dir + "/config.json")) (void)qz::readInferHParams(m);
    if (auto v = qz::loadHfVocab(s.dir)) qzfuzz::exerciseVocab(*v);
    return 0;
}
