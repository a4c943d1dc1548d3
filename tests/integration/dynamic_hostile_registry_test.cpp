// SPDX-License-Identifier: MIT
// dynamic-etcd-amb against hostile registry data and a watch that misbehaves, on real etcd: deep JSON,
// keys that are not instances, forged log lines, a catch-up beyond the line limit, a stalled stream,
// the ambassador's own fd shortage, and the lines about etcd not reached yet and the watch resuming.
#include "support/dynamic_amb.hpp"

#include <amb/detail/base64.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <set>

#include <poll.h>

#include <atomic>
#include <mutex>
#include <regex>
#include <thread>

using namespace amb::test;

namespace dynamic_hostile_registry_test {

/// Puts key = value through etcd's JSON gateway (values beyond what argv can carry).
void put_raw(std::uint16_t etcd_port, const std::string& key, const std::string& value) {
  const std::string body =
      R"({"key":")" + amb::detail::base64_encode(key) + R"(","value":")" + amb::detail::base64_encode(value) + "\"}";
  auto reply = tcp_exchange(etcd_port,
                            "POST /v3/kv/put HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                            "Content-Length: " +
                                std::to_string(body.size()) + "\r\n\r\n" + body,
                            20s, false);
  if (reply.rfind("HTTP/1.0 200", 0) != 0 && reply.rfind("HTTP/1.1 200", 0) != 0)
    throw std::runtime_error("test set-up: put " + key + " failed: " + reply.substr(0, 300));
}

/// {"a":{"a":...1...}} nested `levels` deep.
std::string deep_json(std::size_t levels) {
  std::string s;
  for (std::size_t i = 0; i < levels; ++i) s += "{\"a\":";
  s += "1";
  s.append(levels, '}');
  return s;
}

