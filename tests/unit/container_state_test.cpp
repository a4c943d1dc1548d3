// SPDX-License-Identifier: MIT
// Health, stop announcements and address modes, read from inspect replies and events as podman 4.3.1
// sends them (docs/protocols.md §2.4, §2.5).
#include <amb/container_state.hpp>

#include <doctest/doctest.h>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace container_state_test {

using namespace amb;

namespace {

// The parts of podman's inspect reply these rules read (captured, trimmed).
const char* inspect_reply = R"({"Id":"ec4565ba","Name":"/web1",
 "State":{"Status":"running","Running":true,"StartedAt":"2026-12-02T05:51:03.493190149Z",
          "Health":{"Status":"starting","FailingStreak":0,"Log":null}},
 "Config":{"Image":"localhost/amb-test-busybox:latest","Env":["SERVICE_ADDRESS=container:front"],
           "Labels":{},"ExposedPorts":{"8080/tcp":{}},"StopSignal":"15","StopTimeout":7},
 "NetworkSettings":{"IPAddress":"","Ports":{"80/tcp":[{"HostIp":"127.0.0.1","HostPort":"44641"}]},
   "Networks":{"front":{"IPAddress":"10.89.0.2","IPPrefixLen":24},"back":{"IPAddress":"10.90.0.7"}}}})";

container_info parsed_inspect() {
  auto c = detail::parse_container_inspect(inspect_reply);
  REQUIRE(c);
  return *c;
}

docker_event event(std::string action, std::map<std::string, std::string> attributes = {}) {
  docker_event ev;
  ev.type = "container";
  ev.action = std::move(action);
  ev.id = "ec4565ba";
  ev.attributes = std::move(attributes);
  return ev;
}

}  // namespace

TEST_CASE("inspect: health, start time, networks, exposed ports") {
  const auto c = parsed_inspect();
  CHECK(c.health == "starting");
  CHECK(c.started_at == "2026-12-02T05:51:03.493190149Z");
  CHECK(c.networks == std::map<std::string, std::string>{{"back", "10.90.0.7"}, {"front", "10.89.0.2"}});
  CHECK(c.bindings(80) == std::vector<port_binding>{{"127.0.0.1", 44641}});
  REQUIRE(c.ports.count("8080/tcp") == 1);  // exposed only: listed, no binding
  CHECK(c.ports.at("8080/tcp").empty());
  CHECK(c.stop_timeout == 7);
}

TEST_CASE("a draining mark holds for the stop timeout and 5s more (10s when the engine does not say)") {
  auto c = parsed_inspect();
  CHECK(drain_limit(c) == std::chrono::seconds(12));
  c.stop_timeout = -1;  // Docker leaves Config.StopTimeout out unless it was set
  CHECK(drain_limit(c) == std::chrono::seconds(15));
  c.stop_timeout = 0;
  CHECK(drain_limit(c) == std::chrono::seconds(5));
}

TEST_CASE("health statuses: the four known, anything else unknown") {
  CHECK(read_health("") == health_state::none);
  CHECK(read_health("none") == health_state::none);
  CHECK(read_health("starting") == health_state::starting);
  CHECK(read_health("healthy") == health_state::healthy);
  CHECK(read_health("unhealthy") == health_state::unhealthy);
  CHECK(read_health("Healthy") == health_state::unknown);
  CHECK(read_health("degraded") == health_state::unknown);
  CHECK(*parse_health_mode("gate") == health_mode::gate);
  CHECK(*parse_health_mode("ignore") == health_mode::ignore);
  CHECK(parse_health_mode("on").error == "bad health mode \"on\" (use gate or ignore)");
}

