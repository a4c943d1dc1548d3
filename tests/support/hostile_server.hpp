// SPDX-License-Identifier: MIT
// Test support for hardening: a hostile HTTP server ("etcd" or "engine", TCP or unix) that misbehaves
// per request path or relays to the real server, plus /proc readings (memory, CPU, fds) of a process.
#pragma once

#include "support/process.hpp"

#include <poll.h>
#include <sys/resource.h>
#include <sys/un.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <utility>

namespace amb::test {

/// What the hostile server does with a request.
enum class hostile_act {
  relay,                    ///< pass the connection on to the real server (the server "becomes real again")
  endless_headers,          ///< "HTTP/1.1 200 OK" then short header lines forever
  huge_chunk,               ///< a 200 chunked head, a chunk of 0x100000000 bytes (4 GiB) announced, then bytes forever
  endless_status_line,      ///< "HTTP/1.1 200 " and a reason that never ends
  endless_header_line,      ///< one header whose value never ends
  endless_chunk_size_line,  ///< a 200 chunked head, then a chunk-size line of '0's that never ends
  endless_json_line,        ///< a 200 chunked head, then 64 KiB chunks of one JSON object that never ends (no '\n')
  stall,                    ///< accepts, reads the request, never answers
  stall_mid_body,           ///< answers a 200 head and part of a body, then stalls
  canned,                   ///< sends the reply given to answer(), then serves further requests the same way
};

/// The first bytes of the endless JSON line (an etcd watch message or a Docker event that never closes).
inline const std::string hostile_json_start = R"({"result":{"header":{"revision":"1"},"events":[{"kv":{"key":")";

/// A hostile HTTP server on a thread per connection. Each connection's first request head is read, its
/// target matched against the rules (first rule whose text occurs in the target wins, else the default),
/// and the act done. Counts bytes sent, so tests can say how much the client was offered.
class hostile_server {
public:
  /// A server on 127.0.0.1:free port (unix_path empty) or on the unix socket `unix_path`.
  explicit hostile_server(hostile_act default_act, std::string unix_path = {}) : unix_path_(std::move(unix_path)) {
    default_ = default_act;
    if (unix_path_.empty()) {
      fd_ = listen_test_port(port_);  // not port 0: see test_port_low in process.hpp
    } else {
      ::unlink(unix_path_.c_str());
      fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
      sockaddr_un a{};
      a.sun_family = AF_UNIX;
      std::snprintf(a.sun_path, sizeof a.sun_path, "%s", unix_path_.c_str());
      if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 64) != 0)
        throw std::runtime_error("test set-up: hostile server cannot listen on " + unix_path_);
    }
    thread_ = std::thread([this] { loop(); });
  }
  hostile_server(const hostile_server&) = delete;
  hostile_server& operator=(const hostile_server&) = delete;
  ~hostile_server() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
    std::vector<std::thread> workers;
    {
      std::lock_guard lock(mutex_);
      workers.swap(workers_);
    }
    for (auto& t : workers) t.join();
    if (!unix_path_.empty()) ::unlink(unix_path_.c_str());
  }

  /// "http://127.0.0.1:PORT" (etcd form) or "unix:///path".
  std::string url() const {
    return unix_path_.empty() ? "http://127.0.0.1:" + std::to_string(port_) : "unix://" + unix_path_;
  }
  /// "tcp://127.0.0.1:PORT" (the engine form of a TCP server).
  std::string tcp_url() const { return "tcp://127.0.0.1:" + std::to_string(port_); }
  std::uint16_t port() const { return port_; }

  /// Requests whose target contains `target_part` get `act` (later calls for the same text replace it).
  void on(const std::string& target_part, hostile_act act) {
    std::lock_guard lock(mutex_);
    for (auto& r : rules_)
      if (r.first == target_part) {
        r.second = act;
        return;
      }
    rules_.emplace_back(target_part, act);
  }
  /// Requests whose target contains `target_part` are answered with the raw bytes `reply` (keep-alive).
  void answer(const std::string& target_part, std::string reply) {
    {
      std::lock_guard lock(mutex_);
      canned_[target_part] = std::move(reply);
    }
    on(target_part, hostile_act::canned);
  }
  /// Every request not matched by a rule gets `act`.
  void otherwise(hostile_act act) {
    std::lock_guard lock(mutex_);
    default_ = act;
  }
  /// Where relay sends connections: 127.0.0.1:port.
  void relay_to_tcp(std::uint16_t port) {
    std::lock_guard lock(mutex_);
    upstream_port_ = port;
    upstream_path_.clear();
  }
  /// Where relay sends connections: a unix socket.
  void relay_to_unix(std::string path) {
    std::lock_guard lock(mutex_);
    upstream_path_ = std::move(path);
    upstream_port_ = 0;
  }
  /// Every rule and the default become relay: the server is a real one from now on.
  void become_real() {
    std::lock_guard lock(mutex_);
    rules_.clear();
    default_ = hostile_act::relay;
    ++generation_;  // ends the hostile connections still open
  }

  /// Bytes sent by hostile acts so far (relayed bytes not counted).
  std::uint64_t hostile_bytes_sent() const { return sent_; }
  /// Connections accepted so far.
  int connections() const { return accepted_; }
  /// Requests whose target contained `target_part`, so far.
  int hits(const std::string& target_part) const {
    std::lock_guard lock(mutex_);
    int n = 0;
    for (auto& t : targets_)
      if (t.find(target_part) != std::string::npos) ++n;
    return n;
  }

