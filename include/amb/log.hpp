// SPDX-License-Identifier: MIT
// Logging: one line per event on stderr, "program: level: message", never throws.
#pragma once

#include <atomic>
#include <charconv>
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
} // namespace detail

/// Sets the program name that prefixes every line (call once at start-up).
inline void set_program(std::string_view name) noexcept {
  try { detail::program_ref() = std::string(name); } catch (...) {}
}
/// The program name that prefixes every line.
inline const std::string& program() noexcept { return detail::program_ref(); }
/// Sets the lowest level that is written.
inline void set_level(level l) noexcept { detail::threshold_ref() = l; }
/// The lowest level that is written.
inline level current_level() noexcept { return detail::threshold_ref(); }
/// True when a line at `l` would be written (skip building costly messages otherwise).
inline bool enabled(level l) noexcept { return l >= current_level() && l != level::off; }

/// Parses "debug", "info", "warn"/"warning", "error", "off".
inline bool parse_level(std::string_view text, level& out) noexcept {
  if (text == "debug") out = level::debug;
  else if (text == "info") out = level::info;
  else if (text == "warn" || text == "warning") out = level::warn;
  else if (text == "error") out = level::error;
  else if (text == "off") out = level::off;
  else return false;
  return true;
}

namespace detail {
// A line is built by appending its parts to one string, not with an ostringstream: iostreams would
// pull the whole locale machinery into the static programs (size) and initialise it at start (memory).
inline void append(std::string& s, std::string_view v) { s.append(v); }
inline void append(std::string& s, const char* v) { s.append(v ? v : "(null)"); }
inline void append(std::string& s, char c) { s.push_back(c); }
inline void append(std::string& s, bool b) { s.append(b ? "true" : "false"); }
template <class T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool> && !std::is_same_v<T, char>, int> = 0>
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
} // namespace detail

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

template <class... P> void debug(const P&... p) noexcept { write(level::debug, p...); }
template <class... P> void info(const P&... p) noexcept { write(level::info, p...); }
template <class... P> void warn(const P&... p) noexcept { write(level::warn, p...); }
template <class... P> void error(const P&... p) noexcept { write(level::error, p...); }

} // namespace amb::log
