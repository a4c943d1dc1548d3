// SPDX-License-Identifier: MIT
// Fault: a network partition of "host B". Host B is a network namespace joined to this one (host A)
// by one veth link; etcd runs on host A and listens on A's end of the link; dynamic-etcd-amb and its
// redis backends run in host B. With the link down the ambassador keeps serving the last set it knew
// (clients in host B see no failure), while the set changes in etcd; with the link up again it
// converges: the new instance gets traffic, the deleted one none.
#include "support/dynamic_amb.hpp"
#include "support/netns.hpp"

#include <doctest/doctest.h>

#include <set>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace partition_test {

using namespace amb::test;

namespace {

/// One etcd member on host A, listening on loopback and on A's end of the link to host B.
class etcd_on_link {
public:
  explicit etcd_on_link(const std::string& link_ip) : port_(free_port()), link_ip_(link_ip) {
    const auto etcd = require_program("etcd", "etcd-server");
    require_program("etcdctl", "etcd-client");
    const std::string p = std::to_string(port_), peer = "http://127.0.0.1:" + std::to_string(free_port());
    const std::string urls = "http://127.0.0.1:" + p + "," + url_on_link();
    child_process::options o;
    o.output = dir_.path() / "etcd.log";
    o.unset_env = {"ETCDCTL_ENDPOINTS", "ETCD_NAME", "ETCD_DATA_DIR"};
    process_.start(
        {etcd, "--name=a", "--data-dir=" + (dir_.path() / "data").string(), "--listen-client-urls=" + urls,
         "--advertise-client-urls=" + urls, "--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
         "--initial-cluster=a=" + peer, "--initial-cluster-state=new"},
        o);
    bool ok = wait_until(
        [&] {
          return !process_.running() || http_get_raw(port_, "/health").find("\"health\":\"true\"") != std::string::npos;
        },
        30s, 50ms);
    if (!ok || !process_.running())
      throw std::runtime_error("test set-up: etcd did not become healthy on " + urls + ":\n" + process_.output());
  }
  /// The URL host B uses: host A's end of the link.
  std::string url_on_link() const { return "http://" + link_ip_ + ":" + std::to_string(port_); }
  std::uint16_t port() const { return port_; }
  /// etcdctl (API v3) on host A's loopback; throws on failure.
  void etcdctl(std::vector<std::string> args) {
    std::vector<std::string> argv{"etcdctl", "--endpoints=http://127.0.0.1:" + std::to_string(port_),
                                  "--command-timeout=10s"};
    argv.insert(argv.end(), args.begin(), args.end());
    child_process::options o;
    o.env["ETCDCTL_API"] = "3";
    auto r = run(argv, 30s, o);
    if (r.status != 0) throw std::runtime_error("etcdctl failed (" + std::to_string(r.status) + "): " + r.output);
  }
  std::string log() const { return process_.output(); }

private:
  temp_dir dir_;
  std::uint16_t port_;
  std::string link_ip_;
  child_process process_;
};

/// A redis-server inside host B on B's loopback, tagged with a name (`GET who` answers it).
class redis_in_b {
public:
  redis_in_b(const network_namespace& net, std::uint16_t port, std::string name) : port_(port), name_(std::move(name)) {
    const auto bin = require_program("redis-server", "redis-server");
    child_process::options o;
    o.working_dir = dir_.path();
    process_.start(
        net.command({bin, "--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                     "--dir", dir_.path().string(), "--daemonize", "no", "--protected-mode", "no"}),
        o);
    bool ok = wait_until(
        [&] { return !process_.running() || net.inside([&] { return redis_server::ping_raw(port_); }); }, 15s, 20ms);
    auto tagged = ok ? net.inside([&] { return tcp_exchange(port_, "SET who " + name_ + "\r\n", 2s); }) : "";
    if (!ok || !process_.running() || tagged.rfind("+OK", 0) != 0)
      throw std::runtime_error("test set-up: redis-server in host B did not start on port " + std::to_string(port_) +
                               ":\n" + process_.output());
  }
  /// The registry value: B's loopback, where the ambassador (also in B) reaches it.
  std::string value() const { return "{\"host\":\"127.0.0.1\",\"port\":" + std::to_string(port_) + "}"; }
  const std::string& name() const { return name_; }

private:
  temp_dir dir_;
  std::uint16_t port_;
  std::string name_;
  child_process process_;
};

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ",") + (x.empty() ? std::string("<failed>") : x);
  return s;
}

}  // namespace

