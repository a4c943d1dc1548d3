// SPDX-License-Identifier: MIT
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
// Bulk data (a read that fills the whole 64 kB buffer) switches the direction to splice(2) on
// Linux: the bytes go from one socket into a pipe and from the pipe into the other socket inside
// the kernel, never copied through user space (what haproxy does with option splice-auto). The pipe
// comes from a per-thread pool only for the burst and goes back to it as soon as the source runs
// dry, so an idle connection owns no pipe; a direction whose bursts turn small goes back to copying
// (for small messages a copy costs the same two syscalls and no pipe). Where pipes cannot be had
// (out of fds), where the process does not ignore SIGPIPE (splice has no MSG_NOSIGNAL), or with
// relay_options::splice off, the copy path does everything.
//
// Syscalls per relayed message: one read and one write, as haproxy makes. A read that returns less
// than the buffer emptied the socket, so the direction goes straight back to waiting instead of
// reading again to see EAGAIN. The wait itself is detail::readable_wait: queued on Asio's epoll
// reactor without a syscall where that is allowed (amb/detail/reactor_wait.hpp, the one place amb
// reaches into Asio's internals), Asio's public async_wait elsewhere.
//
// EOF from one side is passed on as shutdown(send) on the other, and the other direction keeps
// flowing (a client may send its request, half-close, and still read the whole reply). An error
// on either side closes both. The relay ends when both directions have ended.
//
// No coroutine stays alive for a relayed connection: the state below is one heap object driven by
// completion handlers, so an idle connection costs that object, its two sockets and the reactor's
// per-descriptor records.
//
// Threads: all of a relay's handlers must run on one thread: a one-thread io_context, as every amb
// program and ambassador runs (one io_context per --threads loop). A strand on a thread pool is
// not enough (the reactor wait touches Asio's per-descriptor record without its lock).
#pragma once

#include "amb/detail/asio.hpp"
#include "amb/detail/reactor_wait.hpp"

#include <sys/socket.h>
#include <sys/types.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__linux__) && !defined(AMB_NO_SPLICE)
#define AMB_RELAY_SPLICE 1
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#else
#define AMB_RELAY_SPLICE 0
#endif

namespace amb {

/// Bytes moved by the relay; "up" is client -> server, "down" is server -> client.
struct relay_counters {
  std::uint64_t bytes_up = 0;       ///< bytes written to the server
  std::uint64_t bytes_down = 0;     ///< bytes written to the client
  std::uint64_t empty_reads = 0;    ///< reads that found nothing (EAGAIN): syscalls wasted; a healthy relay makes few
  std::uint64_t bytes_spliced = 0;  ///< of bytes_up + bytes_down, those moved by splice(2), never copied to user space
};

/// How a relay behaves.
struct relay_options {
  std::chrono::milliseconds idle_timeout{0};  ///< no byte either way for this long closes both; 0 = never
  relay_counters* counters = nullptr;         ///< optional live totals (e.g. for metrics), added to as bytes flow
  bool splice = true;  ///< move bulk data with splice(2) where the system has it and SIGPIPE is ignored
  /// The caller has set TCP_NODELAY on the upstream socket already (connect_tcp does): the relay
  /// does not set it again (one syscall per connection less). It always sets it on the downstream.
  bool upstream_nodelay_set = false;
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

#if AMB_RELAY_SPLICE
/// The two ends of a pipe, for splice(2).
struct pipe_ends {
  int read = -1;
  int write = -1;
};

/// Empty pipes kept for the next burst (per thread, like the buffers). Each costs two fds and no
/// memory while empty; a few are kept so a busy thread does not make two syscalls per burst.
inline std::vector<pipe_ends>& relay_pipe_pool() {
  thread_local struct pool_t {
    std::vector<pipe_ends> pipes;
    ~pool_t() {
      for (auto& p : pipes) {
        ::close(p.read);
        ::close(p.write);
      }
    }
  } pool;
  return pool.pipes;
}

/// Pipes now lent to directions on this thread (tests check that idle connections hold none).
inline std::size_t& relay_pipes_lent() {
  thread_local std::size_t lent = 0;
  return lent;
}

/// True when the process ignores SIGPIPE. splice(2) into a socket whose peer is gone raises SIGPIPE
/// (it has no MSG_NOSIGNAL), which by default kills the process: the relay splices only where that
/// signal is ignored, as in every amb program; elsewhere it copies (send() with MSG_NOSIGNAL).
inline bool sigpipe_ignored() noexcept {
  struct sigaction now {};
  return ::sigaction(SIGPIPE, nullptr, &now) == 0 && now.sa_handler == SIG_IGN;
}

/// A pipe borrowed for one burst of bulk data: from the pool, or made; back to the pool when it is
/// empty, closed when it still holds bytes (the connection failed mid-burst).
class relay_pipe {
public:
  relay_pipe() = default;
  relay_pipe(const relay_pipe&) = delete;
  relay_pipe& operator=(const relay_pipe&) = delete;
  ~relay_pipe() { release(); }
  explicit operator bool() const noexcept { return ends_.read >= 0; }
  int read_end() const noexcept { return ends_.read; }
  int write_end() const noexcept { return ends_.write; }
  std::size_t held = 0;  ///< bytes spliced in and not yet out

