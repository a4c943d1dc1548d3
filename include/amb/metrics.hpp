// SPDX-License-Identifier: MIT
// Metrics: a tiny Prometheus text registry and the HTTP/1.1 endpoint that serves it (/metrics, /healthz).
#pragma once

#include "amb/address.hpp"
#include "amb/detail/async.hpp"
#include "amb/log.hpp"

#include "amb/detail/asio.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace amb {

/// Counters and gauges, rendered in Prometheus text format 0.0.4. Single-threaded, like the rest.
class metrics_registry {
public:
  /// Declares a metric family once (type "counter" or "gauge"); renders even with no samples yet
  /// when it has no labels (value 0), so scrapers see every family from the start.
  void declare(const std::string& name, const std::string& type, const std::string& help) {
    auto& f = families_[name];
    f.type = type;
    f.help = help;
    if (!order_contains(name)) order_.push_back(name);
  }
  /// Adds `delta` to a sample (creating it at 0).
  void add(const std::string& name, double delta, const std::string& labels = {}) { sample(name, labels) += delta; }
  /// Sets a sample.
  void set(const std::string& name, double value, const std::string& labels = {}) { sample(name, labels) = value; }
  /// Removes a labelled sample (e.g. a per-instance gauge for an instance that left).
  void erase(const std::string& name, const std::string& labels) {
    auto it = families_.find(name);
    if (it != families_.end()) it->second.samples.erase(labels);
  }
  /// Removes every sample of a family (a per-instance gauge rebuilt at each scrape).
  void clear(const std::string& name) {
    auto it = families_.find(name);
    if (it != families_.end()) it->second.samples.clear();
  }
  /// A sample's current value (0 when absent).
  double value(const std::string& name, const std::string& labels = {}) const {
    auto it = families_.find(name);
    if (it == families_.end()) return 0;
    auto s = it->second.samples.find(labels);
    return s == it->second.samples.end() ? 0 : s->second;
  }
  /// `key="value"` with the value escaped as the exposition format wants (\\, \", \n).
  static std::string label(std::string_view key, std::string_view value) {
    std::string out(key);
    out += "=\"";
    for (char c : value) {
      if (c == '\\')
        out += "\\\\";
      else if (c == '"')
        out += "\\\"";
      else if (c == '\n')
        out += "\\n";
      else
        out += c;
    }
    out += '"';
    return out;
  }
  /// Adds a function that refreshes samples just before each scrape (e.g. copies live totals in).
  void add_collector(std::function<void(metrics_registry&)> f) { collectors_.push_back(std::move(f)); }
  /// Runs the collectors.
  void collect() {
    for (auto& f : collectors_) f(*this);
  }
  /// The whole exposition text (call collect() first for fresh values).
  std::string render() const {
    std::string out;
    for (const auto& name : order_) {
      const auto& f = families_.at(name);
      out += "# HELP " + name + " " + f.help + "\n# TYPE " + name + " " + f.type + "\n";
      if (f.samples.empty()) out += name + " 0\n";
      for (const auto& [labels, v] : f.samples) {
        out += name;
        if (!labels.empty()) out += "{" + labels + "}";
        out += " " + format(v) + "\n";
      }
    }
    return out;
  }

private:
  struct family {
    std::string type = "gauge", help;
    std::map<std::string, double> samples;
  };
  double& sample(const std::string& name, const std::string& labels) {
    if (!families_.count(name)) declare(name, "gauge", name);
    return families_[name].samples[labels];
  }
  bool order_contains(const std::string& name) const {
    for (const auto& n : order_)
      if (n == name) return true;
    return false;
  }
  static std::string format(double v) {
    char buf[64];
    // Integers (the usual case) print without exponent or decimals up to 2^53.
    if (v == static_cast<double>(static_cast<std::int64_t>(v)) && v < 9.007199254740992e15 && v > -9.007199254740992e15)
      std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
    else
      std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
  }
  std::map<std::string, family> families_;
  std::vector<std::string> order_;
  std::vector<std::function<void(metrics_registry&)>> collectors_;
};

/// Limits for the metrics endpoint.
struct metrics_server_options {
  std::size_t max_request = 8192;                ///< request head larger than this: 431 and close
  std::chrono::milliseconds read_timeout{5000};  ///< a client that sends no full head in time is closed
  std::size_t max_clients = 64;                  ///< more concurrent scrapers than this are closed at once
};

