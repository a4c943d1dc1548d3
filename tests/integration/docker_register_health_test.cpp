// SPDX-License-Identifier: MIT
// docker-register's health gating, stop announcements (draining) and container-network addresses, in
// both modes, against podman's real API with real containers (health checks driven with `podman
// healthcheck run`: no systemd timer runs them here), real etcd, and a fake engine for unknown input.
#include "support/docker_register_support.hpp"

#include <amb/detail/base64.hpp>
#include <amb/detail/docker_json.hpp>
#include <amb/detail/json.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <mutex>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace docker_register_health_test {

using namespace std::chrono_literals;
using namespace amb::test;
using wall = std::chrono::system_clock;

namespace {

// One podman service, one etcd and one user-defined network for the whole file.
podman_service& podman() {
  static podman_service p;
  return p;
}
etcd_cluster& etcd() {
  static etcd_cluster e;
  return e;
}
const std::string tag = std::to_string(::getpid());

// A user-defined network, removed (with any container still on it) when the test program ends.
struct network_guard {
  std::string name = "amb-test-net-" + tag;
  network_guard() { podman().podman_ok({"network", "create", name}); }
  ~network_guard() { podman().podman({"network", "rm", "-f", name}); }
};
const std::string& network() {
  static network_guard n;
  return n.name;
}

std::string json_value(const std::string& host, std::uint16_t port, const std::string& extra = "") {
  return "{\"host\":\"" + host + "\",\"port\":" + std::to_string(port) + extra + "}";
}

// Reads a stream (etcd's watch, the engine's events) on a thread, line by line, noting when each
// line arrived. The request is HTTP/1.0, so the reply is not chunked: one JSON document per line.
class stream_recorder {
public:
  struct line {
    wall::time_point at;
    std::string text;
  };
  stream_recorder(int family, const sockaddr* address, socklen_t length, std::string request) {
    fd_ = ::socket(family, SOCK_STREAM, 0);
    if (fd_ < 0 || ::connect(fd_, address, length) != 0) throw std::runtime_error("test set-up: stream connect failed");
    ::send(fd_, request.data(), request.size(), MSG_NOSIGNAL);
    thread_ = std::thread([this] { loop(); });
  }
  ~stream_recorder() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  std::vector<line> lines() {
    std::lock_guard<std::mutex> lock(mutex_);
    return lines_;
  }

private:
  void loop() {
    std::string pending;
    char buf[65536];
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      const auto now = wall::now();
      pending.append(buf, static_cast<std::size_t>(n));
      std::size_t nl;
      while ((nl = pending.find('\n')) != std::string::npos) {
        std::lock_guard<std::mutex> lock(mutex_);
        lines_.push_back({now, pending.substr(0, nl)});
        pending.erase(0, nl + 1);
      }
    }
  }
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::vector<line> lines_;
  std::thread thread_;
};

// One change under an etcd prefix, as a watcher saw it.
struct etcd_change {
  wall::time_point at;  // when the watch line arrived here
  std::string key, value;
  bool deleted = false;
};

