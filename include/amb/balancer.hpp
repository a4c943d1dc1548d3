// SPDX-License-Identifier: MIT
// Balancer: the instance set an ambassador forwards to, and the policies that choose from it.
#pragma once

#include "amb/log.hpp"
#include "amb/address.hpp"

#include "amb/detail/asio.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace amb {

/// How the balancer chooses an instance for a new connection.
enum class balance_policy {
  round_robin,  ///< each instance in turn (the seed's behaviour; the default)
  weighted,     ///< smooth weighted round-robin (nginx): weight 3 gets 3 of every 4 picks vs weight 1
  least_conn,   ///< fewest live connections per unit of weight; ties in turn
  p2c,          ///< two instances at random, the less loaded one wins ("power of two choices")
  source_hash,  ///< the client's address on a consistent-hash ring: same client, same instance
};

/// The flag spelling of a policy.
inline const char* to_string(balance_policy p) noexcept {
  switch (p) {
    case balance_policy::round_robin: return "round-robin";
    case balance_policy::weighted: return "weighted";
    case balance_policy::least_conn: return "least-conn";
    case balance_policy::p2c: return "p2c";
    case balance_policy::source_hash: return "source-hash";
  }
  return "?";
}

/// Parses "round-robin", "weighted", "least-conn", "p2c" or "source-hash".
inline parsed<balance_policy> parse_balance_policy(std::string_view text) {
  parsed<balance_policy> r;
  for (auto p : {balance_policy::round_robin, balance_policy::weighted, balance_policy::least_conn, balance_policy::p2c,
                 balance_policy::source_hash})
    if (text == to_string(p)) {
      r.value = p;
      return r;
    }
  r.error = "bad policy " + log::quoted(text) + " (use round-robin, weighted, least-conn, p2c or source-hash)";
  return r;
}

/// `where` as a socket address when its host is an IP literal; std::nullopt for a name (which every
/// connect resolves again, so a changed DNS answer is followed).
inline std::optional<asio::ip::tcp::endpoint> numeric_endpoint(const host_port& where) {
  std::error_code ec;
  const auto ip = asio::ip::make_address(where.host, ec);
  if (ec) return std::nullopt;
  return asio::ip::tcp::endpoint(ip, where.port);
}

/// One registered instance. Connections hold it by shared_ptr, so a removed or replaced
/// instance lives on (with its counters) until its last connection ends.
struct instance {
  using clock = std::chrono::steady_clock;
  std::string id;     ///< the etcd key it came from
  host_port address;  ///< where to connect
  /// `address` parsed once, when it is numeric: the proxy connects to it without parsing the text
  /// again for every connection (numeric_endpoint(); the balancer sets it, for a new address).
  std::optional<asio::ip::tcp::endpoint> endpoint;
  std::uint32_t weight = 1;             ///< relative share (1..)
  std::size_t active = 0;               ///< live connections right now
  std::uint32_t consecutive_fails = 0;  ///< connect failures since the last success
  std::uint64_t total_fails = 0;        ///< connect failures ever (for metrics)
  clock::time_point ejected_until{};    ///< not chosen before this (unless nothing else is left)
  bool ejected = false;                 ///< set while in an ejection period that has been logged
  bool check_down = false;              ///< failing its active health checks: never chosen (health_check.hpp)
  bool draining = false;                ///< registered as draining: no new connections while others can take them
  std::int64_t current_weight = 0;      ///< smooth weighted round-robin state
  /// True while the instance sits out an ejection period.
  bool is_ejected(clock::time_point now) const noexcept { return ejected && now < ejected_until; }
};

/// Counts one live connection on an instance for as long as it exists (movable, not copyable).
class connection_slot {
public:
  connection_slot() = default;
  explicit connection_slot(std::shared_ptr<instance> i) : inst_(std::move(i)) {
    if (inst_) ++inst_->active;
  }
  connection_slot(connection_slot&& o) noexcept : inst_(std::move(o.inst_)) {}
  connection_slot& operator=(connection_slot&& o) noexcept {
    if (this != &o) {
      release();
      inst_ = std::move(o.inst_);
    }
    return *this;
  }
  connection_slot(const connection_slot&) = delete;
  connection_slot& operator=(const connection_slot&) = delete;
  ~connection_slot() { release(); }
  /// The instance counted, or nullptr.
  const std::shared_ptr<instance>& get() const noexcept { return inst_; }
  /// Stops counting now.
  void release() noexcept {
    if (inst_) --inst_->active;
    inst_.reset();
  }

private:
  std::shared_ptr<instance> inst_;
};

