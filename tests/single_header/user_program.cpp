// SPDX-License-Identifier: MIT
// A user's own program, built from the single header alone with -O2 -Wall -Wextra -Werror by GCC and
// by Clang (ctest: single_header.user_program_*): an etcd-driven ambassador wired by hand, so that
// the proxy, the relay, the etcd client and watcher and the metrics server are all instantiated.
// Run with --check it only parses its arguments (the tests build it; the integration tests run the
// programs built from the same headers).
#include "amb/amb.hpp"

#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  auto etcd_url = amb::parse_endpoint(argc > 1 ? argv[1] : "http://127.0.0.1:2379");
  auto listen = amb::parse_host_port(argc > 2 ? argv[2] : "127.0.0.1:6379");
  if (!etcd_url || !listen) return 2;
  if (argc > 3 && std::strcmp(argv[3], "--check") == 0) return 0;

  asio::io_context io;
  amb::etcd_client etcd(io.get_executor(), amb::etcd_client_options{.endpoints = {*etcd_url}});
  amb::balancer balancer;
  amb::proxy proxy(io.get_executor(), balancer, amb::proxy_options{});
  amb::service_instances instances(balancer, [&] { proxy.instances_changed(); });
  amb::etcd_watcher watcher(etcd, "/services/redis-A/");
  amb::metrics_registry metrics;
  amb::metrics_server metrics_server(io.get_executor(), amb::host_port{"127.0.0.1", 0}, metrics, [] { return true; });
  auto acceptor = amb::listen_tcp(io.get_executor(), *listen);

  // An exception that ends a coroutine is reported, never dropped.
  auto report = [](std::exception_ptr e) {
    try {
      if (e) std::rethrow_exception(e);
    } catch (const std::exception& x) {
      std::fprintf(stderr, "stopped: %s\n", x.what());
    }
  };
  asio::co_spawn(io, watcher.run([&](const amb::etcd_watch_update& u) { instances.apply(u); }), report);
  asio::co_spawn(io, amb::accept_loop(acceptor, [&](asio::ip::tcp::socket c) { proxy.handle(std::move(c)); }), report);
  asio::co_spawn(io, metrics_server.run(), report);
  io.run();
  std::printf("stopped\n");
}
