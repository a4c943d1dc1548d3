// SPDX-License-Identifier: MIT
// Fault: the engine's API service (podman system service) stopped and started again by PID, several
// times, while containers stop, start, and are removed and re-created under the same name, some of
// it while the socket is down. docker-register in automatic and in seed mode converges to what
// podman ps says, and logs one line per outage (and one when the engine is back), not a flood.
#include "support/fault_registrar.hpp"

#include <doctest/doctest.h>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace engine_restart_test {

using namespace amb::test;

TEST_CASE("engine API restarted while containers change: --all and seed mode converge, one line per outage") {
  podman_service podman;
  etcd_cluster etcd;
  const std::string pid = std::to_string(::getpid());
  const std::string stem = "amb-test-" + pid + "-";
  const std::string host = "engine-" + pid;
  const std::string service = "engine-" + pid;
  const std::string dir = "/services/" + service + "/";
  const std::string seed_service = "engine-seed-" + pid;
  const std::string seed_dir = "/services/" + seed_service + "/";
  const std::vector<std::string> labelled{"-p", "127.0.0.1::80", "--label", "SERVICE_NAME=" + service};
  const std::vector<std::string> httpd{"httpd", "-f", "-p", "80"};

  std::vector<std::string> names;
  for (int i = 0; i < 4; ++i) {
    names.push_back(podman.unique_name("e" + std::to_string(i)));
    podman.run_container(names.back(), labelled, httpd);
  }
  auto late = podman.unique_name("late");  // created during an outage
  auto seeded = podman.unique_name("seeded");
  podman.run_container(seeded, {"-p", "127.0.0.1::80"}, httpd);

  // Default resync (30s): convergence must come from the reconnect, not from a periodic re-read.
  auto automatic = start_docker_register(etcd, podman.url(), {"--all", "--ttl", "2s", "--hostname", host});
  auto seed = start_docker_register(etcd, podman.url(), {"--ttl", "2s", seeded, "80", seed_service});

  // The truth, from podman ps.
  auto want_auto = [&] {
    std::map<std::string, std::string> want;
    for (const auto& [name, port] : running_containers(podman, stem, 80))
      if (name != seeded) want[dir + host + ":" + name + ":80"] = loopback_value(port);
    return want;
  };
  auto want_seed = [&] {
    std::map<std::string, std::string> want;
    auto live = running_containers(podman, stem, 80);
    if (live.count(seeded)) want[seed_dir + seeded] = loopback_value(live[seeded]);
    return want;
  };
  auto have_auto = [&] { return registrations_matching(etcd, dir, ":" + stem); };
  auto have_seed = [&] { return registrations_matching(etcd, seed_dir, stem); };
  auto converged = [&](const char* when) {
    const auto wa = want_auto(), ws = want_seed();
    INFO(when, "\nexpected (automatic):\n", show(wa), "expected (seed):\n", show(ws));
    const bool ok = wait_until([&] { return have_auto() == wa && have_seed() == ws; }, 30s, 100ms);
    INFO("etcd holds (automatic):\n", show(have_auto()), "etcd holds (seed):\n", show(have_seed()));
    INFO("docker-register --all:\n", automatic.output(), "\ndocker-register (seed):\n", seed.output());
    CHECK(ok);
    return ok;
  };
  REQUIRE(converged("at start"));

  // Each outage: the service goes (SIGTERM by PID: every client sees its connections end), the
  // containers change through the podman CLI (which needs no service), the service comes back on
  // the same socket, then one more change while it is up.
  struct outage {
    std::vector<std::vector<std::string>> while_down;
    std::vector<std::vector<std::string>> while_up;
  };
  const std::vector<outage> outages{
      {{{"stop", "-t", "0", names[0]}, {"stop", "-t", "0", seeded}}, {{"stop", "-t", "0", names[1]}}},
      // Removed and re-created under the same name: a new id, a new host port, the same key.
      {{{"rm", "-f", "-t", "0", names[2]}, {"run", "-d", "--name", names[2]}, {"start", names[0]}},
       {{"start", seeded}}},
      {{{"run", "-d", "--name", late}, {"start", names[1]}, {"stop", "-t", "0", seeded}},
       {{"rm", "-f", "-t", "0", names[3]}}},
      {{{"stop", "-t", "0", late},
        {"start", seeded},
        {"rm", "-f", "-t", "0", names[2]},
        {"run", "-d", "--name", names[2]}},
       {{"run", "-d", "--name", names[3]}}},
  };
  auto podman_do = [&](std::vector<std::string> args) {
    if (args[0] == "run") {  // run -d --name N: the labelled httpd container
      args.insert(args.end(), labelled.begin(), labelled.end());
      args.push_back(podman_service::image);
      args.insert(args.end(), httpd.begin(), httpd.end());
    }
    podman.podman_ok(args);
  };
  int n = 0;
  for (const auto& o : outages) {
    ++n;
    podman.stop();
    for (const auto& args : o.while_down) podman_do(args);
    podman.restart();  // already stopped: this starts it again
    REQUIRE(converged(("after outage " + std::to_string(n)).c_str()));
    for (const auto& args : o.while_up) podman_do(args);
    REQUIRE(converged(("after a change that followed outage " + std::to_string(n)).c_str()));
  }
  CHECK(automatic.running());
  CHECK(seed.running());

  // One clear line per outage when the events stream breaks, one when it is back; the engine
  // failing for the other calls is said at most once per outage too. No flood. Besides the test's
  // outages, an engine too slow to answer in time on a loaded machine is an outage of its own
  // ("GET /version ...: timed out; reconnecting", seen in CI): those are counted, not forbidden.
  const std::size_t outages_n = outages.size();
  for (auto* reg : {&automatic, &seed}) {
    const auto log = reg->output();
    INFO(log);
    const auto broke = count_lines(log, "reconnecting");
    CHECK(broke >= outages_n);
    CHECK(broke <= outages_n + count_lines(log, "timed out; reconnecting"));
    CHECK(count_lines(log, "back; resuming") == broke);  // each outage: one line as it starts, one as it ends
    CHECK(count_lines(log, "events stream") == 2 * broke);
    CHECK(count_lines(log, "retrying every") <= broke);
    CHECK(count_lines(log, "error") == 0);
  }
  // The automatic registrar: one line per change it made, none for a container re-created under
  // the same name (its key moved to the new id), none repeated: 4 removals (e0, e1, e3, late) and
  // 10 registrations (4 at start, then e0, e2, late, e1, e2, e3).
  const auto auto_log = automatic.output();
  INFO(auto_log);
  CHECK(count_lines(auto_log, "removed " + dir) == 4);
  CHECK(count_lines(auto_log, "registered " + dir) == 10);
  // A call that fails during an outage says so once more (at most once per outage), and once back.
  CHECK(count_lines(auto_log, "keeping the registrations") <= outages_n);
  CHECK(count_lines(auto_log, "answers again") == count_lines(auto_log, "keeping the registrations"));
  CHECK(count_lines(auto_log, "warning") <= 2 * outages_n);
  // The seed registrar: one line per state change of its container (registered at start, stopped
  // twice, back twice).
  const auto seed_log = seed.output();
  INFO(seed_log);
  CHECK(count_lines(seed_log, "is not running") == 2);
  CHECK(count_lines(seed_log, "registered " + seed_dir) == 3);
  CHECK(count_lines(seed_log, "keeping the registration") <= outages_n);
  CHECK(count_lines(seed_log, "warning") <= 2 * outages_n);
  CHECK(line_count(seed_log) <= 3 + 5 + 4 * outages_n);  // start, its 5 changes, down and back per outage

  automatic.signal(SIGTERM);
  seed.signal(SIGTERM);
  CHECK(automatic.wait(10s) == 0);
  CHECK(seed.wait(10s) == 0);
  CHECK(have_auto().empty());
  CHECK(have_seed().empty());
}

}  // namespace engine_restart_test
