// SPDX-License-Identifier: MIT
// The registrar's logic: follow one container (seed mode) or all of them (automatic mode) through the
// Engine API and keep the registry in step, through a sink (in the program: an etcd_lease_keeper).
#pragma once

#include "amb/container_state.hpp"
#include "amb/detail/async.hpp"
#include "amb/docker_client.hpp"
#include "amb/host_address.hpp"
#include "amb/log.hpp"
#include "amb/registry_value.hpp"

#include "amb/detail/asio.hpp"

#include <algorithm>
#include <chrono>
#include <charconv>
#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace amb {

/// Where registrations go: set a key to a value, erase a key (an etcd_registrar's lease keeper). The
/// followers do not log "registered": only the sink knows when a key has reached the registry.
struct registration_sink {
  std::function<asio::awaitable<void>(std::string key, std::string value)> set;  ///< (re)write key = value
  std::function<asio::awaitable<void>(std::string key)> erase;                   ///< delete key
};

/// The form of a registry value.
enum class value_format {
  json,      ///< the seed's {"host":"10.0.0.5","port":49155} plus extra fields
  hostport,  ///< "10.0.0.5:49155", what registrator writes
};

/// What both modes share.
struct registrar_options {
  std::string prefix = "/services";          ///< keys are <prefix>/<service>/<instance>
  value_format format = value_format::json;  ///< value form
  std::chrono::milliseconds resync{30000};   ///< full re-read of the engine, in case an event was missed
  std::chrono::milliseconds retry{1000};     ///< wait after the engine failed to answer
  host_ip_policy host_ip{};                  ///< the address for bindings on all interfaces
  health_mode health = health_mode::gate;    ///< whether a health check decides when a container is registered
  address_mode address{};                    ///< published port (default) or the container's own address
  /// A key removed because its container became unhealthy is written again no sooner than this after
  /// the removal: a container whose health flaps costs at most one put and one delete per interval.
  std::chrono::milliseconds health_holddown{1000};
  /// A container is inspected again this long after each health_status event, as well as at once:
  /// under load podman can deliver the event before its inspect shows the status that check set, and
  /// with no further event the stale answer would stand until the next resync.
  std::chrono::milliseconds health_recheck{1000};
};

/// What a registration says besides where the service is (JSON form only).
struct registration_state {
  std::string health{};   ///< "healthy" when registered because its health check passed; "" without one
  bool draining = false;  ///< the engine is stopping the container: send it no new connections
};

/// The value for host:port with `extra` fields, in `format`. The JSON form adds "health" and
/// "draining":true from `state`; those two names belong to the registrar, so extra fields with them
/// are dropped. The hostport form has room for neither.
inline std::string format_registration(value_format format, const std::string& host, std::uint16_t port,
                                       const std::vector<std::pair<std::string, std::string>>& extra,
                                       const registration_state& state = {}) {
  if (format == value_format::hostport) return format_registry_hostport(host, port);
  std::vector<std::pair<std::string, std::string>> fields;
  for (const auto& f : extra)
    if (f.first != "health" && f.first != "draining") fields.push_back(f);
  std::string v = format_registry_json(host, port, fields);
  v.pop_back();  // the closing brace
  if (!state.health.empty()) v += ",\"health\":" + detail::json_quote(state.health);
  if (state.draining) v += ",\"draining\":true";
  return v + "}";
}

/// True when `value` (as format_registration wrote it) is marked draining. Inside a JSON string a quote
/// is always escaped, so the unescaped text below can only be the field itself.
inline bool is_draining_value(std::string_view value) noexcept {
  return value.find(",\"draining\":true") != std::string_view::npos;
}

/// `value` (as format_registration wrote it in JSON form) marked draining, for the moment the engine
/// says it is stopping the container: no engine call stands between the event and the write.
inline std::string draining_value(std::string value) {
  if (is_draining_value(value) || value.empty() || value.back() != '}') return value;
  value.pop_back();
  return value + ",\"draining\":true}";
}

/// The binding to register among a port's bindings: the first with a specific IPv4 address, else the
/// first on all interfaces, else the first (Docker lists 0.0.0.0 and :: for the same port).
inline port_binding pick_binding(const std::vector<port_binding>& bindings) {
  for (const auto& b : bindings)
    if (!is_any_address(b.host_ip) && b.host_ip.find(':') == std::string::npos) return b;
  for (const auto& b : bindings)
    if (is_any_address(b.host_ip)) return b;
  return bindings.front();
}

/// The ports `c` publishes, for a line saying it does not publish the one asked for: "it publishes
/// 443/tcp, 8080/tcp" (by number), or "it publishes no port".
inline std::string published_ports(const container_info& c) {
  std::vector<std::pair<unsigned, std::string>> ports;
  for (const auto& [name, bindings] : c.ports) {
    if (bindings.empty()) continue;  // exposed, not published
    unsigned number = 0;
    std::from_chars(name.data(), name.data() + name.size(), number);
    ports.emplace_back(number, name);
  }
  if (ports.empty()) return "it publishes no port";
  std::sort(ports.begin(), ports.end());
  std::string out = "it publishes ";
  for (std::size_t i = 0; i < ports.size(); ++i) out += (i ? ", " : "") + log::escaped(ports[i].second, 40);
  return out;
}

