// SPDX-License-Identifier: MIT
// docker-register: publish where containers are (host IP + published port) into etcd, and keep it true.
//
//   docker-register redis-A 6379 redis          # seed mode: /services/redis/redis-A = {"host":..,"port":..}
//   docker-register --all                       # automatic mode: every running container's published ports
//
// The lesson in four steps: parse the flags, find etcd, the engine and the host IP, check the engine
// answers, then let a follower (seed or automatic) keep etcd in step through a lease keeper. A clean
// stop (SIGTERM, SIGINT, SIGHUP) revokes the lease, so every key vanishes at once.
#include <amb/cli.hpp>
#include <amb/docker_client.hpp>
#include <amb/docker_links.hpp>
#include <amb/etcd_client.hpp>
#include <amb/etcd_lease_keeper.hpp>
#include <amb/etcd_settings.hpp>
#include <amb/host_address.hpp>
#include <amb/log.hpp>
#include <amb/registrar.hpp>
#include <amb/registry_value.hpp>

#include <asio.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <unistd.h>

using namespace std::chrono_literals;

namespace {

struct config {
  bool all = false;
  amb::seed_config seed;
  amb::auto_config automatic;
  amb::registrar_options options;
  amb::etcd_settings etcd;
  amb::docker_engine engine;
  std::int64_t ttl_seconds = 5;
};

/// Reads the flags; every mistake ends here with one line and exit code 2.
config parse_flags(int argc, char** argv) {
  amb::cli::parser cli("docker-register", "[OPTIONS] CONTAINER PRIVATE_PORT SERVICE [KEY=VALUE ...]\n"
                                          "       docker-register --all [OPTIONS]",
                       "Publish the host address of containers' published ports into etcd, under a lease kept\n"
                       "alive, and follow the containers: stopped or removed -> key deleted, started -> written again.");
  amb::add_etcd_options(cli)
      .option("--docker", "URL", "Engine API: unix:///PATH or tcp://HOST:PORT (default: DOCKER_HOST, unix:///var/run/docker.sock)")
      .option("--prefix", "PATH", "registry prefix (default /services)")
      .option("--ttl", "D", "lease TTL, whole seconds >= 2 (default 5s, as the seed)")
      .option("--ip", "ADDR", "host IP for ports published on all interfaces (default: HOST_IP, then the default route's address)")
      .option("--value-format", "F", "json (the seed's {\"host\":..,\"port\":..}, default) or hostport (host:port)")
      .flag("--exit-with-container", "seed mode: exit 0 when the container is removed, 1 when absent at start")
      .flag("--all", "automatic mode: register every running container's published tcp ports")
      .flag("--explicit", "automatic mode: only ports whose container names a service (SERVICE_NAME...)")
      .option("--hostname", "NAME", "automatic mode: host part of instance ids (default: this host's name)")
      .option("--resync", "D", "re-read the engine every D in case an event was missed (default 30s)")
      .option("--log-level", "L", "debug, info, warn, error or off (default info)")
      .positionals(0, static_cast<std::size_t>(-1), "CONTAINER PRIVATE_PORT SERVICE")
      .example("docker-register redis-A 6379 redis")
      .example("docker-register --etcd http://10.0.0.2:2379 --ip 10.0.0.5 web1 80 web weight=3 zone=a")
      .example("docker-register --all --explicit --resync 1m")
      .example("docker-register --etcd https://10.0.0.2:2379 --etcd-cacert ca.pem --etcd-user reg --etcd-password-file pw redis-A 6379 redis")
      .note("Seed mode writes <prefix>/SERVICE/CONTAINER = {\"host\":HOST,\"port\":PORT} (KEY=VALUE pairs become\n"
            "extra fields; numbers stay numbers), for the host port published for PRIVATE_PORT/tcp.\n"
            "Automatic mode writes <prefix>/SERVICE/<hostname>:<container>:<port> for each published tcp port;\n"
            "SERVICE is SERVICE_<port>_NAME or SERVICE_NAME (label or env), else the image's base name\n"
            "(+ -<port> when several ports are published); SERVICE_IGNORE skips; other SERVICE_<KEY> become\n"
            "extra fields (SERVICE_WEIGHT -> \"weight\").\n"
            "\n"
            "Host IP: the published binding's own IP; for a port published on all interfaces (\"\", 0.0.0.0, ::)\n"
            "--ip, else HOST_IP, else the address of the interface with the default route (logged at start).\n"
            "\n"
            "Exit codes: 0 after SIGTERM/SIGINT/SIGHUP (the lease is revoked: keys vanish at once) or when the\n"
            "container is removed with --exit-with-container; 1 when the engine cannot be reached or is not a\n"
            "Docker Engine API at start, or with --exit-with-container when the container is absent or does not\n"
            "publish the port at start; 2 on usage errors and unreadable TLS files. Later outages of the engine\n"
            "or of etcd (TLS and auth failures included) are retried forever (registrations are kept and written\n"
            "again). Without --exit-with-container a container that is absent, stopped or unpublished is waited\n"
            "for, with one log line.\n"
            "\n"
            "The engine socket is root-equivalent: docker-register only ever sends GET requests to it, but\n"
            "whoever can reach the socket owns the host.\n"
            "\n"
            "https:// needs a TLS build (-DAMB_TLS=ON); etcd's certificate is always verified, its name or IP checked.\n"
            "The password is never logged; a USER:PASSWORD argument is overwritten with x's at start.");
  cli.parse_or_exit(argc, argv);

  config c;
  const auto env = amb::environment_list();
  auto duration = [&](const char* flag, std::chrono::milliseconds& out) {
    if (auto v = cli.value(flag)) {
      auto d = amb::cli::parse_duration(*v);
      if (!d) cli.usage_error(std::string(flag) + ": " + d.error);
      out = *d;
    }
  };
  if (auto v = cli.value("--log-level")) {
    amb::log::level level;
    if (!amb::log::parse_level(*v, level))
      cli.usage_error("--log-level: bad level " + amb::log::quoted(*v) + " (use debug, info, warn, error or off)");
    amb::log::set_level(level);
  }
  std::chrono::milliseconds ttl = 5s;
  duration("--ttl", ttl);
  if (ttl < 2s || ttl.count() % 1000 != 0)
    cli.usage_error("--ttl: " + amb::log::quoted(*cli.value("--ttl")) + " must be whole seconds, at least 2s (etcd's minimum)");
  c.ttl_seconds = ttl.count() / 1000;
  duration("--resync", c.options.resync);
  if (c.options.resync < 1s) cli.usage_error("--resync: at least 1s");
  if (auto v = cli.value("--prefix")) {
    std::string p = *v;
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    if (p.empty() || p.front() != '/' || p == "/") cli.usage_error("--prefix: " + amb::log::quoted(*v) + " must start with '/', as /services");
    c.options.prefix = p;
  }
  if (auto v = cli.value("--value-format")) {
    if (*v == "json") c.options.format = amb::value_format::json;
    else if (*v == "hostport") c.options.format = amb::value_format::hostport;
    else cli.usage_error("--value-format: bad format " + amb::log::quoted(*v) + " (use json or hostport)");
  }

  c.all = cli.has("--all");
  const auto& pos = cli.positional();
  if (c.all) {
    if (!pos.empty()) cli.usage_error("unexpected argument '" + pos[0] + "' with --all");
    if (cli.has("--exit-with-container")) cli.usage_error("--exit-with-container needs seed mode (not --all)");
    c.automatic.explicit_only = cli.has("--explicit");
    if (auto v = cli.value("--hostname")) {
      c.automatic.hostname = *v;
    } else {
      char name[256] = {};
      ::gethostname(name, sizeof name - 1);
      c.automatic.hostname = name;
    }
  } else {
    if (cli.has("--explicit")) cli.usage_error("--explicit needs --all");
    if (cli.has("--hostname")) cli.usage_error("--hostname needs --all");
    if (pos.size() < 3)
      cli.usage_error(pos.empty() ? "missing CONTAINER PRIVATE_PORT SERVICE (or --all)"
                                  : pos.size() == 1 ? "missing PRIVATE_PORT SERVICE" : "missing SERVICE");
    c.seed.container = pos[0];
    if (c.seed.container.empty() || c.seed.container.find('/') != std::string::npos)
      cli.usage_error("bad CONTAINER " + amb::log::quoted(pos[0]) + ": expected a container name or id");
    if (auto port = amb::parse_port(pos[1]))
      c.seed.private_port = *port;
    else
      cli.usage_error("bad PRIVATE_PORT " + amb::log::quoted(pos[1]) + ": expected a port number 1..65535");
    c.seed.service = pos[2];
    if (c.seed.service.empty() || c.seed.service.find('/') != std::string::npos)
      cli.usage_error("bad SERVICE " + amb::log::quoted(pos[2]) + ": expected a name without '/'");
    for (std::size_t i = 3; i < pos.size(); ++i) {
      auto kv = amb::parse_key_value(pos[i]);
      if (!kv) cli.usage_error(kv.error);
      c.seed.extra.push_back(*kv);
    }
    if (!c.seed.extra.empty() && c.options.format != amb::value_format::json)
      cli.usage_error("KEY=VALUE fields need --value-format json");
    c.seed.exit_with_container = cli.has("--exit-with-container");
  }

  c.etcd = amb::read_etcd_settings(cli, env, argc, argv);
  auto engine = amb::find_docker_engine(cli.value("--docker"), env);
  if (!engine) cli.usage_error(engine.error);
  c.engine = *engine;
  auto ip = amb::choose_host_ip_policy(cli.value("--ip"), env);
  if (!ip) cli.usage_error(ip.error);
  c.options.host_ip = *ip;
  return c;
}


} // namespace

