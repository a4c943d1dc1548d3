// SPDX-License-Identifier: MIT
// Docker Engine API JSON parsers, fed with real replies captured from podman 4.3.1 (docs/protocols.md part 2)
// and Docker's documented shapes.
#include <amb/detail/docker_json.hpp>
#include <amb/docker_client.hpp>

#include <doctest/doctest.h>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace docker_json_test {

using namespace amb;

TEST_CASE("version reply from podman and negotiation") {
  auto v = detail::parse_engine_version(
      R"({"Platform":{"Name":"linux/amd64/debian-12"},"Components":[],"Version":"4.3.1","ApiVersion":"1.41","MinAPIVersion":"1.24","GitCommit":"","GoVersion":"go1.19.8","Os":"linux","Arch":"amd64","KernelVersion":"6.1","BuildTime":"2023-01-01T00:00:00Z"})");
  REQUIRE(v);
  CHECK(v->api_version == "1.41");
  CHECK(v->min_api_version == "1.24");
  CHECK(v->version == "4.3.1");
  CHECK(detail::negotiate_api_version("1.52", *v) == "1.41");
  // Docker 29: newer than us, minimum 1.44.
  CHECK(detail::negotiate_api_version("1.52", engine_version{"29.0.0", "1.53", "1.44"}) == "1.52");
  CHECK(detail::negotiate_api_version("1.52", engine_version{"29.0.0", "1.52", "1.44"}) == "1.52");
  // Our maximum below the engine's minimum: the minimum wins (the engine refuses anything lower).
  CHECK(detail::negotiate_api_version("1.40", engine_version{"29.0.0", "1.52", "1.44"}) == "1.44");
  // 1.9 < 1.41 numerically, not as text.
  CHECK(detail::negotiate_api_version("1.52", engine_version{"x", "1.9", ""}) == "1.9");
  CHECK(detail::negotiate_api_version("1.52", engine_version{"x", "garbage", ""}) == "");
}

TEST_CASE("API versions and JSON bodies are parse results, as every text parser (README, Errors)") {
  auto v = detail::parse_api_version("1.41");
  REQUIRE(v);
  CHECK(*v == std::pair<int, int>{1, 41});
  for (const char* bad : {"", "1", "1.", ".1", "1.x", "-1.2", "1.2.3"}) {
    auto r = detail::parse_api_version(bad);
    CHECK_MESSAGE(!r, bad);
    CHECK(r.error == "bad API version " + log::quoted(bad) + ": expected MAJOR.MINOR, as 1.41");
  }
  auto json = detail::parse_json_body(R"({"a":1})");
  REQUIRE(json);
  CHECK(json->is<picojson::object>());
  auto not_json = detail::parse_json_body("<html>");
  CHECK(!not_json);
  CHECK(not_json.error.rfind("not JSON (", 0) == 0);
  CHECK(not_json.error.find("): \"<html>\"") != std::string::npos);
}

TEST_CASE("version reply that is not the engine's") {
  auto html = detail::parse_engine_version("<html>hello</html>");
  CHECK(!html);
  CHECK(html.error.rfind("not JSON (", 0) == 0);
  CHECK(html.error.find("\"<html>hello</html>\"") != std::string::npos);
  auto other = detail::parse_engine_version(R"({"hello":1})");
  CHECK(other.error == R"(no "ApiVersion" in /version reply: "{"hello":1}")");
}

TEST_CASE("error bodies: podman and Docker, message only") {
  CHECK(
      detail::docker_error_message(
          R"({"cause":"no such container","message":"no container with name or ID \"nosuch\" found: no such container","response":404})") ==
      "no container with name or ID \"nosuch\" found: no such container");
  CHECK(detail::docker_error_message(R"({"message":"No such container: nosuch"})") == "No such container: nosuch");
  CHECK(detail::docker_error_message("garbage") == "");
  CHECK(detail::is_api_version_refusal("client version 1.41 is too old. Minimum supported API version is 1.44"));
  CHECK(detail::is_api_version_refusal("client version 1.52 is too new. Maximum supported API version is 1.40"));
  CHECK(!detail::is_api_version_refusal("No such container: x"));
}

