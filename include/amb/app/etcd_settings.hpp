// SPDX-License-Identifier: MIT
// How a program reaches etcd, from its command line and environment: the flags both etcd programs
// share (--etcd and etcdctl's security flags), read the same way, and the client they make.
// One place, so that docker-register and dynamic-etcd-amb can never drift apart in flags or errors.
#pragma once

#include "amb/app/cli.hpp"
#include "amb/etcd_client.hpp"
#include "amb/app/etcd_discovery.hpp"
#include "amb/app/etcd_security.hpp"
#include "amb/log.hpp"
#include "amb/tls_options.hpp"

#include "amb/detail/asio.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <system_error>
#include <vector>

namespace amb {

/// Where etcd is and how to prove who we are to it.
struct etcd_settings {
  etcd_endpoints where;    ///< endpoints and where they came from (for the log)
  etcd_security security;  ///< TLS files, user and password
};

/// Declares --etcd, --etcd-cacert, --etcd-cert, --etcd-key, --etcd-user and --etcd-password-file
/// (etcdctl's names, defaults from ETCDCTL_*).
inline cli::parser& add_etcd_options(cli::parser& p) {
  return p
      .option("--etcd", "URL[,URL...]",
              "etcd endpoints (default: $ETCDCTL_ENDPOINTS, then link alias etcd, then http://127.0.0.1:2379);\n"
              "registrator's etcd://HOST:PORT/PREFIX also sets the prefix")
      .option("--etcd-cacert", "FILE",
              "CA bundle that etcd's TLS certificate must chain to (default: $ETCDCTL_CACERT, else the system's)")
      .option("--etcd-cert", "FILE", "TLS client certificate for etcd (default: $ETCDCTL_CERT)")
      .option("--etcd-key", "FILE", "key of --etcd-cert (default: $ETCDCTL_KEY)")
      .option("--etcd-user", "USER[:PASSWORD]",
              "etcd user (default: $ETCDCTL_USER); a bare USER takes --etcd-password-file or $ETCDCTL_PASSWORD")
      .option("--etcd-password-file", "FILE", "the etcd password, read from FILE (keeps it off the command line)");
}

/// Reads the options add_etcd_options declared, falling back on `env` ("KEY=VALUE" strings). A bad
/// value is a usage error (one line, exit 2); so is an https:// endpoint in a build without TLS.
/// Then overwrites a password given as USER:PASSWORD in argv, so ps stops showing it.
inline etcd_settings read_etcd_settings(const cli::parser& p, const std::vector<std::string>& env, int argc,
                                        char** argv) {
  etcd_settings s;
  auto where = find_etcd_endpoints(p.value("--etcd"), env);
  if (!where) p.usage_error(where.error);
  s.where = std::move(*where);
  if (auto e = tls_unsupported_error(s.where.endpoints); !e.empty()) {
    // Not a usage mistake ("Try --help" would not help): the build lacks the feature.
    std::fprintf(stderr, "%s: %s\n", p.program().c_str(), e.c_str());
    std::exit(2);
  }
  auto security = find_etcd_security({p.value("--etcd-cacert"), p.value("--etcd-cert"), p.value("--etcd-key"),
                                      p.value("--etcd-user"), p.value("--etcd-password-file")},
                                     env);
  if (!security) p.usage_error(security.error);
  s.security = std::move(*security);
  hide_etcd_password(argc, argv);
  return s;
}

/// The registry prefix (docs/design.md §4.2): `flag` (--prefix), or the PREFIX of --etcd
/// etcd://HOST:PORT/PREFIX, else /services; trailing '/' dropped. Both given: they must agree.
inline parsed<std::string> choose_registry_prefix(const std::optional<std::string>& flag, const etcd_settings& s) {
  parsed<std::string> r;
  std::string p = flag ? *flag : s.where.prefix.value_or("/services");
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  if (flag && (p.empty() || p.front() != '/' || p == "/")) {
    r.error = "--prefix: " + log::quoted(*flag) + " must start with '/', as /services";
    return r;
  }
  if (flag && s.where.prefix && *s.where.prefix != p) {
    r.error = "--prefix " + log::quoted(*flag) + " disagrees with the prefix " + log::quoted(*s.where.prefix) +
              " of --etcd etcd://HOST:PORT/PREFIX: give the prefix once";
    return r;
  }
  r.value = std::move(p);
  return r;
}

/// The etcd client for these settings; warns when TLS files were given but no endpoint uses them,
/// and ends the program with one line and exit 2 when its TLS files cannot be loaded.
inline etcd_client make_etcd_client_or_exit(asio::any_io_executor ex, const etcd_settings& s) {
  etcd_client_options o;
  o.endpoints = s.where.endpoints;
  o.user = s.security.user;
  o.password = s.security.password;
  o.tls = s.security.tls;
  if (o.tls.any() && !any_tls(o.endpoints))
    log::warn("TLS files given, but no etcd endpoint is https://; they are not used");
  try {
    return etcd_client(std::move(ex), o);  // guaranteed elision: the client is neither copied nor moved
  } catch (const std::system_error& e) {
    log::error("etcd: ", e.what());
    std::exit(2);
  }
}

}  // namespace amb
