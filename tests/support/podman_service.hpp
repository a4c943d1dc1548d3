// SPDX-License-Identifier: MIT
// Test support: podman's Docker-compatible API on a temporary unix socket, and real containers
// from a tiny busybox image made locally (no image can be pulled here).
#pragma once

#include "support/process.hpp"

#include <sys/un.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <set>

namespace amb::test {

/// Sends raw bytes to a unix socket and returns everything read until EOF or `timeout`
/// (the request is complete, so the sending side stays open: podman answers either way).
inline std::string unix_exchange(const std::string& path, const std::string& request,
                                 std::chrono::milliseconds timeout = 5s) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  return socket_exchange(AF_UNIX, reinterpret_cast<const sockaddr*>(&a), sizeof a, request, timeout, false);
}

/// `podman system service` serving the Docker-compatible API on a socket in a temp folder,
/// with the settings this host needs (runc, ulimits the host allows) from a project-local
/// containers.conf named by CONTAINERS_CONF. Containers made through run() are removed
/// when the object goes; the service is stopped by PID.
class podman_service {
public:
  /// Name of the local test image: a static busybox (httpd, nc, sleep, sh).
  static constexpr const char* image = "localhost/amb-test-busybox:latest";

  podman_service() {
    podman_ = require_program("podman", "podman");
    require_program("runc", "runc");
    conf_ = dir_.path() / "containers.conf";
    std::ofstream(conf_) << "[containers]\n"
                            "default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n"
                            "[engine]\n"
                            "runtime = \"runc\"\n";
    socket_ = (dir_.path() / "api.sock").string();
    static std::once_flag swept;
    std::call_once(swept, [this] { remove_containers_of_gone_tests(); });
    ensure_image();
    start();
  }
  ~podman_service() {
    // One command for all of them (each podman command costs about half a second here); --ignore, or
    // podman 4.3.1 removes none of them when one is already gone (and still exits 0).
    std::vector<std::string> rm{"rm", "--force", "--ignore", "--time", "0"};
    rm.insert(rm.end(), containers_.begin(), containers_.end());
    if (!containers_.empty()) podman(rm);
  }

  /// "unix:///tmp/.../api.sock", as DOCKER_HOST or --docker takes it.
  std::string url() const { return "unix://" + socket_; }
  const std::string& socket_path() const { return socket_; }
  /// Environment for programs that must use this podman (CONTAINERS_CONF) or this socket (DOCKER_HOST).
  std::map<std::string, std::string> env() const {
    return {{"CONTAINERS_CONF", conf_.string()}, {"DOCKER_HOST", url()}};
  }

  /// Stops the API service (clients see EOF) and starts it again on the same socket.
  void restart() {
    stop();
    start();
  }
  /// Stops the API service; containers keep running.
  void stop() {
    service_.signal(SIGTERM);
    if (service_.wait(10s) == -1) service_.stop();
  }

  /// Runs the podman CLI with this service's configuration.
  run_result podman(std::vector<std::string> args, std::chrono::milliseconds timeout = 60s) const {
    std::vector<std::string> argv{podman_};
    argv.insert(argv.end(), args.begin(), args.end());
    child_process::options opts;
    opts.env["CONTAINERS_CONF"] = conf_.string();
    return run(argv, timeout, opts);
  }
  /// Like podman(), but a non-zero exit throws with podman's output; returns stdout+stderr trimmed.
  std::string podman_ok(std::vector<std::string> args) const {
    auto r = podman(args);
    if (r.status != 0) {
      std::string cmd;
      for (auto& a : args) cmd += " " + a;
      throw std::runtime_error("podman" + cmd + " failed (" + std::to_string(r.status) + "): " + r.output);
    }
    while (!r.output.empty() && (r.output.back() == '\n' || r.output.back() == ' ')) r.output.pop_back();
    return r.output;
  }

