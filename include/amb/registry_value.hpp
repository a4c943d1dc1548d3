// SPDX-License-Identifier: MIT
// Registry values, both ways: the seed's JSON {"host":..,"port":..} or plain host:port.
#pragma once

#include "amb/log.hpp"
#include "amb/address.hpp"
#include "amb/detail/json.hpp"

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace amb {

/// One instance as written under <prefix>/<service>/<instance-id>.
struct registry_value {
  host_port address{};       ///< where to connect
  std::uint32_t weight = 1;  ///< relative share for weighted policies (1..1000000); 0 means draining
  /// "draining":true, or "weight":0: the instance takes no new connections while others can (its open
  /// ones go on); an ambassador whose instances all drain still uses them (docs/design.md §3).
  bool draining = false;
  /// Other JSON fields, in key order: strings as they are, other values as JSON text.
  std::vector<std::pair<std::string, std::string>> extra{};
  friend bool operator==(const registry_value&, const registry_value&) = default;
};

/// Largest accepted "weight"; far beyond any sensible ratio, small enough for 64-bit sums.
inline constexpr std::uint32_t max_registry_weight = 1000000;

namespace detail {

/// The value quoted for an error line: escaped and cut short, so a huge or hostile value gives one short line.
inline std::string quote_value(std::string_view v) { return log::quoted(v); }

/// A JSON number or numeric string as an integer; nothing for anything else (decimals included).
inline std::optional<std::int64_t> json_integer(const picojson::value& v) {
  if (v.is<std::int64_t>()) return v.get<std::int64_t>();
  if (v.is<std::string>()) {
    const auto& s = v.get<std::string>();
    std::int64_t out = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    if (!s.empty() && ec == std::errc{} && end == s.data() + s.size()) return out;
  }
  return std::nullopt;
}

/// True when `s` is a number by the JSON grammar: -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?
inline bool is_json_number(std::string_view s) {
  std::size_t i = 0, n = s.size();
  auto digit = [&](std::size_t k) { return k < n && s[k] >= '0' && s[k] <= '9'; };
  if (i < n && s[i] == '-') ++i;
  if (!digit(i)) return false;
  if (s[i] == '0')
    ++i;
  else
    while (digit(i)) ++i;
  if (i < n && s[i] == '.') {
    ++i;
    if (!digit(i)) return false;
    while (digit(i)) ++i;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digit(i)) return false;
    while (digit(i)) ++i;
  }
  return i == n;
}

/// `s` as a JSON string literal; UTF-8 bytes pass through, control characters become \u00XX.
inline std::string json_quote(std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 0xf];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

inline parsed<registry_value> parse_registry_json(std::string_view text) {
  parsed<registry_value> r;
  const std::string prefix = "bad registry value " + quote_value(text) + ": ";
  picojson::value doc;
  std::string err;
  auto end = detail::json_parse(doc, text.begin(), text.end(), &err);
  if (err.empty() && end != text.end()) err = "trailing characters after the object";
  if (!err.empty()) {
    // picojson's message spans lines; keep the first so the log stays one line.
    r.error = prefix + "invalid JSON (" + log::escaped(err.substr(0, err.find('\n')), 100) + ")";
    return r;
  }
  if (!doc.is<picojson::object>()) {
    r.error = prefix + "expected a JSON object";
    return r;
  }
  registry_value v;
  const auto* host = json_member(doc, "host");
  if (!host) {
    r.error = prefix + "missing \"host\"";
    return r;
  }
  if (!host->is<std::string>() || host->get<std::string>().empty()) {
    r.error = prefix + "\"host\" must be a non-empty string";
    return r;
  }
  v.address.host = host->get<std::string>();
  // Tolerate a bracketed IPv6 host ("[::1]"): people copy it from host:port forms.
  if (v.address.host.size() > 2 && v.address.host.front() == '[' && v.address.host.back() == ']')
    v.address.host = v.address.host.substr(1, v.address.host.size() - 2);
  const auto* port = json_member(doc, "port");
  if (!port) {
    r.error = prefix + "missing \"port\"";
    return r;
  }
  const auto p = json_integer(*port).value_or(0);
  if (p < 1 || p > 65535) {
    r.error = prefix + "bad port " + port->serialize() + " (expected 1..65535)";
    return r;
  }
  v.address.port = static_cast<std::uint16_t>(p);
  if (const auto* weight = json_member(doc, "weight")) {
    const auto w = json_integer(*weight).value_or(-1);
    if (w < 0 || w > max_registry_weight) {
      r.error = prefix + "bad weight " + weight->serialize() + " (expected an integer 0.." +
                std::to_string(max_registry_weight) + ", 0 for draining)";
      return r;
    }
    v.weight = static_cast<std::uint32_t>(w);
  }
  if (const auto* draining = json_member(doc, "draining")) {
    // Only a JSON boolean: "yes", "false" or 1 would be a guess, and a wrong guess about draining
    // sends traffic to an instance that is going away (or none to one that is not).
    if (!draining->is<bool>()) {
      // A string is the likeliest slip (a registrar that quotes every field): say what differs.
      r.error =
          prefix + "bad draining " + log::escaped(draining->serialize(), 80) +
          (draining->is<std::string>() ? " (expected true or false, without quotes)" : " (expected true or false)");
      return r;
    }
    v.draining = draining->get<bool>();
  }
  if (v.weight == 0) v.draining = true;  // a share of nothing: no new connections
  for (const auto& [key, value] : doc.get<picojson::object>()) {
    if (key == "host" || key == "port" || key == "weight" || key == "draining") continue;
    v.extra.emplace_back(key, value.is<std::string>() ? value.get<std::string>() : value.serialize());
  }
  r.value = std::move(v);
  return r;
}

}  // namespace detail

