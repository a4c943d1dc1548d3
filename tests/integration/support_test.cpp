// SPDX-License-Identifier: MIT
// The test harness itself: real etcd and redis start on free ports and stop by PID.
#include "support/etcd_server.hpp"
#include "support/redis_server.hpp"

#include <doctest/doctest.h>
#include "support/podman_service.hpp"

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace support_test {

TEST_CASE("etcd starts, answers etcdctl, and is gone after kill9") {
  amb::test::etcd_cluster etcd;
  etcd.etcdctl({"put", "/amb/harness", "ok"});
  CHECK(etcd.etcdctl({"get", "--print-value-only", "/amb/harness"}) == "ok\n");
  etcd.kill9();
  CHECK(!amb::test::port_open(etcd.client_port()));
  etcd.restart();
  CHECK(etcd.etcdctl({"get", "--print-value-only", "/amb/harness"}) == "ok\n");
}

TEST_CASE("redis starts and answers PING") {
  amb::test::redis_server redis;
  auto r = amb::test::redis_cli(redis.port(), {"PING"});
  CHECK(r.status == 0);
  CHECK(r.output == "PONG\n");
}

TEST_CASE("podman serves the Docker API on its socket and runs a published container") {
  amb::test::podman_service podman;
  CHECK(amb::test::unix_exchange(podman.socket_path(), "GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n").find("\r\n\r\nOK") !=
        std::string::npos);
  auto name = podman.unique_name("web");
  podman.run_container(name, {"-p", "127.0.0.1::80"}, {"httpd", "-f", "-p", "80"});
  auto port = podman.published_port(name, 80);
  REQUIRE(port != 0);
  CHECK(amb::test::wait_until([&] { return amb::test::port_open(port); }, std::chrono::seconds(10)));
  podman.restart();
  CHECK(podman.podman_ok({"inspect", "-f", "{{.State.Running}}", name}) == "true");

  // A container left by a test process that is gone (killed before its destructors ran) is removed;
  // this process's own container stays.
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  REQUIRE(dead > 0);
  ::waitpid(dead, nullptr, 0);
  const auto left = "amb-test-" + std::to_string(dead) + "-left-behind";
  podman.run_container(left, {"-p", "127.0.0.1::80"}, {"sleep", "60"});
  CHECK(podman.remove_containers_of_gone_tests() >= 1);
  CHECK(podman.podman({"container", "exists", left}).status == 1);
  CHECK(podman.podman({"container", "exists", name}).status == 0);
}

TEST_CASE("test servers listen below the ephemeral range, where podman publishes no port") {
  std::uint16_t port = 0;
  const int fd = amb::test::listen_test_port(port);
  CHECK(port >= amb::test::test_port_low);
  CHECK(port <= amb::test::test_port_high);
  CHECK(amb::test::port_open(port));
  ::close(fd);
  const auto other = amb::test::free_port();
  CHECK(other >= amb::test::test_port_low);
  CHECK(other <= amb::test::test_port_high);
}

namespace {
/// claim_test_port(port) in a child process: its answer (the child ends at once, and its claims with it).
bool child_claims(std::uint16_t port) {
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) ::_exit(amb::test::claim_test_port(port) ? 0 : 1);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  return WEXITSTATUS(status) == 0;
}
}  // namespace

TEST_CASE("a port a test process drew is not drawn by another until that process ends") {
  // free_port's port is bound by its server later: until then no other test process may draw it.
  const auto port = amb::test::free_port();
  CHECK_FALSE(child_claims(port));
  CHECK_FALSE(amb::test::claim_test_port(port));  // nor this process again
  // A claim ends with its process, however it ends: a port one child claimed, the next child claims.
  std::uint16_t other = 0;
  for (int p = amb::test::test_port_low; p <= amb::test::test_port_high && other == 0; ++p)
    if (p != port && child_claims(static_cast<std::uint16_t>(p))) other = static_cast<std::uint16_t>(p);
  REQUIRE(other != 0);
  CHECK(child_claims(other));
}

}  // namespace support_test
