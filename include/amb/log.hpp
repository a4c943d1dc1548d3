// SPDX-License-Identifier: MIT
// Logging: one line per event on stderr, "program: level: message", never throws.
#pragma once

#include "amb/parsed.hpp"

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <type_traits>
#include <unistd.h>

namespace amb::log {

/// Severity; lines below the threshold are dropped.
enum class level { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

namespace detail {
inline std::atomic<level>& threshold_ref() noexcept {
  static std::atomic<level> t{level::info};
  return t;
}
inline std::string& program_ref() noexcept {
  static std::string p = "amb";
  return p;
}
}  // namespace detail

/// Sets the program name that prefixes every line (call once at start-up).
inline void set_program(std::string_view name) noexcept {
  try {
    detail::program_ref() = std::string(name);
  } catch (...) {
  }
}
/// The program name that prefixes every line.
inline const std::string& program() noexcept { return detail::program_ref(); }
/// Sets the lowest level that is written.
inline void set_level(level l) noexcept { detail::threshold_ref() = l; }
/// The lowest level that is written.
inline level current_level() noexcept { return detail::threshold_ref(); }
/// True when a line at `l` would be written (skip building costly messages otherwise).
inline bool enabled(level l) noexcept { return l >= current_level() && l != level::off; }

namespace detail {
// Appends `text` with everything a terminal or a log reader could take for structure escaped: control
// characters as \n, \r, \t or \xHH, a backslash doubled, bytes that are not well-formed UTF-8 as \xHH,
// and C1 controls (U+0080..U+009F, which some terminals obey) too. '"' stays as it is: JSON values read
// as they are written, and what keeps a line from being forged is that it stays one line.
inline void append_escaped(std::string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  const auto byte = [&](unsigned char c) {
    out += "\\x";
    out += hex[c >> 4];
    out += hex[c & 15];
  };
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if (c == '\n')
        out += "\\n";
      else if (c == '\r')
        out += "\\r";
      else if (c == '\t')
        out += "\\t";
      else if (c == '\\')
        out += "\\\\";
      else if (c < 0x20 || c == 0x7f)
        byte(c);
      else
        out += static_cast<char>(c);
      ++i;
      continue;
    }
    const std::size_t n = c >= 0xf5 ? 0 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    bool whole = n > 0 && i + n <= text.size();
    for (std::size_t k = 1; whole && k < n; ++k) whole = (static_cast<unsigned char>(text[i + k]) & 0xc0) == 0x80;
    if (whole && c == 0xc2 && static_cast<unsigned char>(text[i + 1]) < 0xa0) whole = false;  // C1 control
    if (!whole) {
      byte(c);
      ++i;
      continue;
    }
    out.append(text.substr(i, n));
    i += n;
  }
}

// The first `limit` bytes of `text`, not ending inside a UTF-8 sequence.
inline std::string_view cut(std::string_view text, std::size_t limit) noexcept {
  if (text.size() <= limit) return text;
  std::size_t end = limit;
  for (int k = 0; k < 3 && end > 0 && (static_cast<unsigned char>(text[end]) & 0xc0) == 0x80; ++k) --end;
  return text.substr(0, end);
}

// " (N bytes)" after a cut text.
inline void append_size(std::string& out, std::size_t size) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, size);
  out += " (";
  out.append(buf, r.ptr);
  out += " bytes)";
}
}  // namespace detail

/// Outside text (a registry value, a key, an argument, a server's body) for a log line or an error
/// message, in double quotes: escaped (see below) so that the line stays one line and cannot be
/// forged, and cut after `limit` bytes with its full size stated: `"hhhh…" (1048582 bytes)`.
/// Escaped are control characters (\n, \r, \t, \x1b...), '\\' and bytes that are not UTF-8.
inline std::string quoted(std::string_view text, std::size_t limit = 80) {
  std::string out = "\"";
  const auto shown = detail::cut(text, limit);
  detail::append_escaped(out, shown);
  if (shown.size() < text.size()) out += "\u2026";
  out += '"';
  if (shown.size() < text.size()) detail::append_size(out, text.size());
  return out;
}

/// Like quoted(), without the quotes: for names that read as part of the line (a key, an etcd prefix),
/// e.g. "instance /services/redis-A/x added". Unchanged for plain printable text.
inline std::string escaped(std::string_view text, std::size_t limit = 200) {
  std::string out;
  const auto shown = detail::cut(text, limit);
  detail::append_escaped(out, shown);
  if (shown.size() < text.size()) {
    out += "\u2026";
    detail::append_size(out, text.size());
  }
  return out;
}

/// Parses "debug", "info", "warn"/"warning", "error", "off"; the error names the text and the choices.
inline parsed<level> parse_level(std::string_view text) {
  parsed<level> r;
  if (text == "debug")
    r.value = level::debug;
  else if (text == "info")
    r.value = level::info;
  else if (text == "warn" || text == "warning")
    r.value = level::warn;
  else if (text == "error")
    r.value = level::error;
  else if (text == "off")
    r.value = level::off;
  else
    r.error = "bad level " + quoted(text) + " (use debug, info, warn, error or off)";
  return r;
}

