// Errors as values. Bad input (a corrupt file, a wrong config, an unknown
// architecture) is reported to the caller as an Error naming what is wrong; it
// never aborts the process or the wasm module. Result<T> holds either a value
// or an Error; `Status` is a Result that carries no value.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace hs {

struct Error {
  std::string message;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}
  Result(Error error) : state_(std::move(error)) {}

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, Error> state_;
};

struct Ok {};
using Status = Result<Ok>;

inline Error make_error(std::string message) { return Error{std::move(message)}; }

}  // namespace hs

// Propagates the error of an expression of type Result<...> out of the
// enclosing function, which must return a Result of any type.
#define HS_TRY(expr)                                      \
  do {                                                    \
    auto&& hs_try_result_ = (expr);                       \
    if (!hs_try_result_.ok()) return hs_try_result_.error(); \
  } while (0)
