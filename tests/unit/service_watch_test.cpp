// SPDX-License-Identifier: MIT
// Unit tests for include/amb/service_watch.hpp: snapshots and events applied to a balancer.
#include <amb/service_watch.hpp>

#include "support/stderr_capture.hpp"

#include <doctest/doctest.h>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace service_watch_test {

namespace {
// The instance lines are the program's business; keep the test output readable.
const bool quiet = (amb::log::set_level(amb::log::level::off), true);

amb::etcd_kv kv(std::string key, std::string value, std::int64_t rev) {
  amb::etcd_kv k;
  k.key = std::move(key);
  k.value = std::move(value);
  k.mod_revision = rev;
  return k;
}
amb::etcd_event put(std::string key, std::string value, std::int64_t rev) {
  return {amb::etcd_event::kind::put, kv(std::move(key), std::move(value), rev), std::nullopt};
}
amb::etcd_event del(std::string key, std::int64_t rev) {
  return {amb::etcd_event::kind::del, kv(std::move(key), "", rev), std::nullopt};
}
}  // namespace

TEST_CASE("service directory") {
  CHECK(amb::service_directory("/services", "redis-A") == "/services/redis-A/");
  CHECK(amb::service_directory("/services/", "redis-A") == "/services/redis-A/");
  CHECK(amb::service_directory("services", "/redis-A/") == "/services/redis-A/");
  CHECK(amb::service_directory("/", "redis-A") == "/redis-A/");
  CHECK(amb::service_directory("", "x") == "/x/");
}

TEST_CASE("snapshot, then events; bad values skipped; changes reported once") {
  amb::balancer b;
  int changes = 0;
  amb::service_instances s(b, [&] { ++changes; });
  CHECK_FALSE(s.ready());
  s.apply_snapshot(10, {kv("/s/x/a", R"({"host":"10.0.0.1","port":1})", 3), kv("/s/x/bad", "garbage", 4),
                        kv("/s/x/b", "10.0.0.2:2", 5)});
  CHECK(s.ready());
  CHECK(s.revision() == 10);
  CHECK(b.size() == 2);
  CHECK(s.bad_keys().count("/s/x/bad") == 1);
  CHECK(changes == 1);

  // A heartbeat (same value) changes nothing; a weight change does.
  s.apply_events({put("/s/x/a", R"({"host":"10.0.0.1","port":1})", 11)});
  CHECK(changes == 1);
  s.apply_events({put("/s/x/a", R"({"host":"10.0.0.1","port":1,"weight":4})", 12)});
  CHECK(changes == 2);
  CHECK(b.get("/s/x/a")->weight == 4);

  // A key whose value turns bad is removed; fixing it brings it back.
  s.apply_events({put("/s/x/b", "nonsense", 13)});
  CHECK(b.get("/s/x/b") == nullptr);
  CHECK(s.bad_keys().count("/s/x/b") == 1);
  s.apply_events({put("/s/x/b", "10.0.0.3:3", 14)});
  CHECK(b.get("/s/x/b")->address == amb::host_port{"10.0.0.3", 3});
  CHECK(s.bad_keys().count("/s/x/b") == 0);

  // Deleting a bad key forgets it.
  s.apply_events({del("/s/x/bad", 15)});
  CHECK(s.bad_keys().empty());
  CHECK(s.revision() == 15);
}

TEST_CASE("several events of one transaction share a revision: all applied") {
  amb::balancer b;
  amb::service_instances s(b);
  s.apply_snapshot(5, {kv("/s/x/a", "10.0.0.1:1", 2), kv("/s/x/b", "10.0.0.2:1", 3)});
  s.apply_events({del("/s/x/a", 6), del("/s/x/b", 6)});
  CHECK(b.empty());
}

TEST_CASE("events already covered by a newer snapshot (SIGHUP) are skipped") {
  amb::balancer b;
  amb::service_instances s(b);
  s.apply_snapshot(5, {kv("/s/x/a", "10.0.0.1:1", 2)});
  // SIGHUP re-read at revision 9 saw a deleted and c added...
  s.apply_snapshot(9, {kv("/s/x/c", "10.0.0.3:1", 8)});
  // ...then the watch, which was behind, delivers the older events: they must not resurrect a.
  s.apply_events({put("/s/x/a", "10.0.0.1:2", 6), del("/s/x/a", 7), put("/s/x/c", "10.0.0.3:1", 8)});
  s.apply_events({put("/s/x/a", "10.0.0.1:2", 6)});
  CHECK(b.size() == 1);
  CHECK(b.get("/s/x/c") != nullptr);
  s.apply_events({put("/s/x/d", "10.0.0.4:1", 10)});
  CHECK(b.size() == 2);
}

TEST_CASE("a snapshot after reconnect removes what was deleted meanwhile") {
  amb::balancer b;
  amb::service_instances s(b);
  amb::etcd_watch_update first;
  first.type = amb::etcd_watch_update::kind::snapshot;
  first.revision = 3;
  first.kvs = {kv("/s/x/a", "10.0.0.1:1", 2), kv("/s/x/b", "10.0.0.2:1", 3)};
  s.apply(first);
  amb::etcd_watch_update again = first;
  again.revision = 20;
  again.kvs = {kv("/s/x/b", "10.0.0.2:1", 3)};
  s.apply(again);
  CHECK(b.size() == 1);
  CHECK(b.get("/s/x/a") == nullptr);
  amb::etcd_watch_update progress;
  progress.type = amb::etcd_watch_update::kind::progress;
  progress.revision = 25;
  s.apply(progress);
  CHECK(s.revision() == 25);
}

