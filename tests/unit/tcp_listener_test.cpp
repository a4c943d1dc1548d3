// SPDX-License-Identifier: MIT
// listen_tcp and accept_loop: errors name the address, the loop hands over sockets and ends on close.
#include <amb/tcp_listener.hpp>
#include <amb/app/fd_limit.hpp>

#include <doctest/doctest.h>

#include "support/process.hpp"
#include "support/stderr_capture.hpp"

#include <sys/resource.h>
#include <fcntl.h>

#include <sys/wait.h>
#include <unistd.h>

#include <future>
#include <vector>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace tcp_listener_test {

using namespace std::chrono_literals;
using tcp = asio::ip::tcp;

TEST_CASE("listen_tcp: a taken port is an error naming the address") {
  asio::io_context io;
  std::error_code ec;
  auto first = amb::listen_tcp(io.get_executor(), {"127.0.0.1", 0}, ec);
  REQUIRE(!ec);
  const std::uint16_t port = first.local_endpoint().port();
  auto second = amb::listen_tcp(io.get_executor(), {"127.0.0.1", port}, ec);
  CHECK(ec == asio::error::address_in_use);
  CHECK(!second.is_open());
  const std::string where = "127.0.0.1:" + std::to_string(port);
  CHECK_THROWS_WITH_AS(amb::listen_tcp(io.get_executor(), {"127.0.0.1", port}),
                       ("listen " + where + ": Address already in use").c_str(), std::system_error);
}

TEST_CASE("listen_tcp: a bad address is an error, not a crash") {
  asio::io_context io;
  std::error_code ec;
  auto a = amb::listen_tcp(io.get_executor(), {"192.0.2.1", 1}, ec);  // not an address of this host
  CHECK(ec == std::error_code(EADDRNOTAVAIL, asio::error::get_system_category()));
  CHECK(!a.is_open());
}

TEST_CASE("accept_loop hands each connection over and returns when the acceptor closes") {
  asio::io_context io;
  auto acceptor = amb::listen_tcp(io.get_executor(), {"127.0.0.1", amb::test::free_port()});
  const auto where = acceptor.local_endpoint();
  int accepted = 0;
  bool returned = false;
  asio::co_spawn(io,
                 amb::accept_loop(acceptor,
                                  [&](tcp::socket s) {
                                    CHECK(s.is_open());
#if AMB_REACTOR_WAIT
                                    // amb's own fd, never dup()ed: closing it takes it out of epoll,
                                    // and Asio makes no epoll_ctl(EPOLL_CTL_DEL) first.
                                    const auto state = amb::detail::socket_reactor_access::impl(s).state_;
                                    CHECK((state & asio::detail::socket_ops::possible_dup) == 0);
#endif
                                    if (++accepted == 3) acceptor.close();
                                  }),
                 [&](std::exception_ptr e) {
                   CHECK(!e);
                   returned = true;
                 });
  std::vector<tcp::socket> clients;
  for (int i = 0; i < 3; ++i) {
    clients.emplace_back(io);
    clients.back().connect(where);
  }
  io.run_for(5s);
  CHECK(accepted == 3);
  CHECK(returned);
}

TEST_CASE("accept_loop out of fds: waits, serves once fds are free, and logs at most one line per 10 s") {
  amb::log::set_program("prog");
  amb::log::set_level(amb::log::level::info);
  asio::io_context io;
  auto acceptor = amb::listen_tcp(io.get_executor(), {"127.0.0.1", amb::test::free_port()});
  std::vector<tcp::socket> accepted;
  asio::co_spawn(io, amb::accept_loop(acceptor, [&](tcp::socket s) { accepted.push_back(std::move(s)); }),
                 asio::detached);
  rlimit saved{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
  std::vector<tcp::socket> clients;
  auto connect_some = [&](int n) {
    for (int i = 0; i < n; ++i) {
      clients.emplace_back(io);
      clients.back().connect(acceptor.local_endpoint());  // completes in the listen queue
    }
  };
  // No fd number left: the lowest free one becomes the limit. Accepts fail with EMFILE, twice, with a
  // moment between in which fds were free (the way a busy ambassador sees it).
  auto starve_for = [&](std::chrono::milliseconds d) {
    const int lowest_free = ::open("/dev/null", O_RDONLY);
    REQUIRE(lowest_free >= 0);
    ::close(lowest_free);
    rlimit low = saved;
    low.rlim_cur = static_cast<rlim_t>(lowest_free);
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
    io.restart();
    io.run_for(d);
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &saved) == 0);
  };
  const std::string out = amb::test::stderr_of([&] {
    connect_some(2);
    starve_for(450ms);
    CHECK(accepted.empty());
    io.restart();
    io.run_for(300ms);  // fds free: both are served
    CHECK(accepted.size() == 2);
    connect_some(1);
    starve_for(450ms);
    CHECK(accepted.size() == 2);
    io.restart();
    io.run_for(300ms);
    CHECK(accepted.size() == 3);
  });
  const std::string line = "prog: warning: accept on 127.0.0.1:" + std::to_string(acceptor.local_endpoint().port()) +
                           ": Too many open files; pausing accepts for 100ms until fds free up\n";
  CHECK(out == line);  // one line, although there were two bursts with accepts between
  acceptor.close();
  io.restart();
  io.run_for(100ms);
}

