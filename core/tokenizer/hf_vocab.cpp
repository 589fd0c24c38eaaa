#include "tokenizer/hf_vocab.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/file_util.h"
#include "common/json_field.h"
#include "tokenizer/spm_model.h"

namespace qz {

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

constexpr uintmax_t kMaxJsonBytes = uintmax_t(1) << 30;
const char* const kSpecialKinds[] = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};
const char* const kAddFlagKinds[] = {"bos", "eos", "sep"};  // the ones gguf-py can write

const std::string kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const std::string kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const std::string kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// A model folder's file, followed through a symlink only where it stays inside the folder (or its hub
// cache repository): its text ends up in exported vocabularies, so a link out of the folder is refused.
Result<fs::path> insideModel(const fs::path& p) {
    const std::string folder = p.has_parent_path() ? p.parent_path().string() : std::string(".");
    auto r = resolveModelFile(folder, p.filename().string());
    if (!r) return r.error();
    if (r->missing) return makeError(p.string() + ": cannot read (no such file)");
    return fs::path(r->path);
}

Result<std::string> readText(const fs::path& given) {
    auto resolved = insideModel(given);
    if (!resolved) return resolved.error();
    const fs::path& p = *resolved;
    std::error_code ec;
    const auto size = fs::file_size(p, ec);
    if (ec) return makeError(p.string() + ": cannot read (" + ec.message() + ")");
    if (size > kMaxJsonBytes) return makeError(p.string() + ": file is too large");
    std::ifstream in(p, std::ios::binary);
    if (!in) return makeError(p.string() + ": cannot open");
    std::string s(size_t(size), '\0');
    in.read(s.data(), std::streamsize(size));
    if (!in && !in.eof()) return makeError(p.string() + ": read error");
    s.resize(size_t(in.gcount()));
    return s;
}

Result<Json> readJson(const fs::path& p) {
    auto t = readText(p);
    if (!t) return t.error();
    if (auto st = checkJsonDepth(t.value(), p.string()); !st) return st.error();
    Json j = Json::parse(t.value(), nullptr, false);
    if (j.is_discarded()) return makeError(p.string() + ": not valid JSON");
    return j;
}

bool isFile(const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec);
}

