// SPDX-License-Identifier: MIT
// The one place amb reaches into Asio's internals: a readiness wait queued on the epoll reactor with
// no syscall, for the relay's hot path, and two facts about sockets amb made itself that Asio cannot
// know (a socket amb opened is non-blocking and holds nothing to read yet; a socket amb accepted or
// opened is never dup()ed). Everything else in amb uses Asio's public API.
//
// Why: Asio 1.22's public socket::async_wait re-arms the descriptor with epoll_ctl(EPOLL_CTL_MOD) on
// every call, and async_read_some first tries a read that mostly fails with EAGAIN. A relayed
// request/reply pays one of those per message; this wait pays neither (relay.hpp counts the cost).
// The two facts save three syscalls of each proxied connection's set-up: the ioctl that makes the
// upstream non-blocking, the first read on it (which would find nothing), and the epoll_ctl that
// takes the accepted socket out of the epoll set before it is closed (closing does that). The
// reactor's report of the connect's wait saves a fourth, getsockopt(SO_ERROR), when it says success.
//
// Fenced: AMB_REACTOR_WAIT is 1 only where this was written and tested: Asio's epoll reactor
// (Linux, not io_uring) in the Asio releases 1.22.x (Debian 12 ships 1.22.1). Anywhere else, or when
// the user defines AMB_NO_ASIO_INTERNALS, it is 0 and the relay uses the public async_wait instead;
// `make test` runs the relay tests and the whole integration suite against programs built that way
// too (tools/test.sh, the sanitize phase).
//
// Threads: the reactor's per-descriptor record is read and written here without its lock, which is
// safe only when every handler of the socket runs on one thread: a one-thread io_context, as every
// amb program and ambassador runs (one io_context per --threads loop). Not from a strand on a pool.
#pragma once

#include "amb/detail/asio.hpp"

#include <cstdint>
#include <system_error>

#if !defined(AMB_NO_ASIO_INTERNALS) && defined(ASIO_HAS_EPOLL) && !defined(ASIO_HAS_IO_URING_AS_DEFAULT) && \
    !defined(ASIO_HAS_IOCP) && ASIO_VERSION >= 102200 && ASIO_VERSION < 102300
#define AMB_REACTOR_WAIT 1
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#else
#define AMB_REACTOR_WAIT 0
#endif

