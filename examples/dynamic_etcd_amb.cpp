// SPDX-License-Identifier: MIT
// dynamic-etcd-amb: listen on a port and forward each connection to an instance of SERVICE
// registered in etcd under <prefix>/SERVICE/, balancing and following changes live.
//
//   clients --> :PORT --> proxy (pick, connect, fail over, relay) --> instance
//                          ^
//   etcd <prefix>/SERVICE/ --> watcher (snapshot, then events) --> balancer's instance set
//
// Threading: main's io_context runs the control plane (watch, metrics, signals) and the first data
// loop. With --threads N, N-1 more data loops run on their own threads, each with its own listener
// (SO_REUSEPORT), balancer, proxy and copy of the instance set; the watcher posts every update to
// each of them. No object is touched from two threads, so nothing locks.
#include <amb/balancer.hpp>
#include <amb/cli.hpp>
#include <amb/docker_links.hpp>
#include <amb/etcd_client.hpp>
#include <amb/etcd_settings.hpp>
#include <amb/etcd_watch.hpp>
#include <amb/log.hpp>
#include <amb/metrics.hpp>
#include <amb/proxy.hpp>
#include <amb/service_watch.hpp>
#include <amb/tcp_listener.hpp>

#include <asio.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

/// Everything the command line decides.
struct settings {
  std::string directory;  // <prefix>/<service>/
  amb::host_port listen;
  amb::balancer::options balance;
  amb::proxy_options proxy;
  std::chrono::milliseconds drain_timeout = 9s;
  std::optional<amb::host_port> metrics;
  amb::etcd_settings etcd;
  unsigned threads = 1;  // data loops
  std::chrono::milliseconds freshness_check = 10s;  // compare the instance set with etcd this often
  std::chrono::milliseconds max_staleness = 60s;    // /healthz fails when the set was last confirmed longer ago
};