bool startsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool endsWith(std::string_view s, std::string_view p) {
    return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

// convert_hf_to_gguf.py does_token_look_special
bool looksSpecial(const std::string& t) {
    if (t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]") return true;
    if (startsWith(t, "<|") && endsWith(t, "|>")) return true;
    if (startsWith(t, "<\xEF\xBD\x9C") && endsWith(t, "\xEF\xBD\x9C>")) return true;  // <｜ ... ｜>
    if (startsWith(t, "<unused") && endsWith(t, ">")) return true;
    return false;
}

std::string replaceAll(std::string s, std::string_view from, std::string_view to) {
    size_t pos = 0;
    while ((pos = s.find(from, pos)) != std::string::npos) {
        s.replace(pos, from.size(), to);
        pos += to.size();
    }
    return s;
}

// A JSON integer that fits an int64 (bools are not integers here).
std::optional<int64_t> jsonInt(const Json& j) {
    if (j.is_number_integer()) return j.get<int64_t>();
    return std::nullopt;
}

struct AddedToken {
    int64_t id = -1;
    std::string content;
    bool special = false;
};

// gguf-py SpecialVocab: special ids and add flags and chat template.
Status loadSpecialVocab(Vocab& v, const fs::path& dir, const Json* config, const std::vector<AddedToken>& added,
                        const Json* tokCfg) {
    const size_t n = v.tokens.size();
    auto setId = [&](const std::string& kind, const Json& val, const std::string& source) -> Status {
        auto id = jsonInt(val);
        if (!id) return okStatus();
        if (*id < 0) return makeError(source + ": invalid value for special token " + kind + ": " + std::to_string(*id));
        if (uint64_t(*id) < n) {
            if (!v.specialId(kind)) v.setSpecialId(kind, uint32_t(*id));
        } else {
            v.warnings.push_back(source + ": special token " + kind + " id " + std::to_string(*id) +
                                 " is out of range (n_vocab " + std::to_string(n) + "); ignored");
        }
        return okStatus();
    };
    if (tokCfg && tokCfg->is_object()) {
        if (auto it = tokCfg->find("chat_template"); it != tokCfg->end()) {
            if (it->is_string()) v.chatTemplate = it->get<std::string>();
            else if (!it->is_null()) v.warnings.push_back("tokenizer_config.json: chat_template is not a string; not copied");
        }
        for (const char* kind : kSpecialKinds) {
            const std::string k(kind);
            if (auto it = tokCfg->find("add_" + k + "_token"); it != tokCfg->end() && it->is_boolean()) {
                for (const char* f : kAddFlagKinds)
                    if (k == f) v.setAddFlag(k, it->get<bool>());
            }
            auto it = tokCfg->find(k + "_token");
            if (it == tokCfg->end()) continue;
            std::string content;
            if (it->is_string()) {
                content = it->get<std::string>();
            } else if (it->is_object()) {
                auto c = it->find("content");
                if (c == it->end() || !c->is_string()) continue;
                content = c->get<std::string>();
            } else {
                continue;
            }
            for (const auto& a : added) {
                if (a.content == content) {
                    auto st = setId(k, Json(a.id), "tokenizer.json");
                    if (!st) return st;
                    break;
                }
            }
        }
    }
    if (config && config->is_object()) {
        for (const char* kind : kSpecialKinds) {
            const std::string k(kind);
            if (auto it = config->find(k + "_token_id"); it != config->end()) {
                auto st = setId(k, *it, (dir / "config.json").string());
                if (!st) return st;
            }
        }
    }
    return okStatus();
}

Result<std::vector<AddedToken>> parseAddedTokens(const Json& tokJson, const fs::path& where) {
    std::vector<AddedToken> out;
    auto it = tokJson.find("added_tokens");
    if (it == tokJson.end() || it->is_null()) return out;
    if (!it->is_array()) return makeError(where.string() + ": added_tokens is not an array");
    for (const auto& e : *it) {
        if (!e.is_object()) return makeError(where.string() + ": an added_tokens entry is not an object");
        AddedToken a;
        auto id = e.find("id");
        auto content = e.find("content");
        if (id == e.end() || !jsonInt(*id) || content == e.end() || !content->is_string())
            return makeError(where.string() + ": an added_tokens entry has no integer id / string content");
        a.id = *jsonInt(*id);
        a.content = content->get<std::string>();
        if (auto s = e.find("special"); s != e.end() && s->is_boolean()) a.special = s->get<bool>();
        out.push_back(std::move(a));
    }
    return out;
}

Result<int64_t> vocabSizeFromConfig(const Json* config, int64_t fallback, const std::string& where) {
    if (!config || !config->is_object()) return fallback;
    auto it = config->find("vocab_size");
    if (it == config->end() || it->is_null()) return fallback;
    auto n = jsonInt(*it);
    if (!n || *n <= 0 || *n > (int64_t(1) << 22))
        return makeError(where + ": vocab_size is not a plausible token count");
    return *n;
}

Result<Vocab> loadSpm(const fs::path& dir, const Json* config, const Json* tokCfg) {
    auto modelPath = insideModel(dir / "tokenizer.model");
    if (!modelPath) return modelPath.error();
    auto spm = loadSpmModel(modelPath->string());
    if (!spm) return spm.error();
    const auto& pieces = spm->pieces;
    auto nv = vocabSizeFromConfig(config, int64_t(pieces.size()), (dir / "config.json").string());
    if (!nv) return nv.error();
    const size_t n = size_t(nv.value());

    Vocab v;
    v.model = "llama";
    v.pre = "default";
    v.tokens.resize(n);
    v.scores.assign(n, -10000.0f);
    v.tokenTypes.assign(n, int32_t(TokenType::Unused));
    for (size_t i = 0; i < n; ++i) v.tokens[i] = "[PAD" + std::to_string(i) + "]";
    for (size_t i = 0; i < pieces.size(); ++i) {
        if (i >= n) {
            v.warnings.push_back("tokenizer.model has " + std::to_string(pieces.size()) +
                                 " pieces but config.json vocab_size is " + std::to_string(n) + "; extra pieces dropped");
            break;
        }
        const auto& p = pieces[i];
        int32_t type = int32_t(TokenType::Normal);
        if (p.type == 2 || p.type == 3 || p.type == 5 || p.type == 6) type = p.type;
        v.tokens[i] = p.piece;
        v.scores[i] = p.score;
        v.tokenTypes[i] = type;
    }
    if (const fs::path addedPath = dir / "added_tokens.json"; isFile(addedPath)) {
        auto j = readJson(addedPath);
        if (!j) return j.error();
        if (!j->is_object()) return makeError(addedPath.string() + ": not a JSON object");
        for (const auto& [text, idJson] : j->items()) {
            auto id = jsonInt(idJson);
            if (!id || *id < 0) return makeError(addedPath.string() + ": id of \"" + text + "\" is not a token id");
            if (uint64_t(*id) >= n) {
                v.warnings.push_back(addedPath.string() + ": ignored token " + std::to_string(*id) + ": out of range");
                continue;
            }
            v.tokens[size_t(*id)] = text;
            v.scores[size_t(*id)] = -1000.0f;
            v.tokenTypes[size_t(*id)] = int32_t(TokenType::UserDefined);
        }
    }
    if (tokCfg && tokCfg->is_object()) {
        auto it = tokCfg->find("added_tokens_decoder");
        if (it != tokCfg->end() && it->is_object()) {
            for (const auto& [idText, data] : it->items()) {
                char* end = nullptr;
                const long long id = std::strtoll(idText.c_str(), &end, 10);
                if (idText.empty() || *end != '\0' || id < 0)
                    return makeError("tokenizer_config.json: added_tokens_decoder key \"" + idText + "\" is not an id");
                if (!data.is_object() || !data.contains("content") || !data["content"].is_string())
                    return makeError("tokenizer_config.json: added_tokens_decoder entry " + idText + " has no content");
                if (uint64_t(id) >= n) {
                    v.warnings.push_back("tokenizer_config.json: ignored added token " + idText + ": out of range");
                    continue;
                }
                std::string token = data["content"].get<std::string>();
                const bool special = data.contains("special") && data["special"].is_boolean() && data["special"].get<bool>();
                if (special || looksSpecial(token)) {
                    v.tokenTypes[size_t(id)] = int32_t(TokenType::Control);
                } else {
                    token = replaceAll(token, "\xE2\x96\x81", " ");
                    v.tokenTypes[size_t(id)] = int32_t(TokenType::UserDefined);
                }
                v.scores[size_t(id)] = -1000.0f;
                v.tokens[size_t(id)] = token;
            }
        }
    }
    // SpecialVocab without tokenizer.json added tokens unless tokenizer.json exists.
    std::vector<AddedToken> added;
    if (const fs::path tj = dir / "tokenizer.json"; isFile(tj)) {
        auto j = readJson(tj);
        if (!j) return j.error();
        if (j->is_object()) {
            auto a = parseAddedTokens(*j, tj);
            if (!a) return a.error();
            added = std::move(a.value());
        }
    }
    auto st = loadSpecialVocab(v, dir, config, added, tokCfg);
    if (!st) return st.error();
    // Gemma 2 / 3: no space prefix. convert's Gemma set_vocab writes add_space_prefix false whatever the
    // SentencePiece model says (core/convert/README.md B), llama.cpp tokenizes the GGUF so, and the HF folder is
    // read the same way, so that a folder and its GGUF give the same tokens (Gemma's own tokenizer.model has
    // add_dummy_prefix false too; core/tokenizer/README.md).
    if (config && config->is_object()) {
        const std::string type = jsonStringOrEmpty(*config, "model_type");
        if (type == "gemma2" || type == "gemma3" || type == "gemma3_text") v.addSpacePrefix = false;
    }
    return v;
}

// Pre-tokenizer name from tokenizer.json's pre_tokenizer, or "" if not recognised.
std::string preNameFromTokenizerJson(const Json& pre, std::string& detail) {
    if (!pre.is_object()) {
        detail = "no pre_tokenizer";
        return "";
    }
    const std::string type = jsonStringOrEmpty(pre, "type");
    if (type == "ByteLevel") {
        const bool useRegex = !pre.contains("use_regex") || (pre["use_regex"].is_boolean() && pre["use_regex"].get<bool>());
        if (useRegex) return "gpt-2";
        detail = "ByteLevel without regex";
        return "";
    }
    if (type == "Sequence" && pre.contains("pretokenizers") && pre["pretokenizers"].is_array()) {
        const auto& list = pre["pretokenizers"];
        std::string name;
        bool byteLevel = false;
        for (const auto& p : list) {
            if (!p.is_object()) return "";
            const std::string t = jsonStringOrEmpty(p, "type");
            if (t == "Split" && name.empty() && p.contains("pattern") && p["pattern"].is_object() &&
                p["pattern"].contains("Regex") && p["pattern"]["Regex"].is_string()) {
                const std::string rx = p["pattern"]["Regex"].get<std::string>();
                name = preTokenizerNameForRegex(rx);
                if (name.empty()) {
                    detail = "regex " + rx;
                    return "";
                }
            } else if (t == "ByteLevel") {
                byteLevel = true;
            } else {
                detail = "pre-tokenizer step " + t;
                return "";
            }
        }
        if (!name.empty() && byteLevel) return name;
        detail = "pre-tokenizer sequence";
        return "";
    }
    detail = "pre-tokenizer type " + type;
    return "";
}

Result<Vocab> loadBpe(const fs::path& dir, const Json* config, const Json* tokCfg, const HfVocabOptions& opt) {
    const fs::path tjPath = dir / "tokenizer.json";
    Json tj;
    std::vector<std::pair<std::string, int64_t>> vocabEntries;  // file order
    std::vector<AddedToken> added;
    std::vector<std::string> merges;
    std::string pre;
    std::string preDetail;
    if (isFile(tjPath)) {
        auto j = readJson(tjPath);
        if (!j) return j.error();
        tj = std::move(j.value());
        if (!tj.is_object() || !tj.contains("model") || !tj["model"].is_object())
            return makeError(tjPath.string() + ": no model object");
        const auto& model = tj["model"];
        if (jsonStringOrEmpty(model, "type") != "BPE")
            return makeError(tjPath.string() + ": tokenizer model type \"" + jsonStringOrEmpty(model, "type") +
                             "\" is not supported (only SentencePiece tokenizer.model and byte-level BPE)");
        if (!model.contains("vocab") || !model["vocab"].is_object()) return makeError(tjPath.string() + ": model.vocab missing");
        for (const auto& [tok, idJson] : model["vocab"].items()) {
            auto id = jsonInt(idJson);
            if (!id || *id < 0) return makeError(tjPath.string() + ": vocab id of \"" + tok + "\" is not a token id");
            vocabEntries.emplace_back(tok, *id);
        }
        if (model.contains("merges") && model["merges"].is_array()) {
            for (const auto& m : model["merges"]) {
                if (m.is_string()) {
                    merges.push_back(m.get<std::string>());
                } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
                    // spaces inside a part are written as U+0120 (gguf-py vocab.py)
                    merges.push_back(replaceAll(m[0].get<std::string>(), " ", "\xC4\xA0") + " " +
                                     replaceAll(m[1].get<std::string>(), " ", "\xC4\xA0"));
                } else {
                    return makeError(tjPath.string() + ": a merges entry is neither \"a b\" nor [a, b]");
                }
            }
        }
        auto a = parseAddedTokens(tj, tjPath);
        if (!a) return a.error();
        added = std::move(a.value());
        pre = preNameFromTokenizerJson(tj.contains("pre_tokenizer") ? tj["pre_tokenizer"] : Json(), preDetail);
    } else {
        const fs::path vj = dir / "vocab.json";
        auto j = readJson(vj);
        if (!j) return j.error();
        if (!j->is_object()) return makeError(vj.string() + ": not a JSON object");
        for (const auto& [tok, idJson] : j->items()) {
            auto id = jsonInt(idJson);
            if (!id || *id < 0) return makeError(vj.string() + ": id of \"" + tok + "\" is not a token id");
            vocabEntries.emplace_back(tok, *id);
        }
        pre = "gpt-2";  // the slow GPT-2 tokenizer always splits with GPT-2's regex
    }
    // Added tokens of tokenizer_config.json that tokenizer.json does not list (they are in the HF
    // tokenizer's vocab; gguf-py's SpecialVocab looks special tokens up in tokenizer.json's list only).
    const std::vector<AddedToken> tokenizerJsonAdded = added;
    if (tokCfg && tokCfg->is_object() && tokCfg->contains("added_tokens_decoder") &&
        (*tokCfg)["added_tokens_decoder"].is_object()) {
        for (const auto& [idText, data] : (*tokCfg)["added_tokens_decoder"].items()) {
            char* end = nullptr;
            const long long id = std::strtoll(idText.c_str(), &end, 10);
            if (idText.empty() || *end != '\0' || id < 0 || !data.is_object() || !data.contains("content") ||
                !data["content"].is_string())
                return makeError("tokenizer_config.json: malformed added_tokens_decoder entry \"" + idText + "\"");
            bool known = false;
            for (const auto& a : added) known = known || a.id == id;
            if (known) continue;
            AddedToken a;
            a.id = id;
            a.content = data["content"].get<std::string>();
            a.special = data.contains("special") && data["special"].is_boolean() && data["special"].get<bool>();
            added.push_back(std::move(a));
        }
    }
    if (pre.empty()) {
        if (!opt.allowUnknownPreTokenizer)
            return makeError(dir.string() + ": unknown BPE pre-tokenizer (" + preDetail +
                             "); llama.cpp only knows named pre-tokenizers (gpt-2, llama-bpe, qwen2, ...)");
        pre = "default";
    }
    // Merges from merges.txt if tokenizer.json had none.
    std::vector<std::string> mergeWarnings;
    if (merges.empty()) {
        const fs::path mp = dir / "merges.txt";
        if (isFile(mp)) {
            auto t = readText(mp);
            if (!t) return t.error();
            std::istringstream in(t.value());
            std::string line;
            bool first = true;
            while (std::getline(in, line)) {
                auto b = line.find_first_not_of(" \t\r\n\f\v");
                auto e = line.find_last_not_of(" \t\r\n\f\v");
                if (first) {
                    first = false;
                    if (b != std::string::npos && line[b] == '#') continue;
                }
                if (b == std::string::npos) continue;
                line = line.substr(b, e - b + 1);
                std::vector<std::string> parts;
                std::istringstream ls(line);
                std::string part;
                while (ls >> part) parts.push_back(part);
                if (parts.size() != 2) {
                    mergeWarnings.push_back(mp.string() + ": malformed entry \"" + line + "\" ignored");
                    continue;
                }
                merges.push_back(parts[0] + " " + parts[1]);
            }
        }
    }
    if (merges.empty()) return makeError(dir.string() + ": BPE tokenizer without merges");

    // tokenizer.vocab (with added tokens) -> id order.
    std::map<int64_t, std::string> reverse;
    int64_t maxId = -1;
    for (const auto& [tok, id] : vocabEntries) {
        reverse[id] = tok;
        maxId = std::max(maxId, id);
    }
    std::map<std::string, const AddedToken*> addedByContent;
    for (const auto& a : added) {
        reverse[a.id] = a.content;
        maxId = std::max(maxId, a.id);
        addedByContent[a.content] = &a;
    }
    auto nv = vocabSizeFromConfig(config, int64_t(reverse.size()), (dir / "config.json").string());
    if (!nv) return nv.error();
    const int64_t n = nv.value();
    if (maxId >= n)
        return makeError(dir.string() + ": token id " + std::to_string(maxId) + " >= vocab_size " + std::to_string(n));

    Vocab v;
    v.model = "gpt2";
    v.pre = pre;
    if (pre == "default")
        v.warnings.push_back("unknown BPE pre-tokenizer (" + preDetail + "); written as \"default\"");
    v.tokens.reserve(size_t(n));
    v.tokenTypes.reserve(size_t(n));
    for (int64_t i = 0; i < n; ++i) {
        auto it = reverse.find(i);
        if (it == reverse.end()) {
            v.tokens.push_back("[PAD" + std::to_string(i) + "]");
            v.tokenTypes.push_back(int32_t(TokenType::Unused));
            continue;
        }
        std::string token = it->second;
        auto a = addedByContent.find(token);
        if (a != addedByContent.end()) {
            if (a->second->special || looksSpecial(token)) {
                v.tokenTypes.push_back(int32_t(TokenType::Control));
            } else {
                token = replaceAll(token, "\xE2\x96\x81", " ");
                v.tokenTypes.push_back(int32_t(TokenType::UserDefined));
            }
        } else {
            v.tokenTypes.push_back(int32_t(TokenType::Normal));
        }
        v.tokens.push_back(std::move(token));
    }
    v.merges = std::move(merges);
    v.warnings.insert(v.warnings.end(), mergeWarnings.begin(), mergeWarnings.end());
    auto st = loadSpecialVocab(v, dir, config, tokenizerJsonAdded, tokCfg);
    if (!st) return st.error();
    return v;
}

}  // namespace

