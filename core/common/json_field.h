// Typed reads of one field of a JSON object from a model folder or a user file, which never throw.
// nlohmann::json's value(key, default) and get<T>() throw type_error when the field holds another type
// (a config.json with "model_type": 5), so hostile input must go through these.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/result.h"

namespace qz {

// The field's string; absent or null -> def; another type -> an error naming the field.
inline Result<std::string> jsonStringField(const nlohmann::json& j, const char* key, const std::string& def,
                                           const std::string& where) {
    if (!j.is_object()) return def;
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return def;
    if (!it->is_string()) return makeError(where + ": \"" + key + "\" is not a string");
    return it->get<std::string>();
}

// The field's boolean; absent or null -> def; another type -> an error naming the field.
inline Result<bool> jsonBoolField(const nlohmann::json& j, const char* key, bool def, const std::string& where) {
    if (!j.is_object()) return def;
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return def;
    if (!it->is_boolean()) return makeError(where + ": \"" + key + "\" is not true or false");
    return it->get<bool>();
}

// The field's string where any other content means "not one we know": absent, null or another type -> "".
inline std::string jsonStringOrEmpty(const nlohmann::json& j, const char* key) {
    if (!j.is_object()) return {};
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace qz
