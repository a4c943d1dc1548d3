// HTTP/1.1 responses and their push parser: status line, headers, Content-Length, chunked
// (with extensions and trailers), close-delimited and body-less responses, whole or streamed.
#pragma once

#include "amb/error.hpp"

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace amb {

/// One header field as received (name keeps the server's spelling).
struct http_header {
  std::string name;   ///< field name, compared case-insensitively
  std::string value;  ///< field value, without surrounding blanks
};

/// A parsed HTTP response.
struct http_response {
  int status = 0;                     ///< e.g. 200
  std::string reason;                 ///< e.g. "OK" (may be empty)
  int version_minor = 1;              ///< 1 for HTTP/1.1, 0 for HTTP/1.0
  std::vector<http_header> headers;   ///< header fields in arrival order
  std::vector<http_header> trailers;  ///< trailer fields after a chunked body (etcd's Grpc-Trailer-*)
  std::string body;                   ///< the de-chunked body (empty when streamed)

  /// The value of the first header named `name` (case-insensitive), "" when absent.
  std::string_view header(std::string_view name) const;
  /// True when a header named `name` (case-insensitive) is present.
  bool has_header(std::string_view name) const;
};

/// What feed() / finish_eof() say about the message.
enum class parse_state {
  need_more,  ///< every byte given was consumed; feed more
  head_done,  ///< only with pause_after_head(true): the head is complete, body not started
  done,       ///< the response is complete; bytes after it were left unconsumed
  error,      ///< the input is not a valid response; see parse_result::error
};

/// The answer of one feed() or finish_eof() call.
struct parse_result {
  std::size_t consumed = 0;             ///< bytes of the input that were used
  parse_state state = parse_state::need_more;
  std::error_code error;                ///< an amb::errc when state == error
};

namespace detail {
/// ASCII case-insensitive equality (HTTP field names).
inline bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}
} // namespace detail

inline std::string_view http_response::header(std::string_view name) const {
  for (auto& h : headers)
    if (detail::iequals(h.name, name)) return h.value;
  return {};
}

inline bool http_response::has_header(std::string_view name) const {
  for (auto& h : headers)
    if (detail::iequals(h.name, name)) return true;
  return false;
}

/// Push parser for one HTTP/1.x response (being written).
class http_response_parser;

} // namespace amb
