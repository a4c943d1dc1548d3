// SPDX-License-Identifier: MIT
// A static forwarder: every connection to LISTEN goes to TARGET (what simple-amb does, in a few lines).
//   forward 127.0.0.1:6380 10.0.0.5:6379
#include "amb/amb_forward.hpp"  // amb/amb.hpp without HTTP, etcd, JSON and engine code: builds lighter

#include <cstdio>

int main(int argc, char** argv) {
  auto listen = amb::parse_host_port(argc == 3 ? argv[1] : "");
  auto target = amb::parse_host_port(argc == 3 ? argv[2] : "");
  if (!listen || !target) {
    std::fprintf(stderr, "usage: forward LISTEN_HOST:PORT TARGET_HOST:PORT (%s)\n",
                 (listen ? target : listen).error.c_str());
    return 2;
  }

  asio::io_context io;                                                 // yours: the ambassador runs on it
  amb::ambassador ambassador(io.get_executor(), {.listen = *listen});  // binds, accepts
  ambassador.forward_to({*target});                                    // one fixed instance
  io.run();
}
