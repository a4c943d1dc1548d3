// SPDX-License-Identifier: MIT
// Unit tests for include/amb/detail/etcd_json.hpp, on bodies captured from etcd 3.4.23 (docs/protocols.md part 1).
#include <amb/detail/etcd_json.hpp>
#include <amb/etcd_error.hpp>

#include <doctest/doctest.h>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace etcd_json_test {

using namespace amb::detail;
using kind = etcd_watch_message::kind;

TEST_CASE("prefix range_end: last byte + 1, 0xff handling") {
  CHECK(etcd_prefix_end("/services/redis/") == "/services/redis0");
  CHECK(base64_encode(etcd_prefix_end("/services/redis/")) == "L3NlcnZpY2VzL3JlZGlzMA==");
  CHECK(etcd_prefix_end("a\xff") == "b");
  CHECK(etcd_prefix_end("a\xff\xff") == "b");
  CHECK(etcd_prefix_end("\xfe\xff") == "\xff");
  CHECK(etcd_prefix_end("\xff\xff") == std::string(1, '\0'));
  CHECK(etcd_prefix_end("") == std::string(1, '\0'));
}

TEST_CASE("request bodies: base64 bytes, int64 as strings") {
  CHECK(etcd_range_body("/services/redis/", etcd_prefix_end("/services/redis/")) ==
        R"({"key":"L3NlcnZpY2VzL3JlZGlzLw==","range_end":"L3NlcnZpY2VzL3JlZGlzMA=="})");
  CHECK(etcd_range_body("a", {}, 11) == R"({"key":"YQ==","revision":"11"})");
  CHECK(etcd_put_body("foo", "bar") == R"({"key":"Zm9v","value":"YmFy"})");
  CHECK(etcd_put_body("foo", "", 4111120221696333327, true) ==
        R"({"key":"Zm9v","lease":"4111120221696333327","prev_kv":true,"value":""})");
  CHECK(etcd_delete_body("foo") == R"({"key":"Zm9v"})");
  CHECK(etcd_create_body("k", "v") ==
        R"({"compare":[{"create_revision":"0","key":"aw==","result":"EQUAL","target":"CREATE"}],)"
        R"("failure":[{"request_range":{"key":"aw=="}}],"success":[{"request_put":{"key":"aw==","value":"dg=="}}]})");
  CHECK(etcd_grant_body(5) == R"({"TTL":"5"})");
  CHECK(etcd_lease_id_body(9223372036854775807) == R"({"ID":"9223372036854775807"})");
  CHECK(etcd_ttl_body(1000, true) == R"({"ID":"1000","keys":true})");
  CHECK(etcd_auth_body("root", "p\"w") == R"({"name":"root","password":"p\"w"})");
  CHECK(etcd_watch_body("/s/", "/s0", 12, true) ==
        R"({"create_request":{"key":"L3Mv","progress_notify":true,"range_end":"L3Mw","start_revision":"12"}})");
  CHECK(etcd_watch_body("/s/", "/s0", 0, false) == R"({"create_request":{"key":"L3Mv","range_end":"L3Mw"}})");
}

TEST_CASE("range response captured from etcd") {
  const char* body =
      R"({"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709","revision":"6","raft_term":"2"},)"
      R"("kvs":[{"key":"L3NlcnZpY2VzL3JlZGlzL2E=","create_revision":"4","mod_revision":"4","version":"1","value":"eyJob3N0IjoiMTAuMC4wLjUiLCJwb3J0Ijo0OTE1NX0="},)"
      R"({"key":"L3NlcnZpY2VzL3JlZGlzL2I=","create_revision":"5","mod_revision":"6","version":"2","value":"MTAuMC4wLjc6NjM3OQ=="}],"count":"2"})";
  amb::etcd_range_result r;
  REQUIRE(!etcd_parse_range(body, r));
  CHECK(r.revision == 6);
  CHECK(r.count == 2);
  CHECK(!r.more);
  REQUIRE(r.kvs.size() == 2);
  CHECK(r.kvs[0].key == "/services/redis/a");
  CHECK(r.kvs[0].value == R"({"host":"10.0.0.5","port":49155})");
  CHECK(r.kvs[0].create_revision == 4);
  CHECK(r.kvs[0].lease == 0);
  CHECK(r.kvs[1].key == "/services/redis/b");
  CHECK(r.kvs[1].value == "10.0.0.7:6379");
  CHECK(r.kvs[1].mod_revision == 6);
  CHECK(r.kvs[1].version == 2);
}

