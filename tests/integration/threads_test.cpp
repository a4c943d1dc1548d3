// SPDX-License-Identifier: MIT
// simple-amb --threads N: N event loops, each with its own SO_REUSEPORT listener on the one port.
#include "support/process.hpp"
#include "support/redis_server.hpp"

#include <doctest/doctest.h>

#include <thread>
#include <vector>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace threads_test {

using namespace std::chrono_literals;
using amb::test::child_process;

namespace {

const std::string bin = AMB_SIMPLE_AMB_BIN;

struct amb_threads {
  std::uint16_t port = amb::test::free_port();
  child_process process;
  amb_threads(std::vector<std::string> extra, std::uint16_t target) {
    std::vector<std::string> argv{bin, "--listen", "127.0.0.1:" + std::to_string(port)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back("127.0.0.1:" + std::to_string(target));
    process.start(argv, {});
    bool up = amb::test::wait_until(
        [&] { return !process.running() || process.output().find("listening on") != std::string::npos; }, 10s);
    if (!up || !process.running())
      throw std::runtime_error("test set-up: simple-amb did not start:\n" + process.output());
  }
};

}  // namespace

TEST_CASE("--threads 2: two listeners on the port, two event-loop threads, and every client served") {
  amb::test::redis_server redis;
  amb_threads amb({"--threads", "2"}, redis.port());
  CHECK(amb::test::tcp_listeners_on(amb.port) == 2);
  CHECK(amb::test::thread_count(amb.process.pid()) == 2 + amb::test::sanitizer_threads());
  CHECK(amb.process.output().find("(2 threads)") != std::string::npos);

  // Many concurrent clients, each with its own key: all answered correctly, whichever loop took them.
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        const std::string key = "k" + std::to_string(t) + "_" + std::to_string(i);
        const std::string set = "*3\r\n$3\r\nSET\r\n$" + std::to_string(key.size()) + "\r\n" + key + "\r\n$1\r\nv\r\n";
        const std::string get = "*2\r\n$3\r\nGET\r\n$" + std::to_string(key.size()) + "\r\n" + key + "\r\n";
        if (amb::test::tcp_exchange(amb.port, set + get + "QUIT\r\n") == "+OK\r\n$1\r\nv\r\n+OK\r\n") ++ok;
      }
    });
  }
  for (auto& c : clients) c.join();
  CHECK(ok == 200);

  amb.process.signal(SIGTERM);
  CHECK(amb.process.wait(10s) == 0);
}

TEST_CASE("the default is one thread and one listener") {
  amb::test::redis_server redis;
  amb_threads amb({}, redis.port());
  CHECK(amb::test::tcp_listeners_on(amb.port) == 1);
  CHECK(amb::test::thread_count(amb.process.pid()) == 1);  // (ThreadSanitizer adds none to a single thread)
  CHECK(amb::test::tcp_exchange(amb.port, "PING\r\nQUIT\r\n") == "+PONG\r\n+OK\r\n");
}

TEST_CASE("--threads takes 1..256") {
  for (std::string bad : {"0", "257", "two"}) {
    auto r = amb::test::run({bin, "--threads", bad, "127.0.0.1:1"});
    CHECK(r.status == 2);
    CHECK(r.output.find("--threads") != std::string::npos);
  }
}

}  // namespace threads_test
