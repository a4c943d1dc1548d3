// SPDX-License-Identifier: MIT
// A tiny command-line flag parser shared by the programs: --name value, --name=value, --help, --version.
#pragma once

#include "amb/log.hpp"
#include "amb/address.hpp"
#include "amb/version.hpp"

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace amb::cli {

/// Parses a whole decimal number in [min, max] with std::from_chars; `error` names the text on failure.
template <class T>
parsed<T> parse_number(std::string_view text, T min = std::numeric_limits<T>::min(),
                       T max = std::numeric_limits<T>::max()) {
  static_assert(std::is_integral_v<T>);
  parsed<T> r;
  T value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec == std::errc::invalid_argument || end != text.data() + text.size()) {
    r.error = "bad number " + log::quoted(text);
  } else if (ec == std::errc::result_out_of_range || value < min || value > max) {
    r.error = "number " + log::quoted(text) + " out of range " + std::to_string(min) + ".." + std::to_string(max);
  } else {
    r.value = value;
  }
  return r;
}

/// Parses a duration, the one parser of every time flag: a number with a unit "ms", "s", "m" or "h"
/// ("500ms", "5s", "1.5s", "2m"); a bare number means seconds. Decimals are allowed down to the
/// millisecond, so every duration a log line prints (amb::log::duration) can be typed back. The
/// result must fit in a day, which is longer than any timeout here.
inline parsed<std::chrono::milliseconds> parse_duration(std::string_view text) {
  parsed<std::chrono::milliseconds> r;
  const auto bad = [&] {
    r.error = "bad duration " + log::quoted(text) + " (use e.g. 500ms, 5s, 2m)";
    return r;
  };
  const char* const last = text.data() + text.size();
  std::uint64_t number = 0;
  auto [end, ec] = std::from_chars(text.data(), last, number);
  if (text.empty() || ec != std::errc{}) return bad();
  std::uint64_t fraction = 0, fraction_scale = 1;  // "1.25" -> number 1, fraction 25, scale 100
  if (end != last && *end == '.') {
    const char* digits = ++end;
    while (end != last && *end >= '0' && *end <= '9' && end - digits < 6) {
      fraction = fraction * 10 + static_cast<std::uint64_t>(*end - '0');
      fraction_scale *= 10;
      ++end;
    }
    if (end == digits || (end != last && *end >= '0' && *end <= '9')) return bad();  // "1.s" or too many digits
  }
  const std::string_view unit(end, static_cast<std::size_t>(last - end));
  std::uint64_t scale = 0;
  if (unit == "ms")
    scale = 1;
  else if (unit == "s" || unit.empty())
    scale = 1000;
  else if (unit == "m")
    scale = 60'000;
  else if (unit == "h")
    scale = 3'600'000;
  else
    return bad();
  constexpr std::uint64_t day_ms = 86'400'000;
  if (number > day_ms / scale || number * scale + fraction * scale / fraction_scale > day_ms) {
    r.error = "duration " + log::quoted(text) + " too long (at most 24h)";
    return r;
  }
  if (fraction * scale % fraction_scale != 0) {
    r.error = "duration " + log::quoted(text) + " finer than a millisecond";
    return r;
  }
  r.value = std::chrono::milliseconds(static_cast<std::int64_t>(number * scale + fraction * scale / fraction_scale));
  return r;
}

/// What parse() found: ready to run, or a request for help/version, or a usage error.
struct parse_result {
  enum class kind { run, help, version, error };
  kind what = kind::run;  ///< run: values and positionals are filled in
  std::string text;       ///< help: the help page; version: "<program> <version>"; error: what was wrong (one line)
};

/// Declares a program's options, parses argv, and answers --help and --version.
class parser {
public:
  /// `usage` follows "Usage: <program> ", e.g. "[OPTIONS] TARGET_HOST:PORT".
  parser(std::string program, std::string usage, std::string summary)
      : program_(std::move(program)), usage_(std::move(usage)), summary_(std::move(summary)) {}

  /// Declares a flag without value (--name); has() tells whether it was given.
  parser& flag(std::string name, std::string help) {
    options_.push_back({std::move(name), "", std::move(help), false});
    return *this;
  }
  /// Declares an option with a value (--name VALUE or --name=VALUE); the last one given wins.
  parser& option(std::string name, std::string value_name, std::string help) {
    options_.push_back({std::move(name), std::move(value_name), std::move(help), true});
    return *this;
  }
  /// Accepts between `min` and `max` positional arguments; `name` is used in error lines.
  parser& positionals(std::size_t min, std::size_t max, std::string name) {
    min_positionals_ = min;
    max_positionals_ = max;
    positional_name_ = std::move(name);
    return *this;
  }
  /// Adds an example command line to --help.
  parser& example(std::string line) {
    examples_.push_back(std::move(line));
    return *this;
  }
  /// Adds a paragraph printed after the options in --help.
  parser& note(std::string text) {
    notes_.push_back(std::move(text));
    return *this;
  }

