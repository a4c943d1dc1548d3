// SPDX-License-Identifier: MIT
// Unit tests for include/amb/detail/line_splitter.hpp: lines must not depend on how the bytes were cut.
#include <amb/detail/line_splitter.hpp>

#include <doctest/doctest.h>

#include <ostream>
#include <string>
#include <vector>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace line_splitter_test {

using amb::errc;
using amb::detail::line_splitter;

namespace {

struct outcome {
  std::vector<std::string> lines;
  std::string rest;
  std::error_code error;
  bool operator==(const outcome&) const = default;
};

outcome run(const std::vector<std::string>& pieces, std::size_t max) {
  line_splitter s(max);
  outcome o;
  for (auto& p : pieces) {
    o.error = s.feed(p, [&](std::string_view line) { o.lines.emplace_back(line); });
    if (o.error) break;
  }
  o.rest = s.take_rest();
  return o;
}

outcome grind(const std::string& input, std::size_t max = 1024) {
  auto whole = run({input}, max);
  for (std::size_t i = 0; i <= input.size(); ++i) {
    for (std::size_t j = i; j <= input.size(); ++j) {  // two cuts: a line may span three pieces
      auto got = run({input.substr(0, i), input.substr(i, j - i), input.substr(j)}, max);
      if (!(got == whole)) {
        CAPTURE(i);
        CAPTURE(j);
        CHECK(got.lines == whole.lines);
        CHECK(got.rest == whole.rest);
        CHECK(got.error == whole.error);
        return whole;
      }
    }
  }
  std::vector<std::string> bytes;
  for (char c : input) bytes.emplace_back(1, c);
  CHECK(run(bytes, max) == whole);
  return whole;
}

}  // namespace

TEST_CASE("one JSON object per line, whatever the chunk boundaries") {
  auto o = grind("{\"result\":{\"created\":true}}\n{\"result\":{\"events\":[1]}}\n{\"partial\"");
  CHECK(o.lines == std::vector<std::string>{"{\"result\":{\"created\":true}}", "{\"result\":{\"events\":[1]}}"});
  CHECK(o.rest == "{\"partial\"");
  CHECK_FALSE(o.error);
}

TEST_CASE("empty lines are skipped and CRLF endings lose their CR") {
  auto o = grind("\n\na\r\n\r\nb\n\n");
  CHECK(o.lines == std::vector<std::string>{"a", "b"});
  CHECK(o.rest.empty());
}

TEST_CASE("etcd's final error object has no trailing newline: it is the rest") {
  const std::string last =
      "{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":\"transport is closing\",\"http_status\":\"Service "
      "Unavailable\"}}";
  auto o = grind("{\"result\":{\"header\":{}}}\n" + last);
  CHECK(o.lines.size() == 1);
  CHECK(o.rest == last);
  line_splitter s;
  CHECK(s.take_rest().empty());
}

TEST_CASE("a line longer than the limit is an error; exactly at the limit is fine") {
  CHECK(grind("12345678\n", 8).lines == std::vector<std::string>{"12345678"});
  CHECK(grind("12345678\r\n", 8).lines == std::vector<std::string>{"12345678"});
  auto o = grind("ok\n123456789\nnever\n", 8);
  CHECK(o.error == errc::line_too_long);
  CHECK(o.lines == std::vector<std::string>{"ok"});
  // An endless line without a newline is refused once it passes the limit, not held forever.
  line_splitter s(8);
  auto none = [](std::string_view) { FAIL("no line expected"); };
  CHECK_FALSE(s.feed("12345678", none));
  CHECK(s.feed("9", none) == errc::line_too_long);
  CHECK(s.feed("\n", none) == errc::line_too_long);  // sticks
  s.reset();
  std::vector<std::string> lines;
  CHECK_FALSE(s.feed("x\n", [&](std::string_view l) { lines.emplace_back(l); }));
  CHECK(lines == std::vector<std::string>{"x"});
}

}  // namespace line_splitter_test
