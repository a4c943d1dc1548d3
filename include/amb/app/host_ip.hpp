// SPDX-License-Identifier: MIT
// Program layer: the host IP for bindings on all interfaces, from --ip, HOST_IP or the default route's address.
#pragma once

#include "amb/address.hpp"
#include "amb/detail/small_file.hpp"
#include "amb/host_address.hpp"
#include "amb/log.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <charconv>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace amb {

/// True for a numeric IPv4 or IPv6 address (names are refused: the ambassador must connect without DNS).
inline bool is_numeric_ip(const std::string& text) noexcept {
  in6_addr a6{};
  in_addr a4{};
  return ::inet_pton(AF_INET, text.c_str(), &a4) == 1 || ::inet_pton(AF_INET6, text.c_str(), &a6) == 1;
}

/// The interface named by the default IPv4 route in the text of /proc/net/route (lowest metric), or nullopt.
inline std::optional<std::string> default_route_interface(std::string_view proc_net_route) {
  // Whitespace-separated fields of one line.
  auto fields_of = [](std::string_view line) {
    std::vector<std::string_view> out;
    std::size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
      std::size_t start = i;
      while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r') ++i;
      if (i > start) out.push_back(line.substr(start, i - start));
    }
    return out;
  };
  std::optional<std::string> best;
  unsigned long best_metric = 0;
  bool header = true;  // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
  while (!proc_net_route.empty()) {
    const auto nl = proc_net_route.find('\n');
    const auto line = proc_net_route.substr(0, nl);
    proc_net_route.remove_prefix(nl == std::string_view::npos ? proc_net_route.size() : nl + 1);
    if (header) {
      header = false;
      continue;
    }
    const auto f = fields_of(line);
    if (f.size() < 8) continue;
    const auto iface = f[0], dest = f[1], flags = f[3], metric = f[6], mask = f[7];
    unsigned long flag_bits = 0, m = 0;
    std::from_chars(flags.data(), flags.data() + flags.size(), flag_bits, 16);
    std::from_chars(metric.data(), metric.data() + metric.size(), m);
    const bool up = flag_bits & 0x1;  // RTF_UP
    if (dest != "00000000" || mask != "00000000" || !up) continue;
    if (!best || m < best_metric) {
      best = std::string(iface);
      best_metric = m;
    }
  }
  return best;
}

/// The first IPv4 address of interface `iface` (getifaddrs), or nullopt.
inline std::optional<std::string> interface_ipv4(const std::string& iface) {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return std::nullopt;
  std::optional<std::string> out;
  for (auto* a = list; a; a = a->ifa_next) {
    if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET || iface != a->ifa_name) continue;
    char buf[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, buf, sizeof buf);
    out = buf;
    break;
  }
  ::freeifaddrs(list);
  return out;
}

/// The interface of the default route and its IPv4 address.
struct default_route_address_result {
  std::string address;  ///< numeric IPv4 address
  std::string iface;    ///< interface name
};

/// The address of the interface holding the default IPv4 route (/proc/net/route + getifaddrs), or nullopt.
inline std::optional<default_route_address_result> default_route_address() {
  std::string text;
  if (detail::read_small_file("/proc/net/route", text, 4 * 1024 * 1024)) return std::nullopt;
  auto iface = default_route_interface(text);
  if (!iface) return std::nullopt;
  auto ip = interface_ipv4(*iface);
  if (!ip) return std::nullopt;
  return default_route_address_result{*ip, *iface};
}

/// Chooses the address for "any" bindings: `flag` (--ip), then HOST_IP in `env` ("KEY=VALUE" strings),
/// then `default_route` (default_route_address() in programs; a function so tests can pass their own).
/// A non-numeric --ip or HOST_IP is an error naming it; no address at all is not (a binding on one
/// IP needs none), but `address` stays empty and the caller must refuse "any" bindings.
inline parsed<host_ip_policy> choose_host_ip_policy(
    const std::optional<std::string>& flag, const std::vector<std::string>& env,
    const std::function<std::optional<default_route_address_result>()>& default_route = default_route_address) {
  parsed<host_ip_policy> r;
  if (flag) {
    if (!is_numeric_ip(*flag)) {
      r.error = "bad --ip " + log::quoted(*flag) + ": expected a numeric IPv4 or IPv6 address";
      return r;
    }
    r.value = host_ip_policy{*flag, "--ip"};
    return r;
  }
  const std::string key = "HOST_IP=";
  for (const auto& kv : env) {
    if (kv.compare(0, key.size(), key) != 0 || kv.size() == key.size()) continue;
    auto v = kv.substr(key.size());
    if (!is_numeric_ip(v)) {
      r.error = "bad HOST_IP " + log::quoted(v) + ": expected a numeric IPv4 or IPv6 address";
      return r;
    }
    r.value = host_ip_policy{v, "HOST_IP"};
    return r;
  }
  if (auto d = default_route()) {
    r.value = host_ip_policy{d->address, "the address of " + d->iface + ", the interface of the default route"};
    return r;
  }
  r.value = host_ip_policy{"", "none: no --ip, no HOST_IP, no default route"};
  return r;
}

}  // namespace amb
