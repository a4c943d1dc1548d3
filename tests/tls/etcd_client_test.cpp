// SPDX-License-Identifier: MIT
// The etcd client over https against a real etcd with TLS (certificates made by the test with openssl):
// KV, watch and leases with a client certificate; auth over TLS; and the failures a user will meet
// (wrong CA, wrong host, no client certificate, unreadable files), each one clear line.
#include <amb/etcd_client.hpp>
#include <amb/etcd_lease_keeper.hpp>
#include <amb/etcd_watch.hpp>
#include <amb/tls_stream.hpp>

#include "support/etcd_async.hpp"
#include "support/etcd_tls.hpp"

#include <doctest/doctest.h>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace etcd_client_test {

using namespace std::chrono_literals;
using amb::test::io_runner;
using amb::test::test_pki;
using amb::test::tls_etcd;

namespace {

amb::etcd_client_options tls_client(const std::string& url, bool with_cert = true) {
  auto o = amb::test::etcd_options(url);
  o.request_timeout = 3s;
  o.connect_timeout = 1s;
  o.retry_backoff = 100ms;
  o.retry_rounds = 1;
  o.tls.ca_file = test_pki::get().ca();
  if (with_cert) {
    o.tls.cert_file = test_pki::get().client_cert();
    o.tls.key_file = test_pki::get().client_key();
  }
  return o;
}

// The what() of the exception `f` throws ("" when it throws none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("over https with a client certificate: KV, watch, lease keepalive and revoke") {
  tls_etcd etcd(true);
  asio::io_context io;
  amb::etcd_client client(io.get_executor(), tls_client(etcd.url()));
  amb::etcd_watch_options wo;
  wo.retry_backoff = 100ms;
  amb::etcd_watcher watcher(client, "/tls/", wo);
  amb::etcd_lease_keeper_options ko;
  ko.ttl = 2;
  amb::etcd_lease_keeper keeper(client, ko);
  amb::test::watch_event_log seen;
  io_runner runner(io);

  runner.sync(client.put("/tls/a", "1"));
  CHECK(etcd.value("/tls/a") == "1");
  etcd.etcdctl({"put", "/tls/b", "2"});
  auto b = runner.sync(client.get("/tls/b"));
  REQUIRE(b);
  CHECK(b->value == "2");
  // Kept-alive TLS connections are reused: many calls, still right.
  for (int i = 0; i < 20; ++i) runner.sync(client.put("/tls/n", std::to_string(i)));
  CHECK(etcd.value("/tls/n") == "19");

  auto watching = runner.spawn(watcher.run(seen.callback()));
  REQUIRE(amb::test::wait_until([&] { return seen.snapshots() == 1; }, 10s));
  etcd.etcdctl({"put", "/tls/c", "3"});
  etcd.etcdctl({"del", "/tls/a"});
  CHECK(amb::test::wait_until([&] { return seen.keys() == std::vector<std::string>{"/tls/c", "-/tls/a"}; }, 10s));

  auto keeping = runner.spawn(keeper.run());
  runner.sync(keeper.set("/tls/reg", "r"));
  CHECK(etcd.value("/tls/reg") == "r");
  std::this_thread::sleep_for(3s);  // more than the TTL: the keepalives over TLS hold the key
  CHECK(etcd.value("/tls/reg") == "r");
  runner.sync(keeper.revoke());
  CHECK(etcd.value("/tls/reg") == "");
  CHECK(amb::test::wait_until([&] { return seen.keys().size() == 4; }, 10s));  // its PUT and DELETE were watched
  runner.post_wait([&] { watcher.stop(); });
  watching.get();
  keeping.get();
}

