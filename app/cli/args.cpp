#include "args.h"

#include <cstdlib>

namespace qzcli {

Args::Args(std::set<std::string> valueOptions, std::set<std::string> flags, std::set<std::string> repeatable)
    : m_valueOptions(std::move(valueOptions)), m_flags(std::move(flags)), m_repeatable(std::move(repeatable)) {}

std::string Args::parse(int argc, char** argv, int first) {
    for (int i = first; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--") {
            for (++i; i < argc; ++i) m_positional.emplace_back(argv[i]);
            break;
        }
        if (a.size() > 1 && a[0] == '-' && !(a.size() > 1 && (std::isdigit(static_cast<unsigned char>(a[1])) || a[1] == '.'))) {
            std::string name = a, val;
            bool hasEq = false;
            if (const auto eq = a.find('='); eq != std::string::npos) {
                name = a.substr(0, eq);
                val = a.substr(eq + 1);
                hasEq = true;
            }
            if (m_flags.count(name)) {
                if (hasEq) return "option " + name + " takes no value";
                m_values.emplace(name, "");
            } else if (m_valueOptions.count(name)) {
                if (!hasEq) {
                    if (i + 1 >= argc) return "option " + name + " needs a value";
                    val = argv[++i];
                }
                if (m_values.count(name) && !m_repeatable.count(name)) return "option " + name + " given twice";
                m_values.emplace(name, val);
            } else {
                return "unknown option " + name;
            }
        } else {
            m_positional.push_back(a);
        }
    }
    return {};
}

std::optional<std::string> Args::value(const std::string& name) const {
    auto it = m_values.find(name);
    if (it == m_values.end()) return std::nullopt;
    return it->second;
}

std::vector<std::string> Args::values(const std::string& name) const {
    std::vector<std::string> out;
    auto [b, e] = m_values.equal_range(name);
    for (auto it = b; it != e; ++it) out.push_back(it->second);
    return out;
}

std::string Args::valueOr(const std::string& name, const std::string& def) const {
    auto v = value(name);
    return v ? *v : def;
}

long long Args::intOr(const std::string& name, long long def, std::string& err) const {
    auto v = value(name);
    if (!v) return def;
    char* end = nullptr;
    const long long r = std::strtoll(v->c_str(), &end, 10);
    if (v->empty() || *end != '\0') {
        err = "option " + name + " needs an integer, got '" + *v + "'";
        return def;
    }
    return r;
}

double Args::doubleOr(const std::string& name, double def, std::string& err) const {
    auto v = value(name);
    if (!v) return def;
    char* end = nullptr;
    const double r = std::strtod(v->c_str(), &end);
    if (v->empty() || *end != '\0') {
        err = "option " + name + " needs a number, got '" + *v + "'";
        return def;
    }
    return r;
}

}  // namespace qzcli
