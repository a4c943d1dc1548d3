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
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
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

namespace detail {

/// accept_loop's state from one accept to the next. Each accept completes into a plain handler
/// that owns this object, not into a coroutine: resuming a coroutine per connection costs more of
/// Asio's machinery than the accept itself (bench/RESULTS.md). `Done` is called once, when the
/// loop ends, with the exception that ended it, if any.
template <class Done>
class accept_chain {
public:
  accept_chain(asio::ip::tcp::acceptor& acceptor, std::function<void(asio::ip::tcp::socket)> on_accept, Done done)
      : acceptor_(acceptor), on_accept_(std::move(on_accept)), done_(std::move(done)) {}

  /// Starts the next accept, or ends the loop when the acceptor is closed.
  static void next(std::unique_ptr<accept_chain> self) {
    if (!self->acceptor_.is_open()) return finish(std::move(self), nullptr);
    auto& acceptor = self->acceptor_;
    acceptor.async_accept([self = std::move(self)](std::error_code ec, asio::ip::tcp::socket socket) mutable {
      auto* chain = self.get();
      try {
        chain->accepted(self, ec, std::move(socket));
      } catch (...) {  // out of memory for the next wait: the loop ends, and its awaiter hears why
        if (self) finish(std::move(self), std::current_exception());
      }
    });
  }

private:
  static constexpr std::chrono::seconds warn_every{10};
  static constexpr std::chrono::milliseconds pause_after_failure{100};

  void accepted(std::unique_ptr<accept_chain>& self, std::error_code ec, asio::ip::tcp::socket&& socket) {
    if (!ec) {
      own_accepted_fd(socket);  // closing it then needs no epoll_ctl (reactor_wait.hpp)
      if (failed_in_burst_) log::debug("accepting again after ", log::count(failed_in_burst_, "failed accept"));
      failed_in_burst_ = 0;
      on_accept_(std::move(socket));
      return next(std::move(self));
    }
    if (!acceptor_.is_open() || ec == asio::error::operation_aborted) return finish(std::move(self), nullptr);
    if (ec == asio::error::connection_aborted) return next(std::move(self));  // the client gave up while queued
    ++failed_in_burst_;
    const auto now = std::chrono::steady_clock::now();
    if (!last_warning_ || now - *last_warning_ >= warn_every) {
      std::error_code ignored;  // only used for the log line
      auto local = acceptor_.local_endpoint(ignored);
      log::warn("accept on ", local.address().to_string(), ":", local.port(), ": ", ec.message(),
                is_resource_error(ec) ? "; pausing accepts for 100ms until fds free up" : "; retrying in 100ms",
                unlogged_ ? " (" + log::count(unlogged_, "more failure") + " since the last line)" : std::string());
      last_warning_ = now;
      unlogged_ = 0;
    } else {
      ++unlogged_;
    }
    // The pending connection stays queued and the acceptor stays readable: without a pause this spins.
    if (!pause_) pause_.emplace(acceptor_.get_executor());
    pause_->expires_after(pause_after_failure);
    auto& pause = *pause_;
    pause.async_wait([self = std::move(self)](std::error_code) mutable {
      try {
        next(std::move(self));
      } catch (...) {
        if (self) finish(std::move(self), std::current_exception());
      }
    });
  }

  static void finish(std::unique_ptr<accept_chain> self, std::exception_ptr e) {
    Done done = std::move(self->done_);
    self.reset();
    std::move(done)(e);
  }

  asio::ip::tcp::acceptor& acceptor_;
  std::function<void(asio::ip::tcp::socket)> on_accept_;
  Done done_;
  std::optional<asio::steady_timer> pause_;  // made at the first failure
  std::optional<std::chrono::steady_clock::time_point> last_warning_;
  std::uint64_t unlogged_ = 0;         // failures since the last warning, not in any line
  std::uint64_t failed_in_burst_ = 0;  // failures since the last accept that worked
};

}  // namespace detail

/// Accepts connections and hands each to `on_accept` until the acceptor is closed.
/// Out of fds or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): waits 100 ms and tries again, so it
/// neither spins nor dies (the idea of Asio's throttling_proxy example), and logs at most one line
/// per 10 s, saying how many failures it did not log: near the limit, fds are freed and taken again
/// many times a second, and a line per turn would flood the log. A connection aborted before it was
/// accepted is skipped. `on_accept` must not throw. The accepts themselves run on completion
/// handlers (detail::accept_chain); this coroutine only waits for the loop to end.
inline asio::awaitable<void> accept_loop(asio::ip::tcp::acceptor& acceptor,
                                         std::function<void(asio::ip::tcp::socket)> on_accept) {
  if (!acceptor.is_open()) co_return;
  co_await asio::async_initiate<const asio::use_awaitable_t<>, void(std::exception_ptr)>(
      [&acceptor, &on_accept](auto done) {
        using chain = detail::accept_chain<decltype(done)>;
        chain::next(std::make_unique<chain>(acceptor, std::move(on_accept), std::move(done)));
      },
      asio::use_awaitable);
}

}  // namespace amb