private:
  void loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      ++accepted_;
      std::lock_guard lock(mutex_);
      workers_.emplace_back([this, c] {
        serve(c);
        ::close(c);
      });
    }
  }

  // Waits until fd is readable (true), or stop/generation change/timeout (false).
  bool wait_readable(int fd, std::uint64_t generation) const {
    while (!stop_ && generation_ == generation) {
      pollfd p{fd, POLLIN, 0};
      int r = ::poll(&p, 1, 50);
      if (r > 0) return true;
      if (r < 0 && errno != EINTR) return false;
    }
    return false;
  }

  // Sends all of s unless the peer is gone or the server stops; false when it could not.
  bool send_all(int fd, std::string_view s, std::uint64_t generation, bool count = true) {
    while (!s.empty()) {
      if (stop_ || generation_ != generation) return false;
      pollfd p{fd, POLLOUT, 0};
      int r = ::poll(&p, 1, 50);
      if (r == 0) continue;
      if (r < 0 || (p.revents & (POLLERR | POLLHUP))) return false;
      ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) return false;
      if (count) sent_ += static_cast<std::uint64_t>(n);
      s.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // Stalls until the peer closes or the server stops (reading and dropping whatever comes).
  void stall(int fd, std::uint64_t generation) {
    char buf[4096];
    while (wait_readable(fd, generation))
      if (::recv(fd, buf, sizeof buf, 0) <= 0) return;
  }

  void repeat(int fd, const std::string& piece, std::uint64_t generation) {
    while (send_all(fd, piece, generation)) {
    }
  }

  void serve(int fd) {
    const std::uint64_t generation = generation_;
    std::string head;
    char buf[16384];
    while (head.find("\r\n\r\n") == std::string::npos && head.size() < (1u << 20)) {
      if (!wait_readable(fd, generation)) return;
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return;
      head.append(buf, static_cast<std::size_t>(n));
    }
    auto sp1 = head.find(' ');
    auto sp2 = head.find(' ', sp1 + 1);
    const std::string target = sp1 == std::string::npos ? "" : head.substr(sp1 + 1, sp2 - sp1 - 1);
    hostile_act act;
    std::string reply;
    {
      std::lock_guard lock(mutex_);
      targets_.push_back(target);
      act = default_;
      for (auto& r : rules_)
        if (target.find(r.first) != std::string::npos) {
          act = r.second;
          if (act == hostile_act::canned) reply = canned_[r.first];
          break;
        }
    }
    const std::string chunked_head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    switch (act) {
      case hostile_act::relay: relay(fd, head); return;
      case hostile_act::endless_headers:
        if (!send_all(fd, "HTTP/1.1 200 OK\r\n", generation)) return;
        repeat(fd, "X-Hostile: 0123456789abcdef0123456789abcdef\r\n", generation);
        return;
      case hostile_act::huge_chunk: {
        if (!send_all(fd, chunked_head + "100000000\r\n" + hostile_json_start, generation)) return;
        repeat(fd, std::string(64 * 1024, 'A'), generation);
        return;
      }
      case hostile_act::endless_status_line:
        if (!send_all(fd, "HTTP/1.1 200 ", generation)) return;
        repeat(fd, std::string(64 * 1024, 'O'), generation);
        return;
      case hostile_act::endless_header_line:
        if (!send_all(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Hostile: ", generation)) return;
        repeat(fd, std::string(64 * 1024, 'v'), generation);
        return;
      case hostile_act::endless_chunk_size_line:
        if (!send_all(fd, chunked_head, generation)) return;
        repeat(fd, std::string(64 * 1024, '0'), generation);
        return;
      case hostile_act::endless_json_line: {
        if (!send_all(fd, chunked_head, generation)) return;
        auto chunk = [](const std::string& data) {
          char size[32];
          std::snprintf(size, sizeof size, "%zx\r\n", data.size());
          return size + data + "\r\n";
        };
        if (!send_all(fd, chunk(hostile_json_start), generation)) return;
        repeat(fd, chunk(std::string(64 * 1024, 'A')), generation);
        return;
      }
      case hostile_act::stall: stall(fd, generation); return;
      case hostile_act::canned:
        // One reply per request head on this connection (requests carry small bodies at most: skipped).
        while (send_all(fd, reply, generation, false)) {
          std::string next;
          while (next.find("\r\n\r\n") == std::string::npos) {
            if (!wait_readable(fd, generation)) return;
            ssize_t n = ::recv(fd, buf, sizeof buf, 0);
            if (n <= 0) return;
            next.append(buf, static_cast<std::size_t>(n));
          }
        }
        return;
      case hostile_act::stall_mid_body:
        if (!send_all(fd,
                      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"header\":",
                      generation))
          return;
        stall(fd, generation);
        return;
    }
  }

  // Connects to the real server and pumps bytes both ways (the head already read goes first).
  void relay(int down, const std::string& already) {
    std::uint16_t port;
    std::string path;
    {
      std::lock_guard lock(mutex_);
      port = upstream_port_;
      path = upstream_path_;
    }
    int up = -1;
    if (!path.empty()) {
      up = ::socket(AF_UNIX, SOCK_STREAM, 0);
      sockaddr_un a{};
      a.sun_family = AF_UNIX;
      std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
      if (up >= 0 && ::connect(up, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(up);
        return;
      }
    } else if (port != 0) {
      up = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(port);
      if (up >= 0 && ::connect(up, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(up);
        return;
      }
    }
    if (up < 0) return;
    std::uint64_t generation = generation_;
    if (!send_all(up, already, generation, false)) {
      ::close(up);
      return;
    }
    bool down_open = true, up_open = true;
    char buf[65536];
    while (!stop_ && (down_open || up_open)) {
      pollfd p[2] = {{down, static_cast<short>(down_open ? POLLIN : 0), 0},
                     {up, static_cast<short>(up_open ? POLLIN : 0), 0}};
      if (::poll(p, 2, 50) <= 0) continue;
      for (int i = 0; i < 2; ++i) {
        if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        int from = i == 0 ? down : up, to = i == 0 ? up : down;
        ssize_t n = ::recv(from, buf, sizeof buf, 0);
        if (n <= 0) {
          (i == 0 ? down_open : up_open) = false;
          ::shutdown(to, SHUT_WR);
          continue;
        }
        // Relayed connections outlive become_real(): pass the current generation.
        if (!send_all(to, std::string_view(buf, static_cast<std::size_t>(n)), generation_, false)) {
          down_open = up_open = false;
        }
      }
    }
    ::close(up);
  }

  std::string unix_path_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<std::uint64_t> sent_{0};
  std::atomic<int> accepted_{0};
  mutable std::mutex mutex_;  // a test server on threads; the library itself has none
  std::vector<std::pair<std::string, hostile_act>> rules_;
  hostile_act default_ = hostile_act::stall;
  std::uint16_t upstream_port_ = 0;
  std::string upstream_path_;
  std::vector<std::string> targets_;
  std::map<std::string, std::string> canned_;
  std::vector<std::thread> workers_;
  std::thread thread_;
};

}  // namespace amb::test
