// SPDX-License-Identifier: MIT
// Watching an etcd prefix: snapshot, then events in order exactly once, across disconnects, failover and compaction.
#pragma once

#include "amb/detail/async.hpp"
#include "amb/detail/etcd_json.hpp"
#include "amb/detail/line_splitter.hpp"
#include "amb/etcd_client.hpp"
#include "amb/etcd_types.hpp"
#include "amb/http_client.hpp"
#include "amb/log.hpp"
#include <asio/experimental/awaitable_operators.hpp>

#include "amb/detail/asio.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

namespace amb {

/// What an etcd_watcher hands its callback.
struct etcd_watch_update {
  enum class kind {
    snapshot,  ///< every key under the prefix: REPLACE your whole state with `kvs` (first update, and after a compaction)
    events,    ///< changes in revision order, each delivered once: apply them
    progress,  ///< nothing changed up to `revision` (etcd's progress notify)
  };
  kind type = kind::events;
  std::int64_t revision =
      0;  ///< snapshot: the read's revision; events: the last event's mod_revision; progress: header revision
  std::vector<etcd_kv> kvs;        ///< snapshot only
  std::vector<etcd_event> events;  ///< events only
};

/// How an etcd_watcher behaves.
struct etcd_watch_options {
  /// A stream silent for this long is taken for dead and reconnected. It must exceed etcd's
  /// progress-notify interval (10 min by default, --experimental-watch-progress-notify-interval).
  std::chrono::milliseconds silence_timeout{std::chrono::minutes(11)};
  bool progress_notify = true;  ///< ask etcd for progress notifications (they keep a live stream audible)
  bool prev_kv = false;         ///< ask for the previous key-value in events
  std::chrono::milliseconds retry_backoff{250};       ///< first wait after a failed connection
  std::chrono::milliseconds retry_backoff_max{5000};  ///< cap of the doubling wait
  /// After etcd is found to have lost its data (revisions restarted), wait this long before re-reading:
  /// registrars write their keys again within their TTL (5 s by default), and a re-read before that
  /// would empty the set. The last delivered state stays meanwhile.
  std::chrono::milliseconds rewind_grace{5000};
  /// A watch message (one line; a catch-up after a disconnect can hold many events) longer than this
  /// is not buffered: the prefix is read again instead, as after a compaction, and watched from there.
  std::size_t max_message_bytes = 16 * 1024 * 1024;
  /// How often the delivered state is checked against etcd (0 = never): one small read of the prefix's
  /// newest key and key count. A difference seen twice, `freshness_grace` apart, means the stream
  /// missed something (it stalled, or etcd's data was replaced by a history that already passed the
  /// watched revision): the prefix is read again and watched from there. So a change reaches the
  /// consumer within about freshness_interval + freshness_grace, whatever happened to the stream.
  std::chrono::milliseconds freshness_interval{10000};
  std::chrono::milliseconds freshness_grace{1000};  ///< wait before the second look at a difference
};

/// Watches every key under a prefix (one HTTP connection per watch; docs/protocols.md §1.6). run() delivers
/// a snapshot (unless started at a given revision), then events. After any disconnect it re-watches
/// from the last delivered revision + 1 on the next endpoint, so no event is lost or delivered twice;
/// when etcd compacted that revision away it re-reads the prefix and delivers a new snapshot, then
/// watches on from the snapshot's revision + 1. The same happens when etcd answers a watch at a
/// revision below one it showed before (its data was wiped or restored: revisions restart from 1). Consumer pattern: on snapshot replace all, on events
/// apply. Transient failures are logged (one line each, with the retry delay) and retried forever.
class etcd_watcher {
public:
  /// A watcher of `prefix` through `client` (whose endpoints, timeouts and auth it uses; it must outlive the watcher).
  etcd_watcher(etcd_client& client, std::string prefix, etcd_watch_options options = {})
      : client_(client), prefix_(std::move(prefix)), options_(options), endpoint_(client.current_index()) {}
  etcd_watcher(const etcd_watcher&) = delete;
  etcd_watcher& operator=(const etcd_watcher&) = delete;

  /// Watches until stop(). `start_revision` 0: read a snapshot first; otherwise deliver events from that
  /// revision on (pass last delivered revision + 1 to resume). `on_update` runs on the executor's thread and must not block; if it throws, run()
  /// stops and rethrows. Returns normally after stop().
  asio::awaitable<void> run(std::function<void(const etcd_watch_update&)> on_update, std::int64_t start_revision = 0) {
    using namespace asio::experimental::awaitable_operators;
    // With a start revision the delivered state is not known in full: nothing to compare with etcd.
    if (options_.freshness_interval.count() > 0 && start_revision <= 0)
      co_await (watch_loop(std::move(on_update), start_revision) || freshness_loop());
    else
      co_await watch_loop(std::move(on_update), start_revision);
  }

