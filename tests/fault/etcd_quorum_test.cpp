// SPDX-License-Identifier: MIT
// Fault: a 3-member etcd loses the member every program talks to, then its quorum, then gets both
// back, while redis clients talk through dynamic-etcd-amb to redis containers that docker-register
// registered: no failed request, each registration exactly once afterwards, the watch catches up.
#include "support/fault_support.hpp"

#include <doctest/doctest.h>

#include <set>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace etcd_quorum_test {

using namespace amb::test;

namespace {
const std::string service = "redis-q";
const std::string dir = "/services/" + service + "/";

std::map<std::string, std::string> expected(const std::vector<const redis_container*>& live) {
  std::map<std::string, std::string> want;
  for (auto* c : live) want[dir + c->name] = c->value();
  return want;
}
}  // namespace

TEST_CASE("etcd quorum lost and regained: forwarding never stops, registrations come back once, the watch catches up") {
  etcd_cluster etcd(3);
  podman_service podman;
  redis_container r1(podman, "q1"), r2(podman, "q2");
  // Every program gets all three members, member 0 first: that is the one each talks to at the start.
  auto reg1 = start_registrar(etcd.endpoints(), podman.url(), r1.name, service);
  auto reg2 = start_registrar(etcd.endpoints(), podman.url(), r2.name, service);
  REQUIRE_MESSAGE(wait_until(
                      [&] {
                        return etcd_prefix(etcd, dir) == expected({&r1, &r2});
                      },
                      20s),
                  (reg1.output() + reg2.output()));
  ambassador amb(etcd.endpoints(), service);
  REQUIRE(wait_until([&] { return amb.metric("amb_instances") == 2; }, 10s));

  redis_client_loop clients(amb.port());
  REQUIRE(wait_until([&] { return clients.ok() >= 30; }, 10s));

  // Everybody talks to member 0: the watch is there, and the registrars' keepalives go there.
  CHECK(etcd_watchers(etcd, 0) == 1);
  CHECK(wait_until([&] { return etcd_keepalives(etcd, 0) >= 2; }, 10s));
  CHECK(etcd_keepalives(etcd, 1) <= 0);
  CHECK(etcd_keepalives(etcd, 2) <= 0);

  // 1. The member everybody talks to dies: they move to member 1, the next in their lists.
  etcd.kill9(0);
  REQUIRE(wait_until([&] { return amb.metric("amb_watch_reconnects_total") >= 1; }, 20s));
  REQUIRE(wait_until([&] { return etcd_watchers(etcd, 1) == 1 && etcd_keepalives(etcd, 1) >= 2; }, 20s));
  REQUIRE(wait_until([&] { return etcd.etcdctl_result({"put", "/fault/after-first", "x"}).status == 0; }, 30s, 200ms));
  // 2. The member they moved to dies too: one of three left, no quorum, nothing can be written.
  etcd.kill9(1);
  const auto no_quorum = std::chrono::steady_clock::now();
  CHECK(wait_until([&] { return amb.metric("amb_watch_reconnects_total") >= 2; }, 20s));
  // Longer than the registrars' 5 s TTL: their keepalives fail for more than a TTL. (The scenario,
  // not an assertion: a leaderless cluster expires no lease, a new leader extends them all.)
  while (std::chrono::steady_clock::now() - no_quorum < 7s) std::this_thread::sleep_for(100ms);
  CHECK(etcd.etcdctl_result({"put", "--command-timeout=1s", "/fault/no-quorum", "x"}).status != 0);
  CHECK(clients.failed() == 0);
  CHECK(amb.healthy());

  // 3. Both come back: quorum first (member 1), then member 0.
  etcd.restart(1, false);
  etcd.restart(0, false);
  REQUIRE_MESSAGE(wait_until([&] { return etcd.healthy(0) && etcd.healthy(1) && etcd.healthy(2); }, 30s, 100ms),
                  etcd.log(0), etcd.log(1));
  const auto back = clients.ok();
  REQUIRE(wait_until([&] { return clients.ok() >= back + 30; }, 10s));

  // Registrations: exactly one key per live container, with its value (no duplicate, none lost),
  // and the two registrars still running on one lease each (a lease lost during the outage would
  // show up as a regrant line, and a leaked one as a third lease).
  CHECK(wait_until([&] { return etcd_prefix(etcd, dir) == expected({&r1, &r2}); }, 15s));
  CHECK(wait_until([&] { return etcd_lease_count(etcd) == 2; }, 15s));
  CHECK(reg1.running());
  CHECK(reg2.running());
  // Never gone from the ambassador's set either (a lost lease deletes the keys until they are rewritten).
  CHECK(amb.count_in_output("instance " + dir + r1.name + " removed") == 0);
  CHECK(amb.count_in_output("instance " + dir + r2.name + " removed") == 0);
  INFO(reg1.output());
  INFO(reg2.output());

  // The watch caught up: an instance registered after the quorum came back is routed to, and every
  // instance is used.
  redis_container r3(podman, "q3");
  auto reg3 = start_registrar(etcd.endpoints(), podman.url(), r3.name, service);
  REQUIRE(wait_until([&] { return etcd_prefix(etcd, dir) == expected({&r1, &r2, &r3}); }, 20s));
  CHECK(amb.routes_to(r3.name, 20s));
  CHECK(amb.metric("amb_instances") == 3);
  std::set<std::string> seen;
  for (int i = 0; i < 9; ++i) seen.insert(who_via(amb.port()));
  CHECK(seen == std::set<std::string>{r1.name, r2.name, r3.name});

  clients.stop();
  INFO(clients.failures());
  INFO(amb.output());
  CHECK(clients.failed() == 0);
  CHECK(clients.ok() >= 300);
  CHECK(amb.metric("amb_connections_rejected_total") == 0);
  MESSAGE(clients.ok(), " redis requests through the ambassador, ", clients.failed(), " failed");
}

}  // namespace etcd_quorum_test
