#include "tokenizer/gguf_vocab.h"

#include <cstring>

namespace qz {

Result<Vocab> vocabFromGguf(const GgufFile& file) {
    using T = TokenizerKv::Type;
    std::vector<TokenizerKv> kvs;
    for (const GgufKV& g : file.kvs) {
        if (g.key.rfind("tokenizer.", 0) != 0) continue;
        TokenizerKv kv;
        kv.key = g.key;
        const GgufValue& v = g.value;
        switch (v.type) {
            case GgufType::U32: kv.type = T::U32; kv.u = uint32_t(v.bits); break;
            case GgufType::I32: kv.type = T::I32; kv.u = v.bits; break;
            case GgufType::Bool: kv.type = T::Bool; kv.b = v.bits != 0; break;
            case GgufType::String: kv.type = T::String; kv.str = v.str; break;
            case GgufType::Array:
                if (v.elemType == GgufType::String) {
                    kv.type = T::StringArray;
                    kv.strings = v.strings;
                } else if (v.elemType == GgufType::F32 && v.data.size() == v.count * 4) {
                    kv.type = T::F32Array;
                    kv.f32s.resize(size_t(v.count));
                    if (v.count) std::memcpy(kv.f32s.data(), v.data.data(), v.data.size());
                } else if (v.elemType == GgufType::I32 && v.data.size() == v.count * 4) {
                    kv.type = T::I32Array;
                    kv.i32s.resize(size_t(v.count));
                    if (v.count) std::memcpy(kv.i32s.data(), v.data.data(), v.data.size());
                }
                break;
            default: break;
        }
        kvs.push_back(std::move(kv));
    }
    auto r = vocabFromGgufKvs(kvs);
    if (!r) return makeError(file.path + ": " + r.error().message);
    return r;
}

std::vector<GgufKV> tokenizerGgufKvs(const Vocab& vocab) {
    using T = TokenizerKv::Type;
    std::vector<GgufKV> out;
    for (auto& kv : tokenizerKvsForGguf(vocab)) {
        GgufKV g;
        g.key = kv.key;
        switch (kv.type) {
            case T::U32: g.value = GgufValue::u32(uint32_t(kv.u)); break;
            case T::I32: g.value = GgufValue::i32(int32_t(uint32_t(kv.u))); break;
            case T::Bool: g.value = GgufValue::boolean(kv.b); break;
            case T::String: g.value = GgufValue::string(std::move(kv.str)); break;
            case T::StringArray: g.value = GgufValue::stringArray(std::move(kv.strings)); break;
            case T::F32Array: g.value = GgufValue::f32Array(kv.f32s); break;
            case T::I32Array: g.value = GgufValue::i32Array(kv.i32s); break;
            default: continue;
        }
        out.push_back(std::move(g));
    }
    return out;
}

}  // namespace qz
