// SPDX-License-Identifier: MIT
// HTTP/1.1 client over TCP or unix domain sockets (and TLS for https:// in builds with AMB_WITH_TLS):
// whole requests with keep-alive reuse, or a body streamed piece by piece (etcd watch, Docker /events), with timeouts.
#pragma once

#include "amb/address.hpp"
#include "amb/detail/async.hpp"
#include "amb/error.hpp"
#include "amb/http_response.hpp"
#include "amb/tls_options.hpp"
#include "amb/tls_stream.hpp"

#include "amb/detail/asio.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

namespace amb {

/// An HTTP request; the body is always sent with Content-Length.
struct http_request {
  std::string method = "GET";  ///< request method
  std::string target = "/";    ///< path and query
  std::vector<http_header>
      headers{};  ///< Host added when absent (endpoint::host_header()); Content-Length added for a body or POST/PUT
  std::string body{};  ///< request body (may be empty)
};

/// Limits and timeouts of an http_client.
struct http_client_options {
  std::chrono::milliseconds connect_timeout{3000};   ///< per connect attempt
  std::chrono::milliseconds request_timeout{10000};  ///< whole request(): connect+send+read
  std::chrono::milliseconds stream_head_timeout{
      0};  ///< stream(): status line + headers must arrive within this (0 = idle timeout only)
  std::size_t max_header_bytes = 64 * 1024;       ///< status line + headers (and trailers)
  std::size_t max_body_bytes = 64 * 1024 * 1024;  ///< a whole body read into memory
  tls_context_ptr tls{};  ///< for an https:// server (amb::make_tls_context); null = the system's CA paths
  /// TCP keepalive on every TCP connection: idle time before the first probe, then probes this far apart,
  /// and how many go unanswered before the kernel declares the peer gone (0 s idle = off). A long-lived
  /// stream (etcd's watch, the engine's events) only receives: without probes, a peer that vanished
  /// behind a partition, its reset lost, would go unnoticed for as long as the stream may be silent.
  std::chrono::seconds keepalive_idle{10};
  std::chrono::seconds keepalive_interval{5};  ///< between unanswered probes
  int keepalive_probes = 3;                    ///< unanswered probes that end the connection
};

namespace detail {

using http_clock = std::chrono::steady_clock;

/// Turns on TCP keepalive with the options' timings; best effort (a socket without it still works,
/// it only notices a vanished peer later).
inline void enable_keepalive(int fd, const http_client_options& o) {
  if (o.keepalive_idle.count() <= 0) return;
  const int on = 1;
  const int idle = static_cast<int>(o.keepalive_idle.count());
  const int interval = static_cast<int>(std::max<std::int64_t>(1, o.keepalive_interval.count()));
  const int probes = std::max(1, o.keepalive_probes);
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
}

/// One connection to the server (TCP or unix: a generic stream socket carries both; TLS on top for https).
struct http_connection {
  explicit http_connection(const asio::any_io_executor& ex) : socket(ex) {}
  asio::generic::stream_protocol::socket socket;
  std::string pending;  ///< bytes read from the socket but not parsed yet
  std::array<char, 16 * 1024> buffer{};
#if AMB_WITH_TLS
  std::unique_ptr<tls_stream> tls;  ///< set once the handshake is done (declared after socket: it refers to it)
#endif

  /// Reads some bytes into buffer, through TLS when the connection has it.
  asio::awaitable<std::tuple<std::error_code, std::size_t>> read_some() {
#if AMB_WITH_TLS
    if (tls) return tls_read_some();
#endif
    return socket.async_read_some(asio::buffer(buffer), use_nothrow_awaitable);
  }
  /// Writes all of `bytes`, through TLS when the connection has it.
  asio::awaitable<std::tuple<std::error_code, std::size_t>> write(const std::string& bytes) {
#if AMB_WITH_TLS
    if (tls) return asio::async_write(*tls, asio::buffer(bytes), use_nothrow_awaitable);
#endif
    return asio::async_write(socket, asio::buffer(bytes), use_nothrow_awaitable);
  }

private:
#if AMB_WITH_TLS
  asio::awaitable<std::tuple<std::error_code, std::size_t>> tls_read_some() {
    auto [ec, n] = co_await tls->async_read_some(asio::buffer(buffer), use_nothrow_awaitable);
    // A server that dies (or closes without close_notify) truncates the TLS stream: treat it as EOF and
    // let the parser judge, as for plain TCP (a length or chunked body then reports its truncation).
    if (ec == asio::ssl::error::stream_truncated)
      ec = asio::error::eof;
    else if (ec)
      ec = tls_peer_error(ec);
    co_return std::tuple<std::error_code, std::size_t>{ec, n};
  }
#endif
};

/// What an http_client shares with its running coroutines (they hold it, so destroying the client
/// while a request is suspended is safe: close() aborts the request, the state dies with the last user).
struct http_client_state {
  http_client_state(asio::any_io_executor e, endpoint s, http_client_options o)
      : ex(std::move(e)), server(std::move(s)), options(std::move(o)) {}
  asio::any_io_executor ex;
  endpoint server;
  http_client_options options;
  std::vector<std::shared_ptr<http_connection>> idle;  ///< kept-alive connections, ready for reuse
  std::vector<std::weak_ptr<http_connection>> open;    ///< every connection, for close()
  std::uint64_t generation = 0;                        ///< bumped by close(): older calls abort