namespace detail {

/// A wake-up flag for one waiting coroutine: notify() ends the current or the next wait early.
class wakeup {
public:
  explicit wakeup(asio::any_io_executor ex) : timer_(std::move(ex)) {}
  /// Ends the current wait, or the next one if no one waits now.
  void notify() {
    pending_ = true;
    timer_.cancel();
  }
  /// Waits until notify() or `d` passes.
  asio::awaitable<void> wait_for(std::chrono::steady_clock::duration d) {
    if (!pending_) {
      timer_.expires_after(d);
      co_await timer_.async_wait(use_nothrow_awaitable);
    }
    pending_ = false;
  }

private:
  asio::steady_timer timer_;
  bool pending_ = false;
};

/// Unix time now, in seconds (for the first `since=` of the events stream).
inline std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

/// Follows the engine's /events forever from `since`: on_event for each container event; on a
/// broken or ended stream, pings until the engine answers, calls on_reconnect (a resync: the gap may
/// hide events) and streams again from the last event's time, so nothing is missed (duplicates are
/// harmless to an idempotent follower). Logs one line when the stream breaks and one when it is back.
/// A stream that breaks again within 10 s of opening while the engine still answers pings (an engine
/// or socket proxy that breaks only /events) is retried with a doubling wait, up to 8 s, so such a
/// fault costs a few lines a minute rather than two a second.
inline asio::awaitable<void> follow_events(docker_client& docker, std::int64_t since,
                                           std::function<void(const docker_event&)> on_event,
                                           std::function<void()> on_reconnect, std::chrono::milliseconds retry) {
  using clock = std::chrono::steady_clock;
  constexpr std::chrono::milliseconds max_wait{8000};
  constexpr std::chrono::seconds short_lived{10};
  bool broken = false;
  auto wait = retry;
  say_once unknown;  // events no engine is known to send: one line per name, then silence
  for (;;) {
    std::optional<clock::time_point> opened;  // set once the stream is being opened (the engine answered)
    try {
      if (broken) {
        co_await docker.ping();
        log::info("events stream at ", docker.server().to_string(), " back; resuming from time ", since);
        broken = false;
        on_reconnect();
      }
      std::function<void(const docker_event&)> handler = [&](const docker_event& ev) {
        if (ev.time > since) since = ev.time;
        if (ev.type != "container" || !is_known_container_action(ev.action)) {
          if (unknown.first(ev.type + " " + ev.action))
            log::info("ignoring the engine's event ", log::quoted(ev.action, 40), " (type ", log::quoted(ev.type, 40),
                      "): not one amb knows; said once");
          return;
        }
        on_event(ev);
      };
      opened = clock::now();
      co_await docker.events(since, handler);
      log::warn("events stream at ", docker.server().to_string(), " ended; reconnecting");
      broken = true;
    } catch (const std::exception& e) {
      if (!broken)
        log::warn("events stream: ", e.what(), "; reconnecting (every ", log::duration(retry), ", up to ",
                  log::duration(max_wait), " while it keeps failing)");
      broken = true;
    }
    if (opened) wait = clock::now() - *opened < short_lived ? std::min(wait * 2, max_wait) : retry;
    co_await sleep_for(wait);
  }
}

/// Says (at debug level) that the engine announced a stop of `who`, and how long after the engine's own
/// time of the event it arrived: the engine's delivery, which the registrar cannot shorten (podman 4.3.1
/// delivers events up to 250 ms late: docs/protocols.md §2.5), apart from the registrar's own share.
inline void note_stop_announcement(const docker_event& ev, const std::string& who) {
  if (!log::enabled(log::level::debug)) return;
  std::string delay;
  if (ev.time_nano > 0) {
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    const auto late =
        std::chrono::nanoseconds(std::chrono::duration_cast<std::chrono::nanoseconds>(now).count() - ev.time_nano);
    delay = ", " +
            log::duration(std::max(std::chrono::round<std::chrono::milliseconds>(late), std::chrono::milliseconds(0))) +
            " after the engine's time of the event";
  }
  log::debug("stop announced for ", who, " (", log::quoted(ev.action, 40), " event", delay, ")");
}

/// co_spawn completion: a follower coroutine never ends with an exception unnoticed.
inline void log_if_failed(std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    log::error("internal: ", ex.what());
  }
}

}  // namespace detail

/// Seed mode: what to register for one container.
struct seed_config {
  std::string container{};                                   ///< name or id, as given; also the instance id
  std::uint16_t private_port = 0;                            ///< the container's port (tcp)
  std::string service{};                                     ///< service name
  std::vector<std::pair<std::string, std::string>> extra{};  ///< KEY=VALUE fields for the JSON value
  bool exit_with_container = false;  ///< return when the container is removed (or absent at start)
};

