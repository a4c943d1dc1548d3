// SPDX-License-Identifier: MIT
// An ambassador fed by etcd: watches <prefix>/<service>/ and keeps every loop's instance set equal to it.
#pragma once

#include "amb/ambassador.hpp"
#include "amb/etcd_client.hpp"
#include "amb/etcd_watch.hpp"
#include "amb/log.hpp"
#include "amb/metrics.hpp"
#include "amb/service_watch.hpp"

#include "amb/detail/asio.hpp"

#include <chrono>
#include <exception>
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
class etcd_follower {
public:
  /// Follows `directory` ("/services/redis-A/", see service_directory()) through `client`.
  etcd_follower(ambassador& a, etcd_client& client, std::string directory, etcd_watch_options options = {})
      : ambassador_(a),
        client_(client),
        state_(std::make_shared<state>()),
        watcher_(client, directory, options),
        started_(std::chrono::steady_clock::now()) {
    state_->directory = std::move(directory);
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
    asio::co_spawn(client_.executor(), watcher_.run([this](const etcd_watch_update& u) { apply(u); }),
                   [dir = state_->directory](std::exception_ptr e) {
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

  /// Hands an update (a snapshot or events) to every loop, as the watch does.
  void apply(const etcd_watch_update& u) {
    ambassador_.on_each_loop([s = state_, u](std::size_t i, balancer&, proxy& p) {
      s->per_loop[i]->apply(u);
      if (u.type == etcd_watch_update::kind::snapshot) p.instances_known(true);
    });
  }

  /// Reads the directory again and replaces the set (SIGHUP); false (logged) when etcd failed.
  asio::awaitable<bool> reread() {
    co_return co_await reread_service(client_, state_->directory, [this](const etcd_watch_update& u) { apply(u); });
  }

  /// Ends the watch (at shutdown); the set stays as it is.
  void stop() { watcher_.stop(); }

  /// True once the first read of etcd succeeded.
  bool ready() const noexcept { return state_->per_loop[0]->ready(); }
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

private:
  // Shared with the updates posted to the other loops, which may outlive this object in their queues.
  struct state {
    std::string directory;
    std::vector<std::unique_ptr<service_instances>> per_loop;  // element i touched only on loop i's thread
  };

  ambassador& ambassador_;
  etcd_client& client_;
  std::shared_ptr<state> state_;
  etcd_watcher watcher_;
  std::chrono::steady_clock::time_point started_;
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
  m.add_collector([&a, &f](metrics_registry& r) {
    const auto t = a.stats();
    const auto& st = t.connections;
    r.set("amb_connections_accepted_total", static_cast<double>(st.accepted));
    r.set("amb_connections_active", static_cast<double>(st.active));
    r.set("amb_connections_rejected_total", static_cast<double>(st.rejected));
    r.set("amb_bytes_total", static_cast<double>(st.bytes.bytes_up), metrics_registry::label("direction", "up"));
    r.set("amb_bytes_total", static_cast<double>(st.bytes.bytes_down), metrics_registry::label("direction", "down"));
    for (const auto& [id, n] : st.connect_failures)
      r.set("amb_connect_failures_total", static_cast<double>(n), metrics_registry::label("instance", id));
    r.set("amb_instances", static_cast<double>(t.instances));
    r.set("amb_instances_ejected", static_cast<double>(t.ejected));
    r.set("amb_instances_draining", static_cast<double>(t.draining));
    r.set("amb_watch_reconnects_total", static_cast<double>(f.watcher().reconnects()));
    r.set("amb_etcd_revision", static_cast<double>(f.revision()));
    r.set("amb_watch_fresh_age_seconds", f.fresh_age().count());
    r.set("amb_watch_resyncs_total", static_cast<double>(f.watcher().resyncs()));
  });
}

}  // namespace amb
