#include "tokenizer/vocab.h"

#include <set>

namespace qz {

namespace {

constexpr std::string_view kPrefix = "tokenizer.ggml.";
constexpr std::string_view kIdSuffix = "_token_id";

const char* typeName(TokenizerKv::Type t) {
    switch (t) {
        case TokenizerKv::Type::U32: return "UINT32";
        case TokenizerKv::Type::I32: return "INT32";
        case TokenizerKv::Type::Bool: return "BOOL";
        case TokenizerKv::Type::String: return "STRING";
        case TokenizerKv::Type::StringArray: return "STRING[]";
        case TokenizerKv::Type::F32Array: return "FLOAT32[]";
        case TokenizerKv::Type::I32Array: return "INT32[]";
        default: return "another type";
    }
}

Error wrongType(const TokenizerKv& kv, TokenizerKv::Type want) {
    return makeError("GGUF key " + kv.key + " has type " + typeName(kv.type) + ", expected " + typeName(want));
}

TokenizerKv kvOf(std::string key, TokenizerKv::Type t) {
    TokenizerKv kv;
    kv.key = std::move(key);
    kv.type = t;
    return kv;
}

}  // namespace

std::optional<uint32_t> Vocab::specialId(std::string_view kind) const {
    for (const auto& s : specialIds)
        if (s.kind == kind) return s.id;
    return std::nullopt;
}

std::optional<bool> Vocab::addFlag(std::string_view kind) const {
    for (const auto& f : addFlags)
        if (f.kind == kind) return f.value;
    return std::nullopt;
}

void Vocab::setSpecialId(std::string_view kind, uint32_t id) {
    for (auto& s : specialIds)
        if (s.kind == kind) {
            s.id = id;
            return;
        }
    specialIds.push_back({std::string(kind), id});
}

void Vocab::setAddFlag(std::string_view kind, bool value) {
    for (auto& f : addFlags)
        if (f.kind == kind) {
            f.value = value;
            return;
        }
    addFlags.push_back({std::string(kind), value});
}

std::string ggufSpecialIdKey(std::string_view kind) {
    std::string name(kind);
    if (kind == "unk") name = "unknown";
    else if (kind == "sep") name = "seperator";
    else if (kind == "pad") name = "padding";
    return std::string(kPrefix) + name + std::string(kIdSuffix);
}

std::optional<std::string> specialKindFromGgufKey(std::string_view key) {
    if (key.size() <= kPrefix.size() + kIdSuffix.size() || key.substr(0, kPrefix.size()) != kPrefix ||
        key.substr(key.size() - kIdSuffix.size()) != kIdSuffix)
        return std::nullopt;
    std::string name(key.substr(kPrefix.size(), key.size() - kPrefix.size() - kIdSuffix.size()));
    if (name == "unknown") return std::string("unk");
    if (name == "seperator") return std::string("sep");
    if (name == "padding") return std::string("pad");
    return name;
}

std::vector<TokenizerKv> tokenizerKvsForGguf(const Vocab& v) {
    using T = TokenizerKv::Type;
    std::vector<TokenizerKv> out;
    auto str = [&](const char* key, const std::string& s) {
        auto kv = kvOf(key, T::String);
        kv.str = s;
        out.push_back(std::move(kv));
    };
    str("tokenizer.ggml.model", v.model);
    if (!v.pre.empty()) str("tokenizer.ggml.pre", v.pre);
    {
        auto kv = kvOf("tokenizer.ggml.tokens", T::StringArray);
        kv.strings = v.tokens;
        out.push_back(std::move(kv));
    }
    if (!v.scores.empty()) {
        auto kv = kvOf("tokenizer.ggml.scores", T::F32Array);
        kv.f32s = v.scores;
        out.push_back(std::move(kv));
    }
    if (!v.tokenTypes.empty()) {
        auto kv = kvOf("tokenizer.ggml.token_type", T::I32Array);
        kv.i32s = v.tokenTypes;
        out.push_back(std::move(kv));
    }
    if (!v.merges.empty()) {
        auto kv = kvOf("tokenizer.ggml.merges", T::StringArray);
        kv.strings = v.merges;
        out.push_back(std::move(kv));
    }
    for (const auto& s : v.specialIds) {
        auto kv = kvOf(ggufSpecialIdKey(s.kind), T::U32);
        kv.u = s.id;
        out.push_back(std::move(kv));
    }
    for (const auto& f : v.addFlags) {
        auto kv = kvOf(std::string(kPrefix) + "add_" + f.kind + "_token", T::Bool);
        kv.b = f.value;
        out.push_back(std::move(kv));
    }
    if (v.addSpacePrefix) {
        auto kv = kvOf("tokenizer.ggml.add_space_prefix", T::Bool);
        kv.b = *v.addSpacePrefix;
        out.push_back(std::move(kv));
    }
    if (v.chatTemplate) str("tokenizer.chat_template", *v.chatTemplate);
    return out;
}

Result<Vocab> vocabFromGgufKvs(const std::vector<TokenizerKv>& kvs) {
    using T = TokenizerKv::Type;
    Vocab v;
    bool haveModel = false, haveTokens = false;
    std::set<std::string> seen;
    // First pass: the arrays (n_vocab is needed to validate ids).
    for (const auto& kv : kvs) {
        if (!seen.insert(kv.key).second) return makeError("GGUF key " + kv.key + " appears twice");
        if (kv.key == "tokenizer.ggml.model") {
            if (kv.type != T::String) return wrongType(kv, T::String);
            v.model = kv.str;
            haveModel = true;
        } else if (kv.key == "tokenizer.ggml.pre") {
            if (kv.type != T::String) return wrongType(kv, T::String);
            v.pre = kv.str;
        } else if (kv.key == "tokenizer.ggml.tokens") {
            if (kv.type != T::StringArray) return wrongType(kv, T::StringArray);
            v.tokens = kv.strings;
            haveTokens = true;
        } else if (kv.key == "tokenizer.ggml.scores") {
            if (kv.type != T::F32Array) return wrongType(kv, T::F32Array);
            v.scores = kv.f32s;
        } else if (kv.key == "tokenizer.ggml.token_type") {
            if (kv.type != T::I32Array) return wrongType(kv, T::I32Array);
            v.tokenTypes = kv.i32s;
        } else if (kv.key == "tokenizer.ggml.merges") {
            if (kv.type != T::StringArray) return wrongType(kv, T::StringArray);
            v.merges = kv.strings;
        } else if (kv.key == "tokenizer.chat_template") {
            if (kv.type != T::String) return wrongType(kv, T::String);
            v.chatTemplate = kv.str;
        } else if (kv.key == "tokenizer.ggml.add_space_prefix") {
            if (kv.type != T::Bool) return wrongType(kv, T::Bool);
            v.addSpacePrefix = kv.b;
        }
    }
    if (!haveModel) return makeError("GGUF has no tokenizer.ggml.model key");
    if (!haveTokens) return makeError("GGUF has no tokenizer.ggml.tokens key");
    if (v.tokens.empty()) return makeError("GGUF tokenizer.ggml.tokens is empty");
    if (v.tokens.size() > uint64_t(INT32_MAX)) return makeError("GGUF tokenizer.ggml.tokens is too long");
    const size_t n = v.tokens.size();
    if (!v.scores.empty() && v.scores.size() != n)
        return makeError("GGUF tokenizer.ggml.scores has " + std::to_string(v.scores.size()) +
                         " entries for " + std::to_string(n) + " tokens");
    if (!v.tokenTypes.empty() && v.tokenTypes.size() != n)
        return makeError("GGUF tokenizer.ggml.token_type has " + std::to_string(v.tokenTypes.size()) +
                         " entries for " + std::to_string(n) + " tokens");
    if (v.model == "gpt2" && v.merges.empty()) return makeError("GGUF gpt2 tokenizer has no tokenizer.ggml.merges");

    // Second pass, in file order: special ids and add flags.
    for (const auto& kv : kvs) {
        if (auto kind = specialKindFromGgufKey(kv.key)) {
            if (kv.type != T::U32) return wrongType(kv, T::U32);
            if (kv.u >= n) {
                v.warnings.push_back(kv.key + " = " + std::to_string(kv.u) + " is not a token id (n_vocab " +
                                     std::to_string(n) + "); ignored");
                continue;
            }
            v.setSpecialId(*kind, uint32_t(kv.u));
            continue;
        }
        const std::string_view key = kv.key;
        const std::string_view addPrefix = "tokenizer.ggml.add_";
        const std::string_view tokenSuffix = "_token";
        if (key.size() > addPrefix.size() + tokenSuffix.size() && key.substr(0, addPrefix.size()) == addPrefix &&
            key.substr(key.size() - tokenSuffix.size()) == tokenSuffix) {
            if (kv.type != T::Bool) return wrongType(kv, T::Bool);
            v.setAddFlag(key.substr(addPrefix.size(), key.size() - addPrefix.size() - tokenSuffix.size()), kv.b);
        }
    }
    return v;
}

}  // namespace qz