  std::shared_ptr<http_connection> make_connection() {
    auto c = std::make_shared<http_connection>(ex);
    open.erase(std::remove_if(open.begin(), open.end(), [](auto& w) { return w.expired(); }), open.end());
    open.push_back(c);
    return c;
  }
};

/// Runs `op` racing a timer; nullopt when `deadline` came first (op is then cancelled and finished,
/// so nothing it touches is left in use). `op` must not throw: it reports errors as values.
template <class T>
asio::awaitable<std::optional<T>> before_deadline(asio::awaitable<T> op, http_clock::time_point deadline) {
  if (deadline == http_clock::time_point::max()) co_return co_await std::move(op);
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer timer(co_await asio::this_coro::executor, deadline);
  auto r = co_await (std::move(op) || timer.async_wait(use_nothrow_awaitable));
  if (r.index() == 0) co_return std::move(std::get<0>(r));
  co_return std::nullopt;
}

/// now + d, or "never" for d == 0.
inline http_clock::time_point deadline_after(std::chrono::milliseconds d) {
  return d.count() > 0 ? http_clock::now() + d : http_clock::time_point::max();
}

/// An error and the step it happened in ("connect", "send", "read response", ...).
struct step_error {
  std::error_code ec;
  const char* step = "";
  explicit operator bool() const noexcept { return static_cast<bool>(ec); }
};

/// True when `s` holds CR, LF or NUL (header injection).
inline bool has_line_break(std::string_view s) noexcept {
  return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

/// The request as bytes on the wire; empty when a field would break the framing.
inline std::string serialize_request(const http_request& req, const endpoint& server) {
  if (req.method.empty() || req.target.empty() || has_line_break(req.method) || has_line_break(req.target) ||
      req.method.find(' ') != std::string::npos || req.target.find(' ') != std::string::npos)
    return {};
  std::string out;
  out.reserve(256 + req.body.size());
  out += req.method + " " + req.target + " HTTP/1.1\r\n";
  bool has_host = false, has_length = false;
  for (auto& h : req.headers) {
    if (h.name.empty() || has_line_break(h.name) || has_line_break(h.value) || h.name.find(':') != std::string::npos)
      return {};
    has_host = has_host || iequals(h.name, "Host");
    has_length = has_length || iequals(h.name, "Content-Length");
  }
  if (!has_host) out += "Host: " + server.host_header() + "\r\n";
  for (auto& h : req.headers) out += h.name + ": " + h.value + "\r\n";
  if (!has_length && (!req.body.empty() || req.method == "POST" || req.method == "PUT" || req.method == "PATCH"))
    out += "Content-Length: " + std::to_string(req.body.size()) + "\r\n";
  out += "\r\n";
  out += req.body;
  return out;
}

}  // namespace detail

/// HTTP/1.1 client for one server. One io_context thread: calls may overlap (each takes its own
/// connection), but the client is not thread-safe. https:// needs a build with AMB_WITH_TLS (without
/// it, calls fail with errc::tls_unsupported). A call holds the client's shared state once it has
/// started, so the client may be destroyed under a suspended call (which then ends with
/// operation_aborted); it must exist when the call starts. A timeout of 0 means none.
class http_client {
public:
  /// A client for `server`; connects lazily.
  /// For an https:// server without options.tls, loads the system's CA paths (may throw std::system_error).
  http_client(asio::any_io_executor ex, endpoint server, http_client_options options = {})
      : state_(std::make_shared<detail::http_client_state>(std::move(ex), std::move(server), std::move(options))) {
#if AMB_WITH_TLS
    if (state_->server.tls && !state_->options.tls) state_->options.tls = make_tls_context({});
#endif
  }
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;
  /// Takes over the other client's connections.
  http_client(http_client&&) noexcept = default;
  /// Closes every connection (pending calls end with operation_aborted).
  ~http_client() {
    if (state_) close();
  }

