// SPDX-License-Identifier: MIT
// http_client against real servers: etcd's JSON gateway (TCP) and podman's Docker API (unix socket),
// plus small in-test loopback servers for what real servers will not do on demand (count connections,
// close kept-alive connections, never answer, answer garbage).
#include <amb/detail/line_splitter.hpp>
#include <amb/http_client.hpp>

#include "support/etcd_server.hpp"
#include "support/io_helpers.hpp"
#include "support/podman_service.hpp"

#include <doctest/doctest.h>

#include <deque>
#include <sstream>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace http_client_test {

using namespace std::chrono_literals;
using amb::errc;
using amb::http_client;
using amb::http_request;
using amb::http_response;
using amb::test::endpoint_of;
using amb::test::run_on;
using asio::ip::tcp;

namespace {

/// The system_error a call throws (fails the test when it does not throw one).
template <class T>
std::system_error run_error(asio::io_context& io, asio::awaitable<T> a) {
  try {
    run_on(io, std::move(a));
  } catch (const std::system_error& e) {
    return e;
  }
  FAIL("expected a std::system_error");
  return std::system_error(std::error_code{});
}

/// A loopback TCP server on the test's io_context; `serve` runs for each accepted connection.
class test_server {
public:
  using socket_ptr = std::shared_ptr<tcp::socket>;
  using handler = std::function<asio::awaitable<void>(socket_ptr)>;

  test_server(asio::io_context& io, handler serve) : state_(std::make_shared<state>(io)) {
    state_->serve = std::move(serve);
    asio::co_spawn(io, accept_loop(state_), [](std::exception_ptr) {});  // ends when the acceptor closes
  }
  ~test_server() {
    std::error_code ignored;  // already closed is fine
    state_->acceptor.close(ignored);
    for (auto& s : state_->sockets) s->close(ignored);
  }
  std::uint16_t port() const { return state_->acceptor.local_endpoint().port(); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port()); }
  /// Connections accepted so far.
  int accepted() const { return state_->accepted; }

private:
  struct state {
    explicit state(asio::io_context& io) : acceptor(amb::test::test_acceptor<tcp::acceptor>(io)) {}
    tcp::acceptor acceptor;
    handler serve;
    int accepted = 0;
    std::vector<socket_ptr> sockets;
  };
  static asio::awaitable<void> accept_loop(std::shared_ptr<state> st) {
    while (true) {
      auto s = std::make_shared<tcp::socket>(st->acceptor.get_executor());
      auto [ec] = co_await st->acceptor.async_accept(*s, amb::detail::use_nothrow_awaitable);
      if (ec) co_return;
      ++st->accepted;
      st->sockets.push_back(s);
      asio::co_spawn(st->acceptor.get_executor(), st->serve(s),
                     [](std::exception_ptr) {});  // test server: errors end it
    }
  }
  std::shared_ptr<state> state_;
};

/// Reads one request (head + Content-Length body) from s; false on EOF or error.
asio::awaitable<bool> read_request(tcp::socket& s, std::string& buffer, std::string* request = nullptr) {
  std::size_t end;
  while ((end = buffer.find("\r\n\r\n")) == std::string::npos) {
    char chunk[4096];
    auto [ec, n] = co_await s.async_read_some(asio::buffer(chunk), amb::detail::use_nothrow_awaitable);
    if (ec) co_return false;
    buffer.append(chunk, n);
  }
  std::string head = buffer.substr(0, end + 4);
  std::string lower = head;
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::size_t length = 0;
  if (auto p = lower.find("content-length:"); p != std::string::npos) length = std::stoul(lower.substr(p + 15));
  while (buffer.size() < head.size() + length) {
    char chunk[4096];
    auto [ec, n] = co_await s.async_read_some(asio::buffer(chunk), amb::detail::use_nothrow_awaitable);
    if (ec) co_return false;
    buffer.append(chunk, n);
  }
  if (request) *request = buffer.substr(0, head.size() + length);
  buffer.erase(0, head.size() + length);
  co_return true;
}

