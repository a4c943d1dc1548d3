// SPDX-License-Identifier: MIT
// dynamic-etcd-amb: listen on a port and forward each connection to an instance of SERVICE
// registered in etcd under <prefix>/SERVICE/, balancing and following changes live.
//
//   clients --> :PORT --> amb::ambassador (pick, connect, fail over, relay) --> instance
//                          ^
//   etcd <prefix>/SERVICE/ --> amb::etcd_follower (snapshot, then events) --> every loop's instance set
//
// The lesson: read the flags (amb/app/dynamic_etcd_amb_flags.hpp), build the etcd client, the
// ambassador and its follower, add metrics and signals, run.
#include <amb/ambassador.hpp>
#include <amb/app/dynamic_etcd_amb_flags.hpp>
#include <amb/app/etcd_settings.hpp>
#include <amb/app/fd_limit.hpp>
#include <amb/etcd_client.hpp>
#include <amb/etcd_follower.hpp>
#include <amb/event_loop.hpp>
#include <amb/log.hpp>
#include <amb/metrics.hpp>

#include <asio.hpp>

#include <chrono>
#include <csignal>
#include <optional>
#include <string>
#include <system_error>

int main(int argc, char** argv) {
  amb::log::set_program("dynamic-etcd-amb");
  std::signal(SIGPIPE, SIG_IGN);  // a client gone mid-write is an error code, not a dead process
  const auto s = amb::app::parse_dynamic_etcd_amb_flags(argc, argv);
  amb::raise_fd_limit();

  // Threading: this thread runs `io`: the control plane (watch, metrics, signals) and the
  // ambassador's first loop; with --threads N the ambassador runs N-1 more on threads of its own.
  // Only this thread touches io's sockets, so Asio need not lock them (UNSAFE_IO: its scheduler
  // still locks, for the posts of other threads).
  asio::io_context io(ASIO_CONCURRENCY_HINT_UNSAFE_IO);
  auto ex = io.get_executor();
  amb::ambassador_options options;
  options.listen = s.listen;
  options.threads = s.threads;
  options.balance = s.balance;
  options.proxy = s.proxy;
  options.health_check = s.health_check;
  std::optional<amb::ambassador> ambassador;
  try {
    ambassador.emplace(ex, options);
  } catch (const std::system_error& e) {
    amb::log::error(e.what());
    return 1;
  }

  amb::etcd_client client = amb::make_etcd_client_or_exit(ex, s.etcd);
  amb::etcd_watch_options watch_options;
  watch_options.freshness_interval = s.freshness_check;
  amb::etcd_follower follower(*ambassador, client, s.directory, watch_options, s.state_file);

  // /healthz: the set is known (etcd was read, or the state file stood in for it at start), and was
  // confirmed equal to etcd's recently enough.
  auto healthy = [&] {
    return follower.ready() && (s.max_staleness.count() == 0 || follower.fresh_age() <= s.max_staleness);
  };
  amb::metrics_registry metrics;
  std::optional<amb::metrics_server> metrics_server;
  if (s.metrics) {
    try {
      metrics_server.emplace(ex, *s.metrics, metrics, healthy);
    } catch (const std::system_error& e) {
      amb::log::error(e.what());
      return 1;
    }
    metrics_server->set_health_note([&] {
      return follower.serving_from_state_file() ? "serving the last known set from the state file " +
                                                      amb::log::escaped(s.state_file) + "; etcd not reached yet"
                                                : std::string();
    });
    amb::add_ambassador_metrics(metrics, *ambassador, follower);
    asio::co_spawn(ex, metrics_server->run(), [](std::exception_ptr) {});  // run() handles its own errors
  }
  amb::log::info("listening on ", s.listen.to_string(), ", forwarding to ", amb::log::escaped(s.directory), " (",
                 s.etcd.where.source, ", policy ", amb::to_string(s.balance.policy), ")",
                 s.threads > 1 ? " with " + std::to_string(s.threads) + " threads" : std::string());
  if (!s.etcd.security.description.empty()) amb::log::info("etcd security: ", s.etcd.security.description);

  // Signals: SIGHUP re-reads; SIGTERM/SIGINT stop accepting, drain, and end io.run().
  asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  auto on_signals = [&]() -> asio::awaitable<void> {
    for (;;) {
      auto [sec, sig] = co_await signals.async_wait(amb::detail::use_nothrow_awaitable);
      if (sec) co_return;
      if (sig == SIGHUP) {
        // Apart from this loop, so a SIGTERM during a slow re-read is not kept waiting.
        asio::co_spawn(ex, follower.reread(), [](std::exception_ptr, bool) {});
        continue;
      }
      ambassador->stop_accepting();
      amb::log::info(sig == SIGTERM ? "SIGTERM" : "SIGINT", ": no new connections; draining ",
                     amb::log::count(ambassador->stats().connections.active, "open connection"), " (up to ",
                     amb::log::duration(s.drain_timeout), ")");
      follower.stop();
      co_await ambassador->drain(s.drain_timeout);
      if (metrics_server) metrics_server->close();
      io.stop();
      co_return;
    }
  };
  asio::co_spawn(ex, on_signals(), [](std::exception_ptr e) {
    if (e) amb::log::error("signal handling failed");
  });

  io.run();
  amb::destroy_pending_work(io);  // queued frames go before the objects they point into
  return 0;
}
