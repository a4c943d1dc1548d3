// SPDX-License-Identifier: MIT
// TLS settings for https:// endpoints, and whether this build speaks TLS at all (AMB_WITH_TLS).
#pragma once

#include "amb/address.hpp"

#include <memory>
#include <string>
#include <vector>

// OpenSSL is a dependency only when asked for: CMake's -DAMB_TLS=ON defines AMB_WITH_TLS=1 on amb::amb
// (a project using the headers directly defines it and links OpenSSL itself).
#ifndef AMB_WITH_TLS
#define AMB_WITH_TLS 0
#endif

namespace amb {

/// True when this build can talk to https:// endpoints.
inline constexpr bool tls_available = AMB_WITH_TLS != 0;

/// Files for a TLS client, named as etcdctl's --cacert, --cert and --key. The server's certificate
/// is always verified, and its name (or IP address) checked against the endpoint's host.
struct tls_options {
  std::string ca_file{};    ///< PEM CA bundle to trust; empty = the system's default CA paths
  std::string cert_file{};  ///< PEM client certificate (chain) for servers that ask for one; empty = none
  std::string key_file{};   ///< PEM private key of cert_file; empty = read it from cert_file
  /// True when any file is set.
  bool any() const noexcept { return !ca_file.empty() || !cert_file.empty() || !key_file.empty(); }
};

namespace detail {
class tls_client_context;  // defined in amb/tls_stream.hpp, only when AMB_WITH_TLS
}  // namespace detail

/// A loaded TLS client configuration, shared by every connection that uses it (null = none).
using tls_context_ptr = std::shared_ptr<detail::tls_client_context>;

/// True when some endpoint in `list` is https://.
inline bool any_tls(const std::vector<endpoint>& list) noexcept {
  for (const auto& e : list)
    if (e.tls) return true;
  return false;
}

/// In a build without TLS, the one-line error for the first https:// endpoint in `list`
/// ("https://a:2379: this build has no TLS support (configure with -DAMB_TLS=ON)"); "" otherwise.
inline std::string tls_unsupported_error(const std::vector<endpoint>& list) {
  if (tls_available) return {};
  for (const auto& e : list)
    if (e.tls) return e.to_string() + ": this build has no TLS support (configure with -DAMB_TLS=ON)";
  return {};
}

}  // namespace amb
