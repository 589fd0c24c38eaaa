#include "gguf/gguf_reader.h"

#include <filesystem>

namespace qz {

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
        for (const auto& t : g->tensors) {
            TensorInfo ti;
            ti.name = t.name;
            ti.shape.assign(t.ne.rbegin(), t.ne.rend());
            ti.dtype = t.dtype;
            ti.fileIndex = 0;
            ti.offset = g->tensorAbsoluteOffset(t);
            ti.nbytes = t.nbytes;
            m->tensors.push_back(std::move(ti));
        }
        m->formatData = g;
        return m;
    } catch (const std::exception& e) {
        return makeError(path + ": " + e.what());
    }
}

const GgufFile* ggufOf(const Model& m) {
    if (m.format != ModelFormat::Gguf || !m.formatData) return nullptr;
    return static_cast<const GgufFile*>(m.formatData.get());
}

}  // namespace qz
