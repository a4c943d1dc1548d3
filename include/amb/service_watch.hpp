// SPDX-License-Identifier: MIT
// Following a service in etcd: keeps a balancer's instance set equal to the values under <prefix>/<service>/.
#pragma once

#include "amb/balancer.hpp"
#include "amb/etcd_client.hpp"
#include "amb/etcd_types.hpp"
#include "amb/etcd_watch.hpp"
#include "amb/log.hpp"
#include "amb/registry_value.hpp"

#include "amb/detail/asio.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace amb {

/// The directory of a service's instances: "<prefix>/<service>/" (one '/' between parts, whatever the input).
inline std::string service_directory(std::string_view prefix, std::string_view service) {
  std::string dir(prefix);
  while (!dir.empty() && dir.back() == '/') dir.pop_back();
  if (dir.empty() || dir.front() != '/') dir.insert(dir.begin(), '/');
  if (dir == "/") dir.clear();
  while (!service.empty() && service.front() == '/') service.remove_prefix(1);
  while (!service.empty() && service.back() == '/') service.remove_suffix(1);
  return dir + "/" + std::string(service) + "/";
}

/// Why `key` is not an instance key of the service directory `directory` ("<prefix>/<service>/", the
/// layout being <prefix>/<service>/<instance-id>), or "" when it is one: a '/' after the directory
/// (a nested key) or an empty instance id. Any key passes when `directory` is empty.
inline std::string instance_key_problem(std::string_view directory, std::string_view key) {
  if (directory.empty()) return {};
  if (key.substr(0, directory.size()) != directory) return "outside " + log::escaped(directory);
  const auto id = key.substr(directory.size());
  if (id.empty()) return "empty instance id";
  if (id.find('/') != std::string_view::npos) return "a '/' after " + log::escaped(directory);
  return {};
}

/// Applies etcd snapshots and events to a balancer, logging one line per instance added, changed or
/// removed and one warning per bad value (a key re-put with the same bad value is not warned again;
/// a key whose value turns bad is removed). Identical re-puts (heartbeats) change and log nothing.
/// Given the service directory, keys that are not <directory><instance-id> (nested, or an empty id)
/// are ignored with one line per key. Keys and values are escaped in every line.
class service_instances {
public:
  /// Whether this copy writes the log lines: one copy per thread applies the same updates, and
  /// only one of them should say so. on_one_loop_of_several logs too, but its balancer counts only
  /// its own loop's connections, so its lines leave the number of open connections out.
  enum class logging { on, off, on_one_loop_of_several };

  /// Updates `b`; `on_change` (may be empty) runs after any update that changed the set.
  /// Only keys <directory><instance-id> are instances when `directory` is given (see instance_key_problem).
  explicit service_instances(balancer& b, std::function<void()> on_change = {}, logging l = logging::on,
                             std::string directory = {})
      : balancer_(b), on_change_(std::move(on_change)), logging_(l), directory_(std::move(directory)) {}

  /// Applies what an etcd_watcher delivered.
  void apply(const etcd_watch_update& u) {
    switch (u.type) {
      case etcd_watch_update::kind::snapshot: apply_snapshot(u.revision, u.kvs); break;
      case etcd_watch_update::kind::events: apply_events(u.events); break;
      case etcd_watch_update::kind::progress:
        if (u.revision > revision_) revision_ = u.revision;
        break;
    }
  }

  /// Replaces the whole set with the keys of a prefix read at `revision` (first read, SIGHUP,
  /// re-read after compaction): instances not in it go, so nothing stale survives.
  void apply_snapshot(std::int64_t revision, const std::vector<etcd_kv>& kvs) {
    std::vector<balancer::entry> wanted;
    std::map<std::string, std::string> still_bad;
    std::set<std::string> still_ignored;
    for (const auto& kv : kvs) {
      if (!is_instance_key(kv.key, still_ignored)) continue;
      auto v = parse_registry_value(kv.value);
      if (!v) {
        warn_bad(kv.key, kv.value, v.error, still_bad);
        continue;
      }
      wanted.push_back({kv.key, v->address, v->weight, v->draining});
    }
    bad_ = std::move(still_bad);
    ignored_ = std::move(still_ignored);
    log_changes(balancer_.replace_all(wanted));
    revision_ = revision;
    snapshot_seen_ = true;
  }

  /// Applies watch events in order. Events at or below the revision already applied (a snapshot
  /// taken by SIGHUP while the watch was behind) are skipped: the snapshot already holds them.
  void apply_events(const std::vector<etcd_event>& events) {
    std::vector<balancer_change> changes;
    // Fixed for the batch: one transaction gives several events the same revision.
    const std::int64_t floor = revision_;
    for (const auto& ev : events) {
      if (ev.kv.mod_revision != 0 && ev.kv.mod_revision <= floor) continue;
      if (ev.kv.mod_revision > revision_) revision_ = ev.kv.mod_revision;
      if (ev.type == etcd_event::kind::del) {
        bad_.erase(ev.kv.key);
        ignored_.erase(ev.kv.key);
        auto c = balancer_.remove(ev.kv.key);
        changes.insert(changes.end(), c.begin(), c.end());
        continue;
      }
      if (!is_instance_key(ev.kv.key, ignored_)) continue;
      auto v = parse_registry_value(ev.kv.value);
      if (!v) {
        warn_bad(ev.kv.key, ev.kv.value, v.error, bad_);
        auto c = balancer_.remove(ev.kv.key);  // the key no longer says where to go
        changes.insert(changes.end(), c.begin(), c.end());
        continue;
      }
      bad_.erase(ev.kv.key);
      auto c = balancer_.upsert(ev.kv.key, v->address, v->weight, v->draining);
      changes.insert(changes.end(), c.begin(), c.end());
    }
    log_changes(changes);
  }

