// SPDX-License-Identifier: MIT
// Fuzz target: every etcd gateway reader (unary replies, errors, watch lines) on the same bytes.
#include <amb/detail/etcd_json.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace d = amb::detail;
  auto in = amb::fuzz::text(data, size);
  {
    amb::etcd_range_result r;
    (void)d::etcd_parse_range(in, r);
  }
  {
    amb::etcd_put_result r;
    (void)d::etcd_parse_put(in, r);
  }
  {
    amb::etcd_delete_result r;
    (void)d::etcd_parse_delete(in, r);
  }
  {
    amb::etcd_create_result r;
    (void)d::etcd_parse_create(in, r);
  }
  {
    amb::etcd_lease r;
    (void)d::etcd_parse_grant(in, r);
  }
  {
    std::int64_t ttl = 0;
    (void)d::etcd_parse_keepalive(in, ttl);
  }
  {
    amb::etcd_lease_ttl r;
    (void)d::etcd_parse_ttl(in, r);
  }
  {
    std::string token;
    (void)d::etcd_parse_auth(in, token);
  }
  {
    d::etcd_watch_message m;
    (void)d::etcd_parse_watch_line(in, m);
  }
  (void)d::etcd_parse_error(in);
  (void)d::etcd_prefix_end(in);
  return 0;
}
