#include "io/hf_folder.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/safe_file.h"
#include "io/safetensors.h"

namespace qz {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

constexpr uint64_t kMaxJsonFile = 64ull << 20; // config.json / index files larger than this are rejected

Result<std::string> readTextFile(const fs::path& p, const std::string& display) {
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) return makeError(display + ": not a regular file");
    const auto size = fs::file_size(p, ec);
    if (ec) return makeError(display + ": cannot read size: " + ec.message());
    if (size > kMaxJsonFile)
        return makeError(display + ": " + std::to_string(size) +
                         " bytes is too large for a JSON file (limit " + std::to_string(kMaxJsonFile) + ")");
    std::ifstream in(p, std::ios::binary);
    if (!in) return makeError(display + ": cannot open");
    std::string s(size, '\0');
    in.read(s.data(), static_cast<std::streamsize>(size));
    s.resize(static_cast<size_t>(in.gcount()));
    return s;
}

// Names come from hostile files: quoted and cut short in messages.
std::string quoteName(const std::string& s) {
    constexpr size_t kMax = 200;
    return "'" + (s.size() <= kMax ? s : s.substr(0, kMax) + "...") + "'";
}

std::string displayValue(const ojson& v) {
    constexpr size_t kMax = 300;
    std::string s;
    if (v.is_string()) {
        s = v.get<std::string>();
    } else if (v.is_array()) {
        for (size_t i = 0; i < v.size(); ++i) {
            if (i) s += ", ";
            s += v[i].is_string() ? v[i].get<std::string>()
                                  : v[i].dump(-1, ' ', false, ojson::error_handler_t::replace);
            if (s.size() > kMax) break;
        }
    } else {
        s = v.dump(-1, ' ', false, ojson::error_handler_t::replace);
    }
    if (s.size() > kMax) s = s.substr(0, kMax) + "...";
    return s;
}

// Display order of the well-known config.json keys (llama-style names and their gpt2 spellings).
const char* const kPreferredKeys[] = {
    "architectures",
    "model_type",
    "hidden_size",
    "n_embd",
    "d_model",
    "num_hidden_layers",
    "n_layer",
    "num_attention_heads",
    "n_head",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "n_inner",
    "vocab_size",
    "max_position_embeddings",
    "n_positions",
    "n_ctx",
    "torch_dtype",
    "rope_theta",
    "rope_scaling",
    "tie_word_embeddings",
    "hidden_act",
    "activation_function",
    "rms_norm_eps",
    "layer_norm_epsilon",
    "layer_norm_eps",
    "sliding_window",
    "num_local_experts",
    "num_experts",
    "num_experts_per_tok",
    "quantization_config",
    "bos_token_id",
    "eos_token_id",
    "transformers_version",
};

// Resolves an index entry to a file inside `root` (canonical), or explains why not.
Result<fs::path> resolveShard(const fs::path& root, const std::string& name, const std::string& indexName) {
    const std::string what = indexName + ": shard " + quoteName(name);
    if (name.empty()) return makeError(indexName + ": empty shard file name");
    if (name.find('\0') != std::string::npos) return makeError(what + " contains a NUL character");
    const fs::path rel(name);
    if (rel.is_absolute() || rel.has_root_name() || rel.has_root_directory())
        return makeError(what + " is an absolute path; shards must lie inside the model folder");
    for (const auto& part : rel)
        if (part == "..") return makeError(what + " contains '..'; shards must lie inside the model folder");
    std::error_code ec;
    const fs::path joined = root / rel;
    if (!fs::exists(joined, ec)) return makeError(what + " does not exist in the model folder");
    const fs::path real = fs::canonical(joined, ec);
    if (ec) return makeError(what + ": cannot resolve: " + ec.message());
    auto inside = [&](const fs::path& base) {
        const fs::path back = real.lexically_relative(base);
        return !back.empty() && *back.begin() != ".." && back != ".";
    };
    // Hugging Face hub cache: snapshots/<revision>/<file> are symlinks to ../../blobs/<hash> of the same
    // repo.
    const bool hubSnapshot = root.parent_path().filename() == "snapshots";
    if (!inside(root) && !(hubSnapshot && inside(root.parent_path().parent_path() / "blobs")))
        return makeError(what + " resolves outside the model folder (symlink to " + real.string() + ")");
    if (!fs::is_regular_file(real, ec)) return makeError(what + " is not a regular file");
    return real;
}

