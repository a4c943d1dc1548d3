// SPDX-License-Identifier: MIT
// The balancing proxy's data path: accept -> pick an instance -> connect (failing over) -> relay.
#pragma once

#include "amb/balancer.hpp"
#include "amb/detail/async.hpp"
#include "amb/log.hpp"
#include "amb/proxy_protocol.hpp"
#include "amb/relay.hpp"
#include "amb/tcp_connect.hpp"

#include "amb/detail/asio.hpp"

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace amb {

/// How the proxy treats each client connection.
struct proxy_options {
  std::string service = "service";                  ///< named in log lines, e.g. "/services/redis-A/"
  std::chrono::milliseconds connect_timeout{3000};  ///< per upstream connect attempt
  std::chrono::milliseconds idle_timeout{0};        ///< no byte either way this long closes the pair; 0 = never
  std::chrono::milliseconds wait_for_backend{
      0};  ///< hold a client this long when no instance is reachable; 0 = close at once
  /// One fixed target (simple-amb): a failed connect closes the client at once with the static
  /// forwarder's line, `connection from CLIENT: connect TARGET: ERROR`, instead of failing over.
  bool fixed_target = false;
  /// Announce each client to its instance with a PROXY protocol header (haproxy's specification), so
  /// the instance sees the client's address rather than the ambassador's; it must expect the header.
  proxy_protocol send_proxy = proxy_protocol::none;
};

/// Running totals the proxy keeps (read by the metrics endpoint).
struct proxy_stats {
  std::uint64_t accepted = 0;                             ///< client connections accepted
  std::uint64_t active = 0;                               ///< client connections open now
  std::uint64_t rejected = 0;                             ///< clients closed because no instance could be reached
  relay_counters bytes;                                   ///< bytes up (client -> instance) and down, all connections
  std::map<std::string, std::uint64_t> connect_failures;  ///< failed connects per instance id
};

/// Hands each accepted client to an instance from `balancer` and relays bytes until both sides close.
/// A refused or timed-out connect is counted against the instance and the next instance is tried;
/// the client notices nothing unless every instance fails. Changing the balancer's set never touches
/// established connections: each holds its own instance object and sockets.
/// Single-threaded: use from the io_context's one thread. Must outlive its sessions (see drain()).
class proxy {
public:
  proxy(asio::any_io_executor ex, balancer& b, proxy_options o)
      : executor_(std::move(ex)),
        balancer_(b),
        opts_(std::move(o)),
        changed_(executor_),
        idle_(executor_),
        timer_floor_(executor_) {
    changed_.expires_at(std::chrono::steady_clock::time_point::max());
    idle_.expires_at(std::chrono::steady_clock::time_point::max());
  }
  proxy(const proxy&) = delete;
  proxy& operator=(const proxy&) = delete;
  ~proxy() { *alive_ = false; }

  /// Starts a session for an accepted client (suits accept_loop's callback; never throws).
  void handle(asio::ip::tcp::socket client) noexcept {
    try {
      ++stats_.accepted;
      ++stats_.active;
      // The session ends once the relay has started (the relay then counts the connection down):
      // no coroutine frame stays alive for an established connection.
      asio::co_spawn(executor_, session(std::move(client)), [this](std::exception_ptr e, bool relaying) {
        if (e) {
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& ex) {
            log::error("connection: ", ex.what());
          } catch (...) {
            log::error("connection: unknown error");
          }
        }
        if (!relaying || e) connection_ended();
      });
    } catch (const std::exception& e) {
      --stats_.active;
      log::error("cannot start a connection: ", e.what());
    }
  }

  /// Call after the balancer's set changed: clients waiting for an instance try again at once.
  void instances_changed() {
    changed_.cancel();
    changed_.expires_at(std::chrono::steady_clock::time_point::max());
  }

  /// Whether the balancer's set reflects its source yet (e.g. etcd was read once); until then a client
  /// turned away for lack of instances is told that the source was not reached, not that it is empty.
  void instances_known(bool known) noexcept { instances_known_ = known; }

  /// Waits until no connection is open, or `timeout` passed; returns the number still open.
  asio::awaitable<std::uint64_t> drain(std::chrono::milliseconds timeout) {
    using namespace asio::experimental::awaitable_operators;
    asio::steady_timer deadline(executor_, timeout);
    while (stats_.active > 0 && std::chrono::steady_clock::now() < deadline.expiry()) {
      idle_.expires_at(std::chrono::steady_clock::time_point::max());
      co_await (idle_.async_wait(detail::use_nothrow_awaitable) || deadline.async_wait(detail::use_nothrow_awaitable));
    }
    co_return stats_.active;
  }

  /// The totals so far.
  const proxy_stats& stats() const noexcept { return stats_; }

  /// True for a connect error that is this process's or host's shortage (file descriptors, socket
  /// buffers, memory, local ports), not something the instance did.
  static bool is_own_shortage(const std::error_code& ec) noexcept {
    if (ec.category() != std::system_category() && ec.category() != asio::error::get_system_category()) return false;
    const int e = ec.value();
    return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM || e == EADDRNOTAVAIL;
  }

private:
  /// Reads what the client already sent, so that closing sends a clean FIN rather than a reset.
  /// A plain function, not part of session(): a local array in a coroutine lives in its frame,
  /// which would cost every connection 4 kB for as long as it is open.
  static void drain_and_shut(asio::ip::tcp::socket& client) noexcept {
    std::error_code ignored;  // nothing to read, or the client is gone: either way close now
    client.non_blocking(true, ignored);
    char sink[4096];
    for (int i = 0; i < 16 && client.read_some(asio::buffer(sink), ignored) > 0;) ++i;
    client.shutdown(asio::socket_base::shutdown_both, ignored);
  }

  void connection_ended() noexcept {
    if (--stats_.active == 0) idle_.cancel();
  }

  /// While connects are being made (until a second after the last), a timer stays pending a second
  /// ahead: a connect's own deadline (seconds away) is then never the earliest timer of this loop, and
  /// Asio arms the timerfd for none of them, one syscall less per connection. The floor costs about
  /// three syscalls a second while clients arrive, and none when they do not.
  static constexpr std::chrono::seconds timer_floor_every{1};
  void hold_timer_floor() {
    last_connect_ = std::chrono::steady_clock::now();
    if (timer_floor_running_ || opts_.connect_timeout <= timer_floor_every) return;
    timer_floor_running_ = true;
    arm_timer_floor();
  }
  void arm_timer_floor() {
    timer_floor_.expires_after(timer_floor_every);
    timer_floor_.async_wait([this, alive = alive_](std::error_code ec) {
      if (!*alive) return;  // the proxy is gone (its destructor cancelled this wait)
      if (ec || std::chrono::steady_clock::now() - last_connect_ > timer_floor_every) {
        timer_floor_running_ = false;
        return;
      }
      arm_timer_floor();
    });
  }

  /// Picks, connects (failing over) and starts the relay; true when the relay was started (it then
  /// calls connection_ended() itself), false when the client was turned away.
  asio::awaitable<bool> session(asio::ip::tcp::socket client) {
    using namespace asio::experimental::awaitable_operators;
    // The client's address, only when it is used (source-hash, or a line that is logged): a new
    // connection then costs no getpeername and no strings.
    auto client_name = [&client] {
      std::error_code ignored;  // the client may have gone already; the line still helps
      auto remote = client.remote_endpoint(ignored);
      return host_port{remote.address().to_string(), remote.port()}.to_string();
    };
    std::string client_ip;
    if (balancer_.config().policy == balance_policy::source_hash) {
      std::error_code ignored;  // a client that already left hashes as "", and will fail on first use anyway
      client_ip = client.remote_endpoint(ignored).address().to_string();
    }
    const auto give_up_at = std::chrono::steady_clock::now() + opts_.wait_for_backend;

    std::vector<std::shared_ptr<instance>> tried;
    for (;;) {
      auto inst = balancer_.pick(client_ip, tried);
      if (!inst) {
        auto now = std::chrono::steady_clock::now();
        if (now >= give_up_at) {
          ++stats_.rejected;
          if (tried.empty() && !instances_known_)
            log::warn("etcd not reached yet (no instance known for ", log::escaped(opts_.service),
                      "); closing connection from ", client_name());
          else if (tried.empty() && !balancer_.empty())
            log::warn("no instance under ", log::escaped(opts_.service), " is in service (",
                      log::count(balancer_.size(), "instance"), " failing health checks); closing connection from ",
                      client_name());
          else if (tried.empty())
            log::warn("no instance registered under ", log::escaped(opts_.service), "; closing connection from ",
                      client_name());
          else
            log::warn("no instance under ", log::escaped(opts_.service), " could be reached (", tried.size(),
                      " tried); closing connection from ", client_name());
          drain_and_shut(client);
          co_return false;  // closing the socket tells the client at once
        }
        // Hold the client: wake on a change of the set, or retry every half second, until the deadline.
        asio::steady_timer retry(
            executor_, std::min<std::chrono::steady_clock::duration>(give_up_at - now, std::chrono::milliseconds(500)));
        co_await (changed_.async_wait(detail::use_nothrow_awaitable) ||
                  retry.async_wait(detail::use_nothrow_awaitable));
        tried.clear();
        continue;
      }
      asio::ip::tcp::socket upstream(executor_);
      hold_timer_floor();
      auto ec = co_await connect_tcp(upstream, inst->address, opts_.connect_timeout);
      if (ec && is_own_shortage(ec)) {
        // Out of descriptors, buffers or local ports: the ambassador's own limit, not the instance's
        // fault. Counting it would eject healthy instances under a flood of connections.
        ++stats_.rejected;
        // One line a second at most: a flood past the fd limit fails every connect at once.
        const auto at = std::chrono::steady_clock::now();
        if (at - last_shortage_line_ >= std::chrono::seconds(1)) {
          log::warn("cannot connect to ", log::escaped(inst->id), " at ", log::escaped(inst->address.to_string()), ": ",
                    ec.message(),
                    " (a limit of this ambassador, not a failure of the instance); closing connection from ",
                    client_name(),
                    shortages_unlogged_ ? " (" + std::to_string(shortages_unlogged_) + " more since the last such line)"
                                        : std::string());
          last_shortage_line_ = at;
          shortages_unlogged_ = 0;
        } else {
          ++shortages_unlogged_;
        }
        drain_and_shut(client);
        co_return false;
      }
      if (ec && opts_.fixed_target) {
        ++stats_.rejected;
        ++stats_.connect_failures[inst->id];
        // Closing the client is all there is to do: it sees the connection end; the listener stays up.
        log::warn("connection from ", client_name(), ": connect ", log::escaped(inst->address.to_string()), ": ",
                  ec.message());
        drain_and_shut(client);
        co_return false;
      }
      if (ec) {
        tried.push_back(inst);
        ++stats_.connect_failures[inst->id];
        if (log::enabled(log::level::debug))
          log::debug("connect to ", log::escaped(inst->id), " at ", log::escaped(inst->address.to_string()), " for ",
                     client_name(), ": ", ec.message(), "; trying the next instance");
        if (balancer_.report_failure(*inst))
          log::warn(
              "instance ", log::escaped(inst->id), " at ", log::escaped(inst->address.to_string()), " ejected for ",
              log::duration(std::chrono::duration_cast<std::chrono::milliseconds>(balancer_.config().fail_timeout)),
              " after ", log::count(inst->consecutive_fails, "failed connect"), " (last: ", ec.message(), ")");
        continue;
      }
      if (opts_.send_proxy != proxy_protocol::none) {
        // The header goes first, before any byte of the client's: a fresh connection's send buffer
        // takes it whole. The client's addresses come from the accepted socket (one getpeername and
        // one getsockname, only when the header is wanted).
        std::error_code peer_ec, local_ec;
        const auto from = client.remote_endpoint(peer_ec);
        const auto to = client.local_endpoint(local_ec);
        if (peer_ec || local_ec) {  // the client left while we connected: nothing to announce or relay
          co_return false;
        }
        const std::string header = proxy_protocol_header(opts_.send_proxy, from, to);
        auto [write_ec, written] =
            co_await asio::async_write(upstream, asio::buffer(header), detail::use_nothrow_awaitable);
        if (write_ec) {  // the instance closed at once: as a failed connect, try the next one
          tried.push_back(inst);
          ++stats_.connect_failures[inst->id];
          log::debug("PROXY header to ", log::escaped(inst->id), ": ", write_ec.message(),
                     "; trying the next instance");
          continue;
        }
      }
      if (balancer_.report_success(*inst))
        log::info("instance ", log::escaped(inst->id), " at ", log::escaped(inst->address.to_string()),
                  " is reachable again");
      if (log::enabled(log::level::debug))
        log::debug("connection from ", client_name(), " -> ", log::escaped(inst->id), " at ",
                   log::escaped(inst->address.to_string()));
      relay_options ro;
      ro.idle_timeout = opts_.idle_timeout;
      ro.counters = &stats_.bytes;
      ro.upstream_nodelay_set = true;  // connect_tcp set it
      // The slot counts the connection on its instance (least-conn) for as long as the relay runs.
      start_relay(std::move(client), std::move(upstream), ro,
                  [this, slot = connection_slot(inst)](const relay_counters&) mutable {
                    slot.release();
                    connection_ended();
                  });
      co_return true;
    }
  }

  asio::any_io_executor executor_;
  balancer& balancer_;
  proxy_options opts_;
  proxy_stats stats_;
  std::chrono::steady_clock::time_point last_shortage_line_{};  // the last "limit of this ambassador" line
  std::uint64_t shortages_unlogged_ = 0;                        // such connects since, not logged
  asio::steady_timer changed_;                                  // cancelled to wake clients waiting for an instance
  asio::steady_timer idle_;                                     // cancelled when the last connection ends (drain)
  asio::steady_timer timer_floor_;                              // see hold_timer_floor()
  bool timer_floor_running_ = false;
  std::chrono::steady_clock::time_point last_connect_{};
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // false once the proxy is destroyed
  bool instances_known_ = true;
};

}  // namespace amb
