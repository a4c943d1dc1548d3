// SPDX-License-Identifier: MIT
// Chunked transfer coding (RFC 9112 §7.1) as a push decoder: sizes with extensions, data, trailers.
#pragma once

#include "amb/error.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace amb::detail {

/// Gathers one line across feeds. Lines end with "\n"; a "\r" before it is dropped, so bare LF
/// endings are accepted too (RFC 9112 §2.2 allows it). The length limit counts the content only.
class line_reader {
public:
  enum class status { complete, need_more, too_long };

  /// Takes bytes from `in` (sets `used`) until a line is complete; `line` stays valid until the next take().
  status take(std::string_view in, std::size_t& used, std::size_t max_length, std::string_view& line) {
    if (complete_) {
      buf_.clear();
      complete_ = false;
    }
    auto nl = in.find('\n');
    if (nl == std::string_view::npos) {
      buf_.append(in);
      used = in.size();
      // One extra byte may be the '\r' of a line that is exactly at the limit.
      if (buf_.size() > max_length + 1 || (buf_.size() == max_length + 1 && buf_.back() != '\r'))
        return status::too_long;
      return status::need_more;
    }
    buf_.append(in.substr(0, nl));
    used = nl + 1;
    if (!buf_.empty() && buf_.back() == '\r') buf_.pop_back();
    if (buf_.size() > max_length) return status::too_long;
    complete_ = true;
    line = buf_;
    return status::complete;
  }

  /// Bytes of the current, unfinished line.
  std::size_t pending() const noexcept { return complete_ ? 0 : buf_.size(); }
  /// Forgets any partial line.
  void clear() noexcept {
    buf_.clear();
    complete_ = false;
  }

private:
  std::string buf_;
  bool complete_ = false;
};

/// True for the characters allowed in a field name (RFC 9110 "tchar").
inline bool is_token_char(char c) noexcept {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~': return true;
    default: return false;
  }
}

/// Splits "Name: value" (no line ending) into `name` and `value` (views into `line`); errc::bad_header
/// when the name is empty or not a token, the colon is missing, or the value holds a control character.
inline std::error_code parse_header_line(std::string_view line, std::string_view& name,
                                         std::string_view& value) noexcept {
  auto colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return errc::bad_header;
  name = line.substr(0, colon);
  for (char c : name)
    if (!is_token_char(c)) return errc::bad_header;  // also refuses "Name :" (RFC 9112 §5.1)
  value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  for (char c : value)
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) return errc::bad_header;
  return {};
}

/// Decodes a chunked body pushed to it in pieces of any size. Data goes to a sink as it arrives;
/// trailer fields after the last chunk are kept (etcd sends "Grpc-Trailer-Content-Type" there).
class chunked_decoder {
public:
  /// The answer of one feed(): bytes used, whether the last chunk and trailers are complete, or an error.
  struct result {
    std::size_t consumed = 0;  ///< bytes of the input used (bytes after the body are left alone)
    bool done = false;         ///< the terminating chunk and the trailer section are complete
    std::error_code
        error;  ///< bad_chunk_size, bad_chunk_terminator, chunk_too_large, line_too_long, bad_header, header_too_large
  };

  /// Longest chunk-size or trailer line accepted (line_too_long beyond).
  void max_line_length(std::size_t n) noexcept { max_line_ = n; }
  /// Largest single chunk accepted (chunk_too_large beyond).
  void max_chunk_size(std::uint64_t n) noexcept { max_chunk_ = n; }
  /// Largest trailer section accepted (header_too_large beyond; counted at the end of each trailer line).
  void max_trailer_bytes(std::size_t n) noexcept { max_trailer_ = n; }

