// SPDX-License-Identifier: MIT
// A registrar as one object: the engine's clients, an etcd lease keeper and a follower (seed or --all mode).
#pragma once

#include "amb/address.hpp"
#include "amb/detail/async.hpp"
#include "amb/docker_client.hpp"
#include "amb/etcd_client.hpp"
#include "amb/etcd_lease_keeper.hpp"
#include "amb/host_address.hpp"
#include "amb/log.hpp"
#include "amb/registrar.hpp"
#include "amb/registry_value.hpp"

#include "amb/detail/asio.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <map>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

namespace amb {

/// What an etcd_registrar registers, and how.
struct etcd_registrar_options {
  registrar_options registry{};       ///< prefix, value format, resync, host IP for "any" bindings
  std::int64_t ttl = 5;               ///< lease TTL in seconds (the seed's 5 s)
  std::optional<seed_config> seed{};  ///< seed mode: one container; nullopt: automatic mode (--all)
  auto_config automatic{};            ///< automatic mode's naming rules
  /// At start, how long to keep asking an engine whose requests time out (a busy engine is slow, not
  /// wrong); 0 fails at the first timeout. A refused or missing socket, or a server that is not an
  /// engine, fails at once whatever this says.
  std::chrono::milliseconds engine_wait{60000};
};

/// Publishes containers' host addresses into etcd and keeps them true: follows the engine (seed mode:
/// one container, seed_follower; automatic mode: all, auto_follower) and writes through one lease
/// kept alive (etcd_lease_keeper), so a registrar that dies is forgotten after the TTL and one that
/// stops (stop()) removes every key at once. Logs "registered KEY = VALUE" (or "draining KEY = VALUE",
/// once the engine announced a stop) only once the key is in etcd; while etcd cannot be reached, one
/// line says what waits for it. Single-threaded: use it on the client's executor. Destroy it before
/// the etcd client.
class etcd_registrar {
public:
  /// A registrar writing through `etcd` (which must outlive it), reading the engine at `engine`.
  etcd_registrar(etcd_client& etcd, const endpoint& engine, etcd_registrar_options options)
      : etcd_(etcd),
        options_(std::move(options)),
        keeper_(etcd, keeper_options(options_.ttl)),
        api_(etcd.executor(), engine),
        events_(etcd.executor(), engine) {
    keeper_.on_written([this](const std::string& key, const std::string& value) { written(key, value); });
    registration_sink sink{[this](std::string key, std::string value) -> asio::awaitable<void> {
                             co_await set(std::move(key), std::move(value));
                           },
                           [this](std::string key) -> asio::awaitable<void> {
                             announced_.erase(key);
                             waiting_.erase(key);
                             co_await keeper_.erase(key);
                           }};
    if (options_.seed)
      seed_.emplace(api_, events_, sink, options_.registry, *options_.seed);
    else
      automatic_.emplace(api_, events_, sink, options_.registry, options_.automatic);
  }
  etcd_registrar(const etcd_registrar&) = delete;
  etcd_registrar& operator=(const etcd_registrar&) = delete;

