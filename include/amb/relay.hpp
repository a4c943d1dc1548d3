// Relaying bytes both ways between a client connection and a server connection, half-close aware.
//
// Vocabulary (as in Partow's tcpproxy_server): the *downstream* socket is the client's connection
// accepted by the proxy; the *upstream* socket is the proxy's connection to the real server.
//
//      client                       amb (this relay)                       server
//   +----------+   downstream   +----------------------+   upstream   +----------+
//   |          | -------------> | pump "up"   (c -> s) | -----------> |          |
//   |          | <------------- | pump "down" (s -> c) | <----------- |          |
//   +----------+                +----------------------+              +----------+
//
// Each direction ("pump") waits until its source is readable, reads what is there into a
// per-thread scratch buffer and writes it straight on without blocking. Only when the
// destination cannot take everything at once does the pump borrow a buffer of its own to hold
// the rest, and it gives it back as soon as the source runs dry. So an idle connection owns no
// data buffer at all, and no read allocates.
//
// EOF from one side is passed on as shutdown(send) on the other, and the other direction keeps
// flowing (a client may send its request, half-close, and still read the whole reply). An error
// on either side closes both. The relay ends when both directions have ended.
#pragma once

#include "amb/detail/async.hpp"

#include <asio.hpp>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <system_error>
#include <utility>
#include <vector>

namespace amb {

/// Bytes moved by the relay; "up" is client -> server, "down" is server -> client.
struct relay_counters {
  std::uint64_t bytes_up = 0;    ///< bytes written to the server
  std::uint64_t bytes_down = 0;  ///< bytes written to the client
};

/// How a relay behaves.
struct relay_options {
  std::chrono::milliseconds idle_timeout{0};  ///< no byte either way for this long closes both; 0 = never
  relay_counters* counters = nullptr;         ///< optional live totals (e.g. for metrics), added to as bytes flow
};

namespace detail {

/// Size of one read: big enough for bulk transfers, small enough to keep in a per-thread pool.
inline constexpr std::size_t relay_buffer_size = 64 * 1024;

/// Buffers a pump borrows while its destination is slower than its source (per thread: the relay's
/// coroutines all run on the io_context's one thread, so no locking).
inline std::vector<std::unique_ptr<char[]>>& relay_buffer_pool() {
  thread_local std::vector<std::unique_ptr<char[]>> pool;
  return pool;
}

/// Where reads land when the destination takes everything at once (the common case).
inline char* relay_scratch() {
  thread_local std::unique_ptr<char[]> scratch(new char[relay_buffer_size]);
  return scratch.get();
}

/// A buffer borrowed from the pool, returned on release() or destruction.
class relay_buffer {
public:
  relay_buffer() = default;
  relay_buffer(const relay_buffer&) = delete;
  relay_buffer& operator=(const relay_buffer&) = delete;
  ~relay_buffer() { release(); }
  explicit operator bool() const noexcept { return data_ != nullptr; }
  char* data() const noexcept { return data_.get(); }
  /// Takes a buffer from the pool (or allocates one when the pool is empty).
  void acquire() {
    if (data_) return;
    auto& pool = relay_buffer_pool();
    if (pool.empty()) {
      data_.reset(new char[relay_buffer_size]);
    } else {
      data_ = std::move(pool.back());
      pool.pop_back();
    }
  }
  /// Gives the buffer back; a few stay pooled, the rest are freed so idle memory stays small.
  void release() noexcept {
    if (!data_) return;
    constexpr std::size_t keep = 16;
    try {
      auto& pool = relay_buffer_pool();
      if (pool.size() < keep) pool.push_back(std::move(data_));
    } catch (...) {
      // Could not grow the pool: freeing the buffer below is just as correct.
    }
    data_.reset();
  }

private:
  std::unique_ptr<char[]> data_;
};

/// One connection's shared state: both sockets, counters, and the waiter that learns when both pumps end.
struct relay_state {
  relay_state(asio::ip::tcp::socket down, asio::ip::tcp::socket up, relay_options opts)
      : downstream(std::move(down)), upstream(std::move(up)), options(opts), timer(downstream.get_executor()) {}

  asio::ip::tcp::socket downstream;
  asio::ip::tcp::socket upstream;
  relay_options options;
  relay_counters totals;
  asio::steady_timer timer;  ///< the relay waits on it: idle deadline, and cancelled when the pumps end
  std::chrono::steady_clock::time_point last_activity = std::chrono::steady_clock::now();
  int running = 2;  ///< pumps still going

