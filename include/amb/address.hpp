// SPDX-License-Identifier: MIT
// Addresses: "host:port", "[v6]:port", and endpoint URLs (http://, tcp://, unix:///path).
#pragma once

#include "amb/log.hpp"
#include "amb/parsed.hpp"

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace amb {

/// A TCP address: a host name or numeric address, and a port.
struct host_port {
  std::string host{};      ///< name or numeric address, IPv6 without brackets
  std::uint16_t port = 0;  ///< 1..65535
  /// "host:port", with brackets around an IPv6 address.
  std::string to_string() const {
    return host.find(':') != std::string::npos ? "[" + host + "]:" + std::to_string(port)
                                               : host + ":" + std::to_string(port);
  }
  friend bool operator==(const host_port&, const host_port&) = default;
};

/// Parses a decimal port 1..65535; an error for anything else ("", "0", "70000", "12a").
inline parsed<std::uint16_t> parse_port(std::string_view text) {
  parsed<std::uint16_t> r;
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value == 0 || value > 65535)
    r.error = "bad port \"" + std::string(text) + "\": expected 1..65535";
  else
    r.value = static_cast<std::uint16_t>(value);
  return r;
}

/// Parses "host:port" or "[v6addr]:port".
inline parsed<host_port> parse_host_port(std::string_view text) {
  parsed<host_port> r;
  const std::string quoted = log::quoted(text);
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) {
      r.error = "bad address " + quoted + ": missing ']'";
      return r;
    }
    host = text.substr(1, close - 1);
    if (close + 1 >= text.size() || text[close + 1] != ':') {
      r.error = "bad address " + quoted + ": expected [ADDRESS]:PORT";
      return r;
    }
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      r.error = "bad address " + quoted + ": expected HOST:PORT";
      return r;
    }
    host = text.substr(0, colon);
    if (host.find(':') != std::string_view::npos) {
      r.error = "bad address " + quoted + ": put an IPv6 address in brackets, as [::1]:6379";
      return r;
    }
    port = text.substr(colon + 1);
  }
  if (host.empty()) {
    r.error = "bad address " + quoted + ": empty host";
    return r;
  }
  // A stray bracket ("[[]:400", "a]:80") is no host; kept, it would print as an unparsable address.
  if (host.find_first_of("[]") != std::string_view::npos) {
    r.error = "bad address " + quoted + ": unexpected '[' or ']' in host";
    return r;
  }
  host_port hp;
  hp.host = std::string(host);
  if (auto p = parse_port(port)) {
    hp.port = *p;
  } else {
    r.error = "bad port " + log::quoted(port) + " in " + quoted;
    return r;
  }
  r.value = std::move(hp);
  return r;
}

/// Where an HTTP server listens: TCP (http:// or tcp://) or a unix domain socket (unix:///path).
struct endpoint {
  std::string unix_path{};  ///< non-empty for a unix domain socket
  host_port tcp{};          ///< used when unix_path is empty
  bool tls = false;         ///< https://: TCP with TLS (amb/tls_options.hpp)
  bool is_unix() const noexcept { return !unix_path.empty(); }
  /// "http://host:port", "https://host:port" or "unix:///path", as it appears in error messages.
  std::string to_string() const {
    return is_unix() ? "unix://" + unix_path : (tls ? "https://" : "http://") + tcp.to_string();
  }
  /// The value for the Host header: host:port, or "localhost" for a unix socket.
  std::string host_header() const { return is_unix() ? "localhost" : tcp.to_string(); }
  friend bool operator==(const endpoint&, const endpoint&) = default;
};

/// Parses "http://host:port", "https://host:port", "tcp://host:port", "unix:///path" or bare "host:port".
/// A trailing "/" after host:port is accepted. Whether https can be used depends on the build
/// (amb::tls_unsupported_error in amb/tls_options.hpp).
inline parsed<endpoint> parse_endpoint(std::string_view text) {
  parsed<endpoint> r;
  const std::string quoted = log::quoted(text);
  std::string_view rest = text;
  auto scheme_end = text.find("://");
  std::string_view scheme = scheme_end == std::string_view::npos ? "" : text.substr(0, scheme_end);
  if (scheme_end != std::string_view::npos) rest = text.substr(scheme_end + 3);
  endpoint ep;
  if (scheme == "unix") {
    if (rest.empty() || rest.front() != '/') {
      r.error = "bad address " + quoted + ": expected unix:///absolute/path";
      return r;
    }
    ep.unix_path = std::string(rest);
    r.value = std::move(ep);
    return r;
  }
  if (!scheme.empty() && scheme != "http" && scheme != "https" && scheme != "tcp") {
    r.error =
        "unsupported scheme " + log::quoted(scheme) + " in " + quoted + " (use http://, https://, tcp:// or unix://)";
    return r;
  }
  ep.tls = scheme == "https";
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos) {
    r.error = "bad address " + quoted + ": unexpected path";
    return r;
  }
  auto hp = parse_host_port(rest);
  if (!hp) {
    r.error = hp.error;
    if (rest != text) r.error += " in " + quoted;
    return r;
  }
  ep.tcp = *hp;
  r.value = std::move(ep);
  return r;
}

/// Parses a comma-separated list of endpoints ("http://a:2379,http://b:2379"); empty items are refused.
inline parsed<std::vector<endpoint>> parse_endpoint_list(std::string_view text) {
  parsed<std::vector<endpoint>> r;
  std::vector<endpoint> list;
  std::size_t start = 0;
  while (true) {
    auto comma = text.find(',', start);
    auto item = text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (item.empty()) {
      r.error = "bad endpoint list " + log::quoted(text) + ": empty item";
      return r;
    }
    auto ep = parse_endpoint(item);
    if (!ep) {
      r.error = ep.error;
      return r;
    }
    list.push_back(*ep);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  r.value = std::move(list);
  return r;
}

}  // namespace amb
