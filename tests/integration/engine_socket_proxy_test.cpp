// SPDX-License-Identifier: MIT
// deploy/engine-socket-proxy/haproxy.cfg, the read-only proxy the README recommends in front of the
// engine's root-equivalent socket: real haproxy, podman's real API socket, real etcd. docker-register
// works through it (list, inspect, events), and every write or other path is refused before the engine.
#include "support/docker_register_support.hpp"

#include <doctest/doctest.h>

#include <regex>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace engine_socket_proxy_test {

using namespace amb::test;

namespace {

// The HTTP status of one request through the proxy's socket, as curl sees it.
std::string status_of(const std::string& socket, const std::string& method, const std::string& path) {
  auto curl = require_program("curl", "curl");
  auto r = run({curl, "--path-as-is", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", socket, "-X",
                method, "http://engine" + path},
               10s);
  return r.output;
}

}  // namespace

TEST_CASE("the read-only engine socket proxy: docker-register works through it, writes never reach the engine") {
  podman_service podman;
  etcd_cluster etcd;
  temp_dir dir;
  const std::string proxy_socket = (dir.path() / "engine-ro.sock").string();
  const std::string engine_socket = podman.url().substr(std::string("unix://").size());

  child_process::options opts;
  opts.env = {{"ENGINE_SOCKET", engine_socket}, {"PROXY_SOCKET", proxy_socket}, {"PROXY_GROUP", "root"}};
  child_process haproxy({require_program("haproxy", "haproxy"), "-db", "-f",
                         std::string(AMB_SOURCE_DIR) + "/deploy/engine-socket-proxy/haproxy.cfg"},
                        opts);
  INFO(haproxy.output());
  REQUIRE(wait_until([&] { return status_of(proxy_socket, "GET", "/_ping") == "200"; }, 10s));

  // What docker-register reads passes, with or without a version prefix.
  CHECK(status_of(proxy_socket, "GET", "/version") == "200");
  CHECK(status_of(proxy_socket, "GET", "/v1.41/containers/json?all=1") == "200");
  // Writes and every other path are refused by the proxy (403), whatever the engine would say.
  CHECK(status_of(proxy_socket, "POST", "/containers/create") == "403");
  CHECK(status_of(proxy_socket, "POST", "/v1.41/containers/create") == "403");
  CHECK(status_of(proxy_socket, "DELETE", "/containers/anything") == "403");
  CHECK(status_of(proxy_socket, "POST", "/containers/anything/exec") == "403");
  CHECK(status_of(proxy_socket, "GET", "/images/json") == "403");
  CHECK(status_of(proxy_socket, "GET", "/containers/x/json/../../images/json") == "403");
  CHECK(status_of(proxy_socket, "GET", "/secrets") == "403");

  // docker-register --all through the proxy: a start is registered, a stop removed (the /events
  // stream flows through it).
  auto name = podman.unique_name("ro");
  podman.run_container(name, {"-p", "127.0.0.1::80", "--label", "SERVICE_NAME=web-ro"}, {"httpd", "-f", "-p", "80"});
  auto reg = start_docker_register(etcd, "unix://" + proxy_socket, {"--all", "--hostname", "h1", "--ttl", "2s"});
  INFO(reg.output());
  const std::string key = "/services/web-ro/h1:" + name + ":80";
  const std::string want = "{\"host\":\"127.0.0.1\",\"port\":" + std::to_string(podman.published_port(name, 80)) + "}";
  CHECK(wait_until([&] { return etcd_value(etcd, key) == want; }, 15s));
  podman.podman_ok({"stop", "-t", "1", name});
  CHECK(wait_until([&] { return etcd_value(etcd, key).empty(); }, 10s));
  podman.podman_ok({"start", name});
  CHECK(wait_until([&] { return !etcd_value(etcd, key).empty(); }, 10s));
  CHECK(reg.running());
  // It never asked for anything the proxy refuses (a 403 status, not the digits inside a port number).
  CHECK(!std::regex_search(reg.output(), std::regex("(^|[^0-9])403([^0-9]|$)")));
}

}  // namespace engine_socket_proxy_test
