// SPDX-License-Identifier: MIT
// Hostile servers (issue 8): an "etcd" or "engine" that sends endless headers, a multi-gigabyte chunk,
// a never-ending line, or accepts and stalls. The library gives exact errors; the real programs keep
// bounded memory, time out, log one clear line, retry without a hot loop, and recover.
#include <amb/docker_client.hpp>
#include <amb/etcd_client.hpp>
#include <amb/etcd_watch.hpp>
#include <amb/http_client.hpp>

#include "support/dynamic_amb.hpp"
#include "support/hostile_server.hpp"
#include "support/io_helpers.hpp"
#include "support/podman_service.hpp"

#include <doctest/doctest.h>

#include <cstdlib>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace hostile_servers_test {

using namespace std::chrono_literals;
using amb::errc;
using amb::http_client;
using amb::http_request;
using amb::test::endpoint_of;
using amb::test::hostile_act;
using amb::test::hostile_server;
using amb::test::run_on;

namespace {

/// Under AddressSanitizer freed memory waits in a 256 MB quarantine and every block carries redzones,
/// so RSS says little about what the code keeps: the bounds below are asserted as they are in the
/// normal build, and only as "bounded at all" (x8) where the code runs sanitized: this test process
/// when it was built with ASan (GCC says so with __SANITIZE_ADDRESS__, Clang with __has_feature), the
/// programs it starts when ASAN_OPTIONS is set (make test's sanitize phase points the tests at its
/// sanitized programs and sets it).
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AMB_TEST_UNDER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(AMB_TEST_UNDER_ASAN)
constexpr long own_slack = 8;
#else
constexpr long own_slack = 1;
#endif
long program_slack() { return std::getenv("ASAN_OPTIONS") != nullptr ? 8 : own_slack; }

/// Memory bound for a program talking to a hostile server: the server offers far more than this
/// (more than the normal build's bound, memory_offered_kb).
constexpr long memory_offered_kb = 64 * 1024;
long memory_bound_kb() { return memory_offered_kb * program_slack(); }
/// CPU bound while a program retries against a hostile server: a hot loop would use a whole core.
constexpr double cpu_bound = 0.5;

/// What a failed call threw: its code and its what() (kept as text: docker_failure overrides what()).
struct failure {
  std::error_code ec;
  std::string text;
  std::error_code code() const { return ec; }
  const char* what() const { return text.c_str(); }
};

/// The std::system_error a call throws (fails the test when it throws none).
template <class T>
failure run_error(asio::io_context& io, asio::awaitable<T> a) {
  try {
    run_on(io, std::move(a));
  } catch (const std::system_error& e) {
    return {e.code(), e.what()};
  }
  FAIL("expected a std::system_error");
  return {};
}

/// A temp folder for unix sockets (short path: sun_path holds 108 bytes).
struct socket_dir {
  amb::test::temp_dir dir;
  std::string path(const std::string& name) const { return (dir.path() / name).string(); }
};

/// What a streamed body may cost this test process: the hostile server offers far more.
constexpr long own_growth_bound_kb = 32 * 1024 * own_slack;

http_request get(std::string target = "/") {
  http_request r;
  r.target = std::move(target);
  return r;
}

/// One hostile act and what the client must say about it.
struct expectation {
  hostile_act act;
  errc error;
  const char* name;
};

const expectation head_cases[] = {
    {hostile_act::endless_headers, errc::header_too_large, "endless headers"},
    {hostile_act::endless_status_line, errc::header_too_large, "endless status line"},
    {hostile_act::endless_header_line, errc::header_too_large, "endless header line"},
    {hostile_act::endless_chunk_size_line, errc::line_too_long, "endless chunk-size line"},
    {hostile_act::stall, errc::timeout, "accepts and never answers"},
    {hostile_act::stall_mid_body, errc::timeout, "stalls mid-body"},
};

}  // namespace

