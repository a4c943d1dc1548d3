// SPDX-License-Identifier: MIT
// HTTP/1.1 responses and their push parser: status line, headers, Content-Length, chunked
// (with extensions and trailers), close-delimited and body-less responses, whole or streamed.
#pragma once

#include "amb/detail/chunked_decoder.hpp"
#include "amb/error.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
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
  std::size_t consumed = 0;  ///< bytes of the input that were used
  parse_state state = parse_state::need_more;
  std::error_code error;  ///< an amb::errc when state == error
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
}  // namespace detail

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

namespace detail {
/// Calls f(token) for each comma-separated, blank-trimmed, non-empty item of a header value.
template <class F>
void for_each_list_item(std::string_view value, F&& f) {
  while (true) {
    auto comma = value.find(',');
    auto item = value.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (!item.empty()) f(item);
    if (comma == std::string_view::npos) return;
    value.remove_prefix(comma + 1);
  }
}
}  // namespace detail

/// Push parser for one HTTP/1.x response. The socket code only moves bytes; feed() takes them in
/// pieces of any size and says need_more / done / error. Bytes after a complete response are left
/// unconsumed (the next response on a kept-alive connection). By default the body is gathered in
/// response().body; with on_body() it is handed out piece by piece instead (never-ending streams).
class http_response_parser {
public:
  /// The response answers a HEAD request: no body whatever the headers say.
  void head_request(bool yes) noexcept { head_request_ = yes; }
  /// Largest status line + header block (and, separately, trailer block) accepted: errc::header_too_large.
  void max_header_bytes(std::size_t n) noexcept { max_header_ = n; }
  /// Longest single line (status, header, chunk size, trailer) accepted: errc::line_too_long.
  void max_line_length(std::size_t n) noexcept { max_line_ = n; }
  /// Largest body gathered in memory (errc::body_too_large / chunk_too_large); not applied with on_body().
  void max_body_bytes(std::size_t n) noexcept { max_body_ = n; }
  /// When set, feed() stops once after the head and returns head_done (unless the response has no body),
  /// so the caller can look at the status before choosing on_body().
  void pause_after_head(bool yes) noexcept { pause_after_head_ = yes; }
  /// Streaming mode: body bytes go to `sink` as they arrive instead of into response().body.
  void on_body(std::function<void(std::string_view)> sink) { sink_ = std::move(sink); }

  /// Parses as much of `bytes` as belongs to this response.
  parse_result feed(std::string_view bytes) {
    parse_result r;
    if (state_ == state::error) return error_result(0);
    if (state_ == state::done) {
      r.state = parse_state::done;
      return r;
    }
    if (!bytes.empty()) started_ = true;
    std::size_t pos = 0;
    while (state_ == state::status_line || state_ == state::headers) {
      if (pos == bytes.size()) return need_more(pos);
      if (state_ == state::status_line && !prefix_ok(bytes.substr(pos))) return fail(pos, errc::bad_status_line);
      std::size_t used = 0;
      std::string_view line;
      auto s = lines_.take(bytes.substr(pos), used, max_line_, line);
      pos += used;
      head_bytes_ += used;
      if (head_bytes_ > max_header_) return fail(pos, errc::header_too_large);
      if (s == detail::line_reader::status::too_long) return fail(pos, errc::line_too_long);
      if (s == detail::line_reader::status::need_more) return need_more(pos);
      if (state_ == state::status_line) {
        if (!parse_status_line(line)) return fail(pos, errc::bad_status_line);
        state_ = state::headers;
        continue;
      }
      if (!line.empty()) {
        if (line.front() == ' ' || line.front() == '\t') return fail(pos, errc::bad_header);  // obs-fold: refused
        std::string_view name, value;
        if (auto ec = detail::parse_header_line(line, name, value)) return fail(pos, ec);
        response_.headers.push_back({std::string(name), std::string(value)});
        continue;
      }
      // End of the head: choose how the body is framed.
      if (auto ec = choose_body(); ec) return fail(pos, ec);
      if (state_ == state::done) return done_result(pos);
      if (pause_after_head_) {
        r.consumed = pos;
        r.state = parse_state::head_done;
        return r;
      }
    }
    return parse_body(bytes, pos);
  }

