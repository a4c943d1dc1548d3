// SPDX-License-Identifier: MIT
// Errors etcd returns ({"error","message","code"}): a gRPC-code error category and an exception keeping etcd's message.
#pragma once

#include <string>
#include <system_error>

namespace amb {

/// The gRPC status codes etcd puts in the "code" field of its error objects (branch on these, not on HTTP status).
enum class grpc_code {
  ok = 0,
  cancelled = 1,
  unknown = 2,
  invalid_argument = 3,  ///< bad request, "user name is empty" (no token), bad password
  deadline_exceeded = 4,
  not_found = 5,  ///< "requested lease not found"
  already_exists = 6,
  permission_denied = 7,
  resource_exhausted = 8,
  failed_precondition = 9,  ///< "lease already exists"
  aborted = 10,
  out_of_range = 11,  ///< "required revision has been compacted", future revision
  unimplemented = 12,
  internal = 13,
  unavailable = 14,  ///< member without leader or shutting down: try another endpoint
  data_loss = 15,
  unauthenticated = 16,  ///< "invalid auth token": re-authenticate
};

namespace detail {
class grpc_category_impl final : public std::error_category {
public:
  const char* name() const noexcept override { return "grpc"; }
  std::string message(int value) const override {
    static const char* const names[] = {
        "ok",        "cancelled",      "unknown",           "invalid argument",   "deadline exceeded",
        "not found", "already exists", "permission denied", "resource exhausted", "failed precondition",
        "aborted",   "out of range",   "unimplemented",     "internal",           "unavailable",
        "data loss", "unauthenticated"};
    if (value >= 0 && value <= 16) return names[value];
    return "gRPC code " + std::to_string(value);
  }
};
}  // namespace detail

/// The "grpc" error category: values are gRPC status codes as etcd reports them.
inline const std::error_category& grpc_category() noexcept {
  static const detail::grpc_category_impl category;
  return category;
}

/// Makes grpc_code usable as std::error_code (found by ADL).
inline std::error_code make_error_code(grpc_code c) noexcept { return {static_cast<int>(c), grpc_category()}; }

/// An error object returned by etcd. code() is in grpc_category(); what() is
/// "<step>: <etcd's message>", e.g. "etcd put /a at http://127.0.0.1:2379: etcdserver: requested lease not found".
class etcd_error : public std::system_error {
public:
  /// `step` names what was attempted; `message` is etcd's text, kept verbatim.
  etcd_error(int code, std::string message, const std::string& step)
      : std::system_error(std::error_code(code, grpc_category()), step),
        message_(std::move(message)),
        what_(step + ": " + message_) {}
  /// etcd's own message, e.g. "etcdserver: requested lease not found".
  const std::string& message() const noexcept { return message_; }
  /// The gRPC code as the enum.
  grpc_code grpc() const noexcept { return static_cast<grpc_code>(code().value()); }
  /// True for the "lease not found" family (put with a dead lease, revoke of a gone lease).
  bool lease_not_found() const noexcept {
    return grpc() == grpc_code::not_found && message_.find("lease not found") != std::string::npos;
  }
  const char* what() const noexcept override { return what_.c_str(); }

private:
  std::string message_;
  std::string what_;
};

}  // namespace amb

template <>
struct std::is_error_code_enum<amb::grpc_code> : std::true_type {};