  /// Parses the arguments after the program name. --help and --version win over everything else.
  parse_result parse(const std::vector<std::string>& args) {
    values_.clear();
    positional_.clear();
    bool flags_done = false;
    std::optional<std::string> error;
    bool help = false, version = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
      const std::string& arg = args[i];
      if (flags_done || arg.size() < 2 || arg[0] != '-') {
        positional_.push_back(arg);
        continue;
      }
      if (arg == "--") {
        flags_done = true;
        continue;
      }
      std::string name = arg, value;
      bool inline_value = false;
      if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
        name = arg.substr(0, eq);
        value = arg.substr(eq + 1);
        inline_value = true;
      }
      if (name == "--help" || name == "-h") {
        help = true;
        continue;
      }
      if (name == "--version") {
        version = true;
        continue;
      }
      const spec* s = find(name);
      if (!s) {
        if (!error) error = "unknown option '" + name + "'";
        continue;
      }
      if (!s->takes_value) {
        if (inline_value && !error) error = "option '" + name + "' takes no value";
        values_[s->name] = "";
        continue;
      }
      if (!inline_value) {
        // A value may start with '-' (a negative number), but not be another option.
        if (i + 1 >= args.size() || (args[i + 1].rfind("--", 0) == 0 && args[i + 1].size() > 2)) {
          if (!error) error = "option '" + name + "' needs a value (" + s->value_name + ")";
          continue;
        }
        value = args[++i];
      }
      values_[s->name] = value;
    }
    if (help) return {parse_result::kind::help, help_text()};
    if (version) return {parse_result::kind::version, program_ + " " + amb::version};
    if (error) return {parse_result::kind::error, *error};
    if (positional_.size() > max_positionals_)
      return {parse_result::kind::error, "unexpected argument '" + positional_[max_positionals_] + "'"};
    if (positional_.size() < min_positionals_) return {parse_result::kind::error, "missing " + positional_name_};
    return {};
  }

  /// Parses argv; prints help or version and exits 0, or prints a usage error and exits 2.
  void parse_or_exit(int argc, char** argv) {
    std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
    auto r = parse(args);
    switch (r.what) {
      case parse_result::kind::run: return;
      case parse_result::kind::help: std::fputs(r.text.c_str(), stdout); std::exit(0);
      case parse_result::kind::version: std::printf("%s\n", r.text.c_str()); std::exit(0);
      case parse_result::kind::error: usage_error(r.text);
    }
  }

  /// Prints "<program>: <what>" and "Try '<program> --help'." on stderr, exits 2.
  [[noreturn]] void usage_error(std::string_view what) const {
    std::fputs(usage_error_text(what).c_str(), stderr);
    std::exit(2);
  }
  /// The two lines usage_error prints.
  std::string usage_error_text(std::string_view what) const {
    return program_ + ": " + std::string(what) + "\nTry '" + program_ + " --help'.\n";
  }

  /// True when the option (name with its dashes, e.g. "--verbose") was given.
  bool has(std::string_view name) const { return values_.find(std::string(name)) != values_.end(); }
  /// The option's value when given.
  std::optional<std::string> value(std::string_view name) const {
    auto it = values_.find(std::string(name));
    if (it == values_.end()) return std::nullopt;
    return it->second;
  }
  /// The positional arguments, in order.
  const std::vector<std::string>& positional() const { return positional_; }
  /// The program name used in messages.
  const std::string& program() const { return program_; }

  /// The --help page: Usage, summary, examples, options, notes.
  std::string help_text() const {
    std::string out = "Usage: " + program_ + " " + usage_ + "\n" + summary_ + "\n";
    if (!examples_.empty()) {
      out += "\nExample:\n";
      for (auto& e : examples_) out += "  " + e + "\n";
    }
    out += "\nOptions:\n";
    auto line = [&](const std::string& left, const std::string& help) {
      std::string l = "  " + left;
      l += l.size() < 28 ? std::string(28 - l.size(), ' ') : "\n" + std::string(28, ' ');
      // A help text of several lines keeps its column.
      for (char c : help) l += c == '\n' ? "\n" + std::string(28, ' ') : std::string(1, c);
      out += l + "\n";
    };
    for (auto& o : options_) line(o.takes_value ? o.name + " " + o.value_name : o.name, o.help);
    line("-h, --help", "show this help and exit");
    line("--version", "show the version and exit");
    for (auto& n : notes_) out += "\n" + n + "\n";
    return out;
  }

private:
  struct spec {
    std::string name;
    std::string value_name;
    std::string help;
    bool takes_value = false;
  };
  const spec* find(std::string_view name) const {
    for (auto& o : options_)
      if (o.name == name) return &o;
    return nullptr;
  }

  std::string program_, usage_, summary_;
  std::vector<spec> options_;
  std::vector<std::string> examples_, notes_;
  std::size_t min_positionals_ = 0, max_positionals_ = 0;
  std::string positional_name_ = "argument";
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

}  // namespace amb::cli
