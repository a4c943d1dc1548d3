// SPDX-License-Identifier: MIT
// An ambassador as one object: its listener(s), event loops, balancers, proxies and instance set.
//
//   clients --> listener --> proxy (pick, connect, fail over, relay) --> instance
//                              ^
//   forward_to(fixed targets), or an etcd_follower (amb/etcd_follower.hpp) --> balancer's instance set
//
// Threading: loop 0 runs on the executor given to the constructor (your io_context, run by you);
// with `threads` N > 1, N-1 more loops each run an io_context of their own on a thread the ambassador
// starts, with their own listener on the same port (SO_REUSEPORT: the kernel spreads new connections),
// balancer, proxy and copy of the instance set. Changes of the set are posted to every loop; no object
// is touched from two threads, so nothing locks. Call every member on loop 0's thread.
#pragma once

#include "amb/address.hpp"
#include "amb/balancer.hpp"
#include "amb/event_loop.hpp"
#include "amb/health_check.hpp"
#include "amb/log.hpp"
#include "amb/proxy.hpp"
#include "amb/tcp_listener.hpp"

#include "amb/detail/asio.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace amb {

/// What an ambassador listens on and how it forwards.
struct ambassador_options {
  host_port listen{"0.0.0.0", 10000};  ///< where clients connect (port 0: a free port, see port())
  unsigned threads = 1;                ///< event loops; each beyond the first runs on a thread of its own
  balancer::options balance{};         ///< policy, ejection after failed connects (max_fails 0: never)
  proxy_options proxy{};               ///< timeouts, the service named in log lines
  /// Active health checks (none when empty): run once, on loop 0, their verdicts reach every loop.
  std::optional<health_check_options> health_check{};
};

/// An ambassador's totals, summed over its loops.
struct ambassador_stats {
  proxy_stats connections{};  ///< accepted, open, rejected, bytes, failed connects per instance
  std::size_t instances = 0;  ///< instances known (the same set in every loop)
  std::size_t ejected = 0;    ///< instances sitting out after failed connects (the most any loop has)
  std::size_t draining = 0;   ///< instances registered as draining (the same in every loop)
};

/// Listens, and forwards each connection to an instance of its set, balancing and failing over.
/// The set is fixed (forward_to) or follows etcd (an etcd_follower). Accepting starts in the
/// constructor; drain() stops it and lets open connections finish. Destroy it after drain() or once
/// the io_context of loop 0 has stopped running (the destructor stops and joins the other loops).
class ambassador {
public:
  /// Binds the listener of every loop and starts accepting; throws std::system_error naming the
  /// address ("listen 0.0.0.0:6379: Address already in use") when a listener cannot be bound.
  ambassador(asio::any_io_executor ex, ambassador_options options) : options_(std::move(options)) {
    if (options_.threads == 0) options_.threads = 1;
    for (unsigned i = 0; i < options_.threads; ++i) {
      auto l = std::make_unique<loop>();
      // One thread, and only that thread touches the loop's sockets (everything else reaches it by
      // asio::post): Asio need not lock each socket's record (8 % of a proxied connection's instructions).
      if (i > 0) l->own = std::make_unique<asio::io_context>(ASIO_CONCURRENCY_HINT_UNSAFE_IO);
      l->ex = i == 0 ? ex : l->own->get_executor();
      auto b = options_.balance;
      b.seed += i;  // p2c's random picks differ between loops
      l->bal.emplace(b);
      l->px.emplace(l->ex, *l->bal, options_.proxy);
      auto where = options_.listen;
      if (i > 0) where.port = port();  // the same port, also when port 0 chose one
      std::error_code ec;
      l->acceptor = std::make_shared<asio::ip::tcp::acceptor>(listen_tcp(l->ex, where, ec, options_.threads > 1));
      if (ec) throw std::system_error(ec, "listen " + where.to_string());
      loops_.push_back(std::move(l));
    }
    for (auto& l : loops_) {
      // The frame owns the acceptor, so a frame left queued when the ambassador goes never sees it destroyed.
      asio::co_spawn(
          l->ex,
          [a = l->acceptor, p = &*l->px]() -> asio::awaitable<void> {
            co_await accept_loop(*a, [p](asio::ip::tcp::socket&& c) { p->handle(std::move(c)); });
          },
          [](std::exception_ptr e) {
            if (e) log::error("accept loop ended unexpectedly");
          });
      if (l->own) l->thread = std::thread([&io = *l->own] { io.run(); });
    }
    if (options_.health_check)
      checker_.emplace(
          ex, *options_.health_check,
          [this](const std::string& id, bool up) {
            const auto address = checked_address(id);
            on_each_loop_only([id, address, up](std::size_t, balancer& b, proxy& p) {
              if (b.set_check_state(id, address, up) && up) p.instances_changed();  // waiting clients may go now
            });
          },
          options_.balance.seed);
  }