TEST_CASE("inspect reply from podman: state, name, labels, env, ports with null") {
  const char* body = R"({"Id":"f8027f19fa3b0000","Name":"/rsq-web1","Image":"sha256:abc",
   "State":{"Status":"running","Running":true,"Paused":false,"Restarting":false,"OOMKilled":false,"Dead":false,"Pid":25148,"ExitCode":0,"Error":"","StartedAt":"2026-11-24T21:13:32.232038649Z","FinishedAt":"0001-01-01T00:00:00Z","Health":{"Status":"healthy","FailingStreak":0,"Log":null}},
   "Config":{"Image":"localhost/bb:latest","Env":["container=podman","FOO=bar","EMPTY=","PATH=/bin","TERM=xterm","HOSTNAME=f8027f19fa3b"],"Labels":{"amb.note":"hello world","svc":"redis"},"ExposedPorts":{"80/tcp":{}}},
   "NetworkSettings":{"Ports":{"6379/tcp":null,"80/tcp":[{"HostIp":"","HostPort":"36189"}],"81/udp":[{"HostIp":"127.0.0.1","HostPort":"18181"}]},"IPAddress":"10.88.0.10","Gateway":"10.88.0.1"},
   "HostConfig":{"PortBindings":{"80/tcp":[{"HostIp":"127.0.0.1","HostPort":"1"}]},"NetworkMode":"bridge"}})";
  auto c = detail::parse_container_inspect(body);
  REQUIRE(c);
  CHECK(c->id == "f8027f19fa3b0000");
  CHECK(c->name == "rsq-web1");
  CHECK(c->image == "localhost/bb:latest");
  CHECK(c->running);
  CHECK(c->status == "running");
  CHECK(c->health == "healthy");
  CHECK(c->labels.at("amb.note") == "hello world");
  CHECK(c->labels.at("svc") == "redis");
  CHECK(c->env_value("FOO") == "bar");
  CHECK(c->env_value("EMPTY") == "");
  CHECK(!c->env_value("FO"));
  CHECK(c->ports.count("6379/tcp") == 1);
  CHECK(c->bindings(6379).empty());
  REQUIRE(c->bindings(80).size() == 1);
  CHECK(c->bindings(80)[0] == port_binding{"", 36189});  // NetworkSettings, not PortBindings
  CHECK(c->bindings(81).empty());
  CHECK(c->bindings(81, "udp") == std::vector<port_binding>{{"127.0.0.1", 18181}});
}

TEST_CASE("inspect reply from Docker: 0.0.0.0 and :: entries; stopped container") {
  auto c = detail::parse_container_inspect(
      R"({"Id":"abc","Name":"/web","State":{"Status":"exited","Running":false,"ExitCode":137},"Config":{"Image":"redis:7","Env":null,"Labels":null},
          "NetworkSettings":{"Ports":{"6379/tcp":[{"HostIp":"0.0.0.0","HostPort":"49155"},{"HostIp":"::","HostPort":"49155"}]}}})");
  REQUIRE(c);
  CHECK(!c->running);
  CHECK(c->status == "exited");
  CHECK(c->health == "");
  CHECK(c->labels.empty());
  CHECK(c->env.empty());
  CHECK(c->bindings(6379) == std::vector<port_binding>{{"0.0.0.0", 49155}, {"::", 49155}});
}

TEST_CASE("inspect reply that is not a container") {
  CHECK(detail::parse_container_inspect("[]").error == "not a container (no \"Id\"): \"[]\"");
  auto long_garbage = std::string(200, 'x');
  auto r = detail::parse_container_inspect(long_garbage);
  CHECK(r.error.rfind("not JSON (", 0) == 0);
  CHECK(r.error.find("\u2026\" (200 bytes)") != std::string::npos);  // cut short
}

TEST_CASE("container list from podman") {
  auto list = detail::parse_container_list(
      R"([{"Id":"f8027f19fa3b","Names":["/rsq-web1"],"Image":"localhost/bb:latest","ImageID":"sha256:x","Command":"/bin/httpd -f -p 80","Created":1795554812,
           "Ports":[{"IP":"127.0.0.1","PrivatePort":80,"PublicPort":45285,"Type":"tcp"}],
           "Labels":{"amb.note":"hello world","svc":"redis"},"State":"running","Status":"Up 2 seconds",
           "NetworkSettings":{"Networks":{"podman":{"IPAddress":"10.88.0.10"}}},"Mounts":[],"Name":"","Config":null,"NetworkingConfig":null,"Platform":null,"AdjustCPUShares":false}])");
  REQUIRE(list);
  REQUIRE(list->size() == 1);
  CHECK((*list)[0].id == "f8027f19fa3b");
  CHECK((*list)[0].names == std::vector<std::string>{"rsq-web1"});
  CHECK((*list)[0].state == "running");
  CHECK((*list)[0].labels.at("svc") == "redis");
  CHECK(detail::parse_container_list("{}").error == "not a container list (expected a JSON array): \"{}\"");
}

TEST_CASE("event line from podman: Action and Actor, 64-bit timeNano") {
  auto ev = detail::parse_docker_event(
      R"({"status":"die","id":"b381a769","from":"localhost/bb:latest","Type":"container","Action":"die","Actor":{"ID":"b381a769","Attributes":{"containerExitCode":"137","exitCode":"137","image":"localhost/bb:latest","name":"rsq-ev2","podId":"","svc":"evtest"}},"scope":"local","time":1795554856,"timeNano":1795554856695874959})");
  REQUIRE(ev);
  CHECK(ev->type == "container");
  CHECK(ev->action == "die");
  CHECK(ev->id == "b381a769");
  CHECK(ev->attributes.at("name") == "rsq-ev2");
  CHECK(ev->attributes.at("svc") == "evtest");
  CHECK(ev->time == 1795554856);
  CHECK(ev->time_nano == 1795554856695874959);
}

