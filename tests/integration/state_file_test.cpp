// SPDX-License-Identifier: MIT
// dynamic-etcd-amb --state-file against real etcd and redis: the last known set is kept on disk, served
// at once after a restart while etcd is down, and replaced by etcd's when etcd answers; a missing or
// corrupt file is one warning.
#include "support/dynamic_amb.hpp"

#include <amb/instance_state_file.hpp>

#include <doctest/doctest.h>

#include <fstream>
#include <set>
#include <string>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace state_file_test {

using namespace amb::test;

namespace {
/// The keys the state file at `path` holds (none when it cannot be read).
std::set<std::string> keys_in(const std::string& path) {
  std::set<std::string> keys;
  if (auto s = amb::read_instance_state(path))
    for (const auto& kv : s->kvs) keys.insert(kv.first);
  return keys;
}
}  // namespace

TEST_CASE("--state-file: restarted while etcd is down, it serves the last known set at once, then etcd's") {
  etcd_cluster etcd;
  tagged_redis a("a"), b("b");
  temp_dir dir;
  const std::string file = (dir.path() / "redis-A.json").string();
  etcd.etcdctl({"put", "/services/redis-A/a", a.json()});
  {
    ambassador first(etcd.url(), "redis-A", {"--state-file", file});
    CHECK(first.routes_to("a"));
    CHECK(wait_until([&] { return keys_in(file) == std::set<std::string>{"/services/redis-A/a"}; }, 10s));
    CHECK(first.metric("amb_serving_from_state_file") == 0);
  }  // stopped (SIGKILL: the file is all that is left of it)
  // While no ambassador runs, the set in etcd changes; then etcd goes away.
  etcd.etcdctl({"put", "/services/redis-A/b", b.json()});
  etcd.etcdctl({"del", "/services/redis-A/a"});
  etcd.terminate();

  ambassador second(etcd.url(), "redis-A", {"--state-file", file});  // ready: /healthz answers 200
  CHECK(who_via(second.port()) == "a");                              // at once, from the file
  CHECK(second.metric("amb_serving_from_state_file") == 1);
  CHECK(second.healthz().find("ok: serving the last known set from the state file " + file +
                              "; etcd not reached yet") != std::string::npos);
  CHECK_MESSAGE(
      second.count_in_output("; serving the last known set from the state file " + file + ": 1 key at revision ") == 1,
      second.output());

  etcd.restart();
  CHECK_MESSAGE(second.routes_to("b", 30s), second.output());
  CHECK(second.metric("amb_serving_from_state_file") == 0);
  CHECK(second.healthz().find("ok\n") != std::string::npos);
  CHECK(second.count_in_output("etcd reached: its set of 1 key at revision ") == 1);
  CHECK(second.count_in_output("instance /services/redis-A/a removed") == 1);
  // The file follows etcd again.
  CHECK(wait_until([&] { return keys_in(file) == std::set<std::string>{"/services/redis-A/b"}; }, 10s));
}

TEST_CASE("--state-file missing or corrupt while etcd is down: one warning, it runs and waits for etcd") {
  etcd_cluster etcd;
  tagged_redis a("a");
  etcd.etcdctl({"put", "/services/redis-A/a", a.json()});
  etcd.terminate();
  temp_dir dir;
  const std::string corrupt = (dir.path() / "corrupt.json").string();
  std::ofstream(corrupt) << "{\"amb_state\":1,\"kvs\":{\"/services/redis-A/a\":\"\x1b[31m";
  const std::string foreign = (dir.path() / "foreign.json").string();
  std::ofstream(foreign) << R"({"amb_state":1,"directory":"/services/other/","revision":"3","kvs":{}})";
  struct file_case {
    std::string path, says;
  };
  const file_case cases[] = {
      {(dir.path() / "missing.json").string(), "warning: state file " + (dir.path() / "missing.json").string() +
                                                   ": No such file or directory; no last "
                                                   "known set to serve until etcd answers ("},
      {corrupt, "warning: state file " + corrupt + ": not JSON ("},
      {foreign, "warning: state file " + foreign +
                    " holds /services/other/, not /services/redis-A/: not used; no "
                    "last known set to serve until etcd answers"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.path);
    const auto port = free_port();
    child_process p({AMB_DYNAMIC_ETCD_AMB_BIN, "--etcd", etcd.url(), "--listen", "127.0.0.1:" + std::to_string(port),
                     "--state-file", c.path, "redis-A"},
                    {});
    CHECK_MESSAGE(wait_until([&] { return p.output().find(c.says) != std::string::npos; }, 10s), p.output());
    CHECK_MESSAGE(wait_until([&] { return port_open(port); }, 10s), p.output());
    // Not served (nothing known), told why, still running.
    CHECK(who_via(port).empty());
    CHECK(wait_until([&] { return p.output().find("etcd not reached yet") != std::string::npos; }, 10s));
    CHECK(p.running());
    CHECK(count_lines_with(p.output(), "state file") == 1);
    CHECK(p.output().find('\x1b') == std::string::npos);  // the file's bytes never reach the log raw
  }
}

}  // namespace state_file_test
