// SPDX-License-Identifier: MIT
// docker-register, seed mode, end to end: podman's real Docker-compatible API socket, real containers
// published on 127.0.0.1, real etcd.
#include "support/docker_register_support.hpp"

#include <doctest/doctest.h>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace docker_register_seed_test {

using namespace amb::test;

namespace {

// One podman service and one etcd for the whole file: starting them is the slow part.
podman_service& podman() {
  static podman_service p;
  return p;
}
etcd_cluster& etcd() {
  static etcd_cluster e;
  return e;
}

std::string expected_value(std::uint16_t port, const std::string& extra = "") {
  return "{\"host\":\"127.0.0.1\",\"port\":" + std::to_string(port) + extra + "}";
}

std::string web(const std::string& stem) {
  auto name = podman().unique_name(stem);
  podman().run_container(name, {"-p", "127.0.0.1::80"}, {"httpd", "-f", "-p", "80"});
  return name;
}

}  // namespace

TEST_CASE("seed mode follows the container: value, stop, start, SIGTERM") {
  auto name = web("seed");
  const std::string key = "/services/web/" + name;
  auto reg = start_docker_register(etcd(), podman().url(), {"--ttl", "2s", name, "80", "web", "zone=a", "weight=3"});
  const auto port = podman().published_port(name, 80);
  REQUIRE(port != 0);
  // The value is what `podman port` says, with the extra fields (numbers as numbers).
  CHECK(
      wait_until([&] { return etcd_value(etcd(), key) == expected_value(port, ",\"zone\":\"a\",\"weight\":3"); }, 10s));
  INFO(reg.output());

  // Stop: the registrar keeps its lease alive, so only the die event (or a 30s resync) can remove the key;
  // gone well before the resync proves the event path (podman delivers events seconds late when busy).
  podman().podman_ok({"stop", "-t", "1", name});
  auto stopped = std::chrono::steady_clock::now();
  CHECK(wait_until([&] { return etcd_value(etcd(), key).empty(); }, 15s, 20ms));
  MESSAGE("key gone ",
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - stopped).count(),
          "ms after podman stop returned");

  // Start again: back, with the port podman publishes now.
  podman().podman_ok({"start", name});
  const auto port2 = podman().published_port(name, 80);
  REQUIRE(port2 != 0);
  CHECK(wait_until([&] { return etcd_value(etcd(), key) == expected_value(port2, ",\"zone\":\"a\",\"weight\":3"); },
                   15s, 20ms));
  CHECK(reg.running());

  // SIGTERM: the lease is revoked before exit, so the key is gone the moment the process is.
  reg.signal(SIGTERM);
  CHECK(reg.wait(10s) == 0);
  CHECK(etcd_value(etcd(), key).empty());
  CHECK(reg.output().find("docker-register: registered " + key + " = " +
                          expected_value(port, ",\"zone\":\"a\",\"weight\":3") +
                          " (a loopback address: only ambassadors on this host can reach it)\n") != std::string::npos);
}

TEST_CASE("seed mode: SIGKILL leaves the key to the TTL; hostport format") {
  auto name = web("kill");
  const std::string key = "/services/web-hp/" + name;
  auto reg = start_docker_register(etcd(), podman().url(),
                                   {"--ttl", "2s", "--value-format", "hostport", name, "80", "web-hp"});
  const auto port = podman().published_port(name, 80);
  REQUIRE(wait_until([&] { return etcd_value(etcd(), key) == "127.0.0.1:" + std::to_string(port); }, 10s));
  reg.stop();  // SIGKILL: nobody revokes
  auto killed = std::chrono::steady_clock::now();
  CHECK(!etcd_value(etcd(), key).empty());
  // The promise: gone within TTL + 1 s of the SIGKILL.
  const auto budget =
      std::chrono::duration_cast<std::chrono::milliseconds>(3s - (std::chrono::steady_clock::now() - killed));
  CHECK(wait_until([&] { return etcd_value(etcd(), key).empty(); }, budget, 50ms));
  MESSAGE("key gone ",
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed).count(),
          "ms after SIGKILL (TTL 2s)");
}

