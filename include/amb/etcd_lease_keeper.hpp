// SPDX-License-Identifier: MIT
// One etcd lease kept alive, with key=value registrations under it that survive lease loss and outages.
#pragma once

#include "amb/detail/async.hpp"
#include "amb/etcd_client.hpp"
#include "amb/etcd_error.hpp"
#include "amb/log.hpp"

#include "amb/detail/asio.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace amb {

/// How an etcd_lease_keeper behaves.
struct etcd_lease_keeper_options {
  std::int64_t ttl = 5;                            ///< lease TTL in seconds (the seed's 5 s)
  std::chrono::milliseconds tick{0};               ///< keepalive interval; 0 = TTL/3, well inside the TTL
  std::chrono::milliseconds retry_backoff{250};    ///< first wait after a failure
  std::chrono::milliseconds retry_backoff_max{0};  ///< cap of the doubling wait; 0 = the tick
};

/// Owns one lease and a set of registrations (key → value) written under it. run() grants the lease,
/// writes every registration, and sends one keepalive per tick. When etcd says the lease is gone
/// (a keepalive without TTL, or "lease not found" on a put) it grants a new lease and writes EVERY
/// registration again (one log line). While etcd is unreachable it retries with backoff; nothing
/// registered is silently lost and nothing erased is silently left. For a registrar: set() what runs,
/// erase() what stopped, revoke() on a clean stop (the keys vanish at once); a crash leaves them to
/// expire after the TTL. Single-threaded: call everything on the client's executor.
class etcd_lease_keeper {
public:
  /// A keeper using `client` (which must outlive it).
  explicit etcd_lease_keeper(etcd_client& client, etcd_lease_keeper_options options = {})
      : client_(client), options_(options), wake_(client.executor()) {
    if (options_.ttl < 1) options_.ttl = 1;
    if (options_.tick.count() <= 0) options_.tick = std::chrono::milliseconds(options_.ttl * 1000 / 3);
    if (options_.retry_backoff_max.count() <= 0) options_.retry_backoff_max = options_.tick;
  }
  etcd_lease_keeper(const etcd_lease_keeper&) = delete;
  etcd_lease_keeper& operator=(const etcd_lease_keeper&) = delete;

  /// Keeps the lease and the registrations alive until stop() or revoke(); never throws for etcd
  /// failures (they are logged and retried).
  asio::awaitable<void> run() {
    std::chrono::milliseconds backoff = options_.retry_backoff;
    while (!stopped_) {
      std::string why;
      try {
        co_await sync();
        if (!stopped_ && !wake_pending_) {
          wake_.expires_after(options_.tick);
          co_await wake_.async_wait(detail::use_nothrow_awaitable);
        }
        wake_pending_ = false;
        if (stopped_) break;
        if (lease_ != 0) {
          const std::int64_t lease = lease_;
          const std::int64_t ttl = co_await client_.lease_keepalive(lease);
          if (ttl == 0 && lease_ == lease) lost(lease, "etcd says it is gone");
        }
        backoff = options_.retry_backoff;
        continue;
      } catch (const etcd_error& e) {
        if (e.lease_not_found()) {
          if (lease_ != 0) lost(lease_, "etcd says it is not found");
          continue;
        }
        why = e.what();
      } catch (const std::exception& e) {
        why = e.what();
      }
      if (stopped_) break;
      log::warn(why, "; retrying in ", log::duration(backoff));
      ++failures_;
      wake_.expires_after(backoff);
      co_await wake_.async_wait(detail::use_nothrow_awaitable);
      wake_pending_ = false;
      backoff = std::min(backoff * 2, options_.retry_backoff_max);
    }
  }

  /// Registers key = value and writes it now when a lease exists; true when written now. On false it
  /// stays registered and run() writes it as soon as it can.
  asio::awaitable<bool> set(std::string key, std::string value) {
    regs_[key] = value;
    dirty_.insert(key);
    deletes_.erase(key);
    if (lease_ == 0) {
      wake();
      co_return false;
    }
    co_return co_await write(key);
  }

  /// Unregisters key and deletes it from etcd now; true when deleted now. On false run() keeps
  /// trying to delete it.
  asio::awaitable<bool> erase(std::string key) {
    regs_.erase(key);
    dirty_.erase(key);
    deletes_.insert(key);
    co_return co_await remove(key);
  }

  /// Stops run() and revokes the lease, so every registered key vanishes at once. Throws when etcd
  /// cannot be told (the keys then expire after the TTL).
  asio::awaitable<void> revoke() {
    stop();
    const std::int64_t lease = lease_;
    lease_ = 0;
    for (auto& kv : regs_) dirty_.insert(kv.first);
    if (lease != 0) co_await client_.lease_revoke(lease);
  }

  /// Stops run() without revoking (the lease then expires after its TTL). Final: a later run() returns at once.
  void stop() {
    stopped_ = true;
    wake();
  }