  /// Checks that the engine answers (a wrong socket or a permission problem is not a passing outage:
  /// logs "cannot use the container engine: ..." and throws std::system_error; a request that times
  /// out is asked again for up to options.engine_wait), logs its version, then
  /// keeps the lease and follows the containers. Returns only in seed mode with exit_with_container:
  /// 0 when the container was removed, 1 when it is absent or does not publish the port at start.
  /// Later engine and etcd outages are retried forever.
  asio::awaitable<int> run() {
    co_await check_engine();
    asio::co_spawn(etcd_.executor(), keeper_.run(), [](std::exception_ptr e) {
      if (e) log::error("internal: the etcd lease keeper stopped");
    });
    if (automatic_) {
      co_await automatic_->run();
      co_return 0;
    }
    co_return co_await seed_->run();
  }

private:
  // The start-up check of run(): a timeout is retried (1 s, 2 s, 4 s, then every 8 s) until
  // options_.engine_wait has passed, one warning per attempt; any other failure ends it at once.
  asio::awaitable<void> check_engine() {
    using namespace std::chrono_literals;
    const auto give_up = std::chrono::steady_clock::now() + options_.engine_wait;
    for (std::chrono::milliseconds pause = 1s;; pause = std::min<std::chrono::milliseconds>(pause * 2, 8s)) {
      std::string failure;
      try {
        co_await api_.ping();
        auto v = co_await api_.negotiate();
        log::info("engine at ", api_.server().to_string(), ": version ", v.version, ", API ", api_.api_version());
        co_return;
      } catch (const std::system_error& e) {
        const bool slow = e.code() == make_error_code(errc::timeout);
        if (!slow || std::chrono::steady_clock::now() + pause >= give_up) {
          log::error("cannot use the container engine: ", e.what());
          throw;
        }
        failure = e.what();
      }
      log::warn("the container engine is slow to answer: ", failure, "; asking again in ", log::duration(pause));
      co_await detail::sleep_for(pause);
    }
  }

public:
  /// Revokes the lease, so every key it holds vanishes at once, and says what really happened.
  /// Never throws: when etcd cannot be told, the keys expire after the TTL (logged).
  asio::awaitable<void> stop() {
    const bool held = keeper_.lease_id() != 0;
    const std::size_t written = keeper_.written();
    try {
      co_await keeper_.revoke();
      if (!held)
        log::info("no etcd lease held; nothing registered to remove");
      else if (written == 0)
        log::info("lease revoked; nothing was registered under it");
      else
        log::info("lease revoked; registrations removed");
    } catch (const std::exception& e) {
      log::warn("revoke the etcd lease: ", e.what(), "; the keys expire after the TTL (",
                log::duration(std::chrono::seconds(options_.ttl)), ")");
    }
  }

  /// The lease keeper (lease id, registrations, whether all are written).
  const etcd_lease_keeper& keeper() const noexcept { return keeper_; }
  /// The engine's client for calls (not the events stream).
  docker_client& engine() noexcept { return api_; }

private:
  static etcd_lease_keeper_options keeper_options(std::int64_t ttl) {
    etcd_lease_keeper_options o;
    o.ttl = ttl;
    return o;
  }

  // A registration to make: written now, or said to wait (once) when etcd has not taken it within 1 s.
  asio::awaitable<void> set(std::string key, std::string value) {
    waiting_[key] = value;
    if (co_await keeper_.set(key, value)) co_return;
    asio::co_spawn(etcd_.executor(), say_waiting(key, value), [](std::exception_ptr) {});  // only waits and logs
  }

  asio::awaitable<void> say_waiting(std::string key, std::string value) {
    co_await detail::sleep_for(std::chrono::seconds(1));
    auto it = waiting_.find(key);
    if (it == waiting_.end() || it->second != value) co_return;  // written, changed or erased meanwhile
    const auto& eps = etcd_.endpoints();
    const std::string where = eps.empty() ? std::string("?") : eps[etcd_.current_index() % eps.size()].to_string();
    log::info("waiting for etcd at ", where, " to register ", key);
  }

  // The keeper wrote key = value: the first time for this value, that is a registration.
  void written(const std::string& key, const std::string& value) {
    waiting_.erase(key);
    auto& said = announced_[key];
    if (said == value) return;  // written again under a new lease: the keeper said so already
    said = value;
    if (is_draining_value(value)) {
      log::info("draining ", key, " = ", value, " (the engine is stopping the container; the key goes when it exits)");
      return;
    }
    std::string note;
    if (options_.seed) {
      auto v = parse_registry_value(value);
      if (v && is_loopback_address(v->address.host))
        note = " (a loopback address: only ambassadors on this host can reach it)";
    }
    log::info("registered ", key, " = ", value, note);
  }

  etcd_client& etcd_;
  etcd_registrar_options options_;
  etcd_lease_keeper keeper_;
  docker_client api_;     // inspect and list calls
  docker_client events_;  // the events stream (each client has one connection)
  std::optional<seed_follower> seed_;
  std::optional<auto_follower> automatic_;
  std::map<std::string, std::string> announced_;  // key -> the value last said "registered"
  std::map<std::string, std::string> waiting_;    // key -> value set but not yet seen written
};

}  // namespace amb
