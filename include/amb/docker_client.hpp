// SPDX-License-Identifier: MIT
// Docker Engine API client (works with Docker and podman's compat API): ping, version negotiation,
// list, inspect and the /events stream. Read-only: it only ever sends GET requests.
#pragma once

#include "amb/address.hpp"
#include "amb/detail/docker_json.hpp"
#include "amb/detail/line_splitter.hpp"
#include "amb/error.hpp"
#include "amb/http_client.hpp"
#include "amb/log.hpp"

#include "amb/detail/asio.hpp"

#include <cctype>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace amb {

/// An engine error whose what() is exactly the given line (std::system_error would append the
/// code's message, which the line already says better).
class docker_failure : public std::system_error {
public:
  /// `text` is the whole line, e.g. `inspect container "x" at unix:///run/docker.sock: no such container`.
  docker_failure(std::error_code ec, std::string text) : std::system_error(ec, text), text_(std::move(text)) {}
  /// The line given at construction.
  const char* what() const noexcept override { return text_.c_str(); }

private:
  std::string text_;
};

/// The engine's API socket and where that choice came from.
struct docker_engine {
  endpoint server;     ///< unix socket or TCP address of the Engine API
  std::string source;  ///< one line for the log, e.g. `engine at unix:///var/run/docker.sock (default)`
  std::string origin;  ///< where the choice came from: "--docker", "DOCKER_HOST" or "default"
};

/// Chooses the engine (docs/design.md §4.3): `flag` (--docker), then DOCKER_HOST in `env`
/// ("KEY=VALUE" strings; unix:// or tcp://), then unix:///var/run/docker.sock. A bad value is an
/// error naming its source; it never falls through to the next one.
inline parsed<docker_engine> find_docker_engine(const std::optional<std::string>& flag,
                                                const std::vector<std::string>& env) {
  parsed<docker_engine> r;
  auto from = [&](std::string_view text, const std::string& source) {
    if (text.find("://") == std::string_view::npos) {
      r.error =
          "bad engine address " + log::quoted(text) + " in " + source + ": expected unix:///PATH or tcp://HOST:PORT";
      return;
    }
    auto scheme = text.substr(0, text.find("://"));
    if (scheme != "unix" && scheme != "tcp") {
      r.error = "unsupported engine address " + log::quoted(text) + " in " + source +
                " (use unix:///PATH or tcp://HOST:PORT; TLS and ssh:// are not supported)";
      return;
    }
    auto ep = parse_endpoint(text);
    if (!ep) {
      r.error = ep.error + " in " + source;
      return;
    }
    r.value = docker_engine{*ep, "engine at " + ep->to_string() + " (from " + source + ")", source};
  };
  if (flag) {
    from(*flag, "--docker");
    return r;
  }
  const std::string key = "DOCKER_HOST=";
  for (const auto& kv : env)
    if (kv.compare(0, key.size(), key) == 0 && kv.size() > key.size()) {
      from(std::string_view(kv).substr(key.size()), "DOCKER_HOST");
      return r;
    }
  from("unix:///var/run/docker.sock", "default");
  return r;
}

/// True for the event a health check run sends ("health_status", or Docker's "health_status: healthy").
inline bool is_health_event(std::string_view action) noexcept { return action.substr(0, 13) == "health_status"; }

/// True for container actions that can change whether and where a container is reachable
/// (the names of Docker and of podman; Docker's "health_status: healthy" carries a suffix).
inline bool is_lifecycle_action(std::string_view action) noexcept {
  for (std::string_view a : {"create", "start", "restart", "die", "stop", "kill", "pause", "unpause", "destroy",
                             "remove", "rename", "oom", "update"})
    if (action == a) return true;
  return is_health_event(action);
}

/// Engine API client for one engine. request()s go over one kept-alive connection; each events()
/// call has its own. Not for concurrent use by two coroutines except events() beside the others.
class docker_client {
public:
  /// The newest API version this client knows; negotiation never goes above it.
  static constexpr const char* max_api_version = "1.52";

  /// A client for the engine at `server`; connects lazily.
  docker_client(asio::any_io_executor ex, endpoint server, http_client_options options = {})
      : ex_(ex), server_(server), http_(ex, server, options), stream_http_(ex, server, with_head_timeout(options)) {}