  /// False when no pipe can be had (out of fds): the caller copies instead.
  bool acquire() noexcept {
    if (*this) return true;
    auto& pool = relay_pipe_pool();
    if (!pool.empty()) {
      ends_ = pool.back();
      pool.pop_back();
    } else {
      int fds[2];
      if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return false;
      ends_ = {fds[0], fds[1]};
    }
    ++relay_pipes_lent();
    return true;
  }
  void release() noexcept {
    if (!*this) return;
    constexpr std::size_t keep = 8;
    --relay_pipes_lent();
    auto& pool = relay_pipe_pool();
    bool kept = false;
    if (held == 0 && pool.size() < keep) {
      try {
        pool.push_back(ends_);
        kept = true;
      } catch (...) {
        // Could not grow the pool: closing the pipe below is just as correct.
      }
    }
    if (!kept) {
      ::close(ends_.read);
      ::close(ends_.write);
    }
    ends_ = {};
    held = 0;
  }

private:
  pipe_ends ends_;
};
#endif

/// One connection: both sockets and both directions. Lives on the heap, driven by completion
/// handlers; keeps itself alive (self_) while one of its embedded waits is queued.
class relay_state : public std::enable_shared_from_this<relay_state> {
public:
  // Sockets by rvalue reference, here and below: each move of an Asio socket costs about 100
  // instructions, and a proxied connection's own CPU is counted in hundreds (bench/RESULTS.md).
  relay_state(asio::ip::tcp::socket&& down, asio::ip::tcp::socket&& up, relay_options opts)
      : downstream(std::move(down)), upstream(std::move(up)), options(opts) {}
  virtual ~relay_state() = default;
  relay_state(const relay_state&) = delete;
  relay_state& operator=(const relay_state&) = delete;

  asio::ip::tcp::socket downstream;
  asio::ip::tcp::socket upstream;
  relay_options options;
  relay_counters totals;

  /// Sets TCP_NODELAY and starts both directions (and the idle timer when there is one). The sockets
  /// may be in blocking mode: every read and write here says MSG_DONTWAIT itself, so no ioctl is made
  /// to switch them (splice, which needs the sockets non-blocking, switches them when it starts).
  void start() {
    std::error_code ignored;  // a socket that cannot take the option fails on first use instead
    downstream.set_option(asio::ip::tcp::no_delay(true), ignored);
    if (!options.upstream_nodelay_set) upstream.set_option(asio::ip::tcp::no_delay(true), ignored);
    if (options.idle_timeout.count() > 0) {
      last_activity_ = std::chrono::steady_clock::now();
      timer_ = std::make_unique<asio::steady_timer>(downstream.get_executor());
      arm_timer();
    }
    drain(true);  // a first read at once: the client has often sent its request already
    // The server has rarely said anything yet: no read for EAGAIN, wait. On a socket amb connected
    // this waits for the server's first bytes (a server that spoke first has made an event, which
    // completes the wait at once); on one Asio connected, the first wait completes at once anyway.
    wait(false);
  }

  /// Closes both sockets (an error, the idle timeout, or the owner shutting down); the directions
  /// then end with operation_aborted.
  void close_both() noexcept {
    std::error_code ignored;  // a socket may already be closed
    downstream.close(ignored);
    upstream.close(ignored);
  }

protected:
  /// Called once, when both directions have ended.
  virtual void done() noexcept = 0;

private:
  /// A burst that moved less than this (between two waits) ends bulk mode: back to copying.
  static constexpr std::size_t bulk_burst = 16 * 1024;

