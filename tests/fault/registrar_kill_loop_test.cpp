// SPDX-License-Identifier: MIT
// Fault: docker-register killed with SIGKILL and restarted 12 times (50 in `make soak`) while real
// containers stop and start; afterwards etcd holds exactly the live containers' published ports once the dead
// registrars' leases have expired: nothing stale, nothing missing, no duplicates.
#include "support/fault_registrar.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <random>
#include <thread>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace registrar_kill_loop_test {

using namespace amb::test;

namespace {

/// Number of leases etcd holds ("found N leases"); -1 when etcdctl fails.
int lease_count(etcd_cluster& etcd) {
  auto r = etcd.etcdctl_result({"lease", "list"});
  auto at = r.output.find("found ");
  if (r.status != 0 || at == std::string::npos) return -1;
  return std::stoi(r.output.substr(at + 6));
}

}  // namespace

TEST_CASE("registrar SIGKILL loop: kills while containers stop and start; etcd ends with exactly the live ones") {
  // `make test` runs a bounded slice; `make soak` (AMB_SOAK=1) the long run.
  const int kills = std::getenv("AMB_SOAK") ? 50 : 10;  // 10: the checks below still ask for >= 1
  podman_service podman;
  etcd_cluster etcd;
  const std::string pid = std::to_string(::getpid());
  const std::string stem = "amb-test-" + pid + "-";
  const std::string host = "kill-loop-" + pid;
  const std::string service = "killed-" + pid;
  const std::string dir = "/services/" + service + "/";

  std::vector<std::string> names;
  std::vector<bool> running;
  for (int i = 0; i < 5; ++i) {
    names.push_back(podman.unique_name("k" + std::to_string(i)));
    podman.run_container(names.back(), {"-p", "127.0.0.1::80", "--label", "SERVICE_NAME=" + service},
                         {"httpd", "-f", "-p", "80"});
    running.push_back(true);
  }
  // The truth, from podman ps: one key per running container's published port 80.
  auto expected = [&] {
    std::map<std::string, std::string> want;
    for (const auto& [name, port] : running_containers(podman, stem, 80))
      want[dir + host + ":" + name + ":80"] = loopback_value(port);
    return want;
  };
  auto registered = [&] { return registrations_matching(etcd, dir, ":" + stem); };

  // Containers stop and start on their own clock (a thread), so changes land at every moment of a
  // registrar's life: before it lists, while it follows events, and while none runs.
  std::atomic<bool> done{false};
  std::atomic<std::size_t> changes{0};
  std::string change_error;
  std::thread changer([&] {
    std::mt19937 rng(80);  // fixed seed: the same sequence of changes on every run
    try {
      while (!done) {
        std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % 1200));
        if (done) break;
        const std::size_t i = rng() % names.size();
        if (running[i])
          podman.podman_ok({"stop", "-t", "0", names[i]});
        else
          podman.podman_ok({"start", names[i]});
        running[i] = !running[i];
        ++changes;
      }
    } catch (const std::exception& e) {
      change_error = e.what();
    }
  });

  const std::vector<std::string> args{"--all", "--ttl", "2s", "--hostname", host};
  std::mt19937 rng(8);          // fixed seed: the same kill times on every run
  std::size_t left_behind = 0;  // kills after which etcd still held keys of the dead registrars
  for (int kill = 0; kill < kills; ++kill) {
    auto reg = start_docker_register(etcd, podman.url(), args);
    // The scenario's pace, not an assertion: every other registrar is killed at a random moment of
    // its start (podman's /version alone takes about a second), the others a random while after
    // their first registration, whatever the machine's load.
    if (kill % 2 == 1) wait_until([&] { return reg.output().find("registered " + dir) != std::string::npos; }, 15s);
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % (kill % 2 == 1 ? 300 : 1000)));
    INFO("kill ", kill, ": ", reg.output());
    REQUIRE(reg.running());  // it had not stopped on its own
    reg.stop();              // SIGKILL by PID: no revoke, its keys stay until the lease's TTL
    if (!registered().empty()) ++left_behind;
  }
  done = true;
  changer.join();
  REQUIRE(change_error.empty());
  // One more change of each kind while no registrar runs: a key written under a dead lease whose
  // container is gone (must expire), and a container no registrar has seen start (must appear).
  std::size_t stopped = names.size();
  for (std::size_t i = 0; i < names.size() && stopped == names.size(); ++i)
    if (running[i]) {
      podman.podman_ok({"stop", "-t", "0", names[i]});
      running[i] = false;
      stopped = i;
    }
  for (std::size_t i = 0, started = 0; i < names.size() && started < 2; ++i)
    if (!running[i] && i != stopped) {
      podman.podman_ok({"start", names[i]});
      running[i] = true;
      ++started;
    }
  MESSAGE(changes.load(), " container changes during the loop; etcd held keys after ", left_behind, " of ", kills,
          " kills");
  CHECK(changes >= static_cast<std::size_t>(kills) / 5);
  CHECK(left_behind >= static_cast<std::size_t>(kills) / 10);  // kills did leave registrations for the TTL to clean up

  auto last = start_docker_register(etcd, podman.url(), args);
  const auto want = expected();
  INFO("expected:\n", show(want));
  CHECK(want.size() >= 2);
  CHECK(want.size() < names.size());
  CHECK(wait_until([&] { return registered() == want; }, 20s));
  // The dead registrars' leases expire (TTL 2s): only the live registrar's lease is left...
  CHECK(wait_until([&] { return lease_count(etcd) == 1; }, 15s));
  // ... and the registry still holds exactly the live containers, each once, with its port.
  const auto have = registered();
  INFO("etcd holds:\n", show(have));
  CHECK(have == want);
  // Nothing else of ours anywhere in the registry (no key under another service or host name).
  std::size_t ours = 0;
  for (const auto& [k, v] : etcd_prefix(etcd, "/"))
    if (k.find(":" + stem) != std::string::npos && k.find(host) != std::string::npos) ++ours;
  CHECK(ours == want.size());
  // Every one of them hangs off the live lease (a key without a lease would never expire).
  const auto lease = etcd.etcdctl({"lease", "list"});
  const auto id = lease.substr(lease.find('\n') + 1, lease.find('\n', lease.find('\n') + 1) - lease.find('\n') - 1);
  const auto attached = etcd.etcdctl({"lease", "timetolive", id, "--keys"});
  INFO("lease ", id, ": ", attached);
  for (const auto& [k, v] : want) CHECK(attached.find(k) != std::string::npos);
  INFO("last registrar: ", last.output());
  CHECK(last.running());
  CHECK(count_lines(last.output(), "error") == 0);
}

}  // namespace registrar_kill_loop_test
