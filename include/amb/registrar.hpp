// SPDX-License-Identifier: MIT
// The registrar's logic: follow one container (seed mode) or all of them (automatic mode) through the
// Engine API and keep the registry in step, through a sink (in the program: an etcd_lease_keeper).
#pragma once

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
};

/// The value for host:port with `extra` fields, in `format`.
inline std::string format_registration(value_format format, const std::string& host, std::uint16_t port,
                                       const std::vector<std::pair<std::string, std::string>>& extra) {
  return format == value_format::json ? format_registry_json(host, port, extra) : format_registry_hostport(host, port);
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
/// exit_with_container, run() returns 0. Engine outages keep the last registration.
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
      co_await wake_.wait_for(engine_failing_ ? options_.retry : options_.resync);
    }
  }

private:
  bool ours(const docker_event& ev) const {
    if (!id_.empty() && ev.id == id_) return true;
    auto name = ev.attributes.find("name");
    if (name != ev.attributes.end() && name->second == config_.container) return true;
    return config_.container.size() >= 6 && ev.id.rfind(config_.container, 0) == 0;  // an id prefix
  }

  void on_event(const docker_event& ev) {
    if (ev.type == "container" && is_lifecycle_action(ev.action) && ours(ev)) {
      log::debug("event ", ev.action, " for container \"", config_.container, "\"");
      wake_.notify();
    }
  }

  // One line per change of state (not per resync, nor per "stopping" then "exited").
  void say(log::level level, const std::string& state, const std::string& line) {
    if (state == last_state_) return;
    last_state_ = state;
    if (!line.empty()) log::write(level, line);
  }

  // Reads the container and writes or erases the key. Returns an exit code when the follower should end.
  asio::awaitable<std::optional<int>> reconcile(bool first) {
    const std::string who = "container " + log::quoted(config_.container);
    const std::string port = std::to_string(config_.private_port) + "/tcp";
    const std::string waiting = config_.exit_with_container ? "" : "; waiting for it";
    std::optional<std::string> value;
    bool gone = false, unpublished = false;
    std::string line, state;
    log::level level = log::level::info;
    try {
      auto info = co_await api_.inspect(config_.container);
      engine_failing_ = false;
      id_ = info.id;
      seen_ = true;
      if (!info.running) {
        state = "stopped";
        line = who + " is not running (" + (info.status.empty() ? "stopped" : info.status) + "): " + key_ + " removed" +
               waiting;
      } else if (auto bindings = info.bindings(config_.private_port); bindings.empty()) {
        unpublished = true;
        state = "unpublished";
        level = log::level::warn;
        line = who + " does not publish port " + port + " (" + published_ports(info) + ")" + waiting;
      } else {
        auto b = pick_binding(bindings);
        auto host = registered_host_ip(b.host_ip, options_.host_ip);
        if (!host) {
          level = log::level::error;
          state = "no host IP";
          line = who + " publishes port " + port + " on all interfaces and no host IP is known (" +
                 options_.host_ip.source + "): give --ip ADDR or HOST_IP";
        } else {
          value = format_registration(options_.format, *host, b.host_port, config_.extra);
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
        co_await sink_.set(key_, *value);
        current_ = value;
      }
    } else if (current_) {
      co_await sink_.erase(key_);
      current_.reset();
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
inline auto_plan plan_container(const container_info& c, const registrar_options& options, const auto_config& config) {
  auto_plan plan;
  const std::string who = "container " + log::quoted(c.name);
  if (!c.running) {
    plan.skipped.push_back(who + " is not running");
    return plan;
  }
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
    if (p && !bindings.empty()) published.emplace_back(*p, bindings);
  }
  std::sort(published.begin(), published.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  if (published.empty()) plan.skipped.push_back(who + " publishes no tcp port");
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
    auto b = pick_binding(bindings);
    auto host = registered_host_ip(b.host_ip, options.host_ip);
    if (!host) {
      plan.skipped.push_back(who + " port " + ps + ": published on all interfaces and no host IP is known (" +
                             options.host_ip.source + "): give --ip ADDR or HOST_IP");
      continue;
    }
    std::vector<std::pair<std::string, std::string>> extra;
    for (const auto& [k, v] : m) {
      if (k == "NAME" || k == "IGNORE") continue;
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
    e.value = format_registration(options.format, *host, b.host_port, extra);
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
                       events_, detail::unix_now() - 1,
                       [this](const docker_event& ev) {
                         if (ev.type == "container" && is_lifecycle_action(ev.action) && !ev.id.empty()) {
                           pending_.insert(ev.id);
                           wake_.notify();
                         }
                       },
                       [this] {
                         resync_now_ = true;
                         wake_.notify();
                       },
                       options_.retry),
                   detail::log_if_failed);
    auto next_resync = std::chrono::steady_clock::now();
    for (;;) {
      if (resync_now_ || std::chrono::steady_clock::now() >= next_resync) {
        resync_now_ = false;
        pending_.clear();  // a full pass covers them
        if (co_await resync())
          next_resync = std::chrono::steady_clock::now() + options_.resync;
        else
          next_resync = std::chrono::steady_clock::now() + options_.retry;
      }
      while (!pending_.empty()) {
        auto id = *pending_.begin();
        pending_.erase(pending_.begin());
        co_await follow(id);
      }
      auto now = std::chrono::steady_clock::now();
      if (now < next_resync && pending_.empty() && !resync_now_) co_await wake_.wait_for(next_resync - now);
    }
  }

private:
  void engine_failed(const std::exception& e) {
    if (!engine_failing_)
      log::warn(e.what(), "; keeping the registrations, retrying every ", log::duration(options_.retry));
    engine_failing_ = true;
  }
  void engine_ok() {
    if (engine_failing_) log::info("engine at ", api_.server().to_string(), " answers again");
    engine_failing_ = false;
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
      skip_notes_.erase(id);
      const std::map<std::string, std::string> none;
      const std::string why = "container removed";
      co_await apply(id, none, why);
      co_return true;
    }
    auto plan = plan_container(info, options_, config_);
    std::string skipped, notes;
    for (const auto& s : plan.skipped) skipped += (skipped.empty() ? "" : "; ") + s;
    for (const auto& s : plan.notes) notes += (notes.empty() ? "" : "; ") + s;
    if (info.running && skipped + notes != skip_notes_[id]) {
      if (!skipped.empty()) log::info("skipping ", skipped);
      if (!notes.empty()) log::info("note: ", notes);
      skip_notes_[id] = skipped + notes;
    }
    if (!info.running) skip_notes_.erase(id);
    std::map<std::string, std::string> want;
    for (const auto& e : plan.entries) want[e.key] = e.value;
    const std::string why = info.running ? std::string("no longer published")
                                         : "container " + (info.status.empty() ? std::string("stopped") : info.status);
    co_await apply(id, want, why);
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
};

}  // namespace amb
