// SPDX-License-Identifier: MIT
// dynamic-etcd-amb against real etcd and redis: value forms, live changes, policies, metrics, usage errors.
#include "support/dynamic_amb.hpp"

#include <doctest/doctest.h>

#include <set>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace dynamic_routing_test {

using namespace amb::test;

namespace {
const std::string dir = "/services/redis-A/";

/// n fresh connections through the ambassador; the names that answered, in order.
std::vector<std::string> sequence(const ambassador& amb, int n) {
  std::vector<std::string> seq;
  for (int i = 0; i < n; ++i) seq.push_back(who_via(amb.port()));
  return seq;
}
}  // namespace

TEST_CASE("usage errors exit 2 with exact texts") {
  auto run_amb = [](std::vector<std::string> args) {
    args.insert(args.begin(), AMB_DYNAMIC_ETCD_AMB_BIN);
    return run(args, 10s);
  };
  const std::string hint = "Try 'dynamic-etcd-amb --help'.\n";
  auto r = run_amb({});
  CHECK(r.status == 2);
  CHECK(r.output == "dynamic-etcd-amb: missing SERVICE and PORT\n" + hint);
  r = run_amb({"redis-A"});
  CHECK(r.status == 2);
  CHECK(r.output == "dynamic-etcd-amb: missing PORT\n" + hint);
  r = run_amb({"redis-A", "70000"});
  CHECK(r.status == 2);
  CHECK(r.output == "dynamic-etcd-amb: bad port \"70000\" (expected 1..65535)\n" + hint);
  r = run_amb({"--policy", "fastest", "redis-A", "6379"});
  CHECK(r.status == 2);
  CHECK(r.output ==
        "dynamic-etcd-amb: bad policy \"fastest\" (use round-robin, weighted, least-conn, p2c or source-hash)\n" +
            hint);
  r = run_amb({"--connect-timeout", "soon", "redis-A", "6379"});
  CHECK(r.status == 2);
  CHECK(r.output == "dynamic-etcd-amb: bad duration \"soon\" (use e.g. 500ms, 5s, 2m) for --connect-timeout\n" + hint);
  r = run_amb({"--etcd", "ftp://10.0.0.1:2379", "redis-A", "6379"});
  CHECK(r.status == 2);
  CHECK(r.output ==
        "dynamic-etcd-amb: unsupported scheme \"ftp\" in \"ftp://10.0.0.1:2379\" (use http://, https://, "
        "tcp:// or unix://) in --etcd\n" +
            hint);
  r = run_amb({"--bogus", "redis-A", "6379"});
  CHECK(r.status == 2);
  CHECK(r.output == "dynamic-etcd-amb: unknown option '--bogus'\n" + hint);
  r = run_amb({"--max-fails", "-1", "redis-A", "6379"});
  CHECK(r.status == 2);
  CHECK(r.output == "dynamic-etcd-amb: bad number \"-1\" for --max-fails\n" + hint);
  r = run_amb({"a/b", "6379"});
  CHECK(r.status == 2);
  CHECK(r.output == "dynamic-etcd-amb: bad SERVICE \"a/b\"\n" + hint);
  r = run_amb({"--help"});
  CHECK(r.status == 0);
  CHECK(r.output.rfind("Usage: dynamic-etcd-amb [OPTIONS] SERVICE PORT\n", 0) == 0);
  r = run_amb({"--version"});
  CHECK(r.status == 0);
  CHECK(r.output.rfind("dynamic-etcd-amb ", 0) == 0);
}

