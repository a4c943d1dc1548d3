// SPDX-License-Identifier: MIT
// --send-proxy v1|v2 against a real server that reads the PROXY protocol (nginx, `listen ...
// proxy_protocol`): it answers with the client address and port the header gave it, which must be the
// test client's own, over IPv4 and IPv6, through simple-amb and dynamic-etcd-amb.
#include "support/dynamic_amb.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <string>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace send_proxy_test {

using namespace amb::test;

namespace {

/// nginx on 127.0.0.1, expecting a PROXY protocol header (v1 or v2: it reads both) on every
/// connection, answering every request with the addresses the header named. Stopped by PID.
class proxy_protocol_server {
public:
  proxy_protocol_server() : port_(free_port()) {
    const auto nginx = require_program("nginx", "nginx-light");
    const std::string d = dir_.path().string();
    std::ofstream(dir_.path() / "nginx.conf")
        << "daemon off;\nmaster_process off;\nworker_processes 1;\npid " << d << "/nginx.pid;\nerror_log " << d
        << "/error.log warn;\nevents { worker_connections 64; }\nhttp {\n  access_log off;\n"
        << "  client_body_temp_path " << d << "/body;\n  proxy_temp_path " << d << "/proxy;\n  fastcgi_temp_path " << d
        << "/fastcgi;\n  uwsgi_temp_path " << d << "/uwsgi;\n  scgi_temp_path " << d << "/scgi;\n"
        << "  server {\n    listen 127.0.0.1:" << port_ << " proxy_protocol;\n"
        << "    location / { return 200 \"client=$proxy_protocol_addr port=$proxy_protocol_port "
           "to=$proxy_protocol_server_addr:$proxy_protocol_server_port\\n\"; }\n  }\n}\n";
    process_.start({nginx, "-p", d, "-e", d + "/error.log", "-c", d + "/nginx.conf"}, {});
    if (!wait_until([&] { return !process_.running() || port_open(port_); }, 10s) || !process_.running())
      throw std::runtime_error("test set-up: nginx did not start:\n" + process_.output() +
                               read_file(dir_.path() / "error.log"));
  }
  std::uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

private:
  temp_dir dir_;
  std::uint16_t port_;
  child_process process_;
};

/// An HTTP request to `ip`:`port` from a socket of the test's own: its local port, and the reply.
struct reply {
  std::uint16_t local_port = 0;
  std::string text;
};
reply get_via(const std::string& ip, std::uint16_t port) {
  const bool v6 = ip.find(':') != std::string::npos;
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    REQUIRE(::inet_pton(AF_INET6, ip.c_str(), &a->sin6_addr) == 1);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    REQUIRE(::inet_pton(AF_INET, ip.c_str(), &a->sin_addr) == 1);
    len = sizeof *a;
  }
  const int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  reply r;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0) {
    sockaddr_storage local{};
    socklen_t local_len = sizeof local;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len);
    r.local_port = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&local)->sin6_port
                            : reinterpret_cast<sockaddr_in*>(&local)->sin_port);
    const std::string request = "GET / HTTP/1.0\r\nHost: test\r\n\r\n";
    ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) r.text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return r;
}

/// What nginx must answer to a client at ip:local_port that connected to ip:amb_port.
std::string expected_body(const std::string& ip, std::uint16_t local_port, std::uint16_t amb_port) {
  return "client=" + ip + " port=" + std::to_string(local_port) + " to=" + ip + ":" + std::to_string(amb_port) + "\n";
}

bool ends_with(const std::string& text, const std::string& tail) {
  return text.size() >= tail.size() && text.compare(text.size() - tail.size(), tail.size(), tail) == 0;
}

/// simple-amb on `listen_ip`:free port forwarding to `target`, with `extra` flags; waits until it listens.
child_process start_simple_amb(const std::string& listen_ip, std::uint16_t port, const std::string& target,
                               std::vector<std::string> extra) {
  const std::string listen = listen_ip.find(':') != std::string::npos ? "[" + listen_ip + "]:" + std::to_string(port)
                                                                      : listen_ip + ":" + std::to_string(port);
  std::vector<std::string> argv{AMB_SIMPLE_AMB_BIN, "--listen", listen};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(target);
  child_process p(argv);
  if (!wait_until([&] { return !p.running() || p.output().find("listening on") != std::string::npos; }, 10s) ||
      !p.running())
    throw std::runtime_error("test set-up: simple-amb did not start:\n" + p.output());
  return p;
}

}  // namespace

TEST_CASE("simple-amb --send-proxy v1 and v2: the server sees the client's address and port, IPv4 and IPv6") {
  proxy_protocol_server server;
  for (const std::string version : {"v1", "v2"}) {
    for (const std::string ip : {"127.0.0.1", "::1"}) {
      CAPTURE(version);
      CAPTURE(ip);
      const auto port = free_port();
      auto amb = start_simple_amb(ip, port, server.address(), {"--send-proxy", version});
      const auto r = get_via(ip, port);
      CHECK_MESSAGE(r.text.rfind("HTTP/1.1 200", 0) == 0, r.text, "\n", amb.output());
      CHECK_MESSAGE(ends_with(r.text, expected_body(ip, r.local_port, port)), r.text);
    }
  }
  // Without the flag the server gets no header and refuses the connection: the header is what it read.
  const auto port = free_port();
  auto plain = start_simple_amb("127.0.0.1", port, server.address(), {});
  const auto r = get_via("127.0.0.1", port);
  CHECK(r.text.find("client=") == std::string::npos);
}

TEST_CASE("dynamic-etcd-amb --send-proxy v2: each instance sees the client's address and port") {
  etcd_cluster etcd;
  proxy_protocol_server server;
  ambassador amb(etcd.url(), "pp", {"--send-proxy", "v2"});
  etcd.etcdctl({"put", "/services/pp/a", R"({"host":"127.0.0.1","port":)" + std::to_string(server.port()) + "}"});
  reply r;
  CHECK(wait_until(
      [&] {
        r = get_via("127.0.0.1", amb.port());
        return r.text.find("client=") != std::string::npos;
      },
      15s, 100ms));
  CHECK_MESSAGE(ends_with(r.text, expected_body("127.0.0.1", r.local_port, amb.port())), r.text, "\n", amb.output());
}

TEST_CASE("--send-proxy with a bad version: one line, exit 2") {
  auto r = run({AMB_DYNAMIC_ETCD_AMB_BIN, "--send-proxy", "v3", "pp", "6379"}, 10s);
  CHECK(r.status == 2);
  CHECK(r.output ==
        "dynamic-etcd-amb: bad PROXY protocol version \"v3\" (use v1 or v2) for --send-proxy\n"
        "Try 'dynamic-etcd-amb --help'.\n");
  r = run({AMB_SIMPLE_AMB_BIN, "--send-proxy", "1", "127.0.0.1:6379"}, 10s);
  CHECK(r.status == 2);
  CHECK(r.output ==
        "simple-amb: --send-proxy: bad PROXY protocol version \"1\" (use v1 or v2)\nTry 'simple-amb --help'.\n");
}

}  // namespace send_proxy_test