  /// A container name unique to this test process; removed when the service object goes.
  std::string unique_name(const std::string& stem) {
    static std::atomic<int> counter{0};
    auto name = "amb-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" + stem;
    containers_.insert(name);
    return name;
  }
  /// `podman run -d --name NAME <options> IMAGE <command>`; NAME is tracked for clean-up.
  std::string run_container(const std::string& name, std::vector<std::string> options,
                            std::vector<std::string> command) {
    containers_.insert(name);
    std::vector<std::string> args{"run", "-d", "--name", name};
    args.insert(args.end(), options.begin(), options.end());
    args.push_back(image);
    args.insert(args.end(), command.begin(), command.end());
    return podman_ok(args);
  }
  /// The host port podman published for `private_port`/tcp of `name` (from `podman port`), 0 if none.
  std::uint16_t published_port(const std::string& name, int private_port) const {
    auto r = podman({"port", name, std::to_string(private_port) + "/tcp"});
    auto colon = r.output.rfind(':');
    if (r.status != 0 || colon == std::string::npos) return 0;
    return static_cast<std::uint16_t>(std::stoi(r.output.substr(colon + 1)));
  }
  /// Removes the containers named by unique_name() whose test process is gone, and returns how many: a
  /// test killed before its destructors ran (a timeout, or make test stopping the other stream) leaves
  /// them, and with them podman's DNAT rules for their published ports, which catch any later connection
  /// to 127.0.0.1 on that port. Only names of our own pattern, only when that PID no longer exists. The
  /// first podman_service of each test process calls it.
  std::size_t remove_containers_of_gone_tests() {
    auto listed = podman({"ps", "--all", "--filter", "name=^amb-test-", "--format", "{{.Names}}"});
    if (listed.status != 0) return 0;  // podman itself is checked when the service starts
    std::vector<std::string> rm{"rm", "--force", "--ignore", "--time", "0"};
    std::istringstream names(listed.output);
    for (std::string name; std::getline(names, name);) {
      const std::string prefix = "amb-test-";
      const auto end = name.find('-', prefix.size());
      if (name.rfind(prefix, 0) != 0 || end == std::string::npos) continue;
      const auto digits = name.substr(prefix.size(), end - prefix.size());
      if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
      const auto pid = static_cast<pid_t>(std::stol(digits));
      if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH) rm.push_back(name);
    }
    const std::size_t gone = rm.size() - 5;
    if (gone == 0) return 0;
    std::fprintf(stderr, "test set-up: removing %zu containers left by test processes that are gone\n", gone);
    podman(rm, 120s);
    return gone;
  }

  /// Log of the API service.
  std::string log() const { return service_.output(); }

private:
  void ensure_image() {
    if (podman({"image", "exists", image}).status == 0) return;
    auto busybox = require_program("busybox", "busybox-static");
    auto root = dir_.path() / "image-root";
    std::filesystem::create_directories(root / "bin");
    std::filesystem::copy_file(busybox, root / "bin/busybox");
    for (auto tool : {"sh", "httpd", "nc", "sleep", "echo", "cat", "true"})
      std::filesystem::create_symlink("busybox", root / "bin" / tool);
    auto tar = (dir_.path() / "image.tar").string();
    auto t = run({"tar", "-C", root.string(), "-cf", tar, "."});
    if (t.status != 0) throw std::runtime_error("test set-up: tar of the busybox image failed: " + t.output);
    auto r = podman({"import", "--change", "CMD [\"/bin/sh\"]", tar, image});
    if (r.status != 0) throw std::runtime_error("test set-up: podman import of the busybox image failed: " + r.output);
  }
  void start() {
    std::error_code ignored;  // a stale socket from the previous run of this service
    std::filesystem::remove(socket_, ignored);
    child_process::options opts;
    opts.env["CONTAINERS_CONF"] = conf_.string();
    opts.output = dir_.path() / "service.log";
    service_.start({podman_, "system", "service", "--time=0", url()}, opts);
    bool ok = wait_until(
        [&] {
          return !service_.running() ||
                 unix_exchange(socket_, "GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n", 1s).find("OK") != std::string::npos;
        },
        30s, 50ms);
    if (!ok || !service_.running())
      throw std::runtime_error("test set-up: podman system service did not answer /_ping on " + url() + ":\n" +
                               service_.output());
  }

  temp_dir dir_;
  std::string podman_;
  std::filesystem::path conf_;
  std::string socket_;
  child_process service_;
  std::set<std::string> containers_;
};

}  // namespace amb::test
