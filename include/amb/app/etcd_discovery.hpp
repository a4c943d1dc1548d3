// SPDX-License-Identifier: MIT
// Where etcd is: --etcd, then ETCDCTL_ENDPOINTS, then Docker-links of alias "etcd", then the default.
// --etcd also takes registrator's form, etcd://HOST:PORT/PREFIX, which names the registry prefix too.
#pragma once

#include "amb/address.hpp"
#include "amb/app/docker_links.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace amb {

/// The etcd endpoints a program should use, and where they came from.
struct etcd_endpoints {
  std::vector<endpoint> endpoints;      ///< at least one
  std::string source;                   ///< one line for the log, e.g. `etcd at http://a:2379 (from ETCDCTL_ENDPOINTS)`
  std::optional<std::string> prefix{};  ///< "/PREFIX" of --etcd etcd://HOST:PORT/PREFIX; nullopt without a path
};

/// Parses registrator's form of an etcd address, `etcd://HOST:PORT/PREFIX` (the path optional): one
/// plain-HTTP endpoint and the registry prefix ("/PREFIX", trailing '/' dropped; nullopt without one).
inline parsed<etcd_endpoints> parse_etcd_url(std::string_view text) {
  parsed<etcd_endpoints> r;
  constexpr std::string_view scheme = "etcd://";
  if (text.substr(0, scheme.size()) != scheme) {
    r.error = "bad etcd address " + log::quoted(text) + ": expected etcd://HOST:PORT/PREFIX";
    return r;
  }
  if (text.find(',') != std::string_view::npos) {
    r.error = "bad etcd address " + log::quoted(text) +
              ": etcd://HOST:PORT/PREFIX names one endpoint (for several, give http:// URLs and --prefix)";
    return r;
  }
  std::string_view rest = text.substr(scheme.size());
  const auto slash = rest.find('/');
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  auto hp = parse_host_port(rest.substr(0, slash));
  if (!hp) {
    r.error = hp.error + " in " + log::quoted(text);
    return r;
  }
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  etcd_endpoints e;
  endpoint ep;
  ep.tcp = *hp;
  e.endpoints.push_back(ep);
  if (!path.empty()) {
    if (path.find("//") != std::string_view::npos) {
      r.error = "bad etcd address " + log::quoted(text) + ": empty element in the prefix";
      return r;
    }
    e.prefix = std::string(path);
  }
  r.value = std::move(e);
  return r;
}

/// Chooses etcd's endpoints, first match wins (docs/design.md §4.2):
/// `flag` (the --etcd value, nullopt when not given; a URL list, or etcd://HOST:PORT/PREFIX, which sets
/// `prefix` too), then ETCDCTL_ENDPOINTS in `env`, then the
/// Docker-links variables of alias "etcd" (ETCD_PORT_<p>_TCP_ADDR/_PORT), then http://127.0.0.1:2379.
/// `env` holds "KEY=VALUE" strings (amb::environment_list() for the real one). A bad value is an
/// error naming its source, e.g. `bad port "x" in ETCD_PORT_10000_TCP_PORT`; it never falls through.
inline parsed<etcd_endpoints> find_etcd_endpoints(const std::optional<std::string>& flag,
                                                  const std::vector<std::string>& env) {
  parsed<etcd_endpoints> r;
  auto describe = [](const std::vector<endpoint>& list, const std::string& from) {
    std::string s = "etcd at ";
    for (std::size_t i = 0; i < list.size(); ++i) s += (i ? "," : "") + list[i].to_string();
    return s + " (from " + from + ")";
  };
  auto from_list = [&](std::string_view text, const std::string& from) {
    auto list = parse_endpoint_list(text);
    if (!list) {
      r.error = list.error + " in " + from;
      return;
    }
    r.value = etcd_endpoints{*list, describe(*list, from)};
  };
  if (flag && flag->rfind("etcd://", 0) == 0) {
    auto e = parse_etcd_url(*flag);
    if (!e) {
      r.error = e.error + " in --etcd";
      return r;
    }
    e.value->source = describe(e->endpoints, "--etcd " + log::escaped(*flag));
    return e;
  }
  if (flag) {
    from_list(*flag, "--etcd");
    return r;
  }
  const std::string key = "ETCDCTL_ENDPOINTS=";
  for (const auto& kv : env) {
    // An empty ETCDCTL_ENDPOINTS counts as unset, as a shell's `ETCDCTL_ENDPOINTS= prog` means.
    if (kv.compare(0, key.size(), key) == 0 && kv.size() > key.size()) {
      from_list(std::string_view(kv).substr(key.size()), "ETCDCTL_ENDPOINTS");
      return r;
    }
  }
  auto linked = link_address("etcd", env);
  if (!linked) {
    r.error = linked.error;
    return r;
  }
  if (*linked) {
    endpoint ep;
    ep.tcp = **linked;
    std::vector<endpoint> list{ep};
    r.value = etcd_endpoints{list, describe(list, "Docker link variables ETCD_PORT_*_TCP_ADDR/_PORT")};
    return r;
  }
  endpoint ep;
  ep.tcp = host_port{"127.0.0.1", 2379};
  std::vector<endpoint> list{ep};
  r.value = etcd_endpoints{list, describe(list, "default")};
  return r;
}

}  // namespace amb
