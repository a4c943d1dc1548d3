// SPDX-License-Identifier: MIT
// Listening for TCP connections: an acceptor on host:port, an accept loop that survives fd exhaustion.
// (Raising the process's fd limit is the program's business: amb/app/fd_limit.hpp.)
#pragma once

#include "amb/address.hpp"
#include "amb/detail/async.hpp"
#include "amb/log.hpp"

#include "amb/detail/asio.hpp"
#include "amb/detail/reactor_wait.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <system_error>

namespace amb {

/// Opens an acceptor on `where` (numeric address, or a name resolved once), with SO_REUSEADDR and
/// a large backlog. With `reuse_port`, also SO_REUSEPORT, so several acceptors (one per thread) can
/// share the port and the kernel spreads connections over them. On failure `ec` says why and the
/// returned acceptor is closed.
inline asio::ip::tcp::acceptor listen_tcp(asio::any_io_executor executor, const host_port& where, std::error_code& ec,
                                          bool reuse_port = false) {
  using tcp = asio::ip::tcp;
  tcp::acceptor acceptor(executor);
  ec.clear();
  tcp::endpoint endpoint;
  auto address = asio::ip::make_address(where.host, ec);
  if (!ec) {
    endpoint = tcp::endpoint(address, where.port);
  } else {
    // Start-up only, so a blocking lookup is fine here.
    tcp::resolver resolver(executor);
    auto results = resolver.resolve(where.host, std::to_string(where.port), tcp::resolver::passive, ec);
    if (ec) return acceptor;
    if (results.empty()) {
      ec = make_error_code(asio::error::host_not_found);
      return acceptor;
    }
    endpoint = results.begin()->endpoint();
  }
  std::error_code ignored;  // the acceptor is being abandoned anyway
  if (acceptor.open(endpoint.protocol(), ec)) return acceptor;
  // A restarted proxy must not wait for old connections in TIME_WAIT to clear.
  using reuse_port_option = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
  if (acceptor.set_option(tcp::acceptor::reuse_address(true), ec) ||
      (reuse_port && acceptor.set_option(reuse_port_option(true), ec)) || acceptor.bind(endpoint, ec) ||
      // Bursts of connects (connection churn) must not overflow the queue; the kernel caps it at somaxconn.
      acceptor.listen(4096, ec)) {
    acceptor.close(ignored);
  }
  return acceptor;
}

/// Like listen_tcp, but throws std::system_error(ec, "listen HOST:PORT") on failure (for programs' start-up).
inline asio::ip::tcp::acceptor listen_tcp(asio::any_io_executor executor, const host_port& where) {
  std::error_code ec;
  auto acceptor = listen_tcp(std::move(executor), where, ec);
  if (ec) throw std::system_error(ec, "listen " + where.to_string());
  return acceptor;
}

/// True for "out of fds or memory right now" (EMFILE, ENFILE, ENOBUFS, ENOMEM): back off and retry.
/// Compares values, because Asio's "asio.system" category does not map to std::errc conditions.
inline bool is_resource_error(const std::error_code& ec) noexcept {
  if (ec.category() != asio::error::get_system_category() && ec.category() != std::system_category() &&
      ec.category() != std::generic_category())
    return false;
  switch (ec.value()) {
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM: return true;
    default: return false;
  }
}

/// Accepts connections and hands each to `on_accept` until the acceptor is closed.
/// Out of fds or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): waits 100 ms and tries again, so it
/// neither spins nor dies (the idea of Asio's throttling_proxy example), and logs at most one line
/// per 10 s, saying how many failures it did not log: near the limit, fds are freed and taken again
/// many times a second, and a line per turn would flood the log. A connection aborted before it was
/// accepted is skipped. `on_accept` must not throw.
inline asio::awaitable<void> accept_loop(asio::ip::tcp::acceptor& acceptor,
                                         std::function<void(asio::ip::tcp::socket)> on_accept) {
  using namespace std::chrono_literals;
  constexpr auto warn_every = 10s;
  std::optional<std::chrono::steady_clock::time_point> last_warning;
  std::uint64_t unlogged = 0;         // failures since the last warning, not in any line
  std::uint64_t failed_in_burst = 0;  // failures since the last accept that worked
  while (acceptor.is_open()) {
    auto [ec, socket] = co_await acceptor.async_accept(detail::use_nothrow_awaitable);
    if (!ec) {
      detail::own_accepted_fd(socket);  // closing it then needs no epoll_ctl (reactor_wait.hpp)
      if (failed_in_burst) log::debug("accepting again after ", log::count(failed_in_burst, "failed accept"));
      failed_in_burst = 0;
      on_accept(std::move(socket));
      continue;
    }
    if (!acceptor.is_open() || ec == asio::error::operation_aborted) co_return;
    if (ec == asio::error::connection_aborted) continue;  // the client gave up while queued: nothing to do
    ++failed_in_burst;
    const auto now = std::chrono::steady_clock::now();
    if (!last_warning || now - *last_warning >= warn_every) {
      std::error_code ignored;  // only used for the log line
      auto local = acceptor.local_endpoint(ignored);
      log::warn("accept on ", local.address().to_string(), ":", local.port(), ": ", ec.message(),
                is_resource_error(ec) ? "; pausing accepts for 100ms until fds free up" : "; retrying in 100ms",
                unlogged ? " (" + log::count(unlogged, "more failure") + " since the last line)" : std::string());
      last_warning = now;
      unlogged = 0;
    } else {
      ++unlogged;
    }
    // The pending connection stays queued and the acceptor stays readable: without a pause this spins.
    co_await detail::sleep_for(100ms);
  }
}

}  // namespace amb