settings parse_command_line(int argc, char** argv) {
  amb::cli::parser p("dynamic-etcd-amb", "[OPTIONS] SERVICE PORT",
                     "Forward connections on PORT to the instances of SERVICE registered in etcd under PREFIX/SERVICE/.");
  amb::add_etcd_options(p)
      .option("--listen", "HOST:PORT", "address to listen on (default 0.0.0.0:PORT)")
      .option("--prefix", "PATH", "registry prefix (default /services)")
      .option("--policy", "NAME", "round-robin (default), weighted, least-conn, p2c or source-hash")
      .option("--connect-timeout", "DURATION", "per connect attempt to an instance (default 2s)")
      .option("--idle-timeout", "DURATION", "close a connection silent both ways this long (default 0 = never)")
      .option("--max-fails", "N", "failed connects in a row that eject an instance (default 3; 0 = never eject)")
      .option("--fail-timeout", "DURATION", "how long an ejected instance sits out (default 10s)")
      .option("--wait-for-backend", "SECONDS", "hold a client this long when no instance is reachable (default 0 = close)")
      .option("--drain-timeout", "DURATION", "on SIGTERM/SIGINT, wait this long for open connections (default 9s)")
      .option("--metrics", "HOST:PORT", "serve Prometheus /metrics and /healthz here")
      .option("--freshness-check", "DURATION", "compare the instance set with etcd this often; re-read it on a difference (default 10s; 0 = never)")
      .option("--max-staleness", "DURATION", "/healthz fails when the set was last confirmed equal to etcd's longer ago (default 60s; 0 = never)")
      .option("--threads", "N", "data-path event loops, each a thread with its own listener on the port (default 1)")
      .option("--log-level", "LEVEL", "debug, info (default), warn, error or off")
      .positionals(1, 2, "SERVICE and PORT")
      .example("dynamic-etcd-amb --etcd http://10.0.0.2:2379 redis-A 6379")
      .example("dynamic-etcd-amb --etcd https://10.0.0.2:2379 --etcd-cacert ca.pem --etcd-user amb --etcd-password-file pw redis-A 6379")
      .note("Values under PREFIX/SERVICE/ are {\"host\":\"10.0.0.5\",\"port\":49155} (optional \"weight\") or HOST:PORT.\n"
            "SIGHUP re-reads the prefix; SIGTERM/SIGINT stop accepting and drain open connections.\n"
            "With --threads N each thread balances on its own: round-robin turns, least-conn counts and\n"
            "ejections after --max-fails are per thread; every thread gets each etcd change.\n"
            "\n"
            "https:// needs a TLS build (-DAMB_TLS=ON); etcd's certificate is always verified, its name or IP checked.\n"
            "The password is never logged; a USER:PASSWORD argument is overwritten with x's at start. TLS and auth\n"
            "failures are retried like outages; exit 2 on usage errors and unreadable TLS files.");
  p.parse_or_exit(argc, argv);
  settings s;
  const auto& args = p.positional();
  if (args[0].empty() || args[0].find('/') != std::string::npos) p.usage_error("bad SERVICE " + amb::log::quoted(args[0]));
  s.directory = amb::service_directory(p.value("--prefix").value_or("/services"), args[0]);
  s.proxy.service = s.directory;
  if (auto l = p.value("--listen")) {
    auto hp = amb::parse_host_port(*l);
    if (!hp) p.usage_error(hp.error + " for --listen");
    s.listen = *hp;
  } else if (args.size() < 2) {
    p.usage_error("missing PORT");
  }
  if (args.size() == 2) {
    auto port = amb::parse_port(args[1]);
    if (!port) p.usage_error("bad port " + amb::log::quoted(args[1]) + " (expected 1..65535)");
    if (!p.has("--listen")) s.listen = amb::host_port{"0.0.0.0", *port};
  }
  auto duration = [&](const char* flag, auto& out) {
    if (auto v = p.value(flag)) {
      auto d = amb::cli::parse_duration(*v);
      if (!d) p.usage_error(d.error + " for " + flag);
      out = *d;
    }
  };
  s.proxy.connect_timeout = 2s;
  duration("--connect-timeout", s.proxy.connect_timeout);
  duration("--idle-timeout", s.proxy.idle_timeout);
  duration("--drain-timeout", s.drain_timeout);
  duration("--freshness-check", s.freshness_check);
  duration("--max-staleness", s.max_staleness);
  std::chrono::milliseconds fail_timeout = 10s;
  duration("--fail-timeout", fail_timeout);
  s.balance.fail_timeout = fail_timeout;
  if (auto v = p.value("--wait-for-backend")) {
    auto n = amb::cli::parse_number<std::uint32_t>(*v, 0, 86400);
    if (!n) p.usage_error(n.error + " for --wait-for-backend");
    s.proxy.wait_for_backend = std::chrono::seconds(*n);
  }
  if (auto v = p.value("--max-fails")) {
    auto n = amb::cli::parse_number<std::uint32_t>(*v, 0, 1000);
    if (!n) p.usage_error(n.error + " for --max-fails");
    s.balance.max_fails = *n;
  }
  if (auto v = p.value("--policy")) {
    auto pol = amb::parse_balance_policy(*v);
    if (!pol) p.usage_error(pol.error);
    s.balance.policy = *pol;
  }
  s.balance.seed = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  if (auto v = p.value("--metrics")) {
    auto hp = amb::parse_host_port(*v);
    if (!hp) p.usage_error(hp.error + " for --metrics");
    s.metrics = *hp;
  }
  if (auto v = p.value("--threads")) {
    auto n = amb::cli::parse_number<unsigned>(*v, 1, 256);
    if (!n) p.usage_error(n.error + " for --threads");
    s.threads = *n;
  }
  if (auto v = p.value("--log-level")) {
    amb::log::level l;
    if (!amb::log::parse_level(*v, l)) p.usage_error("bad log level " + amb::log::quoted(*v) + " (use debug, info, warn, error or off)");
    amb::log::set_level(l);
  }
  s.etcd = amb::read_etcd_settings(p, amb::environment_list(), argc, argv);
  return s;
}


/// One data-path event loop: its own listener, balancer, proxy and copy of the instance set, all on
/// one io_context (main's for the first loop, its own thread's for the others).
struct data_loop {
  asio::io_context& io;
  amb::balancer balancer;
  amb::proxy proxy;
  amb::service_instances instances;
  asio::ip::tcp::acceptor acceptor;
  std::atomic<bool> stopped{false};  ///< set on the loop's thread just before its run() ends (shutdown)