TEST_CASE("routing follows etcd: value forms, round-robin, delete, change, open connections, bad values") {
  etcd_cluster etcd;
  tagged_redis a("a"), b("b"), c("c");
  etcd.etcdctl({"put", dir + "a", a.json()});  // the seed's JSON value
  ambassador amb(etcd.endpoints(), "redis-A");

  CHECK(who_via(amb.port()) == "a");
  CHECK(amb.output().find("instance /services/redis-A/a added: 127.0.0.1:" + std::to_string(a.server.port())) !=
        std::string::npos);

  // host:port value, and two instances used in turn.
  etcd.etcdctl({"put", dir + "b", b.plain()});
  REQUIRE(amb.routes_to("b"));
  auto seq = sequence(amb, 6);
  for (std::size_t i = 1; i < seq.size(); ++i) CHECK(seq[i] != seq[i - 1]);
  CHECK(std::set<std::string>(seq.begin(), seq.end()) == std::set<std::string>{"a", "b"});

  // A connection open to b keeps working after b's key is deleted; new ones go to a only.
  blocking_conn held(amb.port());
  std::string first = held.who();
  for (int tries = 0; first != "b" && tries < 4; ++tries) {  // round-robin: the next connection lands on b
    held = blocking_conn(amb.port());
    first = held.who();
  }
  REQUIRE(first == "b");
  etcd.etcdctl({"del", dir + "b"});
  REQUIRE(wait_until([&] { return amb.metric("amb_instances") == 1; }, 10s));
  for (auto& s : sequence(amb, 4)) CHECK(s == "a");
  CHECK(held.who() == "b");
  CHECK(held.command("PING") == "+PONG\r\n");

  // A changed value: new connections go to the new address; the connection to a stays.
  blocking_conn on_a(amb.port());
  CHECK(on_a.who() == "a");
  etcd.etcdctl({"put", dir + "a", c.json()});
  REQUIRE(amb.routes_to("c"));
  for (auto& s : sequence(amb, 3)) CHECK(s == "c");
  CHECK(on_a.who() == "a");
  CHECK(amb.output().find("instance /services/redis-A/a changed: 127.0.0.1:" + std::to_string(c.server.port())) !=
        std::string::npos);

  // Garbage is skipped with one warning naming the key; re-putting it does not warn again.
  etcd.etcdctl({"put", dir + "bad", "garbage"});
  etcd.etcdctl({"put", dir + "bad", "garbage"});
  etcd.etcdctl({"put", dir + "worse", R"({"host":"10.0.0.1","port":0})"});
  REQUIRE(wait_until([&] { return amb.count_in_output("skipping /services/redis-A/worse") == 1; }, 10s));
  CHECK(amb.count_in_output(
            "dynamic-etcd-amb: warning: skipping /services/redis-A/bad: bad registry value \"garbage\": neither "
            "{\"host\":..,\"port\":..} nor HOST:PORT\n") == 1);
  CHECK(amb.process().running());
  for (auto& s : sequence(amb, 3)) CHECK(s == "c");
  CHECK(amb.metric("amb_instances") == 1);

  // Identical re-puts (heartbeats) log nothing.
  auto lines_before = amb.count_in_output("\n");
  for (int i = 0; i < 3; ++i) etcd.etcdctl({"put", dir + "a", c.json()});
  etcd.etcdctl({"put", dir + "zz-marker", "127.0.0.1:1"});
  REQUIRE(wait_until([&] { return amb.count_in_output("zz-marker added") == 1; }, 10s));
  CHECK(amb.count_in_output("\n") == lines_before + 1);
}

TEST_CASE("no instance: the client is closed at once with one log line, or held with --wait-for-backend") {
  etcd_cluster etcd;
  tagged_redis a("a");
  ambassador amb(etcd.endpoints(), "redis-A");
  CHECK(who_via(amb.port()).empty());
  CHECK(amb.count_in_output("warning: no instance registered under /services/redis-A/; closing connection from "
                            "127.0.0.1:") == 1);
  ambassador waiting(etcd.endpoints(), "redis-A", {"--wait-for-backend", "20"});
  blocking_conn c(waiting.port(), {}, 20s);
  REQUIRE(c.send("GET who\r\n"));
  // The client is held: the instance appears later and the request is answered.
  REQUIRE(wait_until([&] { return waiting.metric("amb_connections_active") == 1; }, 10s));
  etcd.etcdctl({"put", dir + "a", a.json()});
  CHECK(blocking_conn::bulk_value(c.read_reply()) == "a");
}

TEST_CASE("--wait-for-backend takes a duration, as every time flag (a bare number is seconds)") {
  etcd_cluster etcd;
  ambassador amb(etcd.endpoints(), "redis-B", {"--wait-for-backend", "1500ms"});
  const auto start = std::chrono::steady_clock::now();
  CHECK(who_via(amb.port()).empty());  // held for 1.5s, then closed: nothing registered
  const auto held = std::chrono::steady_clock::now() - start;
  CHECK(held >= 1400ms);
  CHECK(held < 6s);
  CHECK(amb.count_in_output("warning: no instance registered under /services/redis-B/; closing connection from ") == 1);
  auto r = run({AMB_DYNAMIC_ETCD_AMB_BIN, "--wait-for-backend", "5x", "redis-A", "6379"}, 10s);
  CHECK(r.status == 2);
  CHECK(r.output ==
        "dynamic-etcd-amb: bad duration \"5x\" (use e.g. 500ms, 5s, 2m) for --wait-for-backend\n"
        "Try 'dynamic-etcd-amb --help'.\n");
}