int main(int argc, char** argv) {
  amb::log::set_program("docker-register");
  config c = parse_flags(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);  // a write to a vanished peer is an error code, not a dead process

  // Threading model: one io_context run by this one thread; the followers, the events stream, the
  // lease keeper and the signal watcher are coroutines on it and share state without locks.
  asio::io_context io(1);
  amb::etcd_client etcd = amb::make_etcd_client_or_exit(io.get_executor(), c.etcd);
  amb::etcd_lease_keeper_options keeper_options;
  keeper_options.ttl = c.ttl_seconds;
  amb::etcd_lease_keeper keeper(etcd, keeper_options);
  amb::docker_client api(io.get_executor(), c.engine.server);
  amb::docker_client events(io.get_executor(), c.engine.server);

  amb::log::info(c.etcd.where.source, "; ", c.engine.source);
  if (!c.etcd.security.description.empty()) amb::log::info("etcd security: ", c.etcd.security.description);
  if (c.options.host_ip.address.empty())
    amb::log::warn("host IP for ports published on all interfaces: ", c.options.host_ip.source,
                   "; such ports will not be registered (give --ip ADDR or HOST_IP)");
  else
    amb::log::info("host IP for ports published on all interfaces: ", c.options.host_ip.address, " (from ",
                   c.options.host_ip.source, ")");

  int exit_code = 0;
  bool finishing = false;
  asio::steady_timer deadline(io);
  // Ends the program: revoke the lease (keys vanish at once), within 3s, then stop the loop.
  auto finish = [&](int code) {
    if (finishing) return;
    finishing = true;
    exit_code = code;
    deadline.expires_after(3s);
    deadline.async_wait([&](std::error_code ec) {
      if (ec) return;
      amb::log::warn("could not revoke the etcd lease in time; the keys expire after the TTL (", c.ttl_seconds, "s)");
      io.stop();
    });
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
      try {
        co_await keeper.revoke();
        amb::log::info("lease revoked; registrations removed");
      } catch (const std::exception& e) {
        amb::log::warn("revoke the etcd lease: ", e.what(), "; the keys expire after the TTL (", c.ttl_seconds, "s)");
      }
      io.stop();
    }, [](std::exception_ptr) {});  // the body catches everything
  };

  asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  signals.async_wait([&](std::error_code ec, int signal) {
    if (ec) return;
    amb::log::info(signal == SIGTERM ? "SIGTERM" : signal == SIGINT ? "SIGINT" : "SIGHUP", ": revoking the lease and exiting");
    finish(0);
  });

  amb::registration_sink sink{
      [&](std::string key, std::string value) -> asio::awaitable<void> { co_await keeper.set(key, value); },
      [&](std::string key) -> asio::awaitable<void> { co_await keeper.erase(key); }};

  // The followers live as long as main: their events coroutine refers to them until the loop stops.
  std::optional<amb::auto_follower> automatic;
  std::optional<amb::seed_follower> seed;
  if (c.all) automatic.emplace(api, events, sink, c.options, c.automatic);
  else seed.emplace(api, events, sink, c.options, c.seed);

  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    // At start the engine must answer: a wrong socket or a permission problem is not a passing outage.
    try {
      co_await api.ping();
      auto v = co_await api.negotiate();
      amb::log::info("engine at ", c.engine.server.to_string(), ": version ", v.version, ", API ", api.api_version());
    } catch (const std::exception& e) {
      amb::log::error("cannot use the container engine: ", e.what());
      exit_code = 1;
      io.stop();
      co_return;
    }
    asio::co_spawn(io, keeper.run(), [](std::exception_ptr e) {
      if (e) amb::log::error("internal: the etcd lease keeper stopped");
    });
    if (automatic) {
      co_await automatic->run();
    } else {
      finish(co_await seed->run());
    }
  }, [&](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      amb::log::error("internal: ", ex.what());
    }
    finish(1);
  });

  io.run();
  // Leave without unwinding main's locals: coroutines still suspended on the clients (the events
  // stream, the lease keeper) are destroyed with the io_context, which is declared first and would
  // go last, after the clients their frames point into.
  std::exit(exit_code);
}