/// What an update did, so the caller can log one line per instance.
struct balancer_change {
  /// added, changed (address or weight), removed, or only the draining state turned on or off
  /// (drain_started, drain_ended; a weight changed at the same time is in `weight`).
  enum kind { added, changed, removed, drain_started, drain_ended } what;
  std::string id;            ///< the instance key
  host_port address;         ///< the new address (the old one for removed)
  std::uint32_t weight = 1;  ///< the new weight
  bool draining = false;     ///< the instance's draining state after the change
  std::size_t open = 0;      ///< connections open on the instance (this balancer's) when it changed
};

/// The instance set plus a policy. Single-threaded: call from the io_context thread only.
class balancer {
public:
  using clock = instance::clock;

  /// Tuning; the defaults follow nginx's max_fails/fail_timeout spirit (3 fails, 10 s).
  struct options {
    balance_policy policy = balance_policy::round_robin;  ///< how to choose
    std::uint32_t max_fails = 3;  ///< consecutive connect failures before ejection (0: never eject)
    clock::duration fail_timeout = std::chrono::seconds(10);  ///< how long an ejected instance sits out
    std::uint32_t virtual_nodes = 100;                        ///< ring points per unit of weight (source-hash)
    std::uint64_t seed = 0x5eed;                              ///< random source for p2c (fixed for reproducible tests)
  };

  /// One desired instance, for replace_all.
  struct entry {
    std::string id{};          ///< etcd key
    host_port address{};       ///< where to connect
    std::uint32_t weight = 1;  ///< relative share
    bool draining = false;     ///< no new connections while another instance can take them
  };

  balancer() : balancer(options{}) {}
  explicit balancer(options o) : opts_(o), rng_(o.seed) {}

  /// The options in force.
  const options& config() const noexcept { return opts_; }

  /// Adds or updates one instance. A new address makes a fresh instance (connections to the old
  /// one keep their own object); a weight or draining change updates it in place, keeping its
  /// counters, ejection state and open connections. A draining instance gets no new connection
  /// while a candidate that is not draining is left (see pick()). Weight 0 counts as 1 (registry
  /// values with weight 0 come with `draining` set). Empty result: nothing changed.
  std::vector<balancer_change> upsert(const std::string& id, const host_port& address, std::uint32_t weight = 1,
                                      bool draining = false) {
    std::vector<balancer_change> out;
    if (weight == 0) weight = 1;
    auto it = find(id);
    if (it == set_.end() || (*it)->address != address) {
      const bool is_new = it == set_.end();
      auto i = std::make_shared<instance>();
      i->id = id;
      i->address = address;
      i->endpoint = numeric_endpoint(address);
      i->weight = weight;
      i->draining = draining;
      if (is_new)
        set_.insert(std::upper_bound(set_.begin(), set_.end(), id,
                                     [](const std::string& k, const auto& p) { return k < p->id; }),
                    i);
      else
        *it = i;  // connections to the old address keep the old object
      out.push_back({is_new ? balancer_change::added : balancer_change::changed, id, address, weight, draining});
    } else if ((*it)->draining != draining) {
      (*it)->weight = weight;
      (*it)->draining = draining;
      out.push_back({draining ? balancer_change::drain_started : balancer_change::drain_ended, id, address, weight,
                     draining, (*it)->active});
    } else if ((*it)->weight != weight) {
      (*it)->weight = weight;
      out.push_back({balancer_change::changed, id, address, weight, draining, (*it)->active});
    } else {
      return out;
    }
    rebuild();
    return out;
  }

  /// Removes one instance (established connections keep going). Empty result when unknown.
  std::vector<balancer_change> remove(const std::string& id) {
    std::vector<balancer_change> out;
    auto it = find(id);
    if (it == set_.end()) return out;
    out.push_back({balancer_change::removed, id, (*it)->address, (*it)->weight, (*it)->draining, (*it)->active});
    set_.erase(it);
    rebuild();
    return out;
  }

  /// Makes the set equal to `wanted` (a full snapshot after a re-read); returns the differences.
  /// Instances whose address did not change keep their counters and ejection state.
  std::vector<balancer_change> replace_all(const std::vector<entry>& wanted) {
    std::vector<balancer_change> out;
    std::map<std::string, const entry*> by_id;
    for (const auto& e : wanted) by_id[e.id] = &e;
    for (auto it = set_.begin(); it != set_.end();) {
      if (!by_id.count((*it)->id)) {
        out.push_back(
            {balancer_change::removed, (*it)->id, (*it)->address, (*it)->weight, (*it)->draining, (*it)->active});
        it = set_.erase(it);
      } else {
        ++it;
      }
    }
    for (const auto& [id, e] : by_id) {
      auto c = upsert(id, e->address, e->weight, e->draining);
      out.insert(out.end(), c.begin(), c.end());
    }
    rebuild();
    return out;
  }

