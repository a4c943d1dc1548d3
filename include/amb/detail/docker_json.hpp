// SPDX-License-Identifier: MIT
// Docker Engine API JSON: the container, version and event shapes amb reads, and their parsers
// (docs/protocols.md part 2; the same text from Docker and from podman's compat API).
#pragma once

#include "amb/address.hpp"
#include "amb/detail/json.hpp"
#include "amb/log.hpp"

#include <charconv>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace amb {

/// One host binding of a published port (NetworkSettings.Ports entry).
struct port_binding {
  std::string host_ip;          ///< as the engine says it: "" (podman) / "0.0.0.0" / "::" mean all interfaces
  std::uint16_t host_port = 0;  ///< the published port on the host
  friend bool operator==(const port_binding&, const port_binding&) = default;
};

/// What `GET /containers/{id}/json` says about a container, reduced to what a registrar needs.
struct container_info {
  std::string id;                  ///< full id
  std::string name;                ///< without the leading '/'
  std::string image;               ///< Config.Image (the name the user ran)
  bool running = false;            ///< State.Running
  std::string status;              ///< State.Status: "running", "exited", ...
  std::string health;              ///< State.Health.Status ("healthy", ...) or "" without a health check
  std::string started_at;          ///< State.StartedAt: tells one run of the container from the next
  std::int64_t stop_timeout = -1;  ///< Config.StopTimeout in seconds; -1 when the engine does not say
  /// NetworkSettings.Networks: network name -> the container's own IPv4 address there ("" when it has none).
  std::map<std::string, std::string> networks;
  std::map<std::string, std::string> labels;  ///< Config.Labels
  std::vector<std::string> env;               ///< Config.Env, "KEY=VALUE" strings
  /// NetworkSettings.Ports: "80/tcp" -> bindings; an empty vector for an exposed but unpublished port
  /// (Config.ExposedPorts are added as such when the engine leaves them out of NetworkSettings.Ports).
  std::map<std::string, std::vector<port_binding>> ports;

  /// The bindings of private_port/proto; empty when unpublished or unknown.
  std::vector<port_binding> bindings(std::uint16_t private_port, std::string_view proto = "tcp") const {
    auto it = ports.find(std::to_string(private_port) + "/" + std::string(proto));
    return it == ports.end() ? std::vector<port_binding>{} : it->second;
  }
  /// The value of environment variable `key`, nullopt when unset.
  std::optional<std::string> env_value(std::string_view key) const {
    for (const auto& kv : env)
      if (kv.size() > key.size() && kv.compare(0, key.size(), key) == 0 && kv[key.size()] == '=')
        return kv.substr(key.size() + 1);
    return std::nullopt;
  }
};

/// One element of `GET /containers/json`.
struct container_summary {
  std::string id;                             ///< full id
  std::vector<std::string> names;             ///< without leading '/'
  std::string image;                          ///< image name
  std::string state;                          ///< "running", "exited", ...
  std::map<std::string, std::string> labels;  ///< labels
};

/// What `GET /version` says (only the fields negotiation needs).
struct engine_version {
  std::string version;          ///< product version, e.g. "4.3.1" or "29.0.1"
  std::string api_version;      ///< highest API version, e.g. "1.41"
  std::string min_api_version;  ///< lowest API version, e.g. "1.24" ("" when the engine does not say)
};

/// A container event from `GET /events` (Action and Actor only: Docker >= 1.52 drops status/id/from).
struct docker_event {
  std::string type;                               ///< "container", "image", ...
  std::string action;                             ///< "start", "die", "destroy", ...
  std::string id;                                 ///< Actor.ID
  std::map<std::string, std::string> attributes;  ///< Actor.Attributes: name, image, labels, exitCode
  std::int64_t time = 0;                          ///< seconds since the epoch
  std::int64_t time_nano = 0;                     ///< nanoseconds since the epoch (0 when absent)
};

