// SPDX-License-Identifier: MIT
// etcd v3 client over the JSON gateway: KV, leases, auth, TLS, several endpoints with failover.
#pragma once

#include "amb/address.hpp"
#include "amb/detail/async.hpp"
#include "amb/detail/etcd_json.hpp"
#include "amb/error.hpp"
#include "amb/etcd_error.hpp"
#include "amb/etcd_types.hpp"
#include "amb/http_client.hpp"
#include "amb/log.hpp"
#include "amb/tls_options.hpp"
#include "amb/tls_stream.hpp"

#include "amb/detail/asio.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace amb {

/// How an etcd_client reaches etcd.
struct etcd_client_options {
  std::vector<endpoint> endpoints{};  ///< tried in order from the last one that worked; a failing one is skipped
  std::string user{};                 ///< auth user; empty = no auth
  std::string password{};             ///< auth password (never logged)
  tls_options tls{};                  ///< CA, client certificate and key for https:// endpoints
  std::chrono::milliseconds connect_timeout{2000};    ///< per connect attempt
  std::chrono::milliseconds request_timeout{5000};    ///< per request (etcd can otherwise hang for minutes)
  int retry_rounds = 2;                               ///< passes over all endpoints per call before giving up
  std::chrono::milliseconds retry_backoff{200};       ///< wait before the second pass, doubled for each further pass
  std::chrono::milliseconds retry_backoff_max{2000};  ///< cap of that wait
};

namespace detail {
/// "what" of a system_error without the ": <ec message>" that std::system_error appends.
inline std::string etcd_error_context(const std::system_error& e) {
  std::string what = e.what();
  const std::string suffix = ": " + e.code().message();
  if (what.size() >= suffix.size() && what.compare(what.size() - suffix.size(), suffix.size(), suffix) == 0)
    what.resize(what.size() - suffix.size());
  return what;
}
/// A short one-line text/plain body quoted for an error message (" (\"...\")"), "" otherwise: etcd's own
/// non-JSON refusals read like that, e.g. its gateway's "CommonName of client sending a request against
/// gateway will be ignored and not used as expected" (a client certificate with a CN while auth is on).
inline std::string etcd_plain_text(const http_response& resp) {
  if (resp.header("Content-Type").substr(0, 10) != "text/plain" || resp.body.empty() || resp.body.size() > 300)
    return {};
  std::string text = resp.body;
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  for (unsigned char c : text)
    if (c < 0x20 || c >= 0x7f) return {};
  return " (\"" + text + "\")";
}
/// The printable form of a key in an error message (bytes kept; etcd keys are usually text).
inline std::string etcd_printable(std::string_view key) {
  if (key.empty()) return "\"\"";
  std::string out;
  for (unsigned char c : key) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}
}  // namespace detail

/// An etcd v3 client over the JSON gateway (docs/protocols.md part 1). Every call is a coroutine on the
/// client's executor (one thread: no locking); the client must outlive the calls. Each call tries the
/// endpoints in turn (connection errors, timeouts, non-etcd replies and gRPC "unavailable" move on to
/// the next), backs off between passes, and throws at the end: etcd_error for an error etcd returned
/// (gRPC code and message kept), std::system_error otherwise, with what() naming step, key and endpoint.
class etcd_client {
public:
  /// A client for `options.endpoints` (at least one); connects lazily. With an https:// endpoint it loads
  /// the TLS files now and throws std::system_error naming the one that fails; in a build without TLS it
  /// throws errc::tls_unsupported ("https://a:2379: this build has no TLS support (configure with -DAMB_TLS=ON)").
  etcd_client(asio::any_io_executor ex, etcd_client_options options)
      : ex_(std::move(ex)), options_(std::move(options)), idle_(options_.endpoints.size()) {
    if (options_.endpoints.empty())
      throw std::system_error(std::make_error_code(std::errc::invalid_argument), "etcd_client: no endpoint given");
    if (options_.retry_rounds < 1) options_.retry_rounds = 1;
    for (const auto& e : options_.endpoints)
      if (e.tls && !tls_available) throw std::system_error(make_error_code(errc::tls_unsupported), e.to_string());
#if AMB_WITH_TLS
    if (any_tls(options_.endpoints)) tls_ = make_tls_context(options_.tls);
#endif
  }
  etcd_client(const etcd_client&) = delete;
  etcd_client& operator=(const etcd_client&) = delete;
  /// Closes every connection.
  ~etcd_client() { close(); }

  // ------------------------------------------------------------------ KV

  /// Reads one key; nullopt when it does not exist.
  asio::awaitable<std::optional<etcd_kv>> get(std::string key) {
    auto r = co_await range(key, {}, "get " + detail::etcd_printable(key));
    if (r.kvs.empty()) co_return std::nullopt;
    co_return std::move(r.kvs.front());
  }