  /// Every instance, sorted by id.
  const std::vector<std::shared_ptr<instance>>& instances() const noexcept { return set_; }
  /// Number of instances known.
  std::size_t size() const noexcept { return set_.size(); }
  /// Number of instances registered as draining.
  std::size_t draining() const noexcept {
    return static_cast<std::size_t>(std::count_if(set_.begin(), set_.end(), [](const auto& p) { return p->draining; }));
  }
  /// True when no instance is known.
  bool empty() const noexcept { return set_.empty(); }
  /// The instance with key `id`, or nullptr.
  std::shared_ptr<instance> get(const std::string& id) const {
    auto it = std::find_if(set_.begin(), set_.end(), [&](const auto& p) { return p->id == id; });
    return it == set_.end() ? nullptr : *it;
  }

  /// Chooses an instance for a new connection, skipping those in `tried` (already failed for this
  /// client). The policy chooses among the best non-empty group of the rest, in this order:
  ///   1. neither ejected nor draining;
  ///   2. draining, not ejected: every instance that takes new connections failed or is tried, and a
  ///      draining instance is still up (a graceful stop of the only instance must not be an outage);
  ///   3. ejected, not draining; 4. ejected and draining: a set whose instances all failed recovers on
  ///      the first good connect instead of after the fail timeout.
  /// Draining ranks above ejection because it is a wish about new connections, ejection evidence of
  /// failed ones. `client_key` (the client's address) matters for source-hash only. nullptr: nothing to offer.
  std::shared_ptr<instance> pick(std::string_view client_key = {},
                                 const std::vector<std::shared_ptr<instance>>& tried = {},
                                 clock::time_point now = clock::now()) {
    // An instance failing its active checks is out of service, even when nothing else is left
    // (haproxy's rule): unlike a passive ejection, a check keeps looking, and says when it is back.
    auto offered = [&](const std::shared_ptr<instance>& p) {
      return !p->check_down && std::find(tried.begin(), tried.end(), p) == tried.end();
    };
    auto group = [&](const instance& p) { return (p.is_ejected(now) ? 2 : 0) + (p.draining ? 1 : 0); };
    int best = 4;  // the best group any offered instance is in (4: none offered)
    for (const auto& p : set_)
      if (offered(p)) best = std::min(best, group(*p));
    if (best == 4) return nullptr;
    // A member, not a local: once grown, a pick allocates nothing (it runs for every connection).
    candidates_.clear();
    for (const auto& p : set_)
      if (offered(p) && group(*p) == best) candidates_.push_back(p.get());
    instance* chosen = nullptr;
    // A failover pick must not move the turn: otherwise every client after a dead instance's
    // turn would land on it first, instead of once per round.
    std::string turn;
    if (!tried.empty()) turn = next_id_;
    switch (opts_.policy) {
      case balance_policy::round_robin: chosen = pick_round_robin(candidates_); break;
      case balance_policy::weighted: chosen = pick_weighted(candidates_); break;
      case balance_policy::least_conn: chosen = pick_least_conn(candidates_); break;
      case balance_policy::p2c: chosen = pick_p2c(candidates_); break;
      case balance_policy::source_hash: chosen = pick_hash(client_key, candidates_); break;
    }
    if (!tried.empty()) next_id_ = std::move(turn);
    return chosen ? get_shared(chosen) : nullptr;
  }

  /// The active health check's verdict on instance `id` at `address` (out of service when `up` is
  /// false); false when no such instance is in the set (removed or moved meanwhile).
  bool set_check_state(const std::string& id, const host_port& address, bool up) {
    auto i = get(id);
    if (!i || !(i->address == address)) return false;
    i->check_down = !up;
    return true;
  }

  /// A connect to `i` succeeded: clears its failure streak. True when it had been ejected (log "back").
  bool report_success(instance& i) noexcept {
    bool was = i.ejected;
    i.consecutive_fails = 0;
    i.ejected = false;
    return was;
  }

  /// A connect to `i` failed: counts it and ejects after max_fails in a row. True when this call
  /// started an ejection period (log it once). A failure right after an ejection period ends
  /// ejects again at once, since the streak was never broken.
  bool report_failure(instance& i, clock::time_point now = clock::now()) noexcept {
    ++i.consecutive_fails;
    ++i.total_fails;
    if (opts_.max_fails == 0 || i.consecutive_fails < opts_.max_fails || i.is_ejected(now)) return false;
    i.ejected = true;
    i.ejected_until = now + opts_.fail_timeout;
    return true;
  }

private:
  std::vector<std::shared_ptr<instance>>::iterator find(const std::string& id) {
    return std::find_if(set_.begin(), set_.end(), [&](const auto& p) { return p->id == id; });
  }
  std::shared_ptr<instance> get_shared(const instance* i) const {
    for (const auto& p : set_)
      if (p.get() == i) return p;
    return nullptr;
  }

