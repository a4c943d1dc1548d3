// SPDX-License-Identifier: MIT
// Test support: real etcd members (Debian's etcd-server) on free loopback ports, in temp folders.
#pragma once

#include "support/process.hpp"

#include <memory>
#include <string>
#include <vector>

namespace amb::test {

/// A blocking "GET path" to ip:port (127.0.0.1 by default, or ::1); returns the whole raw response ("" on failure).
inline std::string http_get_raw(std::uint16_t port, const std::string& path, std::chrono::milliseconds timeout = 2s,
                                const std::string& ip = "127.0.0.1") {
  return tcp_exchange(port, "GET " + path + " HTTP/1.0\r\nHost: " + ip_port(ip, port) + "\r\n\r\n", timeout, false, ip);
}

/// An etcd cluster of N members on 127.0.0.1, or on ::1 (IPv6) when asked (N = 1 for most tests). Every member is
/// stopped by PID when the object goes; members can be killed and restarted on the same
/// ports and data folders.
class etcd_cluster {
public:
  struct member {
    std::string name;
    std::uint16_t client_port = 0;
    std::uint16_t peer_port = 0;
    std::filesystem::path data_dir;
    child_process process;
    std::string ip = "127.0.0.1";  ///< where it listens for clients and peers
    std::string url() const { return "http://" + ip_port(ip, client_port); }
    std::string peer_url() const { return "http://" + ip_port(ip, peer_port); }
  };

  /// Starts `size` members and waits until every one reports healthy.
  /// `extra_args` go to every member (e.g. "--experimental-watch-progress-notify-interval=1s");
  /// `ip` is where they listen, "127.0.0.1" or "::1" (client URLs http://[::1]:PORT).
  explicit etcd_cluster(int size = 1, std::vector<std::string> extra_args = {}, const std::string& ip = "127.0.0.1")
      : extra_(std::move(extra_args)) {
    etcd_ = require_program("etcd", "etcd-server");
    require_program("etcdctl", "etcd-client");
    for (int i = 0; i < size; ++i) {
      auto m = std::make_unique<member>();
      m->name = "m" + std::to_string(i);
      m->ip = ip;
      m->client_port = free_port(ip);
      m->peer_port = free_port(ip);
      m->data_dir = dir_.path() / m->name;
      members_.push_back(std::move(m));
    }
    for (std::size_t i = 0; i < members_.size(); ++i) start(i, "new");
    for (std::size_t i = 0; i < members_.size(); ++i) wait_healthy(i);
  }

  /// Comma-separated client URLs of every member.
  std::string endpoints() const {
    std::string s;
    for (auto& m : members_) s += (s.empty() ? "" : ",") + m->url();
    return s;
  }
  /// Client URL of member i.
  std::string url(std::size_t i = 0) const { return members_.at(i)->url(); }
  std::uint16_t client_port(std::size_t i = 0) const { return members_.at(i)->client_port; }
  std::size_t size() const { return members_.size(); }
  member& at(std::size_t i) { return *members_.at(i); }

  /// SIGKILL member i (no goodbye to clients: they see EOF mid-stream).
  void kill9(std::size_t i = 0) { members_.at(i)->process.stop(); }
  /// SIGTERM member i and wait for it.
  void terminate(std::size_t i = 0) {
    members_.at(i)->process.signal(SIGTERM);
    if (members_.at(i)->process.wait(10s) == -1) members_.at(i)->process.stop();
  }
  /// Starts member i again on its ports and data folder, and waits for health when `wait` is set
  /// (a lone member of a 3-cluster cannot be healthy without quorum).
  void restart(std::size_t i = 0, bool wait = true) {
    start(i, "existing");
    if (wait) wait_healthy(i);
  }
  /// Stops member i, removes its data and starts it empty (single-member clusters only).
  void wipe_and_restart() {
    kill9(0);
    std::filesystem::remove_all(members_.at(0)->data_dir);
    start(0, "new");
    wait_healthy(0);
  }
  /// Runs etcdctl (API v3) against all members; throws on a non-zero exit.
  std::string etcdctl(std::vector<std::string> args, child_process::options opts = {}) {
    auto r = etcdctl_result(std::move(args), std::move(opts));
    if (r.status != 0) throw std::runtime_error("etcdctl failed (" + std::to_string(r.status) + "): " + r.output);
    return r.output;
  }
  /// Runs etcdctl (API v3) and returns its exit code and output.
  run_result etcdctl_result(std::vector<std::string> args, child_process::options opts = {}) {
    std::vector<std::string> argv{"etcdctl", "--endpoints=" + endpoints(), "--command-timeout=10s"};
    argv.insert(argv.end(), args.begin(), args.end());
    opts.env["ETCDCTL_API"] = "3";
    return run(argv, 30s, std::move(opts));
  }
  /// True when member i answers /health with "true".
  bool healthy(std::size_t i) const {
    const auto& m = *members_.at(i);
    return http_get_raw(m.client_port, "/health", 2s, m.ip).find("\"health\":\"true\"") != std::string::npos;
  }
  /// Log output of member i.
  std::string log(std::size_t i = 0) const { return members_.at(i)->process.output(); }

private:
  void start(std::size_t i, const std::string& state) {
    auto& m = *members_.at(i);
    std::string initial;
    for (auto& o : members_) initial += (initial.empty() ? "" : ",") + o->name + "=" + o->peer_url();
    std::vector<std::string> argv{etcd_,
                                  "--name=" + m.name,
                                  "--data-dir=" + m.data_dir.string(),
                                  "--listen-client-urls=" + m.url(),
                                  "--advertise-client-urls=" + m.url(),
                                  "--listen-peer-urls=" + m.peer_url(),
                                  "--initial-advertise-peer-urls=" + m.peer_url(),
                                  "--initial-cluster=" + initial,
                                  "--initial-cluster-state=" + state,
                                  "--initial-cluster-token=amb-test"};
    argv.insert(argv.end(), extra_.begin(), extra_.end());
    child_process::options opts;
    opts.output = dir_.path() / (m.name + ".log");
    opts.unset_env = {"ETCDCTL_ENDPOINTS", "ETCD_NAME", "ETCD_DATA_DIR"};
    m.process.start(argv, opts);
  }
  void wait_healthy(std::size_t i) {
    auto& m = *members_.at(i);
    bool ok = wait_until([&] { return !m.process.running() || healthy(i); }, 30s, 50ms);
    if (!ok || !m.process.running())
      throw std::runtime_error("test set-up: etcd member " + m.name + " did not become healthy on " + m.url() +
                               "; its log:\n" + m.process.output());
  }

  temp_dir dir_;
  std::string etcd_;
  std::vector<std::string> extra_;
  std::vector<std::unique_ptr<member>> members_;
};

}  // namespace amb::test
