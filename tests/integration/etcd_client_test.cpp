// SPDX-License-Identifier: MIT
// etcd_client and etcd_lease_keeper against a real etcd (and against servers that are not etcd).
#include <amb/etcd_client.hpp>
#include <amb/etcd_lease_keeper.hpp>

#include "support/etcd_async.hpp"
#include "support/etcd_server.hpp"

#include <doctest/doctest.h>

#include <iomanip>
#include <sstream>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace etcd_client_test {

using namespace std::chrono_literals;
using amb::test::etcd_cluster;
using amb::test::io_runner;
using amb::test::scripted_server;

namespace {

amb::etcd_client_options client_options(const std::string& endpoints) { return amb::test::etcd_options(endpoints); }

struct ctl_kv {
  std::string key, value;
  std::int64_t lease = 0;
};

// etcdctl get ... -w json, decoded (etcdctl prints bytes as base64 and numbers as JSON numbers).
std::vector<ctl_kv> ctl_get(etcd_cluster& etcd, std::vector<std::string> args) {
  args.insert(args.begin(), "get");
  args.push_back("-w");
  args.push_back("json");
  auto out = etcd.etcdctl(args);
  picojson::value v;
  std::string err = picojson::parse(v, out);
  REQUIRE_MESSAGE(err.empty(), "etcdctl json: " << out);
  std::vector<ctl_kv> kvs;
  if (const auto* a = amb::detail::json_member(v, "kvs"); a && a->is<picojson::array>()) {
    for (const auto& item : a->get<picojson::array>()) {
      ctl_kv kv;
      REQUIRE(amb::detail::etcd_bytes(item, "key", kv.key));
      REQUIRE(amb::detail::etcd_bytes(item, "value", kv.value));
      REQUIRE(amb::detail::etcd_int64(item, "lease", kv.lease));
      kvs.push_back(kv);
    }
  }
  return kvs;
}

std::string hex(std::int64_t id) {
  std::ostringstream s;
  s << std::hex << id;
  return s.str();
}

}  // namespace

