// SPDX-License-Identifier: MIT
// An etcd-driven ambassador: connections to LISTEN go to the instances registered under
// /services/SERVICE/ in etcd, balanced round-robin; instances come and go live.
//   etcd_ambassador http://127.0.0.1:2379 redis-A 127.0.0.1:6379
#include "amb/amb.hpp"

#include <cstdio>

int main(int argc, char** argv) {
  auto etcd_url = amb::parse_endpoint(argc == 4 ? argv[1] : "");
  auto listen = amb::parse_host_port(argc == 4 ? argv[3] : "");
  if (!etcd_url || !listen) {
    std::fprintf(stderr, "usage: etcd_ambassador ETCD_URL SERVICE LISTEN_HOST:PORT\n");
    return 2;
  }

  asio::io_context io;  // one thread runs the etcd watch and the data path
  amb::etcd_client etcd(io.get_executor(), {.endpoints = {*etcd_url}});
  amb::ambassador ambassador(io.get_executor(), {.listen = *listen});
  amb::etcd_follower follower(ambassador, etcd, amb::service_directory("/services", argv[2]));
  io.run();
}