  /// Ends run() soon: closes the stream and cancels any wait. Final: a later run() returns at once.
  void stop() {
    stopped_ = true;
    if (stream_) stream_->close();
    if (timer_) timer_->cancel();
    if (check_timer_) check_timer_->cancel();
  }

  /// When the delivered state was last known to equal etcd's (a snapshot read, a progress notify, or
  /// a freshness check that matched); nullopt before the first snapshot.
  std::optional<std::chrono::steady_clock::time_point> fresh_at() const noexcept { return fresh_at_; }
  /// How many times a freshness check found the delivered state behind etcd and read the prefix again.
  std::size_t resyncs() const noexcept { return resyncs_; }

private:
  asio::awaitable<void> watch_loop(std::function<void(const etcd_watch_update&)> on_update,
                                   std::int64_t start_revision) {
    next_ = start_revision;
    known_ = std::max<std::int64_t>(0, start_revision - 1);
    if (next_ <= 0) co_await snapshot(on_update);
    std::chrono::milliseconds backoff = options_.retry_backoff;
    bool reauthenticated = false;
    while (!stopped_) {
      if (resync_) {
        // The freshness check asked for a re-read while no stream was open (a retry was waiting):
        // read now, or the stream about to open would run on with the stale state.
        resync_ = false;
        co_await snapshot(on_update);
        continue;
      }
      outcome out = co_await watch_once(on_update);
      if (out.callback_error) std::rethrow_exception(out.callback_error);
      if (stopped_) break;
      if (!out.too_long) too_long_streak_ = 0;
      if (out.healthy) {  // the stream worked: start the backoff over
        backoff = options_.retry_backoff;
        reauthenticated = false;
      }
      if (resync_ || out.too_long) {
        // The stream cannot be trusted to bring everything (stalled, or a message beyond the limit,
        // whose revision would only be retried forever): read the prefix, then watch from there.
        if (out.too_long) {
          log::warn("watch ", log::escaped(prefix_), " at ", endpoint_name(), ": a message longer than ",
                    format_bytes(options_.max_message_bytes), " (catching up from revision ", next_,
                    "); reading the prefix again");
          // Too long again right after a re-read: a server that only sends such lines is not polled in a
          // tight loop, the waits grow as for any failure.
          if (too_long_streak_++ > 0) {
            co_await wait(backoff);
            backoff = std::min(backoff * 2, options_.retry_backoff_max);
            if (stopped_) break;
          }
        }
        resync_ = false;
        co_await snapshot(on_update);
        continue;
      }
      if (out.compacted) {
        log::warn("watch ", log::escaped(prefix_), " at ", endpoint_name(), ": revision ", next_, " compacted (at ",
                  out.compact_revision, "); reading the prefix again");
        co_await snapshot(on_update);
        continue;
      }
      if (out.rewound_to > 0) {
        // The store is behind what was already delivered: etcd lost its data (wiped, restored from an
        // older backup) and counts revisions from 1 again, so a watch from next_ would skip every
        // change of the new history. Re-read, unless only this member was lagging (a linearizable read
        // is not behind): then try another member after the backoff, without re-reading in a loop.
        // Limit: a new history that has already passed known_ when the watch comes back looks like
        // the old one (a re-bootstrap with the same flags keeps cluster and member ids); SIGHUP re-reads.
        const std::int64_t seen = known_;
        log::warn("watch ", log::escaped(prefix_), " at ", endpoint_name(), ": etcd is at revision ", out.rewound_to,
                  ", behind revision ", seen,
                  " already seen (its data was lost or restored); reading the prefix again in ",
                  log::duration(options_.rewind_grace), ", when registrars have written their keys again");
        if (options_.rewind_grace.count() > 0) co_await wait(options_.rewind_grace);
        if (stopped_) break;
        co_await snapshot(on_update);
        if (stopped_) continue;
        if (known_ < seen) {
          ++rewinds_;
          continue;
        }
        out.why = "this member is behind the cluster (revision " + std::to_string(out.rewound_to) + ")";
      }
      if (out.auth && !reauthenticated) {  // once per failure streak: a refused fresh token waits like any failure
        reauthenticated = true;
        client_.invalidate_token();
        try {
          co_await client_.authenticate();
          continue;
        } catch (const std::exception& e) {
          out.why = e.what();
        }
      }
      log::warn("watch ", log::escaped(prefix_), " at ", endpoint_name(), ": ", out.why, "; retrying in ",
                log::duration(backoff));
      if (!outage_since_) outage_since_ = std::chrono::steady_clock::now();
      if (client_.endpoints().size() > 1) endpoint_ = (endpoint_ + 1) % client_.endpoints().size();
      ++reconnects_;
      co_await wait(backoff);
      backoff = std::min(backoff * 2, options_.retry_backoff_max);
    }
  }

public:
  /// The revision the next watch starts from (last delivered revision + 1).
  std::int64_t next_revision() const noexcept { return next_; }
  /// How many times the stream was lost and re-established (for tests and logs).
  std::size_t reconnects() const noexcept { return reconnects_; }
  /// How many snapshots were delivered.
  std::size_t snapshots() const noexcept { return snapshots_; }
  /// How many times etcd was found behind a revision it showed before (data lost) and re-read.
  std::size_t rewinds() const noexcept { return rewinds_; }
  /// The watched prefix.
  const std::string& prefix() const noexcept { return prefix_; }

private:
  struct outcome {
    bool healthy = false;    // "created" was seen
    bool compacted = false;  // canceled with compact_revision
    std::int64_t compact_revision = 0;
    std::int64_t rewound_to = 0;  // "created" said the store is at this revision, below known_
    bool auth = false;            // refused for auth: get a new token
    bool too_long = false;        // a message beyond max_message_bytes
    std::string why;              // for the log line
    std::exception_ptr callback_error;
  };
  // Thrown from inside on_data to end the stream (http_client::stream closes it and rethrows).
  struct end_stream {};

