// SPDX-License-Identifier: MIT
// Connecting to host:port with one overall timeout, trying each resolved address, without exceptions.
#pragma once

#include "amb/address.hpp"
#include "amb/detail/async.hpp"
#include "amb/error.hpp"

#include "amb/detail/asio.hpp"
#include "amb/detail/reactor_wait.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

namespace amb {

namespace detail {

/// Arms `timer` for `deadline` and calls `on_expiry()` if it fires while `*alive` is still true.
/// A plain completion handler rather than awaitable operators (||): a connect costs one timer
/// wait, not a parallel group, and the programs carry less code. `alive` is shared, so a wake-up
/// that arrives after the awaiting coroutine finished does nothing.
template <class OnExpiry>
void arm_deadline(asio::steady_timer& timer, std::chrono::steady_clock::time_point deadline,
                  const std::shared_ptr<bool>& alive, OnExpiry on_expiry) {
  timer.expires_at(deadline);
  timer.async_wait([alive, on_expiry](std::error_code ec) mutable {
    if (!ec && *alive) on_expiry();
  });
}

/// Starts a connect to `address` on `socket` (opened here, non-blocking, with SOCK_CLOEXEC where the
/// reactor wait allows: reactor_wait.hpp). Returns {} with `in_progress` false when connected at once,
/// {} with `in_progress` true when the connect goes on (wait for the socket to become writable, then
/// ask connect_outcome()), else the error. Asio's async_connect makes an ioctl, a poll(2) and a
/// getsockopt around the same wait; this makes none of them where it can (see connect_outcome()).
/// The wait's epoll_ctl also registers EPOLLRDHUP for the relay (reactor_wait.hpp).
inline std::error_code start_connect(asio::ip::tcp::socket& socket, const asio::ip::tcp::endpoint& address,
                                     bool& in_progress) {
  in_progress = false;
  if (auto ec = open_non_blocking(socket, address.protocol())) return ec;
  if (::connect(socket.native_handle(), address.data(), static_cast<socklen_t>(address.size())) == 0) return {};
  if (errno != EINPROGRESS) return std::error_code(errno, asio::error::get_system_category());
  in_progress = true;
  readable_wait::register_peer_close_with_next_wait(socket);
  return {};
}

/// After the wait for a connecting socket to become writable: whether the connect succeeded. No
/// syscall where the reactor's report of the wait says so, else getsockopt(SO_ERROR).
inline std::error_code connect_outcome(asio::ip::tcp::socket& socket) {
  if (connected_per_report(socket)) return {};  // writable, no error: no SO_ERROR to ask
  int error = 0;
  socklen_t length = sizeof error;
  if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
  return error ? std::error_code(error, asio::error::get_system_category()) : std::error_code{};
}

/// One connect attempt: start_connect(), one wait for the socket to become writable, connect_outcome().
inline asio::awaitable<std::error_code> connect_once(asio::ip::tcp::socket& socket,
                                                     const asio::ip::tcp::endpoint& address) {
  bool in_progress = false;
  if (auto ec = start_connect(socket, address, in_progress); ec || !in_progress) co_return ec;
  auto [wait_ec] = co_await socket.async_wait(asio::socket_base::wait_write, use_nothrow_awaitable);
  if (wait_ec) co_return wait_ec;  // operation_aborted when the deadline closed the socket
  co_return connect_outcome(socket);
}

}  // namespace detail

/// Connects `socket` to `target` (numeric addresses skip DNS; names try every address in turn).
/// Returns {} when connected (with TCP_NODELAY set, and in non-blocking mode: a synchronous read then
/// returns would_block instead of waiting), amb::errc::timeout when `timeout` passed
/// first, else the last connect or resolve error. Never throws for network errors: the proxy
/// calls this on its failover path. A zero timeout means none.
inline asio::awaitable<std::error_code> connect_tcp(asio::ip::tcp::socket& socket, const host_port& target,
                                                    std::chrono::milliseconds timeout) {
  using detail::use_nothrow_awaitable;
  using tcp = asio::ip::tcp;

  auto executor = co_await asio::this_coro::executor;
  // One deadline for resolve and all attempts together.
  const bool bounded = timeout.count() > 0;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::optional<asio::steady_timer> timer;
  auto alive = std::make_shared<bool>(true);  // false once this coroutine no longer waits
  bool timed_out = false;
  struct finish_guard {
    std::shared_ptr<bool>& alive;
    ~finish_guard() { *alive = false; }
  } guard{alive};
  if (bounded) timer.emplace(executor);

  std::vector<tcp::endpoint> addresses;
  std::error_code ec;
  const auto numeric = asio::ip::make_address(target.host, ec);
  if (!ec) {
    addresses.emplace_back(numeric, target.port);
  } else {
    tcp::resolver resolver(executor);
    if (bounded)
      detail::arm_deadline(*timer, deadline, alive, [&] {
        timed_out = true;
        resolver.cancel();
      });
    auto [resolve_ec, results] = co_await resolver.async_resolve(target.host, std::to_string(target.port),
                                                                 tcp::resolver::numeric_service, use_nothrow_awaitable);
    if (timer) timer->cancel();
    if (timed_out) co_return make_error_code(errc::timeout);
    if (resolve_ec) co_return resolve_ec;
    for (const auto& entry : results) addresses.push_back(entry.endpoint());
    if (addresses.empty()) co_return make_error_code(asio::error::host_not_found);
  }

  std::error_code last = make_error_code(asio::error::host_not_found);
  for (const auto& address : addresses) {
    std::error_code ignored;  // the socket may be closed already
    socket.close(ignored);
    if (bounded) {
      if (std::chrono::steady_clock::now() >= deadline) co_return make_error_code(errc::timeout);
      detail::arm_deadline(*timer, deadline, alive, [&] {
        timed_out = true;
        std::error_code ignore_close;  // closing aborts the connect; nothing else to do
        socket.close(ignore_close);
      });
    }
    const auto connect_ec = co_await detail::connect_once(socket, address);
    if (timer) timer->cancel();
    if (timed_out) {
      socket.close(ignored);
      co_return make_error_code(errc::timeout);
    }
    last = connect_ec;
    if (!last) {
      socket.set_option(tcp::no_delay(true), ignored);  // latency over batching; failure is harmless
      co_return std::error_code{};
    }
  }
  std::error_code ignored;  // nothing useful to do when close fails
  socket.close(ignored);
  co_return last;
}

}  // namespace amb
