// SPDX-License-Identifier: MIT
// Splits a byte stream into '\n'-terminated lines (etcd watch and Docker /events: one JSON object a line).
#pragma once

#include "amb/error.hpp"

#include <cstddef>
#include <string>
#include <string_view>
#include <system_error>

namespace amb::detail {

/// Accumulates de-chunked body bytes and hands out complete lines, whatever the chunk boundaries were.
/// Lines are given without their "\n" (and without a "\r" before it); empty lines are skipped.
class line_splitter {
public:
  /// A splitter refusing lines longer than `max_line_length` bytes (errc::line_too_long).
  explicit line_splitter(std::size_t max_line_length = 16 * 1024 * 1024) : max_(max_line_length) {}

  /// Adds `bytes`; calls on_line(std::string_view) for each complete, non-empty line. Once a line is
  /// too long, returns errc::line_too_long (now and on every later call) and emits nothing more.
  template <class OnLine>
  std::error_code feed(std::string_view bytes, OnLine&& on_line) {
    if (failed_) return errc::line_too_long;
    while (!bytes.empty()) {
      auto nl = bytes.find('\n');
      if (nl == std::string_view::npos) {
        // Checked before appending, so a line that never ends costs at most the limit, never the next
        // doubling of the buffer. One extra byte may be the '\r' of a line exactly at the limit.
        const std::size_t size = buf_.size() + bytes.size();
        if (size > max_ + 1 || (size == max_ + 1 && bytes.back() != '\r')) return fail();
        buf_.append(bytes);
        return {};
      }
      std::string_view line;
      if (buf_.empty()) {
        line = bytes.substr(0, nl);  // the common case: no copy
      } else {
        if (buf_.size() + nl > max_ + 1) return fail();  // too long even without a '\r': do not grow for it
        buf_.append(bytes.substr(0, nl));
        line = buf_;
      }
      bytes.remove_prefix(nl + 1);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.size() > max_) return fail();
      if (!line.empty()) {
        // Clear the buffer only after the callback: `line` may point into it.
        struct clear_on_exit {
          std::string& s;
          ~clear_on_exit() { s.clear(); }
        } guard{buf_};
        on_line(line);
      } else {
        buf_.clear();
      }
    }
    return {};
  }

  /// The unterminated rest (for the end of a stream: etcd's final error object has no "\n"); then empty.
  std::string take_rest() {
    std::string rest;
    rest.swap(buf_);
    if (!rest.empty() && rest.back() == '\r') rest.pop_back();
    return rest;
  }

  /// Bytes of the current, unterminated line.
  std::size_t pending() const noexcept { return buf_.size(); }

  /// Forgets everything, including a line_too_long failure.
  void reset() noexcept {
    buf_.clear();
    failed_ = false;
  }

private:
  std::error_code fail() {
    failed_ = true;
    buf_.clear();
    return errc::line_too_long;
  }

  std::size_t max_;
  std::string buf_;
  bool failed_ = false;
};

}  // namespace amb::detail
