// SPDX-License-Identifier: MIT
// docker-register: publish where containers are (host IP + published port) into etcd, and keep it true.
//
//   docker-register redis-demo 6379 redis-A     # one container: /services/redis-A/redis-demo = {"host":..,"port":..}
//   docker-register --all                       # automatic mode: every running container's published ports
//
// The lesson in three steps: read the flags (etcd, the engine and the host IP are found in
// amb/app/docker_register_flags.hpp), build an amb::etcd_registrar, run it. A clean stop (SIGTERM,
// SIGINT, SIGHUP) revokes the lease, so every key vanishes at once.
#include <amb/app/docker_register_flags.hpp>
#include <amb/app/etcd_settings.hpp>
#include <amb/etcd_client.hpp>
#include <amb/etcd_registrar.hpp>
#include <amb/event_loop.hpp>
#include <amb/log.hpp>

#include <asio.hpp>

#include <chrono>
#include <csignal>
#include <exception>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  amb::log::set_program("docker-register");
  const auto c = amb::app::parse_docker_register_flags(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);  // a write to a vanished peer is an error code, not a dead process
  if (auto missing = amb::app::missing_engine_socket(c.engine); !missing.empty()) {
    amb::log::error(missing);  // where it looked, and how to point it elsewhere
    return 1;
  }

  // Threading model: one io_context run by this one thread; the registrar's coroutines (follower,
  // events stream, lease keeper) and the signal watcher share it, without locks.
  asio::io_context io(1);
  amb::etcd_client etcd = amb::make_etcd_client_or_exit(io.get_executor(), c.etcd);
  amb::etcd_registrar registrar(etcd, c.engine.server, c.registrar());

  amb::log::info(c.etcd.where.source, "; ", c.engine.source);
  if (!c.etcd.security.description.empty()) amb::log::info("etcd security: ", c.etcd.security.description);
  if (c.options.host_ip.address.empty())
    amb::log::warn("host IP for ports published on all interfaces: ", c.options.host_ip.source,
                   "; such ports will not be registered (give --ip ADDR or HOST_IP)");
  else
    amb::log::info("host IP for ports published on all interfaces: ", c.options.host_ip.address, " (from ",
                   c.options.host_ip.source, ")");

  int exit_code = 0;
  bool finishing = false;
  asio::steady_timer deadline(io);
  // Ends the program: revoke the lease (keys vanish at once), within 3s, then stop the loop.
  auto finish = [&](int code) {
    if (finishing) return;
    finishing = true;
    exit_code = code;
    deadline.expires_after(3s);
    deadline.async_wait([&](std::error_code ec) {
      if (ec) return;
      amb::log::warn("could not revoke the etcd lease in time; the keys expire after the TTL (",
                     amb::log::duration(std::chrono::seconds(c.ttl_seconds)), ")");
      io.stop();
    });
    asio::co_spawn(io, registrar.stop(), [&](std::exception_ptr) { io.stop(); });  // stop() never throws
  };

  asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  signals.async_wait([&](std::error_code ec, int signal) {
    if (ec) return;
    amb::log::info(signal == SIGTERM  ? "SIGTERM"
                   : signal == SIGINT ? "SIGINT"
                                      : "SIGHUP",
                   ": revoking the lease and exiting");
    finish(0);
  });

  asio::co_spawn(io, registrar.run(), [&](std::exception_ptr e, int code) {
    if (!e) return finish(code);  // one-container mode with --exit-with-container: the container was removed
    // The engine did not answer at start (run() said why): not a passing outage, nothing registered.
    exit_code = 1;
    io.stop();
  });

  io.run();
  amb::destroy_pending_work(io);  // queued frames go before the registrar and clients they point into
  return exit_code;
}