TEST_CASE("zero values are omitted: empty range, empty value, lease ids beyond 2^53") {
  amb::etcd_range_result r;
  REQUIRE(!etcd_parse_range(R"({"header":{"revision":"9"}})", r));
  CHECK(r.revision == 9);
  CHECK(r.kvs.empty());
  CHECK(r.count == 0);
  REQUIRE(!etcd_parse_range(
      R"({"header":{"revision":"9"},"kvs":[{"key":"YQ==","create_revision":"8","mod_revision":"8","version":"1","lease":"4111120221696333327"}],"count":"1","more":true})",
      r));
  REQUIRE(r.kvs.size() == 1);
  CHECK(r.kvs[0].value.empty());
  CHECK(r.kvs[0].lease == 4111120221696333327);
  CHECK(r.more);
  // numbers are accepted where strings are expected
  REQUIRE(!etcd_parse_range(R"({"header":{"revision":9},"count":1})", r));
  CHECK(r.revision == 9);
}

TEST_CASE("malformed responses are bad_response, never a crash") {
  amb::etcd_range_result r;
  CHECK(etcd_parse_range("<html><body>502</body></html>", r) == amb::errc::bad_response);
  CHECK(etcd_parse_range("", r) == amb::errc::bad_response);
  CHECK(etcd_parse_range("[]", r) == amb::errc::bad_response);
  CHECK(etcd_parse_range(R"({"header":{"revision":"x"}})", r) == amb::errc::bad_response);
  CHECK(etcd_parse_range(R"({"header":{"revision":"6"},"kvs":[{"key":"not base64!"}]})", r) == amb::errc::bad_response);
  CHECK(etcd_parse_range(R"({"header":{"revision":"6"},"kvs":{}})", r) == amb::errc::bad_response);
  CHECK(etcd_parse_range(R"({"header":{"revision":"6"}} trailing)", r) == amb::errc::bad_response);
  CHECK(etcd_parse_range(R"({"header":{"revision":"99999999999999999999"}})", r) == amb::errc::bad_response);
}

TEST_CASE("put, delete, txn responses") {
  amb::etcd_put_result p;
  REQUIRE(!etcd_parse_put(R"({"header":{"revision":"7"}})", p));
  CHECK(p.revision == 7);
  CHECK(!p.prev_kv);
  REQUIRE(!etcd_parse_put(
      R"({"header":{"revision":"8"},"prev_kv":{"key":"Zm9v","create_revision":"7","mod_revision":"7","version":"1","value":"YmFy","lease":"1000"}})",
      p));
  REQUIRE(p.prev_kv);
  CHECK(p.prev_kv->value == "bar");
  CHECK(p.prev_kv->lease == 1000);

  amb::etcd_delete_result d;
  REQUIRE(!etcd_parse_delete(R"({"header":{"revision":"9"},"deleted":"1","prev_kvs":[]})", d));
  CHECK(d.deleted == 1);
  REQUIRE(!etcd_parse_delete(R"({"header":{"revision":"9"}})", d));
  CHECK(d.deleted == 0);

  amb::etcd_create_result c;
  REQUIRE(!etcd_parse_create(
      R"({"header":{"revision":"14"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"14"}}}]})",
      c));
  CHECK(c.created);
  CHECK(c.revision == 14);
  CHECK(!c.existing);
  REQUIRE(!etcd_parse_create(
      R"({"header":{"revision":"14"},"responses":[{"response_range":{"header":{"revision":"14"},"kvs":[{"key":"aw==","create_revision":"14","mod_revision":"14","version":"1","value":"dg=="}],"count":"1"}}]})",
      c));
  CHECK(!c.created);
  REQUIRE(c.existing);
  CHECK(c.existing->key == "k");
  CHECK(c.existing->value == "v");
}