// etcd's watch of `prefix` (from now), decoded.
class etcd_recorder {
public:
  explicit etcd_recorder(const std::string& prefix) : stream_(open(prefix)) {
    // The watch is live once etcd sent "created".
    wait_until([&] { return !stream_->lines().empty(); }, 30s, 5ms);
  }
  std::vector<etcd_change> changes(const std::string& key) {
    std::vector<etcd_change> out;
    for (const auto& l : stream_->lines()) {
      picojson::value doc;
      std::string err;
      amb::detail::json_parse(doc, l.text.begin(), l.text.end(), &err);
      const auto* result = err.empty() ? amb::detail::json_member(doc, "result") : nullptr;
      const auto* events = result ? amb::detail::json_member(*result, "events") : nullptr;
      if (!events || !events->is<picojson::array>()) continue;
      for (const auto& ev : events->get<picojson::array>()) {
        const auto* kv = amb::detail::json_member(ev, "kv");
        if (!kv) continue;
        etcd_change c;
        c.at = l.at;
        c.key = amb::detail::base64_decode(amb::detail::json_string(*kv, "key")).value.value_or("");
        c.value = amb::detail::base64_decode(amb::detail::json_string(*kv, "value")).value.value_or("");
        c.deleted = amb::detail::json_string(ev, "type") == "DELETE";
        if (c.key == key) out.push_back(std::move(c));
      }
    }
    return out;
  }

private:
  static std::unique_ptr<stream_recorder> open(const std::string& prefix) {
    auto end = prefix;
    end.back() = static_cast<char>(end.back() + 1);
    const std::string body = "{\"create_request\":{\"key\":\"" + amb::detail::base64_encode(prefix) +
                             "\",\"range_end\":\"" + amb::detail::base64_encode(end) + "\"}}";
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(etcd().client_port());
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return std::make_unique<stream_recorder>(
        AF_INET, reinterpret_cast<const sockaddr*>(&a), sizeof a,
        "POST /v3/watch HTTP/1.0\r\nHost: e\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  }
  std::unique_ptr<stream_recorder> stream_;
};

// The engine's container events (from now), decoded.
class event_recorder {
public:
  event_recorder() {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", podman().socket_path().c_str());
    stream_ = std::make_unique<stream_recorder>(
        AF_UNIX, reinterpret_cast<const sockaddr*>(&a), sizeof a,
        "GET /v1.41/events?filters=%7B%22type%22%3A%5B%22container%22%5D%7D HTTP/1.0\r\nHost: d\r\n\r\n");
  }
  /// The events of container `name` with `action`.
  std::vector<amb::docker_event> of(const std::string& name, const std::string& action) {
    std::vector<amb::docker_event> out;
    for (const auto& l : stream_->lines()) {
      auto ev = amb::detail::parse_docker_event(l.text);
      if (!ev || ev->action != action) continue;
      auto n = ev->attributes.find("name");
      if (n != ev->attributes.end() && n->second == name) out.push_back(*ev);
    }
    return out;
  }

private:
  std::unique_ptr<stream_recorder> stream_;
};

// A call to podman's API from the test itself (the registrar only reads; the test drives containers).
std::string engine_post(const std::string& target) {
  return unix_exchange(podman().socket_path(), "POST /v1.41" + target + " HTTP/1.0\r\nHost: d\r\n\r\n", 30s);
}

std::string container_ip(const std::string& name, const std::string& net) {
  return podman().podman_ok({"inspect", "-f", "{{(index .NetworkSettings.Networks \"" + net + "\").IPAddress}}", name});
}

// The etcd value of `key` equals `want` within `timeout` ("" = absent).
bool becomes(const std::string& key, const std::string& want, std::chrono::milliseconds timeout = 30s) {
  return wait_until([&] { return etcd_value(etcd(), key) == want; }, timeout, 20ms);
}

void check_read_only(recording_proxy& proxy) {
  auto requests = proxy.requests();
  CHECK(requests.size() >= 4);
  for (const auto& line : requests) {
    INFO(line);
    const bool allowed = line.rfind("GET /_ping ", 0) == 0 || line.rfind("GET /version ", 0) == 0 ||
                         (line.rfind("GET /v", 0) == 0 && (line.find("/containers/json") != std::string::npos ||
                                                           line.find("/json HTTP/1.1") != std::string::npos ||
                                                           line.find("/events?") != std::string::npos));
    CHECK(allowed);
  }
}

long ms(wall::duration d) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

}  // namespace

TEST_CASE("health gating, one-container and --all: starting waits, unhealthy removes at once, healthy comes back") {
  auto& pm = podman();
  const auto name = pm.unique_name("health");
  temp_dir dir;  // the health check looks for /h/ok, a file of this folder: the test turns it on and off
  const auto ok = dir.path() / "ok";
  const std::string svc = "hauto-" + tag;
  pm.run_container(name,
                   {"-p", "127.0.0.1::80", "--label", "SERVICE_NAME=" + svc, "-v", dir.path().string() + ":/h",
                    "--health-cmd", "[ -f /h/ok ]", "--health-interval", "1h", "--health-retries", "1"},
                   {"httpd", "-f", "-p", "80"});
  const auto plain = pm.unique_name("nohealth");  // no health check: registered as it runs, as before
  pm.run_container(plain, {"-p", "127.0.0.1::80", "--label", "SERVICE_NAME=plain-" + tag}, {"httpd", "-f", "-p", "80"});
  const auto port = pm.published_port(name, 80);
  const std::string seed_key = "/services/hseed-" + tag + "/" + name;
  const std::string ignore_key = "/services/hignore-" + tag + "/" + name;
  const std::string auto_key = "/services/" + svc + "/h17:" + name + ":80";
  const std::string plain_key = "/services/plain-" + tag + "/h17:" + plain + ":80";
  recording_proxy proxy((dir.path() / "proxy.sock").string(), pm.socket_path());
  auto seed = start_docker_register(etcd(), pm.url(), {name, "80", "hseed-" + tag});
  auto ignore = start_docker_register(etcd(), pm.url(), {"--health", "ignore", name, "80", "hignore-" + tag});
  // --resync 1m: every change must come from the events (and the re-inspection a second after each
  // health_status event, for an inspect that still shows the previous status), not from a resync.
  auto all = start_docker_register(etcd(), proxy.url(), {"--all", "--hostname", "h17", "--resync", "1m"});
  INFO("seed:\n", seed.output(), "\nall:\n", all.output());

  // Starting: --health ignore registers it as before; the gated registrars wait, with one line.
  CHECK(becomes(ignore_key, json_value("127.0.0.1", port)));
  CHECK(becomes(plain_key, json_value("127.0.0.1", pm.published_port(plain, 80))));
  const std::string starting =
      "docker-register: container \"" + name + "\" is starting: not registered until its health check passes\n";
  CHECK(wait_until([&] { return seed.output().find(starting) != std::string::npos; }, 30s));
  CHECK(wait_until([&] { return all.output().find(starting) != std::string::npos; }, 30s));
  CHECK(etcd_value(etcd(), seed_key).empty());
  CHECK(etcd_value(etcd(), auto_key).empty());

  // Healthy: registered, saying so.
  const std::string healthy = json_value("127.0.0.1", port, ",\"health\":\"healthy\"");
  std::ofstream(ok) << "ok\n";
  pm.podman({"healthcheck", "run", name});
  CHECK(becomes(seed_key, healthy));
  CHECK(becomes(auto_key, healthy));

  // Unhealthy: removed at once (on the health_status event: typically 0.2-0.3s after the check here, but
  // podman delivers events late on a loaded machine, and --all may first look at other tests' containers);
  // one line each.
  std::filesystem::remove(ok);
  pm.podman({"healthcheck", "run", name});
  const auto checked = std::chrono::steady_clock::now();
  CHECK(becomes(seed_key, ""));
  CHECK(becomes(auto_key, ""));
  MESSAGE("unhealthy: keys gone ", ms(std::chrono::steady_clock::now() - checked),
          "ms after `podman healthcheck run` returned");
  CHECK(etcd_value(etcd(), ignore_key) == json_value("127.0.0.1", port));  // ignore: untouched
  CHECK(count_lines_with(seed.output(), "warning: container \"" + name + "\" is unhealthy: " + seed_key +
                                            " removed until its health check passes again") == 1);
  CHECK(count_lines_with(all.output(),
                         "removed " + auto_key + " (container is unhealthy; registered again once healthy)") == 1);

  // Healthy again: back (the hold-down after a removal is 1s).
  std::ofstream(ok) << "ok\n";
  pm.podman({"healthcheck", "run", name});
  CHECK(becomes(seed_key, healthy));
  CHECK(becomes(auto_key, healthy));
  CHECK(count_lines_with(seed.output(), "registered " + seed_key + " = " + healthy) == 2);
  CHECK(count_lines_with(all.output(), "registered " + auto_key + " = " + healthy) == 2);
  CHECK(count_lines_with(all.output(), "registered " + plain_key + " = {\"host\":\"127.0.0.1\",\"port\":") == 1);
  CHECK(count_lines_with(ignore.output(), "registered " + ignore_key) == 1);

  for (auto* r : {&seed, &ignore, &all}) r->signal(SIGTERM);
  for (auto* r : {&seed, &ignore, &all}) CHECK(r->wait(30s) == 0);
  check_read_only(proxy);  // health and events: still only GETs of read-only endpoints
}

TEST_CASE("draining: the kill event rewrites the value at once, die removes it; stop -> draining latency") {
  auto& pm = podman();
  const auto name = pm.unique_name("drain");
  const std::string svc = "dr-a-" + tag;
  // A service with a grace period: on SIGTERM it goes on for 1s, then exits; SIGHUP does not stop it.
  pm.run_container(
      name, {"-p", "127.0.0.1::80", "--stop-timeout", "2", "--label", "SERVICE_NAME=" + svc},
      {"sh", "-c", "httpd -p 80; trap '' HUP; trap 'sleep 1; exit 0' TERM; while true; do sleep 0.1; done"});
  const std::string seed_key = "/services/dr-s-" + tag + "/" + name;
  const std::string hostport_key = "/services/dr-h-" + tag + "/" + name;
  const std::string auto_key = "/services/" + svc + "/h17:" + name + ":80";
  temp_dir dir;
  recording_proxy proxy((dir.path() / "proxy.sock").string(), pm.socket_path());
  event_recorder events;
  etcd_recorder changes("/services/dr-");
  auto seed = start_docker_register(etcd(), proxy.url(), {"--log-level", "debug", name, "80", "dr-s-" + tag});
  auto hostport = start_docker_register(etcd(), pm.url(), {"--value-format", "hostport", name, "80", "dr-h-" + tag});
  auto all =
      start_docker_register(etcd(), pm.url(), {"--all", "--hostname", "h17", "--resync", "1m", "--log-level", "debug"});
  INFO("seed:\n", seed.output(), "\nall:\n", all.output());

  // How long after the engine's time of the kill event a registrar received it, from its debug line.
  const auto delivery = [&](child_process& reg, std::size_t nth) -> long {
    const auto lines = lines_with(reg.output(), "stop announced for container \"" + name + "\" (\"kill\" event, ");
    if (lines.size() <= nth) return -1;
    const auto& l = lines[nth];
    const auto at = l.find("event, ") + 7;
    const double n = std::stod(l.substr(at));
    return l.find("ms after", at) != std::string::npos ? static_cast<long>(n) : static_cast<long>(n * 1000);
  };
  struct sample {
    long after_event, delivered, after_call;
  };
  std::vector<sample> samples;
  // Cycle 0 is not measured: a new events stream with since= makes podman replay its whole event log
  // file first (thousands of lines on a busy test machine), which can take seconds.
  constexpr int cycles = 4;
  int late_first_seed = 0, late_first_all = 0;  // 1 when cycle 0's kill reached that registrar after the exit
  for (int i = 0; i < cycles; ++i) {
    INFO("cycle ", i);
    const auto port = pm.published_port(name, 80);
    const auto value = json_value("127.0.0.1", port);
    REQUIRE(becomes(seed_key, value));
    REQUIRE(becomes(auto_key, value));
    REQUIRE(becomes(hostport_key, "127.0.0.1:" + std::to_string(port)));
    const auto kills_before = events.of(name, "kill").size();
    const auto dies_before = events.of(name, "die").size();
    const auto call = wall::now();
    engine_post("/containers/" + name + "/kill?signal=TERM");  // what `docker stop` does first
    REQUIRE(wait_until(
        [&] {
          return etcd_value(etcd(), seed_key).empty() && etcd_value(etcd(), auto_key).empty() &&
                 etcd_value(etcd(), hostport_key).empty();
        },
        30s, 20ms));
    REQUIRE(wait_until([&] { return events.of(name, "kill").size() > kills_before; }, 30s, 10ms));
    REQUIRE(wait_until([&] { return events.of(name, "die").size() > dies_before; }, 30s, 10ms));
    const auto event_at = wall::time_point(
        std::chrono::duration_cast<wall::duration>(std::chrono::nanoseconds(events.of(name, "kill").back().time_nano)));
    const auto die_at = wall::time_point(
        std::chrono::duration_cast<wall::duration>(std::chrono::nanoseconds(events.of(name, "die").back().time_nano)));
    for (auto* reg : {&seed, &all}) {
      const auto& key = reg == &seed ? seed_key : auto_key;
      INFO(key);
      // The changes of this cycle: draining written first, then the delete.
      std::vector<etcd_change> cycle;
      for (auto& c : changes.changes(key))
        if (c.at >= call) cycle.push_back(c);
      REQUIRE(!cycle.empty());
      CHECK(cycle.back().deleted);
      // Cycle 0's events may reach a registrar seconds late (the replay above), after the container
      // exited: it then removes the key at once, rightly, with no draining mark first. Later cycles
      // must show the mark.
      if (i == 0 && cycle.size() == 1) {
        ++(reg == &seed ? late_first_seed : late_first_all);
        continue;
      }
      REQUIRE(cycle.size() >= 2);
      CHECK(cycle[0].value == json_value("127.0.0.1", port, ",\"draining\":true"));
      if (i == 0) continue;
      CHECK(cycle[0].at < die_at);
      samples.push_back(
          {ms(cycle[0].at - event_at), delivery(*reg, static_cast<std::size_t>(i)), ms(cycle[0].at - call)});
    }
    // hostport has no field for it: the key goes at the kill event, before the container exits.
    std::vector<etcd_change> hp;
    for (auto& c : changes.changes(hostport_key))
      if (c.at >= call) hp.push_back(c);
    REQUIRE(!hp.empty());
    for (const auto& c : hp)
      if (c.at < die_at) CHECK(c.deleted);  // and it stays away until the container exits
    if (i > 0) CHECK(hp[0].at < die_at);
    engine_post("/containers/" + name + "/start");
  }
  // A kill that does not stop it (podman's event names no signal, so it counts as a stop): the mark
  // is withdrawn once the container outlives its stop timeout (2s here) and 5s more.
  const auto value = json_value("127.0.0.1", pm.published_port(name, 80));
  REQUIRE(becomes(seed_key, value));
  REQUIRE(becomes(auto_key, value));
  engine_post("/containers/" + name + "/kill?signal=HUP");
  const std::string draining = value.substr(0, value.size() - 1) + ",\"draining\":true}";
  CHECK(becomes(seed_key, draining));
  CHECK(becomes(auto_key, draining));
  CHECK(becomes(seed_key, value));
  CHECK(becomes(auto_key, value));
  const std::string withdrawn = "docker-register: container \"" + name +
                                "\" still runs 7s after the engine announced its stop: not being stopped after all; "
                                "draining withdrawn\n";
  CHECK(count_lines_with(seed.output(), withdrawn.substr(0, withdrawn.size() - 1)) == 1);
  CHECK(count_lines_with(all.output(), withdrawn.substr(0, withdrawn.size() - 1)) == 1);

  std::vector<long> after_event, delivered, own, after_call;
  for (const auto& s : samples) {
    after_event.push_back(s.after_event);
    delivered.push_back(s.delivered);
    own.push_back(s.after_event - s.delivered);
    after_call.push_back(s.after_call);
  }
  const auto show = [](std::vector<long> v) {
    std::sort(v.begin(), v.end());
    std::string out;
    for (auto x : v) out += " " + std::to_string(x);
    return out + " (max " + std::to_string(v.back()) + ")";
  };
  MESSAGE("ms from the kill call to the draining value seen by an etcd watcher:", show(after_call));
  MESSAGE("ms from the engine's time of the kill event to the draining value seen:", show(after_event));
  MESSAGE("  of which podman's delivery of the event to the registrar:", show(delivered));
  MESSAGE("  and the registrar's own share (event received -> value seen in etcd):", show(own));
  for (auto d : delivered) CHECK(d >= 0);
  // The target is 100ms for the registrar's share; a loaded test machine gets room.
  CHECK(*std::max_element(own.begin(), own.end()) < 1000);
  // One draining line per cycle (less a late cycle 0), and one for the HUP.
  CHECK(count_lines_with(seed.output(), "draining " + seed_key + " = ") == cycles + 1 - late_first_seed);
  CHECK(count_lines_with(seed.output(), "(the engine is stopping the container; the key goes when it exits)") ==
        cycles + 1 - late_first_seed);
  CHECK(count_lines_with(all.output(), "draining " + auto_key + " = ") == cycles + 1 - late_first_all);
  CHECK(count_lines_with(hostport.output(), "is being stopped: " + hostport_key +
                                                " removed (the hostport form has no draining field)") >= 1);
  for (auto* r : {&seed, &hostport, &all}) r->signal(SIGTERM);
  for (auto* r : {&seed, &hostport, &all}) CHECK(r->wait(30s) == 0);
  check_read_only(proxy);
}

TEST_CASE("a real health check run every 200ms: bounded etcd writes in both modes") {
  auto& pm = podman();
  const auto name = pm.unique_name("flap");
  const std::string svc = "flap-a-" + tag;
  // Each check run flips the result: unhealthy, healthy, unhealthy...
  pm.run_container(name,
                   {"-p", "127.0.0.1::80", "--label", "SERVICE_NAME=" + svc, "--health-cmd",
                    "if [ -f /ok ]; then busybox rm /ok; else echo > /ok; false; fi", "--health-interval", "1h",
                    "--health-retries", "1"},
                   {"httpd", "-f", "-p", "80"});
  const std::string seed_key = "/services/flap-s-" + tag + "/" + name;
  const std::string auto_key = "/services/" + svc + "/h17:" + name + ":80";
  event_recorder events;
  etcd_recorder changes("/services/flap-");
  auto seed = start_docker_register(etcd(), pm.url(), {name, "80", "flap-s-" + tag});
  auto all = start_docker_register(etcd(), pm.url(), {"--all", "--hostname", "h17", "--resync", "1m"});
  INFO("seed:\n", seed.output(), "\nall:\n", all.output());
  REQUIRE(wait_until([&] { return seed.output().find("is starting") != std::string::npos; }, 30s));
  REQUIRE(wait_until([&] { return all.output().find("\"" + name + "\" is starting") != std::string::npos; }, 30s));
  // Two checks, one after the other (unhealthy, then healthy): registered before it flaps.
  const auto check = [&] {
    unix_exchange(pm.socket_path(),
                  "GET /v4.0.0/libpod/containers/" + name + "/healthcheck HTTP/1.0\r\nHost: d\r\n\r\n", 30s);
  };
  check();
  check();
  const std::string healthy = json_value("127.0.0.1", pm.published_port(name, 80), ",\"health\":\"healthy\"");
  REQUIRE(becomes(seed_key, healthy));
  REQUIRE(becomes(auto_key, healthy));

  // A check started every 200ms for 3s through podman's own API (libpod's healthcheck endpoint: the
  // CLI takes longer than 200ms here); each takes 0.3-0.5s, so several run at once.
  const auto start = wall::now();
  std::vector<std::thread> checks;
  for (auto t = std::chrono::steady_clock::now(), end = t + 3s; t < end; t += 200ms) {
    std::this_thread::sleep_until(t);
    checks.emplace_back(check);
  }
  for (auto& t : checks) t.join();
  // podman's events come late on a busy machine: wait for them, then for the last change's hold-down.
  CHECK(wait_until([&] { return events.of(name, "health_status").size() >= 8; }, 30s));
  std::this_thread::sleep_for(1500ms);
  const auto window = wall::now() - start;
  const auto flips = events.of(name, "health_status").size();
  const long seconds = (ms(window) + 999) / 1000;
  const std::size_t bound = static_cast<std::size_t>(2 * seconds + 3);
  for (const auto& key : {seed_key, auto_key}) {
    std::size_t writes = 0;
    for (const auto& c : changes.changes(key)) writes += c.at >= start ? 1 : 0;
    MESSAGE(key, ": ", writes, " etcd writes for ", flips, " health checks in ", ms(window), "ms; bound ", bound);
    CHECK(writes <= bound);  // (how many below it depends on how fast podman runs checks and sends events here)
  }
  CHECK(flips >= 8);  // it did flap
  for (auto* r : {&seed, &all}) r->signal(SIGTERM);
  for (auto* r : {&seed, &all}) CHECK(r->wait(30s) == 0);
}

TEST_CASE("--address container[:NETWORK] and SERVICE_ADDRESS, on a user-defined network, both modes") {
  auto& pm = podman();
  const auto& net = network();
  const auto own = pm.unique_name("own");  // on the network, exposes 80, publishes nothing
  pm.run_container(own, {"--network", net, "--expose", "80", "--label", "SERVICE_NAME=addr-" + tag},
                   {"httpd", "-f", "-p", "80"});
  const auto pub = pm.unique_name("pub");  // on the network too, but says: register my published port
  pm.run_container(pub,
                   {"--network", net, "-p", "127.0.0.1::80", "--label", "SERVICE_NAME=addrpub-" + tag, "--label",
                    "SERVICE_ADDRESS=published"},
                   {"httpd", "-f", "-p", "80"});
  const auto env = pm.unique_name("env");  // podman's default network; its env asks for its own address
  pm.run_container(env, {"-p", "127.0.0.1::80", "-e", "SERVICE_NAME=addrenv-" + tag, "-e", "SERVICE_ADDRESS=container"},
                   {"httpd", "-f", "-p", "80"});
  const auto own_ip = container_ip(own, net);
  const auto env_ip = container_ip(env, "podman");
  REQUIRE(!own_ip.empty());
  REQUIRE(!env_ip.empty());

  auto seed = start_docker_register(etcd(), pm.url(), {"--address", "container", own, "80", "addr-s-" + tag});
  auto named = start_docker_register(etcd(), pm.url(), {"--address", "container:" + net, own, "80", "addr-n-" + tag});
  auto wrong = start_docker_register(etcd(), pm.url(), {"--address", "container:nonet-" + tag, own, "80", "x-" + tag});
  auto all = start_docker_register(etcd(), pm.url(),
                                   {"--all", "--address", "container:" + net, "--hostname", "h17", "--resync", "1m"});
  INFO("seed:\n", seed.output(), "\nall:\n", all.output());
  CHECK(becomes("/services/addr-s-" + tag + "/" + own, json_value(own_ip, 80)));
  CHECK(becomes("/services/addr-n-" + tag + "/" + own, json_value(own_ip, 80)));
  CHECK(becomes("/services/addr-" + tag + "/h17:" + own + ":80", json_value(own_ip, 80)));
  CHECK(
      becomes("/services/addrpub-" + tag + "/h17:" + pub + ":80", json_value("127.0.0.1", pm.published_port(pub, 80))));
  CHECK(becomes("/services/addrenv-" + tag + "/h17:" + env + ":80", json_value(env_ip, 80)));
  const std::string line = "docker-register: warning: container \"" + own + "\" is not on network \"nonet-" + tag +
                           "\" (it is on " + net + "); waiting for it\n";
  CHECK(wait_until([&] { return wrong.output().find(line) != std::string::npos; }, 30s));
  CHECK(etcd_value(etcd(), "/services/x-" + tag + "/" + own).empty());
  CHECK(run_docker_register(etcd(), pm.url(), {"--address", "bridge", own, "80", "x"}).output ==
        "docker-register: --address: bad address mode \"bridge\" (use published, container or container:NETWORK)\n"
        "Try 'docker-register --help'.\n");
  for (auto* r : {&seed, &named, &wrong, &all}) r->signal(SIGTERM);
  for (auto* r : {&seed, &named, &wrong, &all}) CHECK(r->wait(30s) == 0);
}

namespace {

// A fake engine on a unix socket: /_ping, /version, a list with one container "fake" (id f00d), its
// inspect reply from `inspect()`, and an events stream fed by `events(send)` (send() writes one event).
class fake_engine {
public:
  fake_engine(std::function<std::string()> inspect, std::function<void(const std::function<bool(std::string)>&)> events)
      : inspect_(std::move(inspect)),
        events_(std::move(events)),
        server_((dir_.path() / "engine.sock").string(), [this](int fd) { serve(fd); }) {}
  std::string url() const { return server_.url(); }

