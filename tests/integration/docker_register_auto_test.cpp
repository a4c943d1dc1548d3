// SPDX-License-Identifier: MIT
// docker-register --all (automatic mode), end to end: podman's real Docker-compatible API socket,
// real containers published on 127.0.0.1 with different labels and env, real etcd.
#include "support/docker_register_support.hpp"

#include <doctest/doctest.h>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace docker_register_auto_test {

using namespace amb::test;

namespace {

// Only keys whose instance names one of this process's containers: other tests may run containers
// on the same podman at the same time, and --all registers those too.
std::map<std::string, std::string> ours(const std::map<std::string, std::string>& all, const std::string& stem) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : all)
    if (k.find(":" + stem) != std::string::npos) out[k] = v;
  return out;
}

std::string value(std::uint16_t port, const std::string& extra = "") {
  return "{\"host\":\"127.0.0.1\",\"port\":" + std::to_string(port) + extra + "}";
}

}  // namespace

TEST_CASE("automatic mode: exactly the expected keys, ignore, stop, and an events stream cut") {
  podman_service podman;
  etcd_cluster etcd;
  const std::string stem = "amb-test-" + std::to_string(::getpid()) + "-";
  const std::string httpd[] = {"httpd", "-f", "-p", "80"};
  const std::vector<std::string> serve{"sh", "-c", "httpd -p 80; httpd -f -p 81"};

  auto a = podman.unique_name("a");  // named by label
  podman.run_container(a, {"-p", "127.0.0.1::80", "--label", "SERVICE_NAME=web-a"}, {"httpd", "-f", "-p", "80"});
  auto b = podman.unique_name("b");  // named by env, with a weight
  podman.run_container(b, {"-p", "127.0.0.1::80", "-e", "SERVICE_NAME=web-b", "-e", "SERVICE_WEIGHT=5"},
                       {"httpd", "-f", "-p", "80"});
  auto c = podman.unique_name("c");  // two ports, no name: the image's base name + -port
  podman.run_container(c, {"-p", "127.0.0.1::80", "-p", "127.0.0.1::81"}, serve);
  auto d = podman.unique_name("d");  // ignored
  podman.run_container(d, {"-p", "127.0.0.1::80", "-e", "SERVICE_NAME=web-d", "-e", "SERVICE_IGNORE=1"},
                       {"httpd", "-f", "-p", "80"});
  auto e = podman.unique_name("e");  // publishes nothing
  podman.run_container(e, {}, {"httpd", "-f", "-p", "80"});

  auto reg = start_docker_register(etcd, podman.url(), {"--all", "--ttl", "2s", "--hostname", "h1", "--resync", "1m"});
  INFO(reg.output());
  std::map<std::string, std::string> want{
      {"/services/web-a/h1:" + a + ":80", value(podman.published_port(a, 80))},
      {"/services/web-b/h1:" + b + ":80", value(podman.published_port(b, 80), ",\"weight\":5")},
      {"/services/amb-test-busybox-80/h1:" + c + ":80", value(podman.published_port(c, 80))},
      {"/services/amb-test-busybox-81/h1:" + c + ":81", value(podman.published_port(c, 81))},
  };
  CHECK(wait_until([&] { return ours(etcd_prefix(etcd, "/services/"), stem) == want; }, 15s));
  CHECK(ours(etcd_prefix(etcd, "/services/"), stem) == want);
  CHECK(wait_until([&] { return reg.output().find("SERVICE_IGNORE is set") != std::string::npos; }, 10s));

  // Stop one: its key goes (the die event), the others stay.
  podman.podman_ok({"stop", "-t", "1", a});
  want.erase("/services/web-a/h1:" + a + ":80");
  CHECK(wait_until([&] { return ours(etcd_prefix(etcd, "/services/"), stem) == want; }, 15s));

  // Cut the events stream: the API service goes away; meanwhile b stops and f starts (the CLI does
  // not need the service). The registrar reconnects and converges.
  podman.stop();
  podman.podman_ok({"stop", "-t", "1", b});
  auto f = podman.unique_name("f");
  podman.run_container(f, {"-p", "127.0.0.1::80", "--label", "SERVICE_NAME=web-f"}, {"httpd", "-f", "-p", "80"});
  podman.restart();
  want.erase("/services/web-b/h1:" + b + ":80");
  want["/services/web-f/h1:" + f + ":80"] = value(podman.published_port(f, 80));
  CHECK(wait_until([&] { return ours(etcd_prefix(etcd, "/services/"), stem) == want; }, 15s));
  CHECK(reg.running());
  CHECK(wait_until([&] { return reg.output().find("events stream at " + podman.url() + " back") != std::string::npos; },
                   10s));

  // After the reconnect events still flow: a start is seen.
  podman.podman_ok({"start", a});
  want["/services/web-a/h1:" + a + ":80"] = value(podman.published_port(a, 80));
  CHECK(wait_until([&] { return ours(etcd_prefix(etcd, "/services/"), stem) == want; }, 15s));

  reg.signal(SIGTERM);
  CHECK(reg.wait(10s) == 0);
  CHECK(ours(etcd_prefix(etcd, "/services/"), stem).empty());
}

TEST_CASE("automatic mode: --explicit registers only named services; hostport values") {
  podman_service podman;
  etcd_cluster etcd;
  const std::string stem = "amb-test-" + std::to_string(::getpid()) + "-";
  auto named = podman.unique_name("named");
  podman.run_container(named, {"-p", "127.0.0.1::80", "-e", "SERVICE_80_NAME=port-named"}, {"httpd", "-f", "-p", "80"});
  auto anon = podman.unique_name("anon");
  podman.run_container(anon, {"-p", "127.0.0.1::80"}, {"httpd", "-f", "-p", "80"});
  auto reg = start_docker_register(
      etcd, podman.url(),
      {"--all", "--explicit", "--value-format", "hostport", "--hostname", "h2", "--prefix", "/x/", "--resync", "1s"});
  INFO(reg.output());
  std::map<std::string, std::string> want{
      {"/x/port-named/h2:" + named + ":80", "127.0.0.1:" + std::to_string(podman.published_port(named, 80))}};
  CHECK(wait_until([&] { return ours(etcd_prefix(etcd, "/x/"), stem) == want; }, 15s));
  // The skipped container's line may come after the named one's key (the order of the engine's list).
  CHECK(wait_until([&] { return reg.output().find("no SERVICE_NAME (--explicit)") != std::string::npos; }, 10s));
  // Resyncs (every 1s here) diff against what is registered: no write when nothing changed.
  auto revision = [&] {
    auto out = etcd.etcdctl({"get", "/x/port-named/h2:" + named + ":80", "-w", "fields"});
    auto at = out.find("\"ModRevision\" : ");
    return at == std::string::npos ? std::string("none") : out.substr(at, out.find('\n', at) - at);
  };
  const auto before = revision();
  std::this_thread::sleep_for(2500ms);  // two resyncs: the scenario, not a timing assertion
  CHECK(revision() == before);
  CHECK(before != "none");
  reg.signal(SIGHUP);
  CHECK(reg.wait(10s) == 0);
  CHECK(ours(etcd_prefix(etcd, "/x/"), stem).empty());
}

}  // namespace docker_register_auto_test
