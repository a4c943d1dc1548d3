// SPDX-License-Identifier: MIT
// Test support for the registrar fault tests: what etcd holds for this test's containers, what
// podman says it should hold, and line counts in a program's log.
#pragma once

#include "support/docker_register_support.hpp"

#include <map>
#include <sstream>
#include <string>

namespace amb::test {

/// Keys under `prefix` (with values) whose key contains `needle`: other tests run containers on the
/// same podman at the same time, and `docker-register --all` registers those too.
inline std::map<std::string, std::string> registrations_matching(etcd_cluster& etcd, const std::string& prefix,
                                                                 const std::string& needle) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : etcd_prefix(etcd, prefix))
    if (k.find(needle) != std::string::npos) out[k] = v;
  return out;
}

/// Running containers whose name starts with `stem`, by `podman ps` (the truth the registrar
/// must reach): name → host port published for `private_port`/tcp (0 when it publishes none).
inline std::map<std::string, std::uint16_t> running_containers(const podman_service& podman, const std::string& stem,
                                                               int private_port) {
  // One line per container: "name|127.0.0.1:46773->80/tcp, 127.0.0.1:45605->81/tcp".
  auto out = podman.podman_ok({"ps", "--filter", "name=^" + stem, "--format", "{{.Names}}|{{.Ports}}"});
  std::map<std::string, std::uint16_t> live;
  std::istringstream in(out);
  std::string line;
  const std::string arrow = "->" + std::to_string(private_port) + "/tcp";
  while (std::getline(in, line)) {
    auto bar = line.find('|');
    if (bar == std::string::npos || line.compare(0, stem.size(), stem) != 0) continue;
    std::uint16_t port = 0;
    if (auto at = line.find(arrow, bar); at != std::string::npos) {
      auto colon = line.rfind(':', at);
      if (colon != std::string::npos && colon > bar)
        port = static_cast<std::uint16_t>(std::stoi(line.substr(colon + 1, at - colon - 1)));
    }
    live[line.substr(0, bar)] = port;
  }
  return live;
}

/// The seed's JSON value for 127.0.0.1:port, as docker-register writes it.
inline std::string loopback_value(std::uint16_t port) {
  return "{\"host\":\"127.0.0.1\",\"port\":" + std::to_string(port) + "}";
}

/// Number of lines of `text` containing `needle`.
inline std::size_t count_lines(const std::string& text, const std::string& needle) {
  std::istringstream in(text);
  std::string line;
  std::size_t n = 0;
  while (std::getline(in, line))
    if (line.find(needle) != std::string::npos) ++n;
  return n;
}

/// Number of lines of `text`.
inline std::size_t line_count(const std::string& text) { return count_lines(text, ""); }

/// Renders a key → value map for a failure message.
inline std::string show(const std::map<std::string, std::string>& m) {
  std::string s;
  for (const auto& [k, v] : m) s += "  " + k + " = " + v + "\n";
  return s.empty() ? "  (none)\n" : s;
}

}  // namespace amb::test
