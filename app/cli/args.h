// Tiny command-line parser for quantzoo-cli: positional arguments plus --long options, each option
// declared with whether it takes a value. Unknown options are errors (scripts should fail loudly).
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace qzcli {

class Args {
public:
    // valueOptions take one value ("--bits 4" or "--bits=4"); flags take none; repeatable may repeat.
    Args(std::set<std::string> valueOptions, std::set<std::string> flags, std::set<std::string> repeatable = {});
    // Parses argv[first..]. Returns an error message, or empty on success.
    std::string parse(int argc, char** argv, int first);

    const std::vector<std::string>& positional() const { return m_positional; }
    bool has(const std::string& name) const { return m_values.count(name) > 0; }
    std::optional<std::string> value(const std::string& name) const;
    std::vector<std::string> values(const std::string& name) const;
    std::string valueOr(const std::string& name, const std::string& def) const;
    // Parses an integer / double option; on a bad value sets err and returns def.
    long long intOr(const std::string& name, long long def, std::string& err) const;
    double doubleOr(const std::string& name, double def, std::string& err) const;

private:
    std::set<std::string> m_valueOptions, m_flags, m_repeatable;
    std::vector<std::string> m_positional;
    std::multimap<std::string, std::string> m_values;
};

}  // namespace qzcli