  static std::string container(const std::string& health) {
    return R"({"Id":"f00d","Name":"/fake","State":{"Running":true,"Status":"running","StartedAt":"x","Health":)"
           R"({"Status":")" +
           health + R"("}},"Config":{"Image":"img","Labels":{"SERVICE_NAME":"fake-)" + tag +
           R"("}},"NetworkSettings":{"Ports":{"80/tcp":[{"HostIp":"127.0.0.1","HostPort":"5555"}]}}})";
  }
  static std::string event(const std::string& action) {
    return R"({"Type":"container","Action":")" + action +
           R"(","Actor":{"ID":"f00d","Attributes":{"name":"fake"}},"time":1,"timeNano":1000000000})" + "\n";
  }

private:
  void serve(int fd) {
    std::string in;
    char buf[4096];
    while (!server_.stopping()) {
      std::size_t end;
      while ((end = in.find("\r\n\r\n")) == std::string::npos) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) return;
        in.append(buf, static_cast<std::size_t>(n));
      }
      const std::string head = in.substr(0, in.find("\r\n"));
      in.erase(0, end + 4);
      if (head.find("/events") != std::string::npos) {
        const std::string reply = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        ::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
        events_([&](const std::string& text) {
          char size[16];
          std::snprintf(size, sizeof size, "%zx\r\n", text.size());
          const std::string chunk = size + text + "\r\n";
          return !server_.stopping() && ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL) > 0;
        });
        while (!server_.stopping()) std::this_thread::sleep_for(50ms);  // a quiet stream until the end
        return;
      }
      const std::string body = head.find("/_ping") != std::string::npos ? "OK"
                               : head.find("/version") != std::string::npos
                                   ? R"({"ApiVersion":"1.41","MinAPIVersion":"1.24","Version":"fake"})"
                               : head.find("/containers/json") != std::string::npos
                                   ? R"([{"Id":"f00d","Names":["/fake"],"State":"running"}])"
                                   : inspect_();
      const std::string reply = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
      ::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
    }
  }
  std::function<std::string()> inspect_;
  std::function<void(const std::function<bool(std::string)>&)> events_;
  temp_dir dir_;
  unix_server server_;  // last: its threads use the members above
};

}  // namespace

