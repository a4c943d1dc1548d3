// SPDX-License-Identifier: MIT
// Unit tests for include/amb/balancer.hpp: fairness, weights, load, hashing stability, ejection, updates.
#include <amb/balancer.hpp>

#include <doctest/doctest.h>

#include <map>
#include <string>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace balancer_test {

using amb::balance_policy;
using amb::balancer;
using amb::host_port;
using namespace std::chrono_literals;

namespace {

balancer make(balance_policy p, int n, std::vector<std::uint32_t> weights = {}) {
  balancer::options o;
  o.policy = p;
  balancer b(o);
  for (int i = 0; i < n; ++i)
    b.upsert("/services/x/i" + std::to_string(i), host_port{"10.0.0." + std::to_string(i + 1), 6379},
             weights.empty() ? 1 : weights[static_cast<std::size_t>(i)]);
  return b;
}

std::map<std::string, int> count_picks(balancer& b, int n) {
  std::map<std::string, int> c;
  for (int i = 0; i < n; ++i) {
    auto p = b.pick("client" + std::to_string(i));
    REQUIRE(p);
    ++c[p->id];
  }
  return c;
}

}  // namespace

TEST_CASE("policy names") {
  CHECK(*amb::parse_balance_policy("least-conn") == balance_policy::least_conn);
  CHECK(*amb::parse_balance_policy("source-hash") == balance_policy::source_hash);
  CHECK(amb::parse_balance_policy("fastest").error ==
        "bad policy \"fastest\" (use round-robin, weighted, least-conn, p2c or source-hash)");
  CHECK(std::string(amb::to_string(balance_policy::round_robin)) == "round-robin");
}

TEST_CASE("empty set gives nothing") {
  balancer b;
  CHECK(b.pick() == nullptr);
}

TEST_CASE("round-robin visits every instance in turn") {
  auto b = make(balance_policy::round_robin, 3);
  std::vector<std::string> seq;
  for (int i = 0; i < 6; ++i) seq.push_back(b.pick()->id);
  CHECK(seq == std::vector<std::string>{"/services/x/i0", "/services/x/i1", "/services/x/i2", "/services/x/i0",
                                        "/services/x/i1", "/services/x/i2"});
  auto c = count_picks(b, 3000);
  for (auto& [id, n] : c) CHECK(n == 1000);
}

TEST_CASE("round-robin keeps its turn across an unrelated update") {
  auto b = make(balance_policy::round_robin, 3);
  CHECK(b.pick()->id == "/services/x/i0");
  b.upsert("/services/x/i9", host_port{"10.0.0.9", 1});
  CHECK(b.pick()->id == "/services/x/i1");
  b.remove("/services/x/i2");
  CHECK(b.pick()->id == "/services/x/i9");
  CHECK(b.pick()->id == "/services/x/i0");
}

TEST_CASE("smooth weighted round-robin: exact ratios, interleaved") {
  auto b = make(balance_policy::weighted, 3, {5, 1, 1});
  std::vector<std::string> seq;
  for (int i = 0; i < 7; ++i) seq.push_back(b.pick()->id.substr(12));
  // nginx's documented sequence for weights 5,1,1: a a b a c a a
  CHECK(seq == std::vector<std::string>{"i0", "i0", "i1", "i0", "i2", "i0", "i0"});
  auto c = count_picks(b, 7000);
  CHECK(c["/services/x/i0"] == 5000);
  CHECK(c["/services/x/i1"] == 1000);
  CHECK(c["/services/x/i2"] == 1000);
}

TEST_CASE("least-connections follows long-lived connections") {
  auto b = make(balance_policy::least_conn, 3);
  std::vector<amb::connection_slot> held;
  // Three long connections spread one per instance.
  std::map<std::string, int> first;
  for (int i = 0; i < 3; ++i) {
    auto p = b.pick();
    ++first[p->id];
    held.emplace_back(p);
  }
  CHECK(first.size() == 3);
  // Closing the one on i1 makes i1 the only least-loaded instance: the next two go there and beyond.
  for (auto& h : held)
    if (h.get()->id == "/services/x/i1") h.release();
  auto next = b.pick();
  CHECK(next->id == "/services/x/i1");
  held.emplace_back(next);
  CHECK(b.get("/services/x/i1")->active == 1);
  // Load 1/1/1 again: short connections (picked and closed at once) go round, never pile up.
  auto c = count_picks(b, 300);
  for (auto& [id, n] : c) CHECK(n == 100);
}