namespace detail {

/// The first line of picojson's error, so a log line stays one line.
inline std::string json_error_line(const std::string& err) { return log::escaped(err.substr(0, err.find('\n')), 100); }

/// `text` quoted, escaped and cut short, for error lines about a body that is not what we expected.
inline std::string quote_body(std::string_view text) { return log::quoted(text, 60); }

/// Parses `text` as JSON; the error is "not JSON (...): "<start of body>"".
inline parsed<picojson::value> parse_json_body(std::string_view text) {
  parsed<picojson::value> r;
  std::string err;
  picojson::value doc;
  json_parse(doc, text.begin(), text.end(), &err);
  if (!err.empty())
    r.error = "not JSON (" + json_error_line(err) + "): " + quote_body(text);
  else
    r.value = std::move(doc);
  return r;
}

/// A string-to-string JSON object (labels, attributes); non-string values are skipped.
inline std::map<std::string, std::string> json_string_map(const picojson::value* v) {
  std::map<std::string, std::string> out;
  if (!v || !v->is<picojson::object>()) return out;
  for (const auto& [k, x] : v->get<picojson::object>())
    if (x.is<std::string>()) out[k] = x.get<std::string>();
  return out;
}

/// Name without Docker's leading '/'.
inline std::string strip_slash(std::string name) {
  if (!name.empty() && name.front() == '/') name.erase(0, 1);
  return name;
}

/// A JSON integer, or a string of digits (Docker's HostPort), into `out`.
inline bool json_int(const picojson::value* v, std::int64_t& out) {
  if (!v) return false;
  if (v->is<std::int64_t>()) {
    out = v->get<std::int64_t>();
    return true;
  }
  if (v->is<std::string>()) {
    const auto& s = v->get<std::string>();
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return !s.empty() && ec == std::errc{} && end == s.data() + s.size();
  }
  return false;
}

/// Parses `GET /version`.
inline parsed<engine_version> parse_engine_version(std::string_view body) {
  parsed<engine_version> r;
  auto json = parse_json_body(body);
  if (!json) {
    r.error = std::move(json.error);
    return r;
  }
  const picojson::value& doc = *json;
  engine_version v;
  v.api_version = json_string(doc, "ApiVersion");
  v.min_api_version = json_string(doc, "MinAPIVersion");
  v.version = json_string(doc, "Version");
  if (!doc.is<picojson::object>() || v.api_version.empty()) {
    r.error = "no \"ApiVersion\" in /version reply: " + quote_body(body);
    return r;
  }
  r.value = std::move(v);
  return r;
}

/// Parses an API version, "1.41" into (1, 41); the error names the text.
inline parsed<std::pair<int, int>> parse_api_version(std::string_view text) {
  parsed<std::pair<int, int>> r;
  std::pair<int, int> v{};
  auto num = [](std::string_view s, int& n) {
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    return !s.empty() && ec == std::errc{} && end == s.data() + s.size() && n >= 0;
  };
  const auto dot = text.find('.');
  if (dot != std::string_view::npos && num(text.substr(0, dot), v.first) && num(text.substr(dot + 1), v.second))
    r.value = v;
  else
    r.error = "bad API version " + log::quoted(text) + ": expected MAJOR.MINOR, as 1.41";
  return r;
}

/// The API version to use (docs/protocols.md §2.2): the lower of ours and the engine's, but never
/// below the engine's minimum. Returns "" when the engine's version cannot be read.
inline std::string negotiate_api_version(std::string_view ours, const engine_version& engine) {
  const auto o = parse_api_version(ours), e = parse_api_version(engine.api_version);
  if (!o || !e) return "";
  std::pair<int, int> use = *o < *e ? *o : *e;
  if (const auto m = parse_api_version(engine.min_api_version); m && use < *m) use = *m;
  return std::to_string(use.first) + "." + std::to_string(use.second);
}

/// The "message" of an engine error body (Docker and podman both send it), or "" if there is none.
inline std::string docker_error_message(std::string_view body) {
  picojson::value doc;
  std::string err;
  json_parse(doc, body.begin(), body.end(), &err);
  if (!err.empty()) return "";
  return json_string(doc, "message");
}

/// True for the engine's "client version X is too old/new" refusal (a reason to renegotiate).
inline bool is_api_version_refusal(std::string_view message) {
  return message.find("client version") != std::string_view::npos &&
         (message.find("too old") != std::string_view::npos || message.find("too new") != std::string_view::npos);
}

/// Parses `GET /containers/{id}/json`.
inline parsed<container_info> parse_container_inspect(std::string_view body) {
  parsed<container_info> r;
  auto json = parse_json_body(body);
  if (!json) {
    r.error = std::move(json.error);
    return r;
  }
  const picojson::value& doc = *json;
  if (!doc.is<picojson::object>() || !json_member(doc, "Id")) {
    r.error = "not a container (no \"Id\"): " + quote_body(body);
    return r;
  }
  container_info c;
  c.id = json_string(doc, "Id");
  c.name = strip_slash(json_string(doc, "Name"));
  if (const auto* state = json_member(doc, "State")) {
    c.running = json_bool(*state, "Running");
    c.status = json_string(*state, "Status");
    c.started_at = json_string(*state, "StartedAt");
    if (const auto* health = json_member(*state, "Health")) c.health = json_string(*health, "Status");
  }
  if (const auto* config = json_member(doc, "Config")) {
    c.image = json_string(*config, "Image");
    c.labels = json_string_map(json_member(*config, "Labels"));
    json_int(json_member(*config, "StopTimeout"), c.stop_timeout);
    if (const auto* env = json_member(*config, "Env"); env && env->is<picojson::array>())
      for (const auto& e : env->get<picojson::array>())
        if (e.is<std::string>()) c.env.push_back(e.get<std::string>());
  }
  if (c.image.empty()) c.image = json_string(doc, "Image");
  const auto* net = json_member(doc, "NetworkSettings");
  const auto* ports = net ? json_member(*net, "Ports") : nullptr;
  if (ports && ports->is<picojson::object>()) {
    for (const auto& [key, list] : ports->get<picojson::object>()) {
      auto& out = c.ports[key];  // null (exposed, not published) stays an empty list
      if (!list.is<picojson::array>()) continue;
      for (const auto& b : list.get<picojson::array>()) {
        std::int64_t port = 0;
        if (!json_int(json_member(b, "HostPort"), port) || port < 1 || port > 65535) continue;
        out.push_back(port_binding{json_string(b, "HostIp"), static_cast<std::uint16_t>(port)});
      }
    }
  }
  if (const auto* config = json_member(doc, "Config")) {
    if (const auto* exposed = json_member(*config, "ExposedPorts"); exposed && exposed->is<picojson::object>())
      for (const auto& [key, ignored] : exposed->get<picojson::object>()) c.ports[key];  // exposed: no binding
  }
  const auto* networks = net ? json_member(*net, "Networks") : nullptr;
  if (networks && networks->is<picojson::object>())
    for (const auto& [name, n] : networks->get<picojson::object>()) c.networks[name] = json_string(n, "IPAddress");
  r.value = std::move(c);
  return r;
}

/// Parses `GET /containers/json`.
inline parsed<std::vector<container_summary>> parse_container_list(std::string_view body) {
  parsed<std::vector<container_summary>> r;
  auto json = parse_json_body(body);
  if (!json) {
    r.error = std::move(json.error);
    return r;
  }
  const picojson::value& doc = *json;
  if (!doc.is<picojson::array>()) {
    r.error = "not a container list (expected a JSON array): " + quote_body(body);
    return r;
  }
  std::vector<container_summary> list;
  for (const auto& e : doc.get<picojson::array>()) {
    if (!e.is<picojson::object>()) continue;
    container_summary s;
    s.id = json_string(e, "Id");
    if (const auto* names = json_member(e, "Names"); names && names->is<picojson::array>())
      for (const auto& n : names->get<picojson::array>())
        if (n.is<std::string>()) s.names.push_back(strip_slash(n.get<std::string>()));
    s.image = json_string(e, "Image");
    s.state = json_string(e, "State");
    s.labels = json_string_map(json_member(e, "Labels"));
    if (!s.id.empty()) list.push_back(std::move(s));
  }
  r.value = std::move(list);
  return r;
}

/// Parses one line of `GET /events`.
inline parsed<docker_event> parse_docker_event(std::string_view line) {
  parsed<docker_event> r;
  auto json = parse_json_body(line);
  if (!json) {
    r.error = std::move(json.error);
    return r;
  }
  const picojson::value& doc = *json;
  if (!doc.is<picojson::object>()) {
    r.error = "not an event (expected a JSON object): " + quote_body(line);
    return r;
  }
  docker_event ev;
  ev.type = json_string(doc, "Type");
  ev.action = json_string(doc, "Action");
  if (const auto* actor = json_member(doc, "Actor")) {
    ev.id = json_string(*actor, "ID");
    ev.attributes = json_string_map(json_member(*actor, "Attributes"));
  }
  json_int(json_member(doc, "time"), ev.time);
  json_int(json_member(doc, "timeNano"), ev.time_nano);
  if (ev.action.empty()) {
    r.error = "event without \"Action\": " + quote_body(line);
    return r;
  }
  r.value = std::move(ev);
  return r;
}

/// "%XX"-escapes everything outside RFC 3986's unreserved set (query values such as filters).
inline std::string url_encode(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 0xf];
    }
  }
  return out;
}

}  // namespace detail
}  // namespace amb
