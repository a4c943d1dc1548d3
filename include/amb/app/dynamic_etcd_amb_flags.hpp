// SPDX-License-Identifier: MIT
// Program layer: dynamic-etcd-amb's flags, read into one struct (usage errors exit 2).
#pragma once

#include "amb/address.hpp"
#include "amb/app/cli.hpp"
#include "amb/app/docker_links.hpp"
#include "amb/app/etcd_settings.hpp"
#include "amb/balancer.hpp"
#include "amb/health_check.hpp"
#include "amb/log.hpp"
#include "amb/proxy.hpp"
#include "amb/service_watch.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace amb::app {

/// Everything dynamic-etcd-amb's command line decides.
struct dynamic_etcd_amb_settings {
  std::string directory;  // <prefix>/<service>/
  amb::host_port listen;
  amb::balancer::options balance;
  amb::proxy_options proxy;
  std::chrono::milliseconds drain_timeout{9000};
  std::optional<amb::host_port> metrics;
  amb::etcd_settings etcd;
  unsigned threads = 1;                                   // data loops
  std::chrono::milliseconds freshness_check{10000};       // compare the instance set with etcd this often
  std::chrono::milliseconds max_staleness{60000};         // /healthz fails when the set was last confirmed longer ago
  std::string state_file;                                 // --state-file: the last known set, for starts without etcd
  std::optional<amb::health_check_options> health_check;  // --health-check tcp and its --check-* flags
};

