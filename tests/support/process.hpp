// SPDX-License-Identifier: MIT
// Test support: start real programs by PID, capture their output, stop them even when a test fails.
#pragma once

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace amb::test {

/// Where the program `name` is: $AMB_PROGRAM_DIR/name when that is set (the ThreadSanitizer phase
/// of `make test` runs the GCC phase's tests against its own builds of the programs), else the path
/// the build compiled in.
inline std::string program_path(const char* name, const char* built) {
  if (const char* dir = std::getenv("AMB_PROGRAM_DIR"); dir && *dir) return std::string(dir) + "/" + name;
  return built;
}

}  // namespace amb::test

#ifdef AMB_SIMPLE_AMB_PATH
#define AMB_SIMPLE_AMB_BIN ::amb::test::program_path("simple-amb", AMB_SIMPLE_AMB_PATH)
#define AMB_DOCKER_REGISTER_BIN ::amb::test::program_path("docker-register", AMB_DOCKER_REGISTER_PATH)
#define AMB_DYNAMIC_ETCD_AMB_BIN ::amb::test::program_path("dynamic-etcd-amb", AMB_DYNAMIC_ETCD_AMB_PATH)
#endif

namespace amb::test {

using namespace std::chrono_literals;

/// Full path of `name` found on PATH (plus the sbin folders), or "" when absent.
inline std::string find_program(const std::string& name) {
  std::string path = std::getenv("PATH") ? std::getenv("PATH") : "";
  path += ":/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin";
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (dir.empty()) continue;
    auto candidate = std::filesystem::path(dir) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return "";
}

/// Like find_program, but a missing program is a failed set-up naming the Debian package.
inline std::string require_program(const std::string& name, const std::string& debian_package) {
  auto p = find_program(name);
  if (p.empty())
    throw std::runtime_error("test set-up: '" + name + "' not found on PATH: install the Debian package " +
                             debian_package + " (make setup does)");
  return p;
}

/// A temporary folder, removed with everything in it when this object goes.
class temp_dir {
public:
  temp_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "amb-test-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("test set-up: mkdtemp failed");
    path_ = tmpl;
  }
  ~temp_dir() {
    std::error_code ignored;  // best effort: a leftover folder in /tmp is harmless
    std::filesystem::remove_all(path_, ignored);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::filesystem::path& path() const { return path_; }

private:
  std::filesystem::path path_;
};

/// A numeric IPv4 or IPv6 address with a port, as the socket calls take it.
struct socket_address {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family = AF_INET;
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  sockaddr* get() { return reinterpret_cast<sockaddr*>(&storage); }
};

/// `ip` ("127.0.0.1", "::1", ...) and `port` as a socket address; throws for a name or bad text.
inline socket_address make_socket_address(const std::string& ip, std::uint16_t port) {
  socket_address a;
  if (ip.find(':') != std::string::npos) {
    auto* six = reinterpret_cast<sockaddr_in6*>(&a.storage);
    six->sin6_family = AF_INET6;
    six->sin6_port = htons(port);
    if (::inet_pton(AF_INET6, ip.c_str(), &six->sin6_addr) != 1)
      throw std::runtime_error("test set-up: bad IPv6 address " + ip);
    a.family = AF_INET6;
    a.length = sizeof(sockaddr_in6);
  } else {
    auto* four = reinterpret_cast<sockaddr_in*>(&a.storage);
    four->sin_family = AF_INET;
    four->sin_port = htons(port);
    if (::inet_pton(AF_INET, ip.c_str(), &four->sin_addr) != 1)
      throw std::runtime_error("test set-up: bad IPv4 address " + ip);
    a.length = sizeof(sockaddr_in);
  }
  return a;
}

/// "ip:port", with brackets around an IPv6 address ("[::1]:6379").
inline std::string ip_port(const std::string& ip, std::uint16_t port) {
  return (ip.find(':') != std::string::npos ? "[" + ip + "]" : ip) + ":" + std::to_string(port);
}

/// True when something accepts TCP connections on ip:port (127.0.0.1 by default).
inline bool port_open(std::uint16_t port, const std::string& ip = "127.0.0.1") {
  auto a = make_socket_address(ip, port);
  int fd = ::socket(a.family, SOCK_STREAM, 0);
  bool ok = fd >= 0 && ::connect(fd, a.get(), a.length) == 0;
  if (fd >= 0) ::close(fd);
  return ok;
}

/// Test servers listen on ports 20000-32767, never on port 0. Port-0 binds come from the kernel's ephemeral
/// range (32768-60999 here), which two other things share:
/// - every outgoing connection's local port: between a check and a server's own bind, a proxy in a
///   concurrent test may connect out from that port ("bind: address already in use" in CI);
/// - the host ports podman picks for `-p 127.0.0.1::80`: podman's iptables DNAT rule sends every
///   connection to 127.0.0.1:PORT into the container, even when our own socket listens there. A container
///   left by a killed test keeps its rule after its conmon is gone and the port binds again, so a test
///   server that drew that port was unreachable ("Connection refused" for 20 s in CI).
/// Below the ephemeral range only another test's pick can collide: 1 in 12,768 per pair of picks.
inline constexpr int test_port_low = 20000, test_port_high = 32767;

/// The folder where test processes claim ports (claim_test_port), shared by all of them.
inline std::string test_port_claims_dir() {
  const char* tmp = std::getenv("TMPDIR");
  return std::string(tmp && *tmp ? tmp : "/tmp") + "/amb-test-ports";
}

/// Claims `port` among the test processes that run at once (ctest -j, make test's two streams). They
/// draw from one range, and a port given to a server that binds it later (free_port) can be drawn
/// again until then: two tests could give one port to two servers (seen in CI: "metrics listen on
/// 127.0.0.1:20022: Address already in use"). A claim is an exclusive flock(2) on a file named after
/// the port, in a folder all of them share; false when another process, or this one, holds it. The
/// lock belongs to this process's open file: it goes when the file is closed (after 64 newer claims
/// of this process, long after its server bound the port) or when the process ends, however it ends,
/// so no claim outlives its owner.
inline bool claim_test_port(std::uint16_t port) {
  static std::mutex guard;
  static std::deque<int> held;  // this process's newest claims, oldest first
  const std::string dir = test_port_claims_dir();
  const std::string file = dir + "/" + std::to_string(port);
  int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0 && errno == ENOENT && (::mkdir(dir.c_str(), 0777) == 0 || errno == EEXIST))
    fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) throw std::runtime_error("test set-up: cannot claim a port in " + dir + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return false;
  }
  std::lock_guard lock(guard);
  held.push_back(fd);
  if (held.size() > 64) {
    ::close(held.front());
    held.pop_front();
  }
  return true;
}

