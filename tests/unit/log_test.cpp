// SPDX-License-Identifier: MIT
// amb::log: one line per call, "program: level: message", parts appended without iostreams; and
// amb's JSON header (which skips picojson's <iostream>) leaves <iostream> usable for the user.
#include <amb/detail/json.hpp>
#include <amb/log.hpp>

#include <iostream>  // after amb's headers on purpose: it must still declare std::cout

#include <doctest/doctest.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <unistd.h>

namespace {

/// What `f` writes to stderr (fd 2), captured through a temporary file.
template <class F>
std::string stderr_of(F f) {
  char path[] = "/tmp/amb-log-test-XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::unlink(path);
  const int saved = ::dup(2);
  ::dup2(fd, 2);
  f();
  ::dup2(saved, 2);
  ::close(saved);
  std::string out;
  char buf[4096];
  ::lseek(fd, 0, SEEK_SET);
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return out;
}

} // namespace

TEST_CASE("a line is the program, the level and the parts, written as one line") {
  amb::log::set_program("prog");
  amb::log::set_level(amb::log::level::info);
  const std::string s = "str";
  const std::string_view v = "view";
  auto out = stderr_of([&] {
    amb::log::warn("text ", s, ' ', v, " ", 42, ' ', -7, ' ', std::uint64_t{18446744073709551615u}, ' ', true, ' ', 2.5);
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
