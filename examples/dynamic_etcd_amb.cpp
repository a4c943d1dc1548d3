// dynamic-etcd-amb: listen on a port and forward each connection to an instance of SERVICE
// registered in etcd under <prefix>/SERVICE/, balancing and following changes live.
//
//   clients --> :PORT --> proxy (pick, connect, fail over, relay) --> instance
//                          ^
//   etcd <prefix>/SERVICE/ --> watcher (snapshot, then events) --> balancer's instance set
//
// Threading: one io_context run by main's thread; every object below lives on it, so nothing locks.
#include <amb/balancer.hpp>
#include <amb/cli.hpp>
#include <amb/docker_links.hpp>
#include <amb/etcd_client.hpp>
#include <amb/etcd_discovery.hpp>
#include <amb/etcd_security.hpp>
#include <amb/etcd_watch.hpp>
#include <amb/log.hpp>
#include <amb/metrics.hpp>
#include <amb/proxy.hpp>
#include <amb/service_watch.hpp>
#include <amb/tcp_listener.hpp>

#include <asio.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <optional>

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
  std::optional<std::string> etcd_flag;
  amb::etcd_security etcd_security;
};

settings parse_command_line(int argc, char** argv) {
  amb::cli::parser p("dynamic-etcd-amb", "[OPTIONS] SERVICE PORT",
                     "Forward connections on PORT to the instances of SERVICE registered in etcd under PREFIX/SERVICE/.");
  p.option("--etcd", "URL[,URL...]", "etcd endpoints (default: $ETCDCTL_ENDPOINTS, then link alias etcd, then http://127.0.0.1:2379)")
      .option("--etcd-cacert", "FILE", "CA bundle that etcd's TLS certificate must chain to (default: $ETCDCTL_CACERT, else the system's)")
      .option("--etcd-cert", "FILE", "TLS client certificate for etcd (default: $ETCDCTL_CERT)")
      .option("--etcd-key", "FILE", "key of --etcd-cert (default: $ETCDCTL_KEY)")
      .option("--etcd-user", "USER[:PASSWORD]", "etcd user (default: $ETCDCTL_USER); a bare USER takes --etcd-password-file or $ETCDCTL_PASSWORD")
      .option("--etcd-password-file", "FILE", "the etcd password, read from FILE (keeps it off the command line)")
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
      .option("--log-level", "LEVEL", "debug, info (default), warn, error or off")
      .positionals(1, 2, "SERVICE and PORT")
      .example("dynamic-etcd-amb --etcd http://10.0.0.2:2379 redis-A 6379")
      .example("dynamic-etcd-amb --etcd https://10.0.0.2:2379 --etcd-cacert ca.pem --etcd-user amb --etcd-password-file pw redis-A 6379")
      .note("Values under PREFIX/SERVICE/ are {\"host\":\"10.0.0.5\",\"port\":49155} (optional \"weight\") or HOST:PORT.\n"
            "SIGHUP re-reads the prefix; SIGTERM/SIGINT stop accepting and drain open connections.\n"
            "\n"
            "https:// needs a TLS build (-DAMB_TLS=ON); etcd's certificate is always verified, its name or IP checked.\n"
            "The password is never logged; a USER:PASSWORD argument is overwritten with x's at start. TLS and auth\n"
            "failures are retried like outages; exit 2 on usage errors and unreadable TLS files.");
  p.parse_or_exit(argc, argv);
  settings s;
  const auto& args = p.positional();
  if (args[0].empty() || args[0].find('/') != std::string::npos) p.usage_error("bad SERVICE \"" + args[0] + "\"");
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
    std::uint16_t port = 0;
    if (!amb::parse_port(args[1], port)) p.usage_error("bad port \"" + args[1] + "\" (expected 1..65535)");
    if (!p.has("--listen")) s.listen = amb::host_port{"0.0.0.0", port};
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
  if (auto v = p.value("--log-level")) {
    amb::log::level l;
    if (!amb::log::parse_level(*v, l)) p.usage_error("bad log level \"" + *v + "\" (use debug, info, warn, error or off)");
    amb::log::set_level(l);
  }
  s.etcd_flag = p.value("--etcd");
  const auto env = amb::environment_list();
  auto found = amb::find_etcd_endpoints(s.etcd_flag, env);
  if (!found) p.usage_error(found.error);
  if (auto e = amb::tls_unsupported_error(found->endpoints); !e.empty()) {
    std::fprintf(stderr, "dynamic-etcd-amb: %s\n", e.c_str());
    std::exit(2);
  }
  auto security = amb::find_etcd_security({p.value("--etcd-cacert"), p.value("--etcd-cert"), p.value("--etcd-key"),
                                           p.value("--etcd-user"), p.value("--etcd-password-file")},
                                          env);
  if (!security) p.usage_error(security.error);
  s.etcd_security = *security;
  amb::hide_etcd_password(argc, argv);
  return s;
}

/// The etcd client, or one line and exit 2 when its TLS files cannot be loaded.
amb::etcd_client make_etcd_client(asio::any_io_executor ex, const amb::etcd_client_options& o) {
  try {
    return amb::etcd_client(std::move(ex), o);  // guaranteed elision: the client is neither copied nor moved
  } catch (const std::system_error& e) {
    amb::log::error("etcd: ", e.what());
    std::exit(2);
  }
}