TEST_CASE("http_client against hostile servers (TCP and unix): exact errors, the server offered little") {
  socket_dir dir;
  for (bool unix_socket : {false, true}) {
    CAPTURE(unix_socket);
    hostile_server server(hostile_act::stall, unix_socket ? dir.path("hostile.sock") : "");
    asio::io_context io;
    amb::http_client_options o;
    o.request_timeout = 300ms;
    http_client client(io.get_executor(), endpoint_of(server.url()), o);
    for (const auto& c : head_cases) {
      CAPTURE(c.name);
      server.otherwise(c.act);
      auto e = run_error(io, client.request(get()));
      CHECK(e.code() == c.error);
      CHECK(std::string(e.what()) ==
            "GET / to " + server.url() + ": read response: " + make_error_code(c.error).message());
      // The stream's head and body are bounded the same way (the idle timeout covers a stall).
      auto s = run_error(io, client.stream(
                                 get(), [](std::string_view) {}, 300ms));
      CHECK(s.code() == c.error);
      CHECK(std::string(s.what()) ==
            "GET / to " + server.url() + ": " +
                (c.act == hostile_act::stall_mid_body || c.act == hostile_act::endless_chunk_size_line
                     ? "read stream: "
                     : "read response: ") +
                make_error_code(c.error).message());
    }
    // A 4 GiB chunk announced: a whole-body request refuses it at once.
    server.otherwise(hostile_act::huge_chunk);
    auto e = run_error(io, client.request(get()));
    CHECK(e.code() == errc::chunk_too_large);
    CHECK(std::string(e.what()) == "GET / to " + server.url() + ": read response: chunk too large");
    // Every case above ended after reading a bounded amount: endless senders were cut off.
    MESSAGE("bytes offered by the hostile server: " << server.hostile_bytes_sent());
    CHECK(server.hostile_bytes_sent() < 64u * 1024 * 1024);
  }
}

TEST_CASE("http_client::stream: a 4 GiB chunk or a never-ending line is streamed in bounded memory") {
  for (auto act : {hostile_act::huge_chunk, hostile_act::endless_json_line}) {
    hostile_server server(act);
    asio::io_context io;
    http_client client(io.get_executor(), endpoint_of(server.url()));
    struct enough {};
    std::uint64_t got = 0;
    const long rss_before = amb::test::proc_status_kb(::getpid(), "VmRSS");
    long rss_max = rss_before;
    try {
      run_on(io, client.stream(
                     get(),
                     [&](std::string_view piece) {
                       got += piece.size();
                       if ((got & 0xffffff) < piece.size())
                         rss_max = std::max(rss_max, amb::test::proc_status_kb(::getpid(), "VmRSS"));
                       if (got > 256u * 1024 * 1024) throw enough{};
                     },
                     5s));
      FAIL("the stream ended by itself");
    } catch (const enough&) {
    }
    MESSAGE("streamed " << got / (1024 * 1024) << " MiB; RSS grew by " << (rss_max - rss_before) << " kB");
    CHECK(got > 256u * 1024 * 1024);
    CHECK(rss_max - rss_before < own_growth_bound_kb);
  }
}

TEST_CASE("docker_client against a hostile engine: one clear line each, a stalled /events head times out") {
  socket_dir dir;
  hostile_server engine(hostile_act::stall, dir.path("engine.sock"));
  // "Connection: close": each canned reply on its own connection, so a later rule for a path takes effect.
  engine.answer("/_ping", "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nConnection: close\r\nContent-Length: 2\r\n\r\nOK");
  const std::string version = R"({"Version":"4.3.1","ApiVersion":"1.41","MinAPIVersion":"1.24"})";
  engine.answer("/version",
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
                    std::to_string(version.size()) + "\r\n\r\n" + version);
  asio::io_context io;
  amb::http_client_options o;
  o.request_timeout = 1s;
  amb::docker_client docker(io.get_executor(), endpoint_of(engine.url()), o);
  auto events = [&]() -> asio::awaitable<int> {
    co_await docker.events(0, [](const amb::docker_event&) {});
    co_return 0;
  };

  engine.on("/events", hostile_act::huge_chunk);
  auto e = run_error(io, events());
  CHECK(e.code() == errc::bad_response);
  CHECK(std::string(e.what()) == "read events at " + engine.url() + ": an event line longer than 1 MiB");

  engine.on("/events", hostile_act::endless_headers);
  e = run_error(io, events());
  CHECK(e.code() == errc::bad_response);
  CHECK(std::string(e.what()) == "read events at " + engine.url() +
                                     ": not a Docker Engine API (GET /v1.41/events?filters=" +
                                     "%7B%22type%22%3A%5B%22container%22%5D%7D: HTTP header block too large)");

  // The engine sends the head of /events at once (docs/protocols.md §2.5): a head that never comes is a dead engine.
  engine.on("/events", hostile_act::stall);
  e = run_error(io, events());
  CHECK(e.code() == errc::timeout);

  engine.on("/_ping", hostile_act::endless_header_line);
  auto ping = [&]() -> asio::awaitable<int> {
    co_await docker.ping();
    co_return 0;
  };
  e = run_error(io, ping());
  CHECK(e.code() == errc::bad_response);
  CHECK(std::string(e.what()) ==
        "ping engine at " + engine.url() + ": not a Docker Engine API (GET /_ping: HTTP header block too large)");
}

