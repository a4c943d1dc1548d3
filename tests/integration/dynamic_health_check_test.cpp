// SPDX-License-Identifier: MIT
// dynamic-etcd-amb --health-check tcp against real redis servers that are stopped, paused (SIGSTOP),
// restarted and made to refuse new clients: out of service after --check-fall failures, back after
// --check-rise passes, no new connection meanwhile, open connections untouched, one line and one
// metric per instance; and the flags' usage errors.
#include "support/dynamic_amb.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <string>
#include <thread>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace dynamic_health_check_test {

using namespace amb::test;

namespace {
const std::vector<std::string> fast_checks{"--health-check",  "tcp",   "--check-interval", "200ms",
                                           "--check-timeout", "300ms", "--check-rise",     "2",
                                           "--check-fall",    "2"};

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::string up_metric(const std::string& key) { return "amb_instance_up{instance=\"" + key + "\"}"; }
std::string failures_metric(const std::string& key) { return "amb_connect_failures_total{instance=\"" + key + "\"}"; }

/// `n` new connections all answered by `name`.
bool all_go_to(const ambassador& amb, const std::string& name, int n = 8) {
  for (int i = 0; i < n; ++i)
    if (who_via(amb.port()) != name) return false;
  return true;
}
/// etcd with redis servers `a` and `b` registered under /services/redis-A/ (no ambassador yet).
struct two_instances {
  etcd_cluster etcd;
  tagged_redis a{"a"}, b{"b"};
  two_instances() {
    etcd.etcdctl({"put", "/services/redis-A/a", a.json()});
    etcd.etcdctl({"put", "/services/redis-A/b", b.json()});
  }
};
}  // namespace

TEST_CASE("a stopped redis fails its checks: out of service (never tried), back when it runs again") {
  two_instances set;
  auto& etcd = set.etcd;
  auto& a = set.a;
  ambassador amb(etcd.url(), "redis-A", fast_checks);
  CHECK(amb.routes_to("a"));
  CHECK(amb.routes_to("b"));
  CHECK(wait_until([&] { return amb.metric(up_metric("/services/redis-A/a")) == 1; }, 5s));

  a.server.kill9();
  const std::string down = "dynamic-etcd-amb: warning: instance /services/redis-A/a at " + a.plain() +
                           " failed 2 health checks in a row (last: connect: Connection refused): no new connections "
                           "until it passes 2";
  CHECK_MESSAGE(wait_until([&] { return amb.output().find(down) != std::string::npos; }, 10s), amb.output());
  CHECK(amb.metric(up_metric("/services/redis-A/a")) == 0);
  CHECK(amb.metric(up_metric("/services/redis-A/b")) == 1);
  const double failures = amb.metric(failures_metric("/services/redis-A/a"));
  CHECK(all_go_to(amb, "b"));
  // Out of service means not even tried: no connect failure counted for it since.
  CHECK(amb.metric(failures_metric("/services/redis-A/a")) == failures);

  a.server.start();
  a.tag();
  const std::string back = "dynamic-etcd-amb: instance /services/redis-A/a at " + a.plain() +
                           " passed 2 health checks in a row: back in service";
  CHECK_MESSAGE(wait_until([&] { return amb.output().find(back) != std::string::npos; }, 10s), amb.output());
  CHECK(amb.routes_to("a"));
  CHECK(amb.metric(up_metric("/services/redis-A/a")) == 1);
  CHECK(amb.count_in_output("failed 2 health checks in a row") == 1);  // one line per change, not per check
  CHECK(amb.count_in_output("back in service") == 1);
}

TEST_CASE("--threads 2: the checks run once per ambassador, and their verdict reaches both loops") {
  two_instances set;
  auto& etcd = set.etcd;
  auto& a = set.a;
  ambassador amb(etcd.url(), "redis-A", with(fast_checks, {"--threads", "2"}));
  CHECK(amb.routes_to("a"));
  a.server.kill9();
  CHECK_MESSAGE(wait_until([&] { return amb.metric(up_metric("/services/redis-A/a")) == 0; }, 10s), amb.output());
  const double failures = amb.metric(failures_metric("/services/redis-A/a"));
  // New connections land on either loop (SO_REUSEPORT spreads them): none is sent to a.
  CHECK(all_go_to(amb, "b", 16));
  CHECK(amb.metric(failures_metric("/services/redis-A/a")) == failures);
  // One checker: one line, however many loops (a checker per loop would say it twice).
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  CHECK(amb.count_in_output("failed 2 health checks in a row") == 1);
}

