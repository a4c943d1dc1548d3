// SPDX-License-Identifier: MIT
// Fuzz target: host:port, endpoint and endpoint-list parsing; what parses prints and parses back.
#include <amb/address.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto in = amb::fuzz::text(data, size);
  if (auto port = amb::parse_port(in)) AMB_FUZZ_CHECK(*port >= 1);
  auto hp = amb::parse_host_port(in);
  if (hp) {
    AMB_FUZZ_CHECK(hp->port >= 1);
    auto again = amb::parse_host_port(hp->to_string());
    AMB_FUZZ_CHECK(again);
    AMB_FUZZ_CHECK(*again == *hp);
  } else {
    AMB_FUZZ_CHECK(!hp.error.empty());
  }
  auto ep = amb::parse_endpoint(in);
  if (!ep) AMB_FUZZ_CHECK(!ep.error.empty());
  auto list = amb::parse_endpoint_list(in);
  if (list)
    AMB_FUZZ_CHECK(!list->empty());
  else
    AMB_FUZZ_CHECK(!list.error.empty());
  return 0;
}
