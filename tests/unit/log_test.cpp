// SPDX-License-Identifier: MIT
// amb::log: one line per call, "program: level: message", parts appended without iostreams; and
// amb's JSON header (which skips picojson's <iostream>) leaves <iostream> usable for the user.
#include <amb/detail/json.hpp>
#include <amb/log.hpp>

#include <iostream>  // after amb's headers on purpose: it must still declare std::cout

#include <doctest/doctest.h>

#include "support/stderr_capture.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <unistd.h>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace log_test {

using amb::test::stderr_of;

TEST_CASE("a line is the program, the level and the parts, written as one line") {
  amb::log::set_program("prog");
  amb::log::set_level(amb::log::level::info);
  const std::string s = "str";
  const std::string_view v = "view";
  auto out = stderr_of([&] {
    amb::log::warn("text ", s, ' ', v, " ", 42, ' ', -7, ' ', std::uint64_t{18446744073709551615u}, ' ', true, ' ',
                   2.5);
  });
  CHECK(out == "prog: warning: text str view 42 -7 18446744073709551615 true 2.5\n");
  CHECK(stderr_of([] { amb::log::info("plain"); }) == "prog: plain\n");
  CHECK(stderr_of([] { amb::log::error("bad ", static_cast<const char*>(nullptr)); }) == "prog: error: bad (null)\n");
}

TEST_CASE("lines below the level are dropped; off drops everything") {
  amb::log::set_program("prog");
  amb::log::set_level(amb::log::level::warn);
  CHECK(stderr_of([] { amb::log::info("no"); }) == "");
  CHECK(stderr_of([] { amb::log::debug("no"); }) == "");
  CHECK(stderr_of([] { amb::log::warn("yes"); }) == "prog: warning: yes\n");
  amb::log::set_level(amb::log::level::off);
  CHECK(stderr_of([] { amb::log::error("no"); }) == "");
  amb::log::set_level(amb::log::level::debug);
  CHECK(stderr_of([] { amb::log::debug("d ", 1); }) == "prog: debug: d 1\n");
  amb::log::set_level(amb::log::level::info);
}

TEST_CASE("<iostream> after amb's JSON header still works (the skipped include guard was restored)") {
  CHECK(std::cout.good());  // would not compile if <iostream> had been skipped for good
  picojson::value v;
  std::string err;
  const std::string text = R"({"a":1})";
  amb::detail::json_parse(v, text.begin(), text.end(), &err);
  CHECK(err.empty());
  CHECK(v.get("a").get<std::int64_t>() == 1);
}

TEST_CASE("outside text is escaped and cut: one short line whatever it holds") {
  // Qualified: with <iomanip> in the same unity file, std::quoted would win by argument lookup.
  CHECK(amb::log::quoted("redis:6379") == "\"redis:6379\"");
  CHECK(amb::log::quoted("a\nb\r\tc\x1b[31m\\") == "\"a\\nb\\r\\tc\\x1b[31m\\\\\"");
  CHECK(amb::log::quoted(std::string("nul\0x", 5)) == "\"nul\\x00x\"");
  CHECK(amb::log::quoted("caf\xc3\xa9 \xe2\x86\x92") == "\"caf\xc3\xa9 \xe2\x86\x92\"");  // UTF-8 stays readable
  CHECK(amb::log::quoted("\xc2\x9b"
                         "31m \xff \xc3") == "\"\\xc2\\x9b31m \\xff \\xc3\"");  // C1 CSI, stray bytes
  CHECK(amb::log::quoted(R"({"host":"h"})") == R"("{"host":"h"}")");
  const std::string big(1048576, 'h');
  CHECK(amb::log::quoted(big) == "\"" + std::string(80, 'h') + "\xe2\x80\xa6\" (1048576 bytes)");
  CHECK(amb::log::quoted(big, 4) == "\"hhhh\xe2\x80\xa6\" (1048576 bytes)");
  // A cut never splits a UTF-8 sequence.
  CHECK(amb::log::quoted("ab\xc3\xa9", 3) == "\"ab\xe2\x80\xa6\" (4 bytes)");
  CHECK(amb::log::escaped("/services/logs/z\ndynamic-etcd-amb: instance forged") ==
        "/services/logs/z\\ndynamic-etcd-amb: instance forged");
  CHECK(amb::log::escaped(std::string(300, 'k')) == std::string(200, 'k') + "\xe2\x80\xa6 (300 bytes)");
  const std::string forged = "1.2.3.4:1\ndynamic-etcd-amb: instance /services/logs/z added: 6.6.6.6:1";
  CHECK(amb::log::quoted(forged).find('\n') == std::string::npos);
}

TEST_CASE("parse_level: a parse result naming the bad text and the choices") {
  CHECK(*amb::log::parse_level("debug") == amb::log::level::debug);
  CHECK(*amb::log::parse_level("info") == amb::log::level::info);
  CHECK(*amb::log::parse_level("warn") == amb::log::level::warn);
  CHECK(*amb::log::parse_level("warning") == amb::log::level::warn);
  CHECK(*amb::log::parse_level("error") == amb::log::level::error);
  CHECK(*amb::log::parse_level("off") == amb::log::level::off);
  auto bad = amb::log::parse_level("loud\n");
  CHECK(!bad);
  CHECK(bad.error == "bad level \"loud\\n\" (use debug, info, warn, error or off)");
}

TEST_CASE("durations as people write them") {
  using namespace std::chrono_literals;
  CHECK(amb::log::duration(0ms) == "0s");
  CHECK(amb::log::duration(1ms) == "1ms");
  CHECK(amb::log::duration(250ms) == "250ms");
  CHECK(amb::log::duration(999ms) == "999ms");
  CHECK(amb::log::duration(1s) == "1s");
  CHECK(amb::log::duration(1700ms) == "1.7s");
  CHECK(amb::log::duration(1250ms) == "1.25s");
  CHECK(amb::log::duration(1001ms) == "1.001s");
  CHECK(amb::log::duration(9s) == "9s");
  CHECK(amb::log::duration(10s) == "10s");
  CHECK(amb::log::duration(90s) == "90s");
  CHECK(amb::log::duration(2min) == "2m");
  CHECK(amb::log::duration(1h) == "1h");
  CHECK(amb::log::duration(24h) == "24h");
  CHECK(amb::log::duration(-500ms) == "-500ms");
  // A measured duration: a tenth of a second below 10s, whole seconds above.
  CHECK(amb::log::duration(amb::log::round_for_log(1734ms)) == "1.7s");
  CHECK(amb::log::duration(amb::log::round_for_log(std::chrono::microseconds(250'400))) == "250ms");
  CHECK(amb::log::duration(amb::log::round_for_log(12'345ms)) == "12s");
  CHECK(amb::log::duration(amb::log::round_for_log(9'960ms)) == "10s");
}

TEST_CASE("counts agree with their nouns") {
  CHECK(amb::log::count(0, "open connection") == "0 open connections");
  CHECK(amb::log::count(1, "open connection") == "1 open connection");
  CHECK(amb::log::count(2, "open connection") == "2 open connections");
  CHECK(amb::log::count(1, "key") == "1 key");
  CHECK(amb::log::count(3, "entry", "entries") == "3 entries");
  CHECK(amb::log::count(1, "entry", "entries") == "1 entry");
  CHECK(amb::log::count(18446744073709551615u, "byte") == "18446744073709551615 bytes");
}

}  // namespace log_test
