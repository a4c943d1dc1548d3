// SPDX-License-Identifier: MIT
// amb's own error codes (amb::errc) and their std::error_category.
#pragma once

#include <string>
#include <system_error>

namespace amb {

/// Errors raised by amb itself; system and Asio errors keep their own categories.
enum class errc {
  // --- addresses and input ---
  bad_address = 1,  ///< text is not host:port, [v6]:port or a known URL form
  bad_port,         ///< port missing, not a number, or outside 1..65535
  bad_value,        ///< a registry value that is neither the seed's JSON nor host:port
  // --- HTTP parser ---
  bad_status_line,       ///< first line is not "HTTP/1.x NNN reason"
  bad_header,            ///< a header line without a colon, or with a bad name
  header_too_large,      ///< the header block exceeds the parser's limit
  line_too_long,         ///< one line (status, header, chunk size) exceeds the limit
  bad_content_length,    ///< Content-Length missing digits, duplicated with other values, or too big
  bad_chunk_size,        ///< a chunk-size line that is not hexadecimal
  bad_chunk_terminator,  ///< chunk data not followed by CRLF
  chunk_too_large,       ///< a chunk size beyond the body limit
  body_too_large,        ///< a body beyond the client's limit
  body_truncated,        ///< EOF before Content-Length bytes arrived
  chunk_truncated,       ///< EOF inside a chunked body, before the last chunk
  // --- transport ---
  timeout,            ///< connect, request or read took longer than allowed
  connection_closed,  ///< the peer closed before a response began
  // --- servers ---
  bad_response,             ///< a server answered with something that is not the protocol (HTML, garbage)
  http_status,              ///< a server answered with an unexpected HTTP status
  etcd_error,               ///< etcd returned an error object (gRPC code and message kept by the caller)
  lease_lost,               ///< etcd says the lease is gone (expired or unknown)
  watch_canceled,           ///< etcd canceled a watch for a reason other than compaction
  compacted,                ///< the requested revision was compacted away
  no_endpoint,              ///< every configured endpoint failed
  no_such_container,        ///< the engine does not know the container
  port_not_published,       ///< the container does not publish the private port
  docker_error,             ///< the engine returned an error message
  no_instance,              ///< the balancer has no live instance to offer
  tls_unsupported,          ///< an https:// endpoint in a build without TLS (AMB_WITH_TLS unset)
  tls_certificate_refused,  ///< a TLS server rejected our client certificate, or wanted one we did not give
};

namespace detail {
class amb_category final : public std::error_category {
public:
  const char* name() const noexcept override { return "amb"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::bad_address: return "bad address";
      case errc::bad_port: return "bad port";
      case errc::bad_value: return "bad registry value";
      case errc::bad_status_line: return "bad HTTP status line";
      case errc::bad_header: return "bad HTTP header line";
      case errc::header_too_large: return "HTTP header block too large";
      case errc::line_too_long: return "HTTP line too long";
      case errc::bad_content_length: return "bad Content-Length";
      case errc::bad_chunk_size: return "bad chunk size";
      case errc::bad_chunk_terminator: return "chunk data not followed by CRLF";
      case errc::chunk_too_large: return "chunk too large";
      case errc::body_too_large: return "HTTP body too large";
      case errc::body_truncated: return "connection closed before the body ended";
      case errc::chunk_truncated: return "connection closed inside a chunked body";
      case errc::timeout: return "timed out";
      case errc::connection_closed: return "connection closed by peer";
      case errc::bad_response: return "not a valid response";
      case errc::http_status: return "unexpected HTTP status";
      case errc::etcd_error: return "etcd error";
      case errc::lease_lost: return "lease lost";
      case errc::watch_canceled: return "watch canceled";
      case errc::compacted: return "revision compacted";
      case errc::no_endpoint: return "no endpoint reachable";
      case errc::no_such_container: return "no such container";
      case errc::port_not_published: return "port not published";
      case errc::docker_error: return "container engine error";
      case errc::no_instance: return "no instance available";
      case errc::tls_unsupported: return "this build has no TLS support (configure with -DAMB_TLS=ON)";
      case errc::tls_certificate_refused:
        return "the server refused our TLS client certificate (none given, or not trusted by it)";
    }
    return "unknown amb error";
  }
};
}  // namespace detail

/// The "amb" error category.
inline const std::error_category& amb_category() noexcept {
  static const detail::amb_category category;
  return category;
}

/// Makes errc usable as std::error_code (found by ADL).
inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), amb_category()}; }

}  // namespace amb

template <>
struct std::is_error_code_enum<amb::errc> : std::true_type {};
