// SPDX-License-Identifier: MIT
// Fuzz target: the line splitter, fed whole and in pieces; the same lines must come out.
#include <amb/detail/line_splitter.hpp>

#include <string>
#include <vector>

#include "fuzz_support.hpp"

namespace {

struct outcome {
  std::vector<std::string> lines;
  std::error_code error;
  std::string rest;
};

template <class Parts>
outcome run(const Parts& parts) {
  amb::detail::line_splitter s(64);
  outcome o;
  for (std::string_view piece : parts) {
    o.error = s.feed(piece, [&](std::string_view line) {
      AMB_FUZZ_CHECK(!line.empty());
      AMB_FUZZ_CHECK(line.find('\n') == std::string_view::npos);
      AMB_FUZZ_CHECK(line.size() <= 64);
      o.lines.emplace_back(line);
    });
    if (o.error) break;
  }
  if (!o.error) o.rest = s.take_rest();
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto in = amb::fuzz::text(data, size);
  std::string_view whole[] = {in};
  auto a = run(whole);
  auto b = run(amb::fuzz::splits(in));
  AMB_FUZZ_CHECK(a.error == b.error);
  if (!a.error) {
    AMB_FUZZ_CHECK(a.lines == b.lines);
    AMB_FUZZ_CHECK(a.rest == b.rest);
  }
  return 0;
}
