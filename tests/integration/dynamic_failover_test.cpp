// SPDX-License-Identifier: MIT
// dynamic-etcd-amb when things fail: a dead instance, a dead etcd, a lost cluster member; signals.
#include "support/dynamic_amb.hpp"

#include <doctest/doctest.h>

#include <set>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace dynamic_failover_test {

using namespace amb::test;

namespace {
const std::string dir = "/services/redis-A/";
}

TEST_CASE("one instance's redis killed: every new client still succeeds (failover + ejection)") {
  etcd_cluster etcd;
  tagged_redis a("a"), b("b");
  etcd.etcdctl({"put", dir + "a", a.json()});
  etcd.etcdctl({"put", dir + "b", b.json()});
  ambassador amb(etcd.endpoints(), "redis-A", {"--max-fails", "2", "--fail-timeout", "30s"});
  REQUIRE(wait_until([&] { return amb.metric("amb_instances") == 2; }, 10s));
  a.server.kill9();
  for (int i = 0; i < 20; ++i) CHECK(who_via(amb.port()) == "b");
  auto m = amb.metrics();
  // Two failed connects eject a; after that it is not tried any more.
  CHECK(m["amb_connect_failures_total{instance=\"/services/redis-A/a\"}"] == 2);
  CHECK(m["amb_instances_ejected"] == 1);
  CHECK(m["amb_connections_rejected_total"] == 0);
  CHECK(amb.count_in_output("warning: instance /services/redis-A/a at 127.0.0.1:" + std::to_string(a.server.port()) +
                            " ejected for 30s after 2 failed connects (last: Connection refused)") == 1);
  // Every instance dead: the client is closed (tried both), one line each.
  b.server.kill9();
  CHECK(who_via(amb.port()).empty());
  CHECK(amb.count_in_output("could be reached (2 tried); closing connection from 127.0.0.1:") == 1);
  // Back up: the ejected instance is offered again as soon as nothing else works, and recovers.
  a.server.start();
  a.tag();
  CHECK(who_via(amb.port()) == "a");
  CHECK(amb.count_in_output("instance /services/redis-A/a at 127.0.0.1:" + std::to_string(a.server.port()) +
                            " is reachable again") == 1);
}

TEST_CASE("etcd killed: forwarding goes on; restarted with keys changed meanwhile: converges") {
  etcd_cluster etcd;
  tagged_redis a("a"), b("b"), c("c");
  etcd.etcdctl({"put", dir + "a", a.json()});
  etcd.etcdctl({"put", dir + "b", b.json()});
  ambassador amb(etcd.endpoints(), "redis-A");
  REQUIRE(wait_until([&] { return amb.metric("amb_instances") == 2; }, 10s));
  etcd.kill9();
  std::set<std::string> seen;
  for (int i = 0; i < 10; ++i) {
    auto w = who_via(amb.port());
    CHECK(!w.empty());
    seen.insert(w);
  }
  CHECK(seen == std::set<std::string>{"a", "b"});
  REQUIRE(wait_until([&] { return amb.metric("amb_watch_reconnects_total") >= 1; }, 10s));
  CHECK(amb.healthy());  // still serving from the last known set

  etcd.restart();
  // Changed while the ambassador's watch is (probably still) in its reconnect backoff.
  etcd.etcdctl({"del", dir + "a"});
  etcd.etcdctl({"put", dir + "c", c.json()});
  REQUIRE(wait_until(
      [&] { return amb.metric("amb_instances") == 2 && amb.count_in_output("/services/redis-A/c added") == 1; }, 20s));
  std::set<std::string> after;
  for (int i = 0; i < 6; ++i) after.insert(who_via(amb.port()));
  CHECK(after == std::set<std::string>{"b", "c"});  // no stale "a"
}

TEST_CASE("keys changed and compacted while the watch was down: converges, no stale instance") {
  etcd_cluster etcd;
  tagged_redis a("a"), b("b");
  etcd.etcdctl({"put", dir + "a", a.json()});
  ambassador amb(etcd.endpoints(), "redis-A");
  REQUIRE(amb.routes_to("a"));
  etcd.kill9();
  REQUIRE(wait_until([&] { return amb.metric("amb_watch_reconnects_total") >= 1; }, 10s));
  etcd.restart();
  // Missed while disconnected, then compacted away: the watcher must re-read, not resume.
  etcd.etcdctl({"del", dir + "a"});
  etcd.etcdctl({"put", dir + "b", b.json()});
  auto out = etcd.etcdctl({"put", "/other", "x", "-w", "json"});
  auto at = out.find("\"revision\":");
  REQUIRE(at != std::string::npos);
  etcd.etcdctl({"compaction", std::to_string(std::strtoll(out.c_str() + at + 11, nullptr, 10))});
  REQUIRE(wait_until([&] { return amb.count_in_output("/services/redis-A/b added") == 1; }, 20s));
  for (int i = 0; i < 4; ++i) CHECK(who_via(amb.port()) == "b");
  CHECK(amb.metric("amb_instances") == 1);
}

