// SPDX-License-Identifier: MIT
// dynamic-etcd-amb against real etcd and redis: an instance whose value says "draining" keeps its open
// connections and gets no new ones; a deleted key keeps its open connections; every instance draining
// still serves.
#include "support/dynamic_amb.hpp"

#include <doctest/doctest.h>

#include <set>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace dynamic_draining_test {

using namespace amb::test;

namespace {
const std::string dir = "/services/redis-D/";

/// The names that answered n fresh connections through the ambassador.
std::multiset<std::string> answers(const ambassador& amb, int n) {
  std::multiset<std::string> seen;
  for (int i = 0; i < n; ++i) seen.insert(who_via(amb.port()));
  return seen;
}
}  // namespace

TEST_CASE("draining: open connections kept, new ones elsewhere; key deleted: still served; all draining: served") {
  etcd_cluster etcd;
  tagged_redis a("a"), b("b");
  etcd.etcdctl({"put", dir + "a", a.json()});
  etcd.etcdctl({"put", dir + "b", b.json()});
  ambassador amb(etcd.endpoints(), "redis-D");
  const std::string a_line = "instance /services/redis-D/a (127.0.0.1:" + std::to_string(a.server.port()) + ")";
  const std::string b_line = "instance /services/redis-D/b (127.0.0.1:" + std::to_string(b.server.port()) + ")";

  // A long-lived connection on a (round-robin's first turn is the first key).
  blocking_conn held(amb.port());
  REQUIRE(held.who() == "a");
  REQUIRE(held.command("SET only_on_this_connection_s_server 1") == "+OK\r\n");

  etcd.etcdctl({"put", dir + "a", a.json(R"(,"draining":true)")});
  REQUIRE(wait_until([&] { return amb.count_in_output(a_line + " draining:") == 1; }, 10s));
  CHECK(amb.count_in_output(a_line + " draining: no new connections; 1 open connection kept\n") == 1);
  CHECK(amb.metric("amb_instances_draining") == 1);
  CHECK(amb.metric("amb_instances") == 2);

  // The open connection still works, on a; every new one goes to b.
  CHECK(held.command("PING") == "+PONG\r\n");
  CHECK(held.who() == "a");
  CHECK(answers(amb, 10) == std::multiset<std::string>{"b", "b", "b", "b", "b", "b", "b", "b", "b", "b"});
  CHECK(held.command("GET only_on_this_connection_s_server") == "$1\r\n1\r\n");

  // A heartbeat of the same draining value logs nothing more.
  etcd.etcdctl({"put", dir + "a", a.json(R"(,"draining":true)")});
  etcd.etcdctl({"put", dir + "zz-marker", "127.0.0.1:1"});
  REQUIRE(wait_until([&] { return amb.count_in_output("zz-marker added") == 1; }, 10s));
  etcd.etcdctl({"del", dir + "zz-marker"});
  CHECK(amb.count_in_output(a_line + " draining") == 1);

  // The key goes (the container stopped): the instance is removed, but a connection already open on it
  // is never cut by a change of the set; it ends when the client or the server closes it.
  etcd.etcdctl({"del", dir + "a"});
  REQUIRE(wait_until([&] { return amb.metric("amb_instances") == 1; }, 10s));
  CHECK(amb.count_in_output("instance /services/redis-D/a removed (was 127.0.0.1:" + std::to_string(a.server.port()) +
                            ")\n") == 1);
  CHECK(amb.metric("amb_instances_draining") == 0);
  CHECK(held.command("PING") == "+PONG\r\n");
  CHECK(held.who() == "a");
  CHECK(answers(amb, 4) == std::multiset<std::string>{"b", "b", "b", "b"});

  // Every instance draining (b by weight 0, a back as draining): new connections still go to them,
  // rather than nowhere; one warning says so.
  etcd.etcdctl({"put", dir + "b", b.json(R"(,"weight":0)")});
  REQUIRE(wait_until([&] { return amb.count_in_output(b_line + " draining:") == 1; }, 10s));
  // The warning is the line after b's; the test reads the program's output as it comes, so wait for
  // it too (a CI run under ASan checked between the two lines).
  const std::string all_draining =
      "every instance of /services/redis-D/ is draining (1 instance): new connections still go to them, as no "
      "other instance can take them\n";
  CHECK(wait_until([&] { return amb.count_in_output(all_draining) >= 1; }, 10s));
  CHECK(amb.count_in_output(all_draining) == 1);
  CHECK(answers(amb, 3) == std::multiset<std::string>{"b", "b", "b"});
  etcd.etcdctl({"put", dir + "a", a.json(R"(,"draining":true)")});
  REQUIRE(wait_until([&] { return amb.metric("amb_instances_draining") == 2; }, 10s));
  CHECK(amb.count_in_output("instance /services/redis-D/a added: 127.0.0.1:" + std::to_string(a.server.port()) +
                            " (draining: no new connections)\n") == 1);
  CHECK(answers(amb, 6) == std::multiset<std::string>{"a", "a", "a", "b", "b", "b"});  // round-robin over both

  // b stops draining: it takes every new connection again; a still gets none.
  etcd.etcdctl({"put", dir + "b", b.json()});
  REQUIRE(wait_until([&] { return amb.count_in_output(b_line + " no longer draining") == 1; }, 10s));
  CHECK(amb.count_in_output(b_line + " no longer draining: takes new connections\n") == 1);
  CHECK(amb.count_in_output("an instance of /services/redis-D/ takes new connections again: draining instances "
                            "get none\n") == 1);
  CHECK(answers(amb, 6) == std::multiset<std::string>{"b", "b", "b", "b", "b", "b"});
  CHECK(held.who() == "a");

  // A bad "draining" is a bad value: skipped with one warning naming the key (the key's instance goes).
  etcd.etcdctl({"put", dir + "a", a.json(R"(,"draining":"yes")")});
  REQUIRE(wait_until([&] { return amb.count_in_output("skipping /services/redis-D/a") == 1; }, 10s));
  CHECK(amb.count_in_output("bad draining \"yes\" (expected true or false, without quotes)\n") == 1);
  CHECK(amb.process().running());
  CHECK(answers(amb, 3) == std::multiset<std::string>{"b", "b", "b"});
}

