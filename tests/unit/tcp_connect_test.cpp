// SPDX-License-Identifier: MIT
// connect_tcp on loopback: success with TCP_NODELAY, refused, names resolved, and the overall timeout.
#include <amb/tcp_connect.hpp>

#include "support/process.hpp"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <netinet/tcp.h>

#include <optional>
#include <thread>
#include <vector>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace tcp_connect_test {

using namespace std::chrono_literals;
using tcp = asio::ip::tcp;

namespace {
/// Runs connect_tcp to `target` on a fresh io_context; returns its result and whether TCP_NODELAY is on.
std::pair<std::error_code, bool> connect(const amb::host_port& target, std::chrono::milliseconds timeout) {
  asio::io_context io;
  tcp::socket socket(io);
  std::error_code result = make_error_code(amb::errc::no_endpoint);  // overwritten when the coroutine ends
  asio::co_spawn(io, amb::connect_tcp(socket, target, timeout), [&](std::exception_ptr e, std::error_code ec) {
    REQUIRE(!e);
    result = ec;
  });
  io.run();
  bool nodelay = false;
  if (socket.is_open()) {
    tcp::no_delay option;
    socket.get_option(option);
    nodelay = option.value();
  }
  return {result, nodelay};
}
}  // namespace

TEST_CASE("connects to a listening port and sets TCP_NODELAY") {
  asio::io_context io;
  auto acceptor = amb::test::test_acceptor<tcp::acceptor>(io);
  auto [ec, nodelay] = connect({"127.0.0.1", acceptor.local_endpoint().port()}, 5s);
  CHECK(!ec);
  CHECK(nodelay);
}

TEST_CASE("the connected socket is non-blocking, for Asio too, and (with the reactor wait) close-on-exec") {
  asio::io_context io;
  auto acceptor = amb::test::test_acceptor<tcp::acceptor>(io);
  tcp::socket socket(io);
  const amb::host_port target{"127.0.0.1", acceptor.local_endpoint().port()};  // outlives the coroutine
  std::optional<std::error_code> result;
  asio::co_spawn(io, amb::connect_tcp(socket, target, 5s),
                 [&](std::exception_ptr, std::error_code ec) { result = ec; });
  io.run();
  REQUIRE(result);
  REQUIRE(!*result);
  CHECK((::fcntl(socket.native_handle(), F_GETFL) & O_NONBLOCK) != 0);
  CHECK(socket.non_blocking());  // Asio's own record: its operations need no ioctl to switch
#if AMB_REACTOR_WAIT
  // Opened with SOCK_NONBLOCK|SOCK_CLOEXEC in one socket(2): no ioctl, and no fd leaks into a child.
  CHECK((::fcntl(socket.native_handle(), F_GETFD) & FD_CLOEXEC) != 0);
  // The connect's wait was reported writable without an error: no getsockopt(SO_ERROR) was needed
  // (a refused connect is still an error: the next test).
  CHECK(amb::detail::connected_per_report(socket));
#endif
}

TEST_CASE("a name is resolved (localhost, from /etc/hosts)") {
  asio::io_context io;
  auto acceptor = amb::test::test_acceptor<tcp::acceptor>(io);
  // A plain variable, not a structured binding: doctest's message is a lambda, and Clang 14 cannot
  // capture structured bindings.
  const auto ec = std::get<0>(connect({"localhost", acceptor.local_endpoint().port()}, 5s));
  CHECK_MESSAGE(!ec, ec.message());
}

TEST_CASE("a closed port is refused, without an exception") {
  std::uint16_t port = 0;
  {
    asio::io_context io;
    auto acceptor = amb::test::test_acceptor<tcp::acceptor>(io);
    port = acceptor.local_endpoint().port();
  }
  auto [ec, nodelay] = connect({"127.0.0.1", port}, 5s);
  CHECK(ec == asio::error::connection_refused);
  CHECK(ec.message() == "Connection refused");
}

TEST_CASE("the overall timeout gives amb::errc::timeout") {
  // A listener whose accept queue is full drops new SYNs, so a connect hangs: no traffic off loopback.
  asio::io_context io;
  tcp::acceptor acceptor(io);
  acceptor.open(tcp::v4());
  amb::test::bind_test_port(acceptor.native_handle());
  acceptor.listen(0);
  std::vector<tcp::socket> fillers;
  for (int i = 0; i < 4; ++i) {
    // Raw non-blocking connects (Asio's synchronous connect would wait), so filling never hangs.
    fillers.emplace_back(io, tcp::v4(), ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
    const auto target = acceptor.local_endpoint();
    ::connect(fillers.back().native_handle(), target.data(), static_cast<socklen_t>(target.size()));
  }
  std::this_thread::sleep_for(100ms);  // let the handshakes that fit complete
  const auto started = std::chrono::steady_clock::now();
  auto [ec, nodelay] = connect({"127.0.0.1", acceptor.local_endpoint().port()}, 300ms);
  CHECK(ec == amb::errc::timeout);
  CHECK(ec.message() == "timed out");
  CHECK(std::chrono::steady_clock::now() - started >= 300ms);
}

}  // namespace tcp_connect_test