/// Seed mode: keeps <prefix>/<service>/<container> in step with one container's life. Stop/die →
/// erased at once; start (maybe on a new host port) → written again; removed → erased and, with
/// exit_with_container, run() returns 0. With health gating a container that has a health check is
/// written only while healthy (unhealthy → erased at once, written again when healthy, no sooner than
/// health_holddown after). The engine's kill/stop event rewrites the value as draining at once.
/// Engine outages keep the last registration.
class seed_follower {
public:
  /// `api` serves inspect calls, `events` the events stream (two clients: each has one connection).
  seed_follower(docker_client& api, docker_client& events, registration_sink sink, registrar_options options,
                seed_config config)
      : api_(api),
        events_(events),
        sink_(std::move(sink)),
        options_(std::move(options)),
        config_(std::move(config)),
        key_(options_.prefix + "/" + config_.service + "/" + config_.container),
        wake_(api.executor()) {}

  /// The registry key this follower owns.
  const std::string& key() const { return key_; }
  /// The value now registered (nullopt when none).
  const std::optional<std::string>& current() const { return current_; }

  /// Follows the container. Returns only with exit_with_container: 0 when the container was removed,
  /// 1 when it is absent or does not publish the port at start.
  asio::awaitable<int> run() {
    auto ex = co_await asio::this_coro::executor;
    asio::co_spawn(ex,
                   detail::follow_events(
                       events_, detail::unix_now() - 1, [this](const docker_event& ev) { on_event(ev); },
                       [this] { wake_.notify(); }, options_.retry),
                   detail::log_if_failed);
    for (bool first = true;; first = false) {
      if (auto code = co_await reconcile(first)) co_return *code;
      co_await wake_.wait_for(next_wait());
    }
  }

private:
  using clock = std::chrono::steady_clock;

  bool ours(const docker_event& ev) const {
    if (!id_.empty() && ev.id == id_) return true;
    auto name = ev.attributes.find("name");
    if (name != ev.attributes.end() && name->second == config_.container) return true;
    return config_.container.size() >= 6 && ev.id.rfind(config_.container, 0) == 0;  // an id prefix
  }

  // Until the next look: the resync (or the retry while the engine fails), or the end of a hold-down.
  clock::duration next_wait() const {
    clock::duration d = engine_failing_ ? options_.retry : options_.resync;
    if (drain_until_) d = std::min<clock::duration>(d, std::max<clock::duration>(*drain_until_ - clock::now(), {}));
    if (holddown_until_)
      d = std::min<clock::duration>(d, std::max<clock::duration>(*holddown_until_ - clock::now(), {}));
    if (recheck_at_) d = std::min<clock::duration>(d, std::max<clock::duration>(*recheck_at_ - clock::now(), {}));
    return d;
  }

  void on_event(const docker_event& ev) {
    if (ev.type != "container" || !is_lifecycle_action(ev.action) || !ours(ev)) return;
    log::debug("event ", ev.action, " for container \"", config_.container, "\"");
    if (is_health_event(ev.action)) recheck_at_ = clock::now() + options_.health_recheck;
    if (is_stop_announcement(ev) && started_at_) {
      detail::note_stop_announcement(ev, "container " + log::quoted(config_.container));
      stopping_run_ = started_at_;  // this run of the container is ending; a later start is a new one
      announced_at_ = clock::now();
      drain_now_ = true;
    }
    wake_.notify();
  }

  // One line per change of state (not per resync, nor per "stopping" then "exited").
  void say(log::level level, const std::string& state, const std::string& line) {
    if (state == last_state_) return;
    last_state_ = state;
    if (!line.empty()) log::write(level, line);
  }

  // The engine is stopping the container: mark the registered value draining before anything else,
  // without asking the engine again (the value was right a moment ago; only the draining mark is new).
  asio::awaitable<void> drain() {
    drain_now_ = false;
    if (!current_ || is_draining_value(*current_)) co_return;
    if (options_.format == value_format::json) {
      const std::string value = draining_value(*current_);
      co_await sink_.set(key_, value);  // the sink says "draining" once it is in the registry
      current_ = value;
      last_state_ = "registered " + key_ + " = " + value;
    } else {
      co_await sink_.erase(key_);
      current_.reset();
      say(log::level::info, "draining",
          "container " + log::quoted(config_.container) + " is being stopped: " + key_ +
              " removed (the hostport form has no draining field)");
    }
  }