TEST_CASE("lease responses") {
  amb::etcd_lease l;
  REQUIRE(!etcd_parse_grant(R"({"header":{"revision":"3"},"ID":"4111120221696333327","TTL":"5"})", l));
  CHECK(l.id == 4111120221696333327);
  CHECK(l.ttl == 5);
  CHECK(etcd_parse_grant(R"({"header":{}})", l) == amb::errc::bad_response);

  std::int64_t ttl = -5;
  REQUIRE(!etcd_parse_keepalive(R"({"result":{"header":{"revision":"3"},"ID":"1000","TTL":"7"}})"
                                "\n",
                                ttl));
  CHECK(ttl == 7);
  REQUIRE(!etcd_parse_keepalive(R"({"result":{"header":{"revision":"3"},"ID":"999"}})", ttl));
  CHECK(ttl == 0);  // lease gone
  CHECK(etcd_parse_keepalive(R"({"header":{}})", ttl) == amb::errc::bad_response);

  amb::etcd_lease_ttl t;
  REQUIRE(!etcd_parse_ttl(R"({"header":{"revision":"3"},"ID":"1000","TTL":"6","grantedTTL":"7","keys":["Zm9v"]})", t));
  CHECK(t.ttl == 6);
  CHECK(t.granted_ttl == 7);
  REQUIRE(t.keys.size() == 1);
  CHECK(t.keys[0] == "foo");
  REQUIRE(!etcd_parse_ttl(R"({"header":{"revision":"3"},"ID":"3000","TTL":"-1"})", t));
  CHECK(t.ttl == -1);

  std::string token;
  REQUIRE(!etcd_parse_auth(R"({"header":{"revision":"3"},"token":"MhkLTLEoVAyorFTw.44"})", token));
  CHECK(token == "MhkLTLEoVAyorFTw.44");
}

TEST_CASE("error bodies") {
  auto e = etcd_parse_error(
      R"({"error":"etcdserver: mvcc: required revision has been compacted","message":"etcdserver: mvcc: required revision has been compacted","code":11})");
  REQUIRE(e);
  CHECK(e->code == 11);
  CHECK(e->message == "etcdserver: mvcc: required revision has been compacted");
  CHECK(!etcd_parse_error("404 page not found"));
  CHECK(!etcd_parse_error("Not Found\n"));
  CHECK(!etcd_parse_error(R"({"message":"x"})"));
  amb::etcd_error err(5, "etcdserver: requested lease not found", "etcd put /a at http://127.0.0.1:2379");
  CHECK(std::string(err.what()) == "etcd put /a at http://127.0.0.1:2379: etcdserver: requested lease not found");
  CHECK(err.code() == amb::grpc_code::not_found);
  CHECK(err.lease_not_found());
  CHECK(err.code().message() == "not found");
}