TEST_CASE("seed mode: etcd outage past the TTL and an emptied etcd: the registration comes back") {
  auto name = web("outage");
  const std::string key = "/services/web/" + name;
  auto reg = start_docker_register(etcd(), podman().url(), {"--ttl", "2s", name, "80", "web"});
  const auto port = podman().published_port(name, 80);
  REQUIRE(wait_until([&] { return etcd_value(etcd(), key) == expected_value(port); }, 10s));

  etcd().kill9();
  std::this_thread::sleep_for(3s);  // longer than the TTL: the scenario, not an assertion
  etcd().restart();
  CHECK(wait_until([&] { return etcd_value(etcd(), key) == expected_value(port); }, 10s));

  // etcd comes back empty (lease and key gone): the keeper grants a new lease and writes again.
  etcd().wipe_and_restart();
  CHECK(wait_until([&] { return etcd_value(etcd(), key) == expected_value(port); }, 10s));
  CHECK(reg.running());
  INFO(reg.output());
  reg.signal(SIGTERM);
  CHECK(reg.wait(10s) == 0);
  CHECK(etcd_value(etcd(), key).empty());
}

TEST_CASE("seed mode: a container that is not there yet is waited for; removal with --exit-with-container exits 0") {
  const auto name = podman().unique_name("later");
  const std::string key = "/services/later/" + name;
  auto reg = start_docker_register(etcd(), podman().url(), {"--ttl", "2s", name, "80", "later"});
  const std::string line = "docker-register: warning: inspect container \"" + name + "\" at " + podman().url() +
                           ": no such container; waiting for it\n";
  CHECK(wait_until([&] { return reg.output().find(line) != std::string::npos; }, 10s));
  CHECK(reg.running());
  CHECK(etcd_value(etcd(), key).empty());
  podman().run_container(name, {"-p", "127.0.0.1::80"}, {"httpd", "-f", "-p", "80"});
  const auto port = podman().published_port(name, 80);
  CHECK(wait_until([&] { return etcd_value(etcd(), key) == expected_value(port); }, 10s));
  reg.signal(SIGINT);
  CHECK(reg.wait(10s) == 0);

  auto follower =
      start_docker_register(etcd(), podman().url(), {"--ttl", "2s", "--exit-with-container", name, "80", "later"});
  REQUIRE(wait_until([&] { return etcd_value(etcd(), key) == expected_value(port); }, 10s));
  podman().podman_ok({"rm", "-f", "-t", "0", name});
  CHECK(follower.wait(10s) == 0);
  CHECK(etcd_value(etcd(), key).empty());
  CHECK(follower.output().find("docker-register: container \"" + name +
                               "\" was removed; exiting (--exit-with-container)\n") != std::string::npos);
}