  /// The key under `prefix` written last (keys only: kvs holds it alone, without its value) and the
  /// count of every key under it, at the revision in the result: a cheap check that a copy is current.
  asio::awaitable<etcd_range_result> newest_in_prefix(std::string prefix) {
    const std::string step = "newest key of " + detail::etcd_printable(prefix);
    auto body =
        co_await call("/v3/kv/range", detail::etcd_newest_key_body(prefix, detail::etcd_prefix_end(prefix)), step);
    etcd_range_result r;
    check_parse(detail::etcd_parse_range(body, r), step);
    co_return r;
  }

  /// Reads every key starting with `prefix`, in key order, and the revision the read saw.
  asio::awaitable<etcd_range_result> get_prefix(std::string prefix) {
    co_return co_await range(prefix, detail::etcd_prefix_end(prefix), "get prefix " + detail::etcd_printable(prefix));
  }

  /// Writes key = value, attached to `lease` when non-zero; with `prev_kv` returns the old key-value.
  asio::awaitable<etcd_put_result> put(std::string key, std::string value, std::int64_t lease = 0,
                                       bool prev_kv = false) {
    const std::string step = "put " + detail::etcd_printable(key);
    auto body = co_await call("/v3/kv/put", detail::etcd_put_body(key, value, lease, prev_kv), step);
    etcd_put_result r;
    check_parse(detail::etcd_parse_put(body, r), step);
    co_return r;
  }

  /// Deletes one key (deleted = 0 when it did not exist).
  asio::awaitable<etcd_delete_result> erase(std::string key) {
    co_return co_await delete_range(key, {}, "delete " + detail::etcd_printable(key));
  }

  /// Deletes every key starting with `prefix`.
  asio::awaitable<etcd_delete_result> erase_prefix(std::string prefix) {
    co_return co_await delete_range(prefix, detail::etcd_prefix_end(prefix),
                                    "delete prefix " + detail::etcd_printable(prefix));
  }

  /// Writes key = value only if the key does not exist (one transaction comparing create_revision
  /// with 0); otherwise returns the existing key-value.
  asio::awaitable<etcd_create_result> create(std::string key, std::string value, std::int64_t lease = 0) {
    const std::string step = "create " + detail::etcd_printable(key);
    auto body = co_await call("/v3/kv/txn", detail::etcd_create_body(key, value, lease), step);
    etcd_create_result r;
    check_parse(detail::etcd_parse_create(body, r), step);
    co_return r;
  }

  // ------------------------------------------------------------------ leases

  /// Grants a lease of `ttl` seconds (etcd raises it to its minimum, 2 s by default).
  asio::awaitable<etcd_lease> lease_grant(std::int64_t ttl) {
    const std::string step = "lease grant TTL " + std::to_string(ttl);
    auto body = co_await call("/v3/lease/grant", detail::etcd_grant_body(ttl), step);
    etcd_lease r;
    check_parse(detail::etcd_parse_grant(body, r), step);
    co_return r;
  }

  /// One keepalive (one POST, docs/protocols.md §1.5): returns the renewed TTL, or 0 when the lease is gone
  /// (expired or unknown) and its keys with it.
  asio::awaitable<std::int64_t> lease_keepalive(std::int64_t id) {
    const std::string step = "lease keepalive " + std::to_string(id);
    auto body = co_await call("/v3/lease/keepalive", detail::etcd_lease_id_body(id), step);
    std::int64_t ttl = 0;
    check_parse(detail::etcd_parse_keepalive(body, ttl), step);
    co_return ttl > 0 ? ttl : 0;
  }

  /// Revokes a lease: its keys are deleted at once. False when the lease was already gone.
  asio::awaitable<bool> lease_revoke(std::int64_t id) {
    try {
      co_await call("/v3/lease/revoke", detail::etcd_lease_id_body(id), "lease revoke " + std::to_string(id));
    } catch (const etcd_error& e) {
      if (e.lease_not_found()) co_return false;
      throw;
    }
    co_return true;
  }

  /// Remaining TTL of a lease (ttl -1 when gone), with its keys when `keys` is set.
  asio::awaitable<etcd_lease_ttl> lease_time_to_live(std::int64_t id, bool keys = false) {
    const std::string step = "lease timetolive " + std::to_string(id);
    auto body = co_await call("/v3/lease/timetolive", detail::etcd_ttl_body(id, keys), step);
    etcd_lease_ttl r;
    check_parse(detail::etcd_parse_ttl(body, r), step);
    co_return r;
  }

  // ------------------------------------------------------------------ plumbing