/// A TCP forwarder on loopback between the ambassador and etcd that the test can cut (close every
/// connection and refuse new ones), restore, or stall (existing connections stop moving bytes, stay open).
class forwarder {
public:
  explicit forwarder(std::uint16_t target) : target_(target) {
    listen_ = amb::test::listen_test_port(port_);  // not port 0: see test_port_low in process.hpp
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  forwarder(const forwarder&) = delete;
  forwarder& operator=(const forwarder&) = delete;
  ~forwarder() {
    done_ = true;
    cut();
    acceptor_.join();
    std::lock_guard<std::mutex> lock(m_);
    for (auto& t : threads_) t.join();
    ::close(listen_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  /// Closes every connection; new ones are closed at once until restore().
  void cut() {
    refusing_ = true;
    std::lock_guard<std::mutex> lock(m_);
    for (auto& c : conns_) c->shut();
  }
  void restore() { refusing_ = false; }
  /// Existing connections stop forwarding (both ways) but stay open; new ones work.
  void stall() {
    std::lock_guard<std::mutex> lock(m_);
    for (auto& c : conns_) c->frozen = true;
  }

private:
  struct conn {
    int a = -1, b = -1;
    std::atomic<bool> frozen{false}, closed{false};
    void shut() {
      closed = true;
      ::shutdown(a, SHUT_RDWR);
      ::shutdown(b, SHUT_RDWR);
    }
  };
  void accept_loop() {
    while (!done_) {
      pollfd p{listen_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int a = ::accept(listen_, nullptr, nullptr);
      if (a < 0) continue;
      if (refusing_) {
        ::close(a);
        continue;
      }
      int b = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in t{};
      t.sin_family = AF_INET;
      t.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      t.sin_port = htons(target_);
      if (::connect(b, reinterpret_cast<sockaddr*>(&t), sizeof t) != 0) {
        ::close(a);
        ::close(b);
        continue;
      }
      auto c = std::make_shared<conn>();
      c->a = a;
      c->b = b;
      std::lock_guard<std::mutex> lock(m_);
      conns_.push_back(c);
      threads_.emplace_back([c] { pump(*c); });
    }
  }
  static void pump(conn& c) {
    char buf[65536];
    while (!c.closed) {
      if (c.frozen) {
        std::this_thread::sleep_for(20ms);
        continue;
      }
      pollfd p[2] = {{c.a, POLLIN, 0}, {c.b, POLLIN, 0}};
      if (::poll(p, 2, 50) <= 0) continue;
      if (c.frozen) continue;
      for (int i = 0; i < 2; ++i) {
        if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        ssize_t n = ::recv(p[i].fd, buf, sizeof buf, 0);
        if (n <= 0) {
          c.closed = true;
          break;
        }
        const int to = i == 0 ? c.b : c.a;
        for (ssize_t done = 0; done < n;) {
          ssize_t w = ::send(to, buf + done, static_cast<std::size_t>(n - done), MSG_NOSIGNAL);
          if (w <= 0) {
            c.closed = true;
            break;
          }
          done += w;
        }
      }
    }
    ::close(c.a);
    ::close(c.b);
  }

  std::uint16_t target_, port_ = 0;
  int listen_ = -1;
  std::atomic<bool> done_{false}, refusing_{false};
  std::mutex m_;
  std::vector<std::shared_ptr<conn>> conns_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

/// dynamic-etcd-amb started with `prefix_argv` before it (e.g. prlimit) and any flags; not waited for.
struct raw_ambassador {
  raw_ambassador(const std::string& etcd, const std::string& service, std::vector<std::string> extra = {},
                 std::vector<std::string> prefix_argv = {})
      : port(free_port()), metrics_port(free_port()) {
    std::vector<std::string> argv = prefix_argv;
    for (std::string a :
         {std::string(AMB_DYNAMIC_ETCD_AMB_BIN), std::string("--etcd"), etcd, std::string("--listen"),
          "127.0.0.1:" + std::to_string(port), std::string("--metrics"), "127.0.0.1:" + std::to_string(metrics_port)})
      argv.push_back(a);
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(service);
    argv.push_back(std::to_string(port));
    process.start(argv, child_process::options{});
  }
  bool healthy() const { return http_get_raw(metrics_port, "/healthz").rfind("HTTP/1.1 200", 0) == 0; }
  std::uint16_t port, metrics_port;
  child_process process;
};

TEST_CASE("a deeply nested value is skipped with one warning, at the first read and through the watch") {
  etcd_cluster etcd;
  tagged_redis one("one");
  etcd.etcdctl({"put", "/services/deep/y", one.json()});
  put_raw(etcd.client_port(), "/services/deep/x", deep_json(150000));
  ambassador amb(etcd.url(), "deep");
  CHECK(amb.routes_to("one"));
  put_raw(etcd.client_port(), "/services/deep/z", deep_json(150000));
  CHECK(wait_until([&] { return amb.count_in_output("skipping /services/deep/z") == 1; }, 10s, 50ms));
  CHECK(amb.process().running());
  CHECK(amb.routes_to("one"));
  const std::string deep_start = deep_json(150000).substr(0, 80);
  CHECK(amb.count_in_output("dynamic-etcd-amb: warning: skipping /services/deep/x: bad registry value \"" + deep_start +
                            "\u2026\" (" + std::to_string(deep_json(150000).size()) +
                            " bytes): invalid JSON (nested deeper than 64 levels)\n") == 1);
  CHECK(amb.count_in_output("nested deeper than 64 levels") == 2);
  CHECK(amb.metric("amb_instances") == 1);
}

TEST_CASE("keys that are not <prefix>/<service>/<id> are ignored once each: first read, watch and SIGHUP") {
  etcd_cluster etcd;
  tagged_redis one("one"), two("two");
  etcd.etcdctl({"put", "/services/svc/a/b", one.json()});
  etcd.etcdctl({"put", "/services/svc/", one.json()});
  etcd.etcdctl({"put", "/services/svc/r", two.json()});
  ambassador amb(etcd.url(), "svc");
  for (int i = 0; i < 6; ++i) CHECK(who_via(amb.port()) == "two");
  etcd.etcdctl({"put", "/services/svc/c/d", one.json()});
  CHECK(wait_until([&] { return amb.count_in_output("ignoring /services/svc/c/d") == 1; }, 10s, 50ms));
  etcd.etcdctl({"put", "/services/svc/a/b", one.json()});  // a heartbeat: not logged again
  etcd.etcdctl({"put", "/services/svc/a/b", two.json()});
  amb.process().signal(SIGHUP);
  CHECK(wait_until([&] { return amb.count_in_output("re-read /services/svc/") == 1; }, 10s, 50ms));
  for (int i = 0; i < 6; ++i) CHECK(who_via(amb.port()) == "two");
  CHECK(amb.metric("amb_instances") == 1);
  CHECK(amb.count_in_output("dynamic-etcd-amb: warning: ignoring /services/svc/a/b: not an instance key (a '/' after "
                            "/services/svc/)\n") == 1);
  CHECK(amb.count_in_output("dynamic-etcd-amb: warning: ignoring /services/svc/: not an instance key (empty instance "
                            "id)\n") == 1);
  CHECK(amb.count_in_output("ignoring /services/svc/c/d") == 1);
  CHECK(amb.count_in_output("ignoring") == 3);
}

TEST_CASE("outside text in log lines is escaped and cut: values, keys, arguments") {
  etcd_cluster etcd;
  tagged_redis one("one");
  etcd.etcdctl({"put", "/services/logs/a", one.json()});
  ambassador amb(etcd.url(), "logs");
  CHECK(amb.routes_to("one"));
  const std::string forged = "1.2.3.4:1\ndynamic-etcd-amb: instance /services/logs/z added: 6.6.6.6:1";
  put_raw(etcd.client_port(), "/services/logs/y", forged);
  const std::string big = std::string(1048576, 'h') + ":99999";
  put_raw(etcd.client_port(), "/services/logs/big", big);
  put_raw(etcd.client_port(), "/services/logs/ansi", "\x1b[31mred\x1b[0m:1");
  put_raw(etcd.client_port(), "/services/logs/k\nforged", "x");
  CHECK(wait_until([&] { return amb.count_in_output("/services/logs/k\\nforged") == 1; }, 10s, 50ms));
  const auto out = amb.output();
  CHECK(out.find("\ndynamic-etcd-amb: instance /services/logs/z") == std::string::npos);
  CHECK(out.find('\x1b') == std::string::npos);
  CHECK(amb.count_in_output("dynamic-etcd-amb: warning: skipping /services/logs/y: bad registry value: bad address "
                            "\"1.2.3.4:1\\ndynamic-etcd-amb: instance /services/logs/z added: 6.6.6.6:1\": put an IPv6 "
                            "address in brackets, as [::1]:6379\n") == 1);
  CHECK(amb.count_in_output("dynamic-etcd-amb: warning: skipping /services/logs/ansi: bad registry value: bad address "
                            "\"\\x1b[31mred\\x1b[0m:1\": unexpected '[' or ']' in host\n") == 1);
  CHECK(amb.count_in_output("dynamic-etcd-amb: warning: skipping /services/logs/k\\nforged: bad registry value \"x\": "
                            "neither {\"host\":..,\"port\":..} nor HOST:PORT\n") == 1);
  CHECK(amb.count_in_output("dynamic-etcd-amb: warning: skipping /services/logs/big: bad registry value: bad port "
                            "\"99999\" in \"" +
                            std::string(80, 'h') + "\u2026\" (1048582 bytes)\n") == 1);
  // A JSON host is any string: the address in the "added" line is escaped too.
  put_raw(etcd.client_port(), "/services/logs/osc", R"({"host":"\u001b]0;pwned\u0007x","port":1})");
  CHECK(wait_until(
      [&] {
        return amb.count_in_output("dynamic-etcd-amb: instance /services/logs/osc added: \\x1b]0;pwned\\x07x:1\n") == 1;
      },
      10s, 50ms));
  CHECK(amb.output().find('\x1b') == std::string::npos);
  CHECK(amb.count_in_output("\u2026\" (1048582 bytes)") == 1);
  for (const auto& line : lines_with(out, "dynamic-etcd-amb")) CHECK_MESSAGE(line.size() < 600, line);

  const std::string hint = "Try 'dynamic-etcd-amb --help'.\n";
  auto r = run({AMB_DYNAMIC_ETCD_AMB_BIN, "a\nb/c", "6379"}, 10s);
  CHECK(r.status == 2);
  CHECK(r.output == "dynamic-etcd-amb: bad SERVICE \"a\\nb/c\"\n" + hint);
  r = run({AMB_DYNAMIC_ETCD_AMB_BIN, "svc", std::string(100000, 'x')}, 10s);
  CHECK(r.status == 2);
  CHECK(r.output == "dynamic-etcd-amb: bad port \"" + std::string(80, 'x') +
                        "\u2026\" (100000 bytes) (expected 1..65535)\n" + hint);
  r = run({AMB_DYNAMIC_ETCD_AMB_BIN, "--policy", "\x1b[2J", "svc", "1"}, 10s);
  CHECK(r.status == 2);
  CHECK(r.output.find('\x1b') == std::string::npos);
}

TEST_CASE("a catch-up longer than the line limit: the prefix is read again and watched from there") {
  etcd_cluster etcd;
  tagged_redis one("one"), two("two"), three("three");
  forwarder fw(etcd.client_port());
  etcd.etcdctl({"put", "/services/big/one", one.json()});
  ambassador amb(fw.url(), "big", {"--freshness-check", "0"});
  CHECK(amb.routes_to("one"));
  fw.cut();
  const std::string pad(64 * 1024, 'p');
  for (int i = 0; i < 300; ++i)
    put_raw(etcd.client_port(), "/services/big/pad-" + std::to_string(i),
            R"({"host":"127.0.0.1","port":)" + std::to_string(two.server.port()) + R"(,"pad":")" + pad + "\"}");
  etcd.etcdctl({"del", "/services/big/one"});
  fw.restore();
  CHECK(wait_until([&] { return amb.metric("amb_instances") == 300; }, 30s, 100ms));
  for (int i = 0; i < 4; ++i) CHECK(who_via(amb.port()) == "two");
  CHECK(amb.count_in_output(": a message longer than 16 MiB (catching up from revision ") == 1);
  // The watch goes on from the re-read: later changes arrive.
  etcd.etcdctl({"del", "--prefix", "/services/big/pad-"});
  etcd.etcdctl({"put", "/services/big/three", three.json()});
  CHECK(amb.routes_to("three"));
  CHECK(wait_until([&] { return amb.metric("amb_instances") == 1; }, 10s, 50ms));
  CHECK(amb.count_in_output("a message longer than") == 1);
}

TEST_CASE("a stalled stream is noticed by the freshness check; /healthz fails when the set is stale; resumed line") {
  etcd_cluster etcd;
  tagged_redis one("one"), two("two");
  forwarder fw(etcd.client_port());
  etcd.etcdctl({"put", "/services/stall/one", one.json()});
  ambassador amb(fw.url(), "stall", {"--freshness-check", "1s", "--max-staleness", "4s"});
  CHECK(amb.routes_to("one"));
  CHECK(amb.metric("amb_watch_fresh_age_seconds") >= 0);
  CHECK(amb.metric("amb_watch_fresh_age_seconds") < 4);
  fw.stall();  // the open watch stream (and any pooled connection) goes silent, without closing
  etcd.etcdctl({"put", "/services/stall/two", two.json()});
  etcd.etcdctl({"del", "/services/stall/one"});
  CHECK(amb.routes_to("two", 20s));
  CHECK(amb.metric("amb_watch_resyncs_total") >= 1);
  CHECK(amb.count_in_output("; reading the prefix again") >= 1);
  CHECK(amb.healthy());

  // etcd unreachable: the set can no longer be confirmed, and /healthz says so after --max-staleness.
  fw.cut();
  CHECK(wait_until([&] { return !amb.healthy(); }, 15s, 100ms));
  CHECK(amb.metric("amb_watch_fresh_age_seconds") > 4);
  CHECK(who_via(amb.port()) == "two");  // the last known set still serves
  fw.restore();
  CHECK(wait_until([&] { return amb.healthy(); }, 15s, 100ms));
  CHECK(wait_until([&] { return amb.count_in_output(": resumed at revision ") >= 1; }, 10s, 50ms));
  auto resumed = lines_with(amb.output(), ": resumed at revision ");
  REQUIRE(resumed.size() == 1);
  CHECK(std::regex_match(resumed[0], std::regex("dynamic-etcd-amb: watch /services/stall/ at " + fw.url() +
                                                ": resumed at revision [0-9]+ after ([0-9]+(\\.[0-9])?s|[0-9]+ms)")));
}

TEST_CASE("a wiped etcd whose revisions already passed the old highest one is noticed by the freshness check") {
  etcd_cluster etcd;
  tagged_redis one("one"), two("two");
  forwarder fw(etcd.client_port());
  etcd.etcdctl({"put", "/services/wiped/one", one.json()});
  ambassador amb(fw.url(), "wiped", {"--freshness-check", "1s"});
  CHECK(amb.routes_to("one"));
  // While the ambassador cannot reach it, etcd loses its data and its new history runs past the old
  // revision: the resumed watch then replays only what the new history holds, and no delete of
  // "one" ever comes. Only a comparison with etcd's current state finds "one" stale.
  fw.cut();
  etcd.wipe_and_restart();
  for (int i = 0; i < 20; ++i) etcd.etcdctl({"put", "/elsewhere/counter", std::to_string(i)});
  etcd.etcdctl({"put", "/services/wiped/two", two.json()});
  fw.restore();
  // Converged within 30 s: "two" only (a stale "one" would still answer, since its redis runs). The
  // count is read before and after the connection: on the way the set is {one}, then {one, two} (the
  // resumed watch adds "two" before the freshness check drops "one"), and a count of 1 read while
  // the set was {one}, followed by a connection balanced to "two" once it was {one, two}, is not
  // convergence (seen under load in CI).
  CHECK_MESSAGE(wait_until(
                    [&] {
                      return amb.metric("amb_instances") == 1 && who_via(amb.port()) == "two" &&
                             amb.metric("amb_instances") == 1;
                    },
                    30s, 200ms),
                amb.output());
  for (int i = 0; i < 4; ++i) CHECK(who_via(amb.port()) == "two");
}

TEST_CASE("before the first read of etcd, a turned-away client is told that etcd was not reached") {
  forwarder fw(free_port());  // forwards to nothing: etcd is unreachable
  fw.cut();
  raw_ambassador amb(fw.url(), "redis-A");
  REQUIRE(wait_until([&] { return amb.process.output().find("listening on") != std::string::npos; }, 10s, 20ms));
  blocking_conn c(amb.port);
  REQUIRE(c.ok());
  CHECK(c.read_reply() == "");
  CHECK(wait_until([&] { return amb.process.output().find("closing connection") != std::string::npos; }, 10s, 20ms));
  auto lines = lines_with(amb.process.output(), "closing connection");
  REQUIRE(lines.size() == 1);
  CHECK(std::regex_match(lines[0],
                         std::regex("dynamic-etcd-amb: warning: etcd not reached yet \\(no instance known "
                                    "for /services/redis-A/\\); closing connection from 127\\.0\\.0\\.1:[0-9]+")));
  CHECK(!amb.healthy());
}

TEST_CASE("running out of file descriptors is the ambassador's limit, not a failure of the instance") {
  const auto prlimit = require_program("prlimit", "util-linux");
  etcd_cluster etcd;
  tagged_redis one("one");
  etcd.etcdctl({"put", "/services/fd/one", one.json()});
  // No freshness check: its request would take a descriptor of its own at an unknown moment.
  raw_ambassador amb(etcd.url(), "fd", {"--max-fails", "1", "--freshness-check", "0"});
  REQUIRE(wait_until([&] { return amb.healthy(); }, 20s, 20ms));
  std::vector<std::unique_ptr<blocking_conn>> held;
  for (int i = 0; i < 5; ++i) {
    held.push_back(std::make_unique<blocking_conn>(amb.port, std::string(), 3s));
    REQUIRE(held.back()->ok());
    REQUIRE(held.back()->who() == "one");
  }
  // Exactly one descriptor left: the limit is set at the second-lowest free descriptor number, so
  // the next client is accepted into the lowest and the connect to the instance fails with EMFILE.
  const auto pid = amb.process.pid();
  std::set<int> used;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
    used.insert(std::stoi(e.path().filename().string()));
  int first_free = 0;
  while (used.count(first_free)) ++first_free;
  int second_free = first_free + 1;
  while (used.count(second_free)) ++second_free;
  const std::string limit = std::to_string(second_free);
  auto set = run({prlimit, "--pid", std::to_string(pid), "--nofile=" + limit + ":" + limit});
  REQUIRE_MESSAGE(set.status == 0, set.output);
  {
    blocking_conn extra(amb.port, std::string(), 3s);
    CHECK((!extra.ok() || extra.who() != "one"));
  }
  CHECK(wait_until(
      [&] {
        return amb.process.output().find("(a limit of this ambassador, not a failure of the instance)") !=
               std::string::npos;
      },
      10s, 20ms));
  // Room again (the held connections close): the instance was never ejected and serves at once.
  held.clear();
  CHECK(wait_until([&] { return who_via(amb.port) == "one"; }, 10s, 50ms));
  const auto out = amb.process.output();
  CHECK(out.find("ejected") == std::string::npos);
  CHECK(http_get_raw(amb.metrics_port, "/metrics").find("amb_connect_failures_total{") == std::string::npos);
  for (int i = 0; i < 3; ++i) CHECK(who_via(amb.port) == "one");
}

}  // namespace dynamic_hostile_registry_test
