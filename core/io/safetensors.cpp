#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
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
    std::string s(1, '['); // built by appending: GCC 12 -O3 warns falsely (-Wrestrict) on "[" + to_string()
    s.append(std::to_string(b)).append(", ").append(std::to_string(e)).push_back(')');
    return s;
}

struct Entry {
    TensorInfo info;
    uint64_t begin = 0, end = 0;
};

} // namespace

Result<json> parseJsonNoDuplicates(std::string_view text, const std::string& fname) {
    const char* first = text.data();
    const char* last = text.data() + text.size();
    std::vector<std::set<std::string>> keyStack;
    std::string duplicate;
    auto cb = [&](int /*depth*/, json::parse_event_t ev, json& parsed) -> bool {
        switch (ev) {
        case json::parse_event_t::object_start:
            keyStack.emplace_back();
            break;
        case json::parse_event_t::object_end:
            if (!keyStack.empty()) keyStack.pop_back();
            break;
        case json::parse_event_t::key:
            if (!keyStack.empty() && parsed.is_string() && duplicate.empty()) {
                if (!keyStack.back().insert(parsed.get_ref<const std::string&>()).second) {
                    duplicate = parsed.get<std::string>();
                }
            }
            break;
        default:
            break;
        }
        return true;
    };
    if (auto st = checkJsonDepth(text, fname); !st) return st.error();
    json j;
    try {
        j = json::parse(first, last, cb, true);
    } catch (const json::exception& e) {
        return makeError(fname + ": not valid JSON (" + e.what() + ")");
    } catch (const std::bad_alloc&) {
        return makeError(fname + ": out of memory parsing JSON");
    }
    if (!duplicate.empty()) return makeError(fname + ": duplicate key " + quoteName(duplicate));
    return j;
}

namespace {

// Streaming (SAX) header reader: builds the entries directly, so memory stays proportional to the
// tensor count rather than to a DOM of the whole header (a 100 MB header of "[0,0,0,...]" would
// otherwise cost gigabytes), and stops at the first problem.
class HeaderSax {
  public:
    HeaderSax(uint64_t dataSize, const std::string& fname) : m_dataSize(dataSize), m_fname(fname) {}

    std::vector<Entry> entries;
    std::vector<MetaItem> metadata;
    std::string error;

    bool null() { return scalar(Scalar::Other, 0); }
    bool boolean(bool) { return scalar(Scalar::Other, 0); }
    bool number_integer(int64_t v) {
        return v < 0 ? scalar(Scalar::Negative, 0) : scalar(Scalar::Int, static_cast<uint64_t>(v));
    }
    bool number_unsigned(uint64_t v) {
        return v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ? scalar(Scalar::TooLarge, 0)
                                                                              : scalar(Scalar::Int, v);
    }
    bool number_float(double, const std::string&) { return scalar(Scalar::Other, 0); }
    bool binary(json::binary_t&) { return scalar(Scalar::Other, 0); }
    bool string(std::string& s) {
        if (m_skip) return true;
        if (m_where == Where::Meta) {
            metadata.push_back({m_key, std::move(s)});
            return true;
        }
        if (m_where == Where::Entry && m_field == Field::Dtype) {
            m_dtypeText = std::move(s);
            m_hasDtype = true;
            return true;
        }
        return scalar(Scalar::Other, 0);
    }

    bool start_object(std::size_t) {
        if (m_skip) return ++m_skip, true;
        switch (m_where) {
        case Where::Start:
            m_where = Where::Top;
            return true;
        case Where::Top:
            if (m_key == "__metadata__") {
                m_where = Where::Meta;
                m_metaKeys.clear();
                return true;
            }
            m_where = Where::Entry;
            m_entry = Entry{};
            m_entry.info.name = m_key;
            m_hasDtype = m_hasShape = false;
            m_offsetCount = 0;
            m_seenFields = 0;
            m_field = Field::None;
            return true;
        case Where::Entry:
            if (m_field == Field::Other) return ++m_skip, true;
            return fieldTypeError();
        default:
            return scalar(Scalar::Other, 0);
        }
    }

    bool key(std::string& k) {
        if (m_skip) return true;
        switch (m_where) {
        case Where::Top:
            if (!m_names.insert(k).second) return fail(": duplicate tensor name " + quoteName(k));
            m_key = std::move(k);
            return true;
        case Where::Meta:
            if (!m_metaKeys.insert(k).second)
                return fail(": duplicate key " + quoteName(k) + " in \"__metadata__\"");
            m_key = std::move(k);
            return true;
        case Where::Entry: {
            Field f = Field::Other;
            if (k == "dtype")
                f = Field::Dtype;
            else if (k == "shape")
                f = Field::Shape;
            else if (k == "data_offsets")
                f = Field::Offsets;
            const unsigned bit = 1u << static_cast<unsigned>(f);
            if (f != Field::Other && (m_seenFields & bit)) return fail(": duplicate key " + quoteName(k));
            m_seenFields |= bit;
            m_field = f;
            return true;
        }
        default:
            return true;
        }
    }