/// Binds the TCP socket `fd` to `ip` (127.0.0.1 by default, or ::1) and a random free port in the test
/// range that no other test process has claimed (claim_test_port); returns the port. Throws when none
/// binds in 200 tries.
inline std::uint16_t bind_test_port(int fd, const std::string& ip = "127.0.0.1") {
  static std::mutex guard;
  static std::mt19937 random{std::random_device{}() ^ static_cast<unsigned>(::getpid())};
  std::uniform_int_distribution<int> in_range(test_port_low, test_port_high);
  for (int attempt = 0; attempt < 200; ++attempt) {
    std::uint16_t port = 0;
    {
      std::lock_guard lock(guard);
      port = static_cast<std::uint16_t>(in_range(random));
    }
    if (!claim_test_port(port)) continue;  // drawn by a test process that runs now (maybe this one)
    auto a = make_socket_address(ip, port);
    if (::bind(fd, a.get(), a.length) == 0) return port;
    if (errno != EADDRINUSE) break;
  }
  throw std::runtime_error("test set-up: cannot bind a free port on " + ip +
                           " in 20000-32767: " + std::strerror(errno));
}

/// A TCP socket listening on `ip` and a free port in the test range (SO_REUSEADDR set); the caller owns
/// the fd. `port_out` receives the port.
inline int listen_test_port(std::uint16_t& port_out, const std::string& ip = "127.0.0.1", int backlog = 64) {
  const int fd = ::socket(ip.find(':') != std::string::npos ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("test set-up: socket: ") + std::strerror(errno));
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  try {
    port_out = bind_test_port(fd, ip);
  } catch (...) {
    ::close(fd);
    throw;
  }
  if (::listen(fd, backlog) != 0) {
    const int error = errno;
    ::close(fd);
    throw std::runtime_error(std::string("test set-up: listen: ") + std::strerror(error));
  }
  return fd;
}

/// An Asio TCP acceptor (of `io`: a context or an executor) listening on 127.0.0.1 and a free port in the
/// test range.
template <class Acceptor, class Context>
Acceptor test_acceptor(Context& io) {
  std::uint16_t port = 0;
  return Acceptor(io, Acceptor::protocol_type::v4(), listen_test_port(port));
}

/// A free TCP port on `ip` in the test range, for a server that binds it itself (etcd, redis, a program).
inline std::uint16_t free_port(const std::string& ip = "127.0.0.1") {
  const int fd = ::socket(ip.find(':') != std::string::npos ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("test set-up: socket: ") + std::strerror(errno));
  try {
    const auto port = bind_test_port(fd, ip);
    ::close(fd);
    return port;
  } catch (...) {
    ::close(fd);
    throw;
  }
}