  /// Sends req and reads the whole response (any status; the caller checks it). Reuses the kept-alive
  /// connection when the server allows; if a REUSED connection turns out closed before any response byte,
  /// reconnects once and resends. Throws std::system_error whose what() names request, endpoint and step, e.g.
  /// "POST /v3/kv/range to http://127.0.0.1:2379: connect: Connection refused" (errc::timeout on timeout).
  asio::awaitable<http_response> request(http_request req) {
    auto st = state_;  // keeps the state alive while this coroutine is suspended
    const auto generation = st->generation;
    const auto deadline = detail::deadline_after(st->options.request_timeout);
    const std::string what = describe(req);
    const std::string wire = detail::serialize_request(req, st->server);
    if (wire.empty())
      throw std::system_error(std::make_error_code(std::errc::invalid_argument), what + ": bad request field");

    for (int attempt = 0;; ++attempt) {
      std::shared_ptr<detail::http_connection> conn;
      bool reused = false;
      if (!st->idle.empty() && attempt == 0) {
        conn = std::move(st->idle.back());
        st->idle.pop_back();
        reused = true;
      } else {
        conn = st->make_connection();
        if (auto e = co_await connect(st, *conn, deadline, generation); e) throw_step(what, e);
      }

      http_response_parser parser = make_parser(*st, req);
      detail::step_error e;
      auto [write_ec, written] = co_await send(*conn, wire, deadline);
      (void)written;
      if (write_ec)
        e = {write_ec, "send"};
      else
        e = {co_await read(*conn, parser, deadline, std::chrono::milliseconds(0)), "read response"};
      if (st->generation != generation) e = {asio::error::operation_aborted, e.ec ? e.step : "read response"};

      if (e) {
        // A kept-alive connection the server closed while it sat idle: the request never reached
        // it, so sending it again on a fresh connection is safe.
        if (reused && !parser.started() && is_peer_gone(e.ec)) continue;
        throw_step(what, e);
      }
      const bool reusable = parser.keep_alive();  // before release(): it reads the headers
      auto response = parser.release();
      if (reusable && conn->pending.empty() && st->generation == generation && st->idle.size() < 4)
        st->idle.push_back(std::move(conn));
      co_return response;
    }
  }

  /// Sends req on its own fresh connection, reads the head; for a 2xx status calls on_data with each piece of
  /// de-chunked (or length/close-delimited) body as it arrives until the body ends, then returns the head
  /// (body empty). For a non-2xx status reads the whole (bounded) body into response.body and returns without
  /// calling on_data. Throws as request() does; errc::timeout when idle_timeout passes with no byte received
  /// (idle_timeout 0 = none). If on_data throws, the stream is closed and the exception propagates.
  /// Timeouts: connect_timeout for the connect, request_timeout for sending; the head and body are
  /// governed by idle_timeout (a watch may legitimately wait long for its first byte), and the head also by
  /// options().stream_head_timeout when set (Docker sends the head of /events at once, then may stay quiet).
  asio::awaitable<http_response> stream(http_request req, std::function<void(std::string_view)> on_data,
                                        std::chrono::milliseconds idle_timeout) {
    auto st = state_;
    const auto generation = st->generation;
    const std::string what = describe(req);
    const std::string wire = detail::serialize_request(req, st->server);
    if (wire.empty())
      throw std::system_error(std::make_error_code(std::errc::invalid_argument), what + ": bad request field");

    auto conn = st->make_connection();  // destroyed (closed) on every way out, exceptions included
    if (auto e = co_await connect(st, *conn, detail::deadline_after(st->options.request_timeout), generation); e)
      throw_step(what, e);
    auto [write_ec, written] = co_await send(*conn, wire, detail::deadline_after(st->options.request_timeout));
    (void)written;
    if (write_ec) throw_step(what, {write_ec, "send"});
    if (st->generation != generation) throw_step(what, {asio::error::operation_aborted, "send"});

    http_response_parser parser = make_parser(*st, req);
    parser.pause_after_head(true);
    auto ec = co_await read(*conn, parser, detail::deadline_after(st->options.stream_head_timeout), idle_timeout);
    if (!ec && st->generation != generation) ec = asio::error::operation_aborted;
    if (ec) throw_step(what, {ec, "read response"});
    if (!parser.done()) {
      const bool ok = parser.response().status >= 200 && parser.response().status < 300;
      if (ok) parser.on_body(std::move(on_data));
      ec = co_await read(*conn, parser, detail::http_clock::time_point::max(), idle_timeout);
      if (!ec && st->generation != generation) ec = asio::error::operation_aborted;
      if (ec) throw_step(what, {ec, ok ? "read stream" : "read response"});
    }
    co_return parser.release();
  }