  /// The connection reached EOF: completes a close-delimited body, or says what was cut short
  /// (connection_closed before the head ended, body_truncated, chunk_truncated).
  parse_result finish_eof() {
    switch (state_) {
      case state::done: return done_result(0);
      case state::error: return error_result(0);
      case state::status_line:
      case state::headers: return fail(0, errc::connection_closed);
      case state::body_length: return fail(0, errc::body_truncated);
      case state::body_chunked: return fail(0, errc::chunk_truncated);
      case state::body_eof: state_ = state::done; return done_result(0);
    }
    return fail(0, errc::connection_closed);
  }

  /// True once at least one byte was fed (a connection closed before that never answered).
  bool started() const noexcept { return started_; }
  /// True once the status line and headers are complete.
  bool head_done() const noexcept { return state_ != state::status_line && state_ != state::headers && !head_failed_; }
  /// True once the whole response is complete.
  bool done() const noexcept { return state_ == state::done; }
  /// After done(): the connection may carry another request (HTTP/1.1 without "Connection: close",
  /// or HTTP/1.0 with "keep-alive", and a body that did not end by EOF).
  bool keep_alive() const noexcept {
    if (state_ != state::done || close_delimited_ || response_.status == 101) return false;
    bool close = false, keep = false;
    for (auto& h : response_.headers)
      if (detail::iequals(h.name, "Connection"))
        detail::for_each_list_item(h.value, [&](std::string_view t) {
          if (detail::iequals(t, "close")) close = true;
          if (detail::iequals(t, "keep-alive")) keep = true;
        });
    if (close) return false;
    return response_.version_minor >= 1 || keep;
  }
  /// The response parsed so far.
  const http_response& response() const noexcept { return response_; }
  /// The response parsed so far (mutable, e.g. to move the body out).
  http_response& response() noexcept { return response_; }
  /// Moves the response out.
  http_response release() { return std::move(response_); }

  /// Ready for the next response on the same connection; options and limits are kept.
  void reset() {
    state_ = state::status_line;
    response_ = http_response{};
    lines_.clear();
    chunks_.reset();
    head_bytes_ = 0;
    remaining_ = 0;
    started_ = false;
    close_delimited_ = false;
    head_failed_ = false;
    error_ = {};
  }

private:
  enum class state { status_line, headers, body_length, body_chunked, body_eof, done, error };

  // Early refusal of garbage (an HTML page, another protocol): the first bytes must spell "HTTP/".
  bool prefix_ok(std::string_view more) const noexcept {
    constexpr std::string_view magic = "HTTP/";
    std::size_t have = lines_.pending();
    if (have >= magic.size()) return true;
    auto n = std::min(magic.size() - have, more.size());
    return more.substr(0, n) == magic.substr(have, n);
  }

