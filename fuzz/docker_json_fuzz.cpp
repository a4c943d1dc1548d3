// SPDX-License-Identifier: MIT
// Fuzz target: every Docker Engine API reader (version, inspect, list, events, errors) on the same bytes.
#include <amb/detail/docker_json.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace d = amb::detail;
  auto in = amb::fuzz::text(data, size);
  auto version = d::parse_engine_version(in);
  if (version) (void)d::negotiate_api_version("1.44", *version);
  if (auto api = d::parse_api_version(in)) AMB_FUZZ_CHECK(api->first >= 0 && api->second >= 0);
  (void)d::docker_error_message(in);
  (void)d::is_api_version_refusal(in);
  (void)d::parse_container_inspect(in);
  (void)d::parse_container_list(in);
  (void)d::parse_docker_event(in);
  (void)d::url_encode(in);
  return 0;
}
