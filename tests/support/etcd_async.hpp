// SPDX-License-Identifier: MIT
// Test support for the etcd client: an io_context on its own thread, and scripted misbehaving HTTP servers.
#pragma once

#include "support/process.hpp"

#include <amb/address.hpp>
#include <amb/etcd_client.hpp>
#include <amb/etcd_watch.hpp>

#include <asio.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace amb::test {

/// Client options for the comma-separated `endpoints`, with the library's defaults otherwise
/// (each test file then tightens the timeouts it needs).
inline amb::etcd_client_options etcd_options(const std::string& endpoints) {
  amb::etcd_client_options o;
  auto list = amb::parse_endpoint_list(endpoints);
  REQUIRE_MESSAGE(list, list.error);
  o.endpoints = *list;
  return o;
}

/// Runs an io_context on one background thread (the library's one thread); the test thread hands it
/// coroutines with sync() and waits for their result. Declare the io_context BEFORE the clients and
/// this runner AFTER them, so the thread stops before the clients go and the clients go before the io.
class io_runner {
public:
  explicit io_runner(asio::io_context& io) : io_(io), work_(io.get_executor()), thread_([this] { io_.run(); }) {}
  ~io_runner() {
    work_.reset();
    io_.stop();
    thread_.join();
  }
  /// Runs `a` on the io thread and returns its result (rethrows its exception).
  template <class T>
  T sync(asio::awaitable<T> a) {
    return asio::co_spawn(io_, std::move(a), asio::use_future).get();
  }
  /// Runs `a` on the io thread; the future completes when it ends.
  template <class T>
  std::future<T> spawn(asio::awaitable<T> a) {
    return asio::co_spawn(io_, std::move(a), asio::use_future);
  }
  /// Runs f() on the io thread and waits for it (to touch io-thread objects safely).
  void post_wait(std::function<void()> f) {
    std::promise<void> done;
    asio::post(io_, [&] {
      f();
      done.set_value();
    });
    done.get_future().get();
  }

private:
  asio::io_context& io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
};

/// What a watcher delivered, for the test thread to look at (the callback runs on the io thread):
/// keys of PUT events and "-key" for DELETEs, their revisions, and how many snapshots came.
class watch_event_log {
public:
  std::function<void(const amb::etcd_watch_update&)> callback() {
    return [this](const amb::etcd_watch_update& u) {
      std::lock_guard<std::mutex> lock(m_);
      if (u.type == amb::etcd_watch_update::kind::snapshot) ++snapshots_;
      for (auto& e : u.events) {
        keys_.push_back((e.type == amb::etcd_event::kind::del ? "-" : "") + e.kv.key);
        revisions_.push_back(e.kv.mod_revision);
      }
    };
  }
  std::vector<std::string> keys() {
    std::lock_guard<std::mutex> lock(m_);
    return keys_;
  }
  std::vector<std::int64_t> revisions() {
    std::lock_guard<std::mutex> lock(m_);
    return revisions_;
  }
  int snapshots() {
    std::lock_guard<std::mutex> lock(m_);
    return snapshots_;
  }

private:
  std::mutex m_;
  std::vector<std::string> keys_;
  std::vector<std::int64_t> revisions_;
  int snapshots_ = 0;
};

/// A TCP server on 127.0.0.1 whose every connection is handled by a test-written function on its
/// own thread (blocking sockets): for servers that misbehave on purpose (HTML, garbage, silence).
class scripted_server {
public:
  /// `handler(fd)` serves one accepted connection; the fd is closed after it returns.
  explicit scripted_server(std::function<void(int)> handler) : handler_(std::move(handler)) {
    fd_ = listen_test_port(port_);  // not port 0: see test_port_low in process.hpp
    acceptor_ = std::thread([this] {
      while (true) {
        int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;  // listening socket shut down
        ++accepted_;
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_) {
          ::close(c);
          return;
        }
        conns_.push_back(c);
        workers_.emplace_back([this, c] {
          handler_(c);
          ::shutdown(c, SHUT_RDWR);
        });
      }
    });
  }
  ~scripted_server() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      for (int c : conns_) ::shutdown(c, SHUT_RDWR);  // wakes handlers blocked in recv
    }
    ::shutdown(fd_, SHUT_RDWR);
    acceptor_.join();
    for (auto& w : workers_) w.join();
    for (int c : conns_) ::close(c);
    ::close(fd_);
  }
  /// The port it listens on.
  std::uint16_t port() const { return port_; }
  /// "http://127.0.0.1:<port>".
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  /// Connections accepted so far.
  int accepted() const { return accepted_; }
  /// True once the destructor began (handlers that wait should return).
  bool stopping() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stopping_;
  }

  /// Reads one request head and its Content-Length body; false on EOF.
  static bool read_request(int fd, std::string* head_out = nullptr) {
    std::string data;
    char buf[4096];
    while (data.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return false;
      data.append(buf, static_cast<std::size_t>(n));
    }
    auto head_end = data.find("\r\n\r\n") + 4;
    std::size_t length = 0;
    auto cl = data.find("Content-Length: ");
    if (cl != std::string::npos && cl < head_end) length = std::stoul(data.substr(cl + 16));
    while (data.size() < head_end + length) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return false;
      data.append(buf, static_cast<std::size_t>(n));
    }
    if (head_out) *head_out = data.substr(0, head_end);
    return true;
  }
  /// Writes all of `bytes`.
  static void write_all(int fd, const std::string& bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return;
      done += static_cast<std::size_t>(n);
    }
  }
  /// Blocks until the peer closes (or the server stops).
  static void wait_for_eof(int fd) {
    char buf[4096];
    while (::recv(fd, buf, sizeof buf, 0) > 0) {
    }
  }

private:
  std::function<void(int)> handler_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::thread acceptor_;
  std::mutex mutex_;
  bool stopping_ = false;
  std::vector<int> conns_;
  std::vector<std::thread> workers_;
  std::atomic<int> accepted_{0};
};

}  // namespace amb::test