TEST_CASE("least-connections respects weights") {
  auto b = make(balance_policy::least_conn, 2, {3, 1});
  std::vector<amb::connection_slot> held;
  for (int i = 0; i < 400; ++i) held.emplace_back(b.pick());
  CHECK(b.get("/services/x/i0")->active == 300);
  CHECK(b.get("/services/x/i1")->active == 100);
}

TEST_CASE("power of two choices prefers the less loaded instance") {
  auto b = make(balance_policy::p2c, 4);
  std::vector<amb::connection_slot> held;
  // Load i0 heavily by hand.
  for (int i = 0; i < 50; ++i) held.emplace_back(b.get("/services/x/i0"));
  auto c = count_picks(b, 3000);
  // i0 only wins when both choices are i0, which p2c never draws (distinct pair): zero picks.
  CHECK(c["/services/x/i0"] == 0);
  // The idle three share the rest roughly evenly.
  for (int i = 1; i < 4; ++i) {
    CHECK(c["/services/x/i" + std::to_string(i)] > 800);
    CHECK(c["/services/x/i" + std::to_string(i)] < 1200);
  }
  // With connections held open, p2c keeps loads close together.
  balancer e = make(balance_policy::p2c, 4);
  std::vector<amb::connection_slot> open;
  for (int i = 0; i < 4000; ++i) open.emplace_back(e.pick());
  std::size_t lo = SIZE_MAX, hi = 0;
  for (auto& p : e.instances()) {
    lo = std::min(lo, p->active);
    hi = std::max(hi, p->active);
  }
  CHECK(hi - lo <= 20);
}

TEST_CASE("source-hash: same client same instance, and fair-ish spread") {
  auto b = make(balance_policy::source_hash, 3);
  std::map<std::string, std::string> where;
  for (int i = 0; i < 3000; ++i) {
    std::string client = "192.168." + std::to_string(i / 256) + "." + std::to_string(i % 256);
    where[client] = b.pick(client)->id;
  }
  for (auto& [client, id] : where) CHECK(b.pick(client)->id == id);
  std::map<std::string, int> share;
  for (auto& [client, id] : where) ++share[id];
  REQUIRE(share.size() == 3);
  for (auto& [id, n] : share) {
    CHECK(n > 700);
    CHECK(n < 1300);
  }
}

TEST_CASE("source-hash: adding a 4th instance moves about a quarter of the clients") {
  auto b = make(balance_policy::source_hash, 3);
  std::map<std::string, std::string> before;
  const int clients = 4000;
  for (int i = 0; i < clients; ++i) {
    std::string client = "10." + std::to_string(i / 256) + ".0." + std::to_string(i % 256);
    before[client] = b.pick(client)->id;
  }
  b.upsert("/services/x/i3", host_port{"10.0.0.4", 6379});
  int moved = 0, moved_elsewhere = 0;
  for (auto& [client, id] : before) {
    auto now = b.pick(client)->id;
    if (now != id) {
      ++moved;
      if (now != "/services/x/i3") ++moved_elsewhere;
    }
  }
  CHECK(moved > clients * 15 / 100);
  CHECK(moved < clients * 35 / 100);
  CHECK(moved_elsewhere == 0);  // only the newcomer takes clients
  // Removing it again puts every client back where it was.
  b.remove("/services/x/i3");
  for (auto& [client, id] : before) CHECK(b.pick(client)->id == id);
}

TEST_CASE("source-hash: an ejected or tried instance hands its clients to the next point on the ring") {
  auto b = make(balance_policy::source_hash, 3);
  auto first = b.pick("1.2.3.4");
  auto second = b.pick("1.2.3.4", {first});
  REQUIRE(second);
  CHECK(second != first);
  CHECK(b.pick("1.2.3.4", {first}) == second);
}

TEST_CASE("pick skips instances already tried for this client") {
  auto b = make(balance_policy::round_robin, 3);
  std::vector<std::shared_ptr<amb::instance>> tried;
  for (int i = 0; i < 3; ++i) {
    auto p = b.pick("", tried);
    REQUIRE(p);
    CHECK(std::find(tried.begin(), tried.end(), p) == tried.end());
    tried.push_back(p);
  }
  CHECK(b.pick("", tried) == nullptr);
}