TEST_CASE("an engine that sends unknown health values and events: logged once, ignored") {
  fake_engine engine([] { return fake_engine::container("wobbly"); },
                     [](const std::function<bool(std::string)>& send) {
                       for (int i = 0; i < 3; ++i)
                         for (const char* action : {"frobnicate", "health_status", "health_status: wobbly"})
                           send(fake_engine::event(action));
                     });
  const std::string value = json_value("127.0.0.1", 5555);
  auto seed = start_docker_register(etcd(), engine.url(), {"fake", "80", "fake-s-" + tag});
  auto all = start_docker_register(etcd(), engine.url(), {"--all", "--hostname", "h17"});
  CHECK(becomes("/services/fake-s-" + tag + "/fake", value));
  CHECK(becomes("/services/fake-" + tag + "/h17:fake:80", value));
  std::this_thread::sleep_for(1s);  // every event has been read (the scenario, not a timing assertion)
  seed.signal(SIGTERM);
  all.signal(SIGTERM);
  CHECK(seed.wait(30s) == 0);
  CHECK(all.wait(30s) == 0);
  for (auto* r : {&seed, &all}) {
    const auto log = r->output();
    INFO(log);
    CHECK(count_lines_with(log,
                           "docker-register: warning: container \"fake\" reports health status \"wobbly\", which "
                           "amb does not know: ignored (registered as without a health check); said once") == 1);
    CHECK(count_lines_with(log,
                           "docker-register: ignoring the engine's event \"frobnicate\" (type \"container\"): "
                           "not one amb knows; said once") == 1);
    CHECK(count_lines_with(log, "ignoring the engine's event") ==
          1);  // health_status, with or without suffix, is known
  }
}

