// SPDX-License-Identifier: MIT
// simple-amb as a user runs it: the built binary in front of a real redis-server, on free loopback ports.
#include "support/process.hpp"
#include "support/redis_server.hpp"

#include <amb/version.hpp>

#include <doctest/doctest.h>

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <utility>
#include <fstream>
#include <sstream>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace simple_amb_test {

using namespace std::chrono_literals;
using amb::test::child_process;

namespace {

const std::string bin = AMB_SIMPLE_AMB_BIN;

/// The test's environment without Docker-links variables, so only the ones a test sets count.
child_process::options clean_env(std::map<std::string, std::string> env = {}) {
  child_process::options o;
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    std::string key = kv.substr(0, kv.find('='));
    if (key.find("_PORT_") != std::string::npos) o.unset_env.push_back(key);
  }
  o.env = std::move(env);
  return o;
}

/// A running simple-amb listening on a free port; waits for its "listening on" line.
struct amb_process {
  std::uint16_t port = amb::test::free_port();
  child_process process;

  explicit amb_process(std::vector<std::string> args, child_process::options opts = clean_env(),
                       std::vector<std::string> prefix = {}) {
    std::vector<std::string> argv = prefix;
    argv.push_back(bin);
    argv.push_back("--listen");
    argv.push_back("127.0.0.1:" + std::to_string(port));
    argv.insert(argv.end(), args.begin(), args.end());
    process.start(argv, std::move(opts));
    bool up = amb::test::wait_until(
        [&] { return !process.running() || process.output().find("listening on") != std::string::npos; }, 10s);
    if (!up || !process.running())
      throw std::runtime_error("test set-up: simple-amb did not start:\n" + process.output());
  }
  std::string output() const { return process.output(); }
};