/// Answers every request on the connection with `reply`; closes after the first when `close_after`.
test_server::handler answer(std::string reply, bool close_after = false, std::vector<std::string>* requests = nullptr) {
  return [reply, close_after, requests](test_server::socket_ptr s) -> asio::awaitable<void> {
    std::string buffer, request;
    while (co_await read_request(*s, buffer, &request)) {
      if (requests) requests->push_back(request);
      auto [ec, n] = co_await asio::async_write(*s, asio::buffer(reply), amb::detail::use_nothrow_awaitable);
      if (ec || close_after) break;
    }
    std::error_code ignored;
    s->close(ignored);
  };
}

/// Relays bytes both ways between an accepted connection and 127.0.0.1:port (counts connections to etcd).
test_server::handler relay_to(std::uint16_t port) {
  return [port](test_server::socket_ptr down) -> asio::awaitable<void> {
    auto up = std::make_shared<tcp::socket>(down->get_executor());
    auto [ec] = co_await up->async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                                           amb::detail::use_nothrow_awaitable);
    if (ec) co_return;
    auto pump = [](test_server::socket_ptr from, test_server::socket_ptr to) -> asio::awaitable<void> {
      char buf[16384];
      while (true) {
        auto [rec, n] = co_await from->async_read_some(asio::buffer(buf), amb::detail::use_nothrow_awaitable);
        if (rec) break;
        auto [wec, w] = co_await asio::async_write(*to, asio::buffer(buf, n), amb::detail::use_nothrow_awaitable);
        if (wec) break;
      }
      std::error_code ignored;
      to->shutdown(tcp::socket::shutdown_send, ignored);
    };
    asio::co_spawn(down->get_executor(), pump(up, down), [up](std::exception_ptr) {});
    co_await pump(down, up);
  };
}

/// Accepts, reads, never answers.
asio::awaitable<void> silent(test_server::socket_ptr s) {
  char buf[4096];
  while (true) {
    auto [ec, n] = co_await s->async_read_some(asio::buffer(buf), amb::detail::use_nothrow_awaitable);
    if (ec) co_return;
  }
}

/// The single etcd shared by the etcd cases (one start-up for the whole file).
amb::test::etcd_cluster& etcd() {
  static amb::test::etcd_cluster cluster;
  return cluster;
}

http_request post(std::string target, std::string body) {
  http_request r;
  r.method = "POST";
  r.target = std::move(target);
  r.headers.push_back({"Content-Type", "application/json"});
  r.body = std::move(body);
  return r;
}

}  // namespace

TEST_CASE("etcd: GET /version and POST /v3/kv/range after an etcdctl put") {
  auto& cluster = etcd();
  cluster.etcdctl({"put", "/amb/http/key", "value-from-etcdctl"});
  asio::io_context io;
  http_client client(io.get_executor(), endpoint_of(cluster.url()));

  http_request version;
  version.target = "/version";
  auto v = run_on(io, client.request(version));
  CHECK(v.status == 200);
  CHECK(v.body.find("\"etcdserver\":\"3.") != std::string::npos);
  CHECK(v.header("content-type") == "application/json");

  // "/amb/http/key" and "value-from-etcdctl" in base64, by hand.
  auto r = run_on(io, client.request(post("/v3/kv/range", "{\"key\":\"L2FtYi9odHRwL2tleQ==\"}")));
  CHECK(r.status == 200);
  CHECK(r.header("Grpc-Metadata-Content-Type") == "application/grpc");
  CHECK(r.body.find("\"value\":\"dmFsdWUtZnJvbS1ldGNkY3Rs\"") != std::string::npos);
  CHECK(r.body.find("\"count\":\"1\"") != std::string::npos);
  CHECK(client.idle_connections() == 1);
}