    bool end_object() {
        if (m_skip) return --m_skip, true;
        switch (m_where) {
        case Where::Meta:
            m_where = Where::Top;
            return true;
        case Where::Entry:
            m_where = Where::Top;
            return finishEntry();
        case Where::Top:
            m_where = Where::Done;
            return true;
        default:
            return true;
        }
    }

    bool start_array(std::size_t) {
        if (m_skip) return ++m_skip, true;
        if (m_where == Where::Entry && m_field == Field::Shape) {
            m_where = Where::Shape;
            m_hasShape = true;
            return true;
        }
        if (m_where == Where::Entry && m_field == Field::Offsets) {
            m_where = Where::Offsets;
            return true;
        }
        if (m_where == Where::Entry && m_field == Field::Other) return ++m_skip, true;
        if (m_where == Where::Shape) return fail(entryWhat() + " has a shape entry that is not an integer");
        if (m_where == Where::Offsets)
            return fail(entryWhat() + " has data_offsets that are not non-negative integers");
        return scalar(Scalar::Other, 0);
    }

    bool end_array() {
        if (m_skip) return --m_skip, true;
        if (m_where == Where::Shape) {
            m_where = Where::Entry;
            return true;
        }
        if (m_where == Where::Offsets) {
            m_where = Where::Entry;
            if (m_offsetCount != 2)
                return fail(entryWhat() + " has no \"data_offsets\" array of two integers");
            return true;
        }
        return true;
    }

    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) {
        if (error.empty()) error = m_fname + ": header is not valid JSON (" + ex.what() + ")";
        return false;
    }

  private:
    enum class Where { Start, Top, Meta, Entry, Shape, Offsets, Done };
    enum class Field : unsigned { None, Dtype, Shape, Offsets, Other };
    enum class Scalar { Int, Negative, TooLarge, Other };
    static constexpr size_t kMaxDims = 1024;

    std::string entryWhat() const { return ": tensor " + quoteName(m_entry.info.name); }
    bool fail(const std::string& rest) {
        error = m_fname + rest;
        return false;
    }
    bool fieldTypeError() {
        switch (m_field) {
        case Field::Dtype:
            return fail(entryWhat() + " has no \"dtype\" string");
        case Field::Shape:
            return fail(entryWhat() + " has no \"shape\" array");
        case Field::Offsets:
            return fail(entryWhat() + " has no \"data_offsets\" array of two integers");
        default:
            return true;
        }
    }

    // Any non-string scalar (or a misplaced structure, routed here with Scalar::Other).
    bool scalar(Scalar kind, uint64_t v) {
        if (m_skip) return true;
        switch (m_where) {
        case Where::Start:
            return fail(": header is not a JSON object");
        case Where::Top:
            if (m_key == "__metadata__") return fail(": \"__metadata__\" is not a JSON object");
            return fail(": tensor " + quoteName(m_key) + " is not a JSON object");
        case Where::Meta:
            return fail(": \"__metadata__\" value for " + quoteName(m_key) + " is not a string");
        case Where::Entry:
            return fieldTypeError();
        case Where::Shape:
            if (kind == Scalar::Negative) return fail(entryWhat() + " has a negative dimension in its shape");
            if (kind == Scalar::TooLarge)
                return fail(entryWhat() + " has a dimension too large in its shape");
            if (kind != Scalar::Int) return fail(entryWhat() + " has a shape entry that is not an integer");
            if (m_entry.info.shape.size() >= kMaxDims)
                return fail(entryWhat() + " has more than " + std::to_string(kMaxDims) + " dimensions");
            m_entry.info.shape.push_back(static_cast<int64_t>(v));
            return true;
        case Where::Offsets:
            if (kind != Scalar::Int)
                return fail(entryWhat() + " has data_offsets that are not non-negative integers");
            if (m_offsetCount >= 2)
                return fail(entryWhat() + " has no \"data_offsets\" array of two integers");
            (m_offsetCount++ == 0 ? m_entry.begin : m_entry.end) = v;
            return true;
        default:
            return fail(": unexpected JSON value");
        }
    }