TEST_CASE("--check-send PING --check-expect +PONG: a paused redis (SIGSTOP) goes out, no client hangs on it") {
  two_instances set;
  auto& etcd = set.etcd;
  auto& a = set.a;
  ambassador amb(etcd.url(), "redis-A", with(fast_checks, {"--check-send", "PING\\r\\n", "--check-expect", "+PONG"}));
  CHECK(amb.routes_to("a"));
  // A paused redis still completes TCP handshakes (the kernel does): only the PING shows it is gone.
  ::kill(a.server.pid(), SIGSTOP);
  struct resume {
    pid_t pid;
    ~resume() { ::kill(pid, SIGCONT); }
  } resumed{a.server.pid()};
  CHECK_MESSAGE(wait_until([&] { return amb.metric(up_metric("/services/redis-A/a")) == 0; }, 10s), amb.output());
  CHECK(amb.output().find("failed 2 health checks in a row (last: timed out after 300ms (no answer))") !=
        std::string::npos);
  const auto start = std::chrono::steady_clock::now();
  CHECK(all_go_to(amb, "b"));  // each answered at once: none sent to the paused one
  CHECK(std::chrono::steady_clock::now() - start < 4s);
  ::kill(a.server.pid(), SIGCONT);
  CHECK(wait_until([&] { return amb.metric(up_metric("/services/redis-A/a")) == 1; }, 10s));
  CHECK(amb.routes_to("a"));
}

TEST_CASE("a failing check never cuts an open connection: redis refusing new clients keeps its old one") {
  etcd_cluster etcd;
  tagged_redis a("a");
  etcd.etcdctl({"put", "/services/redis-A/a", a.json()});
  ambassador amb(etcd.url(), "redis-A", with(fast_checks, {"--check-send", "PING\\r\\n", "--check-expect", "+PONG"}));
  blocking_conn held(amb.port());
  REQUIRE(held.who() == "a");
  // Every new client of redis now gets "-ERR max number of clients reached": the checks fail.
  REQUIRE(held.command("CONFIG SET maxclients 1") == "+OK\r\n");
  CHECK_MESSAGE(wait_until([&] { return amb.metric(up_metric("/services/redis-A/a")) == 0; }, 10s), amb.output());
  CHECK(amb.output().find("(last: answered \"-ERR max number of clients reached\\r\\n\" (expected \"+PONG\"))") !=
        std::string::npos);
  // The only instance is out of service: a new client is closed at once, with a line that says why.
  CHECK(who_via(amb.port()).empty());
  CHECK(wait_until(
      [&] {
        return amb.output().find(
                   "no instance under /services/redis-A/ is in service (1 instance failing health "
                   "checks); closing connection from 127.0.0.1:") != std::string::npos;
      },
      5s));
  // The connection that was open goes on.
  CHECK(held.command("PING") == "+PONG\r\n");
  CHECK(held.who() == "a");
  CHECK(held.command("CONFIG SET maxclients 100") == "+OK\r\n");
  CHECK(wait_until([&] { return amb.metric(up_metric("/services/redis-A/a")) == 1; }, 10s));
  CHECK(amb.routes_to("a"));
}

TEST_CASE("health check flags: usage errors name the flag, exit 2") {
  const std::string hint = "Try 'dynamic-etcd-amb --help'.\n";
  struct bad {
    std::vector<std::string> args;
    std::string line;
  };
  const std::vector<bad> cases{
      {{"--health-check", "http"}, "bad health check \"http\" for --health-check (use tcp)"},
      {{"--check-send", "PING"}, "--check-send needs --health-check tcp"},
      {{"--health-check", "tcp", "--check-send", "PING\\q"},
       "bad escape \"\\\\q\" in \"PING\\\\q\" (use \\r, \\n, \\t, \\0, \\\\ or \\xHH) for --check-send"},
      {{"--health-check", "tcp", "--check-expect", std::string(5000, 'x')},
       "check string \"" + std::string(80, 'x') + "\u2026\" (5000 bytes) longer than 4096 bytes for --check-expect"},
      {{"--health-check", "tcp", "--check-send", std::string(4097, 's')},
       "check string \"" + std::string(80, 's') + "\u2026\" (4097 bytes) longer than 4096 bytes for --check-send"},
      {{"--health-check", "tcp", "--check-rise", "0"}, "number \"0\" out of range 1..100 for --check-rise"},
      {{"--health-check", "tcp", "--check-interval", "10ms"}, "--check-interval: at least 100ms"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.line);
    auto argv = with({AMB_DYNAMIC_ETCD_AMB_BIN}, c.args);
    argv.push_back("redis-A");
    argv.push_back("6379");
    auto r = run(argv, 10s);
    CHECK(r.status == 2);
    CHECK(r.output == "dynamic-etcd-amb: " + c.line + "\n" + hint);
  }
}

}  // namespace dynamic_health_check_test
