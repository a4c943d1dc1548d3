// Placeholder until its own issue lands.
#include <amb/version.hpp>

#include <cstdio>

int main() {
  std::fprintf(stderr, "docker-register: not yet implemented (amb %s)\n", amb::version);
  return 1;
}