TEST_CASE("draining with --threads 2 and least-conn: no new connection on it from either loop") {
  etcd_cluster etcd;
  tagged_redis a("a"), b("b");
  etcd.etcdctl({"put", dir + "a", a.json(R"(,"draining":true)")});
  etcd.etcdctl({"put", dir + "b", b.json()});
  ambassador amb(etcd.endpoints(), "redis-D", {"--threads", "2", "--policy", "least-conn"});
  CHECK(amb.count_in_output("instance /services/redis-D/a added: 127.0.0.1:" + std::to_string(a.server.port()) +
                            " (draining: no new connections)\n") == 1);
  // Long-lived connections pile up on b, yet least-conn never sends one to the idle, draining a.
  std::vector<blocking_conn> open;
  for (int i = 0; i < 8; ++i) {
    open.emplace_back(amb.port());
    CHECK(open.back().who() == "b");
  }
  // Undraining reaches both loops: a takes connections again (it has none, b has 8).
  etcd.etcdctl({"put", dir + "a", a.json()});
  REQUIRE(wait_until([&] { return amb.metric("amb_instances_draining") == 0; }, 10s));
  // With several loops the logging loop sees only its own connections: the line leaves the count out.
  CHECK(amb.count_in_output("instance /services/redis-D/a (127.0.0.1:" + std::to_string(a.server.port()) +
                            ") no longer draining: takes new connections\n") == 1);
  std::set<std::string> seen;
  for (int i = 0; i < 6; ++i) {
    open.emplace_back(amb.port());
    seen.insert(open.back().who());
  }
  CHECK(seen.count("a") == 1);
  etcd.etcdctl({"put", dir + "a", a.json(R"(,"draining":true)")});
  REQUIRE(wait_until(
      [&] { return amb.count_in_output(") draining: no new connections; open connections kept\n") == 1; }, 10s));
}

}  // namespace dynamic_draining_test
