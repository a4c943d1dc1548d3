// Connecting to host:port with one overall timeout, trying each resolved address, without exceptions.
#pragma once

#include "amb/address.hpp"
#include "amb/detail/async.hpp"
#include "amb/error.hpp"

#include <asio.hpp>
#include <asio/experimental/awaitable_operators.hpp>

#include <chrono>
#include <string>
#include <system_error>
#include <variant>
#include <vector>

namespace amb {

/// Connects `socket` to `target` (numeric addresses skip DNS; names try every address in turn).
/// Returns {} when connected (with TCP_NODELAY set), amb::errc::timeout when `timeout` passed
/// first, else the last connect or resolve error. Never throws for network errors: the proxy
/// calls this on its failover path. A zero timeout means none.
inline asio::awaitable<std::error_code> connect_tcp(asio::ip::tcp::socket& socket, const host_port& target,
                                                    std::chrono::milliseconds timeout) {
  using namespace asio::experimental::awaitable_operators;
  using detail::use_nothrow_awaitable;
  using tcp = asio::ip::tcp;

  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer(executor);
  // One deadline for resolve and all attempts together; "none" is a deadline far away.
  const auto deadline = timeout.count() > 0 ? std::chrono::steady_clock::now() + timeout
                                            : std::chrono::steady_clock::time_point::max();

  std::vector<tcp::endpoint> addresses;
  std::error_code ec;
  const auto numeric = asio::ip::make_address(target.host, ec);
  if (!ec) {
    addresses.emplace_back(numeric, target.port);
  } else {
    tcp::resolver resolver(executor);
    timer.expires_at(deadline);
    auto done = co_await (resolver.async_resolve(target.host, std::to_string(target.port),
                                                 tcp::resolver::numeric_service, use_nothrow_awaitable) ||
                          timer.async_wait(use_nothrow_awaitable));
    if (done.index() == 1) co_return make_error_code(errc::timeout);
    auto& [resolve_ec, results] = std::get<0>(done);
    if (resolve_ec) co_return resolve_ec;
    for (const auto& entry : results) addresses.push_back(entry.endpoint());
    if (addresses.empty()) co_return make_error_code(asio::error::host_not_found);
  }

  std::error_code last = make_error_code(asio::error::host_not_found);
  for (const auto& address : addresses) {
    std::error_code ignored;  // the socket may be closed already
    socket.close(ignored);
    timer.expires_at(deadline);
    auto done = co_await (socket.async_connect(address, use_nothrow_awaitable) ||
                          timer.async_wait(use_nothrow_awaitable));
    if (done.index() == 1) {
      socket.close(ignored);
      co_return make_error_code(errc::timeout);
    }
    last = std::get<0>(std::get<0>(done));
    if (!last) {
      socket.set_option(tcp::no_delay(true), ignored);  // latency over batching; failure is harmless
      co_return std::error_code{};
    }
  }
  std::error_code ignored;  // nothing useful to do when close fails
  socket.close(ignored);
  co_return last;
}

} // namespace amb