TEST_CASE("event line from Docker >= 1.52 (no legacy fields)") {
  auto ev = detail::parse_docker_event(
      R"({"Type":"container","Action":"health_status: healthy","Actor":{"ID":"abc","Attributes":{"name":"web"}},"scope":"local","time":1,"timeNano":1000000000})");
  REQUIRE(ev);
  CHECK(ev->action == "health_status: healthy");
  CHECK(is_lifecycle_action(ev->action));
  CHECK(is_lifecycle_action("die"));
  CHECK(is_lifecycle_action("destroy"));
  CHECK(is_lifecycle_action("remove"));
  CHECK(!is_lifecycle_action("exec_start"));
  CHECK(!is_lifecycle_action("cleanup"));
  CHECK(detail::parse_docker_event(R"({"Type":"container"})").error ==
        R"(event without "Action": "{"Type":"container"}")");
  CHECK(!detail::parse_docker_event("not json"));
}

TEST_CASE("url encoding of filters") {
  CHECK(detail::url_encode(R"({"type":["container"]})") == "%7B%22type%22%3A%5B%22container%22%5D%7D");
  CHECK(detail::url_encode("a-b_c.d~e") == "a-b_c.d~e");
}

TEST_CASE("finding the engine: --docker, DOCKER_HOST, default") {
  auto def = find_docker_engine(std::nullopt, {"HOME=/root"});
  REQUIRE(def);
  CHECK(def->server.unix_path == "/var/run/docker.sock");
  CHECK(def->source == "engine at unix:///var/run/docker.sock (from default)");
  auto env = find_docker_engine(std::nullopt, {"DOCKER_HOST=tcp://127.0.0.1:2375"});
  REQUIRE(env);
  CHECK(env->server.tcp == host_port{"127.0.0.1", 2375});
  CHECK(env->source == "engine at http://127.0.0.1:2375 (from DOCKER_HOST)");
  auto flag = find_docker_engine(std::string("unix:///run/podman/podman.sock"), {"DOCKER_HOST=tcp://127.0.0.1:2375"});
  REQUIRE(flag);
  CHECK(flag->server.unix_path == "/run/podman/podman.sock");
  CHECK(find_docker_engine(std::nullopt, {"DOCKER_HOST="})->server.unix_path == "/var/run/docker.sock");
  CHECK(find_docker_engine(std::string("ssh://me@host"), {}).error ==
        "unsupported engine address \"ssh://me@host\" in --docker (use unix:///PATH or tcp://HOST:PORT; TLS and "
        "ssh:// are not supported)");
  CHECK(find_docker_engine(std::nullopt, {"DOCKER_HOST=/var/run/docker.sock"}).error ==
        "bad engine address \"/var/run/docker.sock\" in DOCKER_HOST: expected unix:///PATH or tcp://HOST:PORT");
  CHECK(find_docker_engine(std::nullopt, {"DOCKER_HOST=tcp://h:99999"}).error ==
        "bad port \"99999\" in \"h:99999\" in \"tcp://h:99999\" in DOCKER_HOST");
}

// Found by fuzz/docker_json_fuzz.cpp: picojson throws std::overflow_error for a number beyond a
// double ("5554888e888888888"); every reader must report it as not JSON instead.
TEST_CASE("a number beyond a double is not JSON, not an exception") {
  auto v = detail::parse_engine_version("5554888e888888888");
  CHECK(!v);
  CHECK(v.error.rfind("not JSON (number out of range): ", 0) == 0);
  CHECK(!detail::parse_container_list(R"([{"Id":"x","Created":1e999}])"));
  CHECK(!detail::parse_container_inspect(R"({"Id":"x","State":{"Pid":-1e999}})"));
  CHECK(!detail::parse_docker_event(R"({"Type":"container","time":1e999})"));
  CHECK(detail::docker_error_message(R"({"message":"x","response":1e999})") == "");
}

// picojson bounds the nesting of arrays but not of objects: 150,000 levels of {"a": overflowed the
// stack. Every engine reader refuses it as not JSON.
TEST_CASE("deeply nested engine replies and events are not JSON, never a crash") {
  const std::size_t levels = 150000;
  std::string deep;
  for (std::size_t i = 0; i < levels; ++i) deep += "{\"a\":";
  deep += "1";
  deep.append(levels, '}');
  auto e = detail::parse_docker_event(R"({"Type":"container","Action":"start","Actor":)" + deep + "}");
  REQUIRE(!e);
  CHECK(e.error.rfind("not JSON (nested deeper than 64 levels): ", 0) == 0);
  CHECK(!detail::parse_container_inspect(deep));
  CHECK(!detail::parse_container_list("[" + deep + "]"));
  CHECK(!detail::parse_engine_version(deep));
  CHECK(detail::docker_error_message(deep) == "");
}

}  // namespace docker_json_test
