#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/hf_folder.h"

namespace qz {

namespace {

using json = nlohmann::json;

// Tensor names are file content: keep messages readable whatever they hold.
std::string quoteName(const std::string& s) {
    constexpr size_t kMax = 200;
    if (s.size() <= kMax) return "'" + s + "'";
    return "'" + s.substr(0, kMax) + "...'";
}

std::string range(uint64_t b, uint64_t e) {
    std::string s(1, '[');  // built by appending: GCC 12 -O3 warns falsely (-Wrestrict) on "[" + to_string()
    s.append(std::to_string(b)).append(", ").append(std::to_string(e)).push_back(')');
    return s;
}

// A JSON value that must be a non-negative integer fitting in int64.
enum class IntStatus { Ok, NotInteger, Negative, TooLarge };
IntStatus getNonNegative(const json& v, uint64_t& out) {
    if (v.is_number_unsigned()) {
        out = v.get<uint64_t>();
        return out > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ? IntStatus::TooLarge
                                                                                : IntStatus::Ok;
    }
    if (v.is_number_integer()) {
        const int64_t s = v.get<int64_t>();
        if (s < 0) return IntStatus::Negative;
        out = static_cast<uint64_t>(s);
        return IntStatus::Ok;
    }
    return IntStatus::NotInteger;
}

struct Entry {
    TensorInfo info;
    uint64_t begin = 0, end = 0;
};

}  // namespace

Result<json> parseJsonNoDuplicates(std::string_view text, const std::string& fname) {
    const char* first = text.data();
    const char* last = text.data() + text.size();
    std::vector<std::set<std::string>> keyStack;
    std::string duplicate;
    int duplicateDepth = 0;
    auto cb = [&](int depth, json::parse_event_t ev, json& parsed) -> bool {
        switch (ev) {
        case json::parse_event_t::object_start: keyStack.emplace_back(); break;
        case json::parse_event_t::object_end:
            if (!keyStack.empty()) keyStack.pop_back();
            break;
        case json::parse_event_t::key:
            if (!keyStack.empty() && parsed.is_string() && duplicate.empty()) {
                if (!keyStack.back().insert(parsed.get_ref<const std::string&>()).second) {
                    duplicate = parsed.get<std::string>();
                    duplicateDepth = depth;
                }
            }
            break;
        default: break;
        }
        return true;
    };
    json j;
    try {
        j = json::parse(first, last, cb, true);
    } catch (const json::exception& e) {
        return makeError(fname + ": not valid JSON (" + e.what() + ")");
    } catch (const std::bad_alloc&) {
        return makeError(fname + ": out of memory parsing JSON");
    }
    if (!duplicate.empty()) {
        if (duplicateDepth <= 1) return makeError(fname + ": duplicate tensor name " + quoteName(duplicate));
        return makeError(fname + ": duplicate key " + quoteName(duplicate));
    }
    return j;
}

namespace {

Result<Entry> parseEntry(const std::string& name, const json& v, uint64_t dataSize, const std::string& fname) {
    const std::string what = fname + ": tensor " + quoteName(name);
    if (!v.is_object()) return makeError(what + " is not a JSON object");
    Entry e;
    e.info.name = name;

    const auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) return makeError(what + " has no \"dtype\" string");
    const auto& dts = dt->get_ref<const std::string&>();
    const auto dtype = dtypeFromSafetensors(dts);
    if (!dtype) return makeError(what + " has unknown or unsupported dtype " + quoteName(dts));
    e.info.dtype = *dtype;

    const auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) return makeError(what + " has no \"shape\" array");
    uint64_t product = 1;  // of the non-zero dimensions: must fit in int64 so rows()/cols() stay defined
    bool hasZero = false;
    e.info.shape.reserve(sh->size());
    for (const auto& d : *sh) {
        uint64_t n = 0;
        switch (getNonNegative(d, n)) {
        case IntStatus::Ok: break;
        case IntStatus::Negative: return makeError(what + " has a negative dimension in its shape " + sh->dump());
        case IntStatus::TooLarge: return makeError(what + " has a dimension too large in its shape");
        case IntStatus::NotInteger: return makeError(what + " has a shape entry that is not an integer");
        }
        if (n == 0) {
            hasZero = true;
        } else if (__builtin_mul_overflow(product, n, &product) ||
                   product > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
            return makeError(what + ": the product of its shape overflows");
        }
        e.info.shape.push_back(static_cast<int64_t>(n));
    }
    const uint64_t numel = hasZero ? 0 : product;

    const auto off = v.find("data_offsets");
    if (off == v.end() || !off->is_array() || off->size() != 2)
        return makeError(what + " has no \"data_offsets\" array of two integers");
    if (getNonNegative((*off)[0], e.begin) != IntStatus::Ok || getNonNegative((*off)[1], e.end) != IntStatus::Ok)
        return makeError(what + " has data_offsets that are not non-negative integers");
    if (e.end < e.begin) return makeError(what + " has data_offsets " + range(e.begin, e.end) + " with end < begin");

