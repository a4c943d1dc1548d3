// SPDX-License-Identifier: MIT
// An ambassador fed by etcd: watches <prefix>/<service>/ and keeps every loop's instance set equal to it.
#pragma once

#include "amb/ambassador.hpp"
#include "amb/etcd_client.hpp"
#include "amb/etcd_watch.hpp"
#include "amb/instance_state_file.hpp"
#include "amb/log.hpp"
#include "amb/metrics.hpp"
#include "amb/service_watch.hpp"

#include "amb/detail/asio.hpp"

#include <chrono>
#include <exception>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace amb {

/// Follows a service directory in etcd for an ambassador: one read of the prefix, then a watch
/// (etcd_watcher: reconnects, compactions, wiped data, freshness checks); every change reaches every
/// loop of the ambassador, and is logged once. Until the first read, a client turned away is told
/// that etcd was not reached yet. The watch starts in the constructor, on the client's executor
/// (which must be the ambassador's loop 0). Destroy it before the ambassador and the client.
///
/// With a state file, every change of the set is also written there (atomically; a failed write is
/// one warning, and serving goes on), and when the first read of etcd fails at start the set is
/// taken from the file instead: the ambassador serves the last known instances at once, then etcd's
/// first answer replaces them. A missing, unreadable or corrupt file is one warning.
class etcd_follower {
public:
  /// Follows `directory` ("/services/redis-A/", see service_directory()) through `client`; keeps the
  /// last known set in `state_file` when one is given.
  etcd_follower(ambassador& a, etcd_client& client, std::string directory, etcd_watch_options options = {},
                std::string state_file = {})
      : ambassador_(a),
        client_(client),
        state_(std::make_shared<state>()),
        watcher_(client, directory, options),
        started_(std::chrono::steady_clock::now()),
        state_file_(std::move(state_file)) {
    state_->directory = std::move(directory);
    known_.directory = state_->directory;
    state_->per_loop.resize(a.loops());
    ambassador_.on_each_loop([s = state_](std::size_t i, balancer& b, proxy& p) {
      // Loop 0 logs; with several loops its balancer sees only its own share of the open connections.
      const auto logging = i > 0                    ? service_instances::logging::off
                           : s->per_loop.size() > 1 ? service_instances::logging::on_one_loop_of_several
                                                    : service_instances::logging::on;
      s->per_loop[i] = std::make_unique<service_instances>(
          b, [&p] { p.instances_changed(); }, logging, s->directory);
      p.instances_known(false);  // until the first read of etcd
    });
    asio::co_spawn(client_.executor(), follow(), [dir = state_->directory](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        log::error("watch ", log::escaped(dir), " stopped: ", x.what());
      }
    });
  }
  etcd_follower(const etcd_follower&) = delete;
  etcd_follower& operator=(const etcd_follower&) = delete;
  ~etcd_follower() { watcher_.stop(); }

  /// Hands an update (a snapshot or events) to every loop, as the watch does, and keeps the state file.
  void apply(const etcd_watch_update& u) {
    if (from_file_ && u.type == etcd_watch_update::kind::snapshot) {
      from_file_ = false;
      log::info("etcd reached: its set of ", log::count(u.kvs.size(), "key"), " at revision ", u.revision,
                " replaces the one from the state file");
    }
    record(u);
    deliver(u);
  }

  /// Reads the directory again and replaces the set (SIGHUP); false (logged) when etcd failed.
  asio::awaitable<bool> reread() {
    co_return co_await reread_service(client_, state_->directory, [this](const etcd_watch_update& u) { apply(u); });
  }

  /// Ends the watch (at shutdown); the set stays as it is.
  void stop() { watcher_.stop(); }

  /// True once the set is known: the first read of etcd succeeded, or the state file stood in for it.
  bool ready() const noexcept { return state_->per_loop[0]->ready(); }
  /// True while the set is the state file's, etcd not reached yet.
  bool serving_from_state_file() const noexcept { return from_file_; }
  /// The newest etcd revision applied.
  std::int64_t revision() const noexcept { return state_->per_loop[0]->revision(); }
  /// How long ago the set was last confirmed equal to etcd's (since the start before the first read).
  std::chrono::duration<double> fresh_age() const {
    return std::chrono::steady_clock::now() - watcher_.fresh_at().value_or(started_);
  }
  /// The watch (reconnects, resyncs).
  const etcd_watcher& watcher() const noexcept { return watcher_; }
  /// The directory followed.
  const std::string& directory() const noexcept { return state_->directory; }
  /// The state file ("" when none).
  const std::string& state_file() const noexcept { return state_file_; }

