// SPDX-License-Identifier: MIT
// Small coroutine helpers shared by the clients and the proxy (Asio 1.22, standalone).
#pragma once

#include "amb/detail/asio.hpp"

#include <chrono>

namespace amb::detail {

/// Completion token that returns (error_code, results...) instead of throwing.
constexpr auto use_nothrow_awaitable = asio::experimental::as_tuple(asio::use_awaitable);

/// Suspends the calling coroutine for `d` (returns early, without throwing, when cancelled).
inline asio::awaitable<void> sleep_for(std::chrono::steady_clock::duration d) {
  asio::steady_timer timer(co_await asio::this_coro::executor, d);
  co_await timer.async_wait(use_nothrow_awaitable);
}

}  // namespace amb::detail
