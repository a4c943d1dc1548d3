// SPDX-License-Identifier: MIT
// etcd v3 JSON gateway bodies: request builders and response/watch-line parsers (docs/protocols.md part 1).
#pragma once

#include "amb/detail/base64.hpp"
#include "amb/detail/json.hpp"
#include "amb/error.hpp"
#include "amb/etcd_types.hpp"

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace amb::detail {

// ---------------------------------------------------------------- helpers

/// range_end for "every key starting with prefix": the prefix with its last byte + 1, trailing
/// 0xff bytes dropped first; "\0" (to the end of the keyspace) when nothing is left.
inline std::string etcd_prefix_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

/// An int64 field: etcd sends them as JSON strings, but numbers are accepted too. Absent means 0
/// (etcd omits zero values). False when present but not an integer.
inline bool etcd_int64(const picojson::value& v, const std::string& name, std::int64_t& out) {
  out = 0;
  const auto* m = json_member(v, name);
  if (!m || m->is<picojson::null>()) return true;
  if (m->is<std::string>()) {
    const auto& s = m->get<std::string>();
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return !s.empty() && ec == std::errc{} && end == s.data() + s.size();
  }
  if (m->is<std::int64_t>()) {
    out = m->get<std::int64_t>();
    return true;
  }
  return false;
}

/// A bytes field (base64 on the wire); absent means "". False when not valid base64.
inline bool etcd_bytes(const picojson::value& v, const std::string& name, std::string& out) {
  out.clear();
  const auto* m = json_member(v, name);
  if (!m || m->is<picojson::null>()) return true;
  if (!m->is<std::string>()) return false;
  auto bytes = base64_decode(m->get<std::string>());
  if (!bytes) return false;
  out = std::move(*bytes.value);
  return true;
}

/// Parses a whole body as one JSON value; false when it is not JSON.
inline bool etcd_parse(std::string_view body, picojson::value& out) {
  std::string err;
  const char* end = json_parse(out, body.data(), body.data() + body.size(), &err);
  if (!err.empty()) return false;
  // Only whitespace may follow the value (a watch line ends in '\n').
  for (; end != body.data() + body.size(); ++end)
    if (*end != ' ' && *end != '\n' && *end != '\r' && *end != '\t') return false;
  return true;
}

inline picojson::value b64(std::string_view bytes) { return picojson::value(base64_encode(bytes)); }
inline picojson::value i64s(std::int64_t n) { return picojson::value(std::to_string(n)); }  // ids never via double
inline std::string serialize(picojson::object o) { return picojson::value(std::move(o)).serialize(); }

// ---------------------------------------------------------------- requests

/// POST /v3/kv/range. Empty `range_end` reads one key.
inline std::string etcd_range_body(std::string_view key, std::string_view range_end = {}, std::int64_t revision = 0,
                                   std::int64_t limit = 0) {
  picojson::object o;
  o["key"] = b64(key);
  if (!range_end.empty()) o["range_end"] = b64(range_end);
  if (revision > 0) o["revision"] = i64s(revision);
  if (limit > 0) o["limit"] = i64s(limit);
  return serialize(std::move(o));
}

/// POST /v3/kv/range for the newest key of a range: its key and revisions only (no value), plus the
/// count of every key in the range; a cheap fingerprint of the range's state.
inline std::string etcd_newest_key_body(std::string_view key, std::string_view range_end) {
  picojson::object o;
  o["key"] = b64(key);
  o["range_end"] = b64(range_end);
  o["limit"] = i64s(1);
  o["sort_order"] = picojson::value("DESCEND");
  o["sort_target"] = picojson::value("MOD");
  o["keys_only"] = picojson::value(true);
  return serialize(std::move(o));
}

/// POST /v3/kv/put.
inline std::string etcd_put_body(std::string_view key, std::string_view value, std::int64_t lease = 0,
                                 bool prev_kv = false) {
  picojson::object o;
  o["key"] = b64(key);
  o["value"] = b64(value);
  if (lease != 0) o["lease"] = i64s(lease);
  if (prev_kv) o["prev_kv"] = picojson::value(true);
  return serialize(std::move(o));
}

/// POST /v3/kv/deleterange. Empty `range_end` deletes one key.
inline std::string etcd_delete_body(std::string_view key, std::string_view range_end = {}) {
  picojson::object o;
  o["key"] = b64(key);
  if (!range_end.empty()) o["range_end"] = b64(range_end);
  return serialize(std::move(o));
}

/// POST /v3/kv/txn: put `key` only if it does not exist (create_revision == 0), else read it.
inline std::string etcd_create_body(std::string_view key, std::string_view value, std::int64_t lease = 0) {
  picojson::object cmp;
  cmp["key"] = b64(key);
  cmp["target"] = picojson::value("CREATE");
  cmp["result"] = picojson::value("EQUAL");
  cmp["create_revision"] = picojson::value("0");  // the field must match the target (docs/protocols.md §1.4)
  picojson::object put;
  put["key"] = b64(key);
  put["value"] = b64(value);
  if (lease != 0) put["lease"] = i64s(lease);
  picojson::object put_op, range_op, range;
  put_op["request_put"] = picojson::value(std::move(put));
  range["key"] = b64(key);
  range_op["request_range"] = picojson::value(std::move(range));
  picojson::object o;
  o["compare"] = picojson::value(picojson::array{picojson::value(std::move(cmp))});
  o["success"] = picojson::value(picojson::array{picojson::value(std::move(put_op))});
  o["failure"] = picojson::value(picojson::array{picojson::value(std::move(range_op))});
  return serialize(std::move(o));
}

/// POST /v3/lease/grant.
inline std::string etcd_grant_body(std::int64_t ttl, std::int64_t id = 0) {
  picojson::object o;
  o["TTL"] = i64s(ttl);
  if (id != 0) o["ID"] = i64s(id);
  return serialize(std::move(o));
}

/// POST /v3/lease/keepalive and /v3/lease/revoke: {"ID":"…"}.
inline std::string etcd_lease_id_body(std::int64_t id) {
  picojson::object o;
  o["ID"] = i64s(id);
  return serialize(std::move(o));
}

/// POST /v3/lease/timetolive.
inline std::string etcd_ttl_body(std::int64_t id, bool keys) {
  picojson::object o;
  o["ID"] = i64s(id);
  if (keys) o["keys"] = picojson::value(true);
  return serialize(std::move(o));
}

/// POST /v3/auth/authenticate.
inline std::string etcd_auth_body(std::string_view name, std::string_view password) {
  picojson::object o;
  o["name"] = picojson::value(std::string(name));
  o["password"] = picojson::value(std::string(password));
  return serialize(std::move(o));
}

/// POST /v3/watch: one create_request (one watch per connection; cancel = close the socket).
/// `start_revision` 0 means "from now".
inline std::string etcd_watch_body(std::string_view key, std::string_view range_end, std::int64_t start_revision,
                                   bool progress_notify, bool prev_kv = false) {
  picojson::object c;
  c["key"] = b64(key);
  if (!range_end.empty()) c["range_end"] = b64(range_end);
  if (start_revision > 0) c["start_revision"] = i64s(start_revision);
  if (progress_notify) c["progress_notify"] = picojson::value(true);
  if (prev_kv) c["prev_kv"] = picojson::value(true);
  picojson::object o;
  o["create_request"] = picojson::value(std::move(c));
  return serialize(std::move(o));
}

// ---------------------------------------------------------------- responses

/// etcd's error object {"error","message","code"}.
struct etcd_error_info {
  int code = 2;         ///< gRPC code (2 = unknown when absent)
  std::string message;  ///< "message", else "error"
};

/// Reads an error object from a non-2xx body; nullopt when the body is not one (HTML, plain text).
inline std::optional<etcd_error_info> etcd_parse_error(std::string_view body) {
  picojson::value v;
  if (!etcd_parse(body, v) || !v.is<picojson::object>()) return std::nullopt;
  const auto* code = json_member(v, "code");
  if (!code || !code->is<std::int64_t>()) return std::nullopt;
  etcd_error_info e;
  e.code = static_cast<int>(code->get<std::int64_t>());
  e.message = json_string(v, "message", json_string(v, "error"));
  return e;
}

/// One mvccpb.KeyValue object.
inline bool etcd_parse_kv(const picojson::value& v, etcd_kv& kv) {
  return v.is<picojson::object>() && etcd_bytes(v, "key", kv.key) && etcd_bytes(v, "value", kv.value) &&
         etcd_int64(v, "create_revision", kv.create_revision) && etcd_int64(v, "mod_revision", kv.mod_revision) &&
         etcd_int64(v, "version", kv.version) && etcd_int64(v, "lease", kv.lease);
}

/// header.revision of a response object (0 when absent, as in a compaction cancel).
inline bool etcd_header_revision(const picojson::value& v, std::int64_t& rev) {
  rev = 0;
  const auto* h = json_member(v, "header");
  return !h || etcd_int64(*h, "revision", rev);
}

inline bool etcd_parse_kvs(const picojson::value& v, const std::string& name, std::vector<etcd_kv>& out) {
  out.clear();
  const auto* a = json_member(v, name);
  if (!a || a->is<picojson::null>()) return true;
  if (!a->is<picojson::array>()) return false;
  for (const auto& item : a->get<picojson::array>()) {
    etcd_kv kv;
    if (!etcd_parse_kv(item, kv)) return false;
    out.push_back(std::move(kv));
  }
  return true;
}

inline std::error_code etcd_object(std::string_view body, picojson::value& v) {
  if (!etcd_parse(body, v) || !v.is<picojson::object>()) return errc::bad_response;
  return {};
}

/// Range response.
inline std::error_code etcd_parse_range(std::string_view body, etcd_range_result& r) {
  picojson::value v;
  if (auto ec = etcd_object(body, v)) return ec;
  if (!etcd_header_revision(v, r.revision) || !etcd_parse_kvs(v, "kvs", r.kvs) || !etcd_int64(v, "count", r.count))
    return errc::bad_response;
  r.more = json_bool(v, "more");
  return {};
}

/// Put response.
inline std::error_code etcd_parse_put(std::string_view body, etcd_put_result& r) {
  picojson::value v;
  if (auto ec = etcd_object(body, v)) return ec;
  if (!etcd_header_revision(v, r.revision)) return errc::bad_response;
  r.prev_kv.reset();
  if (const auto* p = json_member(v, "prev_kv"); p && !p->is<picojson::null>()) {
    etcd_kv kv;
    if (!etcd_parse_kv(*p, kv)) return errc::bad_response;
    r.prev_kv = std::move(kv);
  }
  return {};
}

/// Deleterange response.
inline std::error_code etcd_parse_delete(std::string_view body, etcd_delete_result& r) {
  picojson::value v;
  if (auto ec = etcd_object(body, v)) return ec;
  if (!etcd_header_revision(v, r.revision) || !etcd_int64(v, "deleted", r.deleted)) return errc::bad_response;
  return {};
}

/// Txn response of etcd_create_body: "succeeded" absent means the key existed.
inline std::error_code etcd_parse_create(std::string_view body, etcd_create_result& r) {
  picojson::value v;
  if (auto ec = etcd_object(body, v)) return ec;
  if (!etcd_header_revision(v, r.revision)) return errc::bad_response;
  r.created = json_bool(v, "succeeded");
  r.existing.reset();
  if (!r.created) {
    const auto* responses = json_member(v, "responses");
    if (responses && responses->is<picojson::array>() && !responses->get<picojson::array>().empty()) {
      const auto* range = json_member(responses->get<picojson::array>().front(), "response_range");
      std::vector<etcd_kv> kvs;
      if (!range || !etcd_parse_kvs(*range, "kvs", kvs)) return errc::bad_response;
      if (!kvs.empty()) r.existing = std::move(kvs.front());
    }
  }
  return {};
}

/// Lease grant response.
inline std::error_code etcd_parse_grant(std::string_view body, etcd_lease& r) {
  picojson::value v;
  if (auto ec = etcd_object(body, v)) return ec;
  if (!etcd_int64(v, "ID", r.id) || !etcd_int64(v, "TTL", r.ttl) || r.id == 0) return errc::bad_response;
  return {};
}

/// Keepalive response {"result":{…,"ID","TTL"}}: `ttl` 0 means the lease is gone.
inline std::error_code etcd_parse_keepalive(std::string_view body, std::int64_t& ttl) {
  picojson::value v;
  if (auto ec = etcd_object(body, v)) return ec;
  const auto* result = json_member(v, "result");
  if (!result || !result->is<picojson::object>() || !etcd_int64(*result, "TTL", ttl)) return errc::bad_response;
  return {};
}

/// Timetolive response: TTL -1 when the lease is gone (not an error).
inline std::error_code etcd_parse_ttl(std::string_view body, etcd_lease_ttl& r) {
  picojson::value v;
  if (auto ec = etcd_object(body, v)) return ec;
  if (!etcd_int64(v, "ID", r.id) || !etcd_int64(v, "TTL", r.ttl) || !etcd_int64(v, "grantedTTL", r.granted_ttl))
    return errc::bad_response;
  r.keys.clear();
  if (const auto* keys = json_member(v, "keys"); keys && keys->is<picojson::array>()) {
    for (const auto& k : keys->get<picojson::array>()) {
      if (!k.is<std::string>()) return errc::bad_response;
      auto key = base64_decode(k.get<std::string>());
      if (!key) return errc::bad_response;
      r.keys.push_back(std::move(*key.value));
    }
  }
  return {};
}

/// Authenticate response: the token.
inline std::error_code etcd_parse_auth(std::string_view body, std::string& token) {
  picojson::value v;
  if (auto ec = etcd_object(body, v)) return ec;
  token = json_string(v, "token");
  if (token.empty()) return errc::bad_response;
  return {};
}

/// One line of a watch stream, classified.
struct etcd_watch_message {
  enum class kind {
    created,   ///< the watch exists
    events,    ///< one or more events
    progress,  ///< header only: the watcher caught up to `revision`
    canceled,  ///< etcd ended the watch: compaction (compact_revision > 0) or `cancel_reason` (e.g. auth)
    error,     ///< top-level {"error":{…}}: the server is going away ("transport is closing")
  };
  kind type = kind::progress;
  std::int64_t revision = 0;          ///< header.revision (0 when absent)
  std::vector<etcd_event> events;     ///< for events
  std::int64_t compact_revision = 0;  ///< for a compaction cancel
  std::string cancel_reason;          ///< for other cancels
  int error_code = 0;                 ///< gRPC code of an error message
  std::string error_message;          ///< message of an error message
};

/// Parses one watch line (a '\n'-terminated JSON object after de-chunking).
inline std::error_code etcd_parse_watch_line(std::string_view line, etcd_watch_message& m) {
  m = etcd_watch_message{};
  picojson::value v;
  if (auto ec = etcd_object(line, v)) return ec;
  if (const auto* err = json_member(v, "error")) {
    m.type = etcd_watch_message::kind::error;
    std::int64_t code = 0;
    if (err->is<picojson::object>()) {
      if (!etcd_int64(*err, "grpc_code", code)) return errc::bad_response;
      m.error_message = json_string(*err, "message");
    } else if (err->is<std::string>()) {
      m.error_message = err->get<std::string>();
    }
    m.error_code = static_cast<int>(code);
    return {};
  }
  const auto* result = json_member(v, "result");
  if (!result || !result->is<picojson::object>()) return errc::bad_response;
  if (!etcd_header_revision(*result, m.revision)) return errc::bad_response;
  if (json_bool(*result, "canceled")) {
    m.type = etcd_watch_message::kind::canceled;
    if (!etcd_int64(*result, "compact_revision", m.compact_revision)) return errc::bad_response;
    m.cancel_reason = json_string(*result, "cancel_reason");
    return {};
  }
  if (json_bool(*result, "created")) {
    m.type = etcd_watch_message::kind::created;
    return {};
  }
  const auto* events = json_member(*result, "events");
  if (!events || events->is<picojson::null>()) {
    m.type = etcd_watch_message::kind::progress;
    return {};
  }
  if (!events->is<picojson::array>()) return errc::bad_response;
  m.type = etcd_watch_message::kind::events;
  for (const auto& e : events->get<picojson::array>()) {
    etcd_event ev;
    const std::string type = json_string(e, "type", "PUT");
    if (type == "PUT")
      ev.type = etcd_event::kind::put;
    else if (type == "DELETE")
      ev.type = etcd_event::kind::del;
    else
      return errc::bad_response;
    const auto* kv = json_member(e, "kv");
    if (!kv || !etcd_parse_kv(*kv, ev.kv)) return errc::bad_response;
    if (const auto* p = json_member(e, "prev_kv"); p && !p->is<picojson::null>()) {
      etcd_kv prev;
      if (!etcd_parse_kv(*p, prev)) return errc::bad_response;
      ev.prev_kv = std::move(prev);
    }
    m.events.push_back(std::move(ev));
  }
  if (m.events.empty()) m.type = etcd_watch_message::kind::progress;
  return {};
}

}  // namespace amb::detail
