// SPDX-License-Identifier: MIT
// simple-amb: a static TCP ambassador. Listen on one port, forward every connection to one address.
//
//   simple-amb 172.17.42.1:4001          # listens on 0.0.0.0:10000, as the 2014 demo's polvi/simple-amb
//
// The lesson in three steps: read the flags (amb/app/simple_amb_flags.hpp), build an amb::ambassador
// with one fixed target, run. The ambassador's proxy is the one dynamic-etcd-amb uses: the relay
// passes half-closes on, accepting pauses on fd exhaustion, SIGTERM drains.
#include <amb/ambassador.hpp>
#include <amb/app/fd_limit.hpp>
#include <amb/app/simple_amb_flags.hpp>
#include <amb/event_loop.hpp>
#include <amb/log.hpp>

#include <asio.hpp>

#include <chrono>
#include <csignal>
#include <optional>
#include <string>
#include <system_error>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  amb::log::set_program("simple-amb");
  const auto c = amb::app::parse_simple_amb_flags(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);  // a write to a vanished peer is an error code, not a dead process
  amb::raise_fd_limit();

  // Threading model: this thread runs `io`, the ambassador's first loop and the signals; with
  // --threads N the ambassador runs N-1 more loops on threads of its own (see amb/ambassador.hpp).
  // Only this thread touches io's sockets, so Asio need not lock them (UNSAFE_IO: its scheduler
  // still locks, for the posts of other threads).
  asio::io_context io(ASIO_CONCURRENCY_HINT_UNSAFE_IO);
  amb::ambassador_options options;
  options.listen = c.listen;
  options.threads = c.threads;
  options.balance.max_fails = 0;      // one target: nothing to eject it in favour of
  options.proxy.fixed_target = true;  // a failed connect closes that client with one line
  options.proxy.service = c.target.to_string();
  options.proxy.connect_timeout = c.connect_timeout;
  options.proxy.idle_timeout = c.idle_timeout;
  options.proxy.send_proxy = c.send_proxy;
  std::optional<amb::ambassador> ambassador;
  try {
    ambassador.emplace(io.get_executor(), options);
  } catch (const std::system_error& e) {
    amb::log::error(e.what());  // "listen HOST:PORT: Address already in use"
    return 1;
  }
  ambassador->forward_to({c.target});

  // SIGTERM (docker stop) or SIGINT: stop accepting, give open connections up to 2s, then exit 0.
  const std::chrono::milliseconds drain_timeout = 2s;
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](std::error_code ec, int signal) {
    if (ec) return;
    ambassador->stop_accepting();
    amb::log::info(signal == SIGTERM ? "SIGTERM" : "SIGINT", ": stopped accepting; ",
                   amb::log::count(ambassador->stats().connections.active, "connection"), " open, waiting up to ",
                   amb::log::duration(drain_timeout));
    asio::co_spawn(io, ambassador->drain(drain_timeout), [&](std::exception_ptr, std::uint64_t) { io.stop(); });
    signals.async_wait([&](std::error_code e, int) {  // a second signal: leave now
      if (e) return;
      ambassador->stop();
      io.stop();
    });
  });

  amb::log::info("listening on ", c.listen.to_string(), ", forwarding to ", c.target.to_string(), c.target_source,
                 c.threads > 1 ? " (" + std::to_string(c.threads) + " threads)" : std::string());
  io.run();
  amb::destroy_pending_work(io);  // queued frames go before the ambassador they point into
  return 0;
}
