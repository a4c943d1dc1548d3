// SPDX-License-Identifier: MIT
// Test support: a real redis-server (Debian's redis-server) on a free loopback port.
#pragma once

#include "support/process.hpp"

namespace amb::test {

/// A redis-server on 127.0.0.1 with no persistence; stopped by PID when the object goes.
class redis_server {
public:
  redis_server() : port_(free_port()) {
    bin_ = require_program("redis-server", "redis-server");
    require_program("redis-cli", "redis-tools");
    start();
  }
  std::uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  /// SIGKILL the server (clients see resets, new connects are refused).
  void kill9() { process_.stop(); }
  /// Starts it again on the same port.
  void start() {
    child_process::options opts;
    opts.working_dir = dir_.path();
    process_.start({bin_, "--port", std::to_string(port_), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--dir", dir_.path().string(), "--daemonize", "no", "--protected-mode", "no"},
                   opts);
    bool ok = wait_until([&] { return !process_.running() || ping_raw(port_); }, 15s, 20ms);
    if (!ok || !process_.running())
      throw std::runtime_error("test set-up: redis-server did not start on port " + std::to_string(port_) + ":\n" +
                               process_.output());
  }
  pid_t pid() const { return process_.pid(); }

  /// True when a raw PING on `port` answers +PONG.
  static bool ping_raw(std::uint16_t port) { return tcp_exchange(port, "PING\r\n", 1s).rfind("+PONG", 0) == 0; }

private:
  temp_dir dir_;
  std::uint16_t port_;
  std::string bin_;
  child_process process_;
};

/// Runs redis-cli against 127.0.0.1:port with `args`; returns exit code and output.
inline run_result redis_cli(std::uint16_t port, std::vector<std::string> args,
                            std::chrono::milliseconds timeout = 10s) {
  std::vector<std::string> argv{"redis-cli", "-h", "127.0.0.1", "-p", std::to_string(port)};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, timeout);
}

}  // namespace amb::test