  /// Decodes from `in`; calls sink(std::string_view) with each piece of chunk data.
  template <class Sink>
  result feed(std::string_view in, Sink&& sink) {
    result r;
    if (state_ == state::error) {
      r.error = error_;
      return r;
    }
    std::size_t pos = 0;
    while (state_ != state::done) {
      if (state_ == state::data) {
        if (pos == in.size()) break;
        auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, in.size() - pos));
        remaining_ -= n;
        if (remaining_ == 0) state_ = state::data_cr;
        pos += n;
        sink(in.substr(pos - n, n));
        continue;
      }
      if (state_ == state::data_cr || state_ == state::data_lf) {
        if (pos == in.size()) break;
        char c = in[pos];
        if (state_ == state::data_cr && c == '\r') {
          state_ = state::data_lf;
          ++pos;
        } else if (c == '\n') {  // a bare LF is tolerated as a line ending, as everywhere else
          state_ = state::size_line;
          ++pos;
        } else {
          return fail(r, pos, errc::bad_chunk_terminator);
        }
        continue;
      }
      // size_line or trailer: line based.
      if (pos == in.size()) break;
      std::size_t used = 0;
      std::string_view line;
      auto s = lines_.take(in.substr(pos), used, max_line_, line);
      pos += used;
      if (s == line_reader::status::too_long) return fail(r, pos, errc::line_too_long);
      if (state_ == state::trailer) {
        trailer_bytes_ += used;
        // Checked on whole lines only, so that the answer never depends on where the bytes were
        // split (an unfinished line is bounded by max_line_length meanwhile). Found by fuzzing.
        if (s == line_reader::status::complete && trailer_bytes_ > max_trailer_)
          return fail(r, pos, errc::header_too_large);
      }
      if (s == line_reader::status::need_more) break;
      if (state_ == state::size_line) {
        auto ec = parse_size(line);
        if (ec) return fail(r, pos, ec);
        state_ = remaining_ == 0 ? state::trailer : state::data;
      } else if (line.empty()) {
        state_ = state::done;
      } else {
        std::string_view name, value;
        if (auto ec = parse_header_line(line, name, value)) return fail(r, pos, ec);
        trailers_.emplace_back(std::string(name), std::string(value));
      }
    }
    r.consumed = pos;
    r.done = state_ == state::done;
    return r;
  }

  /// The connection ended: fine after the last chunk, chunk_truncated anywhere else.
  std::error_code finish_eof() const noexcept {
    if (state_ == state::error) return error_;
    return state_ == state::done ? std::error_code{} : make_error_code(errc::chunk_truncated);
  }

  /// True once the terminating chunk and its trailer section are complete.
  bool done() const noexcept { return state_ == state::done; }
  /// Trailer fields received after the last chunk, in arrival order.
  const std::vector<std::pair<std::string, std::string>>& trailers() const noexcept { return trailers_; }
  /// Ready for a new body (limits are kept).
  void reset() {
    state_ = state::size_line;
    remaining_ = 0;
    trailer_bytes_ = 0;
    trailers_.clear();
    lines_.clear();
    error_ = {};
  }

private:
  enum class state { size_line, data, data_cr, data_lf, trailer, done, error };

  std::error_code parse_size(std::string_view line) {
    std::uint64_t size = 0;
    std::size_t i = 0;
    for (; i < line.size(); ++i) {
      char c = line[i];
      unsigned digit;
      if (c >= '0' && c <= '9')
        digit = static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f')
        digit = static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        digit = static_cast<unsigned>(c - 'A' + 10);
      else
        break;
      if (size > (std::numeric_limits<std::uint64_t>::max() >> 4)) return errc::chunk_too_large;
      size = (size << 4) | digit;
    }
    if (i == 0) return errc::bad_chunk_size;
    // Whitespace before an extension is tolerated (RFC 9112 "BWS"); the extension itself is ignored.
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i < line.size() && line[i] != ';') return errc::bad_chunk_size;
    if (size > max_chunk_) return errc::chunk_too_large;
    remaining_ = size;
    return {};
  }

  result& fail(result& r, std::size_t pos, std::error_code ec) {
    state_ = state::error;
    error_ = ec;
    r.consumed = pos;
    r.error = ec;
    return r;
  }

  state state_ = state::size_line;
  std::uint64_t remaining_ = 0;
  std::size_t max_line_ = 8 * 1024;
  std::uint64_t max_chunk_ = std::numeric_limits<std::uint64_t>::max();
  std::size_t max_trailer_ = 64 * 1024;
  std::size_t trailer_bytes_ = 0;
  std::vector<std::pair<std::string, std::string>> trailers_;
  line_reader lines_;
  std::error_code error_;
};

}  // namespace amb::detail