  bool parse_status_line(std::string_view line) {
    // HTTP/1.x SP 3DIGIT [SP reason]; a missing reason (and its space) is tolerated.
    if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[7] < '0' || line[7] > '9' || line[8] != ' ')
      return false;
    int status = 0;
    for (std::size_t i = 9; i < 12; ++i) {
      if (line[i] < '0' || line[i] > '9') return false;
      status = status * 10 + (line[i] - '0');
    }
    if (status < 100) return false;
    if (line.size() > 12 && line[12] != ' ') return false;
    auto reason = line.size() > 13 ? line.substr(13) : std::string_view{};
    for (char c : reason)
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) return false;
    response_.version_minor = line[7] - '0';
    response_.status = status;
    response_.reason = std::string(reason);
    return true;
  }

  std::error_code choose_body() {
    const int s = response_.status;
    if (head_request_ || (s >= 100 && s < 200) || s == 204 || s == 304) {
      state_ = state::done;
      return {};
    }
    // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3); chunked must be the last coding,
    // otherwise the body runs until EOF.
    bool has_te = false;
    std::string_view last_coding;
    for (auto& h : response_.headers)
      if (detail::iequals(h.name, "Transfer-Encoding")) {
        has_te = true;
        detail::for_each_list_item(h.value, [&](std::string_view t) { last_coding = t; });
      }
    if (has_te) {
      if (detail::iequals(last_coding, "chunked")) {
        state_ = state::body_chunked;
        chunks_.max_line_length(max_line_);
        chunks_.max_trailer_bytes(max_header_);
      } else {
        state_ = state::body_eof;
        close_delimited_ = true;
      }
      return {};
    }
    bool has_length = false, bad = false;
    std::uint64_t length = 0;
    for (auto& h : response_.headers)
      if (detail::iequals(h.name, "Content-Length")) {
        bool any = false;
        detail::for_each_list_item(h.value, [&](std::string_view t) {
          any = true;
          std::uint64_t v = 0;
          for (char c : t) {
            if (c < '0' || c > '9' || v > (std::numeric_limits<std::uint64_t>::max() - 9) / 10) {
              bad = true;
              return;
            }
            v = v * 10 + static_cast<unsigned>(c - '0');
          }
          if (has_length && v != length) bad = true;  // conflicting duplicates: the framing is unknowable
          has_length = true;
          length = v;
        });
        if (!any) bad = true;
      }
    if (bad) return errc::bad_content_length;
    if (has_length) {
      remaining_ = length;
      state_ = length == 0 ? state::done : state::body_length;
      return {};
    }
    state_ = state::body_eof;
    close_delimited_ = true;
    return {};
  }

  parse_result parse_body(std::string_view bytes, std::size_t pos) {
    switch (state_) {
      case state::body_length: {
        if (!sink_ && remaining_ > max_body_ - std::min(max_body_, response_.body.size()))
          return fail(pos, errc::body_too_large);
        auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, bytes.size() - pos));
        remaining_ -= n;
        if (remaining_ == 0) state_ = state::done;
        deliver(bytes.substr(pos, n));
        pos += n;
        return state_ == state::done ? done_result(pos) : need_more(pos);
      }
      case state::body_eof: {
        auto piece = bytes.substr(pos);
        if (!sink_ && response_.body.size() + piece.size() > max_body_) return fail(pos, errc::body_too_large);
        deliver(piece);
        return need_more(bytes.size());
      }
      case state::body_chunked: {
        chunks_.max_chunk_size(sink_ ? std::numeric_limits<std::uint64_t>::max() : max_body_);
        bool too_large = false;
        auto r = chunks_.feed(bytes.substr(pos), [&](std::string_view piece) {
          if (!sink_ && response_.body.size() + piece.size() > max_body_) too_large = true;
          if (!too_large) deliver(piece);
        });
        pos += r.consumed;
        if (too_large) return fail(pos, errc::body_too_large);
        if (r.error) return fail(pos, r.error);
        if (!r.done) return need_more(pos);
        for (auto& [name, value] : chunks_.trailers()) response_.trailers.push_back({name, value});
        state_ = state::done;
        return done_result(pos);
      }
      default: return done_result(pos);
    }
  }

  void deliver(std::string_view piece) {
    if (piece.empty()) return;
    if (sink_)
      sink_(piece);
    else
      response_.body.append(piece);
  }

  static parse_result need_more(std::size_t consumed) {
    parse_result r;
    r.consumed = consumed;
    r.state = parse_state::need_more;
    return r;
  }
  static parse_result done_result(std::size_t consumed) {
    parse_result r;
    r.consumed = consumed;
    r.state = parse_state::done;
    return r;
  }
  parse_result error_result(std::size_t consumed) const {
    parse_result r;
    r.consumed = consumed;
    r.state = parse_state::error;
    r.error = error_;
    return r;
  }
  parse_result fail(std::size_t consumed, std::error_code ec) {
    if (state_ == state::status_line || state_ == state::headers) head_failed_ = true;
    state_ = state::error;
    error_ = ec;
    return error_result(consumed);
  }

  state state_ = state::status_line;
  http_response response_;
  detail::line_reader lines_;
  detail::chunked_decoder chunks_;
  std::function<void(std::string_view)> sink_;
  std::size_t head_bytes_ = 0;
  std::uint64_t remaining_ = 0;
  std::size_t max_header_ = 64 * 1024;
  std::size_t max_line_ = 8 * 1024;
  std::size_t max_body_ = 64 * 1024 * 1024;
  bool head_request_ = false;
  bool pause_after_head_ = false;
  bool started_ = false;
  bool close_delimited_ = false;
  bool head_failed_ = false;
  std::error_code error_;
};

}  // namespace amb