/// A duration as people write it, for a log line: "250ms", "9s", "1.7s", "90s", "2m", "1h". Below a
/// second in milliseconds; else in seconds, with the decimals it needs (at most three), or in whole
/// minutes or hours when it is one. A measured duration is best rounded first (round_for_log()).
inline std::string duration(std::chrono::milliseconds d) {
  std::string out;
  std::uint64_t ms = 0;
  if (d.count() < 0) {
    out += '-';
    ms = static_cast<std::uint64_t>(-(d.count() + 1)) + 1;  // also for the lowest value
  } else {
    ms = static_cast<std::uint64_t>(d.count());
  }
  const auto number = [&out](std::uint64_t n) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, n);
    out.append(buf, r.ptr);
  };
  if (ms == 0) return out + "0s";
  if (ms < 1000) {
    number(ms);
    return out + "ms";
  }
  if (ms % 3'600'000 == 0) {
    number(ms / 3'600'000);
    return out + "h";
  }
  if (ms % 60'000 == 0) {
    number(ms / 60'000);
    return out + "m";
  }
  number(ms / 1000);
  if (std::uint64_t frac = ms % 1000; frac != 0) {
    char digits[3] = {static_cast<char>('0' + frac / 100), static_cast<char>('0' + frac / 10 % 10),
                      static_cast<char>('0' + frac % 10)};
    std::size_t n = 3;
    while (digits[n - 1] == '0') --n;
    out += '.';
    out.append(digits, n);
  }
  return out + "s";
}

/// A measured duration (how long an outage lasted), rounded as a person would say it: to the
/// millisecond below 1s, to a tenth of a second below 10s ("1.7s"), to the second above ("12s").
template <class Rep, class Period>
std::chrono::milliseconds round_for_log(std::chrono::duration<Rep, Period> d) {
  namespace c = std::chrono;
  const auto ms = c::round<c::milliseconds>(d);
  if (ms < c::seconds(1)) return ms;
  if (ms < c::seconds(10)) return c::duration_cast<c::milliseconds>(c::round<c::duration<std::int64_t, std::deci>>(d));
  return c::duration_cast<c::milliseconds>(c::round<c::seconds>(d));
}

/// A count with its noun agreeing: "1 open connection", "2 open connections", "0 open connections".
/// `plural` is for nouns that do not just take an "s" (count(n, "entry", "entries")).
inline std::string count(std::uint64_t n, std::string_view noun, std::string_view plural = {}) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, n);
  std::string out(buf, r.ptr);
  out += ' ';
  if (n == 1)
    out += noun;
  else if (!plural.empty())
    out += plural;
  else {
    out += noun;
    out += 's';
  }
  return out;
}

namespace detail {
// A line is built by appending its parts to one string, not with an ostringstream: iostreams would
// pull the whole locale machinery into the static programs (size) and initialise it at start (memory).
inline void append(std::string& s, std::string_view v) { s.append(v); }
inline void append(std::string& s, const char* v) { s.append(v ? v : "(null)"); }
inline void append(std::string& s, char c) { s.push_back(c); }
inline void append(std::string& s, bool b) { s.append(b ? "true" : "false"); }
template <class T,
          std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool> && !std::is_same_v<T, char>, int> = 0>
void append(std::string& s, T v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  s.append(buf, r.ptr);
}
template <class T, std::enable_if_t<std::is_floating_point_v<T>, int> = 0>
void append(std::string& s, T v) {
  char buf[32];
  int n = std::snprintf(buf, sizeof buf, "%g", static_cast<double>(v));
  if (n > 0) s.append(buf, static_cast<std::size_t>(n) < sizeof buf ? static_cast<std::size_t>(n) : sizeof buf - 1);
}
}  // namespace detail

/// Writes one line at level `l`: the parts (strings, characters, numbers) are appended together,
/// then written with one write(2).
template <class... Parts>
void write(level l, const Parts&... parts) noexcept {
  if (!enabled(l)) return;
  try {
    std::string s = program();
    switch (l) {
      case level::debug: s += ": debug: "; break;
      case level::warn: s += ": warning: "; break;
      case level::error: s += ": error: "; break;
      default: s += ": "; break;
    }
    (detail::append(s, parts), ...);
    s += '\n';
    std::size_t done = 0;
    while (done < s.size()) {
      ssize_t n = ::write(2, s.data() + done, s.size() - done);
      if (n <= 0) break;  // stderr gone: nothing better to do than drop the line
      done += static_cast<std::size_t>(n);
    }
  } catch (...) {
    // Out of memory while formatting a log line: dropping it is the only safe choice.
  }
}

template <class... P>
void debug(const P&... p) noexcept {
  write(level::debug, p...);
}
template <class... P>
void info(const P&... p) noexcept {
  write(level::info, p...);
}
template <class... P>
void warn(const P&... p) noexcept {
  write(level::warn, p...);
}
template <class... P>
void error(const P&... p) noexcept {
  write(level::error, p...);
}

}  // namespace amb::log