TEST_CASE("KV round trips with etcdctl, both ways, byte for byte") {
  etcd_cluster etcd;
  asio::io_context io;
  amb::etcd_client client(io.get_executor(), client_options(etcd.url()));
  io_runner runner(io);

  SUBCASE("text written by amb, read by etcdctl") {
    runner.sync(client.put("/amb/t/a", "{\"host\":\"10.0.0.5\",\"port\":49155}"));
    CHECK(etcd.etcdctl({"get", "--print-value-only", "/amb/t/a"}) == "{\"host\":\"10.0.0.5\",\"port\":49155}\n");
  }
  SUBCASE("binary keys and values written by amb, read by etcdctl") {
    std::string all;
    for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
    const std::string key = std::string("/amb/bin/\0\x01\n\xff", 13);
    runner.sync(client.put(key, all));
    runner.sync(client.put("/amb/bin/empty", ""));
    auto kvs = ctl_get(etcd, {"--prefix", "/amb/bin/"});
    REQUIRE(kvs.size() == 2);
    CHECK(kvs[0].key == key);
    CHECK(kvs[0].value == all);
    CHECK(kvs[1].key == "/amb/bin/empty");
    CHECK(kvs[1].value == "");
  }
  SUBCASE("binary written by etcdctl, read by amb") {
    std::string value;  // argv cannot carry NUL: every other byte value
    for (int i = 1; i < 256; ++i) value += static_cast<char>(i);
    const std::string key = "/amb/ctl/\x01\x7f\xfe\xff";
    etcd.etcdctl({"put", key, value});
    etcd.etcdctl({"put", "/amb/ctl/plain", "10.0.0.7:6379"});
    auto kv = runner.sync(client.get(key));
    REQUIRE(kv);
    CHECK(kv->key == key);
    CHECK(kv->value == value);
    CHECK(kv->version == 1);
    CHECK(kv->create_revision == kv->mod_revision);
    auto r = runner.sync(client.get_prefix("/amb/ctl/"));
    REQUIRE(r.kvs.size() == 2);
    CHECK(r.count == 2);
    CHECK(r.kvs[0].key == key);  // key order: 0x01 < 'p'
    CHECK(r.kvs[1].value == "10.0.0.7:6379");
    CHECK(r.revision >= r.kvs[1].mod_revision);
    CHECK(!runner.sync(client.get("/amb/ctl/none")));
  }
  SUBCASE("prefix ends: 0xff handling and neighbours outside the prefix") {
    runner.sync(client.put("/amb/p\xff", "in-1"));
    runner.sync(client.put("/amb/p\xff\xff", "in-2"));
    runner.sync(client.put("/amb/q", "out"));
    runner.sync(client.put("/amb/o", "out"));
    auto r = runner.sync(client.get_prefix("/amb/p\xff"));
    REQUIRE(r.kvs.size() == 2);
    CHECK(r.kvs[0].value == "in-1");
    CHECK(r.kvs[1].value == "in-2");
    auto d = runner.sync(client.erase_prefix("/amb/p\xff"));
    CHECK(d.deleted == 2);
    CHECK(runner.sync(client.get("/amb/q")));
  }
  SUBCASE("put prev_kv, delete, delete prefix, create-if-absent") {
    auto p1 = runner.sync(client.put("/amb/k", "v1", 0, true));
    CHECK(!p1.prev_kv);
    auto p2 = runner.sync(client.put("/amb/k", "v2", 0, true));
    REQUIRE(p2.prev_kv);
    CHECK(p2.prev_kv->value == "v1");
    CHECK(p2.revision == p1.revision + 1);

    auto c1 = runner.sync(client.create("/amb/once", "first"));
    CHECK(c1.created);
    auto c2 = runner.sync(client.create("/amb/once", "second"));
    CHECK(!c2.created);
    REQUIRE(c2.existing);
    CHECK(c2.existing->value == "first");
    CHECK(etcd.etcdctl({"get", "--print-value-only", "/amb/once"}) == "first\n");

    CHECK(runner.sync(client.erase("/amb/k")).deleted == 1);
    CHECK(runner.sync(client.erase("/amb/k")).deleted == 0);
    etcd.etcdctl({"put", "/amb/dir/x", "1"});
    etcd.etcdctl({"put", "/amb/dir/y", "2"});
    etcd.etcdctl({"put", "/amb/dirz", "3"});
    CHECK(runner.sync(client.erase_prefix("/amb/dir/")).deleted == 2);
    CHECK(etcd.etcdctl({"get", "--print-value-only", "/amb/dirz"}) == "3\n");
  }
  SUBCASE("etcd errors keep gRPC code and message") {
    try {
      runner.sync(client.put("/amb/x", "y", 12345));
      FAIL("put with an unknown lease succeeded");
    } catch (const amb::etcd_error& e) {
      CHECK(e.code() == amb::grpc_code::not_found);
      CHECK(e.lease_not_found());
      CHECK(std::string(e.what()) == "etcd put /amb/x at " + etcd.url() + ": etcdserver: requested lease not found");
    }
    try {
      runner.sync(client.put("", "y"));
      FAIL("put of an empty key succeeded");
    } catch (const amb::etcd_error& e) {
      CHECK(e.code() == amb::grpc_code::invalid_argument);
      CHECK(std::string(e.what()) == "etcd put \"\" at " + etcd.url() + ": etcdserver: key is not provided");
    }
  }
}

TEST_CASE("leases: keepalive keeps the key, stopping lets it expire, revoke removes it at once") {
  etcd_cluster etcd;
  asio::io_context io;
  amb::etcd_client client(io.get_executor(), client_options(etcd.url()));
  io_runner runner(io);

  auto kept = runner.sync(client.lease_grant(2));
  CHECK(kept.ttl == 2);
  runner.sync(client.put("/amb/lease/kept", "x", kept.id));
  auto revoked = runner.sync(client.lease_grant(60));
  runner.sync(client.put("/amb/lease/revoked", "y", revoked.id));
  auto ttl = runner.sync(client.lease_time_to_live(revoked.id, true));
  CHECK(ttl.granted_ttl == 60);
  CHECK(ttl.ttl > 0);
  REQUIRE(ttl.keys.size() == 1);
  CHECK(ttl.keys[0] == "/amb/lease/revoked");

  // Keepalives every 500 ms for 3.5 s (well past the 2 s TTL): the key stays.
  std::atomic<bool> stop{false};
  std::atomic<int> renewals{0};
  auto keepalive_loop = [&]() -> asio::awaitable<void> {  // named: the closure must outlive the coroutine
    while (!stop) {
      auto t = co_await client.lease_keepalive(kept.id);
      if (t == 2) ++renewals;
      co_await amb::detail::sleep_for(500ms);
    }
  };
  auto keeper = runner.spawn(keepalive_loop());
  // Revoke meanwhile: the other key is gone the moment revoke returns.
  CHECK(runner.sync(client.lease_revoke(revoked.id)));
  CHECK(etcd.etcdctl({"get", "--print-value-only", "/amb/lease/revoked"}) == "");
  CHECK(!runner.sync(client.lease_revoke(revoked.id)));  // already gone: false, not an error
  CHECK(runner.sync(client.lease_time_to_live(revoked.id)).ttl == -1);
  CHECK(runner.sync(client.lease_keepalive(revoked.id)) == 0);

  std::this_thread::sleep_for(3500ms);
  CHECK(etcd.etcdctl({"get", "--print-value-only", "/amb/lease/kept"}) == "x\n");
  stop = true;
  keeper.get();
  CHECK(renewals >= 5);
  // Without keepalives the key goes after the TTL.
  CHECK(amb::test::wait_until(
      [&] {
        return etcd.etcdctl({"get", "--print-value-only", "/amb/lease/kept"}).empty();
      },
      15s, 100ms));
  CHECK(runner.sync(client.lease_keepalive(kept.id)) == 0);
}