TEST_CASE("ejection after max_fails in a row, then tried again") {
  balancer::options o;
  o.max_fails = 3;
  o.fail_timeout = 10s;
  balancer b(o);
  b.upsert("a", host_port{"10.0.0.1", 1});
  b.upsert("b", host_port{"10.0.0.2", 1});
  auto a = b.get("a");
  auto t0 = amb::instance::clock::now();
  CHECK_FALSE(b.report_failure(*a, t0));
  CHECK_FALSE(b.report_failure(*a, t0));
  b.report_success(*a);  // a success breaks the streak
  CHECK_FALSE(b.report_failure(*a, t0));
  CHECK_FALSE(b.report_failure(*a, t0));
  CHECK(b.report_failure(*a, t0));  // third in a row: ejected, reported once
  CHECK_FALSE(b.report_failure(*a, t0 + 1s));
  CHECK(a->total_fails == 6);
  for (int i = 0; i < 10; ++i) CHECK(b.pick("", {}, t0 + 5s)->id == "b");
  // After the timeout it is tried again.
  std::map<std::string, int> c;
  for (int i = 0; i < 10; ++i) ++c[b.pick("", {}, t0 + 11s)->id];
  CHECK(c["a"] == 5);
  // One more failure right away ejects it again; a success brings it back for good.
  CHECK(b.report_failure(*a, t0 + 11s));
  CHECK(b.pick("", {}, t0 + 12s)->id == "b");
  CHECK(b.report_success(*a));
  CHECK_FALSE(b.report_success(*a));
  c.clear();
  for (int i = 0; i < 10; ++i) ++c[b.pick("", {}, t0 + 12s)->id];
  CHECK(c["a"] == 5);
}

TEST_CASE("when every instance is ejected, they are still offered (recover on the first good connect)") {
  balancer::options o;
  o.max_fails = 1;
  balancer b(o);
  b.upsert("a", host_port{"10.0.0.1", 1});
  auto now = amb::instance::clock::now();
  CHECK(b.report_failure(*b.get("a"), now));
  CHECK(b.pick("", {}, now) == b.get("a"));
  CHECK(b.pick("", {b.get("a")}, now) == nullptr);
}

TEST_CASE("max_fails 0 never ejects") {
  balancer::options o;
  o.max_fails = 0;
  balancer b(o);
  b.upsert("a", host_port{"10.0.0.1", 1});
  for (int i = 0; i < 100; ++i) CHECK_FALSE(b.report_failure(*b.get("a")));
  CHECK_FALSE(b.get("a")->is_ejected(amb::instance::clock::now()));
}

TEST_CASE("updates report what changed and leave established connections alone") {
  balancer b;
  auto c1 = b.upsert("k1", host_port{"10.0.0.1", 1});
  REQUIRE(c1.size() == 1);
  CHECK(c1[0].what == amb::balancer_change::added);
  CHECK(b.upsert("k1", host_port{"10.0.0.1", 1}).empty());  // same value again: a heartbeat, no change

  amb::connection_slot live(b.pick());
  auto old = live.get();
  CHECK(old->active == 1);

  auto c2 = b.upsert("k1", host_port{"10.0.0.9", 2});
  REQUIRE(c2.size() == 1);
  CHECK(c2[0].what == amb::balancer_change::changed);
  CHECK(old->address == host_port{"10.0.0.1", 1});  // the live connection's instance is untouched
  CHECK(old->active == 1);
  CHECK(b.get("k1")->address == host_port{"10.0.0.9", 2});
  CHECK(b.get("k1")->active == 0);

  auto w = b.upsert("k1", host_port{"10.0.0.9", 2}, 4);
  REQUIRE(w.size() == 1);
  CHECK(w[0].weight == 4);

  auto c3 = b.remove("k1");
  REQUIRE(c3.size() == 1);
  CHECK(c3[0].what == amb::balancer_change::removed);
  CHECK(b.remove("k1").empty());
  CHECK(b.empty());
  CHECK(old->active == 1);
  live.release();
  CHECK(old->active == 0);
}

TEST_CASE("replace_all applies a snapshot: stale instances go, unchanged ones keep their state") {
  balancer b;
  b.upsert("a", host_port{"10.0.0.1", 1});
  b.upsert("b", host_port{"10.0.0.2", 1});
  b.upsert("c", host_port{"10.0.0.3", 1});
  amb::connection_slot on_a(b.get("a"));
  auto a = b.get("a");
  auto changes = b.replace_all(
      {{"a", host_port{"10.0.0.1", 1}, 1}, {"c", host_port{"10.0.0.33", 1}, 1}, {"d", host_port{"10.0.0.4", 1}, 1}});
  std::map<std::string, amb::balancer_change::kind> seen;
  for (auto& ch : changes) seen[ch.id] = ch.what;
  CHECK(seen.size() == 3);
  CHECK(seen["b"] == amb::balancer_change::removed);
  CHECK(seen["c"] == amb::balancer_change::changed);
  CHECK(seen["d"] == amb::balancer_change::added);
  CHECK(b.get("a") == a);
  CHECK(a->active == 1);
  CHECK(b.size() == 3);
  CHECK(b.replace_all({}).size() == 3);
  CHECK(b.empty());
}

