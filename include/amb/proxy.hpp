// SPDX-License-Identifier: MIT
// The balancing proxy's data path: accept -> pick an instance -> connect (failing over) -> relay.
#pragma once

#include "amb/balancer.hpp"
#include "amb/detail/async.hpp"
#include "amb/detail/deadline_queue.hpp"
#include "amb/error.hpp"
#include "amb/log.hpp"
#include "amb/proxy_protocol.hpp"
#include "amb/relay.hpp"
#include "amb/tcp_connect.hpp"

#include "amb/detail/asio.hpp"

#include <algorithm>
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
///
/// Two paths share the steps (connected(), failed()). The common case, where an instance is there,
/// its address is numeric and the first connect works, runs on completion handlers: handle() picks
/// and starts the connect, the wait's handler starts the relay. That costs one small heap object
/// while the connect is in flight, a place in one deadline queue for all connects, and no coroutine:
/// a proxied connection's own CPU is mostly this set-up (bench/RESULTS.md). Everything else (no
/// instance yet, failing over after a failed connect, a host name to resolve) goes on in the
/// coroutine session(), which reads top to bottom.
/// Single-threaded: use from the io_context's one thread. Must outlive its sessions (see drain()).
class proxy {
public:
  proxy(asio::any_io_executor ex, balancer& b, proxy_options o)
      : executor_(std::move(ex)),
        balancer_(b),
        opts_(std::move(o)),
        connect_deadlines_(executor_),
        changed_(executor_),
        idle_(executor_) {
    changed_.expires_at(clock::time_point::max());
    idle_.expires_at(clock::time_point::max());
  }
  proxy(const proxy&) = delete;
  proxy& operator=(const proxy&) = delete;

  /// Starts a session for an accepted client (suits accept_loop's callback; never throws).
  void handle(asio::ip::tcp::socket&& client) noexcept {
    try {
      ++stats_.accepted;
      ++stats_.active;
      const auto now = clock::now();
      std::string client_ip;
      if (balancer_.config().policy == balance_policy::source_hash) client_ip = ip_of(client);
      auto inst = balancer_.pick(client_ip, {}, now);
      if (inst && inst->endpoint)
        connect_first(std::move(client), std::move(inst), now);
      else
        spawn_session(std::move(client), std::move(inst), {}, now);
    } catch (const std::exception& e) {
      log::error("cannot start a connection: ", e.what());
      connection_ended();
    }
  }

  /// Call after the balancer's set changed: clients waiting for an instance try again at once.
  void instances_changed() {
    changed_.cancel();
    changed_.expires_at(clock::time_point::max());
  }

  /// Whether the balancer's set reflects its source yet (e.g. etcd was read once); until then a client
  /// turned away for lack of instances is told that the source was not reached, not that it is empty.
  void instances_known(bool known) noexcept { instances_known_ = known; }

