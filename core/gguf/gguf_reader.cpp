#include "gguf/gguf_reader.h"

#include <cstdio>
#include <filesystem>
#include <unordered_set>

namespace qz {

namespace {

TensorInfo tensorInfoOf(const GgufFile& g, const GgufTensor& t, uint32_t fileIndex) {
    TensorInfo ti;
    ti.name = t.name;
    ti.shape.assign(t.ne.rbegin(), t.ne.rend());
    ti.dtype = t.dtype;
    ti.fileIndex = fileIndex;
    ti.offset = g.tensorAbsoluteOffset(t);
    ti.nbytes = t.nbytes;
    return ti;
}

// An integer split key (README.md A.8: split.no / split.count are UINT16, split.tensors.count INT32);
// any integer type is accepted, its value is range-checked by the caller.
Result<std::optional<uint64_t>> splitKey(const GgufFile& g, const char* key) {
    const GgufValue* v = g.find(key);
    if (!v) return std::optional<uint64_t>{};
    auto u = v->toUInt();
    if (!u || v->type == GgufType::Bool) return makeError(g.path + ": " + key + " is not a non-negative integer");
    return std::optional<uint64_t>{*u};
}

}  // namespace

std::string ggufSplitPath(const std::string& prefix, uint32_t splitIndex, uint32_t splitCount) {
    char tail[64];
    std::snprintf(tail, sizeof tail, "-%05u-of-%05u.gguf", splitIndex + 1, splitCount);
    return prefix + tail;
}

std::string ggufSplitPrefix(const std::string& path) {
    const std::string ext = ".gguf";
    if (path.size() > ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0)
        return path.substr(0, path.size() - ext.size());
    return path;
}

Result<std::shared_ptr<Model>> openGgufModel(const std::string& path) {
    auto parsed = GgufFile::open(path);
    if (!parsed) return parsed.error();
    std::shared_ptr<const GgufFile> g = std::move(parsed.value());
    try {
        auto m = std::make_shared<Model>();
        m->format = ModelFormat::Gguf;
        m->path = path;
        m->architecture = g->getString("general.architecture").value_or("");
        const auto name = g->getString("general.name");
        m->name = name && !name->empty() ? *name : std::filesystem::path(path).filename().string();
        m->metadata.reserve(g->kvs.size());
        for (const auto& kv : g->kvs) m->metadata.push_back(MetaItem{kv.key, kv.value.display()});
        m->files.push_back(g->file);
        m->tensors.reserve(g->tensors.size());
        for (const auto& t : g->tensors) m->tensors.push_back(tensorInfoOf(*g, t, 0));
        m->formatData = g;
        if (auto st = addGgufSplits(*m, *g); !st) return st.error();
        return m;
    } catch (const std::exception& e) {
        return makeError(path + ": " + e.what());
    }
}

// A model split by gguf-split (README.md A.8): the first file holds the metadata and split.count; the
// others are found by name beside it, each must say which part it is, and the tensors of all of them
// together are the model's (unique names, as many as split.tensors.count says).
Status addGgufSplits(Model& m, const GgufFile& first) {
    auto countR = splitKey(first, "split.count");
    if (!countR) return countR.error();
    auto noR = splitKey(first, "split.no");
    if (!noR) return noR.error();
    auto totalR = splitKey(first, "split.tensors.count");
    if (!totalR) return totalR.error();
    if (!*countR) {
        if (*noR && **noR != 0)
            return makeError(first.path + ": split.no is " + std::to_string(**noR) + " but the file has no split.count");
        return okStatus();
    }
    const uint64_t count = **countR;
    if (count < 1 || count > 65535)
        return makeError(first.path + ": split.count " + std::to_string(count) + " is outside 1..65535");
    const uint64_t no = noR->value_or(0);
    if (no >= count)
        return makeError(first.path + ": split.no " + std::to_string(no) + " is not below split.count " +
                         std::to_string(count));
    if (no != 0) {
        std::string prefix = ggufSplitPrefix(first.path);
        const std::string tail = ggufSplitPath("", static_cast<uint32_t>(no), static_cast<uint32_t>(count));
        if (first.path.size() > tail.size() &&
            first.path.compare(first.path.size() - tail.size(), tail.size(), tail) == 0)
            prefix = first.path.substr(0, first.path.size() - tail.size());
        return makeError(first.path + ": this is part " + std::to_string(no + 1) + " of a model split in " +
                         std::to_string(count) + " files; open the first one, " +
                         ggufSplitPath(prefix, 0, static_cast<uint32_t>(count)));
    }
    std::unordered_set<std::string> names;
    for (const auto& t : m.tensors) names.insert(t.name);
    if (count > 1) {
        const std::string tail = ggufSplitPath("", 0, static_cast<uint32_t>(count));
        if (first.path.size() <= tail.size() ||
            first.path.compare(first.path.size() - tail.size(), tail.size(), tail) != 0)
            return makeError(first.path + ": split.count is " + std::to_string(count) + " but the name does not end in " +
                             tail + ", so the other parts cannot be found");
        const std::string prefix = first.path.substr(0, first.path.size() - tail.size());
        for (uint32_t i = 1; i < count; ++i) {
            const std::string p = ggufSplitPath(prefix, i, static_cast<uint32_t>(count));
            auto part = GgufFile::open(p);
            if (!part) return makeError("part " + std::to_string(i + 1) + " of " + std::to_string(count) + " of " +
                                        first.path + ": " + part.error().message);
            const GgufFile& g = **part;
            auto pno = splitKey(g, "split.no");
            if (!pno) return pno.error();
            auto pcount = splitKey(g, "split.count");
            if (!pcount) return pcount.error();
            if (!*pno || **pno != i)
                return makeError(p + ": split.no is " + (*pno ? std::to_string(**pno) : std::string("missing")) +
                                 ", expected " + std::to_string(i));
            if (!*pcount || **pcount != count)
                return makeError(p + ": split.count is " +
                                 (*pcount ? std::to_string(**pcount) : std::string("missing")) + ", expected " +
                                 std::to_string(count) + " as in " + first.path);
            const uint32_t fileIndex = static_cast<uint32_t>(m.files.size());
            m.files.push_back(g.file);
            for (const auto& t : g.tensors) {
                if (!names.insert(t.name).second)
                    return makeError(p + ": tensor '" + t.name + "' is also in an earlier part of the model");
                m.tensors.push_back(tensorInfoOf(g, t, fileIndex));
            }
        }
    }
    if (*totalR && **totalR != m.tensors.size())
        return makeError(first.path + ": split.tensors.count says " + std::to_string(**totalR) + " tensors, the " +
                         std::to_string(count) + " parts hold " + std::to_string(m.tensors.size()));
    return okStatus();
}

const GgufFile* ggufOf(const Model& m) {
    if (m.format != ModelFormat::Gguf || !m.formatData) return nullptr;
    return static_cast<const GgufFile*>(m.formatData.get());
}

}  // namespace qz