  /// One unary RPC (POST `path` with a JSON body) with failover, auth and error mapping; returns the
  /// 2xx body. `step` names the operation in errors ("put /a").
  asio::awaitable<std::string> call(std::string path, std::string body, std::string step) {
    const std::size_t n = options_.endpoints.size();
    std::chrono::milliseconds backoff = options_.retry_backoff;
    bool reauthenticated = false;
    std::error_code last_ec;
    std::string failures;  // "http://a: …; http://b: …" for the final error
    for (int round = 0; round < options_.retry_rounds; ++round) {
      if (round > 0) {
        co_await detail::sleep_for(backoff);
        backoff = std::min(backoff * 2, options_.retry_backoff_max);
      }
      failures.clear();
      for (std::size_t tried = 0; tried < n; ++tried) {
        const std::size_t i = current_;
        const std::string at = options_.endpoints[i].to_string();
        std::error_code ec;
        std::string why;
        try {
          if (!options_.user.empty() && token_.empty()) co_await authenticate_at(i);
          auto resp = co_await request_at(i, path, body);
          if (resp.status / 100 == 2) {
            answered_by_ = i;
            co_return std::move(resp.body);
          }
          auto err = detail::etcd_parse_error(resp.body);
          if (!err) {
            ec = errc::bad_response;
            why = "POST " + path + " to " + at + ": HTTP " + std::to_string(resp.status) + " " + resp.reason +
                  " with a body that is not an etcd reply" + detail::etcd_plain_text(resp);
          } else if (err->code == static_cast<int>(grpc_code::unauthenticated) && !options_.user.empty() &&
                     !reauthenticated) {
            // Token expired or unknown to this member: one fresh token, same endpoint, same request.
            reauthenticated = true;
            token_.clear();
            --tried;
            continue;
          } else if (err->code == static_cast<int>(grpc_code::unavailable)) {
            ec = make_error_code(grpc_code::unavailable);
            why = "POST " + path + " to " + at + ": " + err->message;
          } else {
            throw etcd_error(err->code, err->message, "etcd " + step + " at " + at);
          }
        } catch (const etcd_error&) {
          throw;
        } catch (const std::system_error& e) {
          if (closed_) throw;  // close() aborted us: no failover, no retry
          ec = e.code();
          why = detail::etcd_error_context(e);
        }
        last_ec = ec;
        failures += (failures.empty() ? "" : "; ") + why + ": " + ec.message();
        log::debug("etcd ", step, ": ", why, ": ", ec.message());
        current_ = (current_ + 1) % n;
      }
    }
    if (n == 1) throw std::system_error(last_ec, "etcd " + step + ": " + strip_last(failures, last_ec));
    throw std::system_error(make_error_code(errc::no_endpoint),
                            "etcd " + step + ": every endpoint failed (" + failures + ")");
  }

  /// Gets a fresh auth token now (the next call would do it anyway); no-op without a user.
  asio::awaitable<void> authenticate() {
    if (options_.user.empty()) co_return;
    token_.clear();
    co_await call_auth();
  }

  /// Authenticates when a user is configured and there is no token yet (before a watch).
  asio::awaitable<void> authenticate_if_needed() {
    if (!options_.user.empty() && token_.empty()) co_await call_auth();
  }

  /// Headers every etcd request carries: the auth token (raw, no "Bearer") when there is one.
  std::vector<http_header> auth_headers() const {
    std::vector<http_header> h{{"Content-Type", "application/json"}};
    if (!token_.empty()) h.push_back({"Authorization", token_});
    return h;
  }

  /// Forgets the token so that the next call authenticates again (after a watch is refused for auth).
  void invalidate_token() noexcept { token_.clear(); }

  /// How many tokens were obtained so far (re-authentications show up here).
  std::size_t authentications() const noexcept { return authentications_; }

  /// True when a user is configured.
  bool uses_auth() const noexcept { return !options_.user.empty(); }

  /// Index in endpoints() of the endpoint the next call tries first.
  std::size_t current_index() const noexcept { return current_; }

  /// Makes the next call start at endpoint `i` (modulo the count), e.g. after a watch failed over.
  void prefer(std::size_t i) noexcept { current_ = i % options_.endpoints.size(); }

  /// The configured endpoints.
  const std::vector<endpoint>& endpoints() const noexcept { return options_.endpoints; }

  /// The options the client was made with.
  const etcd_client_options& options() const noexcept { return options_; }

  /// Options for an http_client to one of the endpoints (timeouts, and the TLS context for https://).
  http_client_options http_options() const {
    http_client_options o;
    o.connect_timeout = options_.connect_timeout;
    o.request_timeout = options_.request_timeout;
    o.tls = tls_;
    return o;
  }

  /// The executor every call runs on.
  const asio::any_io_executor& executor() const noexcept { return ex_; }