TEST_CASE("round-robin: a failover pick does not move the turn (a dead instance is tried once per round)") {
  auto b = make(balance_policy::round_robin, 3);
  auto dead = b.get("/services/x/i1");
  std::map<std::string, int> first_choice;
  for (int i = 0; i < 30; ++i) {
    auto p = b.pick();
    ++first_choice[p->id];
    if (p == dead) REQUIRE(b.pick("", {dead}) != dead);
  }
  CHECK(first_choice["/services/x/i1"] == 10);
  CHECK(first_choice["/services/x/i0"] == 10);
}

namespace {
constexpr balance_policy every_policy[] = {balance_policy::round_robin, balance_policy::weighted,
                                           balance_policy::least_conn, balance_policy::p2c,
                                           balance_policy::source_hash};

/// Four instances i0..i3 with weights 1, 2, 3, 4; `draining` names those that drain.
balancer make_draining(balance_policy p, std::vector<int> draining) {
  auto b = make(p, 4, {1, 2, 3, 4});
  for (int i : draining)
    b.upsert("/services/x/i" + std::to_string(i), host_port{"10.0.0." + std::to_string(i + 1), 6379},
             static_cast<std::uint32_t>(i + 1), true);
  return b;
}
}  // namespace

TEST_CASE("every policy skips draining instances") {
  for (auto p : every_policy) {
    CAPTURE(amb::to_string(p));
    auto b = make_draining(p, {1, 3});
    std::vector<amb::connection_slot> held;  // least-conn and p2c see load build up on what they pick
    std::map<std::string, int> c;
    for (int i = 0; i < 400; ++i) {
      auto pick = b.pick("client" + std::to_string(i));
      REQUIRE(pick);
      ++c[pick->id];
      if (i % 2 == 0) held.emplace_back(pick);
    }
    CHECK(c.count("/services/x/i1") == 0);
    CHECK(c.count("/services/x/i3") == 0);
    CHECK(c["/services/x/i0"] > 0);
    CHECK(c["/services/x/i2"] > 0);
    CHECK(c["/services/x/i0"] + c["/services/x/i2"] == 400);
  }
}

TEST_CASE("a draining instance is still the failover of last resort: after every other one was tried") {
  for (auto p : every_policy) {
    CAPTURE(amb::to_string(p));
    auto b = make_draining(p, {1, 2, 3});
    auto first = b.pick("1.2.3.4");
    REQUIRE(first);
    CHECK(first->id == "/services/x/i0");
    auto second = b.pick("1.2.3.4", {first});
    REQUIRE(second);
    CHECK(second->draining);  // i0 refused this client: a draining instance is still up
  }
}

TEST_CASE("when every instance drains, new connections still go to them, by the policy") {
  for (auto p : every_policy) {
    CAPTURE(amb::to_string(p));
    auto b = make_draining(p, {0, 1, 2, 3});
    CHECK(b.draining() == 4);
    std::map<std::string, int> c;
    for (int i = 0; i < 400; ++i) {
      auto pick = b.pick("client" + std::to_string(i));
      REQUIRE(pick);
      ++c[pick->id];
    }
    CHECK(c.size() >= 2);  // spread over them, not piled on one
    if (p == balance_policy::round_robin) CHECK(c["/services/x/i0"] == 100);
    if (p == balance_policy::weighted) CHECK(c["/services/x/i3"] == 160);  // weights still hold: 4 of 10
  }
}