/// Copies the live totals into the metrics registry at each scrape.
void export_metrics(amb::metrics_registry& m, const amb::proxy& px, const amb::balancer& b,
                    const amb::etcd_watcher& w, const amb::service_instances& inst) {
  const auto& st = px.stats();
  m.set("amb_connections_accepted_total", static_cast<double>(st.accepted));
  m.set("amb_connections_active", static_cast<double>(st.active));
  m.set("amb_connections_rejected_total", static_cast<double>(st.rejected));
  m.set("amb_bytes_total", static_cast<double>(st.bytes.bytes_up), amb::metrics_registry::label("direction", "up"));
  m.set("amb_bytes_total", static_cast<double>(st.bytes.bytes_down), amb::metrics_registry::label("direction", "down"));
  for (const auto& [id, n] : st.connect_failures)
    m.set("amb_connect_failures_total", static_cast<double>(n), amb::metrics_registry::label("instance", id));
  std::size_t ejected = 0;
  for (const auto& i : b.instances()) ejected += i->is_ejected(amb::instance::clock::now());
  m.set("amb_instances", static_cast<double>(b.size()));
  m.set("amb_instances_ejected", static_cast<double>(ejected));
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
}

} // namespace

int main(int argc, char** argv) {
  amb::log::set_program("dynamic-etcd-amb");
  std::signal(SIGPIPE, SIG_IGN);  // a client gone mid-write is an error code, not a dead process
  const settings s = parse_command_line(argc, argv);
  amb::raise_fd_limit();

  asio::io_context io(1);
  auto ex = io.get_executor();
  auto etcd = *amb::find_etcd_endpoints(s.etcd_flag, amb::environment_list());

  amb::balancer balancer(s.balance);
  amb::proxy proxy(ex, balancer, s.proxy);
  amb::service_instances instances(balancer, [&] { proxy.instances_changed(); });
  amb::etcd_client_options eo;
  eo.endpoints = etcd.endpoints;
  eo.user = s.etcd_security.user;
  eo.password = s.etcd_security.password;
  eo.tls = s.etcd_security.tls;
  if (eo.tls.any() && !amb::any_tls(eo.endpoints))
    amb::log::warn("TLS files given, but no etcd endpoint is https://; they are not used");
  amb::etcd_client client = make_etcd_client(ex, eo);
  amb::etcd_watcher watcher(client, s.directory);

  std::error_code ec;
  auto acceptor = amb::listen_tcp(ex, s.listen, ec);
  if (ec) {
    amb::log::error("listen on ", s.listen.to_string(), ": ", ec.message());
    return 1;
  }
  amb::metrics_registry metrics;
  std::optional<amb::metrics_server> metrics_server;
  if (s.metrics) {
    try {
      metrics_server.emplace(ex, *s.metrics, metrics, [&] { return instances.ready(); });
    } catch (const std::system_error& e) {
      amb::log::error(e.what());
      return 1;
    }
    declare_metrics(metrics);
    metrics.add_collector([&](amb::metrics_registry& m) { export_metrics(m, proxy, balancer, watcher, instances); });
    asio::co_spawn(ex, metrics_server->run(), [](std::exception_ptr) {});  // run() handles its own errors
  }
  amb::log::info("listening on ", s.listen.to_string(), ", forwarding to ", s.directory, " (", etcd.source,
                 ", policy ", amb::to_string(s.balance.policy), ")");
  if (!s.etcd_security.description.empty()) amb::log::info("etcd security: ", s.etcd_security.description);

  // Control plane: snapshot, then events; the data path below never waits for it.
  asio::co_spawn(ex, watcher.run([&](const amb::etcd_watch_update& u) { instances.apply(u); }),
                 [&](std::exception_ptr e) {
                   if (!e) return;
                   try {
                     std::rethrow_exception(e);
                   } catch (const std::exception& x) {
                     amb::log::error("watch ", s.directory, " stopped: ", x.what());
                   }
                 });
  // Data path.
  asio::co_spawn(ex, amb::accept_loop(acceptor, [&](asio::ip::tcp::socket c) { proxy.handle(std::move(c)); }),
                 [](std::exception_ptr) {});

  // Signals: SIGHUP re-reads; SIGTERM/SIGINT stop accepting, drain, and end io.run().
  asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  auto on_signals = [&]() -> asio::awaitable<void> {
    for (;;) {
      auto [sec, sig] = co_await signals.async_wait(amb::detail::use_nothrow_awaitable);
      if (sec) co_return;
      if (sig == SIGHUP) {
        // Apart from this loop, so a SIGTERM during a slow re-read is not kept waiting.
        asio::co_spawn(ex, amb::reread_service(client, s.directory, instances), [](std::exception_ptr, bool) {});
        continue;
      }
      amb::log::info(sig == SIGTERM ? "SIGTERM" : "SIGINT", ": no new connections; draining ",
                     proxy.stats().active, " open connections (up to ",
                     std::chrono::duration_cast<std::chrono::milliseconds>(s.drain_timeout).count(), "ms)");
      std::error_code ignored;  // closing a listener cannot meaningfully fail here
      acceptor.close(ignored);
      watcher.stop();
      auto left = co_await proxy.drain(s.drain_timeout);
      if (left > 0) amb::log::warn("closing ", left, " connections still open after the drain timeout");
      if (metrics_server) metrics_server->close();
      io.stop();
      co_return;
    }
  };
  asio::co_spawn(ex, on_signals(), [](std::exception_ptr e) {
    if (e) amb::log::error("signal handling failed");
  });

  io.run();
  // Connections cut by the drain timeout may still own coroutine frames inside `io`; leave without
  // unwinding main's objects under them (std::exit runs no destructors of locals).
  std::exit(0);
}