  /// The newest etcd revision applied (0 before the first snapshot).
  std::int64_t revision() const noexcept { return revision_; }
  /// True once a snapshot was applied (the first read of etcd succeeded).
  bool ready() const noexcept { return snapshot_seen_; }
  /// Keys whose value could not be parsed, with the error.
  const std::map<std::string, std::string>& bad_keys() const noexcept { return bad_; }
  /// Keys under the directory that are not instance keys (nested, or an empty id), ignored.
  const std::set<std::string>& ignored_keys() const noexcept { return ignored_; }

private:
  // False (and one line the first time) for a key that is not <directory><instance-id>.
  bool is_instance_key(const std::string& key, std::set<std::string>& into) {
    const std::string problem = instance_key_problem(directory_, key);
    if (problem.empty()) return true;
    if (logging_ != logging::off && !ignored_.count(key))
      log::warn("ignoring ", log::escaped(key), ": not an instance key (", problem, ")");
    into.insert(key);
    return false;
  }

  void warn_bad(const std::string& key, const std::string& value, const std::string& error,
                std::map<std::string, std::string>& into) {
    auto it = bad_.find(key);
    // Warn once per bad value, not once per re-put of the same value (heartbeats).
    if (logging_ != logging::off && (it == bad_.end() || it->second != value))
      log::warn("skipping ", log::escaped(key), ": ", error);
    into[key] = value;
  }

  void log_changes(const std::vector<balancer_change>& changes) {
    for (const auto& c : changes) {
      if (logging_ == logging::off) break;
      const std::string weight = c.weight == 1 ? "" : " (weight " + std::to_string(c.weight) + ")";
      const std::string draining = c.draining ? " (draining: no new connections)" : "";
      const std::string open = logging_ == logging::on ? log::count(c.open, "open connection") : "open connections";
      switch (c.what) {
        case balancer_change::added:
          log::info("instance ", log::escaped(c.id), " added: ", log::escaped(c.address.to_string()), weight, draining);
          break;
        case balancer_change::changed:
          log::info("instance ", log::escaped(c.id), " changed: ", log::escaped(c.address.to_string()), weight,
                    draining);
          break;
        case balancer_change::removed:
          log::info("instance ", log::escaped(c.id), " removed (was ", log::escaped(c.address.to_string()), ")");
          break;
        case balancer_change::drain_started:
          log::info("instance ", log::escaped(c.id), " (", log::escaped(c.address.to_string()),
                    ") draining: no new connections; ", open, " kept");
          break;
        case balancer_change::drain_ended:
          log::info("instance ", log::escaped(c.id), " (", log::escaped(c.address.to_string()),
                    ") no longer draining: takes new connections", weight);
          break;
      }
    }
    // The set as a whole: when nothing but draining instances is left, they still serve (one line
    // when that starts, one when it ends).
    const bool all_draining = !balancer_.empty() && balancer_.draining() == balancer_.size();
    if (logging_ != logging::off && all_draining != all_draining_) {
      const std::string service = directory_.empty() ? std::string("the service") : log::escaped(directory_);
      if (all_draining)
        log::warn("every instance of ", service, " is draining (", log::count(balancer_.size(), "instance"),
                  "): new connections still go to them, as no other instance can take them");
      else if (!balancer_.empty())
        log::info("an instance of ", service, " takes new connections again: draining instances get none");
    }
    all_draining_ = all_draining;
    if (!changes.empty() && on_change_) on_change_();
  }

  balancer& balancer_;
  std::function<void()> on_change_;
  logging logging_;
  std::string directory_;                   // "<prefix>/<service>/", or "" to take every key
  std::map<std::string, std::string> bad_;  // key -> the bad value already warned about
  std::set<std::string> ignored_;           // keys that are not instance keys, already logged
  std::int64_t revision_ = 0;
  bool snapshot_seen_ = false;
  bool all_draining_ = false;  // every instance drains (logged when it starts and ends)
};

/// Re-reads the service directory and hands it to `apply` as a snapshot update (SIGHUP), as a watcher
/// would. Logs and returns false on failure.
inline asio::awaitable<bool> reread_service(etcd_client& client, const std::string& directory,
                                            std::function<void(const etcd_watch_update&)> apply) {
  try {
    auto r = co_await client.get_prefix(directory);
    etcd_watch_update u;
    u.type = etcd_watch_update::kind::snapshot;
    u.revision = r.revision;
    u.kvs = std::move(r.kvs);
    apply(u);
    log::info("re-read ", log::escaped(directory), ": ", log::count(u.kvs.size(), "key"), " at revision ", u.revision);
    co_return true;
  } catch (const std::exception& e) {
    log::warn("re-read ", log::escaped(directory), ": ", e.what(), "; keeping the current instances");
    co_return false;
  }
}

/// Re-reads the service directory and applies it to `instances` as a snapshot (SIGHUP).
inline asio::awaitable<bool> reread_service(etcd_client& client, const std::string& directory,
                                            service_instances& instances) {
  co_return co_await reread_service(client, directory,
                                    [&instances](const etcd_watch_update& u) { instances.apply(u); });
}

}  // namespace amb