  std::string endpoint_name() const { return client_.endpoints()[endpoint_].to_string(); }

  static std::string format_bytes(std::size_t n) {
    if (n % (1024 * 1024) == 0) return std::to_string(n / (1024 * 1024)) + " MiB";
    return std::to_string(n) + " bytes";
  }

  asio::awaitable<void> wait(std::chrono::milliseconds d) {
    timer_ = std::make_unique<asio::steady_timer>(client_.executor(), d);
    co_await timer_->async_wait(detail::use_nothrow_awaitable);
    timer_.reset();
  }

  // Reads the prefix until it works and delivers it as a snapshot.
  asio::awaitable<void> snapshot(const std::function<void(const etcd_watch_update&)>& on_update) {
    std::chrono::milliseconds backoff = options_.retry_backoff;
    while (!stopped_) {
      std::string why;
      std::optional<etcd_range_result> r;
      const auto read_at = std::chrono::steady_clock::now();
      try {
        client_.prefer(endpoint_);
        r = co_await client_.get_prefix(prefix_);
      } catch (const std::exception& e) {
        if (stopped_) co_return;
        why = e.what();
      }
      if (r) {
        etcd_watch_update u;
        u.type = etcd_watch_update::kind::snapshot;
        u.revision = r->revision;
        u.kvs = std::move(r->kvs);
        next_ = r->revision + 1;
        known_ = r->revision;  // a linearizable read: the history from now on, even if it restarted
        ++snapshots_;
        keys_.clear();
        for (const auto& kv : u.kvs) keys_[kv.key] = kv.mod_revision;
        fresh_at_ = read_at;
        on_update(u);  // a throw here ends run(), as documented
        co_return;
      }
      log::warn("watch ", log::escaped(prefix_), ": reading the prefix failed: ", why, "; retrying in ",
                log::duration(backoff));
      co_await wait(backoff);
      backoff = std::min(backoff * 2, options_.retry_backoff_max);
    }
  }