TEST_CASE("--listen: PORT may be left out; a PORT that disagrees is refused; etcd://HOST:PORT/PREFIX sets the prefix") {
  etcd_cluster etcd;
  tagged_redis a("a");
  etcd.etcdctl({"put", "/registrator/redis-A/a", a.json()});
  const std::uint16_t port = free_port();
  const std::string listen = "127.0.0.1:" + std::to_string(port);
  const std::string url = etcd.url(0);
  const std::string hostport = url.substr(url.find("://") + 3);
  child_process amb(
      {AMB_DYNAMIC_ETCD_AMB_BIN, "--etcd", "etcd://" + hostport + "/registrator/", "--listen", listen, "redis-A"});
  REQUIRE(
      wait_until([&] { return amb.output().find("instance /registrator/redis-A/a added") != std::string::npos; }, 10s));
  CHECK(amb.output().find("dynamic-etcd-amb: listening on " + listen +
                          ", forwarding to /registrator/redis-A/ (etcd at " + url + " (from --etcd etcd://" + hostport +
                          "/registrator/), policy round-robin)\n") != std::string::npos);
  CHECK(who_via(port) == "a");
  amb.signal(SIGTERM);
  CHECK(amb.wait(10s) == 0);

  const std::string hint = "Try 'dynamic-etcd-amb --help'.\n";
  auto r = run({AMB_DYNAMIC_ETCD_AMB_BIN, "--listen", "127.0.0.1:49932", "redis-A", "6379"}, 10s);
  CHECK(r.status == 2);
  CHECK(r.output ==
        "dynamic-etcd-amb: PORT 6379 disagrees with --listen 127.0.0.1:49932: give the port once (PORT may be left "
        "out with --listen)\n" +
            hint);
  r = run({AMB_DYNAMIC_ETCD_AMB_BIN, "--etcd", "etcd://127.0.0.1:2379/a", "--prefix", "/b", "redis-A", "6379"}, 10s);
  CHECK(r.status == 2);
  CHECK(r.output ==
        "dynamic-etcd-amb: --prefix \"/b\" disagrees with the prefix \"/a\" of --etcd etcd://HOST:PORT/PREFIX: give "
        "the prefix once\n" +
            hint);
  r = run({AMB_DYNAMIC_ETCD_AMB_BIN, "--etcd", "etcd://127.0.0.1:2379/a,etcd://127.0.0.2:2379/a", "redis-A", "6379"},
          10s);
  CHECK(r.status == 2);
  CHECK(r.output ==
        "dynamic-etcd-amb: bad etcd address \"etcd://127.0.0.1:2379/a,etcd://127.0.0.2:2379/a\": "
        "etcd://HOST:PORT/PREFIX names one endpoint (for several, give http:// URLs and --prefix) in --etcd\n" +
            hint);
  auto help = run({AMB_DYNAMIC_ETCD_AMB_BIN, "--help"}, 10s);
  CHECK(help.output.rfind("Usage: dynamic-etcd-amb [OPTIONS] SERVICE PORT\n"
                          "       dynamic-etcd-amb [OPTIONS] --listen HOST:PORT SERVICE [PORT]\n",
                          0) == 0);
  CHECK(help.output.find("With --listen, PORT may be left out; given, it must be --listen's port (else exit 2).\n") !=
        std::string::npos);
  CHECK(help.output.find("--wait-for-backend DURATION") != std::string::npos);
  CHECK(help.output.find("registrator's etcd://HOST:PORT/PREFIX also sets the prefix") != std::string::npos);
}

TEST_CASE("least-connections sends new clients to the instance with fewer long-lived connections") {
  etcd_cluster etcd;
  tagged_redis a("a"), b("b");
  etcd.etcdctl({"put", dir + "a", a.json()});
  etcd.etcdctl({"put", dir + "b", b.json()});
  ambassador amb(etcd.endpoints(), "redis-A", {"--policy", "least-conn"});
  std::vector<blocking_conn> held;
  std::map<std::string, int> load;
  for (int i = 0; i < 4; ++i) {
    held.emplace_back(amb.port());
    ++load[held.back().who()];
  }
  CHECK(load["a"] == 2);
  CHECK(load["b"] == 2);
  // Close both connections on a: the next two clients must both go to a, however the turn stands.
  int closed = 0;
  for (auto& h : held)
    if (closed < 2 && h.who() == "a") {
      h.close();
      ++closed;
    }
  REQUIRE(wait_until([&] { return amb.metric("amb_connections_active") == 2; }, 10s));
  blocking_conn n1(amb.port()), n2(amb.port());
  CHECK(n1.who() == "a");
  CHECK(n2.who() == "a");
}