  /// Closes both sockets (an error or idle timeout); pending operations end with operation_aborted.
  void close_both() noexcept {
    std::error_code ignored;  // a socket may already be closed
    downstream.close(ignored);
    upstream.close(ignored);
  }
};

/// Moves bytes from `from` to `to` until EOF (passed on as shutdown(send)) or an error (closes both).
inline asio::awaitable<void> relay_pump(std::shared_ptr<relay_state> state, bool client_to_server) {
  auto& from = client_to_server ? state->downstream : state->upstream;
  auto& to = client_to_server ? state->upstream : state->downstream;
  auto& total = client_to_server ? state->totals.bytes_up : state->totals.bytes_down;
  std::uint64_t* live = nullptr;
  if (state->options.counters)
    live = client_to_server ? &state->options.counters->bytes_up : &state->options.counters->bytes_down;
  const bool track_idle = state->options.idle_timeout.count() > 0;

  relay_buffer held;  // only while `to` is slower than `from`
  bool failed = false;
  try {
    for (;;) {
      // Wait for readability first, so a quiet connection holds no buffer.
      auto [wait_ec] = co_await from.async_wait(asio::socket_base::wait_read, use_nothrow_awaitable);
      if (wait_ec) {
        failed = true;
        break;
      }
      // Read until the source runs dry, at most 16 reads in a row so one busy connection
      // cannot starve the others on this thread.
      bool eof = false;
      for (int reads = 0; reads < 16 && !failed; ++reads) {
        char* buffer = held ? held.data() : relay_scratch();
        std::error_code ec;
        std::size_t n = from.read_some(asio::buffer(buffer, relay_buffer_size), ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) break;
        if (ec == asio::error::eof) {
          eof = true;
          break;
        }
        if (ec) {
          failed = true;
          break;
        }
        if (track_idle) state->last_activity = std::chrono::steady_clock::now();
        // Try to pass it on at once; only what the destination cannot take now is kept.
        std::size_t written = to.write_some(asio::buffer(buffer, n), ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) {
          written = 0;
          ec.clear();
        }
        if (ec) {
          failed = true;
          break;
        }
        if (written < n) {
          if (!held) {
            held.acquire();
            std::memcpy(held.data(), buffer + written, n - written);
            buffer = held.data();
          } else {
            buffer += written;
          }
          auto [write_ec, more] = co_await asio::async_write(to, asio::buffer(buffer, n - written),
                                                             use_nothrow_awaitable);
          if (write_ec) {
            failed = true;
            break;
          }
          written += more;
        }
        total += written;
        if (live) *live += written;
      }
      if (eof) {
        std::error_code ignored;  // the peer may be gone already; the other direction will notice
        to.shutdown(asio::socket_base::shutdown_send, ignored);
        break;
      }
      if (failed) break;
      held.release();
    }
  } catch (const std::exception&) {
    // Only allocation failure or cancellation can get here: treat as an error on this connection.
    failed = true;
  }
  held.release();
  if (failed) state->close_both();
  if (--state->running == 0) state->timer.cancel();
}

} // namespace detail

/// Relays until both directions end; returns the bytes moved by this connection. Never throws for
/// network errors. Sets TCP_NODELAY on both sockets. The pumps run on the calling coroutine's
/// executor; use a one-thread io_context (or a strand), as the programs do.
inline asio::awaitable<relay_counters> relay(asio::ip::tcp::socket downstream, asio::ip::tcp::socket upstream,
                                             relay_options options = {}) {
  using detail::use_nothrow_awaitable;
  auto state = std::make_shared<detail::relay_state>(std::move(downstream), std::move(upstream), options);
  for (auto* s : {&state->downstream, &state->upstream}) {
    std::error_code ignored;  // a socket that cannot take these options fails on first use instead
    s->set_option(asio::ip::tcp::no_delay(true), ignored);
    // Reads and writes are tried directly and must never block the io_context thread.
    s->non_blocking(true, ignored);
  }
  auto executor = co_await asio::this_coro::executor;
  for (bool client_to_server : {true, false}) {
    // relay_pump catches everything itself; the handler only exists to avoid `detached`.
    asio::co_spawn(executor, detail::relay_pump(state, client_to_server), [](std::exception_ptr) {});
  }
  const auto idle = state->options.idle_timeout;
  while (state->running > 0) {
    if (idle.count() > 0)
      state->timer.expires_at(state->last_activity + idle);
    else
      state->timer.expires_at(std::chrono::steady_clock::time_point::max());
    auto [ec] = co_await state->timer.async_wait(use_nothrow_awaitable);
    if (state->running == 0) break;
    if (ec) {
      // Cancelled from outside (our caller is shutting down): close, the pumps end on their own.
      state->close_both();
      break;
    }
    if (idle.count() > 0 && std::chrono::steady_clock::now() >= state->last_activity + idle) {
      state->close_both();
      state->last_activity = std::chrono::steady_clock::time_point::max() - idle;  // wait for the pumps only
    }
  }
  co_return state->totals;
}

} // namespace amb
