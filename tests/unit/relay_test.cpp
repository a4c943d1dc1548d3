// SPDX-License-Identifier: MIT
// The relay on real loopback sockets: bytes both ways, half-close passed on, errors and idle timeout close both.
//
// Layout of every test: client <-> [downstream | relay | upstream] <-> server. The relay runs on
// an io_context in its own thread; the test plays client and server with blocking calls.
#include <amb/relay.hpp>
#include <amb/tcp_connect.hpp>

#include "support/process.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <future>
#include <optional>
#include <string>
#include <thread>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace relay_test {

using namespace std::chrono_literals;
using tcp = asio::ip::tcp;

namespace {

/// A connected pair of loopback sockets: `near` (on `io`) and `far` (on `io`).
std::pair<tcp::socket, tcp::socket> socket_pair(asio::io_context& near_io, asio::io_context& far_io) {
  // Not port 0: a port from the ephemeral range may carry a podman DNAT rule (test_port_low in process.hpp).
  auto acceptor = amb::test::test_acceptor<tcp::acceptor>(far_io);
  tcp::socket near(near_io);
  near.connect(acceptor.local_endpoint());
  tcp::socket far = acceptor.accept();
  return {std::move(near), std::move(far)};
}

/// Reads until EOF or an error; returns what arrived and the error that ended it.
std::string read_all(tcp::socket& s, std::error_code& ec) {
  std::string out;
  char buf[65536];
  while (true) {
    std::size_t n = s.read_some(asio::buffer(buf), ec);
    if (ec) break;
    out.append(buf, n);
  }
  return out;
}

/// Sets a receive timeout so a broken relay fails the test instead of hanging it.
void recv_timeout(tcp::socket& s, std::chrono::seconds t) {
  timeval tv{static_cast<time_t>(t.count()), 0};
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

/// A running relay between a fresh client and a fresh server.
struct fixture {
  asio::io_context relay_io{1};  // the relay's own thread, as in the programs
  asio::io_context test_io;      // blocking calls only, never run
  // The relay's thread runs until the end of the test, also after the relay ended (pipes_lent asks it).
  asio::executor_work_guard<asio::io_context::executor_type> keep_running{relay_io.get_executor()};
  tcp::socket client{test_io}, server{test_io};
  amb::relay_counters live;
  std::future<amb::relay_counters> result;
  std::thread thread;

  /// `amb_connects`: the upstream is connected by amb::connect_tcp, as the proxy connects it (else by
  /// Asio's blocking connect, as a user of the relay might). `greeting`: the server sends it before
  /// the relay starts, and the relay's reactor sees it arrive while nothing waits for it. `request`:
  /// the client sends it before the relay starts (as a client has mostly done by then).
  explicit fixture(std::chrono::milliseconds idle = 0ms, bool splice = true, bool amb_connects = false,
                   const std::string& greeting = {}, const std::string& request = {}) {
    auto [c, down] = socket_pair(test_io, relay_io);
    client = std::move(c);
    tcp::socket up(relay_io);
    if (amb_connects) {
      auto acceptor = amb::test::test_acceptor<tcp::acceptor>(test_io);
      const amb::host_port target{"127.0.0.1", acceptor.local_endpoint().port()};  // outlives the coroutine
      std::optional<std::error_code> connected;
      asio::co_spawn(relay_io, amb::connect_tcp(up, target, 5s),
                     [&](std::exception_ptr, std::error_code ec) { connected = ec; });
      while (!connected) relay_io.run_one();  // the relay's thread does not run yet
      REQUIRE(!*connected);
      server = acceptor.accept();
    } else {
      auto [u, s] = socket_pair(relay_io, test_io);
      up = std::move(u);
      server = std::move(s);
    }
    recv_timeout(client, 10s);
    recv_timeout(server, 10s);
    if (!request.empty()) asio::write(client, asio::buffer(request));
    if (!greeting.empty()) asio::write(server, asio::buffer(greeting));
    if (!request.empty() || !greeting.empty()) {
      std::this_thread::sleep_for(50ms);
      relay_io.poll();  // the reactor takes in their events while no operation waits for them
    }
    auto promise = std::make_shared<std::promise<amb::relay_counters>>();
    result = promise->get_future();
    asio::co_spawn(relay_io, amb::relay(std::move(down), std::move(up), {idle, &live, splice}),
                   [promise](std::exception_ptr e, amb::relay_counters r) {
                     if (e)
                       promise->set_exception(e);
                     else
                       promise->set_value(r);
                   });
    thread = std::thread([this] { relay_io.run(); });
  }
  ~fixture() {
    relay_io.stop();
    thread.join();
  }
  /// Pipes the relay's thread has lent to connections now (asked on that thread: the count is per thread).
  std::size_t pipes_lent() {
#if AMB_RELAY_SPLICE
    std::promise<std::size_t> lent;
    asio::post(relay_io, [&] { lent.set_value(amb::detail::relay_pipes_lent()); });
    auto answer = lent.get_future();
    REQUIRE(answer.wait_for(10s) == std::future_status::ready);
    return answer.get();
#else
    return 0;
#endif
  }
  /// The relay's result, or a failed check when it has not ended within 10 s.
  amb::relay_counters finished() {
    REQUIRE(result.wait_for(10s) == std::future_status::ready);
    return result.get();
  }
};

/// `times` redis-like requests (7 bytes) and replies (7 bytes) through the relay, one at a time; the
/// client's first request was sent already when `first_sent`. Then both ends close; returns the totals.
amb::relay_counters request_reply(fixture& f, int times, bool first_sent = false) {
  char buf[7];
  for (int i = 0; i < times; ++i) {
    if (i > 0 || !first_sent) asio::write(f.client, asio::buffer(std::string("GET k\r\n")));
    asio::read(f.server, asio::buffer(buf, sizeof buf));
    asio::write(f.server, asio::buffer(std::string("$1\r\nv\r\n")));
    asio::read(f.client, asio::buffer(buf, sizeof buf));
  }
  f.client.shutdown(tcp::socket::shutdown_send);
  f.server.shutdown(tcp::socket::shutdown_send);
  return f.finished();
}

}  // namespace

TEST_CASE("bytes flow both ways and the counters add up") {
  fixture f;
  asio::write(f.client, asio::buffer(std::string("hello")));
  char got[5];
  asio::read(f.server, asio::buffer(got));
  CHECK(std::string(got, 5) == "hello");

  // More than the relay's buffer and the socket buffers, so back-pressure paths run too.
  std::string big(3 * 1024 * 1024, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 + i / 65536);
  std::thread writer([&] {
    asio::write(f.server, asio::buffer(big));
    f.server.shutdown(tcp::socket::shutdown_send);
  });
  std::error_code ec;
  std::string received = read_all(f.client, ec);
  writer.join();
  CHECK(ec == asio::error::eof);
  CHECK(received.size() == big.size());
  CHECK(received == big);

  f.client.shutdown(tcp::socket::shutdown_send);
  std::string rest = read_all(f.server, ec);
  CHECK(rest.empty());
  CHECK(ec == asio::error::eof);

  auto totals = f.finished();
  CHECK(totals.bytes_up == 5);
  CHECK(totals.bytes_down == big.size());
  CHECK(f.live.bytes_up == 5);
  CHECK(f.live.bytes_down == big.size());
}

TEST_CASE("half-close is passed on: the client sends, shuts down its side, and still gets the whole reply") {
  fixture f;
  std::string request(200 * 1024, 'q');
  asio::write(f.client, asio::buffer(request));
  f.client.shutdown(tcp::socket::shutdown_send);

  std::error_code ec;
  std::string seen = read_all(f.server, ec);  // ends only if the relay passed the EOF on
  CHECK(ec == asio::error::eof);
  CHECK(seen == request);

  std::string reply(500 * 1024, 'r');
  std::thread writer([&] {
    asio::write(f.server, asio::buffer(reply));
    f.server.close();
  });
  std::string got = read_all(f.client, ec);
  writer.join();
  CHECK(ec == asio::error::eof);
  CHECK(got.size() == reply.size());
  auto totals = f.finished();
  CHECK(totals.bytes_up == request.size());
  CHECK(totals.bytes_down == reply.size());
}

TEST_CASE("an upstream reset mid-stream closes the downstream and ends the relay") {
  fixture f;
  asio::write(f.server, asio::buffer(std::string("partial")));
  char got[7];
  asio::read(f.client, asio::buffer(got));
  CHECK(std::string(got, 7) == "partial");
  // SO_LINGER 0: close sends RST, as a crashed server's kernel does.
  f.server.set_option(asio::socket_base::linger(true, 0));
  f.server.close();
  std::error_code ec;
  std::string rest = read_all(f.client, ec);
  CHECK(rest.empty());
  CHECK((ec == asio::error::eof || ec == asio::error::connection_reset));
  f.finished();
}

TEST_CASE("an upstream close mid-stream ends the downstream too, while the client still sends") {
  fixture f;
  f.server.close();  // FIN: passed on as EOF to the client
  std::error_code ec;
  read_all(f.client, ec);
  CHECK(ec == asio::error::eof);
  // The client keeps writing into a closed server: the server's RST is an error that closes both.
  std::string chunk(64 * 1024, 'x');
  ec.clear();
  for (int i = 0; i < 50 && !ec; ++i) {
    asio::write(f.client, asio::buffer(chunk), ec);
    std::this_thread::sleep_for(10ms);
  }
  CHECK(ec);  // broken pipe or reset: the relay closed the downstream
  f.finished();
}

TEST_CASE("the idle timeout closes both sides, and traffic keeps it from firing") {
  fixture f(600ms);
  // Traffic every 100 ms for about a second: longer than the timeout, so only activity keeps it open.
  char byte;
  for (int i = 0; i < 10; ++i) {
    asio::write(f.client, asio::buffer("p", 1));
    asio::read(f.server, asio::buffer(&byte, 1));
    std::this_thread::sleep_for(100ms);
  }
  asio::write(f.server, asio::buffer("!", 1));
  asio::read(f.client, asio::buffer(&byte, 1));
  CHECK(byte == '!');
  // Now silence: both sides see the connection end.
  std::error_code ec;
  read_all(f.client, ec);
  CHECK((ec == asio::error::eof || ec == asio::error::connection_reset));
  read_all(f.server, ec);
  CHECK((ec == asio::error::eof || ec == asio::error::connection_reset));
  auto totals = f.finished();
  CHECK(totals.bytes_up == 10);
  CHECK(totals.bytes_down == 1);
}

TEST_CASE("a client reset ends the relay and closes the upstream") {
  fixture f;
  f.client.set_option(asio::socket_base::linger(true, 0));
  f.client.close();
  std::error_code ec;
  read_all(f.server, ec);
  CHECK((ec == asio::error::eof || ec == asio::error::connection_reset));
  f.finished();
}

TEST_CASE("request/reply traffic costs one read per message: a short read is not followed by a read for EAGAIN") {
  fixture f;
  auto totals = request_reply(f, 200);
  // Each of the 400 messages is read once; reading on until EAGAIN would add ~400 empty reads. Two
  // may happen: the relay's first read of the client, if it starts before the first request is
  // there, and its first wait on an upstream that amb did not connect, which completes at once (Asio
  // does not know that nothing arrived yet). Without the reactor wait (AMB_NO_ASIO_INTERNALS) the
  // relay cannot know a FIN did not come with the data: it reads on.
#if AMB_REACTOR_WAIT
  CHECK(totals.empty_reads <= 2);
#else
  CHECK(totals.empty_reads <= 420);
#endif
  CHECK(totals.bytes_spliced == 0);  // small messages are copied: no pipe for them
  CHECK(totals.bytes_up == 200 * 7);
  CHECK(totals.bytes_down == 200 * 7);
}

TEST_CASE("over an upstream amb connected, a request and its reply cost no read that finds nothing") {
  // amb::connect_tcp tells the reactor that its new socket holds nothing: the relay's first wait on
  // it waits, instead of completing at once for a read that finds nothing. The client's first
  // request is there when the relay starts, so its first read finds it.
  fixture f(0ms, true, true, {}, "GET k\r\n");
  auto totals = request_reply(f, 50, true);
#if AMB_REACTOR_WAIT
  CHECK(totals.empty_reads == 0);
#else
  CHECK(totals.empty_reads <= 101);
#endif
  CHECK(totals.bytes_up == 50 * 7);
  CHECK(totals.bytes_down == 50 * 7);
}

TEST_CASE("a server that speaks first, over an upstream amb connected: its greeting reaches the client") {
  // The greeting arrived before the relay's first wait on the upstream: that wait must not sleep
  // through it (the reactor remembers the event; nothing has read the socket yet).
  for (int i = 0; i < 5; ++i) {
    fixture f(0ms, true, true, "220 ready\r\n");
    char buf[11];
    asio::read(f.client, asio::buffer(buf, sizeof buf));
    CHECK(std::string(buf, sizeof buf) == "220 ready\r\n");
    f.client.shutdown(tcp::socket::shutdown_send);
    f.server.shutdown(tcp::socket::shutdown_send);
    f.finished();
  }
}

TEST_CASE("a few bytes and a FIN arriving together: the bytes and then the EOF are passed on") {
  for (int i = 0; i < 20; ++i) {
    fixture f;
    // Data and FIN in quick succession, so one readiness report often carries both.
    asio::write(f.client, asio::buffer(std::string("last words")));
    f.client.shutdown(tcp::socket::shutdown_send);
    std::error_code ec;
    CHECK(read_all(f.server, ec) == "last words");
    CHECK(ec == asio::error::eof);
    asio::write(f.server, asio::buffer(std::string("bye")));
    f.server.shutdown(tcp::socket::shutdown_send);
    CHECK(read_all(f.client, ec) == "bye");
    CHECK(ec == asio::error::eof);
    f.finished();
  }
}

/// `size` bytes of a pattern no shifted copy of itself matches, so a lost or repeated piece shows.
std::string pattern(std::size_t size) {
  std::string s(size, '\0');
  for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>(i * 7 + i / 65536);
  return s;
}

/// Sets SIGPIPE's disposition for one test, and puts the old one back.
struct sigpipe_disposition {
  void (*old)(int);
  explicit sigpipe_disposition(void (*now)(int)) : old(std::signal(SIGPIPE, now)) {}
  ~sigpipe_disposition() { std::signal(SIGPIPE, old); }
};

/// Sends `data` from `from` (in a thread, so a full destination cannot block the test) while `to`
/// reads all of it, `slow`ly when asked (the relay then holds bytes back: back-pressure); with `end`,
/// `from` then shuts down its sending side and `to` must see the EOF.
std::string send_through(tcp::socket& from, tcp::socket& to, const std::string& data, bool slow = false,
                         bool end = false) {
  std::thread writer([&] {
    asio::write(from, asio::buffer(data));
    if (end) from.shutdown(tcp::socket::shutdown_send);
  });
  std::string out;
  std::error_code ec;
  char buf[65536];
  for (int reads = 0; out.size() < data.size() || end; ++reads) {
    if (slow && reads % 8 == 0) std::this_thread::sleep_for(1ms);
    const std::size_t want = end ? sizeof buf : std::min(sizeof buf, data.size() - out.size());
    std::size_t n = to.read_some(asio::buffer(buf, slow ? std::min<std::size_t>(want, 4096) : want), ec);
    if (ec) break;
    out.append(buf, n);
  }
  writer.join();
  CHECK((end ? ec == asio::error::eof : !ec));
  return out;
}

TEST_CASE("bulk data goes by splice both ways, also through back-pressure; an idle connection then holds no pipe") {
  sigpipe_disposition ignored(SIG_IGN);  // as every amb program sets it
  fixture f;
  const auto up = pattern(8 * 1024 * 1024), down = pattern(6 * 1024 * 1024 + 123);
  // First a small exchange: copied, and the connection holds no pipe.
  asio::write(f.client, asio::buffer(std::string("hello")));
  char got[5];
  asio::read(f.server, asio::buffer(got));
  CHECK(f.pipes_lent() == 0);
  CHECK(send_through(f.server, f.client, down, true) == down);  // a slow client: the relay waits for it
  CHECK(f.pipes_lent() == 0);  // the connection is idle and open: its pipe went back with the burst
  CHECK(send_through(f.client, f.server, up) == up);
  CHECK(f.pipes_lent() == 0);
  CHECK(send_through(f.client, f.server, "bye", false, true) == "bye");
  CHECK(send_through(f.server, f.client, "", false, true).empty());
  auto totals = f.finished();
  CHECK(totals.bytes_up == 5 + up.size() + 3);
  CHECK(totals.bytes_down == down.size());
#if AMB_RELAY_SPLICE
  // All but the first full buffers of each burst (copied until the relay sees it is bulk) are spliced.
  MESSAGE("spliced ", totals.bytes_spliced, " of ", totals.bytes_up + totals.bytes_down, " bytes");
  CHECK(totals.bytes_spliced > (up.size() + down.size()) / 2);
#else
  CHECK(totals.bytes_spliced == 0);
#endif
  CHECK(f.live.bytes_spliced == totals.bytes_spliced);
}

TEST_CASE("with splice off, or where SIGPIPE is not ignored, bulk data is copied, byte for byte") {
  for (bool splice : {false, true}) {
    // splice(2) has no MSG_NOSIGNAL: into a vanished peer it would raise SIGPIPE and kill the process.
    sigpipe_disposition disposition(splice ? SIG_DFL : SIG_IGN);
    fixture f(0ms, splice);
    const auto data = pattern(4 * 1024 * 1024);
    CHECK(send_through(f.server, f.client, data, true, true) == data);
    f.client.shutdown(tcp::socket::shutdown_send);
    auto totals = f.finished();
    CHECK(totals.bytes_down == data.size());
    CHECK(totals.bytes_spliced == 0);
  }
}

TEST_CASE("a reset in the middle of spliced bulk data ends the relay and frees its pipe") {
  sigpipe_disposition ignored(SIG_IGN);  // without it the relay would not splice (next test)
  fixture f;
  const auto data = pattern(4 * 1024 * 1024);
  std::thread writer([&] {
    std::error_code ignored;  // the relay closes the connection under this write
    asio::write(f.server, asio::buffer(data), ignored);
  });
  char buf[4096];
  std::size_t seen = 0;
  while (seen < 1024 * 1024) seen += f.client.read_some(asio::buffer(buf));
  // The relay is mid-burst, with bytes in its pipe (the client reads no more): now the client resets.
  f.client.set_option(asio::socket_base::linger(true, 0));
  f.client.close();
  f.finished();
  writer.join();
  CHECK(f.pipes_lent() == 0);
}

}  // namespace relay_test
