// HTTP/1.1 client over TCP or unix domain sockets: whole requests with keep-alive reuse,
// or a body streamed piece by piece (etcd watch, Docker /events), with timeouts.
#pragma once

#include "amb/address.hpp"
#include "amb/error.hpp"
#include "amb/http_response.hpp"

#include <asio.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace amb {

/// An HTTP request; the body is always sent with Content-Length.
struct http_request {
  std::string method = "GET";        ///< request method
  std::string target = "/";          ///< path and query
  std::vector<http_header> headers;  ///< Host added when absent (endpoint::host_header()); Content-Length added for a body or POST/PUT
  std::string body;                  ///< request body (may be empty)
};

/// Limits and timeouts of an http_client.
struct http_client_options {
  std::chrono::milliseconds connect_timeout{3000};   ///< per connect attempt
  std::chrono::milliseconds request_timeout{10000};  ///< whole request(): connect+send+read
  std::size_t max_header_bytes = 64 * 1024;          ///< status line + headers (and trailers)
  std::size_t max_body_bytes = 64 * 1024 * 1024;     ///< a whole body read into memory
};

/// HTTP/1.1 client for one server (see each member).
class http_client {
public:
  /// A client for `server`; connects lazily.
  http_client(asio::any_io_executor ex, endpoint server, http_client_options options = {})
      : ex_(std::move(ex)), server_(std::move(server)), options_(options) {}

  /// Sends req and reads the whole response (any status; the caller checks it). Reuses the kept-alive
  /// connection when the server allows; if a REUSED connection turns out closed before any response byte,
  /// reconnects once and resends. Throws std::system_error whose what() names request, endpoint and step, e.g.
  /// "POST /v3/kv/range to http://127.0.0.1:2379: connect: Connection refused" (errc::timeout on timeout).
  asio::awaitable<http_response> request(http_request req) {
    throw std::system_error(make_error_code(errc::no_endpoint), req.method + " " + req.target + ": not yet");
    co_return http_response{};
  }

  /// Sends req on its own fresh connection, reads the head; for a 2xx status calls on_data with each piece of
  /// de-chunked (or length/close-delimited) body as it arrives until the body ends, then returns the head
  /// (body empty). For a non-2xx status reads the whole (bounded) body into response.body and returns without
  /// calling on_data. Throws as request() does; errc::timeout when idle_timeout passes with no byte received
  /// (idle_timeout 0 = none). If on_data throws, the stream is closed and the exception propagates.
  asio::awaitable<http_response> stream(http_request req, std::function<void(std::string_view)> on_data,
                                        std::chrono::milliseconds idle_timeout) {
    (void)on_data;
    (void)idle_timeout;
    throw std::system_error(make_error_code(errc::no_endpoint), req.method + " " + req.target + ": not yet");
    co_return http_response{};
  }

  /// Closes every connection; a pending request() or stream() ends with asio::error::operation_aborted.
  void close() {}

  /// The server this client talks to.
  const endpoint& server() const { return server_; }

private:
  asio::any_io_executor ex_;
  endpoint server_;
  http_client_options options_;
};

} // namespace amb