/// Polls `done` every `interval` until it returns true or `timeout` passes.
inline bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout,
                       std::chrono::milliseconds interval = 20ms) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

/// Reads a whole file ("" when it does not exist).
inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// A child process started by the test; stopped by PID (SIGKILL) when this object goes.
class child_process {
public:
  struct options {
    std::map<std::string, std::string> env;  ///< added to (or replacing in) the test's environment
    std::vector<std::string> unset_env;      ///< removed from the environment
    std::filesystem::path output;            ///< stdout+stderr go here; a temp file when empty
    std::filesystem::path working_dir;       ///< when set, the child starts there
  };

  child_process() = default;
  explicit child_process(std::vector<std::string> argv) : child_process(std::move(argv), options{}) {}
  child_process(std::vector<std::string> argv, options opts) { start(std::move(argv), std::move(opts)); }
  child_process(child_process&& o) noexcept { *this = std::move(o); }
  child_process& operator=(child_process&& o) noexcept {
    if (this != &o) {
      stop();
      pid_ = o.pid_;
      status_ = o.status_;
      output_ = std::move(o.output_);
      own_output_ = o.own_output_;
      o.pid_ = -1;
      o.own_output_ = false;
    }
    return *this;
  }
  ~child_process() {
    stop();
    if (own_output_) {
      std::error_code ignored;  // temp file may already be gone
      std::filesystem::remove(output_, ignored);
    }
  }

  /// Starts argv[0] (searched on PATH) with output captured to a file.
  void start(std::vector<std::string> argv, options opts) {
    if (argv.empty()) throw std::runtime_error("child_process: empty argv");
    if (opts.output.empty()) {
      std::string tmpl = (std::filesystem::temp_directory_path() / "amb-test-out-XXXXXX").string();
      int fd = ::mkstemp(tmpl.data());
      if (fd < 0) throw std::runtime_error("test set-up: mkstemp failed");
      ::close(fd);
      output_ = tmpl;
      own_output_ = true;
    } else {
      output_ = opts.output;
    }
    std::map<std::string, std::string> env;
    for (char** e = environ; e && *e; ++e) {
      std::string kv = *e;
      auto eq = kv.find('=');
      if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    for (auto& [k, v] : opts.env) env[k] = v;
    for (auto& k : opts.unset_env) env.erase(k);
    std::vector<std::string> env_strings;
    for (auto& [k, v] : env) env_strings.push_back(k + "=" + v);
    std::vector<char*> envp, args;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    for (auto& s : argv) args.push_back(s.data());
    args.push_back(nullptr);

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, output_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    if (!opts.working_dir.empty()) posix_spawn_file_actions_addchdir_np(&fa, opts.working_dir.c_str());
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    // Reset signal dispositions and mask: the test runner's must not leak into servers.
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    int rc = ::posix_spawnp(&pid_, args[0], &fa, &attr, args.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
      pid_ = -1;
      throw std::runtime_error("test set-up: cannot start '" + argv[0] + "': " + std::strerror(rc));
    }
    status_ = -1;
  }

  pid_t pid() const { return pid_; }
  /// True while the process has not exited (reaps it when it has).
  bool running() {
    if (pid_ <= 0) return false;
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = decode(st);
      pid_ = -1;
      return false;
    }
    return r == 0;
  }
  /// Sends `sig` to the process (by PID).
  void signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  /// Waits for exit; returns the exit code (128+signal when killed), or -1 on timeout.
  int wait(std::chrono::milliseconds timeout = 10s) {
    if (pid_ <= 0) return status_;
    bool exited = wait_until([&] { return !running(); }, timeout, 5ms);
    return exited ? status_ : -1;
  }
  /// SIGKILL and reap; harmless when already gone.
  void stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
      status_ = decode(st);
      pid_ = -1;
    }
  }
  /// Everything the process wrote to stdout and stderr so far.
  std::string output() const { return read_file(output_); }
  const std::filesystem::path& output_path() const { return output_; }

private:
  static int decode(int st) {
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -1;
  }
  pid_t pid_ = -1;
  int status_ = -1;
  std::filesystem::path output_;
  bool own_output_ = false;
};

/// The outcome of a finished command.
struct run_result {
  int status = -1;     ///< exit code, 128+signal, or -1 when it had to be killed after the timeout
  std::string output;  ///< stdout and stderr together
};

/// Runs a command to completion (killed after `timeout`) and returns its exit code and output.
inline run_result run(std::vector<std::string> argv, std::chrono::milliseconds timeout = 30s,
                      child_process::options opts = {}) {
  child_process p(std::move(argv), std::move(opts));
  run_result r;
  r.status = p.wait(timeout);
  if (r.status == -1) p.stop();
  r.output = p.output();
  return r;
}

