// SPDX-License-Identifier: MIT
// Program layer: simple-amb's flags and Docker-links fallback, read into one struct (usage errors exit 2).
#pragma once

#include "amb/address.hpp"
#include "amb/app/cli.hpp"
#include "amb/app/docker_links.hpp"
#include "amb/log.hpp"
#include "amb/proxy_protocol.hpp"

#include <algorithm>
#include <chrono>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace amb::app {

/// What simple-amb's command line and environment decide.
struct simple_amb_config {
  amb::host_port listen{"0.0.0.0", 10000};
  amb::host_port target;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds idle_timeout{0};
  unsigned threads = 1;  ///< event-loop threads, each with its own SO_REUSEPORT listener
  amb::proxy_protocol send_proxy = amb::proxy_protocol::none;  ///< --send-proxy
  std::string target_source;  ///< for the start-up line when the target came from the environment
};

/// The Docker-links aliases present in `env`: every ALIAS with an ALIAS_PORT_<p>_TCP_ADDR variable.
inline std::set<std::string> link_aliases(const std::vector<std::string>& env) {
  std::set<std::string> aliases;
  for (const auto& kv : env) {
    std::string_view name(kv.data(), std::min(kv.find('='), kv.size()));
    constexpr std::string_view suffix = "_TCP_ADDR";
    if (name.size() <= suffix.size() || name.substr(name.size() - suffix.size()) != suffix) continue;
    name.remove_suffix(suffix.size());
    auto port_at = name.rfind("_PORT_");
    if (port_at == std::string_view::npos || port_at == 0 || !amb::parse_port(name.substr(port_at + 6))) continue;
    aliases.emplace(name.substr(0, port_at));
  }
  return aliases;
}

/// Reads the flags; every mistake ends here with one line and exit code 2.
inline simple_amb_config parse_simple_amb_flags(int argc, char** argv) {
  amb::cli::parser cli("simple-amb", "[OPTIONS] [TARGET_HOST:PORT]",
                       "Listen on one TCP port and forward every connection to TARGET_HOST:PORT.");
  cli.option("--listen", "HOST:PORT", "where to listen (default 0.0.0.0:10000)")
      .option("--target", "HOST:PORT", "where to forward (instead of the positional TARGET_HOST:PORT)")
      .option("--link-alias", "NAME", "take the target from the Docker-links variables of alias NAME")
      .option("--connect-timeout", "D", "give up connecting to the target after D (default 5s; 0 = never)")
      .option("--idle-timeout", "D", "close a connection with no byte either way for D (default: never)")
      .option("--threads", "N", "event-loop threads, each with its own listener on the port (default 1)")
      .option("--send-proxy", "v1|v2",
              "begin every connection to the target with a PROXY protocol header (haproxy's) naming the client\n"
              "(default: none; the target must expect it)")
      .option("--log-level", "L", "debug, info, warn, error or off (default info)")
      .positionals(0, 1, "TARGET_HOST:PORT")
      .example("simple-amb 172.17.42.1:4001")
      .example("simple-amb --listen 127.0.0.1:6380 --idle-timeout 10m 10.0.0.5:6379")
      .note(
          "The target is, first match wins: TARGET_HOST:PORT, --target, or the Docker-links variables\n"
          "<ALIAS>_PORT_<p>_TCP_ADDR and <ALIAS>_PORT_<p>_TCP_PORT (lowest such port p) of the alias named\n"
          "by --link-alias, or of the only alias present when there is exactly one (e.g. after\n"
          "'docker run --link redis:db', DB_PORT_6379_TCP_ADDR/_PORT). Durations: 500ms, 5s, 2m, 1h.\n"
          "Prefer numeric addresses: a static binary in an empty image may not resolve names.");
  cli.parse_or_exit(argc, argv);

  simple_amb_config c;
  auto address = [&](const std::string& text, const std::string& what) {
    auto hp = amb::parse_host_port(text);
    if (!hp) cli.usage_error(what.empty() ? hp.error : what + ": " + hp.error);
    return *hp;
  };
  auto duration = [&](const char* flag, std::chrono::milliseconds& out) {
    if (auto v = cli.value(flag)) {
      auto d = amb::cli::parse_duration(*v);
      if (!d) cli.usage_error(std::string(flag) + ": " + d.error);
      out = *d;
    }
  };
  if (auto v = cli.value("--listen")) c.listen = address(*v, "--listen");
  duration("--connect-timeout", c.connect_timeout);
  duration("--idle-timeout", c.idle_timeout);
  if (auto v = cli.value("--threads")) {
    auto n = amb::cli::parse_number<unsigned>(*v, 1, 256);
    if (!n) cli.usage_error("--threads: " + n.error);
    c.threads = *n;
  }
  if (auto v = cli.value("--send-proxy")) {
    auto version = amb::parse_proxy_protocol(*v);
    if (!version) cli.usage_error("--send-proxy: " + version.error);
    c.send_proxy = *version;
  }
  if (auto v = cli.value("--log-level")) {
    auto level = amb::log::parse_level(*v);
    if (!level) cli.usage_error("--log-level: " + level.error);
    amb::log::set_level(*level);
  }

  const bool positional = !cli.positional().empty(), flag = cli.has("--target");
  if (positional && flag) cli.usage_error("target given twice: use TARGET_HOST:PORT or --target, not both");
  if (positional || flag) {
    c.target = positional ? address(cli.positional()[0], "") : address(*cli.value("--target"), "--target");
    return c;
  }

  // No target on the command line: Docker links, as the 2014 containers were wired.
  const auto env = amb::environment_list();
  std::string alias;
  if (auto v = cli.value("--link-alias")) {
    alias = *v;
  } else {
    auto aliases = link_aliases(env);
    if (aliases.empty())
      cli.usage_error(
          "no target: give TARGET_HOST:PORT, --target, or Docker-links variables "
          "(<ALIAS>_PORT_<p>_TCP_ADDR and _PORT)");
    if (aliases.size() > 1) {
      std::string names;
      for (auto& a : aliases) names += (names.empty() ? "" : ", ") + a;
      cli.usage_error("no target, and several Docker-links aliases (" + names + "): choose one with --link-alias");
    }
    alias = *aliases.begin();
  }
  auto linked = amb::link_address(alias, env);
  if (!linked) cli.usage_error(linked.error);
  if (!*linked) cli.usage_error("no Docker-links variables for alias " + amb::log::quoted(alias));
  c.target = **linked;
  c.target_source = " (from the Docker-links variables of alias " + alias + ")";
  return c;
}

}  // namespace amb::app