std::string preTokenizerNameForRegex(const std::string& pattern) {
    if (pattern == kGpt2Regex) return "gpt-2";
    if (pattern == kLlama3Regex) return "llama-bpe";
    if (pattern == kQwen2Regex) return "qwen2";
    return "";
}

Result<Vocab> loadHfVocab(const std::string& dirPath, const std::string& configJson, const HfVocabOptions& options) {
    try {
        const fs::path dir(dirPath);
        Json config;
        bool haveConfig = false;
        if (!configJson.empty()) {
            config = Json::parse(configJson, nullptr, false);
            if (config.is_discarded()) return makeError(dirPath + ": config.json is not valid JSON");
            haveConfig = true;
        } else if (isFile(dir / "config.json")) {
            auto j = readJson(dir / "config.json");
            if (!j) return j.error();
            config = std::move(j.value());
            haveConfig = true;
        }
        Json tokCfg;
        bool haveTokCfg = false;
        if (isFile(dir / "tokenizer_config.json")) {
            auto j = readJson(dir / "tokenizer_config.json");
            if (!j) return j.error();
            tokCfg = std::move(j.value());
            haveTokCfg = true;
        }
        const Json* cfg = haveConfig ? &config : nullptr;
        const Json* tc = haveTokCfg ? &tokCfg : nullptr;
        if (isFile(dir / "tokenizer.model")) return loadSpm(dir, cfg, tc);
        if (isFile(dir / "tokenizer.json") || (isFile(dir / "vocab.json") && isFile(dir / "merges.txt")))
            return loadBpe(dir, cfg, tc, options);
        return makeError(dirPath + ": no tokenizer found (tokenizer.model, tokenizer.json or vocab.json + merges.txt)");
    } catch (const std::exception& e) {
        return makeError(dirPath + ": error while reading the tokenizer: " + e.what());
    }
}

}  // namespace qz
