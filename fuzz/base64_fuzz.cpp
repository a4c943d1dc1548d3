// SPDX-License-Identifier: MIT
// Fuzz target: base64 decoding of any text, and encode-then-decode giving the bytes back.
#include <amb/detail/base64.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace d = amb::detail;
  auto in = amb::fuzz::text(data, size);
  if (auto out = d::base64_decode(in))
    AMB_FUZZ_CHECK(out->size() <= in.size());
  else
    AMB_FUZZ_CHECK(!out.error.empty());
  auto back = d::base64_decode(d::base64_encode(in));
  AMB_FUZZ_CHECK(back && *back == in);
  return 0;
}