TEST_CASE("is_resource_error knows fd and memory shortages in Asio's and the standard categories") {
  CHECK(amb::is_resource_error(asio::error::no_descriptors));
  CHECK(amb::is_resource_error(std::error_code(ENFILE, std::system_category())));
  CHECK(amb::is_resource_error(std::error_code(ENOBUFS, asio::error::get_system_category())));
  CHECK(amb::is_resource_error(std::make_error_code(std::errc::not_enough_memory)));
  CHECK(!amb::is_resource_error(asio::error::connection_refused));
  CHECK(!amb::is_resource_error(std::error_code(EMFILE, std::future_category())));
}

TEST_CASE("raise_fd_limit raises the soft limit to the hard one") {
  rlimit before{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &before) == 0);
  const auto now = amb::raise_fd_limit();
  rlimit after{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &after) == 0);
  CHECK(now == after.rlim_cur);
  CHECK(after.rlim_cur >= before.rlim_cur);
  CHECK(after.rlim_cur == after.rlim_max);
  CHECK(after.rlim_max >= before.rlim_max);
}

TEST_CASE("raise_fd_limit raises the hard limit too when the process may (CAP_SYS_RESOURCE), else only the soft one") {
  // In a child: lowering a hard limit cannot be undone without privilege.
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // Half the hard limit in force (a container may give only 1024): lowering needs no privilege.
    rlimit start{};
    if (::getrlimit(RLIMIT_NOFILE, &start) != 0) ::_exit(9);
    const rlim_t hard = start.rlim_max == RLIM_INFINITY ? 4096 : start.rlim_max / 2;
    rlimit low{hard / 2, hard};
    if (::setrlimit(RLIMIT_NOFILE, &low) != 0) ::_exit(10);
    // May this process raise a hard limit (CAP_SYS_RESOURCE; root in a container may lack it)?
    rlimit probe{hard + 1, hard + 1};
    const bool privileged = ::setrlimit(RLIMIT_NOFILE, &probe) == 0;
    if (privileged && ::setrlimit(RLIMIT_NOFILE, &low) != 0) ::_exit(14);
    const auto got = amb::raise_fd_limit();
    rlimit now{};
    ::getrlimit(RLIMIT_NOFILE, &now);
    if (got != now.rlim_cur || now.rlim_cur != now.rlim_max) ::_exit(11);
    if (privileged) ::_exit(now.rlim_max >= 65536 ? 0 : 12);  // fs.nr_open is at least 64k on Linux
    ::_exit(now.rlim_max == hard ? 0 : 13);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("listen_tcp with reuse_port: several acceptors share one port, and connections reach them") {
  asio::io_context io;
  std::error_code ec;
  auto first = amb::listen_tcp(io.get_executor(), {"127.0.0.1", amb::test::free_port()}, ec, true);
  REQUIRE(!ec);
  const std::uint16_t port = first.local_endpoint().port();
  auto second = amb::listen_tcp(io.get_executor(), {"127.0.0.1", port}, ec, true);
  CHECK(!ec);
  CHECK(second.is_open());
  // Without reuse_port the same port is taken.
  auto third = amb::listen_tcp(io.get_executor(), {"127.0.0.1", port}, ec);
  CHECK(ec == asio::error::address_in_use);
  // The kernel spreads connections (by a hash of the client's address and port) over both.
  int reached_first = 0, reached_second = 0;
  std::vector<tcp::socket> clients;
  for (int i = 0; i < 64; ++i) {
    clients.emplace_back(io);
    clients.back().connect({asio::ip::make_address("127.0.0.1"), port});
  }
  first.non_blocking(true);
  second.non_blocking(true);
  for (;;) {
    auto s = first.accept(ec);
    if (ec) break;
    ++reached_first;
  }
  for (;;) {
    auto s = second.accept(ec);
    if (ec) break;
    ++reached_second;
  }
  CHECK(reached_first + reached_second == 64);
  CHECK(reached_first > 0);
  CHECK(reached_second > 0);
}

}  // namespace tcp_listener_test
