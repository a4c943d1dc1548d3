// SPDX-License-Identifier: MIT
// Test support for code on an io_context driven by the test's own thread: parse an endpoint or fail
// the test, and run one coroutine to its end (while in-test servers on the same io_context serve it).
#pragma once

#include <amb/address.hpp>

#include <asio.hpp>
#include <doctest/doctest.h>

#include <chrono>
#include <exception>
#include <optional>
#include <string>

namespace amb::test {

/// The endpoint of `url` ("http://127.0.0.1:P", "unix:///path"); fails the test when it does not parse.
inline amb::endpoint endpoint_of(const std::string& url) {
  auto e = amb::parse_endpoint(url);
  REQUIRE_MESSAGE(e, e.error);
  return *e;
}

/// Runs `a` on `io` until it finishes (other work, such as in-test servers, may stay pending);
/// returns its value or rethrows its exception. Fails the test after `limit`.
template <class T>
T run_on(asio::io_context& io, asio::awaitable<T> a, std::chrono::seconds limit = std::chrono::seconds(30)) {
  std::optional<T> value;
  std::exception_ptr error;
  bool finished = false;
  asio::co_spawn(io, std::move(a), [&](std::exception_ptr e, T v) {
    error = e;
    if (!e) value = std::move(v);
    finished = true;
  });
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!finished && std::chrono::steady_clock::now() < end) {
    if (io.stopped()) io.restart();  // it stops whenever it runs out of work
    io.run_one_for(std::chrono::milliseconds(100));
  }
  REQUIRE_MESSAGE(finished, "the coroutine did not finish within " << limit.count() << " s");
  if (error) std::rethrow_exception(error);
  return std::move(*value);
}

}  // namespace amb::test