  /// Waits until no connection is open, or `timeout` passed; returns the number still open.
  asio::awaitable<std::uint64_t> drain(std::chrono::milliseconds timeout) {
    using namespace asio::experimental::awaitable_operators;
    asio::steady_timer deadline(executor_, timeout);
    while (stats_.active > 0 && clock::now() < deadline.expiry()) {
      idle_.expires_at(clock::time_point::max());
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
  using clock = std::chrono::steady_clock;
  using tcp = asio::ip::tcp;
  using instance_list = std::vector<std::shared_ptr<instance>>;

  /// What to do after a connect's outcome was handled.
  enum class step { relaying, turned_away, try_next };

  /// A client whose first connect is in flight, on the handler path: owned by the wait's handler.
  struct first_connect {
    first_connect(proxy& p, tcp::socket&& c, std::shared_ptr<instance> i, clock::time_point at)
        : owner(p), client(std::move(c)), upstream(p.executor_), inst(std::move(i)), accepted(at) {}
    proxy& owner;
    tcp::socket client;
    tcp::socket upstream;
    std::shared_ptr<instance> inst;
    clock::time_point accepted;
    bool timed_out = false;
    detail::deadline_queue::entry deadline{this, &expired};
    // Closing the socket ends the wait (operation_aborted); the handler then sees timed_out.
    static void expired(void* self) noexcept {
      auto& c = *static_cast<first_connect*>(self);
      c.timed_out = true;
      std::error_code ignored;  // closing aborts the connect; nothing else to do
      c.upstream.close(ignored);
    }
  };

  /// The handler path: a non-blocking connect and one wait, under the shared deadline queue.
  void connect_first(tcp::socket&& client, std::shared_ptr<instance> inst, clock::time_point now) {
    auto c = std::make_unique<first_connect>(*this, std::move(client), std::move(inst), now);
    bool in_progress = false;
    auto ec = detail::start_connect(c->upstream, *c->inst->endpoint, in_progress);
    if (ec || !in_progress) return first_connect_done(std::move(c), ec);
    if (opts_.connect_timeout.count() > 0) connect_deadlines_.add(c->deadline, now + opts_.connect_timeout);
    auto& upstream = c->upstream;
    upstream.async_wait(tcp::socket::wait_write, [c = std::move(c)](std::error_code wait_ec) mutable {
      if (!wait_ec && !c->timed_out) wait_ec = detail::connect_outcome(c->upstream);
      auto& self = c->owner;
      self.first_connect_done(std::move(c), wait_ec);
    });
  }

  void first_connect_done(std::unique_ptr<first_connect> c, std::error_code ec) noexcept {
    try {
      connect_deadlines_.remove(c->deadline);
      if (c->timed_out) ec = make_error_code(errc::timeout);
      instance_list tried;  // stays empty (no allocation) unless the connect failed
      step next = step::try_next;
      if (ec) {
        next = failed(c->inst, ec, c->client, tried);
      } else {
        std::error_code ignored;  // latency over batching; failure is harmless
        c->upstream.set_option(tcp::no_delay(true), ignored);
        next = connected(c->client, c->upstream, c->inst, tried);
      }
      if (next == step::relaying) return;
      if (next == step::turned_away) return connection_ended();
      spawn_session(std::move(c->client), nullptr, std::move(tried), c->accepted);
    } catch (const std::exception& e) {
      log::error("connection: ", e.what());
      connection_ended();
    }
  }

  void spawn_session(tcp::socket client, std::shared_ptr<instance> first, instance_list tried,
                     clock::time_point accepted) {
    // The session ends once the relay has started (the relay then counts the connection down):
    // no coroutine frame stays alive for an established connection.
    asio::co_spawn(executor_, session(std::move(client), std::move(first), std::move(tried), accepted),
                   [this](std::exception_ptr e, bool relaying) {
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
  }

  /// The general path: picks (`first` is the instance handle() picked, if any), connects, fails over,
  /// and holds the client while no instance is there (wait_for_backend); true when the relay was
  /// started (it then calls connection_ended() itself), false when the client was turned away.
  asio::awaitable<bool> session(tcp::socket client, std::shared_ptr<instance> first, instance_list tried,
                                clock::time_point accepted) {
    using namespace asio::experimental::awaitable_operators;
    std::string client_ip;
    if (balancer_.config().policy == balance_policy::source_hash) client_ip = ip_of(client);
    const auto give_up_at = accepted + opts_.wait_for_backend;
    for (;;) {
      auto inst = first ? std::move(first) : balancer_.pick(client_ip, tried);
      if (!inst) {
        auto now = clock::now();
        if (now >= give_up_at) {
          turn_away(client, tried);
          co_return false;
        }
        // Hold the client: wake on a change of the set, or retry every half second, until the deadline.
        asio::steady_timer retry(executor_,
                                 std::min<clock::duration>(give_up_at - now, std::chrono::milliseconds(500)));
        co_await (changed_.async_wait(detail::use_nothrow_awaitable) ||
                  retry.async_wait(detail::use_nothrow_awaitable));
        tried.clear();
        continue;
      }
      tcp::socket upstream(executor_);
      const auto ec = co_await connect_tcp(upstream, inst->address, opts_.connect_timeout);
      const auto next = ec ? failed(inst, ec, client, tried) : connected(client, upstream, inst, tried);
      if (next == step::relaying) co_return true;
      if (next == step::turned_away) co_return false;
    }
  }

  /// No instance is left to try: says why in one line, and closes the client.
  void turn_away(tcp::socket& client, const instance_list& tried) {
    ++stats_.rejected;
    if (tried.empty() && !instances_known_)
      log::warn("etcd not reached yet (no instance known for ", log::escaped(opts_.service),
                "); closing connection from ", client_name(client));
    else if (tried.empty() && !balancer_.empty())
      log::warn("no instance under ", log::escaped(opts_.service), " is in service (",
                log::count(balancer_.size(), "instance"), " failing health checks); closing connection from ",
                client_name(client));
    else if (tried.empty())
      log::warn("no instance registered under ", log::escaped(opts_.service), "; closing connection from ",
                client_name(client));
    else
      log::warn("no instance under ", log::escaped(opts_.service), " could be reached (", tried.size(),
                " tried); closing connection from ", client_name(client));
    drain_and_shut(client);  // closing the socket tells the client at once
  }

  /// The connect to `inst` succeeded: announces the client to it when asked to, then starts the relay.
  step connected(tcp::socket& client, tcp::socket& upstream, const std::shared_ptr<instance>& inst,
                 instance_list& tried) {
    if (opts_.send_proxy != proxy_protocol::none) {
      // The header goes first, before any byte of the client's. A fresh connection's send buffer
      // takes it whole, so one non-blocking send does; less than all of it counts as a failed
      // connect. The client's addresses come from the accepted socket (one getpeername and one
      // getsockname, only when the header is wanted).
      std::error_code peer_ec, local_ec;
      const auto from = client.remote_endpoint(peer_ec);
      const auto to = client.local_endpoint(local_ec);
      if (peer_ec || local_ec) return step::turned_away;  // the client left while we connected
      const std::string header = proxy_protocol_header(opts_.send_proxy, from, to);
      std::error_code write_ec;
      const auto written = upstream.send(asio::buffer(header), 0, write_ec);
      if (!write_ec && written < header.size()) write_ec = make_error_code(asio::error::no_buffer_space);
      if (write_ec) {  // the instance closed at once: as a failed connect, try the next one
        tried.push_back(inst);
        ++stats_.connect_failures[inst->id];
        log::debug("PROXY header to ", log::escaped(inst->id), ": ", write_ec.message(), "; trying the next instance");
        return step::try_next;
      }
    }
    if (balancer_.report_success(*inst))
      log::info("instance ", log::escaped(inst->id), " at ", log::escaped(inst->address.to_string()),
                " is reachable again");
    if (log::enabled(log::level::debug))
      log::debug("connection from ", client_name(client), " -> ", log::escaped(inst->id), " at ",
                 log::escaped(inst->address.to_string()));
    relay_options ro;
    ro.idle_timeout = opts_.idle_timeout;
    ro.counters = &stats_.bytes;
    ro.upstream_nodelay_set = true;  // connect_tcp, or the handler path, set it
    // The slot counts the connection on its instance (least-conn) for as long as the relay runs.
    start_relay(std::move(client), std::move(upstream), ro,
                [this, slot = connection_slot(inst)](const relay_counters&) mutable {
                  slot.release();
                  connection_ended();
                });
    return step::relaying;
  }

  /// The connect to `inst` failed with `ec`: counts it against the instance (unless the shortage is
  /// the ambassador's own), and says whether to try the next instance or that the client was turned
  /// away (closed here).
  step failed(const std::shared_ptr<instance>& inst, std::error_code ec, tcp::socket& client, instance_list& tried) {
    if (is_own_shortage(ec)) {
      // Out of descriptors, buffers or local ports: the ambassador's own limit, not the instance's
      // fault. Counting it would eject healthy instances under a flood of connections.
      ++stats_.rejected;
      // One line a second at most: a flood past the fd limit fails every connect at once.
      const auto at = clock::now();
      if (at - last_shortage_line_ >= std::chrono::seconds(1)) {
        log::warn("cannot connect to ", log::escaped(inst->id), " at ", log::escaped(inst->address.to_string()), ": ",
                  ec.message(),
                  " (a limit of this ambassador, not a failure of the instance); closing connection from ",
                  client_name(client),
                  shortages_unlogged_ ? " (" + std::to_string(shortages_unlogged_) + " more since the last such line)"
                                      : std::string());
        last_shortage_line_ = at;
        shortages_unlogged_ = 0;
      } else {
        ++shortages_unlogged_;
      }
      drain_and_shut(client);
      return step::turned_away;
    }
    if (opts_.fixed_target) {
      ++stats_.rejected;
      ++stats_.connect_failures[inst->id];
      // Closing the client is all there is to do: it sees the connection end; the listener stays up.
      log::warn("connection from ", client_name(client), ": connect ", log::escaped(inst->address.to_string()), ": ",
                ec.message());
      drain_and_shut(client);
      return step::turned_away;
    }
    tried.push_back(inst);
    ++stats_.connect_failures[inst->id];
    if (log::enabled(log::level::debug))
      log::debug("connect to ", log::escaped(inst->id), " at ", log::escaped(inst->address.to_string()), " for ",
                 client_name(client), ": ", ec.message(), "; trying the next instance");
    if (balancer_.report_failure(*inst))
      log::warn("instance ", log::escaped(inst->id), " at ", log::escaped(inst->address.to_string()), " ejected for ",
                log::duration(std::chrono::duration_cast<std::chrono::milliseconds>(balancer_.config().fail_timeout)),
                " after ", log::count(inst->consecutive_fails, "failed connect"), " (last: ", ec.message(), ")");
    return step::try_next;
  }

  /// The client's address as HOST:PORT, for log lines only: a new connection costs no getpeername
  /// and no strings unless a line is written.
  static std::string client_name(tcp::socket& client) {
    std::error_code ignored;  // the client may have gone already; the line still helps
    auto remote = client.remote_endpoint(ignored);
    return host_port{remote.address().to_string(), remote.port()}.to_string();
  }

  /// The client's IP, for source-hash (a client that already left hashes as "", and fails on first use anyway).
  static std::string ip_of(tcp::socket& client) {
    std::error_code ignored;
    return client.remote_endpoint(ignored).address().to_string();
  }

  /// Reads what the client already sent, so that closing sends a clean FIN rather than a reset.
  /// A plain function, not part of session(): a local array in a coroutine lives in its frame,
  /// which would cost every connection 4 kB for as long as it is open.
  static void drain_and_shut(tcp::socket& client) noexcept {
    std::error_code ignored;  // nothing to read, or the client is gone: either way close now
    client.non_blocking(true, ignored);
    char sink[4096];
    for (int i = 0; i < 16 && client.read_some(asio::buffer(sink), ignored) > 0;) ++i;
    client.shutdown(asio::socket_base::shutdown_both, ignored);
  }

  void connection_ended() noexcept {
    if (--stats_.active == 0) idle_.cancel();
  }

  asio::any_io_executor executor_;
  balancer& balancer_;
  proxy_options opts_;
  proxy_stats stats_;
  clock::time_point last_shortage_line_{};    // the last "limit of this ambassador" line
  std::uint64_t shortages_unlogged_ = 0;      // such connects since, not logged
  detail::deadline_queue connect_deadlines_;  // the handler path's connect timeouts
  asio::steady_timer changed_;                // cancelled to wake clients waiting for an instance
  asio::steady_timer idle_;                   // cancelled when the last connection ends (drain)
  bool instances_known_ = true;
};

}  // namespace amb
