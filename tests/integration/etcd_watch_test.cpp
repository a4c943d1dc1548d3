// SPDX-License-Identifier: MIT
// etcd_watcher against a real etcd: order, exactly-once across kill -9, compaction snapshots, progress, bad servers.
#include <amb/etcd_client.hpp>
#include <amb/etcd_watch.hpp>

#include "support/etcd_async.hpp"
#include "support/etcd_server.hpp"

#include <doctest/doctest.h>

#include <mutex>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace etcd_watch_test {

using namespace std::chrono_literals;
using amb::etcd_event;
using amb::etcd_watch_update;
using amb::test::etcd_cluster;
using amb::test::io_runner;
using amb::test::scripted_server;

namespace {

amb::etcd_client_options client_options(const std::string& endpoints) {
  auto o = amb::test::etcd_options(endpoints);
  o.request_timeout = 3s;
  return o;
}

amb::etcd_watch_options fast_watch() {
  amb::etcd_watch_options o;
  o.retry_backoff = 100ms;
  o.retry_backoff_max = 500ms;
  o.silence_timeout = 5s;  // etcd runs with a 1 s progress interval here
  return o;
}

// What the watcher delivered, readable from the test thread.
class collector {
public:
  std::function<void(const etcd_watch_update&)> callback() {
    return [this](const etcd_watch_update& u) {
      std::lock_guard<std::mutex> lock(m_);
      updates_.push_back(u);
    };
  }
  std::vector<etcd_event> events() {
    std::lock_guard<std::mutex> lock(m_);
    std::vector<etcd_event> out;
    for (auto& u : updates_)
      for (auto& e : u.events) out.push_back(e);
    return out;
  }
  std::vector<etcd_watch_update> of(etcd_watch_update::kind k) {
    std::lock_guard<std::mutex> lock(m_);
    std::vector<etcd_watch_update> out;
    for (auto& u : updates_)
      if (u.type == k) out.push_back(u);
    return out;
  }
  std::vector<etcd_watch_update> all() {
    std::lock_guard<std::mutex> lock(m_);
    return updates_;
  }

private:
  std::mutex m_;
  std::vector<etcd_watch_update> updates_;
};

struct expected {
  etcd_event::kind type;
  std::string key, value;
};

// Every event exactly once, in order: same sequence, revisions never going back.
void check_sequence(const std::vector<etcd_event>& got, const std::vector<expected>& want) {
  REQUIRE(got.size() == want.size());
  std::int64_t last = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("event " << i << " key " << want[i].key);
    CHECK(got[i].type == want[i].type);
    CHECK(got[i].kv.key == want[i].key);
    if (want[i].type == etcd_event::kind::put) CHECK(got[i].kv.value == want[i].value);
    CHECK(got[i].kv.mod_revision >= last);
    last = got[i].kv.mod_revision;
  }
}

const auto PUT = etcd_event::kind::put;
const auto DEL = etcd_event::kind::del;

}  // namespace

