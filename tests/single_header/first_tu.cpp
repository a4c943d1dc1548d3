// SPDX-License-Identifier: MIT
// First of two translation units including the single header: a missing `inline` fails the link.
#include <amb/amb.hpp>

#include <string>

std::string second_tu_version();

int main() {
  auto hp = amb::parse_host_port("127.0.0.1:6379");
  // Both TUs must agree on what the header defines.
  return (hp && hp->port == 6379 && second_tu_version() == amb::version) ? 0 : 1;
}
