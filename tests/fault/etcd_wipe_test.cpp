// SPDX-License-Identifier: MIT
// Fault: etcd loses all its data (data folder removed, restarted empty, revisions counting from 1
// again): the watcher notices and re-reads, docker-register writes its keys again within a TTL, and
// dynamic-etcd-amb converges to what was re-registered, dropping what was not.
#include <amb/etcd_client.hpp>
#include <amb/etcd_watch.hpp>

#include "support/etcd_async.hpp"
#include "support/fault_support.hpp"

#include <doctest/doctest.h>

#include <set>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace etcd_wipe_test {

using namespace amb::test;
using amb::etcd_watch_update;

namespace {

// The state a consumer builds from the watcher: replaced on a snapshot, updated by events.
class mirror {
public:
  std::function<void(const etcd_watch_update&)> callback() {
    return [this](const etcd_watch_update& u) {
      std::lock_guard<std::mutex> lock(m_);
      if (u.type == etcd_watch_update::kind::snapshot) {
        state_.clear();
        for (auto& kv : u.kvs) state_[kv.key] = kv.value;
      }
      for (auto& e : u.events) {
        if (e.type == amb::etcd_event::kind::del)
          state_.erase(e.kv.key);
        else
          state_[e.kv.key] = e.kv.value;
      }
    };
  }
  std::map<std::string, std::string> state() {
    std::lock_guard<std::mutex> lock(m_);
    return state_;
  }

private:
  std::mutex m_;
  std::map<std::string, std::string> state_;
};

const std::string service = "redis-w";
const std::string dir = "/services/" + service + "/";

}  // namespace

TEST_CASE(
    "watch: etcd wiped and restarted empty is detected (revision below the one delivered): re-read, then events") {
  etcd_cluster etcd;
  asio::io_context io;
  auto o = etcd_options(etcd.url());
  o.connect_timeout = 1s;
  o.request_timeout = 3s;
  o.retry_backoff = 100ms;
  amb::etcd_client client(io.get_executor(), o);
  amb::etcd_watch_options wo;
  wo.retry_backoff = 100ms;
  wo.retry_backoff_max = 500ms;
  wo.rewind_grace = 1s;
  amb::etcd_watcher watcher(client, "/w/", wo);
  mirror got;
  io_runner runner(io);
  auto running = runner.spawn(watcher.run(got.callback()));

  std::map<std::string, std::string> old;
  std::int64_t old_revision = 0;
  for (int i = 0; i < 10; ++i) {
    old["/w/old" + std::to_string(i)] = "x";
    runner.sync(client.put("/w/old" + std::to_string(i), "x"));
    old_revision = runner.sync(client.put("/elsewhere", std::to_string(i))).revision;
  }
  REQUIRE(wait_until([&] { return got.state() == old; }, 10s));

  etcd.wipe_and_restart();
  const auto put = runner.sync(client.put("/w/new", "1"));
  REQUIRE(put.revision < old_revision);  // the scenario: a new history, counted from 1 again
  // During the grace the last known state stays (a registrar would be writing its keys again now).
  std::this_thread::sleep_for(300ms);
  CHECK(got.state() == old);
  // Without the detection the watch would resume at old_revision + 1 and wait there: the old keys
  // would stay and /w/new would never arrive.
  CHECK(wait_until([&] { return got.state() == std::map<std::string, std::string>{{"/w/new", "1"}}; }, 15s));
  runner.sync(client.put("/w/next", "2"));
  runner.sync(client.erase("/w/new"));
  CHECK(wait_until([&] { return got.state() == std::map<std::string, std::string>{{"/w/next", "2"}}; }, 10s));
  std::size_t rewinds = 0, snapshots = 0;
  std::int64_t next = 0;
  runner.post_wait([&] {
    rewinds = watcher.rewinds();
    snapshots = watcher.snapshots();
    next = watcher.next_revision();
    watcher.stop();
  });
  running.get();
  CHECK(rewinds == 1);
  CHECK(snapshots == 2);
  CHECK(next < old_revision);  // following the new history
}

TEST_CASE(
    "etcd wiped: docker-register writes its keys again within a TTL; dynamic-etcd-amb drops the rest and converges") {
  etcd_cluster etcd;
  // A store that lived a while has a revision well above what a fresh one reaches in a few writes.
  for (int i = 0; i < 30; ++i) etcd.etcdctl({"put", "/fault/filler", std::to_string(i)});
  podman_service podman;
  redis_container a(podman, "wa"), b(podman, "wb");
  const auto ttl = 3s;
  auto reg_a = start_registrar(etcd.endpoints(), podman.url(), a.name, service, "3s");
  auto reg_b = start_registrar(etcd.endpoints(), podman.url(), b.name, service, "3s");
  auto want = [&](std::vector<const redis_container*> live) {
    std::map<std::string, std::string> m;
    for (auto* c : live) m[dir + c->name] = c->value();
    return m;
  };
  REQUIRE(wait_until([&] { return etcd_prefix(etcd, dir) == want({&a, &b}); }, 20s));
  ambassador amb(etcd.endpoints(), service);
  REQUIRE(wait_until([&] { return amb.metric("amb_instances") == 2; }, 10s));
  redis_client_loop clients(amb.port());
  REQUIRE(wait_until([&] { return clients.ok() >= 30; }, 10s));

  // b's registrar dies with etcd: after the wipe nobody writes b again (its redis keeps running).
  reg_b.stop();
  etcd.wipe_and_restart();
  const auto restarted = std::chrono::steady_clock::now();
  CHECK(wait_until([&] { return etcd_prefix(etcd, dir) == want({&a}); }, ttl, 50ms));
  MESSAGE("key written again ",
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - restarted).count(),
          " ms after the emptied etcd was healthy (TTL 3 s)");
  CHECK(reg_a.output().find("lost (etcd says it is gone)") != std::string::npos);

  // The ambassador follows the new history: b dropped, a kept, a new instance routed to.
  CHECK(wait_until([&] { return amb.count_in_output("instance " + dir + b.name + " removed") == 1; }, 20s));
  CHECK(amb.count_in_output("already seen (its data was lost or restored); reading the prefix again in 5s, when "
                            "registrars have written their keys again") == 1);
  CHECK(amb.metric("amb_instances") == 1);
  for (int i = 0; i < 6; ++i) CHECK(who_via(amb.port()) == a.name);
  redis_container c(podman, "wc");
  auto reg_c = start_registrar(etcd.endpoints(), podman.url(), c.name, service, "3s");
  REQUIRE(wait_until([&] { return etcd_prefix(etcd, dir) == want({&a, &c}); }, 20s));
  CHECK(amb.routes_to(c.name, 20s));
  std::set<std::string> seen;
  for (int i = 0; i < 6; ++i) seen.insert(who_via(amb.port()));
  CHECK(seen == std::set<std::string>{a.name, c.name});
  CHECK(amb.count_in_output("instance " + dir + a.name + " removed") == 0);  // a was never dropped
  CHECK(etcd_prefix(etcd, dir) == want({&a, &c}));                           // nothing stale, nothing twice
  CHECK(wait_until([&] { return etcd_lease_count(etcd) == 2; }, 10s));

  clients.stop();
  INFO(clients.failures());
  INFO(amb.output());
  INFO(reg_a.output());
  CHECK(clients.failed() == 0);
  MESSAGE(clients.ok(), " redis requests through the ambassador, ", clients.failed(), " failed");
}

}  // namespace etcd_wipe_test
