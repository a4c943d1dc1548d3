// SPDX-License-Identifier: MIT
// Where etcd is: --etcd, then ETCDCTL_ENDPOINTS, then Docker-links of alias "etcd", then the default.
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
  std::vector<endpoint> endpoints;  ///< at least one
  std::string source;               ///< one line for the log, e.g. `etcd at http://a:2379 (from ETCDCTL_ENDPOINTS)`
};

/// Chooses etcd's endpoints, first match wins (docs/design.md §4.2):
/// `flag` (the --etcd value, nullopt when not given), then ETCDCTL_ENDPOINTS in `env`, then the
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
  std::string link_error;
  if (auto hp = link_address("etcd", env, &link_error)) {
    endpoint ep;
    ep.tcp = *hp;
    std::vector<endpoint> list{ep};
    r.value = etcd_endpoints{list, describe(list, "Docker link variables ETCD_PORT_*_TCP_ADDR/_PORT")};
    return r;
  }
  if (!link_error.empty()) {
    r.error = link_error;
    return r;
  }
  endpoint ep;
  ep.tcp = host_port{"127.0.0.1", 2379};
  std::vector<endpoint> list{ep};
  r.value = etcd_endpoints{list, describe(list, "default")};
  return r;
}

}  // namespace amb