namespace amb::detail {

#if AMB_REACTOR_WAIT
/// Reaches the reactor's per-descriptor record of a socket (a protected member of basic_socket,
/// read through a member pointer taken in a derived class, which the language allows).
struct socket_reactor_access : asio::ip::tcp::socket {
  static auto& impl(asio::ip::tcp::socket& s) { return (s.*(&socket_reactor_access::impl_)).get_implementation(); }
  static asio::detail::reactor::per_descriptor_data& of(asio::ip::tcp::socket& s) { return impl(s).reactor_data_; }
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
struct owner_tag {
  using type = asio::detail::epoll_reactor* state::*;
  friend type member(owner_tag);
};
struct speculative_tag {
  using type = bool (state::*)[asio::detail::epoll_reactor::max_ops];
  friend type member(speculative_tag);
};
template <class Tag, typename Tag::type M>
struct expose {
  friend typename Tag::type member(Tag) { return M; }
};
template struct expose<registered_tag, &state::registered_events_>;
template struct expose<reported_tag, &asio::detail::scheduler_operation::task_result_>;
template struct expose<speculative_tag, &state::try_speculative_>;
template struct expose<owner_tag, &state::reactor_>;

/// The registration, to add EPOLLRDHUP (Asio keeps it in later epoll_ctl calls).
inline std::uint32_t& registered(state* s) { return s->*member(registered_tag{}); }
/// What the last epoll_wait said about the descriptor (descriptor_state derives privately from
/// scheduler_operation; a C-style cast is the conversion the language allows for that).
inline unsigned int reported(state* s) { return ((asio::detail::scheduler_operation*)s)->*member(reported_tag{}); }
/// The reactor the descriptor is registered with (no service look-up, which takes a lock and
/// compares type names: two of them per connection were 5 % of a proxied connection's instructions).
inline asio::detail::epoll_reactor* owner(state* s) { return s->*member(owner_tag{}); }
/// Asio's note that data may be waiting (true for every socket it registers, and after an event that
/// found no operation queued): the next operation then completes at once instead of waiting (for a
/// wait: a wake-up whose read may find nothing).
inline bool& may_be_readable(state* s) { return (s->*member(speculative_tag{}))[asio::detail::epoll_reactor::read_op]; }
}  // namespace reactor_fields
#endif

/// Opens `socket` for `protocol` in non-blocking mode: one socket(2) with SOCK_NONBLOCK|SOCK_CLOEXEC
/// where Asio's open() and non_blocking(true) make a socket(2) and an ioctl(FIONBIO). Also tells the
/// reactor that nothing can be waiting to be read: the socket is new, and every byte that arrives
/// from now on makes an epoll event (Asio assumes the opposite of any socket it registers, so the
/// first wait would complete at once and its read find nothing).
inline std::error_code open_non_blocking(asio::ip::tcp::socket& socket, const asio::ip::tcp& protocol) {
  std::error_code ec;
#if AMB_REACTOR_WAIT
  const int fd = ::socket(protocol.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol.protocol());
  if (fd < 0) return std::error_code(errno, asio::error::get_system_category());
  if (socket.assign(protocol, fd, ec)) {
    ::close(fd);
    return ec;
  }
  auto& impl = socket_reactor_access::impl(socket);
  // assign() cannot know the fd is non-blocking, nor that nothing else holds a copy of it (it marks
  // every assigned fd possible_dup, and so removes it from epoll with a syscall of its own before
  // closing it); this fd is new and amb never dup()s it.
  impl.state_ = (impl.state_ & ~asio::detail::socket_ops::possible_dup) | asio::detail::socket_ops::non_blocking;
  if (auto* data = socket_reactor_access::of(socket)) reactor_fields::may_be_readable(data) = false;
#else
  if (!socket.open(protocol, ec)) socket.non_blocking(true, ec);
#endif
  return ec;
}

/// For a socket amb accepted: nothing else holds a copy of its fd, so closing it also takes it out of
/// the epoll set, and Asio need not make an epoll_ctl(EPOLL_CTL_DEL) first (it makes one for every
/// socket it accepted, since an accepted fd is assigned, and an assigned one might be a dup()). No
/// syscall; nothing without the reactor wait.
inline void own_accepted_fd(asio::ip::tcp::socket& socket) noexcept {
#if AMB_REACTOR_WAIT
  auto& impl = socket_reactor_access::impl(socket);
  impl.state_ &= ~asio::detail::socket_ops::possible_dup;
#else
  (void)socket;
#endif
}

/// After a wait for a connecting socket to become writable: true when the reactor's report of that
/// wait proves the connection was made (writable, with neither an error nor a hang-up: a connect that
/// failed is always reported with EPOLLERR), so getsockopt(SO_ERROR) need not ask. false when the
/// report is not that clear, and always without the reactor wait: then ask SO_ERROR.
inline bool connected_per_report(asio::ip::tcp::socket& socket) noexcept {
#if AMB_REACTOR_WAIT
  auto* data = socket_reactor_access::of(socket);
  if (!data) return false;
  const auto events = reactor_fields::reported(data);
  return (events & EPOLLOUT) != 0 && (events & (EPOLLERR | EPOLLHUP)) == 0;
#else
  (void)socket;
  return false;
#endif
}

/// "Call me back when this socket becomes readable", reusable for every wait of one direction of
/// one connection (waiting allocates nothing). Precondition of every wait(): the caller read the
/// socket empty just before (a short read, EAGAIN, or a splice that found nothing), or the socket is
/// new (open_non_blocking).
///
/// With AMB_REACTOR_WAIT: Asio registers each socket once, edge-triggered, for reading. Every new
/// arrival of data (or a FIN, or an error) makes an event; an event that finds no operation queued
/// is remembered (try_speculative) and completes the next operation at once (as does every socket's
/// first operation, unless open_non_blocking made it). This op's perform() does nothing and says
/// "done, socket exhausted", so it waits without epoll_ctl or read. A FIN that
/// arrived together with the last data makes no later edge, so the first wait adds EPOLLRDHUP to the
/// registration, and peer_closed() tells the caller to read on after a short read.
/// Without: Asio's public async_wait, and peer_closed() always says "read on until EAGAIN".
class readable_wait {
public:
  /// `done(owner, ec, destroyed)` runs on the socket's thread; `destroyed` is true when the
  /// io_context is being destroyed with the wait still queued (do nothing then but let go).
  using callback = void (*)(void* owner, std::error_code ec, bool destroyed);