TEST_CASE("draining on and off updates the instance in place: counters, ejection, open connections kept") {
  balancer::options o;
  o.max_fails = 5;
  balancer b(o);
  b.upsert("a", host_port{"10.0.0.1", 1}, 3);
  b.upsert("b", host_port{"10.0.0.2", 1});
  auto a = b.get("a");
  amb::connection_slot open1(a), open2(a);
  b.report_failure(*a);
  auto on = b.upsert("a", host_port{"10.0.0.1", 1}, 3, true);
  REQUIRE(on.size() == 1);
  CHECK(on[0].what == amb::balancer_change::drain_started);
  CHECK(on[0].draining);
  CHECK(on[0].open == 2);
  CHECK(on[0].weight == 3);
  CHECK(b.get("a") == a);  // the same object: its connections, counters and streak stay
  CHECK(a->draining);
  CHECK(a->active == 2);
  CHECK(a->consecutive_fails == 1);
  CHECK(b.draining() == 1);
  CHECK(b.upsert("a", host_port{"10.0.0.1", 1}, 3, true).empty());  // a heartbeat while draining: nothing
  for (int i = 0; i < 6; ++i) CHECK(b.pick()->id == "b");
  // weight 0 (a registry value's other way to say draining) is weight 1 while draining
  auto zero = b.upsert("a", host_port{"10.0.0.1", 1}, 0, true);
  REQUIRE(zero.size() == 1);
  CHECK(zero[0].what == amb::balancer_change::changed);
  CHECK(a->weight == 1);
  auto off = b.upsert("a", host_port{"10.0.0.1", 1}, 3, false);
  REQUIRE(off.size() == 1);
  CHECK(off[0].what == amb::balancer_change::drain_ended);
  CHECK_FALSE(off[0].draining);
  CHECK(off[0].weight == 3);
  CHECK(b.get("a") == a);
  CHECK_FALSE(a->draining);
  CHECK(a->weight == 3);
  CHECK(b.draining() == 0);
  std::map<std::string, int> c;
  for (int i = 0; i < 6; ++i) ++c[b.pick()->id];
  CHECK(c["a"] == 3);
  // A new address while draining is a fresh instance, still draining; the old one keeps its connections.
  auto moved = b.upsert("a", host_port{"10.0.0.9", 1}, 3, true);
  REQUIRE(moved.size() == 1);
  CHECK(moved[0].what == amb::balancer_change::changed);
  CHECK(moved[0].draining);
  CHECK(b.get("a")->draining);
  CHECK(a->active == 2);
  // Removing a draining instance reports it; its open connections go on.
  auto gone = b.remove("a");
  REQUIRE(gone.size() == 1);
  CHECK(gone[0].draining);
  CHECK(a->active == 2);
}

TEST_CASE("replace_all carries the draining state; added draining instances are reported so") {
  balancer b;
  b.upsert("a", host_port{"10.0.0.1", 1});
  auto a = b.get("a");
  auto changes = b.replace_all({{"a", host_port{"10.0.0.1", 1}, 1, true}, {"b", host_port{"10.0.0.2", 1}, 1, true}});
  std::map<std::string, amb::balancer_change> seen;
  for (auto& ch : changes) seen.emplace(ch.id, ch);
  REQUIRE(seen.size() == 2);
  CHECK(seen.at("a").what == amb::balancer_change::drain_started);
  CHECK(seen.at("b").what == amb::balancer_change::added);
  CHECK(seen.at("b").draining);
  CHECK(b.get("a") == a);
  CHECK(b.draining() == 2);
}

TEST_CASE("draining and ejection: a healthy draining instance is preferred to an ejected one") {
  for (auto p : every_policy) {
    CAPTURE(amb::to_string(p));
    balancer::options o;
    o.policy = p;
    o.max_fails = 1;
    balancer b(o);
    b.upsert("a", host_port{"10.0.0.1", 1}, 1, true);  // draining, up
    b.upsert("b", host_port{"10.0.0.2", 1});           // takes new connections, but refused the last one
    b.upsert("c", host_port{"10.0.0.3", 1}, 1, true);  // draining, failed too
    auto now = amb::instance::clock::now();
    CHECK(b.report_failure(*b.get("b"), now));
    CHECK(b.report_failure(*b.get("c"), now));
    for (int i = 0; i < 5; ++i) CHECK(b.pick("client" + std::to_string(i), {}, now)->id == "a");
    // a refused this client too: the ejected instance that takes new connections comes next, then the other
    auto next = b.pick("client", {b.get("a")}, now);
    REQUIRE(next);
    CHECK(next->id == "b");
    CHECK(b.pick("client", {b.get("a"), b.get("b")}, now)->id == "c");
    CHECK(b.pick("client", {b.get("a"), b.get("b"), b.get("c")}, now) == nullptr);
    // Once its ejection is over, b takes the new connections again, not the draining a.
    CHECK(b.pick("client", {}, now + 11s)->id == "b");
  }
}

}  // namespace balancer_test
