// SPDX-License-Identifier: MIT
// Automatic mode's naming rules and the choice of binding, on containers parsed from inspect replies.
#include <amb/registrar.hpp>

#include <doctest/doctest.h>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace registrar_test {

using namespace amb;

namespace {

container_info container(std::string name, std::string image, std::map<std::string, std::vector<port_binding>> ports,
                         std::vector<std::string> env = {}, std::map<std::string, std::string> labels = {}) {
  container_info c;
  c.id = name + "-id";
  c.name = std::move(name);
  c.image = std::move(image);
  c.running = true;
  c.ports = std::move(ports);
  c.env = std::move(env);
  c.labels = std::move(labels);
  return c;
}

registrar_options opts() {
  registrar_options o;
  o.host_ip = host_ip_policy{"10.0.0.5", "--ip"};
  return o;
}

}  // namespace

TEST_CASE("image base names") {
  CHECK(image_base_name("redis") == "redis");
  CHECK(image_base_name("redis:7") == "redis");
  CHECK(image_base_name("localhost/amb-test-busybox:latest") == "amb-test-busybox");
  CHECK(image_base_name("registry:5000/team/web@sha256:abc") == "web");
}

TEST_CASE("binding choice: a specific IPv4 first, then any") {
  CHECK(pick_binding({{"::", 1}, {"0.0.0.0", 2}}) == port_binding{"::", 1});
  CHECK(pick_binding({{"::", 1}, {"127.0.0.1", 2}}) == port_binding{"127.0.0.1", 2});
  CHECK(pick_binding({{"::1", 3}}) == port_binding{"::1", 3});
}

TEST_CASE("automatic mode: default name, -port when several, instance id, host IP for any") {
  auto c = container(
      "web1", "localhost/nginx:1",
      {{"80/tcp", {{"", 32768}}}, {"443/tcp", {{"127.0.0.1", 32769}}}, {"53/udp", {{"", 53}}}, {"9000/tcp", {}}});
  auto plan = plan_container(c, opts(), auto_config{"h", false});
  REQUIRE(plan.entries.size() == 2);
  CHECK(plan.entries[0].key == "/services/nginx-80/h:web1:80");
  CHECK(plan.entries[0].value == R"({"host":"10.0.0.5","port":32768})");
  CHECK(plan.entries[1].key == "/services/nginx-443/h:web1:443");
  CHECK(plan.entries[1].value == R"({"host":"127.0.0.1","port":32769})");
  CHECK(plan.notes == std::vector<std::string>{"container \"web1\" port 443 is published on 127.0.0.1: registered, but "
                                               "only ambassadors on this host can reach it"});
  auto one = plan_container(container("w", "redis", {{"6379/tcp", {{"0.0.0.0", 49155}, {"::", 49155}}}}), opts(),
                            {"h", false});
  REQUIRE(one.entries.size() == 1);
  CHECK(one.entries[0].key == "/services/redis/h:w:6379");
}

TEST_CASE("automatic mode: SERVICE_ metadata, labels over env, port-specific over general") {
  auto c = container("w", "img", {{"80/tcp", {{"127.0.0.1", 1}}}, {"81/tcp", {{"127.0.0.1", 2}}}},
                     {"SERVICE_NAME=from-env", "SERVICE_81_NAME=admin", "SERVICE_WEIGHT=5", "SERVICE_80_ZONE=a b"},
                     {{"SERVICE_NAME", "from-label"}});
  auto plan = plan_container(c, opts(), {"h", false});
  REQUIRE(plan.entries.size() == 2);
  CHECK(plan.entries[0].key == "/services/from-label/h:w:80");  // SERVICE_NAME wins without -port (registrator)
  CHECK(plan.entries[0].value == R"({"host":"127.0.0.1","port":1,"weight":5,"zone":"a b"})");
  CHECK(plan.entries[1].key == "/services/admin/h:w:81");
  CHECK(plan.entries[1].value == R"({"host":"127.0.0.1","port":2,"weight":5})");
}

TEST_CASE("automatic mode: ignore, explicit, not running, no host IP") {
  auto ignored = container("w", "img", {{"80/tcp", {{"127.0.0.1", 1}}}}, {"SERVICE_IGNORE=true"});
  auto plan = plan_container(ignored, opts(), {"h", false});
  CHECK(plan.entries.empty());
  CHECK(plan.skipped == std::vector<std::string>{"container \"w\" port 80: SERVICE_IGNORE is set"});
  auto port_ignored =
      container("w", "img", {{"80/tcp", {{"127.0.0.1", 1}}}, {"81/tcp", {{"127.0.0.1", 2}}}}, {"SERVICE_81_IGNORE=1"});
  CHECK(plan_container(port_ignored, opts(), {"h", false}).entries.size() == 1);
  auto anon = container("w", "img", {{"80/tcp", {{"127.0.0.1", 1}}}});
  CHECK(plan_container(anon, opts(), {"h", true}).skipped ==
        std::vector<std::string>{"container \"w\" port 80: no SERVICE_NAME (--explicit)"});
  anon.running = false;
  CHECK(plan_container(anon, opts(), {"h", false}).skipped ==
        std::vector<std::string>{"container \"w\" is not running"});
  auto any = container("w", "img", {{"80/tcp", {{"", 1}}}});
  registrar_options none = opts();
  none.host_ip = host_ip_policy{"", "none: no --ip, no HOST_IP, no default route"};
  CHECK(plan_container(any, none, {"h", false}).skipped ==
        std::vector<std::string>{"container \"w\" port 80: published on all interfaces and no host IP is known "
                                 "(none: no --ip, no HOST_IP, no default route): give --ip ADDR or HOST_IP"});
  none.format = value_format::hostport;
  CHECK(plan_container(container("w", "img", {{"80/tcp", {{"::1", 7}}}}), none, {"h", false}).entries[0].value ==
        "[::1]:7");
}

}  // namespace registrar_test
