// SPDX-License-Identifier: MIT
// Fault: a redis backend is SIGKILLed while clients are in the middle of talking to it through
// dynamic-etcd-amb: those clients see their connection end at once (no hang), the ambassador stays
// up, and every new client goes to the other backend.
#include "support/fault_support.hpp"

#include <doctest/doctest.h>

#include <poll.h>

#include <atomic>
#include <cstring>
#include <future>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace backend_death_test {

using namespace amb::test;

namespace {

const std::string dir = "/services/redis-d/";

// How a client connection ended, and when.
struct ending {
  std::string how;  // "eof", "reset" (or another socket error), "timeout" (a hang), "unexpected data"
  std::chrono::steady_clock::time_point at;
};

// A raw client socket to 127.0.0.1:port (blocking_conn hides EOF and timeouts behind "").
class raw_conn {
public:
  explicit raw_conn(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  raw_conn(const raw_conn&) = delete;
  raw_conn& operator=(const raw_conn&) = delete;
  ~raw_conn() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return fd_ >= 0; }
  /// Sends everything; "" or the error that stopped it.
  std::string send_all(const std::string& s) {
    for (std::size_t done = 0; done < s.size();) {
      ssize_t n = ::send(fd_, s.data() + done, s.size() - done, MSG_NOSIGNAL);
      if (n < 0) return std::strerror(errno);
      done += static_cast<std::size_t>(n);
    }
    return {};
  }
  /// Reads exactly `want` bytes into `out`; "" or how the connection ended first.
  std::string read_exact(std::size_t want, std::string& out, std::chrono::milliseconds timeout) {
    out.clear();
    char buf[65536];
    while (out.size() < want) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(timeout.count())) == 0) return "timeout";
      ssize_t n = ::recv(fd_, buf, std::min(sizeof buf, want - out.size()), 0);
      if (n == 0) return "eof";
      if (n < 0) return errno == ECONNRESET ? "reset" : std::strerror(errno);
      out.append(buf, static_cast<std::size_t>(n));
    }
    return {};
  }
  /// Waits for the connection to end; how it ended (data before the end is unexpected here).
  ending wait_for_end(std::chrono::milliseconds timeout) {
    std::string got;
    auto how = read_exact(1, got, timeout);
    return {how.empty() ? "unexpected data \"" + got + "\"" : how, std::chrono::steady_clock::now()};
  }

private:
  int fd_ = -1;
};

// The backend behind a fresh ambassador connection, by `GET who`, and the connection itself.
std::string who(raw_conn& c) {
  std::string reply;
  if (!c.send_all("GET who\r\n").empty() || !c.read_exact(7, reply, 5s).empty()) return "";  // "$1\r\na\r\n"
  return reply.substr(4, 1);
}

}  // namespace

TEST_CASE(
    "a backend SIGKILLed mid-stream: its clients' connections end at once, the ambassador stays up, new clients go "
    "elsewhere") {
  etcd_cluster etcd;
  tagged_redis a("a"), b("b");
  etcd.etcdctl({"put", dir + "a", a.json()});
  etcd.etcdctl({"put", dir + "b", b.json()});
  // One failed connect ejects an instance (for longer than the test): after that it is not tried.
  ambassador amb(etcd.endpoints(), "redis-d", {"--max-fails", "1", "--fail-timeout", "60s"});
  REQUIRE(wait_until([&] { return amb.metric("amb_instances") == 2; }, 10s));

  // Round robin: collect connections until two are on a and one is on b.
  std::vector<std::unique_ptr<raw_conn>> on_a, on_b;
  for (int i = 0; i < 10 && (on_a.size() < 2 || on_b.empty()); ++i) {
    auto c = std::make_unique<raw_conn>(amb.port());
    auto w = who(*c);
    REQUIRE((w == "a" || w == "b"));
    (w == "a" ? on_a : on_b).push_back(std::move(c));
  }
  REQUIRE(on_a.size() >= 2);
  REQUIRE(!on_b.empty());

  // On a: a client blocked in BLPOP, and a client streaming a long pipeline of PINGs.
  raw_conn& blocked = *on_a[0];
  REQUIRE(blocked.send_all("BLPOP jobs 0\r\n").empty());
  auto blocked_end = std::async(std::launch::async, [&] { return blocked.wait_for_end(15s); });
  std::atomic<int> batches{0};
  auto pipeline_end = std::async(std::launch::async, [&, &c = *on_a[1]] {
    std::string batch, replies, want;
    for (int i = 0; i < 1000; ++i) {
      batch += "PING\r\n";
      want += "+PONG\r\n";
    }
    for (;;) {
      auto why = c.send_all(batch);
      if (why.empty()) why = c.read_exact(want.size(), replies, 15s);
      if (!why.empty())
        return ending{why == "Broken pipe" || why == "Connection reset by peer" ? "reset" : why,
                      std::chrono::steady_clock::now()};
      if (replies != want) return ending{"unexpected data", std::chrono::steady_clock::now()};
      ++batches;
    }
  });
  REQUIRE(wait_until([&] { return batches >= 20; }, 10s));  // mid-stream now

  a.server.kill9();
  const auto killed = std::chrono::steady_clock::now();
  const int batches_before = batches;

  // New clients from the moment of the kill: every one is served, by b (the first one that was
  // handed a is failed over to b without noticing, and a is ejected).
  int served_by_b = 0;
  for (int i = 0; i < 30; ++i) served_by_b += who_via(amb.port()) == "b";
  CHECK(served_by_b == 30);

  // The clients that were on a: their connections ended (EOF or reset), none hangs.
  auto e1 = blocked_end.get();
  auto e2 = pipeline_end.get();
  CHECK((e1.how == "eof" || e1.how == "reset"));
  CHECK((e2.how == "eof" || e2.how == "reset"));
  auto ms = [&](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t - killed).count();
  };
  MESSAGE("BLPOP client: ", e1.how, " after ", ms(e1.at), " ms; pipeline client: ", e2.how, " after ", ms(e2.at),
          " ms (", batches - batches_before, " more batches of 1000 PINGs answered)");

  // The ambassador is up, its client on b untouched, a ejected after exactly one failed connect.
  CHECK(amb.process().running());
  CHECK(amb.healthy());
  CHECK(who(*on_b[0]) == "b");
  auto m = amb.metrics();
  CHECK(m["amb_connect_failures_total{instance=\"" + dir + "a\"}"] == 1);
  CHECK(m["amb_instances_ejected"] == 1);
  CHECK(m["amb_instances"] == 2);  // the registration is the registrar's business: still there, ejected
  CHECK(m["amb_connections_rejected_total"] == 0);
  // Nothing leaks: once the clients close, no connection is left open in the ambassador.
  on_a.clear();
  on_b.clear();
  CHECK(wait_until([&] { return amb.metric("amb_connections_active") == 0; }, 10s));
  INFO(amb.output());
}

}  // namespace backend_death_test
