// Errors as values. Bad input (a corrupt file, a wrong config, an unknown
// architecture) is reported to the caller as an Error naming what is wrong; it
// never aborts the process or the wasm module. An Error carries a code the
// caller can branch on (the wasm API hands it to JS as HeadscopeError.code,
// named by error_code_name) and a message for people. Result<T> holds either
// a value or an Error; `Status` is a Result that carries no value.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace hs {

enum class ErrorCode {
  invalid_argument,  // a call's own argument: ids, head indices, options, names
  bad_file,          // a file breaks its format's rules (safetensors, JSON)
  bad_config,        // config.json is malformed or inconsistent
  unsupported,       // valid, but not something headscope handles (architecture, dtype)
  bad_checkpoint,    // the tensors do not fit the config (missing, misshapen, ambiguous)
  too_large,         // over a limit: the context, the tensor count, the memory
  cancelled,         // the caller's progress callback asked to stop
  out_of_memory,     // an allocation failed
  no_model,          // the call needs a loaded model
};

// The code's name as JS sees it: "invalid_argument", "bad_file", ...
inline const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_argument:
      return "invalid_argument";
    case ErrorCode::bad_file:
      return "bad_file";
    case ErrorCode::bad_config:
      return "bad_config";
    case ErrorCode::unsupported:
      return "unsupported";
    case ErrorCode::bad_checkpoint:
      return "bad_checkpoint";
    case ErrorCode::too_large:
      return "too_large";
    case ErrorCode::cancelled:
      return "cancelled";
    case ErrorCode::out_of_memory:
      return "out_of_memory";
    case ErrorCode::no_model:
      return "no_model";
  }
  return "invalid_argument";
}

struct Error {
  ErrorCode code = ErrorCode::invalid_argument;
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

inline Error make_error(ErrorCode code, std::string message) { return Error{code, std::move(message)}; }
// An invalid_argument error.
inline Error make_error(std::string message) {
  return Error{ErrorCode::invalid_argument, std::move(message)};
}

}  // namespace hs

// Propagates the error of an expression of type Result<...> out of the
// enclosing function, which must return a Result of any type.
#define HS_TRY(expr)                                      \
  do {                                                    \
    auto&& hs_try_result_ = (expr);                       \
    if (!hs_try_result_.ok()) return hs_try_result_.error(); \
  } while (0)