  /// The engine's address.
  const endpoint& server() const { return server_; }
  /// The executor the client runs on.
  const asio::any_io_executor& executor() const { return ex_; }
  /// The negotiated API version ("" before the first versioned call).
  const std::string& api_version() const { return api_version_; }

  /// `GET /_ping`; throws unless the engine answers 200 "OK" (errc::bad_response for anything else).
  asio::awaitable<void> ping() {
    auto res = co_await send("/_ping", "ping engine");
    if (res.status != 200 || res.body.substr(0, 2) != "OK")
      throw docker_failure(make_error_code(errc::bad_response),
                           "ping engine at " + server_.to_string() + ": not a Docker Engine API (HTTP " +
                               std::to_string(res.status) + " " + detail::quote_body(res.body) + ")");
  }

  /// `GET /version` (unversioned) and chooses the API version for later calls (docs/protocols.md §2.2).
  asio::awaitable<engine_version> negotiate() {
    const std::string step = "read engine version";
    auto res = co_await send("/version", step);
    check(res, step);
    auto v = detail::parse_engine_version(res.body);
    if (!v) throw bad_response(step, v.error);
    api_version_ = detail::negotiate_api_version(max_api_version, *v);
    if (api_version_.empty()) throw bad_response(step, "unreadable ApiVersion " + log::quoted(v->api_version));
    co_return *v;
  }

  /// `GET /containers/json`: running containers (or all), optionally only those with every label
  /// filter ("key" or "key=value").
  asio::awaitable<std::vector<container_summary>> list_containers(bool all = false,
                                                                  std::vector<std::string> label_filters = {}) {
    std::string target = "/containers/json";
    std::string query;
    if (all) query += "all=true";
    if (!label_filters.empty()) {
      std::string f = "{\"label\":[";
      for (std::size_t i = 0; i < label_filters.size(); ++i)
        f += (i ? "," : "") + picojson::value(label_filters[i]).serialize();
      f += "]}";
      query += std::string(query.empty() ? "" : "&") + "filters=" + detail::url_encode(f);
    }
    if (!query.empty()) target += "?" + query;
    const std::string step = "list containers";
    auto res = co_await versioned(target, step);
    check(res, step);
    auto list = detail::parse_container_list(res.body);
    if (!list) throw bad_response(step, list.error);
    co_return *list;
  }

  /// The container whose name is exactly `name` (the engine's name filter matches substrings), or nullopt.
  asio::awaitable<std::optional<container_summary>> find_by_name(std::string name, bool all = true) {
    auto list = co_await list_containers(all);
    for (auto& c : list)
      for (auto& n : c.names)
        if (n == name) co_return c;
    co_return std::nullopt;
  }

  /// `GET /containers/{id-or-name}/json`; errc::no_such_container when the engine does not know it.
  asio::awaitable<container_info> inspect(std::string id_or_name) {
    const std::string step = "inspect container " + log::quoted(id_or_name);
    auto res = co_await versioned("/containers/" + detail::url_encode(id_or_name) + "/json", step);
    check(res, step);
    auto info = detail::parse_container_inspect(res.body);
    if (!info) throw bad_response(step, info.error);
    co_return *info;
  }

  /// Streams `GET /events` for containers from `since` (unix seconds, 0 = from now), calling on_event
  /// for each event. Returns when the engine ends the stream; a bare EOF (engine stopped) throws
  /// as the HTTP client does. Lines that are not events are skipped with a warning.
  asio::awaitable<void> events(std::int64_t since, std::function<void(const docker_event&)> on_event) {
    const std::string step = "read events";
    if (api_version_.empty()) co_await negotiate();
    std::string target = "/events?filters=" + detail::url_encode("{\"type\":[\"container\"]}");
    if (since > 0) target += "&since=" + std::to_string(since);
    detail::line_splitter lines(1024 * 1024);  // an event is a few hundred bytes; labels may add some
    auto on_data = [&](std::string_view piece) {
      auto ec = lines.feed(piece, [&](std::string_view line) {
        auto ev = detail::parse_docker_event(line);
        if (ev)
          on_event(*ev);
        else
          log_bad_event(ev.error);
      });
      if (ec) throw bad_response(step, "an event line longer than 1 MiB");
    };
    for (int attempt = 0;; ++attempt) {
      http_request req;
      req.target = "/v" + api_version_ + target;
      // Named operands: GCC 12 mishandles temporaries inside co_await expressions.
      std::function<void(std::string_view)> handler = on_data;
      auto op = stream_http_.stream(req, handler, std::chrono::milliseconds(0));
      auto res = co_await wrap(std::move(op), req.target, step);
      if (res.status >= 200 && res.status < 300) co_return;
      if (attempt == 0 && refuses_version(res)) {
        co_await negotiate();
        continue;
      }
      check(res, step);
      co_return;
    }
  }