/// Connects a stream socket of `family` to `address`, sends `request` (then shuts down its sending
/// side when `half_close`), and returns everything read until EOF or `timeout`; "" if it cannot connect.
inline std::string socket_exchange(int family, const sockaddr* address, socklen_t length, const std::string& request,
                                   std::chrono::milliseconds timeout, bool half_close) {
  int fd = ::socket(family, SOCK_STREAM, 0);
  if (fd < 0) return "";
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string out;
  if (::connect(fd, address, length) == 0) {
    std::size_t done = 0;
    while (done < request.size()) {
      ssize_t n = ::send(fd, request.data() + done, request.size() - done, MSG_NOSIGNAL);
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
    if (half_close) ::shutdown(fd, SHUT_WR);
    char buf[65536];
    while (true) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return out;
}

/// Sends raw bytes to ip:port (127.0.0.1 by default, or ::1) and returns everything read until EOF or `timeout`.
inline std::string tcp_exchange(std::uint16_t port, const std::string& request, std::chrono::milliseconds timeout = 5s,
                                bool half_close = true, const std::string& ip = "127.0.0.1") {
  auto a = make_socket_address(ip, port);
  return socket_exchange(a.family, a.get(), a.length, request, timeout, half_close);
}

/// Number of open file descriptors of process `pid` (from /proc).
inline int open_fd_count(pid_t pid) {
  int n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    ++n;
  return n;
}

// Probes of a running process (/proc) and of its output.

/// A field of /proc/PID/status in kB (VmRSS, VmHWM, ...); -1 when absent.
inline long proc_status_kb(pid_t pid, const std::string& field) {
  std::istringstream in(read_file("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(in, line);)
    if (line.rfind(field + ":", 0) == 0) return std::strtol(line.c_str() + field.size() + 1, nullptr, 10);
  return -1;
}

/// CPU time (user + system) of the process so far, in clock ticks (/proc/PID/stat fields 14 and 15).
inline long proc_cpu_ticks(pid_t pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  auto close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) return -1;
  std::istringstream in(stat.substr(close_paren + 2));  // the name may hold spaces
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return utime + stime;
}

/// Share of one core the process used over `span` (0.0 .. 1.0 per core), measured from /proc.
inline double proc_cpu_share(pid_t pid, std::chrono::milliseconds span) {
  const long before = proc_cpu_ticks(pid);
  const auto start = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(span);
  const long after = proc_cpu_ticks(pid);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return static_cast<double>(after - before) / static_cast<double>(::sysconf(_SC_CLK_TCK)) / seconds;
}

/// Raises this process's RLIMIT_NOFILE (soft and hard) to `n` (root may raise the hard limit up to fs.nr_open);
/// children started afterwards inherit it. Returns the soft limit in force.
inline rlim_t raise_own_fd_limit(rlim_t n) {
  rlimit l{};
  ::getrlimit(RLIMIT_NOFILE, &l);
  if (l.rlim_cur < n || l.rlim_max < n) {
    rlimit want{std::max(l.rlim_cur, n), std::max(l.rlim_max, n)};
    if (::setrlimit(RLIMIT_NOFILE, &want) == 0) l = want;
  }
  return l.rlim_cur;
}

/// Number of lines of `text` that contain `needle`.
inline std::size_t count_lines_with(const std::string& text, const std::string& needle) {
  std::istringstream in(text);
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);)
    if (line.find(needle) != std::string::npos) ++n;
  return n;
}

/// The lines of `text` that contain `needle`.
inline std::vector<std::string> lines_with(const std::string& text, const std::string& needle) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.find(needle) != std::string::npos) out.push_back(line);
  return out;
}

/// Threads of a process (entries of /proc/PID/task).
inline int thread_count(pid_t pid) {
  int n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) ++n;
  return n;
}

/// Threads a sanitizer's runtime adds to a program that starts threads of its own: ThreadSanitizer then
/// runs one background thread. make test's tsan phase sets TSAN_OPTIONS for the builds it tests.
inline int sanitizer_threads() { return std::getenv("TSAN_OPTIONS") != nullptr ? 1 : 0; }

/// Listening TCP sockets on 127.0.0.1:port in the whole network namespace (/proc/net/tcp, state 0A).
inline int tcp_listeners_on(std::uint16_t port) {
  std::ifstream f("/proc/net/tcp");
  std::string line;
  std::getline(f, line);  // header
  char want[16];
  std::snprintf(want, sizeof want, "0100007F:%04X", port);
  int n = 0;
  while (std::getline(f, line)) {
    std::istringstream in(line);
    std::string slot, local, remote, state;
    in >> slot >> local >> remote >> state;
    if (local == want && state == "0A") ++n;
  }
  return n;
}

}  // namespace amb::test
