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
// Syscalls per relayed message: one read and one write, as haproxy makes. A read that returns less
// than the buffer emptied the socket, so the direction goes straight back to waiting instead of
// reading again to see EAGAIN. The wait itself is a readiness operation queued on Asio's reactor
// (epoll, edge-triggered, descriptor registered once): Asio's own async_wait re-arms the descriptor
// with epoll_ctl(EPOLL_CTL_MOD) on every call, and async_read_some tries a speculative read that
// mostly fails with EAGAIN; ours does neither (see detail::readable_op). Elsewhere (no epoll) it
// falls back to async_wait.
//
// EOF from one side is passed on as shutdown(send) on the other, and the other direction keeps
// flowing (a client may send its request, half-close, and still read the whole reply). An error
// on either side closes both. The relay ends when both directions have ended.
//
// No coroutine stays alive for a relayed connection: the state below is one heap object driven by
// completion handlers, so an idle connection costs that object, its two sockets and the reactor's
// per-descriptor records.
#pragma once

#include "amb/detail/asio.hpp"

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

#if defined(ASIO_HAS_EPOLL) && !defined(ASIO_HAS_IO_URING_AS_DEFAULT) && !defined(ASIO_HAS_IOCP)
#define AMB_RELAY_REACTOR_WAIT 1
#include <sys/epoll.h>
#else
#define AMB_RELAY_REACTOR_WAIT 0
#endif

namespace amb {

/// Bytes moved by the relay; "up" is client -> server, "down" is server -> client.
struct relay_counters {
  std::uint64_t bytes_up = 0;     ///< bytes written to the server
  std::uint64_t bytes_down = 0;   ///< bytes written to the client
  std::uint64_t empty_reads = 0;  ///< reads that found nothing (EAGAIN): syscalls wasted; a healthy relay makes few
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

#if AMB_RELAY_REACTOR_WAIT
/// Reaches the reactor's per-descriptor record of a socket (a protected member of basic_socket,
/// read through a member pointer taken in a derived class, which the language allows).
struct socket_reactor_access : asio::ip::tcp::socket {
  static asio::detail::reactor::per_descriptor_data& of(asio::ip::tcp::socket& s) {
    return (s.*(&socket_reactor_access::impl_)).get_implementation().reactor_data_;
  }
};

/// Reads and writes two private fields of Asio's epoll reactor (explicit instantiations may name
/// members they cannot access): the events a descriptor is registered for, and the events the
/// last epoll_wait reported for it.
namespace reactor_fields {
using state = asio::detail::epoll_reactor::descriptor_state;
struct registered_tag {
  using type = std::uint32_t state::*;
  friend type member(registered_tag);
};
struct reported_tag {
  using type = unsigned int asio::detail::scheduler_operation::*;
  friend type member(reported_tag);
};
template <class Tag, typename Tag::type M>
struct expose {
  friend typename Tag::type member(Tag) { return M; }
};
template struct expose<registered_tag, &state::registered_events_>;
template struct expose<reported_tag, &asio::detail::scheduler_operation::task_result_>;

/// The registration, to add EPOLLRDHUP (Asio keeps it in later epoll_ctl calls).
inline std::uint32_t& registered(state* s) { return s->*member(registered_tag{}); }
/// What the last epoll_wait said about the descriptor (descriptor_state derives privately from
/// scheduler_operation; a C-style cast is the conversion the language allows for that).
inline unsigned int reported(state* s) { return ((asio::detail::scheduler_operation*)s)->*member(reported_tag{}); }
}  // namespace reactor_fields

/// "Wake me when the socket becomes readable", queued on the epoll reactor without a syscall.
///
/// Asio registers each socket once, edge-triggered, for reading. Every new arrival of data (or a
/// FIN, or an error) produces an event. When an event finds no operation queued, the reactor
/// remembers it (try_speculative) and performs the next operation queued at once. This op's
/// perform() does nothing and says "done, socket exhausted", so: queued with no remembered event,
/// it waits without epoll_ctl or read; with a remembered event it completes at once; on an event it
/// completes and clears the memory. That is correct only if the caller read the socket empty
/// before waiting (a short read, or EAGAIN): data that arrives afterwards makes a new edge. A
/// FIN that arrived together with the last data makes no later edge, so the relay registers
/// EPOLLRDHUP too and reads on after a short read when the last report carried it.
/// The op is reused for every wait of its direction, so waiting allocates nothing.
struct readable_op : asio::detail::reactor_op {
  using callback = void (*)(readable_op&, std::error_code, bool destroyed);
  readable_op(void* o, callback cb)
      : reactor_op(asio::error_code(), &perform_fn, &complete_fn), owner(o), on_done(cb) {}
  void* owner;
  callback on_done;