  /// Aborts pending calls (they throw operation_aborted) and closes every connection; later calls fail.
  void close() {
    closed_ = true;
    for (auto& list : idle_)
      for (auto& c : list) c->close();
    for (auto* c : busy_) c->close();
    idle_.assign(idle_.size(), {});
  }

private:
  static std::string strip_last(const std::string& failures, const std::error_code& ec) {
    const std::string suffix = ": " + ec.message();
    if (failures.size() >= suffix.size() &&
        failures.compare(failures.size() - suffix.size(), suffix.size(), suffix) == 0)
      return failures.substr(0, failures.size() - suffix.size());
    return failures;
  }

  void check_parse(std::error_code ec, const std::string& step) const {
    if (ec)
      throw std::system_error(ec, "etcd " + step + " at " + options_.endpoints[answered_by_].to_string() +
                                      ": reply is not the expected etcd JSON");
  }

  asio::awaitable<etcd_range_result> range(const std::string& key, const std::string& range_end, std::string step) {
    auto body = co_await call("/v3/kv/range", detail::etcd_range_body(key, range_end), step);
    etcd_range_result r;
    check_parse(detail::etcd_parse_range(body, r), step);
    co_return r;
  }

  asio::awaitable<etcd_delete_result> delete_range(const std::string& key, const std::string& range_end,
                                                   std::string step) {
    auto body = co_await call("/v3/kv/deleterange", detail::etcd_delete_body(key, range_end), step);
    etcd_delete_result r;
    check_parse(detail::etcd_parse_delete(body, r), step);
    co_return r;
  }

  // Takes a request's connection off busy_ however the request ends. Not a local class of the
  // coroutine below: GCC 12 crashes mangling one when the header is precompiled.
  struct unbusy {
    etcd_client* self;
    http_client* c;
    ~unbusy() { self->busy_.erase(std::find(self->busy_.begin(), self->busy_.end(), c)); }
  };

  // One request on a pooled connection to endpoint i. Each http_client carries at most one request at
  // a time, so concurrent calls (keepalive tick + put) each get their own connection.
  asio::awaitable<http_response> request_at(std::size_t i, const std::string& path, const std::string& body) {
    if (closed_) throw std::system_error(asio::error::operation_aborted, "etcd client closed");
    std::shared_ptr<http_client> c;
    if (!idle_[i].empty()) {
      c = std::move(idle_[i].back());
      idle_[i].pop_back();
    } else {
      c = std::make_shared<http_client>(ex_, options_.endpoints[i], http_options());
    }
    http_request req;
    req.method = "POST";
    req.target = path;
    req.headers = auth_headers();
    req.body = body;
    busy_.push_back(c.get());
    unbusy guard{this, c.get()};
    auto resp = co_await c->request(std::move(req));
    // Keep at most a few idle connections per endpoint; a failed one (exception) is simply dropped.
    if (!closed_ && idle_[i].size() < 4) idle_[i].push_back(std::move(c));
    co_return resp;
  }

  // Authenticates with failover: the first endpoint that answers gives the token.
  asio::awaitable<void> call_auth() {
    const std::size_t n = options_.endpoints.size();
    for (std::size_t tried = 0;; ++tried) {
      try {
        co_await authenticate_at(current_);
        co_return;
      } catch (const etcd_error&) {
        throw;
      } catch (const std::system_error&) {
        if (closed_ || tried + 1 >= n) throw;
      }
      current_ = (current_ + 1) % n;
    }
  }

  asio::awaitable<void> authenticate_at(std::size_t i) {
    const std::string at = options_.endpoints[i].to_string();
    token_.clear();  // the authenticate request itself goes without a token
    auto resp =
        co_await request_at(i, "/v3/auth/authenticate", detail::etcd_auth_body(options_.user, options_.password));
    const std::string step = "etcd authenticate as " + options_.user + " at " + at;
    if (resp.status / 100 != 2) {
      auto err = detail::etcd_parse_error(resp.body);
      if (!err)
        throw std::system_error(errc::bad_response, step + ": HTTP " + std::to_string(resp.status) +
                                                        " with a body that is not an etcd reply" +
                                                        detail::etcd_plain_text(resp));
      throw etcd_error(err->code, err->message, step);
    }
    std::string token;
    if (auto ec = detail::etcd_parse_auth(resp.body, token)) throw std::system_error(ec, step);
    token_ = std::move(token);
    ++authentications_;
  }

  asio::any_io_executor ex_;
  etcd_client_options options_;
  std::vector<std::vector<std::shared_ptr<http_client>>> idle_;  // per endpoint
  std::vector<http_client*> busy_;                               // requests in flight (for close())
  std::size_t current_ = 0;
  std::size_t answered_by_ = 0;  // endpoint of the last 2xx reply, for parse errors
  std::string token_;
  tls_context_ptr tls_;  // shared by every connection to an https:// endpoint
  std::size_t authentications_ = 0;
  bool closed_ = false;
};

}  // namespace amb