  // One watch connection, from next_ until it breaks, is canceled or stop() is called.
  asio::awaitable<outcome> watch_once(const std::function<void(const etcd_watch_update&)>& on_update) {
    outcome out;
    stream_ = std::make_shared<http_client>(client_.executor(), client_.endpoints()[endpoint_], client_.http_options());
    auto keep = stream_;  // stop() may reset nothing, but keep the client alive for the whole stream
    if (client_.uses_auth()) {
      try {
        client_.prefer(endpoint_);
        co_await client_.authenticate_if_needed();
      } catch (const std::exception& e) {
        out.why = e.what();
        co_return out;
      }
    }
    http_request req;
    req.method = "POST";
    req.target = "/v3/watch";
    req.headers = client_.auth_headers();
    req.body = detail::etcd_watch_body(prefix_, detail::etcd_prefix_end(prefix_), next_, options_.progress_notify,
                                       options_.prev_kv);
    const auto opened = std::chrono::steady_clock::now();
    detail::line_splitter splitter(options_.max_message_bytes);  // de-chunked bytes -> one JSON object a line
    auto handle_line = [&](std::string_view line) {
      detail::etcd_watch_message m;
      if (auto ec = detail::etcd_parse_watch_line(line, m)) {
        out.why = "bad watch message: " + log::quoted(line, 200);
        throw end_stream{};
      }
      using k = detail::etcd_watch_message::kind;
      switch (m.type) {
        case k::created:
          // header.revision is the store's revision now: below one seen before means a new history.
          if (m.revision > 0 && m.revision < known_) {
            out.rewound_to = m.revision;
            throw end_stream{};
          }
          known_ = std::max(known_, m.revision);
          if (outage_since_) {
            const auto lasted = log::round_for_log(std::chrono::steady_clock::now() - *outage_since_);
            log::info("watch ", log::escaped(prefix_), " at ", endpoint_name(), ": resumed at revision ", m.revision,
                      " after ", log::duration(lasted));
            outage_since_.reset();
          }
          // A stream counts as healthy once it carried more than "created", or lived a while: a server
          // that accepts and then breaks every stream still gets a growing backoff.
          if (std::chrono::steady_clock::now() - opened >= options_.retry_backoff_max) out.healthy = true;
          break;
        case k::events: {
          out.healthy = true;
          known_ = std::max(known_, m.revision);
          etcd_watch_update u;
          u.type = etcd_watch_update::kind::events;
          for (auto& ev : m.events)  // a replay may overlap what was delivered: never twice
            if (ev.kv.mod_revision >= next_) u.events.push_back(std::move(ev));
          if (u.events.empty()) break;
          u.revision = u.events.back().kv.mod_revision;
          for (const auto& ev : u.events) {
            if (ev.type == etcd_event::kind::del)
              keys_.erase(ev.kv.key);
            else
              keys_[ev.kv.key] = ev.kv.mod_revision;
          }
          // Resume from the last EVENT, not header.revision: a catch-up batch carries the store's
          // current revision in its header while more events may still follow.
          next_ = u.revision + 1;
          deliver(on_update, u, out);
          break;
        }
        case k::progress: {
          out.healthy = true;
          if (m.revision + 1 > next_) next_ = m.revision + 1;  // sent only when the watcher is synced
          known_ = std::max(known_, m.revision);
          fresh_at_ = std::chrono::steady_clock::now();  // etcd says the watcher has caught up with the store
          etcd_watch_update u;
          u.type = etcd_watch_update::kind::progress;
          u.revision = m.revision;
          deliver(on_update, u, out);
          break;
        }
        case k::canceled:
          if (m.compact_revision > 0) {
            out.compacted = true;
            out.compact_revision = m.compact_revision;
          } else if (m.cancel_reason.find("Unauthenticated") != std::string::npos ||
                     m.cancel_reason.find("auth token") != std::string::npos ||
                     m.cancel_reason.find("user name is empty") != std::string::npos) {
            out.auth = true;
            out.why = "watch refused: " + log::escaped(m.cancel_reason);
          } else {
            out.why = "watch canceled by etcd: " +
                      (m.cancel_reason.empty() ? std::string("no reason given") : log::escaped(m.cancel_reason));
          }
          throw end_stream{};
        case k::error: out.why = "etcd ended the stream: " + log::escaped(m.error_message); throw end_stream{};
      }
    };
    auto on_data = [&](std::string_view piece) {
      if (splitter.feed(piece, handle_line)) {
        out.why = "watch message longer than " + format_bytes(options_.max_message_bytes);
        out.too_long = true;
        throw end_stream{};
      }
    };
    try {
      auto resp = co_await stream_->stream(std::move(req), on_data, options_.silence_timeout);
      if (resp.status / 100 != 2) {
        auto err = detail::etcd_parse_error(resp.body);
        if (err && err->code == static_cast<int>(grpc_code::unauthenticated)) out.auth = true;
        out.why = "HTTP " + std::to_string(resp.status) + " " + resp.reason +
                  (err ? ": " + log::escaped(err->message) : std::string(" with a body that is not an etcd reply"));
      } else {
        if (auto rest = splitter.take_rest(); !rest.empty()) handle_line(rest);  // the shutdown message has no '\n'
        if (out.why.empty()) out.why = "stream ended";
      }
    } catch (const end_stream&) {
    } catch (const std::system_error& e) {
      if (e.code() == errc::timeout)
        out.why = "no message for " + log::duration(options_.silence_timeout) + "; the stream looks dead";
      else {
        // "POST /v3/watch to <endpoint>: connect" -> "connect": the log line names the endpoint already.
        std::string context = detail::etcd_error_context(e);
        const std::string redundant = "POST /v3/watch to " + endpoint_name() + ": ";
        if (context.rfind(redundant, 0) == 0) context.erase(0, redundant.size());
        out.why = context + ": " + e.code().message();
      }
    }
    stream_.reset();
    co_return out;
  }