TEST_CASE("health that flaps every 100ms (a fake engine): at most one put and one delete per second per key") {
  using steady = std::chrono::steady_clock;
  const auto epoch = steady::now();
  // The status flips every 100ms; a health_status event says so each time.
  auto status = [epoch] {
    return (std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - epoch).count() / 100) % 2
               ? "healthy"
               : "unhealthy";
  };
  std::atomic<bool> flapping{false};
  fake_engine engine([&] { return fake_engine::container(flapping ? status() : "healthy"); },
                     [&](const std::function<bool(std::string)>& send) {
                       while (!flapping) std::this_thread::sleep_for(10ms);
                       for (int i = 0; i < 30 && send(fake_engine::event("health_status")); ++i)
                         std::this_thread::sleep_for(100ms);
                     });
  struct release {  // on the way out, also on a failed REQUIRE: the stream threads must not wait forever
    std::atomic<bool>& go;
    ~release() { go = true; }
  } released{flapping};
  const std::string seed_key = "/services/fakeflap-" + tag + "/fake";
  const std::string auto_key = "/services/fake-" + tag + "/h17:fake:80";
  etcd_recorder changes("/services/fake");
  auto seed = start_docker_register(etcd(), engine.url(), {"fake", "80", "fakeflap-" + tag});
  auto all = start_docker_register(etcd(), engine.url(), {"--all", "--hostname", "h17"});
  const std::string healthy = json_value("127.0.0.1", 5555, ",\"health\":\"healthy\"");
  REQUIRE(becomes(seed_key, healthy));
  REQUIRE(becomes(auto_key, healthy));
  const auto start = wall::now();
  flapping = true;
  std::this_thread::sleep_for(4s);  // 30 flips over 3s, then a second to settle
  const auto window = wall::now() - start;
  const long seconds = (ms(window) + 999) / 1000;
  const std::size_t bound = static_cast<std::size_t>(2 * seconds + 2);
  for (const auto& key : {seed_key, auto_key}) {
    std::size_t writes = 0;
    for (const auto& c : changes.changes(key)) writes += c.at >= start ? 1 : 0;
    MESSAGE(key, ": ", writes, " etcd writes for 30 flips in ", ms(window), "ms; bound ", bound);
    CHECK(writes >= 2);  // it did follow the flapping
    CHECK(writes <= bound);
  }
  seed.signal(SIGTERM);
  all.signal(SIGTERM);
  CHECK(seed.wait(30s) == 0);
  CHECK(all.wait(30s) == 0);
  INFO(seed.output());
  // The lines are bounded too: one per removal and one per registration.
  CHECK(count_lines_with(seed.output(), "is unhealthy") <= bound);
}