TEST_CASE("3-member etcd cluster, a member killed: no failed client request, changes still arrive") {
  etcd_cluster etcd(3);
  tagged_redis a("a"), b("b");
  etcd.etcdctl({"put", dir + "a", a.json()});
  ambassador amb(etcd.endpoints(), "redis-A");
  REQUIRE(amb.routes_to("a"));
  etcd.kill9(0);  // the first endpoint: where the watch most likely is
  int failed = 0;
  for (int i = 0; i < 20; ++i) failed += who_via(amb.port()) != "a";
  CHECK(failed == 0);
  // etcdctl itself may time out while the cluster elects a new leader: retry the write.
  REQUIRE(wait_until([&] { return etcd.etcdctl_result({"put", dir + "b", b.json()}).status == 0; }, 30s, 200ms));
  REQUIRE(amb.routes_to("b", 20s));
  failed = 0;
  std::set<std::string> seen;
  for (int i = 0; i < 10; ++i) {
    auto w = who_via(amb.port());
    failed += w.empty();
    seen.insert(w);
  }
  CHECK(failed == 0);
  CHECK(seen == std::set<std::string>{"a", "b"});
}

TEST_CASE("SIGTERM: stop accepting, let an in-flight request finish, exit 0") {
  etcd_cluster etcd;
  tagged_redis a("a");
  etcd.etcdctl({"put", dir + "a", a.json()});
  ambassador amb(etcd.endpoints(), "redis-A", {"--drain-timeout", "30s"});
  // A long transfer in flight: a blocking pop that is answered only after the signal.
  blocking_conn waiting(amb.port(), {}, 20s);
  REQUIRE(waiting.send("BLPOP jobs 0\r\n"));
  blocking_conn idle_client(amb.port(), {}, 20s);
  CHECK(idle_client.who() == "a");
  REQUIRE(wait_until([&] { return amb.metric("amb_connections_active") == 2; }, 10s));
  amb.process().signal(SIGTERM);
  REQUIRE(wait_until(
      [&] {
        return amb.count_in_output("SIGTERM: no new connections; draining 2 open connections (up to 30s)\n") == 1;
      },
      10s));
  CHECK(!port_open(amb.port()));  // no longer accepting
  CHECK(amb.process().running());
  std::string big(2'000'000, 'x');
  blocking_conn direct(a.server.port());
  REQUIRE(direct.command("*3\r\n$5\r\nRPUSH\r\n$4\r\njobs\r\n$" + std::to_string(big.size()) + "\r\n" + big) ==
          ":1\r\n");
  CHECK(waiting.read_reply() == "*2\r\n");  // [key, value]
  CHECK(blocking_conn::bulk_value(waiting.read_reply()) == "jobs");
  CHECK(blocking_conn::bulk_value(waiting.read_reply()) == big);
  CHECK(idle_client.who() == "a");  // established connections keep working during the drain
  waiting.close();
  idle_client.close();
  CHECK(amb.process().wait(10s) == 0);
}

TEST_CASE("SIGTERM with a connection that never ends: exit 0 after --drain-timeout") {
  etcd_cluster etcd;
  tagged_redis a("a");
  etcd.etcdctl({"put", dir + "a", a.json()});
  ambassador amb(etcd.endpoints(), "redis-A", {"--drain-timeout", "300ms"});
  blocking_conn held(amb.port());
  CHECK(held.who() == "a");
  amb.process().signal(SIGINT);
  CHECK(amb.process().wait(10s) == 0);
  CHECK(amb.count_in_output("warning: closing 1 connection still open after the drain timeout") == 1);
}

TEST_CASE("SIGHUP re-reads the prefix") {
  etcd_cluster etcd;
  tagged_redis a("a");
  etcd.etcdctl({"put", dir + "a", a.json()});
  ambassador amb(etcd.endpoints(), "redis-A");
  REQUIRE(amb.routes_to("a"));
  amb.process().signal(SIGHUP);
  REQUIRE(wait_until([&] { return amb.count_in_output("re-read /services/redis-A/: 1 key at revision") == 1; }, 10s));
  CHECK(amb.count_in_output("instance /services/redis-A/a added") == 1);  // nothing changed, nothing logged
  CHECK(who_via(amb.port()) == "a");
}

TEST_CASE("etcd found through Docker link variables, as the seed did") {
  etcd_cluster etcd;
  tagged_redis a("a");
  etcd.etcdctl({"put", dir + "a", a.json()});
  auto port = std::to_string(etcd.client_port());
  std::vector<std::string> argv{AMB_DYNAMIC_ETCD_AMB_BIN, "--listen", "127.0.0.1:" + std::to_string(free_port()),
                                "redis-A"};
  child_process::options o;
  o.unset_env = {"ETCDCTL_ENDPOINTS"};
  o.env = {{"ETCD_PORT_" + port + "_TCP_ADDR", "127.0.0.1"}, {"ETCD_PORT_" + port + "_TCP_PORT", port}};
  auto listen = std::stoi(argv[2].substr(10));
  child_process p(argv, o);
  CHECK(wait_until([&] { return who_via(static_cast<std::uint16_t>(listen)) == "a"; }, 15s, 50ms));
  CHECK(p.output().find("(etcd at http://127.0.0.1:" + port + " (from Docker link variables") != std::string::npos);
}

}  // namespace dynamic_failover_test