  ambassador(const ambassador&) = delete;
  ambassador& operator=(const ambassador&) = delete;

  /// Stops the other loops, joins their threads, and destroys what they held.
  ~ambassador() {
    stop();
    if (checker_) checker_->stop();
    for (auto& l : loops_) {
      if (l->thread.joinable()) l->thread.join();
      if (l->own) destroy_pending_work(*l->own);  // frames first, then the proxy they point into
      l->acceptor.reset();
      l->px.reset();
      l->bal.reset();
      l->own.reset();
    }
  }

  /// Forwards to a fixed set of targets (each an instance named by its address), replacing the set.
  void forward_to(const std::vector<host_port>& targets) {
    std::vector<balancer::entry> entries;
    for (const auto& t : targets) entries.push_back({t.to_string(), t, 1});
    on_each_loop([entries](std::size_t, balancer& b, proxy& p) {
      if (!b.replace_all(entries).empty()) p.instances_changed();
    });
  }

  /// Runs f(index, balancer, proxy) on every loop's thread: loop 0 now, the others posted (in order).
  /// How a source of instances (etcd_follower) keeps every loop's set up to date.
  void on_each_loop(std::function<void(std::size_t, balancer&, proxy&)> f) {
    on_each_loop_only(std::move(f));
    if (checker_) sync_checks();  // the checked set follows the instance set
  }

  /// What the active health checks say of each instance (empty without checks).
  std::vector<health_checker::instance_health> health() const {
    return checker_ ? checker_->instances() : std::vector<health_checker::instance_health>{};
  }

  /// The port the listeners are bound to (the chosen one when options.listen.port was 0).
  std::uint16_t port() const {
    std::error_code ignored;  // a closed acceptor has no port: 0
    return loops_.empty() ? 0 : loops_[0]->acceptor->local_endpoint(ignored).port();
  }
  /// The options in force.
  const ambassador_options& options() const noexcept { return options_; }
  /// The number of event loops.
  std::size_t loops() const noexcept { return loops_.size(); }

  /// The totals of every loop, summed (reads the other loops on their threads; returns within ms).
  ambassador_stats stats() {
    ambassador_stats sum;
    for (std::size_t i = 0; i < loops_.size(); ++i) {
      ambassador_stats one;
      const bool read = run_on_loop(i, [&](balancer& b, proxy& p) {
        one.connections = p.stats();
        one.instances = b.size();
        one.draining = b.draining();
        for (const auto& inst : b.instances()) one.ejected += inst->is_ejected(instance::clock::now());
      });
      if (!read) continue;  // a loop that has drained and stopped: nothing open, its totals gone with it
      auto& s = sum.connections;
      s.accepted += one.connections.accepted;
      s.active += one.connections.active;
      s.rejected += one.connections.rejected;
      s.bytes.bytes_up += one.connections.bytes.bytes_up;
      s.bytes.bytes_down += one.connections.bytes.bytes_down;
      s.bytes.bytes_spliced += one.connections.bytes.bytes_spliced;
      for (const auto& [id, n] : one.connections.connect_failures) s.connect_failures[id] += n;
      sum.instances = one.instances;
      sum.draining = one.draining;
      sum.ejected = std::max(sum.ejected, one.ejected);
    }
    return sum;
  }

  /// Stops accepting on every loop and waits until no connection is open or `timeout` passed; the
  /// other loops then stop. Returns the connections still open (logged, one line per loop).
  asio::awaitable<std::uint64_t> drain(std::chrono::milliseconds timeout) {
    auto left = std::make_shared<std::atomic<std::uint64_t>>(0);
    for (std::size_t i = 1; i < loops_.size(); ++i) {
      loop& l = *loops_[i];
      asio::post(l.ex, [&l, timeout, left] {
        close_listener(l);
        asio::co_spawn(l.ex, l.px->drain(timeout), [&l, left](std::exception_ptr, std::uint64_t n) {
          if (n > 0) log::warn("closing ", log::count(n, "connection"), " still open after the drain timeout");
          *left += n;
          l.stopped = true;
          l.own->stop();
        });
      });
    }
    close_listener(*loops_[0]);
    const std::uint64_t n = co_await loops_[0]->px->drain(timeout);
    if (n > 0) log::warn("closing ", log::count(n, "connection"), " still open after the drain timeout");
    // The other loops drain at the same time and stop within the same timeout.
    asio::steady_timer poll(loops_[0]->ex);
    for (std::size_t i = 1; i < loops_.size(); ++i)
      while (!loops_[i]->stopped) {
        poll.expires_after(std::chrono::milliseconds(10));
        co_await poll.async_wait(detail::use_nothrow_awaitable);
      }
    co_return n + *left;
  }