/// Parses a registry value: the seed's JSON object (port as number or numeric string, optional
/// integer "weight" 0..1000000 where 0 means draining, optional boolean "draining", other fields kept
/// in `extra`) or plain "host:port"
/// ("[::1]:6379" for IPv6). Leading and trailing whitespace is ignored (etcdctl users add newlines).
inline parsed<registry_value> parse_registry_value(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t' || text.front() == '\n' || text.front() == '\r'))
    text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\n' || text.back() == '\r'))
    text.remove_suffix(1);
  if (!text.empty() && text.front() == '{') return detail::parse_registry_json(text);
  parsed<registry_value> r;
  if (text.empty()) {
    r.error = "bad registry value \"\": empty";
    return r;
  }
  if (text.find(':') == std::string_view::npos) {
    r.error = "bad registry value " + detail::quote_value(text) + ": neither {\"host\":..,\"port\":..} nor HOST:PORT";
    return r;
  }
  auto hp = parse_host_port(text);
  if (!hp) {
    r.error = "bad registry value: " + hp.error;
    return r;
  }
  registry_value v;
  v.address = *hp;
  r.value = std::move(v);
  return r;
}

/// The seed's JSON value: {"host":"10.0.0.5","port":49155} plus `extra` fields in order.
/// A field value that is a JSON number (integer or decimal) is written as a number, anything
/// else as an escaped string. Extra fields named "host" or "port" are dropped (the address wins);
/// a key given twice keeps its first place and its last value, as command lines usually mean.
inline std::string format_registry_json(std::string_view host, std::uint16_t port,
                                        const std::vector<std::pair<std::string, std::string>>& extra = {}) {
  std::vector<std::pair<std::string, std::string>> fields;
  for (const auto& [k, v] : extra) {
    if (k == "host" || k == "port") continue;
    bool replaced = false;
    for (auto& f : fields)
      if (f.first == k) {
        f.second = v;
        replaced = true;
      }
    if (!replaced) fields.emplace_back(k, v);
  }
  std::string out = "{\"host\":" + detail::json_quote(host) + ",\"port\":" + std::to_string(port);
  for (const auto& [k, v] : fields)
    out += "," + detail::json_quote(k) + ":" + (detail::is_json_number(v) ? v : detail::json_quote(v));
  out += "}";
  return out;
}

/// The plain form "host:port" ("[v6]:port"), as registrator writes it.
inline std::string format_registry_hostport(std::string_view host, std::uint16_t port) {
  return host_port{std::string(host), port}.to_string();
}

/// Splits a "KEY=VALUE" argument (for extra fields); the key must be non-empty, the value may be.
inline parsed<std::pair<std::string, std::string>> parse_key_value(std::string_view text) {
  parsed<std::pair<std::string, std::string>> r;
  auto eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    r.error = "bad field " + log::quoted(text) + ": expected KEY=VALUE";
    return r;
  }
  r.value = std::make_pair(std::string(text.substr(0, eq)), std::string(text.substr(eq + 1)));
  return r;
}

}  // namespace amb
