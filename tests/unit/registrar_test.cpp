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

TEST_CASE("values: health and draining fields in JSON, reserved names dropped, nothing in hostport") {
  CHECK(format_registration(value_format::json, "10.0.0.5", 80, {{"zone", "a"}}) ==
        R"({"host":"10.0.0.5","port":80,"zone":"a"})");
  CHECK(format_registration(value_format::json, "10.0.0.5", 80, {{"health", "x"}, {"draining", "no"}, {"w", "1"}},
                            {"healthy", true}) ==
        R"({"host":"10.0.0.5","port":80,"w":1,"health":"healthy","draining":true})");
  CHECK(format_registration(value_format::hostport, "10.0.0.5", 80, {}, {"healthy", true}) == "10.0.0.5:80");
  const std::string v = R"({"host":"10.0.0.5","port":80,"health":"healthy"})";
  CHECK_FALSE(is_draining_value(v));
  CHECK(draining_value(v) == R"({"host":"10.0.0.5","port":80,"health":"healthy","draining":true})");
  CHECK(draining_value(draining_value(v)) == draining_value(v));
  CHECK(is_draining_value(draining_value(v)));
  // A user's field whose text looks like the mark is escaped inside its string: not the mark.
  const auto tricky = format_registration(value_format::json, "h", 1, {{"note", R"(,"draining":true)"}});
  CHECK_FALSE(is_draining_value(tricky));
}

TEST_CASE("automatic mode with health gating: starting and unhealthy withheld, healthy marked, ignore as before") {
  auto c = container("w", "img", {{"80/tcp", {{"127.0.0.1", 1}}}}, {"SERVICE_NAME=web"});
  c.health = "starting";
  auto plan = plan_container(c, opts(), {"h", false});
  CHECK(plan.entries.empty());
  CHECK(plan.withheld == health_state::starting);
  c.health = "unhealthy";
  CHECK(plan_container(c, opts(), {"h", false}).withheld == health_state::unhealthy);
  c.health = "healthy";
  plan = plan_container(c, opts(), {"h", false});
  CHECK_FALSE(plan.withheld);
  REQUIRE(plan.entries.size() == 1);
  CHECK(plan.entries[0].value == R"({"host":"127.0.0.1","port":1,"health":"healthy"})");
  CHECK(plan_container(c, opts(), {"h", false}, true).entries[0].value ==
        R"({"host":"127.0.0.1","port":1,"health":"healthy","draining":true})");
  auto ignore = opts();
  ignore.health = health_mode::ignore;
  c.health = "unhealthy";
  plan = plan_container(c, ignore, {"h", false});
  REQUIRE(plan.entries.size() == 1);
  CHECK(plan.entries[0].value == R"({"host":"127.0.0.1","port":1})");
  c.health = "degraded";  // unknown: as without a health check
  CHECK(plan_container(c, opts(), {"h", false}).entries[0].value == R"({"host":"127.0.0.1","port":1})");
}

TEST_CASE("automatic mode with the container's own address: exposed ports at their private port; SERVICE_ADDRESS") {
  auto c = container("w", "img", {{"80/tcp", {{"127.0.0.1", 32768}}}, {"8080/tcp", {}}}, {"SERVICE_NAME=web"});
  c.networks = {{"front", "10.89.0.2"}};
  auto own = opts();
  own.address = address_mode{true, ""};
  auto plan = plan_container(c, own, {"h", false});
  REQUIRE(plan.entries.size() == 2);
  CHECK(plan.entries[0].key == "/services/web/h:w:80");
  CHECK(plan.entries[0].value == R"({"host":"10.89.0.2","port":80})");
  CHECK(plan.entries[1].value == R"({"host":"10.89.0.2","port":8080})");
  c.labels["SERVICE_ADDRESS"] = "published";  // the container says otherwise; not an extra field
  plan = plan_container(c, own, {"h", false});
  REQUIRE(plan.entries.size() == 1);
  CHECK(plan.entries[0].value == R"({"host":"127.0.0.1","port":32768})");
  c.labels["SERVICE_ADDRESS"] = "container:back";
  CHECK(plan_container(c, opts(), {"h", false}).skipped ==
        std::vector<std::string>{"container \"w\" is not on network \"back\" (it is on front)"});
  c.labels["SERVICE_ADDRESS"] = "nowhere";
  CHECK(plan_container(c, opts(), {"h", false}).skipped ==
        std::vector<std::string>{"container \"w\": SERVICE_ADDRESS: bad address mode \"nowhere\" (use published, "
                                 "container or container:NETWORK)"});
}

}  // namespace registrar_test
