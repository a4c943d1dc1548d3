// Logging: one line per event on stderr, "program: level: message", never throws.
#pragma once

#include <atomic>
#include <sstream>
#include <string>
#include <string_view>
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

/// Writes one line at level `l`: the parts are streamed together, then written with one write(2).
template <class... Parts>
void write(level l, const Parts&... parts) noexcept {
  if (!enabled(l)) return;
  try {
    std::ostringstream line;
    line << program() << ": ";
    switch (l) {
      case level::debug: line << "debug: "; break;
      case level::warn: line << "warning: "; break;
      case level::error: line << "error: "; break;
      default: break;
    }
    (line << ... << parts);
    line << '\n';
    const std::string s = line.str();
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