  readable_wait(void* owner, callback done) : op_(owner, done) {}
  readable_wait(const readable_wait&) = delete;
  readable_wait& operator=(const readable_wait&) = delete;

  /// Queues the wait on `socket`. The caller keeps itself alive until the callback has run.
  void start(asio::ip::tcp::socket& socket) {
#if AMB_REACTOR_WAIT
    op_.ec_ = asio::error_code();
    op_.bytes_transferred_ = 0;
    auto& data = socket_reactor_access::of(socket);
    if (!reactor_)
      reactor_ =
          data
              ? reactor_fields::owner(data)
              : &asio::use_service<asio::detail::reactor>(asio::query(socket.get_executor(), asio::execution::context));
    bool speculative = true;
    if (data && !(reactor_fields::registered(data) & EPOLLRDHUP)) {
      // First wait on this socket: add EPOLLRDHUP to its registration; Asio's non-speculative
      // start applies it with one epoll_ctl (later waits make none).
      reactor_fields::registered(data) |= EPOLLRDHUP;
      speculative = false;
    }
    reactor_->start_op(asio::detail::reactor::read_op, socket.native_handle(), data, &op_, true, speculative);
#else
    socket.async_wait(asio::socket_base::wait_read, handler{op_.owner, op_.on_done});
#endif
  }

  /// Call right before an operation that makes Asio re-register `socket` with epoll (an async_wait,
  /// which always does): that epoll_ctl then carries EPOLLRDHUP too, and the first start() on the
  /// socket needs none of its own. connect_tcp does this before waiting for the connection. No
  /// syscall; nothing without the reactor wait.
  static void register_peer_close_with_next_wait(asio::ip::tcp::socket& socket) noexcept {
#if AMB_REACTOR_WAIT
    if (auto* data = socket_reactor_access::of(socket)) reactor_fields::registered(data) |= EPOLLRDHUP;
#else
    (void)socket;
#endif
  }

  /// True when the last readiness report for `socket` said its peer closed or failed: a short read
  /// did not empty it of that news, so read on. Always true without the reactor wait.
  static bool peer_closed(asio::ip::tcp::socket& socket) noexcept {
#if AMB_REACTOR_WAIT
    auto* data = socket_reactor_access::of(socket);
    return data && (reactor_fields::reported(data) & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
#else
    (void)socket;
    return true;
#endif
  }

private:
#if AMB_REACTOR_WAIT
  struct op : asio::detail::reactor_op {
    op(void* o, callback cb) : reactor_op(asio::error_code(), &perform_fn, &complete_fn), owner(o), on_done(cb) {}
    void* owner;
    callback on_done;
    static status perform_fn(reactor_op*) { return done_and_exhausted; }
    static void complete_fn(void* io, asio::detail::operation* base, const asio::error_code&, std::size_t) {
      auto* self = static_cast<op*>(base);
      // io == nullptr: the io_context is being destroyed with this wait still queued.
      self->on_done(self->owner, self->ec_, io == nullptr);
    }
  };
  op op_;
  asio::detail::reactor* reactor_ = nullptr;
#else
  struct op {
    op(void* o, callback cb) : owner(o), on_done(cb) {}
    void* owner;
    callback on_done;
  };
  // Calls back once: when run, or when destroyed unrun (the io_context went away), as the reactor
  // op above does, so the owner's keep-alive is let go either way.
  struct handler {
    void* owner;
    callback done;
    bool called = false;
    handler(void* o, callback cb) : owner(o), done(cb) {}
    handler(handler&& other) noexcept : owner(other.owner), done(other.done), called(other.called) {
      other.called = true;
    }
    handler(const handler&) = delete;
    handler& operator=(const handler&) = delete;
    handler& operator=(handler&&) = delete;
    ~handler() {
      if (!called) done(owner, asio::error::operation_aborted, true);
    }
    void operator()(std::error_code ec) {
      called = true;
      done(owner, ec, false);
    }
  };
  op op_;
#endif
};

}  // namespace amb::detail
