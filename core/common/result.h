// Result<T>: a value or an Error with a human-readable message.
// Every fallible core operation returns one of these instead of throwing across the API.
#pragma once

#include <exception>
#include <new>
#include <string>
#include <utility>
#include <variant>

namespace qz {

struct Error {
    std::string message;
    bool cancelled = false;  // true when the operation stopped because the user cancelled it
};

inline Error makeError(std::string msg) { return Error{std::move(msg), false}; }
inline Error cancelledError() { return Error{"cancelled", true}; }

template <class T>
class [[nodiscard]] Result {
public:
    Result(T value) : m_v(std::in_place_index<0>, std::move(value)) {}
    Result(Error e) : m_v(std::in_place_index<1>, std::move(e)) {}

    bool ok() const { return m_v.index() == 0; }
    explicit operator bool() const { return ok(); }
    T& value() & { return std::get<0>(m_v); }
    const T& value() const& { return std::get<0>(m_v); }
    T&& value() && { return std::get<0>(std::move(m_v)); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    const Error& error() const { return std::get<1>(m_v); }

private:
    std::variant<T, Error> m_v;
};

// Result<void>
struct Ok {};
using Status = Result<Ok>;
inline Status okStatus() { return Ok{}; }

// Runs fn() (returning a Result or Status); an exception escaping it (std::bad_alloc from a hostile size
// that slipped through, a library's std::exception) becomes an Error instead of std::terminate. For the
// entry points that run core jobs: the CLI commands and the GUI's job runners.
template <class F>
auto runGuarded(F&& fn) -> decltype(fn()) {
    try {
        return fn();
    } catch (const std::bad_alloc&) {
        return makeError("out of memory");
    } catch (const std::exception& e) {
        return makeError(std::string("internal error: ") + e.what());
    } catch (...) {
        return makeError("internal error");
    }
}

}  // namespace qz