  /// Closes the first loop's listener at once (with one thread: every listener), so that a program can
  /// say "no new connections" once it is true; drain() closes them all.
  void stop_accepting() {
    // Loop 0's listener here and now; the other loops' in drain(), on their own threads (a loop whose
    // listener closed with nothing else to do would leave its run() before drain() reaches it).
    if (!loops_.empty()) close_listener(*loops_[0]);
  }

  /// Stops at once: listeners closed, the other loops stopped (open connections are cut when the
  /// ambassador is destroyed). For a second signal during drain(), or a program that fails.
  void stop() {
    for (std::size_t i = 1; i < loops_.size(); ++i)
      asio::post(loops_[i]->ex, [&l = *loops_[i]] {
        l.stopped = true;  // before the stop: stats() then knows no handler of this loop runs again
        l.own->stop();
      });
    if (!loops_.empty()) close_listener(*loops_[0]);
    if (checker_) checker_->stop();
  }

private:
  // The checked set follows loop 0's instance set (the same in every loop). An instance object that
  // is new in the balancers (re-put under the same address in one batch) starts in service there:
  // it gets the checker's verdict again.
  void sync_checks() {
    std::vector<std::pair<std::string, host_port>> wanted;
    for (const auto& i : loops_[0]->bal->instances()) wanted.emplace_back(i->id, i->address);
    checker_->set_instances(wanted);
    for (const auto& h : checker_->instances()) {
      auto i = loops_[0]->bal->get(h.id);
      if (i && i->check_down == h.up)
        on_each_loop_only([id = h.id, address = h.address, up = h.up](std::size_t, balancer& b, proxy&) {
          b.set_check_state(id, address, up);
        });
    }
  }
  // on_each_loop without the sync (called from it).
  void on_each_loop_only(std::function<void(std::size_t, balancer&, proxy&)> f) {
    for (std::size_t i = 1; i < loops_.size(); ++i)
      asio::post(loops_[i]->ex, [f, i, l = loops_[i].get()] { f(i, *l->bal, *l->px); });
    f(0, *loops_[0]->bal, *loops_[0]->px);
  }
  host_port checked_address(const std::string& id) const {
    for (const auto& h : checker_->instances())
      if (h.id == id) return h.address;
    return {};
  }

  struct loop {
    std::unique_ptr<asio::io_context> own;  // null for loop 0 (the constructor's executor)
    asio::any_io_executor ex;
    std::optional<balancer> bal;
    std::optional<proxy> px;
    std::shared_ptr<asio::ip::tcp::acceptor> acceptor;  // shared with the accept loop's frame
    std::atomic<bool> stopped{false};                   // set on the loop's thread just before it stops
    std::thread thread;
  };

  static void close_listener(loop& l) noexcept {
    std::error_code ignored;  // closing a listener cannot meaningfully fail here
    if (l.acceptor) l.acceptor->close(ignored);
  }

  // Runs f on loop i's thread and waits for it (loop 0: here). Loops never wait for loop 0, so this
  // cannot deadlock; a loop that stopped never runs f, and then this returns false.
  template <class F>
  bool run_on_loop(std::size_t i, F f) {
    loop& l = *loops_[i];
    if (i == 0) {
      f(*l.bal, *l.px);
      return true;
    }
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    asio::post(l.ex, [&] {
      f(*l.bal, *l.px);
      std::lock_guard<std::mutex> lock(m);
      done = true;
      cv.notify_one();
    });
    std::unique_lock<std::mutex> lock(m);
    // A stopped io_context runs no more handlers, so once `stopped` is seen f will never run.
    while (!cv.wait_for(lock, std::chrono::milliseconds(20), [&] { return done; }))
      if (l.stopped) return false;
    return true;
  }

  ambassador_options options_;
  std::vector<std::unique_ptr<loop>> loops_;
  std::optional<health_checker> checker_;  // with options.health_check; on loop 0
};

}  // namespace amb