  struct direction {
    relay_buffer held;  ///< only while the destination is slower than the source (copy path)
#if AMB_RELAY_SPLICE
    relay_pipe pipe;  ///< only during a burst of bulk data (splice path)
    bool bulk = false;
#endif
    std::size_t burst = 0;  ///< bytes moved since the last wait for the source
    readable_wait wait;
    direction(relay_state* s, readable_wait::callback cb) : wait(s, cb) {}
  };
  direction up_{this, &relay_state::on_wait_up}, down_{this, &relay_state::on_wait_down};  // up_: client -> server
  int queued_ = 0;                     ///< embedded waits queued in the reactor or scheduler
  std::shared_ptr<relay_state> self_;  ///< set while queued_ > 0
  // Only with an idle timeout, and on the heap: an Asio timer is 128 bytes, an eighth of what an idle
  // connection costs in all, and most connections have no timeout.
  std::unique_ptr<asio::steady_timer> timer_;
  std::chrono::steady_clock::time_point last_activity_{};
  int running_ = 2;  ///< directions still going

  asio::ip::tcp::socket& from(bool up) { return up ? downstream : upstream; }
  asio::ip::tcp::socket& to(bool up) { return up ? upstream : downstream; }

  void arm_timer() {
    timer_->expires_at(last_activity_ + options.idle_timeout);
    timer_->async_wait([self = shared_from_this()](std::error_code ec) { self->on_timer(ec); });
  }

  void on_timer(std::error_code ec) {
    if (ec || running_ == 0) return;  // cancelled: the relay has ended
    if (std::chrono::steady_clock::now() >= last_activity_ + options.idle_timeout) return close_both();
    arm_timer();
  }

  /// Waits until the source is readable again. Precondition: the last read emptied it, or nothing
  /// has read it yet.
  void wait(bool up) {
    direction& d = up ? up_ : down_;
#if AMB_RELAY_SPLICE
    // The burst is over and the pipe empty: it goes back to the pool, so an idle connection holds none.
    if (d.burst < bulk_burst) d.bulk = false;
    d.pipe.release();
#endif
    d.burst = 0;
    if (queued_++ == 0) self_ = shared_from_this();
    d.wait.start(from(up));
  }

  static void on_wait_up(void* owner, std::error_code ec, bool destroyed) {
    static_cast<relay_state*>(owner)->waited(true, ec, destroyed);
  }
  static void on_wait_down(void* owner, std::error_code ec, bool destroyed) {
    static_cast<relay_state*>(owner)->waited(false, ec, destroyed);
  }
  void waited(bool up, std::error_code ec, bool destroyed) noexcept {
    // Keeps this object alive until the end of this call, also when it was the last reference.
    std::shared_ptr<relay_state> keep;
    if (--queued_ == 0) keep = std::move(self_);
    if (destroyed) return;
    if (ec) return finish(up, true);
    drain(up);
  }

  /// drain_some, where running out of memory ends this connection instead of escaping io_context::run.
  void drain(bool up) noexcept {
    try {
#if AMB_RELAY_SPLICE
      if ((up ? up_ : down_).bulk) return splice_some(up);
#endif
      drain_some(up);
    } catch (...) {
      finish(up, true);  // no handler is pending for this direction when anything here throws
    }
  }

  /// The source's EOF: passed on as a shutdown of the destination's sending side, or, when the other
  /// direction has ended too (cleanly: a failure would have closed both), both sockets are read to
  /// their end and closing them sends the FIN: a shutdown call would be one syscall more for nothing.
  void source_ended(bool up) {
    if (running_ == 1) {
      close_both();
      return finish(up, false);
    }
    std::error_code ignored;  // the peer may be gone already; the other direction will notice
    to(up).shutdown(asio::socket_base::shutdown_send, ignored);
    finish(up, false);
  }