TEST_CASE("watch: a snapshot, then 1000 puts and deletes in order, exactly once") {
  etcd_cluster etcd(1, {"--experimental-watch-progress-notify-interval=1s"});
  etcd.etcdctl({"put", "/w/pre", "before"});
  asio::io_context io;
  amb::etcd_client client(io.get_executor(), client_options(etcd.url()));
  amb::etcd_watcher watcher(client, "/w/", fast_watch());
  collector got;
  io_runner runner(io);
  auto running = runner.spawn(watcher.run(got.callback()));
  REQUIRE(amb::test::wait_until([&] { return !got.of(etcd_watch_update::kind::snapshot).empty(); }, 10s));
  auto snap = got.of(etcd_watch_update::kind::snapshot).front();
  REQUIRE(snap.kvs.size() == 1);
  CHECK(snap.kvs[0].key == "/w/pre");
  CHECK(snap.kvs[0].value == "before");

  std::vector<expected> want;
  // Some by etcdctl: puts and deletes from a shell loop, and one transaction (4 events, one revision).
  std::string script = "set -e\n";
  for (int j = 0; j < 40; ++j) {
    script += "etcdctl put /w/c" + std::to_string(j) + " c" + std::to_string(j) + " >/dev/null\n";
    want.push_back({PUT, "/w/c" + std::to_string(j), "c" + std::to_string(j)});
  }
  for (int j = 0; j < 20; ++j) {
    script += "etcdctl del /w/c" + std::to_string(j) + " >/dev/null\n";
    want.push_back({DEL, "/w/c" + std::to_string(j), ""});
  }
  script += "printf '\\nput /w/t0 t0\\nput /w/t1 t1\\nput /w/t2 t2\\nput /w/t3 t3\\n\\n\\n' | etcdctl txn >/dev/null\n";
  for (int j = 0; j < 4; ++j) want.push_back({PUT, "/w/t" + std::to_string(j), "t" + std::to_string(j)});
  amb::test::child_process::options env;
  env.env["ETCDCTL_API"] = "3";
  env.env["ETCDCTL_ENDPOINTS"] = etcd.url();
  auto r = amb::test::run({"sh", "-c", script}, 120s, env);
  REQUIRE_MESSAGE(r.status == 0, r.output);
  // The rest by our own client (fast): puts, and deletes of keys just written.
  runner.sync([&]() -> asio::awaitable<void> {
    for (int i = 0; want.size() < 1000; ++i) {
      const std::string key = "/w/k" + std::to_string(i % 100);
      if (i % 4 == 3) {
        const std::string prev = "/w/k" + std::to_string((i - 1) % 100);
        co_await client.erase(prev);
        want.push_back({DEL, prev, ""});
      } else {
        co_await client.put(key, "v" + std::to_string(i));
        want.push_back({PUT, key, "v" + std::to_string(i)});
      }
    }
  }());
  REQUIRE(want.size() == 1000);
  REQUIRE(amb::test::wait_until([&] { return got.events().size() >= 1000; }, 60s));
  std::this_thread::sleep_for(200ms);  // anything extra (a duplicate) would show up now
  auto events = got.events();
  check_sequence(events, want);
  // The transaction's four events share one revision.
  auto t0 = std::find_if(events.begin(), events.end(), [](auto& e) { return e.kv.key == "/w/t0"; });
  REQUIRE(t0 != events.end());
  CHECK(t0->kv.mod_revision == (t0 + 3)->kv.mod_revision);
  CHECK(t0->kv.mod_revision + 1 == (t0 + 4)->kv.mod_revision);

  // Progress notifications (1 s here) arrive on a quiet prefix, and a live stream is not torn down.
  REQUIRE(amb::test::wait_until([&] { return got.of(etcd_watch_update::kind::progress).size() >= 2; }, 10s));
  std::size_t reconnects = 99;
  runner.post_wait([&] {
    reconnects = watcher.reconnects();
    watcher.stop();
  });
  running.get();
  CHECK(reconnects == 0);
  CHECK(got.of(etcd_watch_update::kind::progress).back().revision == events.back().kv.mod_revision);
}

TEST_CASE("watch: kill -9 etcd mid-stream, restart, write more: every event once") {
  etcd_cluster etcd(1, {"--experimental-watch-progress-notify-interval=1s"});
  asio::io_context io;
  amb::etcd_client client(io.get_executor(), client_options(etcd.url()));
  amb::etcd_watcher watcher(client, "/k/", fast_watch());
  collector got;
  io_runner runner(io);
  auto running = runner.spawn(watcher.run(got.callback()));
  REQUIRE(amb::test::wait_until([&] { return !got.of(etcd_watch_update::kind::snapshot).empty(); }, 10s));
  std::vector<expected> want;
  for (int i = 0; i < 10; ++i) {
    runner.sync(client.put("/k/a" + std::to_string(i), "1"));
    want.push_back({PUT, "/k/a" + std::to_string(i), "1"});
  }
  REQUIRE(amb::test::wait_until([&] { return got.events().size() == 10; }, 10s));
  etcd.kill9();
  std::this_thread::sleep_for(700ms);  // the watcher fails to reconnect a few times
  etcd.restart();
  for (int i = 0; i < 10; ++i) {
    etcd.etcdctl({"put", "/k/b" + std::to_string(i), "2"});
    want.push_back({PUT, "/k/b" + std::to_string(i), "2"});
  }
  etcd.etcdctl({"del", "/k/a0"});
  want.push_back({DEL, "/k/a0", ""});
  REQUIRE(amb::test::wait_until([&] { return got.events().size() >= 21; }, 20s));
  std::this_thread::sleep_for(200ms);
  check_sequence(got.events(), want);
  std::size_t reconnects = 0, snapshots = 0;
  runner.post_wait([&] {
    reconnects = watcher.reconnects();
    snapshots = watcher.snapshots();
    watcher.stop();
  });
  running.get();
  CHECK(reconnects >= 1);
  CHECK(snapshots == 1);  // resumed from the revision, no re-read needed
}