TEST_CASE("keys that are not <directory><instance-id> are ignored: nested keys, empty ids") {
  CHECK(amb::instance_key_problem("/s/x/", "/s/x/a") == "");
  CHECK(amb::instance_key_problem("/s/x/", "/s/x/a/b") == "a '/' after /s/x/");
  CHECK(amb::instance_key_problem("/s/x/", "/s/x/") == "empty instance id");
  CHECK(amb::instance_key_problem("", "/s/x/a/b") == "");
  amb::balancer b;
  amb::service_instances s(b, {}, amb::service_instances::logging::on, "/s/x/");
  s.apply_snapshot(10, {kv("/s/x/", "10.0.0.9:9", 3), kv("/s/x/a", "10.0.0.1:1", 4), kv("/s/x/a/b", "10.0.0.8:8", 5)});
  CHECK(b.size() == 1);
  CHECK(b.get("/s/x/a") != nullptr);
  CHECK(s.ignored_keys() == std::set<std::string>{"/s/x/", "/s/x/a/b"});
  s.apply_events({put("/s/x/c/d", "10.0.0.7:7", 11), put("/s/x/", "10.0.0.6:6", 12)});
  CHECK(b.size() == 1);
  CHECK(s.ignored_keys().size() == 3);
  s.apply_events({del("/s/x/c/d", 13)});
  CHECK(s.ignored_keys().size() == 2);
  // A snapshot (SIGHUP) keeps ignoring them.
  s.apply_snapshot(14, {kv("/s/x/", "10.0.0.9:9", 12), kv("/s/x/a", "10.0.0.1:1", 4)});
  CHECK(b.size() == 1);
  CHECK(s.ignored_keys() == std::set<std::string>{"/s/x/"});
}

TEST_CASE("draining reaches the balancer, with one line per state change; every instance draining is said once") {
  amb::balancer b;
  int changes = 0;
  amb::service_instances s(b, [&] { ++changes; });
  amb::log::set_level(amb::log::level::info);
  std::string out = amb::test::stderr_of([&] {
    s.apply_snapshot(10, {kv("/s/x/a", R"({"host":"10.0.0.1","port":1})", 3), kv("/s/x/b", "10.0.0.2:2", 4)});
    amb::connection_slot one(b.get("/s/x/a")), two(b.get("/s/x/a"));
    s.apply_events({put("/s/x/a", R"({"host":"10.0.0.1","port":1,"draining":true})", 11)});
    s.apply_events({put("/s/x/a", R"({"host":"10.0.0.1","port":1,"draining":true})", 12)});  // heartbeat
    s.apply_events({put("/s/x/a", R"({"host":"10.0.0.1","port":1})", 13)});
    s.apply_events({put("/s/x/b", R"({"host":"10.0.0.2","port":2,"weight":0})", 14)});
    s.apply_events({put("/s/x/a", R"({"host":"10.0.0.1","port":1,"weight":0})", 15)});
    s.apply_events({put("/s/x/c\n", R"({"host":"10.0.0.3","port":3,"draining":true})", 16)});
    s.apply_events({put("/s/x/a", R"({"host":"10.0.0.1","port":1,"draining":"yes"})", 17)});
    s.apply_events({put("/s/x/b", "10.0.0.2:2", 18)});
  });
  amb::log::set_level(amb::log::level::off);
  auto count = [&](const std::string& needle) {
    std::size_t n = 0;
    for (auto p = out.find(needle); p != std::string::npos; p = out.find(needle, p + 1)) ++n;
    return n;
  };
  CAPTURE(out);
  // twice: "draining":true, then (after a return) weight 0; the two connections stay open all along
  CHECK(count("instance /s/x/a (10.0.0.1:1) draining: no new connections; 2 open connections kept\n") == 2);
  CHECK(count("instance /s/x/a (10.0.0.1:1) no longer draining: takes new connections\n") == 1);
  CHECK(count("instance /s/x/b (10.0.0.2:2) draining: no new connections; 0 open connections kept\n") == 1);
  CHECK(count("every instance of the service is draining (2 instances): new connections still go to them, as no "
              "other instance can take them\n") == 1);
  CHECK(count("instance /s/x/c\\n added: 10.0.0.3:3 (draining: no new connections)\n") == 1);  // escaped
  CHECK(count("skipping /s/x/a: bad registry value") == 1);
  CHECK(count("bad draining \"yes\" (expected true or false, without quotes)") == 1);
  CHECK(count("instance /s/x/b (10.0.0.2:2) no longer draining: takes new connections\n") == 1);
  CHECK(count("an instance of the service takes new connections again: draining instances get none\n") == 1);
  CHECK(count("instance /s/x/a removed (was 10.0.0.1:1)\n") == 1);
  CHECK(count("\n") == 12);
  CHECK(b.size() == 2);  // a's value turned bad: removed
  CHECK(b.get("/s/x/c\n")->draining);
  CHECK_FALSE(b.get("/s/x/b")->draining);
  CHECK(b.draining() == 1);
}

}  // namespace service_watch_test