  /// Reads until a read comes back short (the source is empty), at most 16 full reads in a row so
  /// one busy connection cannot starve the others on this thread; writes each piece straight on
  /// when the destination can take it.
  void drain_some(bool up) {
    direction& d = up ? up_ : down_;
    for (int reads = 0; reads < 16; ++reads) {
      char* buffer = d.held ? d.held.data() : relay_scratch();
      const ssize_t got = receive(from(up), buffer, relay_buffer_size);
      if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        count_empty_read(up);
        break;
      }
      if (got < 0 && errno == EINTR) continue;
      if (got == 0) return source_ended(up);
      if (got < 0) return finish(up, true);
      const auto n = static_cast<std::size_t>(got);
      if (timer_) last_activity_ = std::chrono::steady_clock::now();
      const ssize_t sent = send_some(to(up), buffer, n);
      if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return finish(up, true);
      const std::size_t written = sent < 0 ? 0 : static_cast<std::size_t>(sent);
      count(up, written);
      d.burst += written;
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
                            (up ? self->up_ : self->down_).burst += more;
                            self->drain(up);
                          });
        return;
      }
#if AMB_RELAY_SPLICE
      if (n == relay_buffer_size && options.splice && sigpipe_ignored() && make_non_blocking()) {
        // A full buffer: bulk data. The rest of the burst goes by splice (the buffer is empty now).
        d.bulk = true;
        d.held.release();
        return splice_some(up);
      }
#endif
      // A short read emptied the socket: wait rather than read again for EAGAIN, unless the peer
      // has closed too (its FIN is queued behind the data and will not wake us again).
      if (n < relay_buffer_size && !readable_wait::peer_closed(from(up))) break;
      if (reads == 15) {
        // Sixteen full buffers and maybe more waiting: let other connections run, then go on. (The
        // edge-triggered wait would not fire for data that is already there.)
        d.held.release();
        asio::post(downstream.get_executor(), [self = shared_from_this(), up] { self->drain(up); });
        return;
      }
    }
    d.held.release();
    wait(up);
  }