TEST_CASE("an inspect that still shows the previous health after the event: inspected again a second later") {
  // The engine's inspect lags: it shows a new status only 300ms after the one health_status event that
  // announces it, so the inspection right after the event reads the old status. Only the re-inspection
  // after the event can catch the change (resync 1m; no further events).
  using steady = std::chrono::steady_clock;
  std::mutex m;
  std::string shown = "healthy", next = "healthy";
  steady::time_point switch_at{};
  std::atomic<int> announce{0};  // bumped by the test: send one health_status event
  fake_engine engine(
      [&] {
        std::lock_guard lock(m);
        if (next != shown && steady::now() >= switch_at) shown = next;
        return fake_engine::container(shown);
      },
      [&](const std::function<bool(std::string)>& send) {
        int sent = 0;
        while (sent >= 0 && sent < 2) {
          if (announce > sent) {
            ++sent;
            if (!send(fake_engine::event("health_status"))) return;
          }
          std::this_thread::sleep_for(10ms);
          if (announce < 0) return;
        }
      });
  struct release {  // on the way out, also on a failed REQUIRE: the stream threads must not wait forever
    std::atomic<int>& go;
    ~release() { go = -1; }
  } released{announce};
  auto becomes_health = [&](const std::string& status) {
    std::lock_guard lock(m);
    next = status;
    switch_at = steady::now() + 300ms;
  };
  const std::string seed_key = "/services/fakelag-" + tag + "/fake";
  const std::string auto_key = "/services/fake-" + tag + "/h17:fake:80";
  auto seed = start_docker_register(etcd(), engine.url(), {"--resync", "1m", "fake", "80", "fakelag-" + tag});
  auto all = start_docker_register(etcd(), engine.url(), {"--all", "--hostname", "h17", "--resync", "1m"});
  INFO("seed:\n", seed.output(), "\nall:\n", all.output());
  const std::string healthy = json_value("127.0.0.1", 5555, ",\"health\":\"healthy\"");
  REQUIRE(becomes(seed_key, healthy));
  REQUIRE(becomes(auto_key, healthy));
  becomes_health("unhealthy");
  announce = 1;
  CHECK(becomes(seed_key, "", 10s));
  CHECK(becomes(auto_key, "", 10s));
  becomes_health("healthy");
  announce = 2;
  CHECK(becomes(seed_key, healthy, 10s));
  CHECK(becomes(auto_key, healthy, 10s));
  seed.signal(SIGTERM);
  all.signal(SIGTERM);
  CHECK(seed.wait(30s) == 0);
  CHECK(all.wait(30s) == 0);
}

}  // namespace docker_register_health_test