// The partition scenario. With `etcd_forgets_the_watch`, host A also drops its end of the ambassador's
// watch connection while the link is down (as etcd does once its keepalive or retransmissions give up
// during a long partition): the reset it sends is lost, so host B learns of it only from its own TCP
// keepalive probes once the link is back (http_client_options::keepalive_*).
void play_partition(bool etcd_forgets_the_watch) {
  network_namespace net;  // first: removed last, after every process that runs inside
  etcd_on_link etcd(net.host_a_ip());
  const std::string service = "partition-" + std::to_string(::getpid());
  const std::string dir = "/services/" + service + "/";
  // Host B is a fresh namespace: every port is free there.
  const std::uint16_t amb_port = 7000, metrics_port = 7001;
  redis_in_b r1(net, 7101, "r1"), r2(net, 7102, "r2"), r3(net, 7103, "r3");
  etcd.etcdctl({"put", dir + "r1", r1.value()});
  etcd.etcdctl({"put", dir + "r2", r2.value()});

  child_process amb(net.command({AMB_DYNAMIC_ETCD_AMB_BIN, "--etcd", etcd.url_on_link(), "--listen",
                                 "127.0.0.1:" + std::to_string(amb_port), "--metrics",
                                 "127.0.0.1:" + std::to_string(metrics_port), service, std::to_string(amb_port)}));
  INFO("dynamic-etcd-amb in host B:\n", amb.output());
  // Clients in host B: `n` fresh connections through the ambassador, each asking which redis answered.
  auto sample = [&](int n, std::chrono::milliseconds gap = 0ms) {
    return net.inside([&] {
      std::vector<std::string> who;
      for (int i = 0; i < n; ++i) {
        who.push_back(who_via(amb_port));
        std::this_thread::sleep_for(gap);
      }
      return who;
    });
  };
  auto seen = [](const std::vector<std::string>& who) { return std::set<std::string>(who.begin(), who.end()); };
  REQUIRE(wait_until(
      [&] {
        return !amb.running() ||
               net.inside([&] { return http_get_raw(metrics_port, "/healthz").rfind("HTTP/1.1 200", 0) == 0; });
      },
      20s));
  REQUIRE(amb.running());
  REQUIRE(wait_until([&] { return seen(sample(4)) == std::set<std::string>{"r1", "r2"}; }, 15s));
  REQUIRE(net.inside([&] { return tcp_connects(net.host_a_ip(), etcd.port()); }));
  // A client connected before the partition, kept open through it.
  auto held = net.inside([&] { return blocking_conn(amb_port); });
  REQUIRE(held.ok());
  REQUIRE(held.command("PING") == "+PONG\r\n");

  // Partition: host B's link goes down; etcd is out of B's reach (and B out of etcd's).
  net.link_down();
  CHECK_FALSE(net.inside([&] { return tcp_connects(net.host_a_ip(), etcd.port(), 1s); }));
  if (etcd_forgets_the_watch) {
    auto ss = require_program("ss", "iproute2");
    auto killed = run({ss, "-K", "-t", "dst", net.host_b_ip()}, 10s);
    REQUIRE_MESSAGE(killed.status == 0, "ss -K (needs CONFIG_INET_DIAG_DESTROY): ", killed.output);
    REQUIRE_MESSAGE(killed.output.find(net.host_b_ip()) != std::string::npos,
                    "no connection from host B killed: ", killed.output);
  }
  // Meanwhile the set changes in etcd: r3 added, r1 deleted (r1 itself keeps running).
  etcd.etcdctl({"put", dir + "r3", r3.value()});
  etcd.etcdctl({"del", dir + "r1"});
  // Clients in B see no failure: every connection is served, by the last known set (r1 and r2).
  const auto during = sample(30, 100ms);
  INFO("during the partition: ", join(during));
  CHECK(std::count(during.begin(), during.end(), std::string()) == 0);
  CHECK(seen(during) == std::set<std::string>{"r1", "r2"});
  CHECK(held.command("PING") == "+PONG\r\n");
  CHECK(amb.running());
  CHECK_FALSE(net.inside([&] { return tcp_connects(net.host_a_ip(), etcd.port(), 1s); }));  // still partitioned

  // The link comes back: the ambassador converges to the new set.
  net.link_up();
  std::vector<std::string> last;
  CHECK(wait_until(
      [&] {
        last = sample(6);
        return seen(last).count("r3") && !seen(last).count("r1");
      },
      60s, 200ms));
  INFO("after the partition, last sample: ", join(last));
  const auto after = sample(12);
  INFO("after convergence: ", join(after));
  CHECK(seen(after) == std::set<std::string>{"r2", "r3"});  // every one served; r1 gets none
  CHECK(held.command("PING") == "+PONG\r\n");               // the old connection was never cut
  CHECK(amb.running());
  CHECK(net.inside([&] { return tcp_connects(net.host_a_ip(), etcd.port()); }));
}

TEST_CASE("partition of host B: the ambassador serves the last known set, then converges when the link is back") {
  play_partition(false);
}

TEST_CASE(
    "partition of host B while etcd drops the watch connection: keepalive finds it dead, the ambassador converges") {
  play_partition(true);
}

}  // namespace partition_test
