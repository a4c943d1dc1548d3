// SPDX-License-Identifier: MIT
// Fuzz target: the chunked decoder, fed whole and in pieces; same data, same end, same error.
#include <amb/detail/chunked_decoder.hpp>

#include <string>

#include "fuzz_support.hpp"

namespace {

struct outcome {
  std::string data;
  bool done = false;
  std::error_code error;
  std::size_t consumed = 0;
};

template <class Parts>
outcome run(const Parts& parts) {
  amb::detail::chunked_decoder d;
  d.max_line_length(256);
  d.max_chunk_size(1 << 20);
  d.max_trailer_bytes(1024);
  outcome o;
  for (std::string_view piece : parts) {
    auto r = d.feed(piece, [&](std::string_view s) { o.data.append(s); });
    AMB_FUZZ_CHECK(r.consumed <= piece.size());
    o.consumed += r.consumed;
    if (r.error) {
      o.error = r.error;
      break;
    }
    if (r.done) {
      o.done = true;
      break;
    }
    AMB_FUZZ_CHECK(r.consumed == piece.size());  // not done, no error: every byte was used
  }
  AMB_FUZZ_CHECK(o.done == d.done());
  if (!o.error && !o.done) o.error = d.finish_eof();
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto in = amb::fuzz::text(data, size);
  std::string_view whole[] = {in};
  auto a = run(whole);
  auto b = run(amb::fuzz::splits(in));
  AMB_FUZZ_CHECK(a.error == b.error);
  AMB_FUZZ_CHECK(a.done == b.done);
  AMB_FUZZ_CHECK(a.data == b.data);
  if (a.done) AMB_FUZZ_CHECK(a.consumed == b.consumed);
  AMB_FUZZ_CHECK(a.data.size() <= in.size());
  return 0;
}