// ---------------------------------------------------------------------------------------------------
// The real programs against hostile servers. Not covered here: a watch stream that stalls after its head
// (dynamic-etcd-amb takes it for dead only after etcd_watch_options::silence_timeout, 11 minutes, because
// etcd's progress notifications come every 10 minutes by default), and an /events stream that stalls
// after its head (indistinguishable from a quiet engine; docker-register's --resync re-reads the engine).

namespace {

/// The etcd and the two tagged redis servers shared by the program cases (one start-up for the file).
struct shared_servers {
  amb::test::etcd_cluster etcd;
  amb::test::tagged_redis r1{"r1"};
  amb::test::tagged_redis r2{"r2"};
  std::uint16_t etcd_port() const {
    return static_cast<std::uint16_t>(std::stoi(etcd.url(0).substr(etcd.url(0).rfind(':') + 1)));
  }
};
shared_servers& servers() {
  static shared_servers s;
  return s;
}

/// dynamic-etcd-amb for `service` against the etcd at `etcd_url`, on a free port; waits for "listening on".
struct dynamic_amb {
  std::uint16_t port = amb::test::free_port();
  amb::test::child_process process;
  dynamic_amb(const std::string& etcd_url, const std::string& service) {
    amb::test::child_process::options o;
    o.unset_env = {"ETCDCTL_ENDPOINTS"};
    process.start({AMB_DYNAMIC_ETCD_AMB_BIN, "--etcd", etcd_url, "--listen", "127.0.0.1:" + std::to_string(port),
                   service, std::to_string(port)},
                  o);
    REQUIRE_MESSAGE(
        amb::test::wait_until(
            [&] { return !process.running() || process.output().find("listening on") != std::string::npos; }, 10s),
        process.output());
    REQUIRE(process.running());
  }
  std::string output() const { return process.output(); }
};

/// Memory stayed bounded, and over `span` the process used less than cpu_bound of a core (no hot loop).
void check_bounded(amb::test::child_process& p, std::chrono::milliseconds span = 1500ms) {
  const double cpu = amb::test::proc_cpu_share(p.pid(), span);
  const long hwm = amb::test::proc_status_kb(p.pid(), "VmHWM");
  MESSAGE("peak RSS (VmHWM) " << hwm << " kB; CPU " << static_cast<int>(cpu * 100) << "% of a core over "
                              << span.count() << " ms");
  CHECK(hwm > 0);
  CHECK(hwm < memory_bound_kb());
  CHECK(cpu < cpu_bound);
  CHECK(p.running());
}

int service_counter = 0;

}  // namespace

