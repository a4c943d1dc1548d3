// SPDX-License-Identifier: MIT
// Test support for dynamic-etcd-amb: run the real program, talk redis through it, read its /metrics.
#pragma once

#include "support/etcd_server.hpp"
#include "support/process.hpp"
#include "support/redis_server.hpp"

#include <map>
#include <string>
#include <vector>

namespace amb::test {

/// A blocking client connection to ip:port (127.0.0.1 by default, or ::1), optionally from a chosen
/// loopback source address of the same family.
class blocking_conn {
public:
  explicit blocking_conn(std::uint16_t port, const std::string& source_ip = {}, std::chrono::milliseconds timeout = 5s,
                         const std::string& ip = "127.0.0.1") {
    const auto a = make_socket_address(ip, port);
    fd_ = ::socket(a.family, SOCK_STREAM, 0);
    if (fd_ < 0) return;
    timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (!source_ip.empty()) {
      const auto src = make_socket_address(source_ip, 0);
      if (::bind(fd_, src.get(), src.length) != 0) {
        close();
        return;
      }
    }
    if (::connect(fd_, a.get(), a.length) != 0) close();
  }
  blocking_conn(const blocking_conn&) = delete;
  blocking_conn& operator=(const blocking_conn&) = delete;
  blocking_conn(blocking_conn&& o) noexcept : fd_(o.fd_), buf_(std::move(o.buf_)) { o.fd_ = -1; }
  blocking_conn& operator=(blocking_conn&& o) noexcept {
    if (this != &o) {
      close();
      fd_ = o.fd_;
      buf_ = std::move(o.buf_);
      o.fd_ = -1;
    }
    return *this;
  }
  ~blocking_conn() { close(); }
  bool ok() const { return fd_ >= 0; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool send(const std::string& s) {
    std::size_t done = 0;
    while (ok() && done < s.size()) {
      ssize_t n = ::send(fd_, s.data() + done, s.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return ok();
  }
  /// Reads one RESP reply (simple line, or a bulk string read to its end); "" on EOF or timeout.
  std::string read_reply() {
    while (true) {
      auto nl = buf_.find("\r\n");
      if (nl != std::string::npos) {
        if (buf_[0] != '$') return take(nl + 2);
        long len = std::strtol(buf_.c_str() + 1, nullptr, 10);
        std::size_t total = len < 0 ? nl + 2 : nl + 2 + static_cast<std::size_t>(len) + 2;
        if (buf_.size() >= total) return take(total);
      }
      char tmp[65536];
      ssize_t n = ok() ? ::recv(fd_, tmp, sizeof tmp, 0) : -1;
      if (n <= 0) return "";
      buf_.append(tmp, static_cast<std::size_t>(n));
    }
  }
  /// Sends an inline redis command and returns the reply.
  std::string command(const std::string& line) { return send(line + "\r\n") ? read_reply() : ""; }
  /// GET who: the name the redis server behind this connection was tagged with ("" on failure).
  std::string who() { return bulk_value(command("GET who")); }
  /// The payload of a bulk reply "$1\r\na\r\n" -> "a".
  static std::string bulk_value(const std::string& reply) {
    if (reply.empty() || reply[0] != '$') return "";
    auto nl = reply.find("\r\n");
    return reply.substr(nl + 2, reply.size() - nl - 4);
  }

private:
  std::string take(std::size_t n) {
    auto r = buf_.substr(0, n);
    buf_.erase(0, n);
    return r;
  }
  int fd_ = -1;
  std::string buf_;
};

/// One fresh connection through the ambassador at ip:port (127.0.0.1 by default): which redis answered
/// GET who ("" when it failed).
inline std::string who_via(std::uint16_t port, const std::string& source_ip = {}, const std::string& ip = "127.0.0.1") {
  blocking_conn c(port, source_ip, 5s, ip);
  return c.ok() ? c.who() : "";
}

/// A redis server tagged with a name: `GET who` answers it. On 127.0.0.1, or on ::1 only when given "::1".
struct tagged_redis {
  explicit tagged_redis(std::string n, std::string ip = "127.0.0.1") : server(std::move(ip)), name(std::move(n)) {
    tag();
  }
  void tag() {
    auto r = redis_cli(server.port(), {"SET", "who", name}, 10s, server.ip());
    if (r.status != 0) throw std::runtime_error("test set-up: cannot tag redis: " + r.output);
  }
  /// The seed's JSON value, {"host":"127.0.0.1","port":N} (or "::1"), with `more` fields (",\"weight\":0").
  std::string json(const std::string& more = {}) const {
    return R"({"host":")" + server.ip() + R"(","port":)" + std::to_string(server.port()) + more + "}";
  }
  std::string plain() const { return server.address(); }
  redis_server server;
  std::string name;
};

/// The real dynamic-etcd-amb, listening on a free port, with metrics on another; both on 127.0.0.1,
/// or both on ::1 when `ip` is "::1".
class ambassador {
public:
  ambassador(const std::string& etcd_endpoints, const std::string& service, std::vector<std::string> extra = {},
             std::map<std::string, std::string> env = {}, std::string ip = "127.0.0.1")
      : ip_(std::move(ip)), port_(free_port(ip_)), metrics_port_(free_port(ip_)) {
    std::vector<std::string> argv{
        AMB_DYNAMIC_ETCD_AMB_BIN,   "--etcd", etcd_endpoints, "--listen", ip_port(ip_, port_), "--metrics",
        ip_port(ip_, metrics_port_)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(service);
    argv.push_back(std::to_string(port_));
    child_process::options o;
    o.env = std::move(env);
    process_.start(argv, o);
    bool ok = wait_until([&] { return !process_.running() || healthy(); }, 20s, 20ms);
    if (!ok || !process_.running())
      throw std::runtime_error("test set-up: dynamic-etcd-amb did not become ready:\n" + process_.output());
  }
  std::uint16_t port() const { return port_; }
  /// Where it listens: "127.0.0.1" or "::1".
  const std::string& ip() const { return ip_; }
  child_process& process() { return process_; }
  std::string output() const { return process_.output(); }
  bool healthy() const { return http_get_raw(metrics_port_, "/healthz", 2s, ip_).rfind("HTTP/1.1 200", 0) == 0; }
  /// The whole /healthz reply (status line, headers, body).
  std::string healthz() const { return http_get_raw(metrics_port_, "/healthz", 2s, ip_); }
  /// The /metrics body parsed into "name{labels}" -> value.
  std::map<std::string, double> metrics() const {
    std::map<std::string, double> out;
    auto raw = http_get_raw(metrics_port_, "/metrics", 2s, ip_);
    auto body = raw.find("\r\n\r\n");
    if (raw.rfind("HTTP/1.1 200", 0) != 0 || body == std::string::npos) return out;
    std::istringstream in(raw.substr(body + 4));
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      auto sp = line.rfind(' ');
      out[line.substr(0, sp)] = std::strtod(line.c_str() + sp + 1, nullptr);
    }
    return out;
  }
  double metric(const std::string& key) const {
    auto m = metrics();
    auto it = m.find(key);
    return it == m.end() ? -1 : it->second;
  }
  /// Waits until `who_via` answers `name` (the ambassador caught up with etcd).
  bool routes_to(const std::string& name, std::chrono::milliseconds timeout = 15s) const {
    return wait_until([&] { return who_via(port_, {}, ip_) == name; }, timeout, 50ms);
  }
  /// Number of times `needle` occurs in the output.
  std::size_t count_in_output(const std::string& needle) const {
    auto out = output();
    std::size_t n = 0;
    for (auto p = out.find(needle); p != std::string::npos; p = out.find(needle, p + 1)) ++n;
    return n;
  }

private:
  std::string ip_;
  std::uint16_t port_, metrics_port_;
  child_process process_;
};

}  // namespace amb::test