private:
  // Shared with the updates posted to the other loops, which may outlive this object in their queues.
  struct state {
    std::string directory;
    std::vector<std::unique_ptr<service_instances>> per_loop;  // element i touched only on loop i's thread
  };

  // With a state file, one read of etcd first: when it fails, the file's set is served meanwhile.
  // Then the watch, whose own first read replaces whatever is there.
  asio::awaitable<void> follow() {
    if (!state_file_.empty()) {
      std::string failure;
      try {
        auto r = co_await client_.get_prefix(state_->directory);
        etcd_watch_update u;
        u.type = etcd_watch_update::kind::snapshot;
        u.revision = r.revision;
        u.kvs = std::move(r.kvs);
        apply(u);
      } catch (const std::exception& e) {  // every way etcd can fail to answer: the file stands in
        failure = e.what();
      }
      if (!failure.empty()) serve_from_file(failure);
    }
    co_await watcher_.run([this](const etcd_watch_update& u) { apply(u); });
  }

  void serve_from_file(const std::string& failure) {
    auto file = read_instance_state(state_file_);
    if (!file) {
      log::warn(file.error, "; no last known set to serve until etcd answers (", failure, ")");
      return;
    }
    if (file->directory != state_->directory) {
      log::warn("state file ", log::escaped(state_file_), " holds ", log::escaped(file->directory), ", not ",
                log::escaped(state_->directory), ": not used; no last known set to serve until etcd answers");
      return;
    }
    log::warn("etcd not reached (", failure, "); serving the last known set from the state file ",
              log::escaped(state_file_), ": ", log::count(file->kvs.size(), "key"), " at revision ", file->revision);
    etcd_watch_update u;
    u.type = etcd_watch_update::kind::snapshot;
    u.revision = file->revision;
    for (const auto& [key, value] : file->kvs) {
      etcd_kv kv;
      kv.key = key;
      kv.value = value;
      u.kvs.push_back(std::move(kv));
    }
    known_ = std::move(*file.value);
    from_file_ = true;
    deliver(u);
  }

  // Keeps known_ equal to what the loops were given, and writes it when the keys or values changed
  // (a heartbeat re-put, or a progress message, writes nothing). The write is synchronous, on this
  // loop: the set changes rarely, and the file is small.
  void record(const etcd_watch_update& u) {
    if (state_file_.empty()) return;
    std::map<std::string, std::string> before;
    switch (u.type) {
      case etcd_watch_update::kind::snapshot:
        before.swap(known_.kvs);
        for (const auto& kv : u.kvs) known_.kvs[kv.key] = kv.value;
        known_.revision = u.revision;
        break;
      case etcd_watch_update::kind::events:
        before = known_.kvs;
        for (const auto& ev : u.events) {
          if (ev.type == etcd_event::kind::del)
            known_.kvs.erase(ev.kv.key);
          else
            known_.kvs[ev.kv.key] = ev.kv.value;
          if (ev.kv.mod_revision > known_.revision) known_.revision = ev.kv.mod_revision;
        }
        break;
      case etcd_watch_update::kind::progress: return;
    }
    if (before == known_.kvs && wrote_once_) return;
    if (auto ec = write_instance_state(state_file_, known_)) {
      if (!write_failing_)
        log::warn("cannot write the state file ", log::escaped(state_file_), ": ", ec.message(),
                  "; it keeps the previous set (serving goes on)");
      write_failing_ = true;
      return;
    }
    if (write_failing_) log::info("state file ", log::escaped(state_file_), " written again");
    write_failing_ = false;
    wrote_once_ = true;
  }

  void deliver(const etcd_watch_update& u) {
    ambassador_.on_each_loop([s = state_, u](std::size_t i, balancer&, proxy& p) {
      s->per_loop[i]->apply(u);
      if (u.type == etcd_watch_update::kind::snapshot) p.instances_known(true);
    });
  }

  ambassador& ambassador_;
  etcd_client& client_;
  std::shared_ptr<state> state_;
  etcd_watcher watcher_;
  std::chrono::steady_clock::time_point started_;
  std::string state_file_;
  instance_state known_;        // the set as the loops have it (kept only with a state file)
  bool from_file_ = false;      // the loops' set came from the state file; etcd not reached yet
  bool wrote_once_ = false;     // the file was written by this process (the first snapshot always writes)
  bool write_failing_ = false;  // the last write failed (warned once)
};