  /// Calls `f(key, value)` each time a registration is written to etcd under the current lease (also
  /// when it is written again under a new lease): how a registrar says "registered" only when it is true.
  void on_written(std::function<void(const std::string& key, const std::string& value)> f) {
    on_written_ = std::move(f);
  }

  /// The current lease id, 0 while there is none.
  std::int64_t lease_id() const noexcept { return lease_; }
  /// Every registration (key → value).
  const std::map<std::string, std::string>& registrations() const noexcept { return regs_; }
  /// How many registrations are written under the current lease now (0 while there is no lease).
  std::size_t written() const noexcept { return lease_ == 0 ? 0 : regs_.size() - dirty_.size(); }
  /// True when every registration is written under the current lease and no delete is pending.
  bool in_sync() const noexcept { return lease_ != 0 && dirty_.empty() && deletes_.empty(); }
  /// How many times the lease was lost and granted again.
  std::size_t regrants() const noexcept { return regrants_; }
  /// How many failures run() has retried (for tests and logs).
  std::size_t failures() const noexcept { return failures_; }
  /// The options in effect (tick filled in).
  const etcd_lease_keeper_options& options() const noexcept { return options_; }

private:
  void wake() {
    wake_pending_ = true;
    wake_.cancel();
  }

  void lost(std::int64_t lease, const char* why) {
    log::warn("etcd lease ", lease, " lost (", why, "); granting a new one and writing ",
              log::count(regs_.size(), "key"), " again");
    lease_ = 0;
    ++regrants_;
    for (auto& kv : regs_) dirty_.insert(kv.first);
  }

  // Grants a lease when there is none, then writes pending deletes and puts. On failure it rethrows what
  // the failed call threw (std::system_error or amb::etcd_error), for run() to log and retry.
  asio::awaitable<void> sync() {
    if (lease_ == 0) {
      auto l = co_await client_.lease_grant(options_.ttl);
      if (stopped_) {  // revoke() came while granting: do not leave a lease behind
        co_await client_.lease_revoke(l.id);
        co_return;
      }
      lease_ = l.id;
      for (auto& kv : regs_) dirty_.insert(kv.first);
      log::debug("etcd lease ", lease_, " granted, TTL ", log::duration(std::chrono::seconds(l.ttl)));
    }
    for (const auto& key : std::vector<std::string>(deletes_.begin(), deletes_.end())) {
      if (!deletes_.count(key)) continue;
      const bool ok = co_await remove(key);
      if (!ok) std::rethrow_exception(last_error_);
    }
    for (const auto& key : std::vector<std::string>(dirty_.begin(), dirty_.end())) {
      if (!dirty_.count(key)) continue;
      const bool ok = co_await write(key);
      if (ok) continue;
      if (lease_ == 0) co_return;  // lost: the next sync grants and writes everything
      std::rethrow_exception(last_error_);
    }
  }

  // Puts one registration under the current lease; false (and still dirty) on failure.
  asio::awaitable<bool> write(std::string key) {
    auto it = regs_.find(key);
    if (it == regs_.end()) co_return true;
    const std::string value = it->second;
    const std::int64_t lease = lease_;
    try {
      co_await client_.put(key, value, lease);
    } catch (const etcd_error& e) {
      last_error_ = std::current_exception();
      if (e.lease_not_found() && lease_ == lease && lease != 0) lost(lease, "etcd says it is not found");
      wake();
      co_return false;
    } catch (const std::exception&) {
      last_error_ = std::current_exception();
      wake();
      co_return false;
    }
    // Things may have moved while the put was in flight: only a write of the current state counts.
    it = regs_.find(key);
    if (it == regs_.end()) {
      deletes_.insert(key);  // erased meanwhile: our put must not survive
      wake();
      co_return false;
    }
    if (it->second == value && lease_ == lease && dirty_.erase(key) && on_written_) on_written_(key, value);
    co_return true;
  }

  // Deletes one key; false (and still pending) on failure.
  asio::awaitable<bool> remove(std::string key) {
    try {
      co_await client_.erase(key);
    } catch (const std::exception&) {
      last_error_ = std::current_exception();
      wake();
      co_return false;
    }
    if (!regs_.count(key)) deletes_.erase(key);  // unless it was set again meanwhile
    co_return true;
  }

  etcd_client& client_;
  etcd_lease_keeper_options options_;
  asio::steady_timer wake_;
  bool wake_pending_ = false;
  bool stopped_ = false;
  std::int64_t lease_ = 0;
  std::map<std::string, std::string> regs_;
  std::set<std::string> dirty_;    // registered but not yet written under the current lease
  std::set<std::string> deletes_;  // erased but not yet deleted in etcd
  std::size_t regrants_ = 0;
  std::size_t failures_ = 0;
  std::exception_ptr last_error_;  // what the last failed write() or remove() threw
  std::function<void(const std::string&, const std::string&)> on_written_;
};

}  // namespace amb
