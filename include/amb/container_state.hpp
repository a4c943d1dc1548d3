// SPDX-License-Identifier: MIT
// What a registrar reads from a container besides its ports: whether its health check lets it be
// registered, whether the engine is stopping it, and which address to register (the host's published
// port or the container's own address on a container network).
#pragma once

#include "amb/detail/docker_json.hpp"
#include "amb/log.hpp"
#include "amb/parsed.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace amb {

/// What a container's health check decides.
enum class health_mode {
  gate,    ///< a container with a health check is registered only while it is healthy (the default)
  ignore,  ///< health checks are not looked at: registered while it runs, as before health gating
};

/// A container's health as the registrar reads it (State.Health.Status, docs/protocols.md §2.4).
enum class health_state {
  none,       ///< no health check ("" or Docker's "none")
  starting,   ///< checks have not passed yet
  healthy,    ///< the last checks passed
  unhealthy,  ///< the checks failed as often as the container allows
  unknown,    ///< a status amb does not know: logged once and treated as none
};

/// Reads State.Health.Status.
inline health_state read_health(std::string_view status) noexcept {
  if (status.empty() || status == "none") return health_state::none;
  if (status == "starting") return health_state::starting;
  if (status == "healthy") return health_state::healthy;
  if (status == "unhealthy") return health_state::unhealthy;
  return health_state::unknown;
}

/// Parses --health: "gate" or "ignore".
inline parsed<health_mode> parse_health_mode(std::string_view text) {
  parsed<health_mode> r;
  if (text == "gate")
    r.value = health_mode::gate;
  else if (text == "ignore")
    r.value = health_mode::ignore;
  else
    r.error = "bad health mode " + log::quoted(text) + " (use gate or ignore)";
  return r;
}

/// Which address a registration names.
struct address_mode {
  bool container = false;  ///< false: host IP + published port; true: the container's own IP + private port
  std::string network{};   ///< with container: the network to take the IP from ("" = the container's only one)
  friend bool operator==(const address_mode&, const address_mode&) = default;
};

/// Parses "published", "container" or "container:NETWORK" (--address, SERVICE_ADDRESS).
inline parsed<address_mode> parse_address_mode(std::string_view text) {
  parsed<address_mode> r;
  if (text == "published") {
    r.value = address_mode{};
  } else if (text == "container") {
    r.value = address_mode{true, ""};
  } else if (text.substr(0, 10) == "container:" && text.size() > 10) {
    r.value = address_mode{true, std::string(text.substr(10))};
  } else {
    r.error = "bad address mode " + log::quoted(text) + " (use published, container or container:NETWORK)";
  }
  return r;
}

/// The address mode for container `c`: its SERVICE_ADDRESS (label, else env) overrides `flag`.
/// The error names the container and the bad value.
inline parsed<address_mode> container_address_mode(const container_info& c, const address_mode& flag) {
  std::optional<std::string> own;
  if (auto l = c.labels.find("SERVICE_ADDRESS"); l != c.labels.end())
    own = l->second;
  else
    own = c.env_value("SERVICE_ADDRESS");
  if (!own) return parsed<address_mode>{flag, {}};
  auto m = parse_address_mode(*own);
  if (!m) m.error = "container " + log::quoted(c.name) + ": SERVICE_ADDRESS: " + m.error;
  return m;
}

/// The container's own IP on `network` (or on its only network when `network` is ""); the error says
/// why there is none, naming the networks it is on.
inline parsed<std::string> container_ip(const container_info& c, const std::string& network) {
  parsed<std::string> r;
  const std::string who = "container " + log::quoted(c.name);
  std::string names;
  for (const auto& [name, ip] : c.networks) names += (names.empty() ? "" : ", ") + log::escaped(name, 60);
  if (!network.empty()) {
    auto it = c.networks.find(network);
    if (it == c.networks.end())
      r.error = who + " is not on network " + log::quoted(network) +
                (names.empty() ? std::string(" (it is on none)") : " (it is on " + names + ")");
    else if (it->second.empty())
      r.error = who + " has no address of its own on network " + log::quoted(network);
    else
      r.value = it->second;
    return r;
  }
  if (c.networks.size() == 1 && !c.networks.begin()->second.empty())
    r.value = c.networks.begin()->second;
  else if (c.networks.size() > 1)
    r.error = who + " is on several networks (" + names + "): name one with --address container:NETWORK";
  else
    r.error = who + " has no address of its own on a container network" +
              (names.empty() ? std::string() : " (it is on " + names + ")");
  return r;
}

/// True when `ev` announces that the engine is stopping the container: `stop`, or `kill` with a signal
/// that ends it. Docker sends `kill` with the stop signal at the start of `docker stop`'s grace period
/// and names it in the `signal` attribute; podman 4.3.1 names no signal, so any `kill` counts
/// (docs/protocols.md §2.5). A kill with a signal that usually asks for something else (HUP to reload,
/// USR1...) is not a stop.
inline bool is_stop_announcement(const docker_event& ev) {
  if (ev.type != "container") return false;
  if (ev.action == "stop") return true;
  if (ev.action != "kill") return false;
  auto s = ev.attributes.find("signal");
  if (s == ev.attributes.end()) return true;
  std::string_view sig = s->second;
  if (sig.substr(0, 3) == "SIG") sig.remove_prefix(3);
  for (std::string_view stopping : {"15", "9", "2", "3", "TERM", "KILL", "INT", "QUIT"})
    if (sig == stopping) return true;
  return false;
}

/// How long a draining mark holds while the container still runs: its stop timeout (Config.StopTimeout,
/// else the engines' default of 10 s) and 5 s more. A stop cannot last longer (the engine kills the
/// container then); a container still running after that was not being stopped (a podman `kill` with a
/// signal that does not end it: podman's event does not name the signal), so the mark is withdrawn.
inline std::chrono::milliseconds drain_limit(const container_info& c) {
  const std::int64_t seconds = c.stop_timeout >= 0 ? c.stop_timeout : 10;
  return std::chrono::seconds(seconds + 5);
}

/// True for the container actions Docker and podman are known to send (docs/protocols.md §2.5); a
/// registrar logs any other one once and ignores it.
inline bool is_known_container_action(std::string_view action) noexcept {
  if (action.substr(0, 13) == "health_status" || action.substr(0, 5) == "exec_") return true;
  for (std::string_view a : {"attach", "checkpoint", "cleanup", "commit", "copy",    "create",  "destroy", "detach",
                             "die",    "exec",       "export",  "import", "init",    "kill",    "mount",   "oom",
                             "pause",  "prune",      "refresh", "remove", "rename",  "resize",  "restart", "restore",
                             "start",  "stop",       "sync",    "top",    "unmount", "unpause", "update",  "wait"})
    if (action == a) return true;
  return false;
}

namespace detail {

/// Says something once per distinct name (an unknown event or health status), remembering at most
/// `limit` names, so an engine that sends endless new names cannot grow memory or flood the log.
class say_once {
public:
  explicit say_once(std::size_t limit = 32) : limit_(limit) {}
  /// True the first time `name` is seen (while fewer than `limit` names are remembered).
  bool first(std::string_view name) {
    if (seen_.size() >= limit_ || seen_.count(std::string(name))) return false;
    seen_.insert(std::string(name));
    return true;
  }

private:
  std::size_t limit_;
  std::set<std::string> seen_;
};

}  // namespace detail
}  // namespace amb
