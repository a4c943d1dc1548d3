// SPDX-License-Identifier: MIT
// Program layer: docker-register's flags, etcd and engine discovery and host IP, read into one struct
// (usage errors exit 2).
#pragma once

#include "amb/address.hpp"
#include "amb/app/cli.hpp"
#include "amb/app/docker_links.hpp"
#include "amb/app/etcd_settings.hpp"
#include "amb/app/host_ip.hpp"
#include "amb/container_state.hpp"
#include "amb/docker_client.hpp"
#include "amb/etcd_registrar.hpp"
#include "amb/log.hpp"
#include "amb/registrar.hpp"
#include "amb/registry_value.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <string>

namespace amb::app {

/// What docker-register's command line and environment decide.
struct docker_register_config {
  bool all = false;                              ///< automatic mode (--all); else the one-container mode
  amb::seed_config seed{};                       ///< the one-container mode's container, port, service, fields
  amb::auto_config automatic{};                  ///< automatic mode's naming rules
  amb::registrar_options options{};              ///< prefix, value format, resync, host IP
  amb::etcd_settings etcd{};                     ///< where etcd is, TLS and auth
  amb::docker_engine engine{};                   ///< the engine's API socket
  std::int64_t ttl_seconds = 5;                  ///< lease TTL
  std::chrono::milliseconds engine_wait{60000};  ///< at start, how long an engine may time out

