// SPDX-License-Identifier: MIT
// A registrar: publishes where CONTAINER's PORT is published as /services/SERVICE/CONTAINER in etcd,
// under a lease, and follows the container; Ctrl-C revokes the lease (the key vanishes at once).
//   registrar http://127.0.0.1:2379 unix:///var/run/docker.sock web1 80 web
#include "amb/amb.hpp"

#include <csignal>
#include <cstdio>

int main(int argc, char** argv) {
  auto etcd_url = amb::parse_endpoint(argc == 6 ? argv[1] : "");
  auto engine = amb::parse_endpoint(argc == 6 ? argv[2] : "");
  auto port = amb::parse_port(argc == 6 ? argv[4] : "");
  if (!etcd_url || !engine || !port) {
    std::fprintf(stderr, "usage: registrar ETCD_URL ENGINE_URL CONTAINER PORT SERVICE\n");
    return 2;
  }

  asio::io_context io;
  amb::etcd_client etcd(io.get_executor(), {.endpoints = {*etcd_url}});
  amb::seed_config container{.container = argv[3], .private_port = *port, .service = argv[5]};
  amb::etcd_registrar registrar(etcd, *engine, {.seed = container});
  // run() returns only with exit_with_container; it logs and throws when the engine is unusable at start
  asio::co_spawn(io, registrar.run(), [&](std::exception_ptr, int) { io.stop(); });
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](auto, int) { asio::co_spawn(io, registrar.stop(), [&](auto) { io.stop(); }); });
  io.run();
  amb::destroy_pending_work(io);  // before the registrar and client its coroutines point into
}
