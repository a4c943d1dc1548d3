// SPDX-License-Identifier: MIT
// What a consumer project compiles: the umbrella header, and one call into it.
#include <amb/amb.hpp>

#include <cstdio>

int main() {
  auto ep = amb::parse_endpoint("http://127.0.0.1:2379");
  if (!ep || ep->to_string() != "http://127.0.0.1:2379") return 1;
  std::printf("amb %s found\n", amb::version);
  return 0;
}
