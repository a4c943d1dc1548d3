// SPDX-License-Identifier: MIT
// Test support for the fault suite: redis in real podman containers, registrars on several etcd
// endpoints, and a redis client loop that counts every failed request while faults are injected.
#pragma once

#include "support/docker_register_support.hpp"
#include "support/dynamic_amb.hpp"
#include "support/etcd_server.hpp"
#include "support/podman_service.hpp"

#include <atomic>
#include <mutex>
#include <thread>

namespace amb::test {

/// A redis-server running in a real podman container (the busybox test image with the host's /usr
/// mounted read-only: no redis image can be pulled here), published on 127.0.0.1, tagged `who` = name.
struct redis_container {
  redis_container(podman_service& podman, const std::string& stem) {
    const auto bin = require_program("redis-server", "redis-server");
    name = podman.unique_name(stem);
    std::vector<std::string> options{"-p", "127.0.0.1::6379", "-v", "/usr:/usr:ro"};
    for (const char* dir : {"/lib", "/lib64"})  // merged-/usr symlinks: the loader looks there
      if (std::filesystem::exists(dir)) options.insert(options.end(), {"-v", std::string(dir) + ":" + dir + ":ro"});
    podman.run_container(name, options,
                         {bin, "--port", "6379", "--save", "", "--appendonly", "no", "--protected-mode", "no"});
    port = podman.published_port(name, 6379);
    if (port == 0) throw std::runtime_error("test set-up: container " + name + " publishes no port for 6379");
    bool up = wait_until([&] { return redis_server::ping_raw(port); }, 20s, 50ms);
    if (!up)
      throw std::runtime_error("test set-up: redis in container " + name + " does not answer on port " +
                               std::to_string(port) + ":\n" + podman.podman({"logs", name}).output);
    auto r = redis_cli(port, {"SET", "who", name});
    if (r.status != 0) throw std::runtime_error("test set-up: cannot tag redis in " + name + ": " + r.output);
  }
  /// What docker-register writes for it (JSON, the seed's format).
  std::string value() const { return "{\"host\":\"127.0.0.1\",\"port\":" + std::to_string(port) + "}"; }
  std::string name;
  std::uint16_t port = 0;
};

/// docker-register (seed mode) for `container`, talking to every member in `etcd_endpoints`.
inline child_process start_registrar(const std::string& etcd_endpoints, const std::string& engine_url,
                                     const std::string& container, const std::string& service,
                                     const std::string& ttl = "5s") {
  std::vector<std::string> argv{AMB_DOCKER_REGISTER_BIN,
                                "--etcd",
                                etcd_endpoints,
                                "--docker",
                                engine_url,
                                "--ttl",
                                ttl,
                                container,
                                "6379",
                                service};
  child_process::options opts;
  opts.unset_env = {"DOCKER_HOST", "ETCDCTL_ENDPOINTS", "HOST_IP"};
  return child_process(argv, opts);
}

/// Number of leases etcd holds ("" lines of `etcdctl lease list` after its header), -1 when etcdctl fails.
inline int etcd_lease_count(etcd_cluster& etcd) {
  auto r = etcd.etcdctl_result({"lease", "list"});
  if (r.status != 0) return -1;
  int n = 0;
  std::istringstream in(r.output);
  std::string line;
  while (std::getline(in, line)) n += line.rfind("found ", 0) != 0 && !line.empty();
  return n;
}

/// The value of metric line `name` (e.g. `etcd_debugging_mvcc_watcher_total`, or with its labels) on
/// etcd member i's /metrics, -1 when the member does not answer or has no such line.
inline double etcd_member_metric(etcd_cluster& etcd, std::size_t i, const std::string& name) {
  const auto raw = http_get_raw(etcd.client_port(i), "/metrics");
  const auto at = raw.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::strtod(raw.c_str() + at + name.size() + 2, nullptr);
}

/// Keepalive requests member i received (each registrar sends one per tick to the member it talks to).
inline double etcd_keepalives(etcd_cluster& etcd, std::size_t i) {
  return etcd_member_metric(etcd, i,
                            "grpc_server_msg_received_total{grpc_method=\"LeaseKeepAlive\",grpc_service=\"etcdserverpb."
                            "Lease\",grpc_type=\"bidi_stream\"}");
}

/// Watchers open on member i (the ambassador's watch is the only one in these tests).
inline double etcd_watchers(etcd_cluster& etcd, std::size_t i) {
  return etcd_member_metric(etcd, i, "etcd_debugging_mvcc_watcher_total");
}

/// A redis client on its own thread, through the ambassador on `port`, for as long as it lives:
/// each round does PING, SET and GET on one long-lived connection and on one new connection, and
/// counts every request whose reply is missing or wrong (with the first few failures described).
class redis_client_loop {
public:
  explicit redis_client_loop(std::uint16_t port) : port_(port), thread_([this] { loop(); }) {}
  ~redis_client_loop() { stop(); }
  /// Ends the loop and waits for it.
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  /// Requests answered correctly so far.
  std::uint64_t ok() const { return ok_; }
  /// Requests that failed so far.
  std::uint64_t failed() const { return failed_; }
  /// The first failures, one line each.
  std::string failures() {
    std::lock_guard<std::mutex> lock(m_);
    return failures_;
  }

private:
  // PING, SET, GET on `c`; false after the first failure (the connection is then dropped).
  bool round(blocking_conn& c, const std::string& key, const char* which) {
    const std::string value = "v" + std::to_string(counter_++);
    const std::pair<std::string, std::string> steps[] = {
        {"PING", "+PONG\r\n"},
        {"SET " + key + " " + value, "+OK\r\n"},
        {"GET " + key, "$" + std::to_string(value.size()) + "\r\n" + value + "\r\n"}};
    for (const auto& [command, want] : steps) {
      auto got = c.ok() ? c.command(command) : std::string();
      if (got == want) {
        ++ok_;
        continue;
      }
      ++failed_;
      std::lock_guard<std::mutex> lock(m_);
      if (failures_.size() < 2000)
        failures_ += std::string(which) + " connection: " + command + " -> \"" + got.substr(0, 60) + "\"\n";
      return false;
    }
    return true;
  }
  void loop() {
    blocking_conn held(port_);
    while (!stop_) {
      if (!round(held, "held", "long-lived")) held = blocking_conn(port_);  // counted; go on with a new one
      blocking_conn fresh(port_);
      round(fresh, "fresh", "new");
      std::this_thread::sleep_for(20ms);  // pacing: two cores are shared with etcd, podman and the build
    }
  }

  std::uint16_t port_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> ok_{0}, failed_{0};
  std::uint64_t counter_ = 0;  // loop thread only
  std::mutex m_;
  std::string failures_;
  std::thread thread_;  // last: it uses the members above
};

}  // namespace amb::test
