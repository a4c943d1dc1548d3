// SPDX-License-Identifier: MIT
// The etcd client on a 3-member cluster (failover) and with auth enabled (tokens that expire).
#include <amb/etcd_client.hpp>
#include <amb/etcd_lease_keeper.hpp>
#include <amb/etcd_watch.hpp>

#include "support/etcd_async.hpp"
#include "support/etcd_server.hpp"

#include <doctest/doctest.h>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace etcd_cluster_test {

using namespace std::chrono_literals;
using amb::etcd_event;
using amb::etcd_watch_update;
using amb::test::etcd_cluster;
using amb::test::io_runner;
using amb::test::watch_event_log;

namespace {

amb::etcd_client_options client_options(const std::string& endpoints) {
  auto o = amb::test::etcd_options(endpoints);
  o.request_timeout = 3s;
  o.connect_timeout = 1s;
  o.retry_backoff = 100ms;
  o.retry_backoff_max = 500ms;
  o.retry_rounds = 3;
  return o;
}

amb::etcd_watch_options fast_watch() {
  amb::etcd_watch_options o;
  o.retry_backoff = 100ms;
  o.retry_backoff_max = 500ms;
  o.silence_timeout = 5s;
  return o;
}

}  // namespace

TEST_CASE("3-member cluster: kill the member the client talks to; puts, gets, keepalives and the watch go on") {
  etcd_cluster etcd(3, {"--experimental-watch-progress-notify-interval=1s"});
  asio::io_context io;
  amb::etcd_client client(io.get_executor(), client_options(etcd.endpoints()));  // member 0 first
  amb::etcd_watcher watcher(client, "/m/", fast_watch());
  amb::etcd_lease_keeper_options ko;
  ko.ttl = 5;
  amb::etcd_lease_keeper keeper(client, ko);
  watch_event_log log;
  io_runner runner(io);
  auto watching = runner.spawn(watcher.run(log.callback()));
  auto keeping = runner.spawn(keeper.run());
  runner.sync(keeper.set("/reg/a", "10.0.0.1:1"));
  std::int64_t lease = 0;
  REQUIRE(amb::test::wait_until(
      [&] {
        bool ok = false;
        runner.post_wait([&] {
          ok = keeper.in_sync();
          lease = keeper.lease_id();
        });
        return ok;
      },
      10s));
  REQUIRE(amb::test::wait_until([&] { return log.snapshots() == 1; }, 10s));

  std::vector<std::string> want;
  for (int i = 0; i < 20; ++i) {
    runner.sync(client.put("/m/a" + std::to_string(i), "x"));
    want.push_back("/m/a" + std::to_string(i));
  }
  REQUIRE(amb::test::wait_until([&] { return log.keys().size() == 20; }, 10s));
  etcd.kill9(0);
  for (int i = 0; i < 20; ++i) {
    runner.sync(client.put("/m/b" + std::to_string(i), "y"));
    want.push_back("/m/b" + std::to_string(i));
  }
  runner.sync(client.erase("/m/a0"));
  want.push_back("-/m/a0");
  auto got = runner.sync(client.get("/m/b19"));
  REQUIRE(got);
  CHECK(got->value == "y");
  REQUIRE(amb::test::wait_until([&] { return log.keys().size() >= want.size(); }, 20s));
  // Keepalives go on through the other members: after more than a TTL the key is still there.
  std::this_thread::sleep_for(6s);
  CHECK(etcd.etcdctl({"get", "--print-value-only", "/reg/a"}) == "10.0.0.1:1\n");
  CHECK(log.keys() == want);
  auto revs = log.revisions();
  CHECK(std::is_sorted(revs.begin(), revs.end()));
  CHECK(std::adjacent_find(revs.begin(), revs.end()) == revs.end());  // no event twice
  std::size_t regrants = 9, reconnects = 0, snapshots = 0;
  std::int64_t lease_now = 0;
  runner.post_wait([&] {
    regrants = keeper.regrants();
    lease_now = keeper.lease_id();
    reconnects = watcher.reconnects();
    snapshots = watcher.snapshots();
    watcher.stop();
    keeper.stop();
  });
  watching.get();
  keeping.get();
  CHECK(regrants == 0);
  CHECK(lease_now == lease);
  CHECK(reconnects >= 1);
  CHECK(snapshots == 1);
  CHECK(client.current_index() != 0);
}