  // Reads the container and writes or erases the key. Returns an exit code when the follower should end.
  asio::awaitable<std::optional<int>> reconcile(bool first) {
    if (drain_now_) co_await drain();
    if (recheck_at_ && clock::now() >= *recheck_at_) recheck_at_.reset();
    const std::string who = "container " + log::quoted(config_.container);
    const std::string port = std::to_string(config_.private_port) + "/tcp";
    const std::string waiting = config_.exit_with_container ? "" : "; waiting for it";
    std::optional<std::string> value;
    bool gone = false, unpublished = false, unhealthy = false;
    std::string line, state;
    log::level level = log::level::info;
    try {
      auto info = co_await api_.inspect(config_.container);
      engine_failing_ = false;
      id_ = info.id;
      seen_ = true;
      started_at_ = info.started_at;
      const auto mode = container_address_mode(info, options_.address);
      const auto health = read_health(info.health);
      const bool gated = options_.health == health_mode::gate;
      std::optional<std::string> host;
      std::uint16_t host_port = config_.private_port;
      if (health == health_state::unknown && unknown_health_.first(info.health))
        log::warn(who, " reports health status ", log::quoted(info.health, 40),
                  ", which amb does not know: ignored (registered as without a health check); said once");
      if (!info.running) {
        state = "stopped";
        line = who + " is not running (" + (info.status.empty() ? "stopped" : info.status) + "): " + key_ + " removed" +
               waiting;
      } else if (!mode) {
        state = "bad address mode";
        level = log::level::warn;
        line = mode.error + waiting;
      } else if (mode->container) {
        auto ip = container_ip(info, mode->network);
        if (ip) {
          host = *ip;
        } else {
          state = "no container address";
          level = log::level::warn;
          line = ip.error + waiting;
        }
      } else if (auto bindings = info.bindings(config_.private_port); bindings.empty()) {
        unpublished = true;
        state = "unpublished";
        level = log::level::warn;
        line = who + " does not publish port " + port + " (" + published_ports(info) + ")" + waiting;
      } else {
        auto b = pick_binding(bindings);
        host = registered_host_ip(b.host_ip, options_.host_ip);
        host_port = b.host_port;
        if (!host) {
          level = log::level::error;
          state = "no host IP";
          line = who + " publishes port " + port + " on all interfaces and no host IP is known (" +
                 options_.host_ip.source + "): give --ip ADDR or HOST_IP";
        }
      }
      if (host && gated && health == health_state::starting) {
        state = "starting";
        line = who + " is starting: not registered until its health check passes";
      } else if (host && gated && health == health_state::unhealthy) {
        unhealthy = true;
        state = "unhealthy";
        level = log::level::warn;
        line = who + " is unhealthy: " + (current_ ? key_ + " removed" : std::string("not registered")) +
               " until its health check passes again";
      } else if (host) {
        registration_state rs;
        if (gated && health == health_state::healthy) rs.health = "healthy";
        rs.draining = stopping_run_ && *stopping_run_ == info.started_at;
        drain_until_.reset();
        if (rs.draining && clock::now() >= announced_at_ + drain_limit(info)) {
          log::info(who, " still runs ", log::duration(drain_limit(info)),
                    " after the engine announced its stop: not being stopped after all; draining withdrawn");
          stopping_run_.reset();
          rs.draining = false;
        } else if (rs.draining) {
          drain_until_ = announced_at_ + drain_limit(info);  // run() looks again then
        }
        if (rs.draining && options_.format == value_format::hostport) {
          state = "draining";  // the hostport form cannot say it: the key stays away until the container exits
        } else {
          value = format_registration(options_.format, *host, host_port, config_.extra, rs);
          // No line here: the sink says "registered" once the key really is in the registry.
          state = "registered " + key_ + " = " + *value;
        }
      }
    } catch (const std::system_error& e) {
      if (e.code() != errc::no_such_container) {
        // The engine is away: the container most likely still runs, so keep what is registered.
        if (!engine_failing_)
          log::warn(e.what(), "; keeping the registration, retrying every ", log::duration(options_.retry));
        engine_failing_ = true;
        last_state_.clear();
        co_return std::nullopt;
      }
      engine_failing_ = false;
      gone = true;
      state = "gone";
      level = seen_ ? log::level::info : log::level::warn;
      line = std::string(e.what()) + (seen_ ? " (removed)" : "") + waiting;
    }
    if (value) {
      if (value != current_) {
        // Back after an unhealthy spell: not before the hold-down ends (run() wakes up then).
        if (!current_ && holddown_until_ && clock::now() < *holddown_until_) co_return std::nullopt;
        co_await sink_.set(key_, *value);
        current_ = value;
        holddown_until_.reset();
      }
    } else if (current_) {
      co_await sink_.erase(key_);
      current_.reset();
      if (unhealthy) holddown_until_ = clock::now() + options_.health_holddown;
    }
    if (config_.exit_with_container && (gone || (unpublished && first))) {
      if (gone && seen_) {
        log::info(who, " was removed; exiting (--exit-with-container)");
        co_return 0;
      }
      log::error(line, "; exiting (--exit-with-container)");
      co_return 1;
    }
    say(level, state, line);
    co_return std::nullopt;
  }