TEST_CASE("seed mode bad input: one clear line and the documented exit code") {
  const std::string sock = podman().url();
  SUBCASE("unknown container with --exit-with-container: 1") {
    auto r = run_docker_register(etcd(), sock, {"--exit-with-container", "amb-test-nosuch", "80", "x"});
    CHECK(r.status == 1);
    CHECK(r.output.find("docker-register: error: inspect container \"amb-test-nosuch\" at " + sock +
                        ": no such container; exiting (--exit-with-container)\n") != std::string::npos);
  }
  SUBCASE("unpublished port: waits with one line; with --exit-with-container: 1") {
    auto name = podman().unique_name("nopub");
    podman().run_container(name, {}, {"httpd", "-f", "-p", "80"});
    auto reg = start_docker_register(etcd(), sock, {name, "80", "x"});
    const std::string line = "docker-register: warning: container \"" + name +
                             "\" does not publish port 80/tcp (it publishes no port); waiting for it\n";
    CHECK(wait_until([&] { return reg.output().find(line) != std::string::npos; }, 10s));
    CHECK(reg.running());
    CHECK(etcd_value(etcd(), "/services/x/" + name).empty());
    auto r = run_docker_register(etcd(), sock, {"--exit-with-container", name, "80", "x"});
    CHECK(r.status == 1);
    CHECK(r.output.find("docker-register: error: container \"" + name +
                        "\" does not publish port 80/tcp (it publishes no port); exiting (--exit-with-container)\n") !=
          std::string::npos);
  }
  SUBCASE("a port it does not publish: the line lists the ports it does publish") {
    auto name = podman().unique_name("otherpub");
    podman().run_container(name, {"-p", "127.0.0.1::80", "-p", "127.0.0.1::8080"}, {"httpd", "-f", "-p", "80"});
    auto r = run_docker_register(etcd(), sock, {"--exit-with-container", name, "6379", "x"});
    CHECK(r.status == 1);
    CHECK(r.output.find("docker-register: error: container \"" + name +
                        "\" does not publish port 6379/tcp (it publishes 80/tcp, 8080/tcp); exiting "
                        "(--exit-with-container)\n") != std::string::npos);
  }
  SUBCASE("non-numeric port: 2") {
    auto r = run_docker_register(etcd(), sock, {"web", "http", "x"});
    CHECK(r.status == 2);
    CHECK(r.output ==
          "docker-register: bad PRIVATE_PORT \"http\": expected a port number 1..65535\n"
          "Try 'docker-register --help'.\n");
  }
  SUBCASE("missing arguments and bad flags: 2") {
    CHECK(run_docker_register(etcd(), sock, {"web", "80"}).output ==
          "docker-register: missing SERVICE\nTry 'docker-register --help'.\n");
    CHECK(run_docker_register(etcd(), sock, {"--ttl", "1s", "web", "80", "x"}).status == 2);
    CHECK(run_docker_register(etcd(), sock, {"--all", "web"}).status == 2);
    auto r = run_docker_register(etcd(), "ssh://host", {"web", "80", "x"});
    CHECK(r.status == 2);
    CHECK(r.output.find("unsupported engine address \"ssh://host\" in --docker") != std::string::npos);
  }
  SUBCASE("missing socket: one line saying where it looked and how to point elsewhere, 1") {
    temp_dir dir;
    const std::string path = (dir.path() / "none.sock").string();
    const std::string hint =
        "): point docker-register at the engine's API with --docker unix:///PATH or DOCKER_HOST (podman's: "
        "unix:///run/podman/podman.sock, rootless: unix://$XDG_RUNTIME_DIR/podman/podman.sock)\n";
    auto r = run_docker_register(etcd(), "unix://" + path, {"web", "80", "x"});
    CHECK(r.status == 1);
    CHECK(lines_with(r.output, "error").size() == 1);
    CHECK(r.output.find("docker-register: error: no engine socket at " + path + " (from --docker" + hint) !=
          std::string::npos);
    child_process::options env;
    env.unset_env = {"ETCDCTL_ENDPOINTS", "HOST_IP"};
    env.env = {{"DOCKER_HOST", "unix://" + path}};
    auto from_env = run({AMB_DOCKER_REGISTER_BIN, "--etcd", etcd().url(0), "web", "80", "x"}, 20s, env);
    CHECK(from_env.status == 1);
    CHECK(from_env.output.find("docker-register: error: no engine socket at " + path + " (from DOCKER_HOST" + hint) !=
          std::string::npos);
  }
  SUBCASE("a socket that is there but not served: the connect error, 1") {
    temp_dir dir;
    const std::string path = (dir.path() / "stale.sock").string();
    {  // a socket file with nobody listening, as a stopped engine leaves behind
      const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
      sockaddr_un a{};
      a.sun_family = AF_UNIX;
      std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
      REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
      ::close(fd);
    }
    auto r = run_docker_register(etcd(), "unix://" + path, {"web", "80", "x"});
    CHECK(r.status == 1);
    INFO(r.output);
    CHECK(r.output.find("docker-register: error: cannot use the container engine: GET /_ping to unix://" + path) !=
          std::string::npos);
  }
  SUBCASE("garbage from the socket: 1") {
    temp_dir dir;
    unix_server garbage((dir.path() / "garbage.sock").string(), [](int fd) {
      char buf[4096];
      ::recv(fd, buf, sizeof buf, 0);
      const char reply[] = "SSH-2.0-OpenSSH_9.2\r\n\r\n";
      ::send(fd, reply, sizeof reply - 1, MSG_NOSIGNAL);
    });
    auto r = run_docker_register(etcd(), garbage.url(), {"web", "80", "x"});
    CHECK(r.status == 1);
    CHECK(r.output.find("docker-register: error: cannot use the container engine: ping engine at " + garbage.url() +
                        ": not a Docker Engine API (GET /_ping: ") != std::string::npos);
    INFO(r.output);
    unix_server http_garbage((dir.path() / "http.sock").string(), [](int fd) {
      char buf[4096];
      ::recv(fd, buf, sizeof buf, 0);
      const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
      ::send(fd, reply, sizeof reply - 1, MSG_NOSIGNAL);
    });
    auto h = run_docker_register(etcd(), http_garbage.url(), {"web", "80", "x"});
    CHECK(h.status == 1);
    CHECK(h.output.find("docker-register: error: cannot use the container engine: ping engine at " +
                        http_garbage.url() + ": not a Docker Engine API (HTTP 200 \"hello\")\n") != std::string::npos);
  }
}