  /// Closes every connection; a pending request() or stream() ends with asio::error::operation_aborted.
  void close() {
    ++state_->generation;
    state_->idle.clear();
    for (auto& w : state_->open)
      if (auto c = w.lock()) {
        std::error_code ignored;  // already closed is fine
        c->socket.close(ignored);
      }
    state_->open.clear();
  }

  /// The server this client talks to.
  const endpoint& server() const { return state_->server; }

  /// The options this client was made with.
  const http_client_options& options() const { return state_->options; }

  /// Kept-alive connections waiting for the next request().
  std::size_t idle_connections() const { return state_->idle.size(); }

private:
  using state_ptr = std::shared_ptr<detail::http_client_state>;

  std::string describe(const http_request& req) const {
    return req.method + " " + req.target + " to " + state_->server.to_string();
  }

  [[noreturn]] static void throw_step(const std::string& what, const detail::step_error& e) {
    throw std::system_error(e.ec, what + ": " + e.step);
  }

  static bool is_peer_gone(const std::error_code& ec) {
    return ec == asio::error::eof || ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
           ec == errc::connection_closed || ec == asio::error::connection_aborted;
  }

  static http_response_parser make_parser(const detail::http_client_state& st, const http_request& req) {
    http_response_parser p;
    p.head_request(req.method == "HEAD");
    p.max_header_bytes(st.options.max_header_bytes);
    p.max_line_length(std::min<std::size_t>(st.options.max_header_bytes, 64 * 1024));
    p.max_body_bytes(st.options.max_body_bytes);
    return p;
  }

  // Connects conn's socket to the server: each resolved address in turn, each within connect_timeout.
  static asio::awaitable<detail::step_error> connect(state_ptr st, detail::http_connection& c,
                                                     detail::http_clock::time_point request_deadline,
                                                     std::uint64_t generation) {
    using asio::generic::stream_protocol;
    if (st->server.tls && !tls_available)
      co_return detail::step_error{make_error_code(errc::tls_unsupported), "connect"};
    std::vector<stream_protocol::endpoint> targets;
    if (st->server.is_unix()) {
      targets.emplace_back(asio::local::stream_protocol::endpoint(st->server.unix_path));
    } else {
      std::error_code ec;
      auto address = asio::ip::make_address(st->server.tcp.host, ec);
      if (!ec) {
        targets.emplace_back(asio::ip::tcp::endpoint(address, st->server.tcp.port));
      } else {
        // Name resolution is not raced against the timer: Asio's resolver runs getaddrinfo on a
        // thread and cannot abandon it; the system resolver has its own timeouts.
        asio::ip::tcp::resolver resolver(st->ex);
        auto [rec, results] =
            co_await resolver.async_resolve(st->server.tcp.host, std::to_string(st->server.tcp.port),
                                            asio::ip::resolver_base::numeric_service, detail::use_nothrow_awaitable);
        if (st->generation != generation) co_return detail::step_error{asio::error::operation_aborted, "resolve"};
        if (rec) co_return detail::step_error{rec, "resolve"};
        for (auto& r : results) targets.emplace_back(r.endpoint());
        if (targets.empty()) co_return detail::step_error{asio::error::host_not_found, "resolve"};
      }
    }
    std::error_code last;
    for (auto& target : targets) {
      std::error_code ignored;  // a failed earlier attempt may have left it open
      c.socket.close(ignored);
      std::error_code ec;
      c.socket.open(target.protocol(), ec);
      if (!ec) {
        auto deadline = std::min(request_deadline, detail::deadline_after(st->options.connect_timeout));
        auto r =
            co_await detail::before_deadline(c.socket.async_connect(target, detail::use_nothrow_awaitable), deadline);
        ec = r ? std::get<0>(*r) : make_error_code(errc::timeout);
      }
      if (st->generation != generation) co_return detail::step_error{asio::error::operation_aborted, "connect"};
      if (!ec) {
        if (!st->server.is_unix()) {
          c.socket.set_option(asio::ip::tcp::no_delay(true), ignored);  // requests are small
          detail::enable_keepalive(c.socket.native_handle(), st->options);
        }
#if AMB_WITH_TLS
        if (st->server.tls)
          co_return co_await handshake(
              st, c, std::min(request_deadline, detail::deadline_after(st->options.connect_timeout)), generation);
#endif
        co_return detail::step_error{};
      }
      last = ec;
      if (detail::http_clock::now() >= request_deadline) break;
    }
    std::error_code ignored;  // leaves the connection closed on failure
    c.socket.close(ignored);
    co_return detail::step_error{last, "connect"};
  }

#if AMB_WITH_TLS
  // TLS on a connected socket (https), within the connect timeout; a certificate that fails the check
  // gives its reason ("certificate verify failed: IP address mismatch").
  static asio::awaitable<detail::step_error> handshake(state_ptr st, detail::http_connection& c,
                                                       detail::http_clock::time_point deadline,
                                                       std::uint64_t generation) {
    c.tls = std::make_unique<detail::tls_stream>(c.socket, st->options.tls->native());
    detail::tls_expect_host(*c.tls, st->server.tcp.host);
    auto r = co_await detail::before_deadline(
        c.tls->async_handshake(asio::ssl::stream_base::client, detail::use_nothrow_awaitable), deadline);
    std::error_code ec = r ? std::get<0>(*r) : make_error_code(errc::timeout);
    if (st->generation != generation)
      ec = asio::error::operation_aborted;
    else if (ec && r)
      ec = detail::tls_handshake_error(*c.tls, ec);
    if (!ec) co_return detail::step_error{};
    c.tls.reset();
    std::error_code ignored;  // leaves the connection closed on failure
    c.socket.close(ignored);
    co_return detail::step_error{ec, "TLS handshake"};
  }
#endif