  docker_client& api_;
  docker_client& events_;
  registration_sink sink_;
  registrar_options options_;
  seed_config config_;
  std::string key_;
  detail::wakeup wake_;
  std::string id_;
  bool seen_ = false;
  bool engine_failing_ = false;
  std::optional<std::string> current_;
  std::string last_state_;
  std::optional<std::string> started_at_;            // State.StartedAt at the last look: which run is current
  std::optional<std::string> stopping_run_;          // the run the engine announced it is stopping
  clock::time_point announced_at_{};                 // when that stop was announced
  std::optional<clock::time_point> drain_until_;     // when the draining mark of a container still running ends
  bool drain_now_ = false;                           // a stop was announced: mark draining before anything else
  std::optional<clock::time_point> holddown_until_;  // no re-registration before this (after an unhealthy spell)
  std::optional<clock::time_point> recheck_at_;      // inspect again then (after a health_status event)
  detail::say_once unknown_health_;
};

/// Automatic mode: naming rules beyond the shared options.
struct auto_config {
  std::string hostname{};      ///< first part of instance ids <host>:<container>:<port>
  bool explicit_only = false;  ///< register only ports whose container names a service (SERVICE_NAME...)
};

/// One registration computed for a container's published port.
struct auto_entry {
  std::string service;   ///< service name
  std::string instance;  ///< <host>:<container>:<port>
  std::string key;       ///< <prefix>/<service>/<instance>
  std::string value;     ///< registry value
};

/// What automatic mode registers for one container, and why it skipped what it skipped.
struct auto_plan {
  std::vector<auto_entry> entries;   ///< registrations
  std::vector<std::string> skipped;  ///< one reason per skipped port or container
  std::vector<std::string> notes;    ///< remarks on what is registered (a loopback address)
  /// Set when health gating withholds the container (starting or unhealthy): nothing is registered.
  std::optional<health_state> withheld;
};

/// The image's base name: "localhost/redis:7" → "redis" (path's last element, no tag or digest).
inline std::string image_base_name(std::string_view image) {
  if (auto at = image.find('@'); at != std::string_view::npos) image = image.substr(0, at);
  if (auto slash = image.rfind('/'); slash != std::string_view::npos) image = image.substr(slash + 1);
  if (auto colon = image.find(':'); colon != std::string_view::npos) image = image.substr(0, colon);
  return std::string(image);
}

