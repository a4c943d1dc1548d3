// SPDX-License-Identifier: MIT
// What a consumer project compiles: amb's headers through the amb::amb target, using what that target
// must bring along: picojson (a registry value), Asio with C++20 coroutines and threads (a coroutine
// run on an io_context). A few headers, not amb.hpp: this test is about the packaging, and the whole
// library costs a compile of its own (tests/single_header).
#include <amb/address.hpp>
#include <amb/registry_value.hpp>
#include <amb/tcp_connect.hpp>
#include <amb/version.hpp>

#include <cstdio>

int main() {
  auto ep = amb::parse_endpoint("http://127.0.0.1:2379");
  if (!ep || ep->to_string() != "http://127.0.0.1:2379") return 1;
  auto value = amb::parse_registry_value(R"({"host":"10.0.0.7","port":6379})");
  if (!value || value->address.port != 6379) return 1;
  asio::io_context io;
  bool ran = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        ran = true;
        co_return;
      },
      asio::detached);
  io.run();
  if (!ran) return 1;
  std::printf("amb %s found\n", amb::version);
  return 0;
}