TEST_CASE("watch: a compacted start revision gives a snapshot, then events continue") {
  etcd_cluster etcd(1, {"--experimental-watch-progress-notify-interval=1s"});
  asio::io_context io;
  amb::etcd_client client(io.get_executor(), client_options(etcd.url()));
  amb::etcd_watcher watcher(client, "/c/", fast_watch());
  collector got;
  io_runner runner(io);

  const auto start = runner.sync(client.put("/c/x", "1")).revision;
  runner.sync(client.put("/c/y", "1"));
  runner.sync(client.put("/c/x", "2"));
  runner.sync(client.erase("/c/y"));
  const auto last = runner.sync(client.put("/other", "z")).revision;
  etcd.etcdctl({"compact", std::to_string(last)});
  // As if the watcher had been away since `start`: that revision is gone now.
  auto running = runner.spawn(watcher.run(got.callback(), start + 1));
  REQUIRE(amb::test::wait_until([&] { return !got.of(etcd_watch_update::kind::snapshot).empty(); }, 10s));
  auto snap = got.of(etcd_watch_update::kind::snapshot).front();
  CHECK(snap.revision == last);
  REQUIRE(snap.kvs.size() == 1);  // the full current state: x=2, y deleted
  CHECK(snap.kvs[0].key == "/c/x");
  CHECK(snap.kvs[0].value == "2");
  CHECK(got.events().empty());  // nothing before the snapshot
  runner.sync(client.put("/c/z", "3"));
  etcd.etcdctl({"del", "/c/x"});
  REQUIRE(amb::test::wait_until([&] { return got.events().size() >= 2; }, 10s));
  check_sequence(got.events(), {{PUT, "/c/z", "3"}, {DEL, "/c/x", ""}});
  auto all = got.all();
  CHECK(all.front().type == etcd_watch_update::kind::snapshot);
  runner.post_wait([&] { watcher.stop(); });
  running.get();
}

TEST_CASE("watch: a silent stream, a truncated stream and HTML are each retried, never a crash or hang") {
  const std::string chunked_head =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string created = "{\"result\":{\"header\":{\"revision\":\"5\"},\"created\":true}}\n";
  auto chunk = [](const std::string& s) {
    std::ostringstream h;
    h << std::hex << s.size();
    return h.str() + "\r\n" + s + "\r\n";
  };
  scripted_server silent([&](int fd) {
    scripted_server::read_request(fd);
    scripted_server::write_all(fd, chunked_head + chunk(created));
    scripted_server::wait_for_eof(fd);  // then nothing, as a dead host would
  });
  scripted_server truncated([&](int fd) {
    scripted_server::read_request(fd);
    scripted_server::write_all(fd, chunked_head + chunk(created) + "40\r\n{\"result\":{\"header\":");
  });
  scripted_server html([&](int fd) {
    scripted_server::read_request(fd);
    scripted_server::write_all(
        fd, "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n\r\n<html>\n<body>\n");
  });
  asio::io_context io;
  amb::etcd_client c_silent(io.get_executor(), client_options(silent.url()));
  amb::etcd_client c_truncated(io.get_executor(), client_options(truncated.url()));
  amb::etcd_client c_html(io.get_executor(), client_options(html.url()));
  auto o = fast_watch();
  o.silence_timeout = 1s;
  amb::etcd_watcher w_silent(c_silent, "/s/", o);
  amb::etcd_watcher w_truncated(c_truncated, "/s/", o);
  amb::etcd_watcher w_html(c_html, "/s/", o);
  collector got;
  io_runner runner(io);
  // Start at a revision: these servers cannot answer the snapshot's range read.
  auto r1 = runner.spawn(w_silent.run(got.callback(), 5));
  auto r2 = runner.spawn(w_truncated.run(got.callback(), 5));
  auto r3 = runner.spawn(w_html.run(got.callback(), 5));
  CHECK(amb::test::wait_until([&] { return silent.accepted() >= 2; }, 20s));  // the silence was noticed
  CHECK(amb::test::wait_until([&] { return truncated.accepted() >= 3; }, 20s));
  CHECK(amb::test::wait_until([&] { return html.accepted() >= 3; }, 20s));
  runner.post_wait([&] {
    w_silent.stop();
    w_truncated.stop();
    w_html.stop();
  });
  r1.get();
  r2.get();
  r3.get();
  CHECK(got.all().empty());
  CHECK(w_silent.next_revision() == 5);
}

}  // namespace etcd_watch_test
