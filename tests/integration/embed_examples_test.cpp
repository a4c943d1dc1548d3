// SPDX-License-Identifier: MIT
// The embedding examples (examples/embed/, built from the single header alone by tests/embed/) against
// real servers: the static forwarder in front of redis, the etcd-driven ambassador following a key
// put with etcdctl, the registrar publishing a podman container and revoking its lease on SIGTERM.
#include "support/docker_register_support.hpp"
#include "support/process.hpp"
#include "support/redis_server.hpp"

#include <doctest/doctest.h>

#include <csignal>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace embed_examples_test {

using namespace std::chrono_literals;
using namespace amb::test;

namespace {

std::string example(const std::string& name) { return std::string(AMB_BINARY_DIR) + "/tests/embed/embed_" + name; }

/// Waits until `port` accepts connections (the example has bound its listener).
bool listening(std::uint16_t port) {
  return wait_until([&] { return port_open(port); }, 10s);
}

}  // namespace

TEST_CASE("forward: a static forwarder in front of redis") {
  redis_server redis;
  const auto port = free_port();
  child_process fwd({example("forward"), "127.0.0.1:" + std::to_string(port), redis.address()});
  REQUIRE_MESSAGE(listening(port), fwd.output());
  CHECK(redis_cli(port, {"SET", "embed:greeting", "hello"}).output == "OK\n");
  CHECK(redis_cli(redis.port(), {"GET", "embed:greeting"}).output == "hello\n");
  CHECK(fwd.running());
}

TEST_CASE("forward: a bad address is one line and exit 2") {
  auto r = run({example("forward"), "127.0.0.1:70000", "127.0.0.1:1"});
  CHECK(r.status == 2);
  CHECK(r.output == "usage: forward LISTEN_HOST:PORT TARGET_HOST:PORT (bad port \"70000\" in \"127.0.0.1:70000\")\n");
}

TEST_CASE("etcd_ambassador: forwards to the instance registered in etcd, and follows it") {
  etcd_cluster etcd;
  redis_server redis;
  const auto port = free_port();
  child_process amb({example("etcd_ambassador"), etcd.url(), "redis-A", "127.0.0.1:" + std::to_string(port)});
  REQUIRE_MESSAGE(listening(port), amb.output());
  etcd.etcdctl(
      {"put", "/services/redis-A/r1", "{\"host\":\"127.0.0.1\",\"port\":" + std::to_string(redis.port()) + "}"});
  CHECK_MESSAGE(wait_until([&] { return redis_cli(port, {"PING"}).output == "PONG\n"; }, 10s), amb.output());
  CHECK(amb.output().find("amb: instance /services/redis-A/r1 added: " + redis.address() + "\n") != std::string::npos);
  etcd.etcdctl({"del", "/services/redis-A/r1"});
  CHECK(
      wait_until([&] { return amb.output().find("instance /services/redis-A/r1 removed") != std::string::npos; }, 10s));
  CHECK(redis_cli(port, {"PING"}).output != "PONG\n");  // no instance: the client is closed
}

TEST_CASE("registrar: a container's published port in etcd while it runs; SIGTERM revokes the lease") {
  podman_service podman;
  etcd_cluster etcd;
  const auto name = podman.unique_name("embed");
  podman.run_container(name, {"-p", "127.0.0.1::80"}, {"httpd", "-f", "-p", "80"});
  const auto port = podman.published_port(name, 80);
  REQUIRE(port != 0);
  const std::string key = "/services/web/" + name;
  const std::string value = "{\"host\":\"127.0.0.1\",\"port\":" + std::to_string(port) + "}";
  child_process reg({example("registrar"), etcd.url(), podman.url(), name, "80", "web"});
  CHECK_MESSAGE(wait_until([&] { return etcd_value(etcd, key) == value; }, 10s), reg.output());
  CHECK(
      wait_until([&] { return reg.output().find("amb: registered " + key + " = " + value) != std::string::npos; }, 5s));
  reg.signal(SIGTERM);
  CHECK(reg.wait(10s) == 0);
  CHECK(etcd_value(etcd, key).empty());
  CHECK(reg.output().find("amb: lease revoked; registrations removed\n") != std::string::npos);
}

}  // namespace embed_examples_test
