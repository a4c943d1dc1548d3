// SPDX-License-Identifier: MIT
// Active health checks: the check strings' escapes, haproxy's rise/fall rule, one check against
// in-process servers (passes, refused, stalled, wrong answer), and the checker following a set.
#include <amb/health_check.hpp>

#include <doctest/doctest.h>

#include "support/io_helpers.hpp"

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace health_check_test {

using namespace std::chrono_literals;
using tcp = asio::ip::tcp;

TEST_CASE("check strings: \\r \\n \\t \\0 \\\\ \\xHH decoded; other escapes and long strings refused") {
  CHECK(*amb::parse_check_bytes("PING\\r\\n") == "PING\r\n");
  CHECK(*amb::parse_check_bytes("\\x2bPONG\\t\\\\") == "+PONG\t\\");
  CHECK(*amb::parse_check_bytes("a\\0b") == std::string("a\0b", 3));
  CHECK(*amb::parse_check_bytes("") == "");
  CHECK(amb::parse_check_bytes("PING\\q").error ==
        "bad escape \"\\\\q\" in \"PING\\\\q\" (use \\r, \\n, \\t, \\0, \\\\ or \\xHH)");
  CHECK(amb::parse_check_bytes("\\x4").error.rfind("bad escape \"\\\\x4\" in ", 0) == 0);
  CHECK(amb::parse_check_bytes("\\xZZ").error.rfind("bad escape \"\\\\xZZ\" in ", 0) == 0);
  CHECK(amb::parse_check_bytes("end\\").error.rfind("bad escape \"\\\\\" in ", 0) == 0);
  CHECK(amb::parse_check_bytes(std::string(4096, 'a')));
  CHECK(amb::parse_check_bytes(std::string(4097, 'a')).error.find("longer than 4096 bytes") != std::string::npos);
}

TEST_CASE("rise and fall: in service at first, out after `fall` failures in a row, back after `rise` passes") {
  amb::check_state s;
  CHECK(s.up);
  CHECK(!s.record(false, 2, 3));
  CHECK(!s.record(false, 2, 3));
  CHECK(!s.record(true, 2, 3));  // a pass breaks the streak
  CHECK(!s.record(false, 2, 3));
  CHECK(!s.record(false, 2, 3));
  CHECK(s.record(false, 2, 3));  // third in a row
  CHECK(!s.up);
  CHECK(!s.record(true, 2, 3));
  CHECK(!s.record(false, 2, 3));
  CHECK(!s.record(true, 2, 3));
  CHECK(s.record(true, 2, 3));  // second in a row
  CHECK(s.up);
  amb::check_state one;
  CHECK(one.record(false, 1, 1));
  CHECK(one.record(true, 1, 1));
}

namespace {
/// An in-process TCP server on loopback: each connection gets `answer` once it has read something
/// (nothing when empty: it reads and stays silent), then is closed when `close_after` is set.
struct test_server {
  asio::io_context& io;
  tcp::acceptor acceptor;
  std::string answer;
  bool close_after = false;
  std::vector<std::shared_ptr<tcp::socket>> held;
  test_server(asio::io_context& i, std::string a, bool close)
      : io(i), acceptor(i), answer(std::move(a)), close_after(close) {
    acceptor.open(tcp::v4());
    acceptor.set_option(asio::socket_base::reuse_address(true));
    acceptor.bind({asio::ip::make_address("127.0.0.1"), 0});
    acceptor.listen();
    accept();
  }
  amb::host_port address() const { return {"127.0.0.1", acceptor.local_endpoint().port()}; }
  void accept() {
    acceptor.async_accept([this](std::error_code ec, tcp::socket s) {
      if (ec) return;
      auto sock = std::make_shared<tcp::socket>(std::move(s));
      held.push_back(sock);
      auto buf = std::make_shared<std::array<char, 64>>();
      sock->async_read_some(asio::buffer(*buf), [this, sock, buf](std::error_code e, std::size_t) {
        if (e || answer.empty()) return;
        asio::async_write(*sock, asio::buffer(answer), [this, sock](std::error_code, std::size_t) {
          if (close_after) sock->close();
        });
      });
      accept();
    });
  }
};

amb::health_check_options redis_check(std::chrono::milliseconds timeout = 300ms) {
  amb::health_check_options o;
  o.timeout = timeout;
  o.send = "PING\r\n";
  o.expect = "+PONG";
  return o;
}
}  // namespace

TEST_CASE("one check: passes, refused, stalled, wrong answer, closed without one") {
  asio::io_context io;
  test_server pong(io, "+PONG\r\n", false);
  CHECK(amb::test::run_on(io, amb::check_once(io.get_executor(), pong.address(), redis_check())) == "");
  amb::health_check_options connect_only;
  CHECK(amb::test::run_on(io, amb::check_once(io.get_executor(), pong.address(), connect_only)) == "");

  amb::host_port refused;
  {
    test_server gone(io, "", false);
    refused = gone.address();
  }
  CHECK(amb::test::run_on(io, amb::check_once(io.get_executor(), refused, redis_check())) ==
        "connect: Connection refused");

  test_server silent(io, "", false);
  CHECK(amb::test::run_on(io, amb::check_once(io.get_executor(), silent.address(), redis_check())) ==
        "timed out after 300ms (no answer)");

  test_server error(io, "-ERR unknown\r\n", true);
  CHECK(amb::test::run_on(io, amb::check_once(io.get_executor(), error.address(), redis_check())) ==
        "answered \"-ERR unknown\\r\\n\" (expected \"+PONG\")");

  test_server closing(io, "\x1b", true);  // one byte, then closed: not the answer
  CHECK(amb::test::run_on(io, amb::check_once(io.get_executor(), closing.address(), redis_check())) ==
        "answered \"\\x1b\" (expected \"+PONG\")");
}

TEST_CASE("the checker: a refused instance goes out of service, comes back once it accepts, removal stops it") {
  asio::io_context io;
  amb::host_port where;
  {
    test_server gone(io, "", false);
    where = gone.address();
  }
  amb::health_check_options o;
  o.interval = 50ms;
  o.timeout = 200ms;
  o.rise = 2;
  o.fall = 2;
  std::vector<std::pair<std::string, bool>> changes;
  amb::health_checker checker(io.get_executor(), o,
                              [&](const std::string& id, bool up) { changes.emplace_back(id, up); });
  checker.set_instances({{"/services/x/a", where}});
  REQUIRE(checker.instances().size() == 1);
  CHECK(checker.instances()[0].up);  // in service until checked
  auto run_until = [&](auto done) {
    for (int i = 0; i < 100 && !done(); ++i) {
      io.restart();
      io.run_for(20ms);
    }
    return done();
  };
  CHECK(run_until([&] { return changes.size() == 1; }));
  CHECK(changes.at(0) == std::make_pair(std::string("/services/x/a"), false));
  CHECK(!checker.instances()[0].up);
  // Something listens there again: back after two passes.
  tcp::acceptor back(io, {asio::ip::make_address("127.0.0.1"), where.port});
  std::vector<tcp::socket> accepted;
  std::function<void()> accept = [&] {
    back.async_accept([&](std::error_code ec, tcp::socket s) {
      if (ec) return;
      accepted.push_back(std::move(s));
      accept();
    });
  };
  accept();
  CHECK(run_until([&] { return changes.size() == 2; }));
  CHECK(changes.at(1) == std::make_pair(std::string("/services/x/a"), true));
  // Removed from the set: no longer checked, no more changes.
  checker.set_instances({});
  CHECK(checker.instances().empty());
  back.close();
  io.restart();
  io.run_for(300ms);
  CHECK(changes.size() == 2);
}

}  // namespace health_check_test