TEST_CASE("source-hash: same client same instance; a new instance takes only some clients, only for itself") {
  etcd_cluster etcd;
  tagged_redis a("a"), b("b"), c("c"), d("d");
  for (auto* r : {&a, &b, &c}) etcd.etcdctl({"put", dir + r->name, r->json()});
  ambassador amb(etcd.endpoints(), "redis-A", {"--policy", "source-hash"});
  REQUIRE(wait_until([&] { return amb.metric("amb_instances") == 3; }, 10s));
  std::map<std::string, std::string> where;
  const int clients = 40;
  for (int i = 2; i < 2 + clients; ++i) {
    std::string ip = "127.0.0." + std::to_string(i);
    where[ip] = who_via(amb.port(), ip);
    REQUIRE(!where[ip].empty());
    CHECK(who_via(amb.port(), ip) == where[ip]);  // stable
  }
  std::set<std::string> used;
  for (auto& [ip, w] : where) used.insert(w);
  CHECK(used.size() == 3);
  etcd.etcdctl({"put", dir + "d", d.json()});
  REQUIRE(wait_until([&] { return amb.metric("amb_instances") == 4; }, 10s));
  int moved = 0;
  for (auto& [ip, w] : where) {
    auto now = who_via(amb.port(), ip);
    if (now != w) {
      ++moved;
      CHECK(now == "d");  // clients move only to the newcomer
    }
  }
  CHECK(moved > 0);
  CHECK(moved < clients / 2);  // about a quarter, never all
}

TEST_CASE("/metrics matches what the test did") {
  etcd_cluster etcd;
  tagged_redis a("a");
  etcd.etcdctl({"put", dir + "a", a.json()});
  etcd.etcdctl({"put", dir + "gone", "127.0.0.1:" + std::to_string(free_port())});  // nothing listens there
  ambassador amb(etcd.endpoints(), "redis-A", {"--max-fails", "100"});
  const int requests = 6;
  for (int i = 0; i < requests; ++i) CHECK(who_via(amb.port()) == "a");
  REQUIRE(wait_until([&] { return amb.metric("amb_connections_active") == 0; }, 10s));
  auto m = amb.metrics();
  CHECK(m["amb_connections_accepted_total"] == requests);
  CHECK(m["amb_connections_rejected_total"] == 0);
  CHECK(m["amb_bytes_total{direction=\"up\"}"] == requests * std::string("GET who\r\n").size());
  CHECK(m["amb_bytes_total{direction=\"down\"}"] == requests * std::string("$1\r\na\r\n").size());
  CHECK(m.count("amb_bytes_spliced_total") == 1);
  CHECK(m["amb_bytes_spliced_total"] == 0);  // small messages are copied, not spliced
  CHECK(m["amb_instances"] == 2);
  // Round-robin alternates a and gone: every second client first failed on "gone", then fell over to a.
  CHECK(m["amb_connect_failures_total{instance=\"/services/redis-A/gone\"}"] == requests / 2);
  CHECK(m["amb_watch_reconnects_total"] == 0);
  auto rev = etcd.etcdctl({"get", dir, "--prefix", "-w", "json"});
  auto at = rev.find("\"revision\":");
  REQUIRE(at != std::string::npos);
  CHECK(m["amb_etcd_revision"] == std::strtod(rev.c_str() + at + 11, nullptr));
}

TEST_CASE("weighted: a \"weight\" field sets the share of new connections") {
  etcd_cluster etcd;
  tagged_redis a("a"), b("b");
  etcd.etcdctl(
      {"put", dir + "a", R"({"host":"127.0.0.1","port":)" + std::to_string(a.server.port()) + R"(,"weight":3})"});
  etcd.etcdctl({"put", dir + "b", b.plain()});
  ambassador amb(etcd.endpoints(), "redis-A", {"--policy", "weighted"});
  REQUIRE(wait_until([&] { return amb.metric("amb_instances") == 2; }, 10s));
  std::map<std::string, int> share;
  for (auto& s : sequence(amb, 8)) ++share[s];
  CHECK(share["a"] == 6);
  CHECK(share["b"] == 2);
  CHECK(amb.output().find("instance /services/redis-A/a added: 127.0.0.1:" + std::to_string(a.server.port()) +
                          " (weight 3)") != std::string::npos);
}

TEST_CASE("--idle-timeout closes a connection silent both ways") {
  etcd_cluster etcd;
  tagged_redis a("a");
  etcd.etcdctl({"put", dir + "a", a.json()});
  ambassador amb(etcd.endpoints(), "redis-A", {"--idle-timeout", "300ms"});
  blocking_conn c(amb.port(), {}, 10s);
  CHECK(c.who() == "a");
  CHECK(c.read_reply().empty());  // EOF from the ambassador, long before our 10 s read timeout
  CHECK(wait_until([&] { return amb.metric("amb_connections_active") == 0; }, 10s));
}

}  // namespace dynamic_routing_test