  /// `first`: the loop whose instance set logs the changes (the others apply the same ones quietly).
  data_loop(asio::io_context& ctx, const settings& s, std::uint64_t seed, bool first)
      : io(ctx), balancer(with_seed(s.balance, seed)), proxy(ctx.get_executor(), balancer, s.proxy),
        instances(balancer, [this] { proxy.instances_changed(); },
                  first ? amb::service_instances::logging::on : amb::service_instances::logging::off, s.directory),
        acceptor(ctx) {
    proxy.instances_known(false);  // until the first read of etcd
  }

  static amb::balancer::options with_seed(amb::balancer::options o, std::uint64_t seed) {
    o.seed = seed;  // p2c's random picks differ between loops
    return o;
  }
};

/// What the metrics endpoint and the drain log line show of one loop (copied on that loop's thread).
struct loop_totals {
  amb::proxy_stats stats;
  std::size_t instances = 0;
  std::size_t ejected = 0;
};

/// Runs f() on the loop's thread and waits for it: the only way the control thread reads a loop's
/// state. Data loops never wait for the control thread, so this cannot deadlock; a loop that has
/// already stopped (drained at shutdown) never runs f, and then this returns false.
template <class F>
bool run_on_loop(data_loop& l, asio::io_context& control, F f) {
  if (&l.io == &control) {
    f();
    return true;
  }
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  asio::post(l.io, [&] {
    f();
    std::lock_guard<std::mutex> lock(m);
    done = true;
    cv.notify_one();
  });
  std::unique_lock<std::mutex> lock(m);
  // A stopped io_context runs no more handlers, so once `stopped` is seen f will never run.
  while (!cv.wait_for(lock, std::chrono::milliseconds(20), [&] { return done; }))
    if (l.stopped) return false;
  return true;
}

/// Every loop's totals, summed: connections and bytes add up; instances are the same set in every
/// loop, and an instance counts as ejected when some loop has ejected it (the most such loops show).
loop_totals sum_totals(std::vector<std::unique_ptr<data_loop>>& loops, asio::io_context& control) {
  loop_totals sum;
  for (auto& l : loops) {
    loop_totals one;
    const bool read = run_on_loop(*l, control, [&] {
      one.stats = l->proxy.stats();
      one.instances = l->balancer.size();
      for (const auto& i : l->balancer.instances()) one.ejected += i->is_ejected(amb::instance::clock::now());
    });
    if (!read) continue;  // a loop that has drained and stopped: nothing open, its totals gone with it
    sum.stats.accepted += one.stats.accepted;
    sum.stats.active += one.stats.active;
    sum.stats.rejected += one.stats.rejected;
    sum.stats.bytes.bytes_up += one.stats.bytes.bytes_up;
    sum.stats.bytes.bytes_down += one.stats.bytes.bytes_down;
    for (const auto& [id, n] : one.stats.connect_failures) sum.stats.connect_failures[id] += n;
    sum.instances = one.instances;
    sum.ejected = std::max(sum.ejected, one.ejected);
  }
  return sum;
}

/// Copies the live totals into the metrics registry at each scrape.
void export_metrics(amb::metrics_registry& m, const loop_totals& t, const amb::etcd_watcher& w,
                    const amb::service_instances& inst) {
  const auto& st = t.stats;
  m.set("amb_connections_accepted_total", static_cast<double>(st.accepted));
  m.set("amb_connections_active", static_cast<double>(st.active));
  m.set("amb_connections_rejected_total", static_cast<double>(st.rejected));
  m.set("amb_bytes_total", static_cast<double>(st.bytes.bytes_up), amb::metrics_registry::label("direction", "up"));
  m.set("amb_bytes_total", static_cast<double>(st.bytes.bytes_down), amb::metrics_registry::label("direction", "down"));
  for (const auto& [id, n] : st.connect_failures)
    m.set("amb_connect_failures_total", static_cast<double>(n), amb::metrics_registry::label("instance", id));
  m.set("amb_instances", static_cast<double>(t.instances));
  m.set("amb_instances_ejected", static_cast<double>(t.ejected));
  m.set("amb_watch_reconnects_total", static_cast<double>(w.reconnects()));
  m.set("amb_etcd_revision", static_cast<double>(inst.revision()));
}