    const auto need = bytesFor(e.info.dtype, numel);
    if (!need) return makeError(what + ": byte size of shape " + e.info.shapeString() + " overflows");
    if (e.end - e.begin != *need)
        return makeError(what + " has dtype " + dts + " and shape " + e.info.shapeString() + " (" +
                         std::to_string(*need) + " bytes) but data_offsets " + range(e.begin, e.end) + " span " +
                         std::to_string(e.end - e.begin) + " bytes");
    if (e.end > dataSize)
        return makeError(what + " data_offsets " + range(e.begin, e.end) + " lie outside the data section (" +
                         std::to_string(dataSize) + " bytes)");
    e.info.nbytes = *need;
    return e;
}

}  // namespace

Result<SafetensorsHeader> parseSafetensorsBytes(const uint8_t* data, uint64_t size, const std::string& fname) {
    if (size < 8)
        return makeError(fname + ": file is " + std::to_string(size) +
                         " bytes, too short for a safetensors header length");
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
    if (n > kSafetensorsMaxHeader)
        return makeError(fname + ": header length " + std::to_string(n) + " is absurd (limit " +
                         std::to_string(kSafetensorsMaxHeader) + " bytes); not a safetensors file?");
    if (n > size - 8)
        return makeError(fname + ": header length " + std::to_string(n) + " runs past the end of the file (" +
                         std::to_string(size) + " bytes); truncated file?");
    if (n < 2 || data[8] != '{') return makeError(fname + ": header does not start with '{'; not a safetensors file?");

    auto parsed = parseJsonNoDuplicates(std::string_view(reinterpret_cast<const char*>(data + 8), n),
                                        fname + ": header");
    if (!parsed) return parsed.error();
    const json& j = *parsed;
    if (!j.is_object()) return makeError(fname + ": header is not a JSON object");

    SafetensorsHeader h;
    h.dataStart = 8 + n;
    const uint64_t dataSize = size - h.dataStart;
    std::vector<Entry> entries;
    entries.reserve(j.size());
    for (auto it = j.begin(); it != j.end(); ++it) {
        if (it.key() == "__metadata__") {
            if (!it->is_object()) return makeError(fname + ": \"__metadata__\" is not a JSON object");
            for (auto m = it->begin(); m != it->end(); ++m) {
                if (!m->is_string())
                    return makeError(fname + ": \"__metadata__\" value for " + quoteName(m.key()) +
                                     " is not a string");
                h.metadata.push_back({m.key(), m->get<std::string>()});
            }
            continue;
        }
        auto e = parseEntry(it.key(), *it, dataSize, fname);
        if (!e) return e.error();
        entries.push_back(std::move(*e));
    }

    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
        if (a.begin != b.begin) return a.begin < b.begin;
        if (a.end != b.end) return a.end < b.end;
        return a.info.name < b.info.name;
    });
    uint64_t expected = 0;
    const Entry* prev = nullptr;
    for (const auto& e : entries) {
        if (e.begin < expected)
            return makeError(fname + ": tensor " + quoteName(e.info.name) + " data_offsets " + range(e.begin, e.end) +
                             " overlap tensor " + quoteName(prev->info.name) + " " + range(prev->begin, prev->end));
        if (e.begin > expected)
            return makeError(fname + ": data bytes " + range(expected, e.begin) +
                             " belong to no tensor (gap before tensor " + quoteName(e.info.name) + ")");
        expected = e.end;
        prev = &e;
    }
    if (expected != dataSize)
        return makeError(fname + ": data bytes " + range(expected, dataSize) +
                         " belong to no tensor (trailing bytes after the last tensor)");

    h.tensors.reserve(entries.size());
    for (auto& e : entries) {
        e.info.offset = h.dataStart + e.begin;
        h.tensors.push_back(std::move(e.info));
    }
    return h;
}

Result<SafetensorsHeader> parseSafetensors(const MappedFile& file) {
    const std::string fname = std::filesystem::path(file.path()).filename().string();
    return parseSafetensorsBytes(file.data(), file.size(), fname);
}

Result<std::shared_ptr<Model>> openSafetensorsModel(const std::string& path) {
    namespace fs = std::filesystem;
    auto mf = MappedFile::open(path);
    if (!mf) return mf.error();
    auto header = parseSafetensors(**mf);
    if (!header) return header.error();

    auto model = std::make_shared<Model>();
    model->format = ModelFormat::SafetensorsFile;
    model->path = path;
    model->name = fs::path(path).stem().string();
    std::error_code ec;
    const fs::path config = fs::path(path).parent_path() / "config.json";
    if (fs::is_regular_file(config, ec)) {
        auto st = applyHfConfig(*model, config.string());
        if (!st) return st.error();
    }
    for (const auto& m : header->metadata) model->metadata.push_back({"safetensors." + m.key, m.value});
    model->files.push_back(std::move(*mf));
    model->tensors = std::move(header->tensors);
    return model;
}

}  // namespace qz