struct Shard {
    std::string name; // as listed (or the file name)
    fs::path real;    // canonical path
};

// "<prefix>layers.<N>.<rest>" -> N and the parts around it (false for other names).
bool splitLayerName(const std::string& name, const std::string& rest, std::string& prefix,
                    std::string& layer) {
    const std::string key = "layers.";
    const std::string tail = "." + rest;
    if (name.size() <= tail.size() || name.compare(name.size() - tail.size(), tail.size(), tail))
        return false;
    const size_t end = name.size() - tail.size(); // the layer number ends here
    const size_t at = name.rfind(key, end);
    if (at == std::string::npos || (at > 0 && name[at - 1] != '.') || at + key.size() >= end) return false;
    layer = name.substr(at + key.size(), end - at - key.size());
    if (layer.size() > 9 ||
        !std::all_of(layer.begin(), layer.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return false;
    prefix = name.substr(0, at);
    return true;
}

// transformers v5 fused experts (README.md F.3): a layer's mlp.experts.gate_up_proj [E, 2F, H] (gate rows
// then up rows per expert) and mlp.experts.down_proj [E, H, F] become the per-expert 2-D tensors the
// per-expert layout names, as views of the same bytes (each expert's slice is contiguous). Mixtral's router
// mlp.gate.weight is named block_sparse_moe.gate.weight again. Other architectures are left as they are.
Status exposeFusedExperts(Model& model, const std::string& dir) {
    const bool mixtral = model.architecture == "mixtral";
    if (!mixtral && model.architecture != "qwen3_moe") return okStatus();
    const std::string gu = "mlp.experts.gate_up_proj", dp = "mlp.experts.down_proj";
    std::map<std::string, std::pair<const TensorInfo*, const TensorInfo*>>
        layers; // "<prefix>layers.N." -> both
    for (const auto& t : model.tensors) {
        std::string prefix, layer;
        for (const std::string* rest : {&gu, &dp})
            if (splitLayerName(t.name, *rest, prefix, layer)) {
                auto& slot = layers[prefix + "layers." + layer + "."];
                (rest == &gu ? slot.first : slot.second) = &t;
            }
    }
    if (layers.empty()) return okStatus();
    std::map<const TensorInfo*, std::vector<TensorInfo>> views; // fused tensor -> its experts' views
    std::map<std::string, std::string> renames;                 // mixtral's router
    for (const auto& [base, pair] : layers) {
        const auto [g, d] = pair;
        const std::string where = dir + ": " + base;
        if (!g || !d)
            return makeError(where + (g ? dp : gu) + " is missing (transformers' fused experts come as " +
                             gu + " and " + dp + ")");
        for (const TensorInfo* t : {g, d}) {
            const auto& tr = traits(t->dtype);
            if (t->shape.size() != 3 || tr.blockSize != 1 || tr.typeSize == 0)
                return makeError(dir + ": " + t->name + " has shape " + t->shapeString() + " and type " +
                                 std::string(tr.name) +
                                 " (fused experts are a 3-D tensor of whole-byte values)");
        }
        if (g->dtype != d->dtype)
            return makeError(where + gu + " and " + dp + " have different types");
        const int64_t E = g->shape[0], F2 = g->shape[1], H = g->shape[2];
        if (E <= 0 || F2 <= 0 || H <= 0 || F2 % 2 != 0 || d->shape != std::vector<int64_t>{E, H, F2 / 2})
            return makeError(where + gu + " " + g->shapeString() + " and " + base + dp + " " +
                             d->shapeString() + " are not [experts, 2·ff, hidden] and [experts, hidden, ff]");
        const int64_t F = F2 / 2;
        const uint64_t es = traits(g->dtype).typeSize;
        const uint64_t part = uint64_t(F) * uint64_t(H) * es; // one expert's gate, up or down (checked below)
        if (g->nbytes != 2 * part * uint64_t(E) || d->nbytes != part * uint64_t(E))
            return makeError(where + gu + ", " + dp + ": their byte sizes do not match their shapes");
        const std::string ex = base + (mixtral ? "block_sparse_moe.experts." : "mlp.experts.");
        auto view = [&](const TensorInfo& src, const std::string& name, std::vector<int64_t> shape,
                        uint64_t at) {
            TensorInfo v;
            v.name = name;
            v.shape = std::move(shape);
            v.dtype = src.dtype;
            v.fileIndex = src.fileIndex;
            v.offset = src.offset + at;
            v.nbytes = part;
            return v;
        };
        for (int64_t e = 0; e < E; ++e) {
            const std::string p = ex + std::to_string(e) + ".";
            views[g].push_back(
                view(*g, p + (mixtral ? "w1" : "gate_proj") + ".weight", {F, H}, 2 * uint64_t(e) * part));
            views[g].push_back(
                view(*g, p + (mixtral ? "w3" : "up_proj") + ".weight", {F, H}, (2 * uint64_t(e) + 1) * part));
            views[d].push_back(
                view(*d, p + (mixtral ? "w2" : "down_proj") + ".weight", {H, F}, uint64_t(e) * part));
        }
        if (mixtral) renames[base + "mlp.gate.weight"] = base + "block_sparse_moe.gate.weight";
    }
    std::vector<TensorInfo> out;
    for (auto& t : model.tensors) {
        if (auto it = views.find(&t); it != views.end()) {
            for (auto& v : it->second)
                out.push_back(std::move(v));
            continue;
        }
        if (auto r = renames.find(t.name); r != renames.end()) t.name = r->second;
        out.push_back(std::move(t));
    }
    std::set<std::string> names;
    for (const auto& t : out)
        if (!names.insert(t.name).second)
            return makeError(dir + ": tensor " + quoteName(t.name) +
                             " is stored both per expert and in the fused experts");
    model.tensors = std::move(out);
    return okStatus();
}

} // namespace

Status applyHfConfig(Model& model, const std::string& configPath) {
    const std::string display = fs::path(configPath).filename().string();
    auto text = readTextFile(configPath, display);
    if (!text) return text.error();
    if (auto st = checkJsonDepth(*text, display); !st) return st;
    ojson j;
    try {
        // The metadata display below serialises values recursively: bound the nesting first.
        j = ojson::parse(*text, [](int depth, ojson::parse_event_t, ojson&) {
            if (depth > 512) throw std::runtime_error("nested deeper than 512 levels");
            return true;
        });
    } catch (const std::exception& e) {
        return makeError(display + ": not valid JSON (" + e.what() + ")");
    }
    if (!j.is_object()) return makeError(display + ": not a JSON object");

    model.configJson = std::move(*text);
    model.architecture.clear();
    if (auto it = j.find("model_type"); it != j.end() && it->is_string())
        model.architecture = it->get<std::string>();

    std::vector<MetaItem> items;
    std::set<std::string> used;
    for (const char* key : kPreferredKeys) {
        auto it = j.find(key);
        if (it == j.end() || it->is_null()) continue;
        items.push_back({key, displayValue(*it)});
        used.insert(key);
    }
    for (auto it = j.begin(); it != j.end(); ++it) {
        if (it->is_null() || used.count(it.key())) continue;
        items.push_back({it.key(), displayValue(*it)});
    }
    model.metadata = std::move(items);
    return okStatus();
}

Result<std::shared_ptr<Model>> openHfFolder(const std::string& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return makeError(dir + ": not a folder");
    const fs::path root = fs::canonical(dir, ec);
    if (ec) return makeError(dir + ": cannot resolve: " + ec.message());

    auto model = std::make_shared<Model>();
    model->format = ModelFormat::HuggingFaceFolder;
    model->path = dir;
    fs::path shown = fs::path(dir).lexically_normal();
    if (!shown.has_filename()) shown = shown.parent_path();
    model->name = shown.filename().string();
    if (model->name.empty() || model->name == "." || model->name == "..")
        model->name = root.filename().string();
    // Files are read through symlinks only when these stay inside the folder (or its hub cache repository).
    if (auto cfg = resolveModelFile(root.string(), "config.json"); !cfg) {
        return cfg.error();
    } else if (!cfg->missing) {
        auto st = applyHfConfig(*model, (root / "config.json").string()); // checked: named as such
        if (!st) return st.error();
    }

    // Which files, and which tensors the index promises in each.
    const std::string indexName = "model.safetensors.index.json";
    std::vector<Shard> shards;
    std::vector<std::vector<std::string>> promised; // per shard: tensor names the index maps to it
    if (fs::exists(root / indexName, ec)) {
        auto text = readTextFile(root / indexName, indexName);
        if (!text) return text.error();
        auto j = parseJsonNoDuplicates(*text, indexName);
        if (!j) return j.error();
        if (!j->is_object()) return makeError(indexName + ": not a JSON object");
        auto wm = j->find("weight_map");
        if (wm == j->end() || !wm->is_object()) return makeError(indexName + ": no \"weight_map\" object");
        std::map<std::string, std::vector<std::string>> byShard; // sorted shard names: file order
        for (auto it = wm->begin(); it != wm->end(); ++it) {
            if (!it->is_string())
                return makeError(indexName + ": weight_map entry for tensor " + quoteName(it.key()) +
                                 " is not a string");
            byShard[it->get<std::string>()].push_back(it.key());
        }
        if (byShard.empty()) return makeError(indexName + ": weight_map is empty");
        std::map<fs::path, size_t> seen; // two spellings of one file are one shard
        for (auto& [name, tensors] : byShard) {
            auto real = resolveShard(root, name, indexName);
            if (!real) return real.error();
            auto [pos, fresh] = seen.emplace(*real, shards.size());
            if (fresh) {
                shards.push_back({name, *real});
                promised.emplace_back();
            }
            auto& list = promised[pos->second];
            list.insert(list.end(), tensors.begin(), tensors.end());
        }
    } else if (fs::exists(root / "model.safetensors", ec)) {
        auto real = resolveModelFile(root.string(), "model.safetensors");
        if (!real) return real.error();
        shards.push_back({"model.safetensors", real->path});
        promised.emplace_back();
    } else {
        std::vector<std::string> names;
        for (const auto& e : fs::directory_iterator(root, ec)) {
            const std::string n = e.path().filename().string();
            if (e.path().extension() == ".safetensors" && !n.empty() && n[0] != '.' && e.is_regular_file(ec))
                names.push_back(n);
        }
        if (ec) return makeError(dir + ": cannot list the folder: " + ec.message());
        std::sort(names.begin(), names.end());
        for (const auto& n : names) {
            auto real = resolveModelFile(root.string(), n);
            if (!real) return real.error();
            shards.push_back({n, real->path});
            promised.emplace_back();
        }
        if (shards.empty())
            return makeError(dir +
                             ": no model.safetensors, model.safetensors.index.json or *.safetensors file");
    }

    std::unordered_map<std::string, uint32_t> owner; // tensor name -> file index
    for (size_t i = 0; i < shards.size(); ++i) {
        auto mf = MappedFile::open(shards[i].real.string());
        if (!mf) return mf.error();
        auto header = parseSafetensorsBytes((*mf)->data(), (*mf)->size(), shards[i].name);
        if (!header) return header.error();
        const auto fileIndex = static_cast<uint32_t>(i);
        for (auto& t : header->tensors) {
            auto [pos, fresh] = owner.emplace(t.name, fileIndex);
            if (!fresh)
                return makeError(dir + ": tensor " + quoteName(t.name) + " is in both " +
                                 quoteName(shards[pos->second].name) + " and " + quoteName(shards[i].name));
            t.fileIndex = fileIndex;
            model->tensors.push_back(std::move(t));
        }
        for (const auto& name : promised[i]) {
            auto it = owner.find(name);
            if (it == owner.end() || it->second != fileIndex)
                return makeError(indexName + ": tensor " + quoteName(name) + " is mapped to " +
                                 quoteName(shards[i].name) + ", which does not contain it");
        }
        if (i == 0)
            for (const auto& m : header->metadata)
                model->metadata.push_back({"safetensors." + m.key, m.value});
        model->files.push_back(std::move(*mf));
    }
    if (auto st = exposeFusedExperts(*model, dir); !st) return st.error();
    return model;
}

Status refuseOverwritingModel(const Model& model, const std::string& outputPath) {
    std::vector<std::string> inputs{model.path};
    for (const auto& f : model.files)
        if (f) inputs.push_back(f->path());
    return refuseOverwritingInputs(outputPath, inputs);
}

} // namespace qz