inline dynamic_etcd_amb_settings parse_dynamic_etcd_amb_flags(int argc, char** argv) {
  amb::cli::parser p(
      "dynamic-etcd-amb", "[OPTIONS] SERVICE PORT\n       dynamic-etcd-amb [OPTIONS] --listen HOST:PORT SERVICE [PORT]",
      "Forward connections on PORT to the instances of SERVICE registered in etcd under PREFIX/SERVICE/.");
  amb::add_etcd_options(p)
      .option("--listen", "HOST:PORT", "address to listen on (default 0.0.0.0:PORT); PORT may then be left out")
      .option("--prefix", "PATH",
              "registry prefix (default: the PREFIX of --etcd etcd://HOST:PORT/PREFIX, else /services)")
      .option("--policy", "NAME", "round-robin (default), weighted, least-conn, p2c or source-hash")
      .option("--connect-timeout", "DURATION", "per connect attempt to an instance (default 2s)")
      .option("--idle-timeout", "DURATION", "close a connection silent both ways this long (default 0 = never)")
      .option("--max-fails", "N", "failed connects in a row that eject an instance (default 3; 0 = never eject)")
      .option("--fail-timeout", "DURATION", "how long an ejected instance sits out (default 10s)")
      .option("--wait-for-backend", "DURATION",
              "hold a client this long when no instance is reachable (default 0 = close)")
      .option("--health-check", "tcp",
              "check every instance actively: connect (and --check-send/--check-expect) every --check-interval;\n"
              "one failing --check-fall checks in a row gets no new connections until it passes --check-rise\n"
              "(default: none; instances are then judged only by failed connects, --max-fails)")
      .option("--check-interval", "DURATION", "between two checks of one instance (default 2s, spread by +-10%)")
      .option("--check-timeout", "DURATION", "for a whole check: connect, send, answer (default 1s)")
      .option("--check-rise", "N", "passes in a row that bring an instance back (default 2)")
      .option("--check-fall", "N", "failures in a row that take an instance out (default 3)")
      .option("--check-send", "STRING",
              "bytes to send once connected; \\r \\n \\t \\0 \\\\ \\xHH allowed (e.g. 'PING\\r\\n')")
      .option("--check-expect", "STRING", "bytes the answer must contain, same escapes (e.g. '+PONG')")
      .option("--send-proxy", "v1|v2",
              "begin every connection to an instance with a PROXY protocol header (haproxy's) naming the client\n"
              "(default: none; the instance must expect it)")
      .option("--drain-timeout", "DURATION", "on SIGTERM/SIGINT, wait this long for open connections (default 9s)")
      .option("--metrics", "HOST:PORT", "serve Prometheus /metrics and /healthz here")
      .option("--freshness-check", "DURATION",
              "compare the instance set with etcd this often; re-read it on a difference (default 10s; 0 = never)")
      .option("--max-staleness", "DURATION",
              "/healthz fails when the set was last confirmed equal to etcd's longer ago (default 60s; 0 = never)")
      .option("--state-file", "PATH",
              "keep the last known instance set in PATH (written on every change); serve it at start while\n"
              "etcd cannot be reached (default: none)")
      .option("--threads", "N", "data-path event loops, each a thread with its own listener on the port (default 1)")
      .option("--log-level", "LEVEL", "debug, info (default), warn, error or off")
      .positionals(1, 2, "SERVICE and PORT")
      .example("dynamic-etcd-amb --etcd http://10.0.0.2:2379 redis-A 6379")
      .example("dynamic-etcd-amb --etcd etcd://10.0.0.2:2379/services --listen 127.0.0.1:6379 redis-A")
      .example(
          "dynamic-etcd-amb --etcd https://10.0.0.2:2379 --etcd-cacert ca.pem --etcd-user amb --etcd-password-file pw "
          "redis-A 6379")
      .note(
          "With --listen, PORT may be left out; given, it must be --listen's port (else exit 2).\n"
          "Durations: 500ms, 5s, 2m, 1h (a bare number is seconds).\n"
          "Values under PREFIX/SERVICE/ are {\"host\":\"10.0.0.5\",\"port\":49155} (optional \"weight\", and\n"
          "\"draining\":true or \"weight\":0 for no new connections while another instance takes them) or HOST:PORT.\n"
          "SIGHUP re-reads the prefix; SIGTERM/SIGINT stop accepting and drain open connections.\n"
          "With --threads N each thread balances on its own: round-robin turns, least-conn counts and\n"
          "ejections after --max-fails are per thread; every thread gets each etcd change.\n"
          "\n"
          "https:// needs a TLS build (-DAMB_TLS=ON); etcd's certificate is always verified, its name or IP checked.\n"
          "The password is never logged; a USER:PASSWORD argument is overwritten with x's at start. TLS and auth\n"
          "failures are retried like outages; exit 2 on usage errors and unreadable TLS files.");
  p.parse_or_exit(argc, argv);
  dynamic_etcd_amb_settings s;
  const auto& args = p.positional();
  if (args[0].empty() || args[0].find('/') != std::string::npos)
    p.usage_error("bad SERVICE " + amb::log::quoted(args[0]));
  s.etcd = amb::read_etcd_settings(p, amb::environment_list(), argc, argv);
  auto prefix = amb::choose_registry_prefix(p.value("--prefix"), s.etcd);
  if (!prefix) p.usage_error(prefix.error);
  s.directory = amb::service_directory(*prefix, args[0]);
  s.proxy.service = s.directory;
  // PORT is optional with --listen; given with it, it must say the same (a second port would be ignored).
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
    if (!p.has("--listen"))
      s.listen = amb::host_port{"0.0.0.0", *port};
    else if (*port != s.listen.port)
      p.usage_error("PORT " + args[1] + " disagrees with --listen " + s.listen.to_string() +
                    ": give the port once (PORT may be left out with --listen)");
  }
  auto duration = [&](const char* flag, auto& out) {
    if (auto v = p.value(flag)) {
      auto d = amb::cli::parse_duration(*v);
      if (!d) p.usage_error(d.error + " for " + flag);
      out = *d;
    }
  };
  s.proxy.connect_timeout = std::chrono::seconds(2);
  duration("--connect-timeout", s.proxy.connect_timeout);
  duration("--idle-timeout", s.proxy.idle_timeout);
  duration("--drain-timeout", s.drain_timeout);
  duration("--freshness-check", s.freshness_check);
  duration("--max-staleness", s.max_staleness);
  std::chrono::milliseconds fail_timeout{10000};
  duration("--fail-timeout", fail_timeout);
  s.balance.fail_timeout = fail_timeout;
  duration("--wait-for-backend", s.proxy.wait_for_backend);
  if (auto v = p.value("--max-fails")) {
    auto n = amb::cli::parse_number<std::uint32_t>(*v, 0, 1000);
    if (!n) p.usage_error(n.error + " for --max-fails");
    s.balance.max_fails = *n;
  }
  if (auto v = p.value("--health-check")) {
    if (*v != "tcp") p.usage_error("bad health check " + amb::log::quoted(*v) + " for --health-check (use tcp)");
    amb::health_check_options c;
    duration("--check-interval", c.interval);
    duration("--check-timeout", c.timeout);
    if (c.interval < std::chrono::milliseconds(100)) p.usage_error("--check-interval: at least 100ms");
    if (c.timeout < std::chrono::milliseconds(10)) p.usage_error("--check-timeout: at least 10ms");
    for (auto [flag, out] : {std::pair{"--check-rise", &c.rise}, std::pair{"--check-fall", &c.fall}})
      if (auto n = p.value(flag)) {
        auto parsed = amb::cli::parse_number<std::uint32_t>(*n, 1, 100);
        if (!parsed) p.usage_error(parsed.error + " for " + flag);
        *out = *parsed;
      }
    for (auto [flag, out] : {std::pair{"--check-send", &c.send}, std::pair{"--check-expect", &c.expect}})
      if (auto text = p.value(flag)) {
        auto bytes = amb::parse_check_bytes(*text);
        if (!bytes) p.usage_error(bytes.error + " for " + flag);
        *out = *bytes;
      }
    s.health_check = c;
  } else {
    for (const char* flag :
         {"--check-interval", "--check-timeout", "--check-rise", "--check-fall", "--check-send", "--check-expect"})
      if (p.has(flag)) p.usage_error(std::string(flag) + " needs --health-check tcp");
  }
  if (auto v = p.value("--send-proxy")) {
    auto version = amb::parse_proxy_protocol(*v);
    if (!version) p.usage_error(version.error + " for --send-proxy");
    s.proxy.send_proxy = *version;
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
  if (auto v = p.value("--state-file")) {
    if (v->empty()) p.usage_error("--state-file: empty path");
    s.state_file = *v;
  }
  if (auto v = p.value("--threads")) {
    auto n = amb::cli::parse_number<unsigned>(*v, 1, 256);
    if (!n) p.usage_error(n.error + " for --threads");
    s.threads = *n;
  }
  if (auto v = p.value("--log-level")) {
    auto level = amb::log::parse_level(*v);
    if (!level) p.usage_error(level.error + " for --log-level");
    amb::log::set_level(*level);
  }
  return s;
}

}  // namespace amb::app