namespace detail {

inline std::string http_reply(int status, std::string_view reason, std::string_view type, std::string_view body) {
  std::string r = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
  r += "Content-Type: " + std::string(type) + "\r\nContent-Length: " + std::to_string(body.size()) +
       "\r\nConnection: close\r\n\r\n";
  r += body;
  return r;
}

/// The reply for one request head; `ready` drives /healthz, whose body adds `note` when there is one
/// ("ok: serving the last known set from ..."). HEAD gets headers only.
inline std::string metrics_answer(std::string_view head, metrics_registry& m, bool ready,
                                  const std::string& note = {}) {
  auto line_end = head.find("\r\n");
  auto line = head.substr(0, line_end);
  auto sp1 = line.find(' ');
  auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.substr(sp2 + 1).rfind("HTTP/1.", 0) != 0)
    return http_reply(400, "Bad Request", "text/plain; charset=utf-8", "bad request\n");
  auto method = line.substr(0, sp1);
  auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  target = target.substr(0, target.find('?'));
  bool head_only = method == "HEAD";
  if (method != "GET" && !head_only)
    return http_reply(405, "Method Not Allowed", "text/plain; charset=utf-8", "method not allowed\n");
  std::string reply;
  if (target == "/metrics") {
    m.collect();
    reply = http_reply(200, "OK", "text/plain; version=0.0.4; charset=utf-8", m.render());
  } else if (target == "/healthz") {
    const std::string more = note.empty() ? "\n" : ": " + note + "\n";
    reply = ready ? http_reply(200, "OK", "text/plain; charset=utf-8", "ok" + more)
                  : http_reply(503, "Service Unavailable", "text/plain; charset=utf-8", "not ready" + more);
  } else {
    reply = http_reply(404, "Not Found", "text/plain; charset=utf-8", "not found\n");
  }
  if (head_only) reply.resize(reply.find("\r\n\r\n") + 4);
  return reply;
}

}  // namespace detail

/// Serves /metrics and /healthz on an HTTP/1.1 listener: one request per connection, then close.
/// `ready` is asked at each /healthz request (e.g. "the first etcd read succeeded").
class metrics_server {
public:
  /// Binds `where`; throws std::system_error naming the address when that fails.
  metrics_server(asio::any_io_executor ex, const host_port& where, metrics_registry& m, std::function<bool()> ready,
                 metrics_server_options o = {})
      : acceptor_(ex), metrics_(m), ready_(std::move(ready)), opts_(o) {
    asio::ip::tcp::resolver resolver(ex);
    std::error_code ec;
    auto results = resolver.resolve(where.host, std::to_string(where.port), asio::ip::resolver_base::passive, ec);
    if (!ec && results.empty()) ec = asio::error::host_not_found;
    if (!ec) {
      auto ep = results.begin()->endpoint();
      acceptor_.open(ep.protocol(), ec);
      if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
      if (!ec) acceptor_.bind(ep, ec);
      if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (ec) throw std::system_error(ec, "metrics listen on " + where.to_string());
  }

  /// A line /healthz adds to its answer while it returns non-empty text (e.g. where the instance
  /// set comes from); asked at each /healthz request.
  void set_health_note(std::function<std::string()> note) { note_ = std::move(note); }

  /// The bound port (useful with port 0).
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

  /// Accepts until close(); survives accept errors (EMFILE: wait and go on).
  asio::awaitable<void> run() {
    auto alive = alive_;
    while (acceptor_.is_open()) {
      auto [ec, sock] = co_await acceptor_.async_accept(detail::use_nothrow_awaitable);
      if (!*alive) co_return;
      if (ec == asio::error::operation_aborted) co_return;
      if (ec) {
        log::warn("metrics accept: ", ec.message(), "; retrying");
        co_await detail::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      if (clients_ >= opts_.max_clients) continue;  // socket closes as it goes out of scope
      ++clients_;
      asio::co_spawn(acceptor_.get_executor(), serve(std::move(sock)), [this, alive](std::exception_ptr) {
        if (*alive) --clients_;
      });
    }
  }

  /// Stops accepting (connections being answered finish on their own).
  void close() {
    std::error_code ignored;  // already closed is fine
    acceptor_.close(ignored);
  }

  ~metrics_server() { *alive_ = false; }

private:
// GCC 12 pairs the coroutine frame's class-specific operator delete (Asio's recycling allocator)
// with the global allocation it inlines underneath, and reports a mismatch that is not there.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
  asio::awaitable<void> serve(asio::ip::tcp::socket sock) {
    try {
      std::string head;
      asio::steady_timer deadline(sock.get_executor(), opts_.read_timeout);
      bool timed_out = false;
      deadline.async_wait([&](std::error_code ec) {
        if (!ec) {
          timed_out = true;
          std::error_code ignored;  // the read below fails and ends the coroutine
          sock.close(ignored);
        }
      });
      char buf[2048];
      while (head.find("\r\n\r\n") == std::string::npos) {
        auto [ec, n] = co_await sock.async_read_some(asio::buffer(buf), detail::use_nothrow_awaitable);
        if (ec || timed_out) {
          deadline.cancel();
          co_return;
        }
        head.append(buf, n);
        if (head.size() > opts_.max_request) {
          deadline.cancel();
          auto r = detail::http_reply(431, "Request Header Fields Too Large", "text/plain; charset=utf-8",
                                      "request too large\n");
          co_await asio::async_write(sock, asio::buffer(r), detail::use_nothrow_awaitable);
          co_return;
        }
      }
      auto reply = detail::metrics_answer(head, metrics_, ready_ && ready_(), note_ ? note_() : std::string());
      co_await asio::async_write(sock, asio::buffer(reply), detail::use_nothrow_awaitable);
      deadline.cancel();
      std::error_code ignored;  // the client may already be gone
      sock.shutdown(asio::socket_base::shutdown_send, ignored);
    } catch (const std::exception& e) {
      log::debug("metrics client: ", e.what());
    }
  }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

  asio::ip::tcp::acceptor acceptor_;
  metrics_registry& metrics_;
  std::function<bool()> ready_;
  std::function<std::string()> note_;
  metrics_server_options opts_;
  std::size_t clients_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace amb