TEST_CASE("dynamic-etcd-amb against a hostile etcd range reply: one line per failure, backoff, bounded, recovers") {
  auto& sv = servers();
  const expectation cases[] = {
      {hostile_act::endless_headers, errc::header_too_large, "endless headers"},
      {hostile_act::huge_chunk, errc::chunk_too_large, "4 GiB chunk"},
      {hostile_act::endless_status_line, errc::header_too_large, "endless status line"},
      {hostile_act::endless_header_line, errc::header_too_large, "endless header line"},
      {hostile_act::endless_chunk_size_line, errc::line_too_long, "endless chunk-size line"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    const std::string service = "hostile-range-" + std::to_string(++service_counter);
    sv.etcd.etcdctl({"put", "/services/" + service + "/a", sv.r1.json()});
    hostile_server etcd(hostile_act::relay);
    etcd.relay_to_tcp(sv.etcd_port());
    etcd.on("/v3/kv/range", c.act);
    dynamic_amb amb(etcd.url(), service);
    const std::string failed =
        "dynamic-etcd-amb: warning: watch /services/" + service + "/: reading the prefix failed: ";
    REQUIRE_MESSAGE(amb::test::wait_until([&] { return amb::test::count_lines_with(amb.output(), failed) >= 2; }, 20s),
                    amb.output());
    auto lines = amb::test::lines_with(amb.output(), failed);
    CHECK_MESSAGE(lines[0].find(etcd.url()) != std::string::npos, lines[0]);
    CHECK_MESSAGE(lines[0].find(make_error_code(c.error).message()) != std::string::npos, lines[0]);
    CHECK_MESSAGE(lines[0].find("; retrying in 250ms") != std::string::npos, lines[0]);
    CHECK_MESSAGE(lines[1].find("; retrying in 500ms") != std::string::npos, lines[1]);  // backoff doubles
    check_bounded(amb.process);
    // No client is served meanwhile (nothing known yet), but the listener is alive and closes it cleanly.
    CHECK(amb::test::who_via(amb.port) == "");
    etcd.become_real();
    CHECK_MESSAGE(amb::test::wait_until([&] { return amb::test::who_via(amb.port) == "r1"; }, 20s), amb.output());
  }
}

TEST_CASE(
    "dynamic-etcd-amb against a hostile watch stream (4 GiB chunk, never-ending JSON line): bounded, keeps serving, "
    "recovers") {
  auto& sv = servers();
  for (auto act : {hostile_act::huge_chunk, hostile_act::endless_json_line}) {
    const std::string service = "hostile-watch-" + std::to_string(++service_counter);
    sv.etcd.etcdctl({"put", "/services/" + service + "/a", sv.r1.json()});
    hostile_server etcd(hostile_act::relay);
    etcd.relay_to_tcp(sv.etcd_port());
    etcd.on("/v3/watch", act);
    dynamic_amb amb(etcd.url(), service);
    // The snapshot came through: the data path serves while the watch fails.
    CHECK_MESSAGE(amb::test::wait_until([&] { return amb::test::who_via(amb.port) == "r1"; }, 20s), amb.output());
    // The server offers more than the memory bound in total (16 MiB per attempt before the client gives up).
    CHECK_MESSAGE(
        amb::test::wait_until([&] { return etcd.hostile_bytes_sent() > 1u * memory_offered_kb * 1024; }, 40s, 100ms),
        amb.output());
    MESSAGE("the hostile watch offered " << etcd.hostile_bytes_sent() / (1024 * 1024) << " MiB");
    const std::string line = "dynamic-etcd-amb: warning: watch /services/" + service + "/ at " + etcd.url() +
                             ": a message longer than 16 MiB (catching up from revision ";
    CHECK_MESSAGE(amb::test::count_lines_with(amb.output(), line) >= 2, amb.output());
    check_bounded(amb.process);
    CHECK(amb::test::who_via(amb.port) == "r1");
    // Real again: the watch catches up with a change made meanwhile.
    etcd.become_real();
    sv.etcd.etcdctl({"put", "/services/" + service + "/b", sv.r2.json()});
    sv.etcd.etcdctl({"del", "/services/" + service + "/a"});
    CHECK_MESSAGE(amb::test::wait_until([&] { return amb::test::who_via(amb.port) == "r2"; }, 20s), amb.output());
  }
}

TEST_CASE("dynamic-etcd-amb against an etcd that accepts and never answers: a timeout line, low CPU, recovers") {
  auto& sv = servers();
  const std::string service = "hostile-stall-" + std::to_string(++service_counter);
  sv.etcd.etcdctl({"put", "/services/" + service + "/a", sv.r1.json()});
  hostile_server etcd(hostile_act::relay);
  etcd.relay_to_tcp(sv.etcd_port());
  etcd.on("/v3/kv/range", hostile_act::stall);
  dynamic_amb amb(etcd.url(), service);
  check_bounded(amb.process, 2s);  // while it waits for the reply
  const std::string failed = "dynamic-etcd-amb: warning: watch /services/" + service + "/: reading the prefix failed: ";
  REQUIRE_MESSAGE(amb::test::wait_until([&] { return amb::test::count_lines_with(amb.output(), failed) >= 1; }, 30s),
                  amb.output());
  auto line = amb::test::lines_with(amb.output(), failed).at(0);
  CHECK_MESSAGE(line.find(etcd.url()) != std::string::npos, line);
  CHECK_MESSAGE(line.find("timed out") != std::string::npos, line);
  // (Headers, then a stall mid-body: the library cases above and docker-register's start case below.)
  etcd.become_real();
  CHECK_MESSAGE(amb::test::wait_until([&] { return amb::test::who_via(amb.port) == "r1"; }, 20s), amb.output());
}

namespace {
/// docker-register against `engine_url` (etcd from servers()), with a clean environment.
amb::test::child_process start_register(const std::string& etcd_url, const std::string& engine_url,
                                        std::vector<std::string> args) {
  std::vector<std::string> argv{
      AMB_DOCKER_REGISTER_BIN, "--etcd", etcd_url, "--docker", engine_url, "--ip", "127.0.0.1"};
  argv.insert(argv.end(), args.begin(), args.end());
  amb::test::child_process::options o;
  o.unset_env = {"DOCKER_HOST", "ETCDCTL_ENDPOINTS", "HOST_IP"};
  return amb::test::child_process(argv, o);
}

/// One podman API service for the docker-register cases.
amb::test::podman_service& shared_podman() {
  static amb::test::podman_service podman;
  return podman;
}
}  // namespace

TEST_CASE("docker-register at start against a hostile engine (unix and tcp): exit 1 with one clear line") {
  auto& sv = servers();
  socket_dir dir;
  struct start_case {
    hostile_act act;
    bool unix_socket;
    std::string says;
  };
  const start_case cases[] = {
      {hostile_act::endless_headers, true, "not a Docker Engine API (GET /_ping: HTTP header block too large)"},
      {hostile_act::huge_chunk, false, "not a Docker Engine API (GET /_ping: chunk too large)"},
      {hostile_act::endless_status_line, false, "not a Docker Engine API (GET /_ping: HTTP header block too large)"},
      {hostile_act::endless_chunk_size_line, true, "not a Docker Engine API (GET /_ping: HTTP line too long)"},
      {hostile_act::stall_mid_body, true, "read response: timed out"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.says);
    hostile_server engine(c.act, c.unix_socket ? dir.path("engine.sock") : "");
    const std::string url = c.unix_socket ? engine.url() : engine.tcp_url();
    // --engine-wait 0: a timeout ends it at once (the default asks again, next case).
    auto p = start_register(sv.etcd.url(0), url, {"--all", "--engine-wait", "0"});
    if (c.act == hostile_act::stall_mid_body) check_bounded(p, 2s);  // while it waits
    const int status = p.wait(30s);
    const std::string out = p.output();
    CHECK_MESSAGE(status == 1, out);
    auto lines = amb::test::lines_with(out, "docker-register: error: cannot use the container engine: ");
    REQUIRE_MESSAGE(lines.size() == 1, out);
    CHECK_MESSAGE(lines[0].find(c.says) != std::string::npos, lines[0]);
    // A tcp:// engine is named as http://, the way it is spoken to.
    CHECK_MESSAGE(lines[0].find(engine.url()) != std::string::npos, lines[0]);
  }
}

TEST_CASE("docker-register at start against an engine that times out: asks again, then follows it once it answers") {
  auto& sv = servers();
  auto& podman = shared_podman();
  socket_dir dir;
  hostile_server engine(hostile_act::relay, dir.path("engine.sock"));
  engine.relay_to_unix(podman.socket_path());
  engine.on("/_ping", hostile_act::stall_mid_body);
  auto p = start_register(sv.etcd.url(0), engine.url(), {"--all", "--explicit", "--hostname", "slow"});
  const std::string slow = "docker-register: warning: the container engine is slow to answer: ";
  REQUIRE_MESSAGE(amb::test::wait_until([&] { return amb::test::count_lines_with(p.output(), slow) >= 1; }, 30s),
                  p.output());
  const auto line = amb::test::lines_with(p.output(), slow).at(0);
  CHECK_MESSAGE(line.find("GET /_ping") != std::string::npos, line);
  CHECK_MESSAGE(line.find("read response: timed out; asking again in 1s") != std::string::npos, line);
  CHECK(p.running());
  engine.become_real();
  CHECK_MESSAGE(amb::test::wait_until(
                    [&] {
                      return p.output().find("docker-register: engine at " + engine.url() + ": version ") !=
                             std::string::npos;
                    },
                    30s),
                p.output());
  CHECK(p.output().find("cannot use the container engine") == std::string::npos);
  CHECK(p.running());
}

TEST_CASE(
    "docker-register following a hostile /events (unix and tcp): one line, bounded, back when the engine is real") {
  auto& sv = servers();
  auto& podman = shared_podman();
  socket_dir dir;
  struct events_case {
    hostile_act act;
    bool unix_socket;
    std::string says;
  };
  const events_case cases[] = {
      {hostile_act::huge_chunk, true,
       ": an event line longer than 1 MiB; reconnecting (every 1s, up to 8s while it keeps failing)"},
      {hostile_act::endless_json_line, false,
       ": an event line longer than 1 MiB; reconnecting (every 1s, up to 8s while it keeps failing)"},
      {hostile_act::stall, false,
       ": read response: timed out; reconnecting (every 1s, up to 8s while it keeps failing)"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.says);
    hostile_server engine(hostile_act::relay, c.unix_socket ? dir.path("engine.sock") : "");
    engine.relay_to_unix(podman.socket_path());
    engine.on("/events", c.act);
    const std::string url = c.unix_socket ? engine.url() : engine.tcp_url();
    auto p = start_register(sv.etcd.url(0), url, {"--all", "--explicit", "--hostname", "hostile"});
    const std::string failed = "docker-register: warning: events stream: ";
    REQUIRE_MESSAGE(amb::test::wait_until([&] { return amb::test::count_lines_with(p.output(), failed) >= 1; }, 30s),
                    p.output());
    auto line = amb::test::lines_with(p.output(), failed).at(0);
    CHECK_MESSAGE(line.find(engine.url()) != std::string::npos, line);
    CHECK_MESSAGE(line.find(c.says) != std::string::npos, line);
    check_bounded(p, 2s);
    // The engine answers pings but breaks every /events: the retries back off (1 s, 2 s, 4 s, 8 s), so
    // 5 s after the first failure there are at most 3 failure lines (one a second would make 6).
    std::this_thread::sleep_for(3s);
    CHECK_MESSAGE(amb::test::count_lines_with(p.output(), failed) <= 3, p.output());
    MESSAGE("the hostile engine offered " << engine.hostile_bytes_sent() / 1024 << " kB");
    engine.become_real();
    // The stream cut by become_real() may log once more; then it holds (no new failure line within two
    // retry periods) and the engine is followed again.
    std::this_thread::sleep_for(1500ms);
    const auto failures = amb::test::count_lines_with(p.output(), failed);
    std::this_thread::sleep_for(2200ms);
    CHECK_MESSAGE(amb::test::count_lines_with(p.output(), failed) == failures, p.output());
    CHECK_MESSAGE(p.output().find("docker-register: events stream at " + engine.url() + " back; resuming from time ") !=
                      std::string::npos,
                  p.output());
    CHECK(p.running());
  }
}

TEST_CASE("docker-register against a hostile etcd: the lease keeper logs, retries with backoff, recovers") {
  auto& sv = servers();
  auto& podman = shared_podman();
  for (auto act : {hostile_act::endless_headers, hostile_act::huge_chunk}) {
    hostile_server etcd(hostile_act::relay);
    etcd.relay_to_tcp(sv.etcd_port());
    etcd.on("/v3/lease/grant", act);
    auto p = start_register(etcd.url(), podman.url(),
                            {"--all", "--explicit", "--hostname", "hostile", "--log-level", "debug"});
    REQUIRE_MESSAGE(
        amb::test::wait_until([&] { return amb::test::count_lines_with(p.output(), "; retrying in ") >= 2; }, 30s),
        p.output());
    auto lines = amb::test::lines_with(p.output(), "; retrying in ");
    CHECK_MESSAGE(lines[0].find(etcd.url()) != std::string::npos, lines[0]);
    CHECK_MESSAGE(lines[0].find(act == hostile_act::huge_chunk ? "chunk too large" : "HTTP header block too large") !=
                      std::string::npos,
                  lines[0]);
    check_bounded(p, 2s);
    etcd.become_real();
    CHECK_MESSAGE(amb::test::wait_until([&] { return p.output().find(" granted, TTL ") != std::string::npos; }, 30s),
                  p.output());
  }
}

}  // namespace hostile_servers_test