TEST_CASE("verification failures are one clear line naming the endpoint and the reason") {
  tls_etcd etcd(true);
  asio::io_context io;
  io_runner runner(io);
  const std::string at = "POST /v3/kv/range to " + etcd.url();

  SUBCASE("a CA that did not sign the server's certificate") {
    auto o = tls_client(etcd.url());
    o.tls.ca_file = test_pki::get().other_ca();
    amb::etcd_client c(io.get_executor(), o);
    CHECK(error_of([&] { runner.sync(c.get("/x")); }) ==
          "etcd get /x: " + at + ": TLS handshake: certificate verify failed: unable to get local issuer certificate");
    runner.post_wait([&] { c.close(); });
  }
  SUBCASE("a host the certificate is not for (it names IP 127.0.0.1 only)") {
    auto o = tls_client("https://localhost:" + std::to_string(etcd.port()));
    amb::etcd_client c(io.get_executor(), o);
    const std::string msg = error_of([&] { runner.sync(c.get("/x")); });
    // localhost may resolve to ::1 first, where nothing listens; the last address tried is 127.0.0.1.
    CHECK(msg == "etcd get /x: POST /v3/kv/range to https://localhost:" + std::to_string(etcd.port()) +
                     ": TLS handshake: certificate verify failed: hostname mismatch");
    runner.post_wait([&] { c.close(); });
  }
  SUBCASE("no client certificate for a server that requires one") {
    amb::etcd_client c(io.get_executor(), tls_client(etcd.url(), false));
    CHECK(error_of([&] { runner.sync(c.get("/x")); }) ==
          "etcd get /x: " + at +
              ": read response: the server refused our TLS client certificate (none given, or not trusted by it)");
    runner.post_wait([&] { c.close(); });
  }
  SUBCASE("plain http to a TLS port") {
    amb::etcd_client c(io.get_executor(), tls_client("http://127.0.0.1:" + std::to_string(etcd.port())));
    CHECK(error_of([&] { runner.sync(c.get("/x")); }) ==
          "etcd get /x: POST /v3/kv/range to http://127.0.0.1:" + std::to_string(etcd.port()) +
              ": read response: connection closed by peer");
  }
}

TEST_CASE("unreadable TLS files fail when the client is made, naming the file") {
  asio::io_context io;
  auto o = tls_client("https://127.0.0.1:1");
  o.tls.ca_file = "/nonexistent/ca.pem";
  CHECK(error_of([&] { amb::etcd_client c(io.get_executor(), o); }) ==
        "TLS CA file /nonexistent/ca.pem: No such file or directory");
  o = tls_client("https://127.0.0.1:1");
  o.tls.key_file = test_pki::get().server_key();  // the key of another certificate
  CHECK(error_of([&] { amb::etcd_client c(io.get_executor(), o); })
            .rfind("TLS client key " + test_pki::get().server_key() + " (for " + test_pki::get().client_cert() + "): ",
                   0) == 0);
  o = tls_client("https://127.0.0.1:1");
  o.tls.cert_file = test_pki::get().client_key();  // a key is no certificate
  CHECK(error_of([&] {
          amb::etcd_client c(io.get_executor(), o);
        }).rfind("TLS client certificate " + test_pki::get().client_key() + ": ", 0) == 0);
  // Plain endpoints never read the files.
  o = tls_client("http://127.0.0.1:1");
  o.tls.ca_file = "/nonexistent/ca.pem";
  CHECK(error_of([&] { amb::etcd_client c(io.get_executor(), o); }) == "");
}

TEST_CASE("auth over TLS: a wrong password is one clear line; tokens expire and are renewed") {
  tls_etcd etcd(true, {"--auth-token-ttl=2"});
  etcd.enable_auth("pw");
  asio::io_context io;
  auto opts = tls_client(etcd.url());
  opts.user = "root";
  opts.password = "pw";
  amb::etcd_client client(io.get_executor(), opts);
  auto bad_opts = opts;
  bad_opts.password = "wrong-password";
  amb::etcd_client bad(io.get_executor(), bad_opts);
  io_runner runner(io);

  CHECK(error_of([&] { runner.sync(bad.get("/x")); }) ==
        "etcd authenticate as root at " + etcd.url() +
            ": etcdserver: authentication failed, invalid user ID or password");
  runner.sync(client.put("/auth/a", "1"));
  CHECK(etcd.value("/auth/a", "root:pw") == "1");
  std::this_thread::sleep_for(3500ms);  // the token expires unused
  auto a = runner.sync(client.get("/auth/a"));
  REQUIRE(a);
  CHECK(a->value == "1");
  std::size_t auths = 0;
  runner.post_wait([&] { auths = client.authentications(); });
  CHECK(auths == 2);  // the expired token was replaced once, transparently

  // etcd 3.4's gateway refuses a client certificate carrying a CommonName once auth is on; the reason is quoted.
  auto cn_opts = opts;
  cn_opts.tls.cert_file = test_pki::get().server_cert();  // CN 127.0.0.1, clientAuth usage
  cn_opts.tls.key_file = test_pki::get().server_key();
  amb::etcd_client cn(io.get_executor(), cn_opts);
  CHECK(
      error_of([&] { runner.sync(cn.get("/x")); }) ==
      "etcd get /x: etcd authenticate as root at " + etcd.url() +
          ": HTTP 400 with a body that is not an etcd reply (\"CommonName of client sending a request against gateway "
          "will be ignored and not used as expected\"): not a valid response");
  runner.post_wait([&] {
    client.close();
    bad.close();
    cn.close();
  });
}

}  // namespace etcd_client_test