  /// The registrar these settings describe.
  amb::etcd_registrar_options registrar() const {
    amb::etcd_registrar_options o;
    o.registry = options;
    o.ttl = ttl_seconds;
    o.engine_wait = engine_wait;
    if (!all) o.seed = seed;
    o.automatic = automatic;
    return o;
  }
};

/// When the engine is a unix socket that does not exist, the one line that says where docker-register
/// looked and how to point it elsewhere; "" otherwise (a socket that is there but does not answer is
/// for the registrar's own line).
inline std::string missing_engine_socket(const amb::docker_engine& engine) {
  if (!engine.server.is_unix()) return {};
  struct ::stat st {};
  if (::stat(engine.server.unix_path.c_str(), &st) == 0 || (errno != ENOENT && errno != ENOTDIR)) return {};
  return "no engine socket at " + amb::log::escaped(engine.server.unix_path) + " (" +
         (engine.origin == "default" ? std::string("the default") : "from " + engine.origin) +
         "): point docker-register at the engine's API with --docker unix:///PATH or DOCKER_HOST "
         "(podman's: unix:///run/podman/podman.sock, rootless: unix://$XDG_RUNTIME_DIR/podman/podman.sock)";
}

/// Reads the flags; every mistake ends here with one line and exit code 2.
inline docker_register_config parse_docker_register_flags(int argc, char** argv) {
  amb::cli::parser cli(
      "docker-register",
      "[OPTIONS] CONTAINER PRIVATE_PORT SERVICE [KEY=VALUE ...]\n"
      "       docker-register --all [OPTIONS]",
      "Publish the host address of containers' published ports into etcd, under a lease kept\n"
      "alive, and follow the containers: stopped or removed -> key deleted, started -> written again.");
  amb::add_etcd_options(cli)
      .option("--docker", "URL",
              "Engine API: unix:///PATH or tcp://HOST:PORT (default: DOCKER_HOST, unix:///var/run/docker.sock;\n"
              "podman's is unix:///run/podman/podman.sock)")
      .option("--prefix", "PATH",
              "registry prefix (default: the PREFIX of --etcd etcd://HOST:PORT/PREFIX, else /services)")
      .option("--ttl", "D", "lease TTL, whole seconds >= 2 (default 5s, as the 2014 programs)")
      .option("--ip", "ADDR",
              "host IP for ports published on all interfaces (default: HOST_IP, then the default route's address)")
      .option("--value-format", "F",
              "json (the 2014 programs' {\"host\":..,\"port\":..}, default) or hostport (host:port)")
      .option("--health", "MODE",
              "gate (default): a container with a health check is registered only while healthy;\n"
              "ignore: registered while it runs, whatever its health")
      .option("--address", "MODE",
              "published (default): host IP + published port; container[:NETWORK]: the container's own IP\n"
              "on NETWORK (or on its only network) + the private port; SERVICE_ADDRESS (label or env) overrides")
      .flag("--exit-with-container", "one-container mode: exit 0 when the container is removed, 1 when absent at start")
      .flag("--all", "automatic mode: register every running container's published tcp ports")
      .flag("--explicit", "automatic mode: only ports whose container names a service (SERVICE_NAME...)")
      .option("--hostname", "NAME", "automatic mode: host part of instance ids (default: this host's name)")
      .option("--resync", "D", "re-read the engine every D in case an event was missed (default 30s)")
      .option("--engine-wait", "D",
              "at start, keep asking an engine whose requests time out for up to D (default 1m; 0: give up at once)")
      .option("--log-level", "L", "debug, info, warn, error or off (default info)")
      .positionals(0, static_cast<std::size_t>(-1), "CONTAINER PRIVATE_PORT SERVICE")
      .example("docker-register redis-demo 6379 redis-A")
      .example("docker-register --etcd http://10.0.0.2:2379 --ip 10.0.0.5 web1 80 web weight=3 zone=a")
      .example("docker-register --all --explicit --resync 1m")
      .example(
          "docker-register --etcd https://10.0.0.2:2379 --etcd-cacert ca.pem --etcd-user reg --etcd-password-file pw "
          "redis-demo 6379 redis-A")
      .note(
          "One-container mode (the 2014 programs' form): the host address of CONTAINER's published\n"
          "PRIVATE_PORT becomes an instance of SERVICE, <prefix>/SERVICE/CONTAINER = {\"host\":HOST,\"port\":PORT}\n"
          "(KEY=VALUE pairs become extra fields; numbers stay numbers). 'docker-register redis-demo 6379 redis-A'\n"
          "writes /services/redis-A/redis-demo for container redis-demo's port 6379/tcp.\n"
          "Automatic mode writes <prefix>/SERVICE/<hostname>:<container>:<port> for each published tcp port;\n"
          "SERVICE is SERVICE_<port>_NAME or SERVICE_NAME (label or env), else the image's base name\n"
          "(+ -<port> when several ports are published); SERVICE_IGNORE skips; other SERVICE_<KEY> become\n"
          "extra fields (SERVICE_WEIGHT -> \"weight\").\n"
          "\n"
          "Health: with --health gate (the default) a container that has a health check is registered only\n"
          "while it is healthy (\"health\":\"healthy\" in the value): starting waits, unhealthy removes the key at\n"
          "once, healthy again writes it back (no sooner than 1s after the removal). Containers without a\n"
          "health check are registered as they run. --health ignore does not look at health checks.\n"
          "Stopping: when the engine announces a stop (its kill or stop event, before die) the value is\n"
          "rewritten at once with \"draining\":true (with --value-format hostport the key is removed); die\n"
          "removes the key.\n"
          "\n"
          "Host IP: the published binding's own IP; for a port published on all interfaces (\"\", 0.0.0.0, ::)\n"
          "--ip, else HOST_IP, else the address of the interface with the default route (logged at start).\n"
          "\n"
          "Exit codes: 0 after SIGTERM/SIGINT/SIGHUP (the lease is revoked: keys vanish at once) or when the\n"
          "container is removed with --exit-with-container; 1 when the engine cannot be reached or is not a\n"
          "Docker Engine API at start (one that times out is asked again for --engine-wait), or with\n"
          "--exit-with-container when the container is absent or does not publish the port at start; 2 on\n"
          "usage errors and unreadable TLS files. Later outages of the engine\n"
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

  docker_register_config c;
  const auto env = amb::environment_list();
  auto duration = [&](const char* flag, std::chrono::milliseconds& out) {
    if (auto v = cli.value(flag)) {
      auto d = amb::cli::parse_duration(*v);
      if (!d) cli.usage_error(std::string(flag) + ": " + d.error);
      out = *d;
    }
  };
  if (auto v = cli.value("--log-level")) {
    auto level = amb::log::parse_level(*v);
    if (!level) cli.usage_error("--log-level: " + level.error);
    amb::log::set_level(*level);
  }
  std::chrono::milliseconds ttl{5000};
  duration("--ttl", ttl);
  if (ttl < std::chrono::seconds(2) || ttl.count() % 1000 != 0)
    cli.usage_error("--ttl: " + amb::log::quoted(*cli.value("--ttl")) +
                    " must be whole seconds, at least 2s (etcd's minimum)");
  c.ttl_seconds = ttl.count() / 1000;
  duration("--resync", c.options.resync);
  if (c.options.resync < std::chrono::seconds(1)) cli.usage_error("--resync: at least 1s");
  duration("--engine-wait", c.engine_wait);
  if (auto v = cli.value("--value-format")) {
    if (*v == "json")
      c.options.format = amb::value_format::json;
    else if (*v == "hostport")
      c.options.format = amb::value_format::hostport;
    else
      cli.usage_error("--value-format: bad format " + amb::log::quoted(*v) + " (use json or hostport)");
  }

  if (auto v = cli.value("--health")) {
    auto mode = amb::parse_health_mode(*v);
    if (!mode) cli.usage_error("--health: " + mode.error);
    c.options.health = *mode;
  }
  if (auto v = cli.value("--address")) {
    auto mode = amb::parse_address_mode(*v);
    if (!mode) cli.usage_error("--address: " + mode.error);
    c.options.address = *mode;
  }

  c.all = cli.has("--all");
  const auto& pos = cli.positional();
  if (c.all) {
    if (!pos.empty()) cli.usage_error("unexpected argument '" + pos[0] + "' with --all");
    if (cli.has("--exit-with-container"))
      cli.usage_error("--exit-with-container needs the one-container mode (not --all)");
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
      cli.usage_error(pos.empty()       ? "missing CONTAINER PRIVATE_PORT SERVICE (or --all)"
                      : pos.size() == 1 ? "missing PRIVATE_PORT SERVICE"
                                        : "missing SERVICE");
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
  auto prefix = amb::choose_registry_prefix(cli.value("--prefix"), c.etcd);
  if (!prefix) cli.usage_error(prefix.error);
  c.options.prefix = *prefix;
  auto engine = amb::find_docker_engine(cli.value("--docker"), env);
  if (!engine) cli.usage_error(engine.error);
  c.engine = *engine;
  auto ip = amb::choose_host_ip_policy(cli.value("--ip"), env);
  if (!ip) cli.usage_error(ip.error);
  c.options.host_ip = *ip;
  return c;
}

}  // namespace amb::app
