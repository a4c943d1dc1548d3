// SPDX-License-Identifier: MIT
// The proxy on real loopback sockets: the handler path for a first connect that works, the
// general path (a coroutine) for failing over and for host names, and the connect timeout of both.
//
// Layout: client -> [listener | proxy] -> instances, each instance a listening socket the test
// accepts from with blocking calls. The proxy runs on an io_context of its own thread, as in the
// programs; the test reads the proxy's totals once that thread has stopped.
#include <amb/event_loop.hpp>
#include <amb/proxy.hpp>
#include <amb/tcp_listener.hpp>

#include "support/process.hpp"

#include <doctest/doctest.h>

#include <sys/socket.h>

#include <optional>
#include <string>
#include <thread>
#include <vector>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace proxy_test {

using namespace std::chrono_literals;
using tcp = asio::ip::tcp;

namespace {

/// Sets a receive timeout so a broken proxy fails the test instead of hanging it.
void recv_timeout(int fd, std::chrono::seconds t) {
  timeval tv{static_cast<time_t>(t.count()), 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

/// An instance: a listening socket on loopback (blocking; the test accepts from it).
struct instance_port {
  asio::io_context io;
  tcp::acceptor acceptor = amb::test::test_acceptor<tcp::acceptor>(io);
  std::uint16_t port() const { return acceptor.local_endpoint().port(); }
  /// Waits (up to 5 s) for the proxy's connection; nullopt when none came.
  std::optional<tcp::socket> accept() {
    recv_timeout(acceptor.native_handle(), 5s);  // SO_RCVTIMEO bounds accept(2) too
    std::error_code ec;
    tcp::socket s = acceptor.accept(ec);
    if (ec) return std::nullopt;
    recv_timeout(s.native_handle(), 5s);
    return s;
  }
};

/// A port where nothing listens: bound (so no other test takes it) but never listening.
struct closed_port {
  asio::io_context io;
  tcp::socket socket{io, tcp::v4()};
  std::uint16_t port = amb::test::bind_test_port(socket.native_handle());
};

/// A port whose accept queue is full: the kernel drops new SYNs, so a connect to it hangs.
struct hanging_port {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::vector<tcp::socket> fillers;
  std::uint16_t port = 0;
  hanging_port() {
    acceptor.open(tcp::v4());
    port = amb::test::bind_test_port(acceptor.native_handle());
    acceptor.listen(0);
    for (int i = 0; i < 4; ++i) {
      // Raw non-blocking connects (Asio's synchronous connect would wait), so filling never hangs.
      fillers.emplace_back(io, tcp::v4(), ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
      const auto target = acceptor.local_endpoint();
      ::connect(fillers.back().native_handle(), target.data(), static_cast<socklen_t>(target.size()));
    }
    std::this_thread::sleep_for(100ms);  // let the handshakes that fit complete
  }
};

/// A proxy listening on loopback, on its own thread.
struct fixture {
  asio::io_context io{1};
  amb::balancer balancer;
  std::optional<amb::proxy> proxy;
  tcp::acceptor listener = amb::test::test_acceptor<tcp::acceptor>(io);
  std::thread thread;
  asio::io_context client_io;  // blocking calls only, never run

  explicit fixture(amb::proxy_options options = {}) { proxy.emplace(io.get_executor(), balancer, options); }
  ~fixture() {
    stop();
    amb::destroy_pending_work(io);  // handlers and frames first, then the proxy they point into
    proxy.reset();
  }
  /// Adds instance `id` at `address` (before start()).
  void add(const std::string& id, const amb::host_port& address) { balancer.upsert(id, address); }
  void start() {
    asio::co_spawn(io, amb::accept_loop(listener, [this](tcp::socket s) { proxy->handle(std::move(s)); }),
                   asio::detached);
    thread = std::thread([this] { io.run(); });
  }
  /// Stops the proxy's thread; its totals can be read after this.
  const amb::proxy_stats& stop() {
    io.stop();
    if (thread.joinable()) thread.join();
    return proxy->stats();
  }
  tcp::socket connect() {
    tcp::socket client(client_io);
    client.connect(listener.local_endpoint());
    recv_timeout(client.native_handle(), 5s);
    return client;
  }
};

/// Sends `text` one way and reads it on the other side: true when it arrived whole.
bool passes(tcp::socket& from, tcp::socket& to, const std::string& text) {
  asio::write(from, asio::buffer(text));
  std::string got(text.size(), '\0');
  std::error_code ec;
  asio::read(to, asio::buffer(got), ec);
  return !ec && got == text;
}

}  // namespace

TEST_CASE("a first connect that works relays both ways (the handler path, numeric address)") {
  instance_port b;
  fixture f;
  f.add("b", {"127.0.0.1", b.port()});
  REQUIRE(f.balancer.get("b")->endpoint.has_value());  // parsed once, when the instance was added
  f.start();
  for (int round = 0; round < 3; ++round) {
    auto client = f.connect();
    auto server = b.accept();
    REQUIRE(server);
    CHECK(passes(client, *server, "ping " + std::to_string(round)));
    CHECK(passes(*server, client, "pong " + std::to_string(round)));
  }
  const auto& stats = f.stop();
  CHECK(stats.accepted == 3);
  CHECK(stats.rejected == 0);
  CHECK(stats.connect_failures.empty());
}

TEST_CASE("a host name is resolved on every connect (the general path)") {
  instance_port b;
  fixture f;
  f.add("b", {"localhost", b.port()});
  REQUIRE_FALSE(f.balancer.get("b")->endpoint.has_value());
  f.start();
  auto client = f.connect();
  auto server = b.accept();
  REQUIRE(server);
  CHECK(passes(client, *server, "over a name"));
  CHECK(passes(*server, client, "and back"));
  CHECK(f.stop().connect_failures.empty());
}

TEST_CASE("a refused first connect fails over to the next instance, and is counted") {
  closed_port a;
  instance_port b;
  fixture f;
  f.add("a", {"127.0.0.1", a.port});  // round-robin starts at the first id
  f.add("b", {"127.0.0.1", b.port()});
  f.start();
  auto client = f.connect();
  auto server = b.accept();
  REQUIRE(server);
  CHECK(passes(client, *server, "after a refusal"));
  const auto& stats = f.stop();
  CHECK(stats.connect_failures.at("a") == 1);
  CHECK(stats.rejected == 0);
}

TEST_CASE("a first connect that hangs times out after connect_timeout, and the next instance takes the client") {
  hanging_port a;
  instance_port b;
  amb::proxy_options options;
  options.connect_timeout = 300ms;
  fixture f(options);
  f.add("a", {"127.0.0.1", a.port});
  f.add("b", {"127.0.0.1", b.port()});
  f.start();
  const auto started = std::chrono::steady_clock::now();
  auto client = f.connect();
  auto server = b.accept();
  REQUIRE(server);
  CHECK(std::chrono::steady_clock::now() - started >= 300ms);
  CHECK(passes(client, *server, "after a timeout"));
  // Connects made after the timeout go on working: the deadline queue let go of the ones that succeeded.
  auto second = f.connect();  // round-robin: b's turn
  auto second_server = b.accept();
  REQUIRE(second_server);
  CHECK(passes(second, *second_server, "next"));
  const auto& stats = f.stop();
  CHECK(stats.connect_failures.at("a") == 1);
  CHECK(f.balancer.get("a")->total_fails == 1);
}

TEST_CASE("with a fixed target, a refused connect closes the client and counts a rejection") {
  closed_port a;
  amb::proxy_options options;
  options.fixed_target = true;
  fixture f(options);
  f.add("a", {"127.0.0.1", a.port});
  f.start();
  auto client = f.connect();
  char byte = 0;
  std::error_code ec;
  client.read_some(asio::buffer(&byte, 1), ec);
  CHECK(ec == asio::error::eof);
  const auto& stats = f.stop();
  CHECK(stats.rejected == 1);
  CHECK(stats.connect_failures.at("a") == 1);
}

TEST_CASE("a PROXY header goes first on the handler path") {
  instance_port b;
  amb::proxy_options options;
  options.send_proxy = amb::proxy_protocol::v1;
  fixture f(options);
  f.add("b", {"127.0.0.1", b.port()});
  f.start();
  auto client = f.connect();
  auto server = b.accept();
  REQUIRE(server);
  asio::write(client, asio::buffer(std::string("data")));
  const std::string expected = "PROXY TCP4 127.0.0.1 127.0.0.1 " + std::to_string(client.local_endpoint().port()) +
                               " " + std::to_string(f.listener.local_endpoint().port()) + "\r\ndata";
  std::string got(expected.size(), '\0');
  std::error_code ec;
  asio::read(*server, asio::buffer(got), ec);
  CHECK(got == expected);
}

}  // namespace proxy_test