TEST_CASE("address modes: flag, SERVICE_ADDRESS label over env, bad values named") {
  CHECK(*parse_address_mode("published") == address_mode{});
  CHECK(*parse_address_mode("container") == address_mode{true, ""});
  CHECK(*parse_address_mode("container:front") == address_mode{true, "front"});
  CHECK(parse_address_mode("container:").error ==
        "bad address mode \"container:\" (use published, container or container:NETWORK)");
  CHECK(!parse_address_mode("host"));
  auto c = parsed_inspect();
  CHECK(*container_address_mode(c, address_mode{}) == address_mode{true, "front"});  // env overrides the flag
  c.labels["SERVICE_ADDRESS"] = "published";
  CHECK(*container_address_mode(c, address_mode{true, ""}) == address_mode{});  // label over env
  c.labels["SERVICE_ADDRESS"] = "bridge\n";
  CHECK(container_address_mode(c, address_mode{}).error ==
        "container \"web1\": SERVICE_ADDRESS: bad address mode \"bridge\\n\" (use published, container or "
        "container:NETWORK)");
  c.labels.clear();
  c.env.clear();
  CHECK(*container_address_mode(c, address_mode{true, "back"}) == address_mode{true, "back"});
}

TEST_CASE("the container's own address: named network, only network, several, none") {
  auto c = parsed_inspect();
  CHECK(*container_ip(c, "front") == "10.89.0.2");
  CHECK(*container_ip(c, "back") == "10.90.0.7");
  CHECK(container_ip(c, "other").error == "container \"web1\" is not on network \"other\" (it is on back, front)");
  CHECK(container_ip(c, "").error ==
        "container \"web1\" is on several networks (back, front): name one with --address container:NETWORK");
  c.networks = {{"front", "10.89.0.2"}};
  CHECK(*container_ip(c, "") == "10.89.0.2");
  c.networks = {{"host", ""}};
  CHECK(container_ip(c, "").error ==
        "container \"web1\" has no address of its own on a container network (it is on host)");
  CHECK(container_ip(c, "host").error == "container \"web1\" has no address of its own on network \"host\"");
  c.networks.clear();
  CHECK(container_ip(c, "").error == "container \"web1\" has no address of its own on a container network");
}

TEST_CASE("stop announcements: stop, kill without a signal (podman), kill with a stopping signal (Docker)") {
  CHECK(is_stop_announcement(event("stop")));
  CHECK(is_stop_announcement(event("kill")));
  CHECK(is_stop_announcement(event("kill", {{"signal", "15"}})));
  CHECK(is_stop_announcement(event("kill", {{"signal", "SIGKILL"}})));
  CHECK(is_stop_announcement(event("kill", {{"signal", "TERM"}})));
  CHECK_FALSE(is_stop_announcement(event("kill", {{"signal", "1"}})));  // HUP: reload, not stop
  CHECK_FALSE(is_stop_announcement(event("kill", {{"signal", "SIGUSR1"}})));
  CHECK_FALSE(is_stop_announcement(event("die")));
  CHECK_FALSE(is_stop_announcement(event("health_status")));
  auto image = event("stop");
  image.type = "image";
  CHECK_FALSE(is_stop_announcement(image));
}

TEST_CASE("known container actions: both engines' names; anything else is unknown") {
  for (const char* a : {"create", "init", "start", "kill", "stop", "die", "cleanup", "remove", "destroy",
                        "health_status", "health_status: healthy", "exec_died", "exec_start: sh", "pause"})
    CHECK_MESSAGE(is_known_container_action(a), a);
  CHECK_FALSE(is_known_container_action("frobnicate"));
  CHECK_FALSE(is_known_container_action(""));
  CHECK_FALSE(is_known_container_action("Start"));
}

TEST_CASE("say_once: once per name, and at most `limit` names remembered") {
  detail::say_once once(2);
  CHECK(once.first("a"));
  CHECK_FALSE(once.first("a"));
  CHECK(once.first("b"));
  CHECK_FALSE(once.first("c"));  // full: silence rather than memory
  CHECK_FALSE(once.first("b"));
}

}  // namespace container_state_test
