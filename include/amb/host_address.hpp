// SPDX-License-Identifier: MIT
// Which host IP a registrar writes: the binding's own IP, else the address a host_ip_policy holds
// (the programs choose it from --ip, HOST_IP or the default route: amb/app/host_ip.hpp).
#pragma once

#include "amb/log.hpp"
#include "amb/address.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace amb {

/// True when a published binding's HostIp means "all interfaces": "" (podman), "0.0.0.0", "::".
inline bool is_any_address(std::string_view ip) noexcept { return ip.empty() || ip == "0.0.0.0" || ip == "::"; }

/// True for a loopback address (127.0.0.0/8, ::1): registering it works only for ambassadors on this host.
inline bool is_loopback_address(std::string_view ip) noexcept { return ip.substr(0, 4) == "127." || ip == "::1"; }

/// Where the "any" host IP comes from, decided once at start-up.
struct host_ip_policy {
  std::string address{};  ///< numeric address used for bindings on all interfaces ("" = none could be found)
  std::string source{};   ///< for the one log line, e.g. "--ip", "HOST_IP", "default route (eth0)"
};

/// The host IP to register for `binding_ip`: the binding's own address unless it is "any",
/// else the policy's address (nullopt when there is none).
inline std::optional<std::string> registered_host_ip(std::string_view binding_ip, const host_ip_policy& policy) {
  if (!is_any_address(binding_ip)) return std::string(binding_ip);
  if (policy.address.empty()) return std::nullopt;
  return policy.address;
}

}  // namespace amb