  // Every freshness_interval: compares the count and the newest mod revision of the keys delivered
  // with etcd's for the prefix. Equal means equal states (in one history any put after the delivered
  // revision raises the newest revision, and a delete alone lowers the count). A difference can be
  // an event on its way, so it is looked at again after freshness_grace; if it is still there, the
  // stream is closed and the prefix read again (a needless re-read changes nothing and costs one read).
  asio::awaitable<void> freshness_loop() {
    bool differed = false;
    while (!stopped_) {
      check_timer_ = std::make_unique<asio::steady_timer>(
          client_.executor(), differed ? options_.freshness_grace : options_.freshness_interval);
      auto [waited] = co_await check_timer_->async_wait(detail::use_nothrow_awaitable);
      check_timer_.reset();
      if (stopped_ || waited) co_return;  // stop(), or run() ends because the watch loop did
      if (snapshots_ == 0) continue;      // nothing delivered yet
      if (resync_) {
        // A re-read is on its way; a stream that opened after it was asked for is closed again.
        if (stream_) stream_->close();
        continue;
      }
      const auto asked_at = std::chrono::steady_clock::now();
      const auto before = local_fingerprint();
      std::optional<etcd_range_result> r;
      try {
        r = co_await client_.newest_in_prefix(prefix_);
      } catch (const std::exception& e) {
        // etcd unreachable: the watch says so in its own lines; freshness simply ages.
        log::debug("watch ", log::escaped(prefix_), ": freshness check failed: ", e.what());
        differed = false;
        continue;
      }
      if (stopped_ || (co_await asio::this_coro::cancellation_state).cancelled() != asio::cancellation_type::none)
        co_return;
      const fingerprint theirs{r->count, r->kvs.empty() ? 0 : r->kvs.front().mod_revision};
      if (theirs == before || theirs == local_fingerprint()) {
        fresh_at_ = asked_at;
        differed = false;
        continue;
      }
      // A store behind what was seen is etcd's lost data: the watch handles that (with its grace).
      if (r->revision < known_) {
        differed = false;
        continue;
      }
      if (!differed) {
        differed = true;
        continue;
      }
      differed = false;
      const auto mine = local_fingerprint();
      log::warn("watch ", log::escaped(prefix_), " at ", endpoint_name(), ": etcd has ",
                log::count(theirs.count, "key"), ", newest at revision ", theirs.newest, " (store at ", r->revision,
                "), the watch delivered ", log::count(mine.count, "key"), ", newest at revision ", mine.newest,
                "; reading the prefix again");
      ++resyncs_;
      resync_ = true;
      if (stream_) stream_->close();
      if (timer_) timer_->cancel();
    }
  }

  struct fingerprint {
    std::int64_t count = 0;
    std::int64_t newest = 0;
    friend bool operator==(const fingerprint&, const fingerprint&) = default;
  };
  fingerprint local_fingerprint() const noexcept {
    fingerprint f;
    f.count = static_cast<std::int64_t>(keys_.size());
    for (const auto& [key, rev] : keys_) f.newest = std::max(f.newest, rev);
    return f;
  }

  void deliver(const std::function<void(const etcd_watch_update&)>& on_update, const etcd_watch_update& u,
               outcome& out) {
    try {
      on_update(u);
    } catch (...) {
      out.callback_error = std::current_exception();
      throw end_stream{};
    }
  }

  etcd_client& client_;
  std::string prefix_;
  etcd_watch_options options_;
  std::size_t endpoint_ = 0;
  std::int64_t next_ = 0;
  std::int64_t known_ =
      0;  // highest store revision etcd showed (headers, events, snapshot): never lower in one history
  bool stopped_ = false;
  std::size_t reconnects_ = 0;
  std::size_t snapshots_ = 0;
  std::size_t rewinds_ = 0;
  std::shared_ptr<http_client> stream_;
  std::unique_ptr<asio::steady_timer> timer_;
  std::unique_ptr<asio::steady_timer> check_timer_;
  std::map<std::string, std::int64_t> keys_;  // every key delivered and its mod revision: what the consumer holds
  std::optional<std::chrono::steady_clock::time_point> fresh_at_;
  std::optional<std::chrono::steady_clock::time_point> outage_since_;  // first failure of the current streak
  bool resync_ = false;                                                // the freshness check asked for a re-read
  std::size_t resyncs_ = 0;
  std::size_t too_long_streak_ = 0;  // watches in a row that ended in a message beyond the limit
};

}  // namespace amb