TEST_CASE("etcd: keep-alive reuse, also after a chunked error reply with a trailer") {
  auto& cluster = etcd();
  asio::io_context io;
  test_server proxy(io, relay_to(cluster.client_port()));  // counts the connections made to etcd
  http_client client(io.get_executor(), endpoint_of(proxy.url()));

  auto first = run_on(io, client.request(post("/v3/kv/range", "{\"key\":\"L2FtYi9odHRwL2tleQ==\"}")));
  CHECK(first.status == 200);
  // An RPC error: etcd sends it chunked with a Grpc-Trailer-Content-Type trailer (docs/protocols.md §1.2).
  auto error = run_on(io, client.request(post("/v3/lease/revoke", "{\"ID\":\"12345\"}")));
  CHECK(error.status == 404);
  CHECK(error.header("Transfer-Encoding") == "chunked");
  REQUIRE(error.trailers.size() == 1);
  CHECK(error.trailers[0].name == "Grpc-Trailer-Content-Type");
  CHECK(error.trailers[0].value == "application/grpc");
  CHECK(error.body.find("\"code\":5") != std::string::npos);
  auto after = run_on(io, client.request(post("/v3/kv/range", "{\"key\":\"L2FtYi9odHRwL2tleQ==\"}")));
  CHECK(after.status == 200);
  CHECK(after.body == first.body);
  CHECK(proxy.accepted() == 1);  // three requests, one connection
}

TEST_CASE("etcd: stream() delivers a watch event made by etcdctl; a throwing on_data ends the stream") {
  auto& cluster = etcd();
  asio::io_context io;
  http_client client(io.get_executor(), endpoint_of(cluster.url()));
  struct stop_stream {};

  std::vector<std::string> lines;
  bool created = false;
  amb::detail::line_splitter splitter;
  auto on_data = [&](std::string_view bytes) {
    auto ec = splitter.feed(bytes, [&](std::string_view line) {
      lines.emplace_back(line);
      if (line.find("\"created\":true") != std::string_view::npos) created = true;
      if (line.find("\"events\"") != std::string_view::npos) throw stop_stream{};
    });
    REQUIRE_FALSE(ec);
  };
  // Put once the watch is created; etcdctl blocks this thread briefly, the watch bytes wait in the socket.
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        while (!created) co_await amb::detail::sleep_for(20ms);
        cluster.etcdctl({"put", "/amb/watch/x", "hello"});
      },
      [](std::exception_ptr) {});
  // key "/amb/watch/" (L2FtYi93YXRjaC8=), range_end "/amb/watch0" (L2FtYi93YXRjaDA=).
  auto watch =
      post("/v3/watch", "{\"create_request\":{\"key\":\"L2FtYi93YXRjaC8=\",\"range_end\":\"L2FtYi93YXRjaDA=\"}}");
  CHECK_THROWS_AS(run_on(io, client.stream(watch, on_data, 10s)), stop_stream);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].find("\"created\":true") != std::string::npos);
  CHECK(lines[1].find("\"key\":\"L2FtYi93YXRjaC94\"") != std::string::npos);  // /amb/watch/x
  CHECK(lines[1].find("\"value\":\"aGVsbG8=\"") != std::string::npos);        // hello
}

TEST_CASE("etcd: a quiet watch ends with errc::timeout after idle_timeout; close() aborts a stream") {
  auto& cluster = etcd();
  asio::io_context io;
  http_client client(io.get_executor(), endpoint_of(cluster.url()));
  auto watch = post("/v3/watch", "{\"create_request\":{\"key\":\"L25vdGhpbmcvaGVyZQ==\"}}");
  std::string got;
  auto e = run_error(io, client.stream(
                             watch, [&](std::string_view s) { got.append(s); }, 300ms));
  CHECK(e.code() == errc::timeout);
  CHECK(std::string(e.what()) == "POST /v3/watch to " + cluster.url() + ": read stream: timed out");
  CHECK(got.find("\"created\":true") != std::string::npos);  // the first message came, then silence

  asio::steady_timer later(io, 300ms);
  later.async_wait([&](std::error_code) { client.close(); });
  auto aborted = run_error(io, client.stream(
                                   watch, [](std::string_view) {}, 0ms));
  CHECK(aborted.code() == asio::error::operation_aborted);
}