TEST_CASE("lease keeper: re-puts everything when the lease is lost, survives an outage, revoke clears") {
  etcd_cluster etcd;
  asio::io_context io;
  auto opts = client_options(etcd.url());
  opts.request_timeout = 2s;
  opts.retry_rounds = 1;
  amb::etcd_client client(io.get_executor(), opts);
  amb::etcd_lease_keeper_options ko;
  ko.ttl = 2;
  amb::etcd_lease_keeper keeper(client, ko);
  io_runner runner(io);

  CHECK(keeper.options().tick == 666ms);
  CHECK(!runner.sync(keeper.set("/services/r/a", "10.0.0.1:1")));  // no lease yet: run() writes it
  auto running = runner.spawn(keeper.run());
  runner.sync(keeper.set("/services/r/b", "10.0.0.2:2"));
  runner.sync(keeper.set("/services/r/c", "10.0.0.3:3"));
  auto lease_of = [&] {
    std::int64_t id = 0;
    runner.post_wait([&] { id = keeper.lease_id(); });
    return id;
  };
  auto all_under = [&](std::size_t n, std::int64_t lease) {
    auto kvs = ctl_get(etcd, {"--prefix", "/services/r/"});
    if (kvs.size() != n) return false;
    for (auto& kv : kvs)
      if (kv.lease != lease || lease == 0) return false;
    return true;
  };
  REQUIRE(amb::test::wait_until([&] { return all_under(3, lease_of()); }, 10s, 50ms));
  const auto first = lease_of();
  // Keepalives hold it past several TTLs.
  std::this_thread::sleep_for(2500ms);
  CHECK(all_under(3, first));

  // The lease is revoked behind the keeper's back: keys vanish, then come back under a new lease.
  etcd.etcdctl({"lease", "revoke", hex(first)});
  REQUIRE(amb::test::wait_until(
      [&] {
        auto l = lease_of();
        return l != first && all_under(3, l);
      },
      10s, 50ms));
  std::size_t regrants = 0;
  runner.post_wait([&] { regrants = keeper.regrants(); });
  CHECK(regrants == 1);
  auto kvs = ctl_get(etcd, {"--prefix", "/services/r/"});
  CHECK(kvs[0].value == "10.0.0.1:1");
  CHECK(kvs[2].value == "10.0.0.3:3");

  // erase deletes now.
  CHECK(runner.sync(keeper.erase("/services/r/b")));
  CHECK(ctl_get(etcd, {"--prefix", "/services/r/"}).size() == 2);

  // etcd goes away: a set() cannot be written, run() keeps trying, and writes it once etcd is back.
  etcd.kill9();
  CHECK(!runner.sync(keeper.set("/services/r/d", "10.0.0.4:4")));
  CHECK(!runner.sync(keeper.erase("/services/r/a")));
  std::this_thread::sleep_for(1s);
  etcd.restart();
  REQUIRE(amb::test::wait_until(
      [&] {
        auto kvs = ctl_get(etcd, {"--prefix", "/services/r/"});
        return kvs.size() == 2 && kvs[0].key == "/services/r/c" && kvs[1].key == "/services/r/d" &&
               kvs[1].lease == lease_of();
      },
      15s, 100ms));
  bool in_sync = false;
  runner.post_wait([&] { in_sync = keeper.in_sync(); });
  CHECK(in_sync);

  // A clean stop: revoke, and every key is gone at once.
  runner.sync(keeper.revoke());
  CHECK(ctl_get(etcd, {"--prefix", "/services/r/"}).empty());
  running.get();  // run() returned
}

