// SPDX-License-Identifier: MIT
// Fuzz target: base64 decoding of any text, and encode-then-decode giving the bytes back.
#include <amb/detail/base64.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace d = amb::detail;
  auto in = amb::fuzz::text(data, size);
  std::string out;
  if (d::base64_decode(in, out)) AMB_FUZZ_CHECK(out.size() <= in.size());
  std::string back;
  AMB_FUZZ_CHECK(d::base64_decode(d::base64_encode(in), back));
  AMB_FUZZ_CHECK(back == in);
  return 0;
}
