// SPDX-License-Identifier: MIT
// dynamic-etcd-amb --threads N: N data loops, each with its own SO_REUSEPORT listener, balancer and
// copy of the instance set; every etcd change (and a SIGHUP re-read) reaches every loop, the log says
// each change once, /metrics adds the loops up, and SIGTERM drains them all.
#include "support/dynamic_amb.hpp"

#include <doctest/doctest.h>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace dynamic_threads_test {

using namespace amb::test;

namespace {

const std::string dir = "/services/redis-T/";

/// Connections spread over the loops by the kernel (SO_REUSEPORT hashes each connection's ports):
/// with 40 of them, the chance that one loop gets none is 2^-39. Returns how many reached `name`.
int fresh_connections_reaching(const ambassador& amb, const std::string& name, int n = 40) {
  int hits = 0;
  for (int i = 0; i < n; ++i) hits += who_via(amb.port()) == name;
  return hits;
}

}  // namespace

TEST_CASE("--threads 2: every change reaches both loops, is logged once, metrics add up, SIGTERM drains") {
  etcd_cluster etcd;
  tagged_redis a("A"), b("B");
  etcd.etcdctl({"put", dir + "one", a.json()});
  ambassador amb(etcd.endpoints(), "redis-T", {"--threads", "2", "--drain-timeout", "1s"});
  CHECK(tcp_listeners_on(amb.port()) == 2);
  CHECK(thread_count(amb.process().pid()) ==
        2 + amb::test::sanitizer_threads());  // main (control plane + first loop) and one more loop
  CHECK(amb.output().find("with 2 threads") != std::string::npos);

  // The snapshot reached both loops: every connection, whichever loop accepts it, is served.
  CHECK(fresh_connections_reaching(amb, "A") == 40);

  // A live change: both loops follow it.
  etcd.etcdctl({"put", dir + "one", b.json()});
  REQUIRE(amb.routes_to("B"));
  CHECK(fresh_connections_reaching(amb, "B") == 40);

  // A SIGHUP re-read replaces both loops' sets with the same snapshot.
  amb.process().signal(SIGHUP);
  REQUIRE(wait_until([&] { return amb.count_in_output("re-read " + dir) == 1; }, 10s));
  CHECK(fresh_connections_reaching(amb, "B") == 40);

  // Each change is logged once, not once per loop.
  CHECK(amb.count_in_output("instance " + dir + "one added") == 1);
  CHECK(amb.count_in_output("instance " + dir + "one changed") == 1);

  // /metrics adds the loops up: every connection made so far (those routes_to made included).
  auto m = amb.metrics();
  const double accepted = m["amb_connections_accepted_total"];
  CHECK(accepted >= 120);
  CHECK(m["amb_instances"] == 1);
  const double before = accepted;
  CHECK(fresh_connections_reaching(amb, "B", 10) == 10);
  CHECK(amb.metric("amb_connections_accepted_total") == before + 10);

  // A client still connected when SIGTERM comes: drained (here cut at --drain-timeout), exit 0.
  blocking_conn held(amb.port());
  REQUIRE(held.who() == "B");
  amb.process().signal(SIGTERM);
  CHECK(amb.process().wait(10s) == 0);
  CHECK(amb.count_in_output("SIGTERM: no new connections; draining 1 open connection (up to ") == 1);
}

TEST_CASE("--threads takes 1..256") {
  for (std::string bad : {"0", "257", "two"}) {
    auto r = run({AMB_DYNAMIC_ETCD_AMB_BIN, "--threads", bad, "redis-T", "6379"}, 10s);
    CHECK(r.status == 2);
    CHECK_MESSAGE(r.output.find("for --threads") != std::string::npos, r.output);
  }
}

}  // namespace dynamic_threads_test