TEST_CASE("stream() with a non-2xx status reads the body and does not call on_data") {
  asio::io_context io;
  test_server server(
      io, answer("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot found"));
  http_client client(io.get_executor(), endpoint_of(server.url()));
  bool called = false;
  auto r = run_on(io, client.stream(
                          http_request{}, [&](std::string_view) { called = true; }, 5s));
  CHECK(r.status == 404);
  CHECK(r.body == "not found");
  CHECK_FALSE(called);
}

TEST_CASE("stream() of a close-delimited body ends at EOF") {
  asio::io_context io;
  test_server server(io, answer("HTTP/1.1 200 OK\r\n\r\nline one\nline two\n", true));
  http_client client(io.get_executor(), endpoint_of(server.url()));
  std::string got;
  auto r = run_on(io, client.stream(
                          http_request{}, [&](std::string_view s) { got.append(s); }, 5s));
  CHECK(r.status == 200);
  CHECK(r.body.empty());
  CHECK(got == "line one\nline two\n");
}

TEST_CASE("large bodies, by length and chunked, arrive whole; streamed ones in pieces") {
  std::string big;
  for (int i = 0; big.size() < 1024 * 1024; ++i) big += "line " + std::to_string(i) + "\n";
  std::string chunked;
  for (std::size_t at = 0; at < big.size(); at += 3000) {
    auto piece = big.substr(at, 3000);
    std::ostringstream size;
    size << std::hex << piece.size();
    chunked += size.str() + "\r\n" + piece + "\r\n";
  }
  chunked += "0\r\n\r\n";
  asio::io_context io;
  test_server by_length(io,
                        answer("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(big.size()) + "\r\n\r\n" + big));
  test_server by_chunks(io, answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked));
  http_client a(io.get_executor(), endpoint_of(by_length.url()));
  http_client b(io.get_executor(), endpoint_of(by_chunks.url()));
  CHECK(run_on(io, a.request(http_request{})).body == big);
  CHECK(run_on(io, b.request(http_request{})).body == big);
  CHECK(run_on(io, b.request(http_request{})).body == big);  // and the connection stayed in step
  CHECK(by_chunks.accepted() == 1);

  std::string streamed;
  int pieces = 0;
  auto head = run_on(io, b.stream(
                             http_request{},
                             [&](std::string_view s) {
                               streamed.append(s);
                               ++pieces;
                             },
                             5s));
  CHECK(head.status == 200);
  CHECK(streamed == big);
  CHECK(pieces > 1);
}

TEST_CASE("the idle timeout of stream() counts from the last byte, not from the start") {
  asio::io_context io;
  // Five pieces 150 ms apart: 600 ms in all, never 300 ms without a byte.
  test_server dribble(io, [](test_server::socket_ptr s) -> asio::awaitable<void> {
    std::string buffer;
    if (!co_await read_request(*s, buffer)) co_return;
    std::vector<std::string> parts{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "2\r\nab\r\n",
                                   "2\r\ncd\r\n", "2\r\nef\r\n", "0\r\n\r\n"};
    for (auto& part : parts) {
      co_await amb::detail::sleep_for(150ms);
      auto [ec, n] = co_await asio::async_write(*s, asio::buffer(part), amb::detail::use_nothrow_awaitable);
      if (ec) co_return;
    }
  });
  http_client client(io.get_executor(), endpoint_of(dribble.url()));
  std::string got;
  const auto start = std::chrono::steady_clock::now();
  run_on(io, client.stream(
                 http_request{}, [&](std::string_view s) { got.append(s); }, 300ms));
  CHECK(got == "abcdef");
  CHECK(std::chrono::steady_clock::now() - start >= 600ms);  // longer than the idle timeout in total
}

TEST_CASE("keep-alive: one connection for several requests; the request bytes are as promised") {
  asio::io_context io;
  std::vector<std::string> requests;
  test_server server(io, answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false, &requests));
  http_client client(io.get_executor(), endpoint_of(server.url()));
  for (int i = 0; i < 3; ++i) CHECK(run_on(io, client.request(http_request{})).body == "ok");
  CHECK(run_on(io, client.request(post("/x", "{}"))).body == "ok");
  http_request put;
  put.method = "PUT";
  put.target = "/empty";
  put.headers.push_back({"Host", "custom"});
  CHECK(run_on(io, client.request(put)).body == "ok");
  CHECK(server.accepted() == 1);
  REQUIRE(requests.size() == 5);
  CHECK(requests[0] == "GET / HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(server.port()) + "\r\n\r\n");
  CHECK(requests[3] == "POST /x HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(server.port()) +
                           "\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
  CHECK(requests[4] == "PUT /empty HTTP/1.1\r\nHost: custom\r\nContent-Length: 0\r\n\r\n");
}

TEST_CASE("keep-alive: a kept connection the server closed is replaced once, and the request resent") {
  asio::io_context io;
  // Closes after every reply without saying "Connection: close": the client's idle connection goes stale.
  test_server server(io, answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true));
  http_client client(io.get_executor(), endpoint_of(server.url()));
  CHECK(run_on(io, client.request(http_request{})).body == "ok");
  CHECK(client.idle_connections() == 1);
  run_on(io, []() -> asio::awaitable<int> {  // let the server's FIN arrive
    co_await amb::detail::sleep_for(50ms);
    co_return 0;
  }());
  CHECK(run_on(io, client.request(http_request{})).body == "ok");
  CHECK(server.accepted() == 2);

  // "Connection: close" is honoured: nothing is kept.
  test_server closing(io, answer("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", true));
  http_client client2(io.get_executor(), endpoint_of(closing.url()));
  CHECK(run_on(io, client2.request(http_request{})).body == "ok");
  CHECK(client2.idle_connections() == 0);
}

TEST_CASE("connect refused names the request, the endpoint and the step") {
  asio::io_context io;
  const auto port = amb::test::free_port();
  http_client client(io.get_executor(), endpoint_of("127.0.0.1:" + std::to_string(port)));
  auto e = run_error(io, client.request(post("/v3/kv/range", "{}")));
  CHECK(e.code() == asio::error::connection_refused);
  CHECK(std::string(e.what()) ==
        "POST /v3/kv/range to http://127.0.0.1:" + std::to_string(port) + ": connect: Connection refused");
  auto s = run_error(io, client.stream(
                             http_request{}, [](std::string_view) {}, 1s));
  CHECK(std::string(s.what()) == "GET / to http://127.0.0.1:" + std::to_string(port) + ": connect: Connection refused");
}

TEST_CASE("a host name is resolved and each address tried") {
  asio::io_context io;
  test_server server(io, answer("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
  // "localhost" may resolve to ::1 first, where nothing listens: that address is refused, the next one works.
  http_client client(io.get_executor(), endpoint_of("http://localhost:" + std::to_string(server.port())));
  auto r = run_on(io, client.request(http_request{}));
  CHECK(r.body == "ok");
}

TEST_CASE("a server that never answers: errc::timeout within request_timeout; close() aborts") {
  asio::io_context io;
  test_server server(io, silent);
  amb::http_client_options o;
  o.request_timeout = 500ms;
  http_client client(io.get_executor(), endpoint_of(server.url()), o);
  const auto start = std::chrono::steady_clock::now();
  auto e = run_error(io, client.request(http_request{}));
  const auto took = std::chrono::steady_clock::now() - start;
  CHECK(e.code() == errc::timeout);
  CHECK(std::string(e.what()) == "GET / to " + server.url() + ": read response: timed out");
  CHECK(took >= 450ms);  // not before the deadline
  CHECK(took < 10s);     // and not hanging (a generous bound, not a speed target)

  amb::http_client_options patient;
  patient.request_timeout = 60s;
  http_client client2(io.get_executor(), endpoint_of(server.url()), patient);
  asio::steady_timer later(io, 200ms);
  later.async_wait([&](std::error_code) { client2.close(); });
  auto aborted = run_error(io, client2.request(http_request{}));
  CHECK(aborted.code() == asio::error::operation_aborted);
}

TEST_CASE("destroying the client while calls are suspended aborts them safely") {
  asio::io_context io;
  test_server server(io, silent);
  auto client = std::make_unique<http_client>(io.get_executor(), endpoint_of(server.url()));
  asio::steady_timer later(io, 200ms);
  later.async_wait([&](std::error_code) { client.reset(); });  // the coroutines below are suspended in reads
  auto stream = client->stream(
      http_request{}, [](std::string_view) {}, 0ms);
  auto request = client->request(http_request{});
  std::optional<std::system_error> stream_error;
  asio::co_spawn(io, std::move(stream), [&](std::exception_ptr e, http_response) {
    try {
      if (e) std::rethrow_exception(e);
    } catch (const std::system_error& x) {
      stream_error = x;
    }
  });
  auto e = run_error(io, std::move(request));
  CHECK(e.code() == asio::error::operation_aborted);
  CHECK(std::string(e.what()) ==
        "GET / to " + server.url() + ": read response: " + std::error_code(asio::error::operation_aborted).message());
  run_on(io, []() -> asio::awaitable<int> {
    co_await amb::detail::sleep_for(50ms);
    co_return 0;
  }());
  REQUIRE(stream_error);
  CHECK(stream_error->code() == asio::error::operation_aborted);
}

TEST_CASE("a server that answers garbage or HTML gives a clear error") {
  asio::io_context io;
  test_server html(io, answer("<html><body>It works!</body></html>\n", true));
  http_client client(io.get_executor(), endpoint_of(html.url()));
  auto e = run_error(io, client.request(http_request{}));
  CHECK(e.code() == errc::bad_status_line);
  CHECK(std::string(e.what()) == "GET / to " + html.url() + ": read response: bad HTTP status line");

  test_server cut(io, answer("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", true));
  http_client client2(io.get_executor(), endpoint_of(cut.url()));
  CHECK(run_error(io, client2.request(http_request{})).code() == errc::body_truncated);

  test_server chunks(io, answer("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", true));
  http_client client3(io.get_executor(), endpoint_of(chunks.url()));
  CHECK(run_error(io, client3.request(http_request{})).code() == errc::bad_chunk_size);

  test_server hangup(io, answer("", true));  // closes without a byte
  http_client client4(io.get_executor(), endpoint_of(hangup.url()));
  auto h = run_error(io, client4.request(http_request{}));
  CHECK(h.code() == errc::connection_closed);
  CHECK(std::string(h.what()) == "GET / to " + hangup.url() + ": read response: connection closed by peer");

  amb::http_client_options small;
  small.max_body_bytes = 4;
  test_server big(io, answer("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"));
  http_client client5(io.get_executor(), endpoint_of(big.url()), small);
  CHECK(run_error(io, client5.request(http_request{})).code() == errc::body_too_large);
}

TEST_CASE("interim 1xx responses are skipped") {
  asio::io_context io;
  test_server server(io, answer("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal"));
  http_client client(io.get_executor(), endpoint_of(server.url()));
  auto r = run_on(io, client.request(post("/", "x")));
  CHECK(r.status == 200);
  CHECK(r.body == "real");
}

TEST_CASE("podman: GET and HEAD /_ping over the unix socket, on one kept-alive connection") {
  amb::test::podman_service podman;
  asio::io_context io;
  http_client client(io.get_executor(), endpoint_of(podman.url()));
  CHECK(client.server().is_unix());
  http_request ping;
  ping.target = "/_ping";
  auto r = run_on(io, client.request(ping));
  CHECK(r.status == 200);
  CHECK(r.body == "OK");
  CHECK(r.has_header("Api-Version"));
  CHECK(client.idle_connections() == 1);
  ping.method = "HEAD";
  auto h = run_on(io, client.request(ping));
  CHECK(h.status == 200);
  CHECK(h.body.empty());
  CHECK(client.idle_connections() == 1);
  ping.method = "GET";
  CHECK(run_on(io, client.request(ping)).body == "OK");

  // And the unix-socket error names the socket.
  http_client missing(io.get_executor(), endpoint_of("unix:///nonexistent/amb-test.sock"));
  auto e = run_error(io, missing.request(ping));
  CHECK(std::string(e.what()) == "GET /_ping to unix:///nonexistent/amb-test.sock: connect: No such file or directory");
}

}  // namespace http_client_test