TEST_CASE("servers that are not etcd give one clear error within the timeout") {
  asio::io_context io;
  auto make = [&](const std::string& url) {
    auto o = client_options(url);
    o.request_timeout = 1s;
    o.connect_timeout = 1s;
    o.retry_rounds = 1;
    return std::make_unique<amb::etcd_client>(io.get_executor(), o);
  };
  auto html = [](int code, std::string reason) {
    return [code, reason](int fd) {
      while (scripted_server::read_request(fd)) {
        std::string body = "<html><body><h1>" + reason + "</h1></body></html>";
        scripted_server::write_all(fd, "HTTP/1.1 " + std::to_string(code) + " " + reason +
                                           "\r\nContent-Type: text/html\r\nContent-Length: " +
                                           std::to_string(body.size()) + "\r\n\r\n" + body);
      }
    };
  };
  scripted_server html_ok(html(200, "OK"));
  scripted_server html_404(html(404, "Not Found"));
  scripted_server garbage([](int fd) {
    scripted_server::read_request(fd);
    scripted_server::write_all(fd, "SSH-2.0-OpenSSH_9.2\r\n\r\n");
  });
  scripted_server truncated([](int fd) {
    scripted_server::read_request(fd);
    scripted_server::write_all(fd,
                               "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "40\r\n{\"header\":{\"revision\":\"5\"}");
  });
  scripted_server silent([&](int fd) { scripted_server::wait_for_eof(fd); });
  auto c_ok = make(html_ok.url());
  auto c_404 = make(html_404.url());
  auto c_garbage = make(garbage.url());
  auto c_truncated = make(truncated.url());
  auto c_silent = make(silent.url());
  auto c_refused = make("http://127.0.0.1:" + std::to_string(amb::test::free_port()));
  io_runner runner(io);

  auto error_of = [&](amb::etcd_client& c) -> std::pair<std::error_code, std::string> {
    try {
      runner.sync(c.get("/a"));
    } catch (const std::system_error& e) {
      return {e.code(), e.what()};
    }
    return {};
  };
  {
    auto [ec, what] = error_of(*c_ok);
    CHECK(ec == amb::errc::bad_response);
    CHECK(what == "etcd get /a at " + html_ok.url() + ": reply is not the expected etcd JSON: not a valid response");
  }
  {
    auto [ec, what] = error_of(*c_404);
    CHECK(ec == amb::errc::bad_response);
    CHECK(what == "etcd get /a: POST /v3/kv/range to " + html_404.url() +
                      ": HTTP 404 Not Found with a body that is not an etcd reply: not a valid response");
  }
  {
    auto [ec, what] = error_of(*c_garbage);
    CHECK(ec.category() == amb::amb_category());
    CHECK(what.rfind("etcd get /a: POST /v3/kv/range to " + garbage.url(), 0) == 0);
  }
  {
    auto [ec, what] = error_of(*c_truncated);
    CHECK(ec == amb::errc::chunk_truncated);
    CHECK(what.rfind("etcd get /a: POST /v3/kv/range to " + truncated.url(), 0) == 0);
  }
  {
    auto start = std::chrono::steady_clock::now();
    auto [ec, what] = error_of(*c_silent);
    CHECK(ec == amb::errc::timeout);
    CHECK(what.rfind("etcd get /a: POST /v3/kv/range to " + silent.url(), 0) == 0);
    CHECK(std::chrono::steady_clock::now() - start < 30s);  // bounded by the 1 s timeout, not a hang
  }
  {
    auto [ec, what] = error_of(*c_refused);
    CHECK(ec == asio::error::connection_refused);
    CHECK(what.rfind("etcd get /a: POST /v3/kv/range to " + c_refused->endpoints()[0].to_string(), 0) == 0);
  }
  // Several endpoints all failing: one error naming each.
  auto o = client_options(html_404.url() + "," + c_refused->endpoints()[0].to_string());
  o.retry_rounds = 2;
  o.retry_backoff = 50ms;
  amb::etcd_client both(io.get_executor(), o);
  auto [ec, what] = error_of(both);
  CHECK(ec == amb::errc::no_endpoint);
  CHECK(what.find("every endpoint failed (POST /v3/kv/range to " + html_404.url()) != std::string::npos);
  CHECK(what.find("; POST /v3/kv/range to " + c_refused->endpoints()[0].to_string()) != std::string::npos);
  runner.post_wait([&] { both.close(); });
}

}  // namespace etcd_client_test
