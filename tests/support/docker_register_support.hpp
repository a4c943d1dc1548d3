// SPDX-License-Identifier: MIT
// Test support for docker-register: the program against a test etcd and podman socket, etcd key
// reads, a unix server answering garbage, and a recording proxy in front of the engine's socket.
#pragma once

#include "support/etcd_server.hpp"
#include "support/podman_service.hpp"

#include <poll.h>
#include <sys/un.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>

namespace amb::test {

/// docker-register started against `etcd` and `engine_url`, with a clean environment.
inline child_process start_docker_register(const etcd_cluster& etcd, const std::string& engine_url,
                                           std::vector<std::string> args) {
  std::vector<std::string> argv{AMB_DOCKER_REGISTER_BIN, "--etcd", etcd.url(0), "--docker", engine_url};
  argv.insert(argv.end(), args.begin(), args.end());
  child_process::options opts;
  opts.unset_env = {"DOCKER_HOST", "ETCDCTL_ENDPOINTS", "HOST_IP"};
  return child_process(argv, opts);
}

/// docker-register run to completion (killed after `timeout`).
inline run_result run_docker_register(const etcd_cluster& etcd, const std::string& engine_url,
                                      std::vector<std::string> args, std::chrono::milliseconds timeout = 20s) {
  std::vector<std::string> argv{AMB_DOCKER_REGISTER_BIN, "--etcd", etcd.url(0), "--docker", engine_url};
  argv.insert(argv.end(), args.begin(), args.end());
  child_process::options opts;
  opts.unset_env = {"DOCKER_HOST", "ETCDCTL_ENDPOINTS", "HOST_IP"};
  return run(argv, timeout, opts);
}

/// The value of `key` in etcd, "" when absent (registrations are never empty).
inline std::string etcd_value(etcd_cluster& etcd, const std::string& key) {
  auto r = etcd.etcdctl_result({"get", "--print-value-only", key});
  std::string v = r.status == 0 ? r.output : "";
  while (!v.empty() && v.back() == '\n') v.pop_back();
  return v;
}

/// Every key → value under `prefix`.
inline std::map<std::string, std::string> etcd_prefix(etcd_cluster& etcd, const std::string& prefix) {
  auto r = etcd.etcdctl_result({"get", "--prefix", prefix});
  std::map<std::string, std::string> out;
  if (r.status != 0) return out;
  std::istringstream in(r.output);
  std::string key, value;
  while (std::getline(in, key) && std::getline(in, value)) out[key] = value;
  return out;
}

/// A unix socket server on a thread; `serve(fd)` handles each accepted connection, then it is closed.
class unix_server {
public:
  unix_server(std::string path, std::function<void(int)> serve) : path_(std::move(path)), serve_(std::move(serve)) {
    ::unlink(path_.c_str());
    fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path_.c_str());
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 16) != 0)
      throw std::runtime_error("test set-up: cannot listen on " + path_);
    thread_ = std::thread([this] { loop(); });
  }
  ~unix_server() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
    for (auto& t : workers_) t.join();
    ::unlink(path_.c_str());
  }
  /// "unix:///path".
  std::string url() const { return "unix://" + path_; }
  /// True once stop has begun (for workers that loop).
  bool stopping() const { return stop_; }

private:
  void loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      workers_.emplace_back([this, c] {
        serve_(c);
        ::close(c);
      });
    }
  }
  std::string path_;
  std::function<void(int)> serve_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<std::thread> workers_;
};

/// Connects to a unix socket path; -1 on failure.
inline int unix_connect(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return fd;
  if (fd >= 0) ::close(fd);
  return -1;
}

/// A proxy on a unix socket in front of another one, recording the request line of every request
/// the client sends (requests without bodies: each head ends with an empty line).
class recording_proxy {
public:
  recording_proxy(const std::string& path, std::string upstream)
      : upstream_(std::move(upstream)), server_(path, [this](int c) { relay(c); }) {}
  /// "unix:///path".
  std::string url() const { return server_.url(); }
  /// Every request line seen so far, e.g. "GET /v1.41/containers/json HTTP/1.1".
  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> lock(mutex_);
    return lines_;
  }

private:
  void relay(int client) {
    int up = unix_connect(upstream_);
    if (up < 0) return;
    std::string head;  // bytes of the client's current request head
    char buf[65536];
    while (!server_.stopping()) {
      pollfd p[2] = {{client, POLLIN, 0}, {up, POLLIN, 0}};
      if (::poll(p, 2, 100) <= 0) continue;
      if (p[0].revents) {
        ssize_t n = ::recv(client, buf, sizeof buf, 0);
        if (n <= 0) break;
        head.append(buf, static_cast<std::size_t>(n));
        std::size_t end;
        while ((end = head.find("\r\n\r\n")) != std::string::npos) {
          std::lock_guard<std::mutex> lock(mutex_);
          lines_.push_back(head.substr(0, head.find("\r\n")));
          head.erase(0, end + 4);
        }
        ::send(up, buf, static_cast<std::size_t>(n), MSG_NOSIGNAL);
      }
      if (p[1].revents) {
        ssize_t n = ::recv(up, buf, sizeof buf, 0);
        if (n <= 0) break;
        ::send(client, buf, static_cast<std::size_t>(n), MSG_NOSIGNAL);
      }
    }
    ::close(up);
  }

  std::string upstream_;
  std::mutex mutex_;
  std::vector<std::string> lines_;
  unix_server server_;  // last: its threads use the members above
};

}  // namespace amb::test