TEST_CASE("auth: token in every request, transparent re-authentication when it expires or the server forgets it") {
  etcd_cluster etcd(1, {"--auth-token-ttl=2", "--experimental-watch-progress-notify-interval=1s"});
  etcd.etcdctl({"user", "add", "root:pw"});
  etcd.etcdctl({"auth", "enable"});
  asio::io_context io;
  auto opts = client_options(etcd.url());
  opts.user = "root";
  opts.password = "pw";
  amb::etcd_client client(io.get_executor(), opts);
  auto bad_opts = opts;
  bad_opts.password = "wrong";
  amb::etcd_client bad(io.get_executor(), bad_opts);
  auto anon_opts = opts;
  anon_opts.user.clear();
  amb::etcd_client anon(io.get_executor(), anon_opts);
  amb::etcd_watcher watcher(client, "/auth/", fast_watch());
  amb::etcd_lease_keeper_options ko;
  ko.ttl = 2;
  amb::etcd_lease_keeper keeper(client, ko);
  watch_event_log log;
  io_runner runner(io);
  const std::vector<std::string> root{"--user=root:pw"};
  auto ctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), root.begin(), root.end());
    return etcd.etcdctl(args);
  };

  try {
    runner.sync(bad.get("/auth/x"));
    FAIL("a wrong password was accepted");
  } catch (const amb::etcd_error& e) {
    CHECK(e.code() == amb::grpc_code::invalid_argument);
    CHECK(std::string(e.what()) == "etcd authenticate as root at " + etcd.url() +
                                       ": etcdserver: authentication failed, invalid user ID or password");
  }
  try {
    runner.sync(anon.get("/auth/x"));
    FAIL("a request without a token was accepted");
  } catch (const amb::etcd_error& e) {
    CHECK(std::string(e.what()) == "etcd get /auth/x at " + etcd.url() + ": etcdserver: user name is empty");
  }

  runner.sync(client.put("/auth/a", "1"));
  CHECK(ctl({"get", "--print-value-only", "/auth/a"}) == "1\n");
  auto watching = runner.spawn(watcher.run(log.callback()));
  auto keeping = runner.spawn(keeper.run());
  runner.sync(keeper.set("/auth/reg", "r"));
  REQUIRE(amb::test::wait_until([&] { return log.snapshots() == 1; }, 10s));
  std::size_t auths = 0;
  runner.post_wait([&] { auths = client.authentications(); });

  // Tokens expire after 2 s unused; other coroutines keep using theirs, so let a fresh client idle.
  amb::etcd_client idle(io.get_executor(), opts);
  runner.sync(idle.get("/auth/a"));
  std::this_thread::sleep_for(3500ms);
  auto a = runner.sync(idle.get("/auth/a"));
  REQUIRE(a);
  CHECK(a->value == "1");
  std::size_t idle_auths = 0;
  runner.post_wait([&] { idle_auths = idle.authentications(); });
  CHECK(idle_auths == 2);  // the expired token was replaced once, transparently

  // A restart forgets every token: the watch, the keeper and plain calls all re-authenticate.
  etcd.kill9();
  etcd.restart();
  runner.sync(client.put("/auth/b", "2"));
  auto seen_b = [&] {
    auto k = log.keys();
    return std::count(k.begin(), k.end(), std::string("/auth/b"));
  };
  REQUIRE(amb::test::wait_until([&] { return seen_b() >= 1; }, 20s));
  std::this_thread::sleep_for(200ms);
  CHECK(seen_b() == 1);
  auto revs = log.revisions();
  CHECK(std::adjacent_find(revs.begin(), revs.end(), std::greater_equal<>()) == revs.end());  // once each, in order
  runner.post_wait([&] { auths = client.authentications() - auths; });
  CHECK(auths >= 1);
  std::this_thread::sleep_for(2500ms);  // more than a TTL: keepalives with the new token hold the key
  CHECK(ctl({"get", "--print-value-only", "/auth/reg"}) == "r\n");
  runner.sync(keeper.revoke());
  CHECK(ctl({"get", "--print-value-only", "/auth/reg"}) == "");
  runner.post_wait([&] { watcher.stop(); });
  watching.get();
  keeping.get();
  runner.post_wait([&] { idle.close(); });
}

}  // namespace etcd_cluster_test