/// Declares the ambassador's metrics in `m` and refreshes them at each scrape from `a` and `f`
/// (Prometheus names in the README: amb_connections_*, amb_bytes_total, amb_instances, amb_watch_*, ...).
/// Both must outlive the registry's use.
inline void add_ambassador_metrics(metrics_registry& m, ambassador& a, const etcd_follower& f) {
  m.declare("amb_connections_accepted_total", "counter", "Client connections accepted.");
  m.declare("amb_connections_active", "gauge", "Client connections open now.");
  m.declare("amb_connections_rejected_total", "counter", "Clients closed because no instance could be reached.");
  m.declare("amb_bytes_total", "counter",
            "Bytes relayed; direction up = client to instance, down = instance to client.");
  m.declare("amb_bytes_spliced_total", "counter",
            "Of the bytes relayed, those moved by splice(2) inside the kernel (bulk data), never copied.");
  m.declare("amb_connect_failures_total", "counter", "Failed connects to an instance, by instance key.");
  m.declare("amb_instances", "gauge", "Instances known from etcd.");
  m.declare("amb_instances_ejected", "gauge", "Instances sitting out after failed connects.");
  m.declare("amb_instances_draining", "gauge",
            "Instances registered as draining (no new connections while another instance takes them).");
  m.declare("amb_watch_reconnects_total", "counter", "Times the etcd watch was lost and re-established.");
  m.declare("amb_etcd_revision", "gauge", "Newest etcd revision applied to the instance set.");
  m.declare("amb_watch_fresh_age_seconds", "gauge",
            "Seconds since the instance set was last confirmed equal to etcd's (read, progress or freshness check).");
  m.declare("amb_watch_resyncs_total", "counter", "Times a freshness check found the set behind etcd and re-read it.");
  m.declare("amb_serving_from_state_file", "gauge",
            "1 while the instance set is the state file's (etcd not reached since the start), else 0.");
  if (a.options().health_check)
    m.declare("amb_instance_up", "gauge",
              "1 while an instance passes its active health checks, 0 while it fails them.");
  m.add_collector([&a, &f](metrics_registry& r) {
    const auto t = a.stats();
    const auto& st = t.connections;
    r.set("amb_connections_accepted_total", static_cast<double>(st.accepted));
    r.set("amb_connections_active", static_cast<double>(st.active));
    r.set("amb_connections_rejected_total", static_cast<double>(st.rejected));
    r.set("amb_bytes_total", static_cast<double>(st.bytes.bytes_up), metrics_registry::label("direction", "up"));
    r.set("amb_bytes_total", static_cast<double>(st.bytes.bytes_down), metrics_registry::label("direction", "down"));
    r.set("amb_bytes_spliced_total", static_cast<double>(st.bytes.bytes_spliced));
    for (const auto& [id, n] : st.connect_failures)
      r.set("amb_connect_failures_total", static_cast<double>(n), metrics_registry::label("instance", id));
    r.set("amb_instances", static_cast<double>(t.instances));
    r.set("amb_instances_ejected", static_cast<double>(t.ejected));
    r.set("amb_instances_draining", static_cast<double>(t.draining));
    r.set("amb_watch_reconnects_total", static_cast<double>(f.watcher().reconnects()));
    r.set("amb_etcd_revision", static_cast<double>(f.revision()));
    r.set("amb_watch_fresh_age_seconds", f.fresh_age().count());
    r.set("amb_watch_resyncs_total", static_cast<double>(f.watcher().resyncs()));
    r.set("amb_serving_from_state_file", f.serving_from_state_file() ? 1.0 : 0.0);
    r.clear("amb_instance_up");  // instances that left take their sample with them
    for (const auto& h : a.health())
      r.set("amb_instance_up", h.up ? 1.0 : 0.0, metrics_registry::label("instance", h.id));
  });
}

}  // namespace amb
