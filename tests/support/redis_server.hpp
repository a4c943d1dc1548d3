// SPDX-License-Identifier: MIT
// Test support: a real redis-server (Debian's redis-server) on a free loopback port.
#pragma once

#include "support/process.hpp"

namespace amb::test {

/// A redis-server on 127.0.0.1 (or on ::1 only, when given "::1") with no persistence; stopped by PID
/// when the object goes.
class redis_server {
public:
  explicit redis_server(std::string ip = "127.0.0.1") : ip_(std::move(ip)), port_(free_port(ip_)) {
    bin_ = require_program("redis-server", "redis-server");
    require_program("redis-cli", "redis-tools");
    start();
  }
  std::uint16_t port() const { return port_; }
  /// Where it listens: "127.0.0.1" or "::1".
  const std::string& ip() const { return ip_; }
  /// "127.0.0.1:PORT", or "[::1]:PORT".
  std::string address() const { return ip_port(ip_, port_); }
  /// SIGKILL the server (clients see resets, new connects are refused).
  void kill9() { process_.stop(); }
  /// Starts it again on the same port.
  void start() {
    child_process::options opts;
    opts.working_dir = dir_.path();
    process_.start({bin_, "--port", std::to_string(port_), "--bind", ip_, "--save", "", "--appendonly", "no", "--dir",
                    dir_.path().string(), "--daemonize", "no", "--protected-mode", "no"},
                   opts);
    bool ok = wait_until([&] { return !process_.running() || ping_raw(port_, ip_); }, 15s, 20ms);
    if (!ok || !process_.running())
      throw std::runtime_error("test set-up: redis-server did not start on port " + std::to_string(port_) + ":\n" +
                               process_.output());
  }
  pid_t pid() const { return process_.pid(); }

  /// True when a raw PING on ip:port (127.0.0.1 by default) answers +PONG.
  static bool ping_raw(std::uint16_t port, const std::string& ip = "127.0.0.1") {
    return tcp_exchange(port, "PING\r\n", 1s, true, ip).rfind("+PONG", 0) == 0;
  }

private:
  temp_dir dir_;
  std::string ip_;
  std::uint16_t port_;
  std::string bin_;
  child_process process_;
};

/// Runs redis-cli against ip:port (127.0.0.1 by default, or ::1) with `args`; returns exit code and output.
inline run_result redis_cli(std::uint16_t port, std::vector<std::string> args, std::chrono::milliseconds timeout = 10s,
                            const std::string& ip = "127.0.0.1") {
  std::vector<std::string> argv{"redis-cli", "-h", ip, "-p", std::to_string(port)};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, timeout);
}

}  // namespace amb::test