  static status perform_fn(reactor_op*) { return done_and_exhausted; }
  static void complete_fn(void* io, asio::detail::operation* base, const asio::error_code&, std::size_t) {
    auto* op = static_cast<readable_op*>(base);
    // io == nullptr: the io_context is being destroyed with this wait still queued.
    op->on_done(*op, op->ec_, io == nullptr);
  }
};
#endif

/// One connection: both sockets and both directions. Lives on the heap, driven by completion
/// handlers; keeps itself alive (self_) while one of its embedded waits is queued in the reactor.
class relay_state : public std::enable_shared_from_this<relay_state> {
public:
  relay_state(asio::ip::tcp::socket down, asio::ip::tcp::socket up, relay_options opts)
      : downstream(std::move(down)), upstream(std::move(up)), options(opts) {}
  virtual ~relay_state() = default;
  relay_state(const relay_state&) = delete;
  relay_state& operator=(const relay_state&) = delete;

  asio::ip::tcp::socket downstream;
  asio::ip::tcp::socket upstream;
  relay_options options;
  relay_counters totals;

  /// Sets the socket options and starts both directions (and the idle timer when there is one).
  void start() {
    for (auto* s : {&downstream, &upstream}) {
      std::error_code ignored;  // a socket that cannot take these options fails on first use instead
      s->set_option(asio::ip::tcp::no_delay(true), ignored);
      // Reads and writes are tried directly and must never block the io_context thread.
      s->non_blocking(true, ignored);
    }
#if AMB_RELAY_REACTOR_WAIT
    reactor_ =
        &asio::use_service<asio::detail::reactor>(asio::query(downstream.get_executor(), asio::execution::context));
#endif
    if (options.idle_timeout.count() > 0) {
      last_activity_ = std::chrono::steady_clock::now();
      timer_.emplace(downstream.get_executor());
      arm_timer();
    }
    drain(true);  // a first read at once: the client has often sent its request already
    drain(false);
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
  struct direction {
    relay_buffer held;  ///< only while the destination is slower than the source
#if AMB_RELAY_REACTOR_WAIT
    readable_op wait;
    direction(relay_state* s, readable_op::callback cb) : wait(s, cb) {}
#endif
  };
#if AMB_RELAY_REACTOR_WAIT
  direction up_{this, &relay_state::on_wait_up}, down_{this, &relay_state::on_wait_down};
  asio::detail::reactor* reactor_ = nullptr;
  bool armed_up_ = false, armed_down_ = false;  ///< EPOLLRDHUP added to the source's registration
  int queued_ = 0;                              ///< embedded waits queued in the reactor or scheduler
  std::shared_ptr<relay_state> self_;           ///< set while queued_ > 0
#else
  direction up_, down_;  // up_: client -> server
#endif
  std::optional<asio::steady_timer> timer_;  ///< only with an idle timeout
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

  /// Waits until the source is readable again. Precondition: the last read emptied it.
  void wait(bool up) {
#if AMB_RELAY_REACTOR_WAIT
    readable_op& op = (up ? up_ : down_).wait;
    op.ec_ = asio::error_code();
    op.bytes_transferred_ = 0;
    if (queued_++ == 0) self_ = shared_from_this();
    auto& socket = from(up);
    auto& data = socket_reactor_access::of(socket);
    bool& armed = up ? armed_up_ : armed_down_;
    bool speculative = true;
    if (!armed && data) {
      // First wait on this socket: add EPOLLRDHUP to its registration; Asio's non-speculative
      // start applies it with one epoll_ctl (later waits make none).
      reactor_fields::registered(data) |= EPOLLRDHUP;
      armed = true;
      speculative = false;
    }
    reactor_->start_op(asio::detail::reactor::read_op, socket.native_handle(), data, &op, true, speculative);
#else
    from(up).async_wait(asio::socket_base::wait_read,
                        [self = shared_from_this(), up](std::error_code ec) { self->readable(up, ec); });
#endif
  }

#if AMB_RELAY_REACTOR_WAIT
  static void on_wait_up(readable_op& op, std::error_code ec, bool destroyed) {
    static_cast<relay_state*>(op.owner)->waited(true, ec, destroyed);
  }
  static void on_wait_down(readable_op& op, std::error_code ec, bool destroyed) {
    static_cast<relay_state*>(op.owner)->waited(false, ec, destroyed);
  }
  void waited(bool up, std::error_code ec, bool destroyed) noexcept {
    // Keeps this object alive until the end of this call, also when it was the last reference.
    std::shared_ptr<relay_state> keep;
    if (--queued_ == 0) keep = std::move(self_);
    if (!destroyed) readable(up, ec);
  }
#endif

  void readable(bool up, std::error_code ec) noexcept {
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

  /// Reads until a read comes back short (the source is empty), at most 16 full reads in a row so
  /// one busy connection cannot starve the others on this thread; writes each piece straight on
  /// when the destination can take it.
  void drain_some(bool up) {
    direction& d = up ? up_ : down_;
    for (int reads = 0; reads < 16; ++reads) {
      char* buffer = d.held ? d.held.data() : relay_scratch();
      std::error_code ec;
      std::size_t n = from(up).read_some(asio::buffer(buffer, relay_buffer_size), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        count_empty_read(up);
        break;
      }
      if (ec == asio::error::eof) {
        if (running_ == 1) {
          // The other direction has ended too (cleanly: a failure would have closed both), so both
          // sockets are read to their end and closing them sends the FIN: a shutdown call would be
          // one syscall more per connection for nothing.
          close_both();
          return finish(up, false);
        }
        std::error_code ignored;  // the peer may be gone already; the other direction will notice
        to(up).shutdown(asio::socket_base::shutdown_send, ignored);
        return finish(up, false);
      }
      if (ec) return finish(up, true);
      if (timer_) last_activity_ = std::chrono::steady_clock::now();
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
      // A short read emptied the socket: wait rather than read again for EAGAIN, unless the peer
      // has closed too (its FIN is queued behind the data and will not wake us again).
      if (n < relay_buffer_size && !peer_closed(up)) break;
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

  /// True when the last readiness report for the source said the peer closed or failed.
  bool peer_closed(bool up) noexcept {
#if AMB_RELAY_REACTOR_WAIT
    auto* data = socket_reactor_access::of(from(up));
    return data && (reactor_fields::reported(data) & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
#else
    (void)up;
    return true;  // without the report, read until EAGAIN
#endif
  }

  void count(bool up, std::size_t n) noexcept {
    (up ? totals.bytes_up : totals.bytes_down) += n;
    if (options.counters) (up ? options.counters->bytes_up : options.counters->bytes_down) += n;
  }

  void count_empty_read(bool) noexcept {
    ++totals.empty_reads;
    if (options.counters) ++options.counters->empty_reads;
  }

  void finish(bool up, bool failed) noexcept {
    (up ? up_ : down_).held.release();
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
  relay_state_with(asio::ip::tcp::socket down, asio::ip::tcp::socket up, relay_options opts, OnDone f)
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
/// handlers: use a one-thread io_context (or a strand), as the programs do.
template <class OnDone>
void start_relay(asio::ip::tcp::socket downstream, asio::ip::tcp::socket upstream, relay_options options,
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