TEST_CASE("watch lines captured from etcd") {
  etcd_watch_message m;
  REQUIRE(!etcd_parse_watch_line(
      R"({"result":{"header":{"cluster_id":"1","member_id":"2","revision":"10","raft_term":"2"},"created":true}})"
      "\n",
      m));
  CHECK(m.type == kind::created);
  CHECK(m.revision == 10);

  REQUIRE(!etcd_parse_watch_line(
      R"({"result":{"header":{"revision":"13"},"events":[{"kv":{"key":"L3MvYQ==","create_revision":"11","mod_revision":"11","version":"1","value":"MQ=="}},)"
      R"({"kv":{"key":"L3MvYQ==","create_revision":"11","mod_revision":"12","version":"2","value":"Mg=="}},)"
      R"({"type":"DELETE","kv":{"key":"L3MvYQ==","mod_revision":"13"}}]}})"
      "\n",
      m));
  CHECK(m.type == kind::events);
  CHECK(m.revision == 13);
  REQUIRE(m.events.size() == 3);
  CHECK(m.events[0].type == amb::etcd_event::kind::put);
  CHECK(m.events[0].kv.key == "/s/a");
  CHECK(m.events[0].kv.value == "1");
  CHECK(m.events[1].kv.mod_revision == 12);
  CHECK(m.events[2].type == amb::etcd_event::kind::del);
  CHECK(m.events[2].kv.mod_revision == 13);
  CHECK(m.events[2].kv.value.empty());

  REQUIRE(!etcd_parse_watch_line(
      R"({"result":{"header":{"revision":"20"},"events":[{"type":"DELETE","kv":{"key":"YQ==","mod_revision":"20"},"prev_kv":{"key":"YQ==","create_revision":"19","mod_revision":"19","version":"1","value":"eA==","lease":"4000"}}]}})",
      m));
  REQUIRE(m.events.size() == 1);
  REQUIRE(m.events[0].prev_kv);
  CHECK(m.events[0].prev_kv->lease == 4000);

  REQUIRE(!etcd_parse_watch_line(
      R"({"result":{"header":{"cluster_id":"1","member_id":"2","revision":"25","raft_term":"2"}}})", m));
  CHECK(m.type == kind::progress);
  CHECK(m.revision == 25);

  REQUIRE(!etcd_parse_watch_line(
      R"({"result":{"header":{"cluster_id":"1","member_id":"2","raft_term":"2"},"canceled":true,"compact_revision":"12"}})",
      m));
  CHECK(m.type == kind::canceled);
  CHECK(m.compact_revision == 12);
  CHECK(m.revision == 0);

  REQUIRE(!etcd_parse_watch_line(
      R"({"result":{"header":{"revision":"5"},"watch_id":"-1","created":true,"canceled":true,"cancel_reason":"rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"}})",
      m));
  CHECK(m.type == kind::canceled);
  CHECK(m.compact_revision == 0);
  CHECK(m.cancel_reason == "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token");

  REQUIRE(!etcd_parse_watch_line(
      R"({"error":{"grpc_code":14,"http_code":503,"message":"transport is closing","http_status":"Service Unavailable"}})",
      m));
  CHECK(m.type == kind::error);
  CHECK(m.error_code == 14);
  CHECK(m.error_message == "transport is closing");

  CHECK(etcd_parse_watch_line("<html>", m) == amb::errc::bad_response);
  CHECK(etcd_parse_watch_line(R"({"result":{"events":[{"type":"BOGUS","kv":{}}]}})", m) == amb::errc::bad_response);
  CHECK(etcd_parse_watch_line(R"({"result":{"events":[{"type":"PUT"}]}})", m) == amb::errc::bad_response);
  CHECK(etcd_parse_watch_line(R"({"other":1})", m) == amb::errc::bad_response);
}

// The picojson overflow found by the Docker and registry fuzzers reaches etcd's readers too.
TEST_CASE("a number beyond a double is bad_response, not an exception") {
  amb::etcd_range_result r;
  CHECK(etcd_parse_range(R"({"header":{"revision":1e999}})", r) == amb::errc::bad_response);
  etcd_watch_message m;
  CHECK(etcd_parse_watch_line(R"({"result":{"header":{"revision":"5"},"x":-1e999}})", m) == amb::errc::bad_response);
}

// Every etcd reader goes through the depth-bounded parse: 150,000 levels of {"a": in a watch line or
// a reply is a bad response, not a stack overflow.
TEST_CASE("deeply nested etcd replies and watch lines are bad_response, never a crash") {
  const std::size_t levels = 150000;
  std::string deep;
  for (std::size_t i = 0; i < levels; ++i) deep += "{\"a\":";
  deep += "1";
  deep.append(levels, '}');
  etcd_watch_message m;
  CHECK(etcd_parse_watch_line(R"({"result":{"header":{"revision":"5"},"events":[{"kv":)" + deep + "}]}}", m) ==
        amb::errc::bad_response);
  amb::etcd_range_result r;
  CHECK(etcd_parse_range(R"({"header":{"revision":"5"},"kvs":[)" + deep + "]}", r) == amb::errc::bad_response);
  CHECK(!etcd_parse_error(R"({"error":)" + deep + "}"));
  std::string token;
  CHECK(etcd_parse_auth(deep, token) == amb::errc::bad_response);
}

TEST_CASE("the newest key of a prefix: one key, keys only, sorted by mod revision") {
  CHECK(
      etcd_newest_key_body("/s/x/", "/s/x0") ==
      R"({"key":"L3MveC8=","keys_only":true,"limit":"1","range_end":"L3MveDA=","sort_order":"DESCEND","sort_target":"MOD"})");
}

}  // namespace etcd_json_test
