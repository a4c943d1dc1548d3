// SPDX-License-Identifier: MIT
// IPv6 end to end on ::1: etcd reached at http://[::1]:PORT, dynamic-etcd-amb listening on [::1]:PORT,
// an instance registered as {"host":"::1","port":N} (and as [::1]:N) served by a redis bound to ::1
// only; simple-amb from [::1] to [::1].
#include "support/dynamic_amb.hpp"

#include <doctest/doctest.h>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace dynamic_ipv6_test {

using namespace amb::test;

TEST_CASE("IPv6 end to end: etcd, listener, instance and log lines on ::1") {
  etcd_cluster etcd(1, {}, "::1");
  REQUIRE(etcd.endpoints() == "http://[::1]:" + std::to_string(etcd.client_port()));
  tagged_redis six("six", "::1");
  REQUIRE(redis_server::ping_raw(six.server.port(), "::1"));  // started with --bind ::1: IPv6 only
  etcd.etcdctl({"put", "/services/redis-6/a", six.json()});
  REQUIRE(six.json() == R"({"host":"::1","port":)" + std::to_string(six.server.port()) + "}");

  ambassador amb(etcd.endpoints(), "redis-6", {}, {}, "::1");
  const std::string port = std::to_string(amb.port());
  CHECK(amb.count_in_output("dynamic-etcd-amb: listening on [::1]:" + port + ", forwarding to /services/redis-6/ " +
                            "(etcd at " + etcd.endpoints() + " (from --etcd), policy round-robin)\n") == 1);
  CHECK(amb.count_in_output("instance /services/redis-6/a added: [::1]:" + std::to_string(six.server.port()) + "\n") ==
        1);

  // A client on [::1] is served by the redis on ::1, and stays served.
  blocking_conn c(amb.port(), {}, 5s, "::1");
  REQUIRE(c.ok());
  CHECK(c.who() == "six");
  CHECK(c.command("PING") == "+PONG\r\n");
  CHECK(amb.metric("amb_connections_accepted_total") == 1);

  // The plain form "[::1]:N" names the same kind of instance; changes through the watch arrive.
  etcd.etcdctl({"put", "/services/redis-6/b", six.plain()});
  REQUIRE(wait_until([&] { return amb.metric("amb_instances") == 2; }, 10s));
  CHECK(amb.count_in_output("instance /services/redis-6/b added: [::1]:" + std::to_string(six.server.port()) + "\n") ==
        1);
  for (int i = 0; i < 4; ++i) CHECK(who_via(amb.port(), {}, "::1") == "six");

  // Draining over IPv6: the log line's address is bracketed as well.
  etcd.etcdctl({"put", "/services/redis-6/a", six.json(R"(,"draining":true)")});
  REQUIRE(wait_until(
      [&] {
        return amb.count_in_output("instance /services/redis-6/a ([::1]:" + std::to_string(six.server.port()) +
                                   ") draining: no new connections; 1 open connection kept\n") == 1;
      },
      10s));
  CHECK(c.who() == "six");

  // No instance left: the turned-away IPv6 client is named with brackets.
  etcd.etcdctl({"del", "--prefix", "/services/redis-6/"});
  REQUIRE(wait_until([&] { return amb.metric("amb_instances") == 0; }, 10s));
  CHECK(who_via(amb.port(), {}, "::1").empty());
  REQUIRE(wait_until(
      [&] {
        return amb.count_in_output(
                   "warning: no instance registered under /services/redis-6/; closing connection from [::1]:") == 1;
      },
      5s));
  CHECK(c.who() == "six");  // the open connection was never touched
}

TEST_CASE("simple-amb from [::1] to [::1]") {
  tagged_redis six("six", "::1");
  const auto port = free_port("::1");
  child_process amb;
  amb.start({AMB_SIMPLE_AMB_BIN, "--listen", ip_port("::1", port), six.plain()}, {});
  REQUIRE(wait_until([&] { return !amb.running() || amb.output().find("listening on") != std::string::npos; }, 10s));
  CHECK(amb.output().find("simple-amb: listening on [::1]:" + std::to_string(port) +
                          ", forwarding to [::1]:" + std::to_string(six.server.port()) + "\n") != std::string::npos);
  CHECK(who_via(port, {}, "::1") == "six");
  blocking_conn c(port, {}, 5s, "::1");
  CHECK(c.command("PING") == "+PONG\r\n");
  CHECK(c.who() == "six");
}

}  // namespace dynamic_ipv6_test
