// SPDX-License-Identifier: MIT
// The flag parser: values, flags, positionals, --help/--version, exact error texts, numbers, durations.
#include <amb/app/cli.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <utility>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace cli_test {

using amb::cli::parse_result;
using namespace std::chrono_literals;

namespace {
amb::cli::parser make() {
  amb::cli::parser p("prog", "[OPTIONS] TARGET", "Does things.");
  p.option("--listen", "HOST:PORT", "where to listen")
      .option("--timeout", "D", "how long")
      .flag("--verbose", "say more")
      .positionals(1, 1, "TARGET")
      .example("prog 127.0.0.1:1")
      .note("A note.");
  return p;
}
}  // namespace

TEST_CASE("values as '--name value' and '--name=value', flags, positionals") {
  auto p = make();
  auto r = p.parse({"--listen", "1.2.3.4:5", "--timeout=5s", "--verbose", "target:1"});
  REQUIRE(r.what == parse_result::kind::run);
  CHECK(p.value("--listen") == "1.2.3.4:5");
  CHECK(p.value("--timeout") == "5s");
  CHECK(p.has("--verbose"));
  CHECK(!p.value("--nothing"));
  REQUIRE(p.positional().size() == 1);
  CHECK(p.positional()[0] == "target:1");
}

TEST_CASE("the last value wins, '=' may be empty, '--' ends the flags") {
  auto p = make();
  auto r = p.parse({"--listen=a:1", "--listen", "b:2", "--timeout=", "--", "--verbose"});
  REQUIRE(r.what == parse_result::kind::run);
  CHECK(p.value("--listen") == "b:2");
  CHECK(p.value("--timeout") == "");
  CHECK(!p.has("--verbose"));
  REQUIRE(p.positional().size() == 1);
  CHECK(p.positional()[0] == "--verbose");
}

TEST_CASE("a lone '-' is a positional") {
  auto p = make();
  CHECK(p.parse({"-"}).what == parse_result::kind::run);
  CHECK(p.positional().at(0) == "-");
}

TEST_CASE("usage errors name what was wrong, exactly") {
  auto p = make();
  auto check = [&](std::vector<std::string> args, const std::string& text) {
    auto r = p.parse(args);
    CHECK(r.what == parse_result::kind::error);
    CHECK(r.text == text);
  };
  check({"--bogus", "t"}, "unknown option '--bogus'");
  check({"--bogus=1", "t"}, "unknown option '--bogus'");
  check({"-x", "t"}, "unknown option '-x'");
  check({"t", "--listen"}, "option '--listen' needs a value (HOST:PORT)");
  check({"--listen", "--verbose", "t"}, "option '--listen' needs a value (HOST:PORT)");
  check({"--verbose=yes", "t"}, "option '--verbose' takes no value");
  check({}, "missing TARGET");
  check({"a", "b"}, "unexpected argument 'b'");
  CHECK(p.usage_error_text("bad port \"70000\" in \"x:70000\"") ==
        "prog: bad port \"70000\" in \"x:70000\"\nTry 'prog --help'.\n");
}

TEST_CASE("--help and --version win over errors") {
  auto p = make();
  auto h = p.parse({"--bogus", "--help"});
  REQUIRE(h.what == parse_result::kind::help);
  CHECK(h.text.rfind("Usage: prog [OPTIONS] TARGET\nDoes things.\n", 0) == 0);
  CHECK(h.text.find("\nExample:\n  prog 127.0.0.1:1\n") != std::string::npos);
  CHECK(h.text.find("  --listen HOST:PORT        where to listen\n") != std::string::npos);
  CHECK(h.text.find("  --verbose                 say more\n") != std::string::npos);
  CHECK(h.text.find("  --version                 show the version and exit\n") != std::string::npos);
  CHECK(h.text.find("\nA note.\n") != std::string::npos);
  CHECK(p.parse({"-h"}).what == parse_result::kind::help);
  auto v = p.parse({"--version"});
  REQUIRE(v.what == parse_result::kind::version);
  CHECK(v.text == std::string("prog ") + amb::version);
}

