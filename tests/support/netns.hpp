// SPDX-License-Identifier: MIT
// Test support: "host B", a network namespace joined to this one (host A) by one veth pair on a
// private /30, whose link can be taken down (a partition) and up again. Needs root (CAP_NET_ADMIN).
#pragma once

#include "support/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>

#include <cerrno>
#include <charconv>
#include <future>
#include <sstream>

namespace amb::test {

/// A network namespace with a veth link to this one; the namespace, the link and everything routed
/// over it are removed when the object goes (also when a test fails: declare it before the processes
/// that run inside, so they are stopped first).
class network_namespace {
public:
  network_namespace() {
    ip_ = require_program("ip", "iproute2");
    remove_leftovers();
    static int counter = 0;
    const std::string id = std::to_string(::getpid()) + "n" + std::to_string(counter++);
    name_ = "amb-fault-" + id;
    veth_a_ = "afA" + id;  // interface names: at most 15 characters
    veth_b_ = "afB" + id;
    auto made = ip({"netns", "add", name_});
    if (made.status != 0)
      throw std::runtime_error("test set-up: ip netns add " + name_ +
                               " failed (the partition test needs root): " + made.output);
    created_ = true;
    ip_ok({"link", "add", veth_a_, "type", "veth", "peer", "name", veth_b_, "netns", name_});
    subnet_ = pick_subnet();
    ip_ok({"addr", "add", host_a_ip() + "/30", "dev", veth_a_});
    ip_ok({"link", "set", veth_a_, "up"});
    ip_ok({"-n", name_, "addr", "add", host_b_ip() + "/30", "dev", veth_b_});
    ip_ok({"-n", name_, "link", "set", veth_b_, "up"});
    ip_ok({"-n", name_, "link", "set", "lo", "up"});
  }
  ~network_namespace() {
    if (!created_) return;
    // Deleting the namespace deletes its end of the pair, and with it the pair; the second call is
    // for the case where the namespace was kept alive by a process that has not died yet.
    try {
      ip({"netns", "del", name_});
      ip({"link", "del", veth_a_});
    } catch (const std::exception&) {  // cannot start ip: nothing more to do in a destructor
    }
  }
  network_namespace(const network_namespace&) = delete;
  network_namespace& operator=(const network_namespace&) = delete;

  /// The namespace's name, as `ip netns` knows it.
  const std::string& name() const { return name_; }
  /// Host A's (this namespace's) end of the link, e.g. "10.213.7.1".
  std::string host_a_ip() const { return "10.213." + std::to_string(subnet_) + ".1"; }
  /// Host B's end of the link, e.g. "10.213.7.2".
  std::string host_b_ip() const { return "10.213." + std::to_string(subnet_) + ".2"; }

  /// Takes host B's end of the link down: nothing passes either way until link_up().
  void link_down() { ip_ok({"-n", name_, "link", "set", veth_b_, "down"}); }
  /// Brings host B's end of the link up again (the kernel restores its routes).
  void link_up() { ip_ok({"-n", name_, "link", "set", veth_b_, "up"}); }

  /// `argv` wrapped to run inside host B (`ip netns exec` execs it: the PID is the program's own).
  std::vector<std::string> command(std::vector<std::string> argv) const {
    std::vector<std::string> out{ip_, "netns", "exec", name_};
    out.insert(out.end(), argv.begin(), argv.end());
    return out;
  }

  /// Runs `f` on a thread that joined host B's network namespace and returns its result; sockets made
  /// there belong to host B for good (127.0.0.1 inside means host B's loopback). Keep doctest
  /// assertions out of `f`: return what to check.
  template <class F>
  auto inside(F f) const -> decltype(f()) {
    const std::string path = "/run/netns/" + name_;
    return std::async(std::launch::async,
                      [&]() -> decltype(f()) {
                        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
                        if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
                          if (fd >= 0) ::close(fd);
                          throw std::runtime_error("test: cannot enter network namespace " + name_);
                        }
                        ::close(fd);
                        return f();
                      })
        .get();
  }

private:
  run_result ip(std::vector<std::string> args) const {
    args.insert(args.begin(), ip_);
    return run(args, 20s);
  }
  void ip_ok(std::vector<std::string> args) const {
    auto r = ip(args);
    if (r.status != 0) {
      std::string cmd;
      for (auto& a : args) cmd += " " + a;
      throw std::runtime_error("test set-up: ip" + cmd + " failed: " + r.output);
    }
  }
  // Namespaces (and links) of earlier test processes that died without their destructors (a
  // SIGKILL from a test timeout): named amb-fault-<pid>n<k>, removed when <pid> no longer runs.
  void remove_leftovers() const {
    std::istringstream in(ip({"netns", "list"}).output);
    std::string line;
    const std::string prefix = "amb-fault-";
    while (std::getline(in, line)) {
      auto name = line.substr(0, line.find(' '));
      if (name.rfind(prefix, 0) != 0) continue;
      auto id = name.substr(prefix.size());
      int pid = 0;
      auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), pid);
      if (ec != std::errc() || pid <= 0 || *end != 'n' || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
      ip({"netns", "del", name});
      ip({"link", "del", "afA" + id});
    }
  }
  // A 10.213.N.0/30 that no interface of host A uses yet (tools/demo.sh scans the same way).
  int pick_subnet() const {
    const auto used = ip({"-4", "-o", "addr"}).output;
    const int start = static_cast<int>(::getpid() % 200) + 20;
    for (int i = 0; i < 236; ++i) {
      int n = 20 + (start - 20 + i) % 236;
      if (used.find(" 10.213." + std::to_string(n) + ".") == std::string::npos) return n;
    }
    throw std::runtime_error("test set-up: no free 10.213.N.0/30 subnet for the veth link");
  }

  std::string ip_;
  std::string name_, veth_a_, veth_b_;
  int subnet_ = 0;
  bool created_ = false;
};

/// True when a TCP connect to ip:port succeeds within `timeout` (from the calling thread's namespace).
inline bool tcp_connects(const std::string& ip, std::uint16_t port, std::chrono::milliseconds timeout = 1s) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  if (!ok && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof err;
    ok = ::poll(&p, 1, static_cast<int>(timeout.count())) == 1 &&
         ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
  }
  ::close(fd);
  return ok;
}

}  // namespace amb::test
