// Relaying bytes both ways between a client connection and a server connection, half-close aware.
//
// Vocabulary (as in Partow's tcpproxy_server): the *downstream* socket is the client's connection
// accepted by the proxy; the *upstream* socket is the proxy's connection to the real server.
//
//      client                       amb (this relay)                        server
//   +----------+   downstream   +-----------------------+   upstream   +----------+
//   |          | -------------> | direction up   (c->s) | -----------> |          |
//   |          | <------------- | direction down (s->c) | <----------- |          |
//   +----------+                +-----------------------+              +----------+
//
// Each direction waits until its source is readable, reads what is there into a
// per-thread scratch buffer and writes it straight on without blocking. Only when the
// destination cannot take everything at once does the direction borrow a buffer of its own to hold
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

/// Buffers a direction borrows while its destination is slower than its source (per thread: a relay's
/// handlers all run on the io_context's one thread, so no locking).
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

/// One connection: both sockets, both directions, and the timer the relay coroutine waits on.
/// The directions are plain completion handlers rather than coroutines: an idle connection then
/// costs one pending wait per socket and this object, not two coroutine stacks.
class relay_state : public std::enable_shared_from_this<relay_state> {
public:
  relay_state(asio::ip::tcp::socket down, asio::ip::tcp::socket up, relay_options opts)
      : downstream(std::move(down)), upstream(std::move(up)), options(opts), timer(downstream.get_executor()) {}

  asio::ip::tcp::socket downstream;
  asio::ip::tcp::socket upstream;
  relay_options options;
  relay_counters totals;
  asio::steady_timer timer;  ///< the relay waits on it: idle deadline, and cancelled when both directions end
  std::chrono::steady_clock::time_point last_activity = std::chrono::steady_clock::now();
  int running = 2;  ///< directions still going

  /// Starts both directions.
  void start() {
    drain(true);  // a first read at once: the client has often sent its request already
    drain(false);
  }

  /// Closes both sockets (an error or idle timeout); pending operations end with operation_aborted.
  void close_both() noexcept {
    std::error_code ignored;  // a socket may already be closed
    downstream.close(ignored);
    upstream.close(ignored);
  }

private:
  struct direction {
    relay_buffer held;  ///< only while the destination is slower than the source
  };
  direction up_, down_;  // up_: client -> server

  asio::ip::tcp::socket& from(bool up) { return up ? downstream : upstream; }
  asio::ip::tcp::socket& to(bool up) { return up ? upstream : downstream; }

  /// Waits for readability first, so a quiet connection holds no buffer.
  void wait(bool up) {
    from(up).async_wait(asio::socket_base::wait_read,
                        [self = shared_from_this(), up](std::error_code ec) { self->readable(up, ec); });
  }

  void readable(bool up, std::error_code ec) {
    if (ec) return finish(up, true);
    drain(up);
  }

  /// drain_some, where running out of memory ends this connection instead of escaping io_context::run.
  void drain(bool up) noexcept {
    try {
      drain_some(up);
    } catch (...) {
      finish(up, true);  // no handler is pending for this direction when anything here throws
    }
  }

  /// Reads until the source runs dry, at most 16 reads in a row so one busy connection cannot
  /// starve the others on this thread; writes each piece straight on when the destination can take it.
  void drain_some(bool up) {
    direction& d = up ? up_ : down_;
    for (int reads = 0; reads < 16; ++reads) {
      char* buffer = d.held ? d.held.data() : relay_scratch();
      std::error_code ec;
      std::size_t n = from(up).read_some(asio::buffer(buffer, relay_buffer_size), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) break;
      if (ec == asio::error::eof) {
        std::error_code ignored;  // the peer may be gone already; the other direction will notice
        to(up).shutdown(asio::socket_base::shutdown_send, ignored);
        return finish(up, false);
      }
      if (ec) return finish(up, true);
      if (options.idle_timeout.count() > 0) last_activity = std::chrono::steady_clock::now();
      std::size_t written = to(up).write_some(asio::buffer(buffer, n), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        written = 0;
        ec.clear();
      }
      if (ec) return finish(up, true);
      count(up, written);
      if (written < n) {
        // Keep only what the destination could not take yet, and continue when it has.
        if (!d.held) {
          d.held.acquire();
          std::memcpy(d.held.data(), buffer + written, n - written);
          buffer = d.held.data();
        } else {
          buffer += written;
        }
        asio::async_write(to(up), asio::buffer(buffer, n - written),
                          [self = shared_from_this(), up](std::error_code wec, std::size_t more) {
                            if (wec) return self->finish(up, true);
                            self->count(up, more);
                            self->drain(up);
                          });
        return;
      }
    }
    d.held.release();
    wait(up);
  }

  void count(bool up, std::size_t n) noexcept {
    (up ? totals.bytes_up : totals.bytes_down) += n;
    if (options.counters) (up ? options.counters->bytes_up : options.counters->bytes_down) += n;
  }

  void finish(bool up, bool failed) noexcept {
    (up ? up_ : down_).held.release();
    if (failed) close_both();
    if (--running == 0) timer.cancel();
  }
};

} // namespace detail

/// Relays until both directions end; returns the bytes moved by this connection. Never throws for
/// network errors. Sets TCP_NODELAY on both sockets. Both directions run on the sockets' executor
/// as completion handlers; use a one-thread io_context (or a strand), as the programs do.
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
  state->start();
  const auto idle = state->options.idle_timeout;
  while (state->running > 0) {
    if (idle.count() > 0)
      state->timer.expires_at(state->last_activity + idle);
    else
      state->timer.expires_at(std::chrono::steady_clock::time_point::max());
    auto [ec] = co_await state->timer.async_wait(use_nothrow_awaitable);
    if (state->running == 0) break;
    if (ec) {
      // Cancelled from outside (our caller is shutting down): close; the directions end on their own.
      state->close_both();
      break;
    }
    if (idle.count() > 0 && std::chrono::steady_clock::now() >= state->last_activity + idle) {
      state->close_both();
      state->last_activity = std::chrono::steady_clock::time_point::max() - idle;  // wait for the directions only
    }
  }
  co_return state->totals;
}

} // namespace amb
