// SPDX-License-Identifier: MIT
// docker-register says only what happened: "registered" once the key is in etcd, one line while it
// waits for etcd, and at exit whether a lease was revoked. Real etcd (stopped and started), podman.
#include "support/docker_register_support.hpp"

#include <doctest/doctest.h>

#include <csignal>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace docker_register_log_test {

using namespace std::chrono_literals;
using namespace amb::test;

namespace {

podman_service& podman() {
  static podman_service p;
  return p;
}

std::string web(const std::string& stem) {
  auto name = podman().unique_name(stem);
  podman().run_container(name, {"-p", "127.0.0.1::80"}, {"httpd", "-f", "-p", "80"});
  return name;
}

}  // namespace

TEST_CASE("etcd unreachable: one line waiting for etcd, no 'registered', and at exit no lease to revoke") {
  etcd_cluster etcd;
  etcd.terminate();  // its URL now refuses connections
  const auto name = web("noetcd");
  const std::string key = "/services/web/" + name;
  auto reg = start_docker_register(etcd, podman().url(), {"--ttl", "2s", name, "80", "web"});
  const std::string waiting = "docker-register: waiting for etcd at " + etcd.url() + " to register " + key + "\n";
  CHECK_MESSAGE(wait_until([&] { return reg.output().find(waiting) != std::string::npos; }, 10s), reg.output());
  std::this_thread::sleep_for(1500ms);
  reg.signal(SIGTERM);
  CHECK(reg.wait(10s) == 0);
  const auto log = reg.output();
  INFO(log);
  CHECK(count_lines_with(log, waiting.substr(0, waiting.size() - 1)) == 1);
  CHECK(count_lines_with(log, "registered " + key) == 0);
  CHECK(count_lines_with(log, "lease revoked") == 0);
  CHECK(log.find("docker-register: no etcd lease held; nothing registered to remove\n") != std::string::npos);
}

TEST_CASE("etcd back: 'registered' only once the key is in etcd; at exit the lease is revoked") {
  etcd_cluster etcd;
  etcd.terminate();
  const auto name = web("lateetcd");
  const std::string key = "/services/web/" + name;
  const std::string value =
      "{\"host\":\"127.0.0.1\",\"port\":" + std::to_string(podman().published_port(name, 80)) + "}";
  auto reg = start_docker_register(etcd, podman().url(), {"--ttl", "2s", name, "80", "web"});
  REQUIRE_MESSAGE(wait_until([&] { return reg.output().find("waiting for etcd at ") != std::string::npos; }, 10s),
                  reg.output());
  CHECK(count_lines_with(reg.output(), "registered " + key) == 0);
  etcd.restart();
  const std::string registered = "docker-register: registered " + key + " = " + value +
                                 " (a loopback address: only ambassadors on this host can reach it)\n";
  REQUIRE_MESSAGE(wait_until([&] { return reg.output().find(registered) != std::string::npos; }, 15s), reg.output());
  CHECK(etcd_value(etcd, key) == value);  // said only once it was true
  reg.signal(SIGTERM);
  CHECK(reg.wait(10s) == 0);
  CHECK(etcd_value(etcd, key).empty());
  CHECK(count_lines_with(reg.output(), registered.substr(0, registered.size() - 1)) == 1);
  CHECK(reg.output().find("docker-register: lease revoked; registrations removed\n") != std::string::npos);
}

}  // namespace docker_register_log_test