  static asio::awaitable<std::tuple<std::error_code, std::size_t>> send(detail::http_connection& c,
                                                                        const std::string& wire,
                                                                        detail::http_clock::time_point deadline) {
    auto r = co_await detail::before_deadline(c.write(wire), deadline);
    if (!r) co_return std::tuple<std::error_code, std::size_t>{make_error_code(errc::timeout), 0};
    co_return std::move(*r);
  }

  // Feeds the parser from the connection until it says done or head_done (interim 1xx responses are
  // skipped). Each read must finish before `deadline` and within `idle` (0 = no idle limit).
  // on_body callbacks run in here; their exceptions propagate.
  static asio::awaitable<std::error_code> read(detail::http_connection& c, http_response_parser& p,
                                               detail::http_clock::time_point deadline,
                                               std::chrono::milliseconds idle) {
    auto feed = [&](std::string_view bytes, bool& stop) -> std::error_code {
      while (!bytes.empty()) {
        auto r = p.feed(bytes);
        bytes.remove_prefix(r.consumed);
        if (r.state == parse_state::error) return r.error;
        if (r.state == parse_state::done && p.response().status >= 100 && p.response().status < 200 &&
            p.response().status != 101) {
          p.reset();  // an interim response: the real one follows
          continue;
        }
        if (r.state == parse_state::done || r.state == parse_state::head_done) {
          c.pending.assign(bytes);
          stop = true;
          return {};
        }
      }
      c.pending.clear();
      return {};
    };
    bool stop = false;
    if (!c.pending.empty()) {
      std::string pending = std::move(c.pending);
      c.pending.clear();
      if (auto ec = feed(pending, stop); ec || stop) co_return ec;
    }
    while (true) {
      auto read_deadline = std::min(deadline, detail::deadline_after(idle));
      auto r = co_await detail::before_deadline(c.read_some(), read_deadline);
      if (!r) co_return make_error_code(errc::timeout);
      auto [ec, n] = *r;
      if (ec == asio::error::eof) {
        auto e = p.finish_eof();
        co_return e.state == parse_state::done ? std::error_code{} : e.error;
      }
      if (ec) co_return ec;
      if (auto fec = feed(std::string_view(c.buffer.data(), n), stop); fec || stop) co_return fec;
    }
  }

  state_ptr state_;
};

}  // namespace amb