/// Automatic mode's rules (registrator's, for TCP): for each published tcp port P of a running
/// container, metadata SERVICE_<P>_<KEY> wins over SERVICE_<KEY>, labels over env. SERVICE_IGNORE
/// skips; the service is SERVICE_<P>_NAME, SERVICE_NAME, else the image's base name (+"-P" when
/// several ports are published); with explicit_only a port without a name is skipped. Other
/// SERVICE_* metadata become lower-case extra fields of the JSON value (SERVICE_WEIGHT → "weight").
/// SERVICE_ADDRESS (label or env) overrides options.address: with the container's own address every
/// tcp port it exposes or publishes is registered at its private port. With health gating a container
/// that is starting or unhealthy is withheld; `draining` marks the values (the engine is stopping it).
inline auto_plan plan_container(const container_info& c, const registrar_options& options, const auto_config& config,
                                bool draining = false) {
  auto_plan plan;
  const std::string who = "container " + log::quoted(c.name);
  if (!c.running) {
    plan.skipped.push_back(who + " is not running");
    return plan;
  }
  const auto mode = container_address_mode(c, options.address);
  if (!mode) {
    plan.skipped.push_back(mode.error);
    return plan;
  }
  const auto health = read_health(c.health);
  const bool gated = options.health == health_mode::gate;
  if (gated && (health == health_state::starting || health == health_state::unhealthy)) {
    plan.withheld = health;
    return plan;
  }
  std::optional<std::string> own_ip;  // the container's own address, with address mode container
  if (mode->container) {
    auto ip = container_ip(c, mode->network);
    if (!ip) {
      plan.skipped.push_back(ip.error);
      return plan;
    }
    own_ip = *ip;
  }
  if (draining && options.format == value_format::hostport) return plan;  // it cannot say draining: no key
  registration_state state;
  if (gated && health == health_state::healthy) state.health = "healthy";
  state.draining = draining;
  // Metadata for port P: labels override env, port-specific keys override general ones.
  auto meta = [&](const std::string& p) {
    std::map<std::string, std::string> general, specific;
    auto take = [&](const std::string& k, const std::string& v) {
      if (k.rfind("SERVICE_", 0) != 0 || k.size() <= 8) return;
      std::string rest = k.substr(8);
      if (rest.rfind(p + "_", 0) == 0 && rest.size() > p.size() + 1) {
        specific[rest.substr(p.size() + 1)] = v;
        return;
      }
      if (!rest.empty() && rest[0] >= '0' && rest[0] <= '9') return;  // another port's key
      general[rest] = v;
    };
    for (const auto& kv : c.env) {
      auto eq = kv.find('=');
      if (eq != std::string::npos) take(kv.substr(0, eq), kv.substr(eq + 1));
    }
    for (const auto& [k, v] : c.labels) take(k, v);
    for (const auto& [k, v] : specific) general[k] = v;
    return std::make_pair(general, specific.count("NAME") > 0);
  };
  std::vector<std::pair<std::uint16_t, std::vector<port_binding>>> published;
  for (const auto& [key, bindings] : c.ports) {
    auto slash = key.find('/');
    if (slash == std::string::npos || key.substr(slash + 1) != "tcp") continue;
    auto p = parse_port(key.substr(0, slash));
    if (p && (own_ip || !bindings.empty())) published.emplace_back(*p, bindings);
  }
  std::sort(published.begin(), published.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  if (published.empty()) plan.skipped.push_back(who + (own_ip ? " exposes no tcp port" : " publishes no tcp port"));
  for (const auto& [p, bindings] : published) {
    const std::string ps = std::to_string(p);
    auto [m, port_named] = meta(ps);
    if (m.count("IGNORE") && !m["IGNORE"].empty()) {
      plan.skipped.push_back(who + " port " + ps + ": SERVICE_IGNORE is set");
      continue;
    }
    std::string service;
    if (m.count("NAME") && !m["NAME"].empty()) {
      service = m["NAME"];
    } else if (config.explicit_only) {
      plan.skipped.push_back(who + " port " + ps + ": no SERVICE_NAME (--explicit)");
      continue;
    } else {
      service = image_base_name(c.image);
      if (published.size() > 1) service += "-" + ps;
    }
    (void)port_named;
    if (service.empty() || service.find('/') != std::string::npos) {
      plan.skipped.push_back(who + " port " + ps + ": unusable service name " + log::quoted(service));
      continue;
    }
    std::optional<std::string> host = own_ip;
    std::uint16_t port = p;
    if (!own_ip) {
      auto b = pick_binding(bindings);
      host = registered_host_ip(b.host_ip, options.host_ip);
      port = b.host_port;
    }
    if (!host) {
      plan.skipped.push_back(who + " port " + ps + ": published on all interfaces and no host IP is known (" +
                             options.host_ip.source + "): give --ip ADDR or HOST_IP");
      continue;
    }
    std::vector<std::pair<std::string, std::string>> extra;
    for (const auto& [k, v] : m) {
      if (k == "NAME" || k == "IGNORE" || k == "ADDRESS") continue;
      std::string lower = k;
      for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      extra.emplace_back(lower, v);
    }
    if (is_loopback_address(*host))
      plan.notes.push_back(who + " port " + ps + " is published on " + *host +
                           ": registered, but only ambassadors on this host can reach it");
    auto_entry e;
    e.service = service;
    e.instance = config.hostname + ":" + c.name + ":" + ps;
    e.key = options.prefix + "/" + service + "/" + e.instance;
    e.value = format_registration(options.format, *host, port, extra, state);
    plan.entries.push_back(std::move(e));
  }
  return plan;
}

/// Automatic mode: every running container's published tcp ports, registered by plan_container();
/// lists first while the events stream replays from before the list (no race), follows events per
/// container, resyncs by diff on a timer (no writes when nothing changed), reconnects to the events
/// stream when it breaks.
class auto_follower {
public:
  /// `api` serves list/inspect calls, `events` the events stream.
  auto_follower(docker_client& api, docker_client& events, registration_sink sink, registrar_options options,
                auto_config config)
      : api_(api),
        events_(events),
        sink_(std::move(sink)),
        options_(std::move(options)),
        config_(std::move(config)),
        wake_(api.executor()) {}

  /// Every key registered now, key → value.
  std::map<std::string, std::string> registered() const {
    std::map<std::string, std::string> out;
    for (const auto& [id, keys] : by_container_) out.insert(keys.begin(), keys.end());
    return out;
  }

  /// Runs forever.
  asio::awaitable<void> run() {
    auto ex = co_await asio::this_coro::executor;
    asio::co_spawn(ex,
                   detail::follow_events(
                       events_, detail::unix_now() - 1, [this](const docker_event& ev) { on_event(ev); },
                       [this] {
                         resync_now_ = true;
                         wake_.notify();
                       },
                       options_.retry),
                   detail::log_if_failed);
    auto next_resync = clock::now();
    for (;;) {
      // A stop announced: the draining marks go first, before any engine call.
      while (!drain_now_.empty()) {
        auto id = *drain_now_.begin();
        drain_now_.erase(drain_now_.begin());
        co_await drain(id);
      }
      if (resync_now_ || clock::now() >= next_resync) {
        resync_now_ = false;
        pending_.clear();  // a full pass covers them
        if (co_await resync())
          next_resync = clock::now() + options_.resync;
        else
          next_resync = clock::now() + options_.retry;
      }
      for (auto* due : {&held_, &recheck_at_}) {  // hold-downs that ended, health rechecks: look again
        for (auto it = due->begin(); it != due->end();) {
          if (it->second > clock::now()) {
            ++it;
            continue;
          }
          pending_.insert(it->first);
          it = due->erase(it);
        }
      }
      while (!pending_.empty() && drain_now_.empty()) {
        auto id = *pending_.begin();
        pending_.erase(pending_.begin());
        co_await follow(id);
      }
      auto until = next_resync;
      for (const auto* due : {&held_, &recheck_at_})
        for (const auto& [id, t] : *due) until = std::min(until, t);
      auto now = clock::now();
      if (now < until && pending_.empty() && drain_now_.empty() && !resync_now_) co_await wake_.wait_for(until - now);
    }
  }

private:
  using clock = std::chrono::steady_clock;

  void on_event(const docker_event& ev) {
    if (ev.type != "container" || !is_lifecycle_action(ev.action) || ev.id.empty()) return;
    if (is_stop_announcement(ev)) {
      if (auto run = started_at_.find(ev.id); run != started_at_.end()) {
        auto name = ev.attributes.find("name");
        detail::note_stop_announcement(ev,
                                       "container " + log::quoted(name == ev.attributes.end() ? ev.id : name->second));
        stopping_run_[ev.id] = run->second;  // this run is ending; a later start is a new one
        announced_at_[ev.id] = clock::now();
        drain_now_.insert(ev.id);
      }
    }
    if (is_health_event(ev.action)) recheck_at_[ev.id] = clock::now() + options_.health_recheck;
    pending_.insert(ev.id);
    wake_.notify();
  }

  void engine_failed(const std::exception& e) {
    if (!engine_failing_)
      log::warn(e.what(), "; keeping the registrations, retrying every ", log::duration(options_.retry));
    engine_failing_ = true;
  }
  void engine_ok() {
    if (engine_failing_) log::info("engine at ", api_.server().to_string(), " answers again");
    engine_failing_ = false;
  }

  // Forgets what was known about a container that is gone.
  void forget(const std::string& id) {
    skip_notes_.erase(id);
    health_notes_.erase(id);
    started_at_.erase(id);
    stopping_run_.erase(id);
    announced_at_.erase(id);
    held_.erase(id);
    recheck_at_.erase(id);
    holddown_until_.erase(id);
  }

  // The engine is stopping container `id`: its values are marked draining now, without asking the
  // engine again (they were right a moment ago; only the mark is new). The hostport form cannot say
  // it, so there the keys go at once.
  asio::awaitable<void> drain(std::string id) {
    auto found = by_container_.find(id);
    if (found == by_container_.end()) co_return;
    auto& have = found->second;  // stays valid: only this coroutine touches by_container_
    const auto keys = have;
    for (const auto& [k, v] : keys) {
      if (options_.format == value_format::json) {
        if (is_draining_value(v)) continue;
        const std::string value = draining_value(v);
        co_await sink_.set(k, value);  // the sink says "draining" once it is in the registry
        have[k] = value;
      } else {
        co_await sink_.erase(k);
        have.erase(k);
        log::info("removed ", k, " (the container is being stopped; the hostport form has no draining field)");
      }
    }
    if (have.empty()) by_container_.erase(id);
  }

  // One full pass: list running containers, follow each, drop what is gone. False when the engine failed.
  asio::awaitable<bool> resync() {
    std::vector<container_summary> list;
    try {
      list = co_await api_.list_containers(false);
      engine_ok();
    } catch (const std::exception& e) {
      engine_failed(e);
      co_return false;
    }
    std::set<std::string> alive;
    for (const auto& c : list) {
      alive.insert(c.id);
      if (!co_await follow(c.id)) co_return false;
    }
    // Named arguments, not temporaries: GCC 12 mishandles temporaries in co_await expressions.
    const std::map<std::string, std::string> none;
    const std::string why = "container is gone";
    const auto known = known_ids();
    for (const auto& id : known)
      if (!alive.count(id)) co_await apply(id, none, why);
    std::vector<std::string> stale;  // what is remembered of containers that no longer run
    for (const auto& [id, run] : started_at_)
      if (!alive.count(id)) stale.push_back(id);
    for (const auto& id : stale) forget(id);
    co_return true;
  }

  std::vector<std::string> known_ids() const {
    std::vector<std::string> ids;
    for (const auto& [id, keys] : by_container_) ids.push_back(id);
    return ids;
  }

  // Inspects one container and brings its keys in line. False when the engine failed.
  asio::awaitable<bool> follow(std::string id) {
    container_info info;
    bool removed = false;
    try {
      info = co_await api_.inspect(id);
      engine_ok();
    } catch (const std::system_error& e) {
      if (e.code() != errc::no_such_container) {
        engine_failed(e);
        co_return false;
      }
      removed = true;
    }
    if (removed) {
      forget(id);
      const std::map<std::string, std::string> none;
      const std::string why = "container removed";
      co_await apply(id, none, why);
      co_return true;
    }
    const std::string who = "container " + log::quoted(info.name);
    if (info.running) started_at_[id] = info.started_at;
    const auto health = read_health(info.health);
    if (health == health_state::unknown && unknown_health_.first(info.health))
      log::warn(who, " reports health status ", log::quoted(info.health, 40),
                ", which amb does not know: ignored (registered as without a health check); said once");
    auto stopping = stopping_run_.find(id);
    bool draining = info.running && stopping != stopping_run_.end() && stopping->second == info.started_at;
    if (draining) {
      const auto until = announced_at_[id] + drain_limit(info);
      if (clock::now() >= until) {
        log::info(who, " still runs ", log::duration(drain_limit(info)),
                  " after the engine announced its stop: not being stopped after all; draining withdrawn");
        stopping_run_.erase(stopping);
        draining = false;
      } else {
        held_[id] = held_.count(id) ? std::min(held_[id], until) : until;  // look again then
      }
    }
    auto plan = plan_container(info, options_, config_, draining);
    std::string skipped, notes;
    for (const auto& s : plan.skipped) skipped += (skipped.empty() ? "" : "; ") + s;
    for (const auto& s : plan.notes) notes += (notes.empty() ? "" : "; ") + s;
    // Withheld for its health: the notes stay as they were, so a flapping container does not repeat them.
    if (info.running && !plan.withheld && skipped + notes != skip_notes_[id]) {
      if (!skipped.empty()) log::info("skipping ", skipped);
      if (!notes.empty()) log::info("note: ", notes);
      skip_notes_[id] = skipped + notes;
    }
    if (!info.running) skip_notes_.erase(id);
    std::map<std::string, std::string> want;
    for (const auto& e : plan.entries) want[e.key] = e.value;
    const auto registered = by_container_.find(id);
    const bool has_keys = registered != by_container_.end() && !registered->second.empty();
    // One line per change of health verdict: why nothing is (or no longer is) registered.
    const std::string verdict = !plan.withheld                             ? ""
                                : *plan.withheld == health_state::starting ? "starting"
                                                                           : "unhealthy";
    const auto now = clock::now();
    if (auto h = holddown_until_.find(id); h != holddown_until_.end() && !want.empty() && !has_keys) {
      if (now < h->second) {  // back after an unhealthy spell: not before the hold-down ends (and no line)
        held_[id] = h->second;
        co_return true;
      }
      holddown_until_.erase(h);
    }
    if (verdict != health_notes_[id]) {
      if (verdict == "starting")
        log::info(who, " is starting: not registered until its health check passes");
      else if (verdict == "unhealthy" && !has_keys)
        log::warn(who, " is unhealthy: not registered until its health check passes again");
      health_notes_[id] = verdict;
    }
    const std::string why =
        verdict == "unhealthy" ? std::string("container is unhealthy; registered again once healthy")
        : info.running         ? std::string("no longer published")
                               : "container " + (info.status.empty() ? std::string("stopped") : info.status);
    co_await apply(id, want, why);
    if (verdict == "unhealthy" && has_keys) holddown_until_[id] = now + options_.health_holddown;
    co_return true;
  }

  // Writes the difference between what container `id` has registered and `want`.
  asio::awaitable<void> apply(std::string id, std::map<std::string, std::string> want, std::string why) {
    auto& have = by_container_[id];  // stays valid: only this coroutine touches by_container_
    std::vector<std::string> gone;
    for (const auto& [k, v] : have)
      if (!want.count(k)) gone.push_back(k);
    for (const auto& key : gone) {
      co_await sink_.erase(key);
      have.erase(key);
      log::info("removed ", key, " (", why, ")");
    }
    for (const auto& [k, v] : want) {
      auto it = have.find(k);
      if (it != have.end() && it->second == v) continue;
      // A container removed and re-created under the same name has a new id and the same keys: they
      // move to the new one, so the old one's removal (seen later, or at a resync) deletes nothing.
      for (auto o = by_container_.begin(); o != by_container_.end();) {
        if (o->first == id) {
          ++o;
          continue;
        }
        o->second.erase(k);
        o = o->second.empty() ? by_container_.erase(o) : std::next(o);
      }
      co_await sink_.set(k, v);  // the sink says "registered" once the key really is in the registry
      have[k] = v;
    }
    if (have.empty()) by_container_.erase(id);
  }

  docker_client& api_;
  docker_client& events_;
  registration_sink sink_;
  registrar_options options_;
  auto_config config_;
  detail::wakeup wake_;
  std::set<std::string> pending_;
  bool resync_now_ = false;
  bool engine_failing_ = false;
  std::map<std::string, std::map<std::string, std::string>> by_container_;
  std::map<std::string, std::string> skip_notes_;
  std::map<std::string, std::string> health_notes_;          // id -> "starting" / "unhealthy" / "" last said
  std::map<std::string, std::string> started_at_;            // id -> State.StartedAt of its running run
  std::map<std::string, std::string> stopping_run_;          // id -> the run the engine announced it is stopping
  std::set<std::string> drain_now_;                          // stops announced, draining marks not yet written
  std::map<std::string, clock::time_point> holddown_until_;  // id -> no re-registration before (unhealthy spell)
  std::map<std::string, clock::time_point> held_;  // id -> when to look again (held re-registration, draining end)
  std::map<std::string, clock::time_point> announced_at_;  // id -> when its stop was announced
  std::map<std::string, clock::time_point> recheck_at_;    // id -> inspect again then (after a health_status event)
  detail::say_once unknown_health_;
};

}  // namespace amb