TEST_CASE("the registrar only sends GET requests to read-only endpoints") {
  temp_dir dir;
  recording_proxy proxy((dir.path() / "proxy.sock").string(), podman().socket_path());
  auto name = web("readonly");
  const std::string key = "/services/ro/" + name;
  auto reg = start_docker_register(etcd(), proxy.url(), {"--ttl", "2s", name, "80", "ro"});
  REQUIRE(wait_until([&] { return !etcd_value(etcd(), key).empty(); }, 10s));
  podman().podman_ok({"stop", "-t", "1", name});
  CHECK(wait_until([&] { return etcd_value(etcd(), key).empty(); }, 15s));
  podman().podman_ok({"start", name});
  CHECK(wait_until([&] { return !etcd_value(etcd(), key).empty(); }, 15s));
  reg.signal(SIGTERM);
  CHECK(reg.wait(10s) == 0);
  auto requests = proxy.requests();
  CHECK(requests.size() >= 4);
  for (const auto& line : requests) {
    INFO(line);
    CHECK(line.rfind("GET /", 0) == 0);
    const bool allowed = line.rfind("GET /_ping ", 0) == 0 || line.rfind("GET /version ", 0) == 0 ||
                         line.find("/containers/json") != std::string::npos ||
                         line.find("/containers/" + name + "/json") != std::string::npos ||
                         line.find("/events?") != std::string::npos;
    CHECK(allowed);
  }
}

TEST_CASE("--help: the README's roles in the example, no word the reader does not know") {
  auto h = run({AMB_DOCKER_REGISTER_BIN, "--help"}, 10s);
  CHECK(h.status == 0);
  CHECK(h.output.find("\nExample:\n  docker-register redis-demo 6379 redis-A\n") != std::string::npos);
  CHECK(h.output.find("'docker-register redis-demo 6379 redis-A'\nwrites /services/redis-A/redis-demo for "
                      "container redis-demo's port 6379/tcp.") != std::string::npos);
  CHECK(h.output.find("One-container mode") != std::string::npos);
  CHECK(h.output.find("unix:///run/podman/podman.sock") != std::string::npos);
  for (const std::string& program :
       {std::string(AMB_DOCKER_REGISTER_BIN), std::string(AMB_DYNAMIC_ETCD_AMB_BIN), std::string(AMB_SIMPLE_AMB_BIN)}) {
    auto help = run({program, "--help"}, 10s);
    INFO(program);
    CHECK(help.output.find("seed") == std::string::npos);
    CHECK(help.output.find("Seed") == std::string::npos);
  }
}

TEST_CASE(
    "--etcd etcd://HOST:PORT/PREFIX (registrator's form) sets the prefix too; a second, different prefix is refused") {
  auto name = web("etcdurl");
  const std::string url = etcd().url(0);  // http://127.0.0.1:PORT
  const std::string hostport = url.substr(url.find("://") + 3);
  auto reg = start_docker_register(etcd(), podman().url(),
                                   {"--etcd", "etcd://" + hostport + "/registrator", name, "80", "web"});
  CHECK(wait_until([&] { return !etcd_value(etcd(), "/registrator/web/" + name).empty(); }, 10s));
  CHECK(reg.output().find("etcd at " + url + " (from --etcd etcd://" + hostport + "/registrator)") !=
        std::string::npos);
  reg.signal(SIGTERM);
  CHECK(reg.wait(10s) == 0);
  auto r = run_docker_register(
      etcd(), podman().url(),
      {"--etcd", "etcd://" + hostport + "/registrator", "--prefix", "/services", name, "80", "web"});
  CHECK(r.status == 2);
  CHECK(r.output ==
        "docker-register: --prefix \"/services\" disagrees with the prefix \"/registrator\" of --etcd "
        "etcd://HOST:PORT/PREFIX: give the prefix once\nTry 'docker-register --help'.\n");
}

}  // namespace docker_register_seed_test
