// SPDX-License-Identifier: MIT
// Fuzz target: the registry value parser; an accepted value formats and parses back to itself.
#include <amb/registry_value.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto in = amb::fuzz::text(data, size);
  auto v = amb::parse_registry_value(in);
  if (!v) {
    AMB_FUZZ_CHECK(!v.error.empty());
    return 0;
  }
  AMB_FUZZ_CHECK(v->address.port >= 1);
  AMB_FUZZ_CHECK(!v->address.host.empty());
  AMB_FUZZ_CHECK(v->weight <= amb::max_registry_weight);
  AMB_FUZZ_CHECK(v->weight >= 1 || v->draining);  // weight 0 means draining
  auto again = amb::parse_registry_value(amb::format_registry_json(v->address.host, v->address.port));
  AMB_FUZZ_CHECK(again);
  AMB_FUZZ_CHECK(again->address == v->address);
  (void)amb::parse_key_value(in);
  return 0;
}