  // Position in the sorted set is the round-robin order; the cursor is "the next id", so an
  // update elsewhere in the set does not make the turn jump.
  instance* pick_round_robin(const std::vector<instance*>& c) {
    instance* chosen = c.front();
    for (auto* i : c)
      if (i->id >= next_id_) {
        chosen = i;
        break;
      }
    next_id_.assign(chosen->id);  // reusing the string's storage
    next_id_ += '\0';             // the smallest string greater than chosen->id
    return chosen;
  }

  // nginx's smooth weighted round-robin: every candidate gains its weight, the richest wins and
  // pays the total. Over sum(weights) picks each instance is chosen exactly weight times, interleaved.
  instance* pick_weighted(const std::vector<instance*>& c) {
    std::int64_t total = 0;
    instance* best = nullptr;
    for (auto* i : c) {
      i->current_weight += i->weight;
      total += i->weight;
      if (!best || i->current_weight > best->current_weight) best = i;
    }
    best->current_weight -= total;
    return best;
  }

  // Lowest active/weight (compared by cross-multiplying); ties go round-robin so an idle set spreads.
  instance* pick_least_conn(const std::vector<instance*>& c) {
    auto load_less = [](const instance* a, const instance* b) {
      return static_cast<std::uint64_t>(a->active) * b->weight < static_cast<std::uint64_t>(b->active) * a->weight;
    };
    const instance* best = c.front();
    for (auto* i : c)
      if (load_less(i, best)) best = i;
    tied_.clear();
    for (auto* i : c)
      if (!load_less(best, i) && !load_less(i, best)) tied_.push_back(i);
    return pick_round_robin(tied_);
  }

  instance* pick_p2c(const std::vector<instance*>& c) {
    if (c.size() == 1) return c.front();
    std::uniform_int_distribution<std::size_t> d(0, c.size() - 1);
    std::size_t a = d(rng_), b = d(rng_);
    while (b == a) b = d(rng_);
    auto la = static_cast<std::uint64_t>(c[a]->active) * c[b]->weight;
    auto lb = static_cast<std::uint64_t>(c[b]->active) * c[a]->weight;
    if (la == lb) return c[std::uniform_int_distribution<int>(0, 1)(rng_) ? a : b];
    return la < lb ? c[a] : c[b];
  }

  // Consistent hashing: each instance owns virtual_nodes*weight points on a 64-bit ring; a client
  // goes to the first point at or after its hash whose instance is a candidate. Adding an instance
  // takes over only the arcs its new points cut, about 1/n of the clients.
  instance* pick_hash(std::string_view key, const std::vector<instance*>& c) {
    if (ring_.empty()) return c.front();
    auto h = hash(key);
    auto start = std::lower_bound(ring_.begin(), ring_.end(), std::make_pair(h, static_cast<instance*>(nullptr)),
                                  [](const auto& a, const auto& b) { return a.first < b.first; });
    for (std::size_t n = 0; n < ring_.size(); ++n) {
      auto it = start + static_cast<std::ptrdiff_t>(n);
      if (it >= ring_.end()) it -= static_cast<std::ptrdiff_t>(ring_.size());
      if (std::find(c.begin(), c.end(), it->second) != c.end()) return it->second;
    }
    return c.front();
  }

  void rebuild() {
    ring_.clear();
    if (opts_.policy != balance_policy::source_hash) return;
    for (const auto& p : set_) {
      // Cap the points per instance so a huge weight cannot blow the ring up.
      std::uint64_t points =
          std::min<std::uint64_t>(static_cast<std::uint64_t>(opts_.virtual_nodes) * p->weight, 10000);
      for (std::uint64_t v = 0; v < points; ++v) ring_.emplace_back(hash(p->id + "#" + std::to_string(v)), p.get());
    }
    std::sort(ring_.begin(), ring_.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first < b.first : a.second->id < b.second->id;
    });
  }

  // FNV-1a then a splitmix64 finalizer: FNV alone clusters similar keys ("a#1", "a#2").
  static std::uint64_t hash(std::string_view s) noexcept {
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char ch : s) {
      h ^= ch;
      h *= 1099511628211ull;
    }
    h += 0x9e3779b97f4a7c15ull;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    return h ^ (h >> 31);
  }

  options opts_;
  std::vector<std::shared_ptr<instance>> set_;  // sorted by id
  std::vector<std::pair<std::uint64_t, instance*>> ring_;
  std::string next_id_;
  std::mt19937_64 rng_;
  std::vector<instance*> candidates_, tied_;  // pick()'s scratch space, kept to save allocations
};

}  // namespace amb