void declare_metrics(amb::metrics_registry& m) {
  m.declare("amb_connections_accepted_total", "counter", "Client connections accepted.");
  m.declare("amb_connections_active", "gauge", "Client connections open now.");
  m.declare("amb_connections_rejected_total", "counter", "Clients closed because no instance could be reached.");
  m.declare("amb_bytes_total", "counter", "Bytes relayed; direction up = client to instance, down = instance to client.");
  m.declare("amb_connect_failures_total", "counter", "Failed connects to an instance, by instance key.");
  m.declare("amb_instances", "gauge", "Instances known from etcd.");
  m.declare("amb_instances_ejected", "gauge", "Instances sitting out after failed connects.");
  m.declare("amb_watch_reconnects_total", "counter", "Times the etcd watch was lost and re-established.");
  m.declare("amb_etcd_revision", "gauge", "Newest etcd revision applied to the instance set.");
  m.declare("amb_watch_fresh_age_seconds", "gauge",
            "Seconds since the instance set was last confirmed equal to etcd's (read, progress or freshness check).");
  m.declare("amb_watch_resyncs_total", "counter", "Times a freshness check found the set behind etcd and re-read it.");
}

} // namespace

int main(int argc, char** argv) {
  amb::log::set_program("dynamic-etcd-amb");
  std::signal(SIGPIPE, SIG_IGN);  // a client gone mid-write is an error code, not a dead process
  const settings s = parse_command_line(argc, argv);
  amb::raise_fd_limit();

  asio::io_context io(1);  // control plane and the first data loop
  auto ex = io.get_executor();

  // Data loops: the first on `io`, the others on their own io_contexts (and threads, started below).
  std::vector<std::unique_ptr<asio::io_context>> other_contexts;
  std::vector<std::unique_ptr<data_loop>> loops;
  for (unsigned i = 0; i < s.threads; ++i) {
    asio::io_context* ctx = &io;
    if (i > 0) ctx = other_contexts.emplace_back(std::make_unique<asio::io_context>(1)).get();
    loops.push_back(std::make_unique<data_loop>(*ctx, s, s.balance.seed + i, i == 0));
    auto where = s.listen;
    if (i > 0) where.port = loops[0]->acceptor.local_endpoint().port();  // the same port, also for port 0
    std::error_code ec;
    loops.back()->acceptor = amb::listen_tcp(ctx->get_executor(), where, ec, s.threads > 1);
    if (ec) {
      amb::log::error("listen on ", where.to_string(), ": ", ec.message());
      return 1;
    }
  }
  amb::service_instances& instances = loops[0]->instances;  // the control thread's view (loop 0 shares its thread)
  // Every update reaches every loop: loop 0 at once, the others as a copy posted to their thread.
  auto apply_everywhere = [&](const amb::etcd_watch_update& u) {
    for (std::size_t i = 1; i < loops.size(); ++i)
      asio::post(loops[i]->io, [&l = *loops[i], u] {
        l.instances.apply(u);
        if (u.type == amb::etcd_watch_update::kind::snapshot) l.proxy.instances_known(true);
      });
    instances.apply(u);
    if (u.type == amb::etcd_watch_update::kind::snapshot) loops[0]->proxy.instances_known(true);
  };

  amb::etcd_client client = amb::make_etcd_client_or_exit(ex, s.etcd);
  amb::etcd_watch_options watch_options;
  watch_options.freshness_interval = s.freshness_check;
  amb::etcd_watcher watcher(client, s.directory, watch_options);
  const auto started = std::chrono::steady_clock::now();
  // Seconds since the instance set was last confirmed equal to etcd's (since start before the first read).
  auto fresh_age = [&] {
    auto at = watcher.fresh_at().value_or(started);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - at).count();
  };
  auto healthy = [&] {
    if (!instances.ready()) return false;
    return s.max_staleness.count() == 0 || fresh_age() <= std::chrono::duration<double>(s.max_staleness).count();
  };

  amb::metrics_registry metrics;
  std::optional<amb::metrics_server> metrics_server;
  if (s.metrics) {
    try {
      metrics_server.emplace(ex, *s.metrics, metrics, healthy);
    } catch (const std::system_error& e) {
      amb::log::error(e.what());
      return 1;
    }
    declare_metrics(metrics);
    metrics.add_collector([&](amb::metrics_registry& m) {
      export_metrics(m, sum_totals(loops, io), watcher, instances);
      m.set("amb_watch_fresh_age_seconds", fresh_age());
      m.set("amb_watch_resyncs_total", static_cast<double>(watcher.resyncs()));
    });
    asio::co_spawn(ex, metrics_server->run(), [](std::exception_ptr) {});  // run() handles its own errors
  }
  amb::log::info("listening on ", s.listen.to_string(), ", forwarding to ", amb::log::escaped(s.directory), " (", s.etcd.where.source,
                 ", policy ", amb::to_string(s.balance.policy), ")",
                 s.threads > 1 ? " with " + std::to_string(s.threads) + " threads" : std::string());
  if (!s.etcd.security.description.empty()) amb::log::info("etcd security: ", s.etcd.security.description);

  // Control plane: snapshot, then events; the data path below never waits for it.
  asio::co_spawn(ex, watcher.run(apply_everywhere), [&](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      amb::log::error("watch ", amb::log::escaped(s.directory), " stopped: ", x.what());
    }
  });
  // Data path.
  for (auto& l : loops)
    asio::co_spawn(l->io, amb::accept_loop(l->acceptor, [&p = l->proxy](asio::ip::tcp::socket c) { p.handle(std::move(c)); }),
                   [](std::exception_ptr) {});

  // Signals: SIGHUP re-reads; SIGTERM/SIGINT stop accepting, drain, and end io.run().
  asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  auto on_signals = [&]() -> asio::awaitable<void> {
    for (;;) {
      auto [sec, sig] = co_await signals.async_wait(amb::detail::use_nothrow_awaitable);
      if (sec) co_return;
      if (sig == SIGHUP) {
        // Apart from this loop, so a SIGTERM during a slow re-read is not kept waiting.
        asio::co_spawn(ex, amb::reread_service(client, s.directory, apply_everywhere), [](std::exception_ptr, bool) {});
        continue;
      }
      amb::log::info(sig == SIGTERM ? "SIGTERM" : "SIGINT", ": no new connections; draining ",
                     sum_totals(loops, io).stats.active, " open connections (up to ",
                     std::chrono::duration_cast<std::chrono::milliseconds>(s.drain_timeout).count(), "ms)");
      watcher.stop();
      // The other loops close their listener, drain on their own thread and end their run().
      for (std::size_t i = 1; i < loops.size(); ++i)
        asio::post(loops[i]->io, [&l = *loops[i], t = s.drain_timeout] {
          std::error_code ignored;  // closing a listener cannot meaningfully fail here
          l.acceptor.close(ignored);
          asio::co_spawn(l.io, l.proxy.drain(t), [&l](std::exception_ptr, std::uint64_t left) {
            if (left > 0) amb::log::warn("closing ", left, " connections still open after the drain timeout");
            l.stopped = true;
            l.io.stop();
          });
        });
      std::error_code ignored;
      loops[0]->acceptor.close(ignored);
      auto left = co_await loops[0]->proxy.drain(s.drain_timeout);
      if (left > 0) amb::log::warn("closing ", left, " connections still open after the drain timeout");
      if (metrics_server) metrics_server->close();
      io.stop();
      co_return;
    }
  };
  asio::co_spawn(ex, on_signals(), [](std::exception_ptr e) {
    if (e) amb::log::error("signal handling failed");
  });

  std::vector<std::thread> threads;
  for (auto& ctx : other_contexts) threads.emplace_back([c = ctx.get()] { c->run(); });
  io.run();
  for (auto& t : threads) t.join();  // each ends when its drain does (within the drain timeout)
  // Connections cut by the drain timeout may still own coroutine frames inside the io_contexts;
  // leave without unwinding main's objects under them (std::exit runs no destructors of locals).
  std::exit(0);
}