/// A blocking loopback client socket with a receive timeout, closed when it goes.
struct client {
  int fd = -1;
  explicit client(std::uint16_t port, std::chrono::seconds timeout = 10s) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    timeval tv{static_cast<time_t>(timeout.count()), 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  client(client&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  ~client() {
    if (fd >= 0) ::close(fd);
  }
  std::uint16_t local_port() const {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    return ntohs(a.sin_port);
  }
  void send(const std::string& s) const {
    std::size_t done = 0;
    while (done < s.size()) {
      ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
      REQUIRE(n > 0);
      done += static_cast<std::size_t>(n);
    }
  }
  void half_close() const { ::shutdown(fd, SHUT_WR); }
  /// Reads until `want` bytes arrived, EOF, an error, or the timeout.
  std::string read(std::size_t want = SIZE_MAX) const {
    std::string out;
    char buf[65536];
    while (out.size() < want) {
      ssize_t n = ::recv(fd, buf, std::min(sizeof buf, want - out.size()), 0);
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
  }
};

/// Runs simple-amb with `args` to completion.
amb::test::run_result run_amb(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
  args.insert(args.begin(), bin);
  return amb::test::run(args, 10s, clean_env(std::move(env)));
}

std::string usage_error(const std::string& line) { return "simple-amb: " + line + "\nTry 'simple-amb --help'.\n"; }

}  // namespace

TEST_CASE("redis-cli through simple-amb: PING, SET and GET") {
  amb::test::redis_server redis;
  amb_process amb({redis.address()});
  auto ping = amb::test::redis_cli(amb.port, {"PING"});
  CHECK(ping.status == 0);
  CHECK(ping.output == "PONG\n");
  CHECK(amb::test::redis_cli(amb.port, {"SET", "amb:greeting", "hello through simple-amb"}).output == "OK\n");
  CHECK(amb::test::redis_cli(amb.port, {"GET", "amb:greeting"}).output == "hello through simple-amb\n");
  CHECK(amb::test::redis_cli(redis.port(), {"GET", "amb:greeting"}).output == "hello through simple-amb\n");
}

TEST_CASE("a client that sends, half-closes, and still reads the whole reply") {
  amb::test::redis_server redis;
  amb_process amb({"--target", redis.address()});
  // 2000 pipelined commands with 1 kB values, then shutdown(SHUT_WR): redis sees EOF only after
  // all of them, and every reply must still come back through the proxy.
  std::string request, expected;
  const std::string value(1000, 'v');
  for (int i = 0; i < 2000; ++i) {
    request += "SET half:" + std::to_string(i) + " " + value + "\r\n";
    expected += "+OK\r\n";
  }
  request += "GET half:1999\r\n";
  expected += "$1000\r\n" + value + "\r\n";
  std::string reply = amb::test::tcp_exchange(amb.port, request, 20s, /*half_close=*/true);
  CHECK(reply.size() == expected.size());
  CHECK(reply == expected);
}

TEST_CASE("200 concurrent clients each get their own answers") {
  amb::test::redis_server redis;
  amb_process amb({redis.address()});
  std::vector<client> clients;
  for (int i = 0; i < 200; ++i) clients.emplace_back(amb.port);
  // All 200 connections are open through the proxy at once before anyone talks.
  for (int i = 0; i < 200; ++i) {
    const std::string n = std::to_string(i);
    clients[i].send("SET c:" + n + " value-" + n + "\r\nGET c:" + n + "\r\n");
  }
  int right = 0;
  for (int i = 0; i < 200; ++i) {
    const std::string v = "value-" + std::to_string(i);
    const std::string want = "+OK\r\n$" + std::to_string(v.size()) + "\r\n" + v + "\r\n";
    if (clients[i].read(want.size()) == want) ++right;
  }
  CHECK(right == 200);
  CHECK(amb.process.running());
}

TEST_CASE("target down: the client is closed with one log line; target back: it works again") {
  amb::test::redis_server redis;
  amb_process amb({redis.address()});
  CHECK(amb::test::redis_server::ping_raw(amb.port));
  redis.kill9();

  client c(amb.port);
  const std::uint16_t from = c.local_port();
  c.send("PING\r\n");
  CHECK(c.read() == "");  // closed, nothing relayed
  const std::string line = "simple-amb: warning: connection from 127.0.0.1:" + std::to_string(from) + ": connect " +
                           redis.address() + ": Connection refused";
  CHECK(amb::test::wait_until([&] { return !amb::test::lines_with(amb.output(), line).empty(); }, 5s));
  CHECK(amb::test::lines_with(amb.output(), "127.0.0.1:" + std::to_string(from)).size() == 1);
  CHECK(amb.process.running());

  redis.start();
  CHECK(amb::test::redis_server::ping_raw(amb.port));
  CHECK(amb::test::redis_cli(amb.port, {"PING"}).output == "PONG\n");
}

TEST_CASE("target unreachable: the client sees a clean end of stream (FIN), not a reset, as with dynamic-etcd-amb") {
  const std::uint16_t nobody = amb::test::free_port();  // nothing listens there: every connect is refused
  amb_process amb({"127.0.0.1:" + std::to_string(nobody)});
  for (int i = 0; i < 20; ++i) {
    client c(amb.port);
    c.send("PING\r\n");  // sent before the proxy gives up: unread, it would turn the close into a reset
    char buf[64];
    errno = 0;
    const ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
    const int error = errno;
    INFO("recv returned " << n << ", errno " << error << " (" << std::strerror(error) << ")");
    CHECK(n == 0);  // EOF
    CHECK(error != ECONNRESET);
  }
  CHECK(amb::test::lines_with(amb.output(), ": connect 127.0.0.1:" + std::to_string(nobody) + ": Connection refused")
            .size() == 20);
  CHECK(amb.process.running());
}

TEST_CASE("no fd leak: 3000 connections later the open fd count is back at its baseline") {
  amb::test::redis_server redis;
  amb_process amb({redis.address()});
  const int baseline = amb::test::open_fd_count(amb.process.pid());
  REQUIRE(baseline > 0);
  int pongs = 0;
  for (int i = 0; i < 3000; ++i)
    if (amb::test::tcp_exchange(amb.port, "PING\r\n").rfind("+PONG", 0) == 0) ++pongs;
  CHECK(pongs == 3000);
  // Some that the client reset before the proxy read anything, too.
  for (int i = 0; i < 200; ++i) {
    client c(amb.port);
    linger l{1, 0};
    ::setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  CHECK(amb::test::wait_until([&] { return amb::test::open_fd_count(amb.process.pid()) == baseline; }, 10s));
  CHECK(amb::test::open_fd_count(amb.process.pid()) == baseline);
  CHECK(amb::test::redis_server::ping_raw(amb.port));
}

TEST_CASE("out of fds (EMFILE): one log line, no spinning, serves again once clients leave") {
  amb::test::redis_server redis;
  auto prlimit = amb::test::require_program("prlimit", "util-linux");
  amb_process amb({redis.address()});
  const pid_t pid = amb.process.pid();
  // Leave room for exactly 10 relayed connections (2 fds each). The limit caps fd *numbers*, and
  // inherited fds may sit high, so count 20 free numbers from 0 up.
  std::set<int> taken;
  for (auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
    taken.insert(std::stoi(e.path().filename().string()));
  int limit = 0;
  for (int free_numbers = 0; free_numbers < 20; ++limit)
    if (!taken.count(limit)) ++free_numbers;
  auto set = amb::test::run(
      {prlimit, "--pid", std::to_string(pid), "--nofile=" + std::to_string(limit) + ":" + std::to_string(limit)});
  REQUIRE_MESSAGE(set.status == 0, set.output);

  std::vector<client> held;
  for (int i = 0; i < 10; ++i) {
    held.emplace_back(amb.port);
    held.back().send("PING\r\n");
    CHECK(held.back().read(7) == "+PONG\r\n");
  }
  // These wait in the listen queue: accept fails with EMFILE until fds free up.
  std::vector<client> waiting;
  for (int i = 0; i < 5; ++i) {
    waiting.emplace_back(amb.port);
    waiting.back().send("PING\r\n");
  }
  REQUIRE(amb::test::wait_until([&] { return amb.output().find("Too many open files") != std::string::npos; }, 10s));

  // Saturated for 1.5 s: a spinning accept loop would burn ~1.5 s of CPU here.
  const long before = amb::test::proc_cpu_ticks(pid);
  std::this_thread::sleep_for(1500ms);
  const long used = amb::test::proc_cpu_ticks(pid) - before;
  CHECK_MESSAGE(used < ::sysconf(_SC_CLK_TCK) / 2, "CPU ticks used while saturated: " << used);
  CHECK(amb.process.running());

  held.clear();  // frees 20 fds
  for (auto& w : waiting) CHECK(w.read(7) == "+PONG\r\n");
  CHECK(amb::test::redis_server::ping_raw(amb.port));
  const auto lines = amb::test::lines_with(amb.output(), "Too many open files");
  CHECK_MESSAGE(lines.size() == 1, amb.output());
  CHECK(lines.at(0) == "simple-amb: warning: accept on 127.0.0.1:" + std::to_string(amb.port) +
                           ": Too many open files; pausing accepts for 100ms until fds free up");
}

TEST_CASE("the idle timeout closes a quiet connection") {
  amb::test::redis_server redis;
  amb_process amb({"--idle-timeout", "300ms", redis.address()});
  client c(amb.port);
  c.send("PING\r\n");
  CHECK(c.read(7) == "+PONG\r\n");
  CHECK(c.read() == "");  // EOF after about 300 ms of silence (the receive timeout is 10 s)
}

TEST_CASE("usage errors: one line naming the bad value, exit code 2") {
  struct bad {
    std::vector<std::string> args;
    std::string line;
  };
  const std::vector<bad> cases{
      {{"127.0.0.1:70000"}, "bad port \"70000\" in \"127.0.0.1:70000\""},
      {{"127.0.0.1:abc"}, "bad port \"abc\" in \"127.0.0.1:abc\""},
      {{"70000"}, "bad address \"70000\": expected HOST:PORT"},
      {{"abc"}, "bad address \"abc\": expected HOST:PORT"},
      {{"redis"}, "bad address \"redis\": expected HOST:PORT"},
      {{"--target", "redis:0"}, "--target: bad port \"0\" in \"redis:0\""},
      {{"--listen", "0.0.0.0:99999", "redis:6379"}, "--listen: bad port \"99999\" in \"0.0.0.0:99999\""},
      {{"--bogus", "redis:6379"}, "unknown option '--bogus'"},
      {{"redis:6379", "--listen"}, "option '--listen' needs a value (HOST:PORT)"},
      {{"a:1", "b:2"}, "unexpected argument 'b:2'"},
      {{"--target", "a:1", "b:2"}, "target given twice: use TARGET_HOST:PORT or --target, not both"},
      {{"--connect-timeout", "5x", "a:1"}, "--connect-timeout: bad duration \"5x\" (use e.g. 500ms, 5s, 2m)"},
      {{"--log-level", "loud", "a:1"}, "--log-level: bad level \"loud\" (use debug, info, warn, error or off)"},
      {{},
       "no target: give TARGET_HOST:PORT, --target, or Docker-links variables (<ALIAS>_PORT_<p>_TCP_ADDR and _PORT)"},
      {{"--link-alias", "db"}, "no Docker-links variables for alias \"db\""},
  };
  for (const auto& c : cases) {
    auto r = run_amb(c.args);
    CHECK_MESSAGE(r.status == 2, c.line);
    CHECK(r.output == usage_error(c.line));
  }
}

TEST_CASE("--help and --version exit 0") {
  auto help = run_amb({"--help"});
  CHECK(help.status == 0);
  CHECK(help.output.rfind("Usage: simple-amb [OPTIONS] [TARGET_HOST:PORT]\n", 0) == 0);
  CHECK(help.output.find("\nExample:\n  simple-amb 172.17.42.1:4001\n") != std::string::npos);
  CHECK(help.output.find("--link-alias NAME") != std::string::npos);
  auto version = run_amb({"--version"});
  CHECK(version.status == 0);
  CHECK(version.output == std::string("simple-amb ") + AMB_VERSION_STRING + "\n");
}

TEST_CASE("Docker-links variables as the target") {
  amb::test::redis_server redis;
  const std::string port = std::to_string(redis.port());
  SUBCASE("the only alias present is used") {
    amb_process amb({}, clean_env({{"DB_PORT_6379_TCP_ADDR", "127.0.0.1"}, {"DB_PORT_6379_TCP_PORT", port}}));
    CHECK(amb.output().find("forwarding to " + redis.address() + " (from the Docker-links variables of alias DB)\n") !=
          std::string::npos);
    CHECK(amb::test::redis_cli(amb.port, {"PING"}).output == "PONG\n");
  }
  const std::map<std::string, std::string> two{{"DB_PORT_6379_TCP_ADDR", "127.0.0.1"},
                                               {"DB_PORT_6379_TCP_PORT", port},
                                               {"ETCD_AMB_PORT_10000_TCP_ADDR", "127.0.0.1"},
                                               {"ETCD_AMB_PORT_10000_TCP_PORT", "1"}};
  SUBCASE("several aliases: --link-alias chooses (in Docker's spelling or the link's)") {
    amb_process amb({"--link-alias", "db"}, clean_env(two));
    CHECK(amb::test::redis_cli(amb.port, {"PING"}).output == "PONG\n");
  }
  SUBCASE("several aliases and no --link-alias is a usage error") {
    auto r = run_amb({}, two);
    CHECK(r.status == 2);
    CHECK(r.output == usage_error("no target, and several Docker-links aliases (DB, ETCD_AMB): choose one with "
                                  "--link-alias"));
  }
  SUBCASE("a bad port in the variables is named") {
    auto r = run_amb({}, {{"DB_PORT_6379_TCP_ADDR", "127.0.0.1"}, {"DB_PORT_6379_TCP_PORT", "70000"}});
    CHECK(r.status == 2);
    CHECK(r.output == usage_error("bad port \"70000\" in DB_PORT_6379_TCP_PORT"));
  }
  SUBCASE("the command line wins over the variables") {
    amb_process amb({redis.address()},
                    clean_env({{"DB_PORT_6379_TCP_ADDR", "127.0.0.1"}, {"DB_PORT_6379_TCP_PORT", "1"}}));
    CHECK(amb::test::redis_cli(amb.port, {"PING"}).output == "PONG\n");
  }
}

TEST_CASE("a listen port already taken: one clear line, exit 1") {
  const std::uint16_t port = amb::test::free_port();
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(fd, 1) == 0);
  const std::string where = "127.0.0.1:" + std::to_string(port);
  auto r = run_amb({"--listen", where, "127.0.0.1:6379"});
  ::close(fd);
  CHECK(r.status == 1);
  CHECK(r.output == "simple-amb: error: listen " + where + ": Address already in use\n");
}

TEST_CASE("SIGTERM: stops accepting and exits 0, also with a connection still open") {
  amb::test::redis_server redis;
  amb_process amb({redis.address()});
  client open_one(amb.port);
  open_one.send("PING\r\n");
  CHECK(open_one.read(7) == "+PONG\r\n");
  amb.process.signal(SIGTERM);
  CHECK(amb.process.wait(10s) == 0);
  CHECK(!amb::test::port_open(amb.port));
  CHECK(amb.output().find("simple-amb: SIGTERM: stopped accepting; 1 connection open, waiting up to 2s\n") !=
        std::string::npos);
}

}  // namespace simple_amb_test