TEST_CASE("a help text of two lines keeps its column") {
  amb::cli::parser p("prog", "[OPTIONS]", "Does things.");
  p.option("--send-proxy", "v1|v2", "first line\nsecond line");
  auto h = p.parse({"--help"});
  REQUIRE(h.what == parse_result::kind::help);
  CHECK(h.text.find("  --send-proxy v1|v2        first line\n                            second line\n") !=
        std::string::npos);
}

TEST_CASE("parse_number checks the whole text and the range") {
  CHECK(*amb::cli::parse_number<int>("42", 1, 100) == 42);
  CHECK(amb::cli::parse_number<int>("0", 1, 100).error == "number \"0\" out of range 1..100");
  CHECK(amb::cli::parse_number<int>("101", 1, 100).error == "number \"101\" out of range 1..100");
  CHECK(amb::cli::parse_number<int>("12a", 1, 100).error == "bad number \"12a\"");
  CHECK(amb::cli::parse_number<int>("", 1, 100).error == "bad number \"\"");
  CHECK(amb::cli::parse_number<unsigned>("-1").error == "bad number \"-1\"");
  CHECK(amb::cli::parse_number<std::uint8_t>("300").error == "number \"300\" out of range 0..255");
  CHECK(*amb::cli::parse_number<long>("-7", -10, 10) == -7);
}

TEST_CASE("parse_duration accepts ms, s, m, h, bare seconds and decimals to the millisecond") {
  const std::pair<const char*, std::chrono::milliseconds> good[] = {
      {"500ms", 500ms}, {"5s", 5s},      {"5", 5s},        {"2m", 2min},  {"1h", 1h},      {"0", 0ms},    {"24h", 24h},
      {"1.5s", 1500ms}, {"1.7", 1700ms}, {"0.25s", 250ms}, {"1.5m", 90s}, {"0.001s", 1ms}, {"24.0h", 24h}};
  for (const auto& c : good) {  // no structured binding: Clang 14 cannot capture one (doctest's lambdas)
    auto d = amb::cli::parse_duration(c.first);
    CHECK_MESSAGE((d && *d == c.second), c.first);
  }
  const std::pair<const char*, const char*> refused[] = {
      {"25h", "duration \"25h\" too long (at most 24h)"},
      {"24.5h", "duration \"24.5h\" too long (at most 24h)"},
      {"1.5ms", "duration \"1.5ms\" finer than a millisecond"},
      {"0.0001s", "duration \"0.0001s\" finer than a millisecond"},
      {"99999999999999999999s", "bad duration \"99999999999999999999s\" (use e.g. 500ms, 5s, 2m)"}};
  for (const auto& c : refused) CHECK_MESSAGE(amb::cli::parse_duration(c.first).error == c.second, c.first);
  for (const char* bad : {"", "abc", "5x", "-5s", "1.s", ".5s", "1..5s", "1.5.5s", "s", "5 s", "5sec", "1.1234567s"})
    CHECK_MESSAGE(
        amb::cli::parse_duration(bad).error == "bad duration \"" + std::string(bad) + "\" (use e.g. 500ms, 5s, 2m)",
        bad);
}

TEST_CASE("every duration a log line prints reads back as the same duration") {
  for (auto d : {0ms, 1ms, 250ms, 999ms, 1000ms, 1700ms, 1250ms, 1001ms, 9000ms, 90'000ms, 120'000ms, 3'600'000ms,
                 86'400'000ms}) {
    const std::string printed = amb::log::duration(d);
    auto back = amb::cli::parse_duration(printed);
    CHECK_MESSAGE(back, printed);
    if (back) CHECK_MESSAGE(*back == d, printed);
  }
}

}  // namespace cli_test
