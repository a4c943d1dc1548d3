// SPDX-License-Identifier: MIT
// Docker-links environment variables (<ALIAS>_PORT_<p>_TCP_ADDR / _PORT), as the 2014 containers were wired.
#pragma once

#include "amb/log.hpp"
#include "amb/address.hpp"

#include <algorithm>
#include <cctype>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>
#include <unistd.h>  // environ

namespace amb {

/// Reads the whole process environment as "KEY=VALUE" strings.
inline std::vector<std::string> environment_list() {
  std::vector<std::string> out;
  for (char** e = ::environ; e && *e; ++e) out.emplace_back(*e);
  return out;
}

/// Finds the address Docker links published for `alias` (e.g. "etcd" or "etcd-amb"):
/// the lowest TCP port p with both <ALIAS>_PORT_<p>_TCP_ADDR and _PORT set, as Docker's
/// <ALIAS>_PORT variable names the first port. The alias is upper-cased and '-' becomes '_'
/// (moby's links.go). The value is nullopt when there is none; an error when variables exist but
/// hold a bad address or port (`bad port "x" in ETCD_PORT_10000_TCP_PORT`).
inline parsed<std::optional<host_port>> link_address(std::string_view alias, const std::vector<std::string>& env) {
  parsed<std::optional<host_port>> r;
  std::string prefix;
  for (char c : alias) prefix += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  prefix += "_PORT_";
  auto lookup = [&](const std::string& key) -> std::optional<std::string> {
    for (const auto& kv : env)
      if (kv.size() > key.size() && kv.compare(0, key.size(), key) == 0 && kv[key.size()] == '=')
        return kv.substr(key.size() + 1);
    return std::nullopt;
  };
  std::vector<std::uint16_t> ports;
  for (const auto& kv : env) {
    if (kv.compare(0, prefix.size(), prefix) != 0) continue;
    auto eq = kv.find('=');
    // An alias holding '=' can match the start of a whole "NAME=value": that is no variable name.
    if (eq != std::string::npos && eq < prefix.size()) continue;
    std::string_view name(kv.data(), eq == std::string::npos ? kv.size() : eq);
    name.remove_prefix(prefix.size());
    auto us = name.find('_');
    if (us == std::string_view::npos || name.substr(us) != "_TCP_ADDR") continue;
    if (auto p = parse_port(name.substr(0, us))) ports.push_back(*p);
  }
  std::sort(ports.begin(), ports.end());
  for (auto p : ports) {
    const std::string base = prefix + std::to_string(p) + "_TCP";
    auto addr = lookup(base + "_ADDR");
    auto port_text = lookup(base + "_PORT");
    if (!addr || !port_text) continue;
    host_port hp;
    hp.host = *addr;
    if (hp.host.empty()) {
      r.error = "bad address in " + base + "_ADDR: empty";
      return r;
    }
    if (auto p = parse_port(*port_text)) {
      hp.port = *p;
    } else {
      r.error = "bad port " + log::quoted(*port_text) + " in " + base + "_PORT";
      return r;
    }
    r.value = std::move(hp);
    return r;
  }
  r.value = std::optional<host_port>{};
  return r;
}

}  // namespace amb