#if AMB_RELAY_SPLICE
  /// The bulk path: source -> pipe -> destination with splice(2), until the source is empty (EAGAIN;
  /// a short splice does not prove it, since a pipe's slots can fill before its bytes do), at most 16
  /// rounds in a row. When the destination is full the bytes wait in the pipe, and so does the
  /// direction, for the destination to become writable.
  void splice_some(bool up) {
    direction& d = up ? up_ : down_;
    if (!d.pipe.acquire()) {  // no fds for a pipe right now: copy this burst
      d.bulk = false;
      return drain_some(up);
    }
    const int source = from(up).native_handle(), destination = to(up).native_handle();
    for (int round = 0; round < 16; ++round) {
      if (d.pipe.held == 0) {
        const ssize_t in = ::splice(source, nullptr, d.pipe.write_end(), nullptr, relay_buffer_size,
                                    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (in < 0 && errno == EINTR) continue;
        if (in < 0 && errno == EAGAIN) {
          count_empty_read(up);
          return wait(up);
        }
        if (in < 0) return finish(up, true);
        if (in == 0) return source_ended(up);
        d.pipe.held = static_cast<std::size_t>(in);
        if (timer_) last_activity_ = std::chrono::steady_clock::now();
      }
      const ssize_t out =
          ::splice(d.pipe.read_end(), nullptr, destination, nullptr, d.pipe.held, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (out < 0 && errno == EINTR) continue;
      if (out < 0 && errno == EAGAIN) {
        // The destination is full: wait until it can take more, the bytes stay in the pipe.
        to(up).async_wait(asio::socket_base::wait_write, [self = shared_from_this(), up](std::error_code ec) {
          if (ec) return self->finish(up, true);
          self->drain(up);
        });
        return;
      }
      if (out < 0) return finish(up, true);
      d.pipe.held -= static_cast<std::size_t>(out);
      count(up, static_cast<std::size_t>(out));
      totals.bytes_spliced += static_cast<std::size_t>(out);
      if (options.counters) options.counters->bytes_spliced += static_cast<std::size_t>(out);
      d.burst += static_cast<std::size_t>(out);
    }
    // Sixteen rounds and maybe more waiting: let other connections run, then go on.
    asio::post(downstream.get_executor(), [self = shared_from_this(), up] { self->drain(up); });
  }
#endif

  /// One non-blocking read of the socket, whatever its mode: like recv(2), -1 with errno on failure.
  static ssize_t receive(asio::ip::tcp::socket& s, char* buffer, std::size_t size) noexcept {
    return ::recv(s.native_handle(), buffer, size, MSG_DONTWAIT);
  }
  /// One non-blocking write, whatever the socket's mode, never raising SIGPIPE: like send(2).
  static ssize_t send_some(asio::ip::tcp::socket& s, const char* data, std::size_t size) noexcept {
    return ::send(s.native_handle(), data, size, MSG_DONTWAIT | MSG_NOSIGNAL);
  }

#if AMB_RELAY_SPLICE
  /// splice(2) honours only the sockets' own mode: both go non-blocking before the first one (an
  /// ioctl each, once per connection that moves bulk data, and none where Asio says they are already).
  bool make_non_blocking() noexcept {
    std::error_code ec;
    for (auto* s : {&downstream, &upstream})
      if (!s->non_blocking() && s->non_blocking(true, ec)) return false;
    return true;
  }
#endif

  void count(bool up, std::size_t n) noexcept {
    (up ? totals.bytes_up : totals.bytes_down) += n;
    if (options.counters) (up ? options.counters->bytes_up : options.counters->bytes_down) += n;
  }

  void count_empty_read(bool) noexcept {
    ++totals.empty_reads;
    if (options.counters) ++options.counters->empty_reads;
  }

  void finish(bool up, bool failed) noexcept {
    direction& d = up ? up_ : down_;
    d.held.release();
#if AMB_RELAY_SPLICE
    d.pipe.release();  // closed rather than pooled when bytes are still in it
#endif
    if (failed) close_both();
    if (--running_ == 0) {
      if (timer_) timer_->cancel();
      done();
    }
  }
};

/// relay_state with the caller's completion, called with the totals when both directions end.
template <class OnDone>
class relay_state_with final : public relay_state {
public:
  relay_state_with(asio::ip::tcp::socket&& down, asio::ip::tcp::socket&& up, relay_options opts, OnDone f)
      : relay_state(std::move(down), std::move(up), opts), on_done_(std::move(f)) {}

private:
  void done() noexcept override {
    if (!on_done_) return;
    try {
      // Moved out first: the completion may drop the last reference to this state. A plain local,
      // not a second std::optional: GCC 12 reports the optional's payload as maybe-uninitialized.
      OnDone f(std::move(*on_done_));
      on_done_.reset();
      f(totals);
    } catch (...) {
      // The completion is the caller's; it must not throw, and an exception here has nowhere to go.
    }
  }
  std::optional<OnDone> on_done_;
};

}  // namespace detail

/// Starts relaying between `downstream` and `upstream` and returns at once; `on_done(relay_counters)`
/// runs once, on the sockets' executor, when both directions have ended (it must not throw). No
/// coroutine stays alive meanwhile. Sets TCP_NODELAY on both sockets. Never throws for network
/// errors (may throw std::bad_alloc). Both directions run on the sockets' executor as completion
/// handlers: use a one-thread io_context, as the programs do (not a strand on a thread pool: see the
/// threads note at the top).
template <class OnDone>
void start_relay(asio::ip::tcp::socket&& downstream, asio::ip::tcp::socket&& upstream, relay_options options,
                 OnDone&& on_done) {
  auto state = std::make_shared<detail::relay_state_with<std::decay_t<OnDone>>>(
      std::move(downstream), std::move(upstream), options, std::forward<OnDone>(on_done));
  state->start();
}

/// Relays until both directions end; returns the bytes moved by this connection. Never throws for
/// network errors. Same as start_relay, for a coroutine that has nothing else to do meanwhile
/// (its frame stays alive for the whole connection; start_relay avoids that).
inline asio::awaitable<relay_counters> relay(asio::ip::tcp::socket downstream, asio::ip::tcp::socket upstream,
                                             relay_options options = {}) {
  auto executor = downstream.get_executor();
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(relay_counters)>(
      [&](auto handler) {
        start_relay(std::move(downstream), std::move(upstream), options,
                    [executor, h = std::move(handler)](relay_counters totals) mutable {
                      // Resume the coroutine from the executor, not from inside the relay's handler.
                      asio::post(executor, [h = std::move(h), totals]() mutable { std::move(h)(totals); });
                    });
      },
      asio::use_awaitable);
}

}  // namespace amb