    bool finishEntry() {
        const std::string what = entryWhat();
        if (!m_hasDtype) return fail(what + " has no \"dtype\" string");
        const auto dtype = dtypeFromSafetensors(m_dtypeText);
        if (!dtype) return fail(what + " has unknown or unsupported dtype " + quoteName(m_dtypeText));
        Entry& e = m_entry;
        e.info.dtype = *dtype;
        if (!m_hasShape) return fail(what + " has no \"shape\" array");
        if (m_offsetCount != 2) return fail(what + " has no \"data_offsets\" array of two integers");

        uint64_t product = 1; // of the non-zero dimensions: must fit in int64 so rows()/cols() stay defined
        bool hasZero = false;
        for (int64_t d : e.info.shape) {
            const auto n = static_cast<uint64_t>(d);
            if (n == 0) {
                hasZero = true;
            } else if (__builtin_mul_overflow(product, n, &product) ||
                       product > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
                return fail(what + ": the product of its shape overflows");
            }
        }
        const uint64_t numel = hasZero ? 0 : product;
        if (e.end < e.begin)
            return fail(what + " has data_offsets " + range(e.begin, e.end) + " with end < begin");
        const auto need = bytesFor(e.info.dtype, numel);
        if (!need) return fail(what + ": byte size of shape " + e.info.shapeString() + " overflows");
        if (e.end - e.begin != *need)
            return fail(what + " has dtype " + m_dtypeText + " and shape " + e.info.shapeString() + " (" +
                        std::to_string(*need) + " bytes) but data_offsets " + range(e.begin, e.end) +
                        " span " + std::to_string(e.end - e.begin) + " bytes");
        if (e.end > m_dataSize)
            return fail(what + " data_offsets " + range(e.begin, e.end) + " lie outside the data section (" +
                        std::to_string(m_dataSize) + " bytes)");
        e.info.nbytes = *need;
        entries.push_back(std::move(e));
        return true;
    }

    uint64_t m_dataSize;
    const std::string& m_fname;
    Where m_where = Where::Start;
    size_t m_skip = 0; // nesting depth inside an ignored value (unknown entry field)
    std::string m_key; // current top-level key / metadata key
    std::unordered_set<std::string> m_names, m_metaKeys;
    Entry m_entry;
    Field m_field = Field::None;
    unsigned m_seenFields = 0;
    bool m_hasDtype = false, m_hasShape = false;
    std::string m_dtypeText;
    int m_offsetCount = 0;
};

} // namespace

Result<SafetensorsHeader> parseSafetensorsBytes(const uint8_t* data, uint64_t size,
                                                const std::string& fname) {
    if (size < 8)
        return makeError(fname + ": file is " + std::to_string(size) +
                         " bytes, too short for a safetensors header length");
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i)
        n = (n << 8) | data[i];
    if (n > kSafetensorsMaxHeader)
        return makeError(fname + ": header length " + std::to_string(n) + " is absurd (limit " +
                         std::to_string(kSafetensorsMaxHeader) + " bytes); not a safetensors file?");
    if (n > size - 8)
        return makeError(fname + ": header length " + std::to_string(n) + " runs past the end of the file (" +
                         std::to_string(size) + " bytes); truncated file?");
    if (n < 2 || data[8] != '{')
        return makeError(fname + ": header does not start with '{'; not a safetensors file?");

    SafetensorsHeader h;
    h.dataStart = 8 + n;
    HeaderSax sax(size - h.dataStart, fname);
    const char* first = reinterpret_cast<const char*>(data + 8);
    bool parsedOk = false;
    try {
        parsedOk = json::sax_parse(first, first + n, &sax, nlohmann::detail::input_format_t::json, true);
    } catch (const std::exception& e) { // bad_alloc, or anything the parser throws despite the handler
        return makeError(fname + ": cannot parse the header: " + e.what());
    }
    if (!parsedOk || !sax.error.empty())
        return makeError(sax.error.empty() ? fname + ": header is not valid JSON" : sax.error);
    const uint64_t dataSize = size - h.dataStart;
    h.metadata = std::move(sax.metadata);
    std::vector<Entry>& entries = sax.entries;

    std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
        if (a.begin != b.begin) return a.begin < b.begin;
        if (a.end != b.end) return a.end < b.end;
        return a.info.name < b.info.name;
    });
    uint64_t expected = 0;
    const Entry* prev = nullptr;
    for (const auto& e : entries) {
        if (e.begin < expected)
            return makeError(fname + ": tensor " + quoteName(e.info.name) + " data_offsets " +
                             range(e.begin, e.end) + " overlap tensor " + quoteName(prev->info.name) + " " +
                             range(prev->begin, prev->end));
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
    // A sharded set's index picked in a file dialog stands for its folder.
    const std::string fileName = fs::path(path).filename().string();
    if (fileName.ends_with(".safetensors.index.json")) {
        fs::path dir = fs::path(path).parent_path();
        return openHfFolder(dir.empty() ? std::string(".") : dir.string());
    }
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
    for (const auto& m : header->metadata)
        model->metadata.push_back({"safetensors." + m.key, m.value});
    model->files.push_back(std::move(*mf));
    model->tensors = std::move(header->tensors);
    return model;
}

} // namespace qz