  /// Closes the client's connections (pending calls end with operation_aborted).
  void close() {
    http_.close();
    stream_http_.close();
  }

private:
  // The engine sends the head of /events at once (docs/protocols.md §2.5), then may stay quiet for hours: a head
  // that does not come within request_timeout is a stalled engine, a quiet body is not.
  static http_client_options with_head_timeout(http_client_options o) {
    if (o.stream_head_timeout.count() == 0) o.stream_head_timeout = o.request_timeout;
    return o;
  }

  static void log_bad_event(const std::string& error) { log::warn("skipping an event line: ", error); }

  docker_failure bad_response(const std::string& step, const std::string& detail) const {
    return docker_failure(make_error_code(errc::bad_response), step + " at " + server_.to_string() + ": " + detail);
  }

  static bool refuses_version(const http_response& res) {
    return res.status == 400 && detail::is_api_version_refusal(detail::docker_error_message(res.body));
  }

  // HTTP parser errors mean the socket speaks something else than HTTP: say so in one line.
  static bool is_protocol_error(const std::error_code& ec) {
    if (ec.category() != amb_category()) return false;
    auto e = static_cast<errc>(ec.value());
    return e >= errc::bad_status_line && e <= errc::body_too_large;
  }

  template <class T>
  asio::awaitable<T> wrap(asio::awaitable<T> op, std::string target, std::string step) {
    try {
      co_return co_await std::move(op);
    } catch (const std::system_error& e) {
      if (is_protocol_error(e.code()))
        throw docker_failure(make_error_code(errc::bad_response), step + " at " + server_.to_string() +
                                                                      ": not a Docker Engine API (GET " + target +
                                                                      ": " + e.code().message() + ")");
      throw;
    }
  }

  asio::awaitable<http_response> send(std::string target, std::string step) {
    http_request req;
    req.target = target;
    auto op = http_.request(std::move(req));
    auto res = co_await wrap(std::move(op), target, step);
    co_return res;
  }

  // A versioned GET: negotiates first, and once more if the engine refuses the version.
  asio::awaitable<http_response> versioned(std::string target, std::string step) {
    if (api_version_.empty()) co_await negotiate();
    auto res = co_await send("/v" + api_version_ + target, step);
    if (refuses_version(res)) {
      co_await negotiate();
      res = co_await send("/v" + api_version_ + target, step);
    }
    co_return res;
  }

  // Non-2xx: the engine's "message" (both Docker and podman send one) becomes the error text.
  void check(const http_response& res, const std::string& step) const {
    if (res.status >= 200 && res.status < 300) return;
    auto message = detail::docker_error_message(res.body);
    std::string lower = message;
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const std::string where = step + " at " + server_.to_string() + ": ";
    // Podman answers 500 "... does not exist in database: no such container" for a container
    // removed while it is being inspected; that is a gone container, not a failing engine.
    if ((res.status == 404 || res.status == 500) && lower.find("no such container") != std::string::npos)
      throw docker_failure(make_error_code(errc::no_such_container), where + "no such container");
    if (message.empty())
      throw docker_failure(make_error_code(errc::bad_response), where + "not a Docker Engine API (HTTP " +
                                                                    std::to_string(res.status) + " " +
                                                                    detail::quote_body(res.body) + ")");
    throw docker_failure(make_error_code(errc::docker_error),
                         where + "HTTP " + std::to_string(res.status) + ": " + message);
  }

  asio::any_io_executor ex_;
  endpoint server_;
  http_client http_;
  http_client stream_http_;
  std::string api_version_;
};

}  // namespace amb
