// SPDX-License-Identifier: MIT
// Unit tests for include/amb/metrics.hpp: exposition text, request answers, and the real endpoint on loopback.
#include <amb/metrics.hpp>

#include "support/process.hpp"

#include <doctest/doctest.h>

#include <thread>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace metrics_test {

TEST_CASE("exposition text: HELP, TYPE, samples, labels escaped") {
  amb::metrics_registry m;
  m.declare("amb_connections_accepted_total", "counter", "Client connections accepted.");
  m.declare("amb_connect_failures_total", "counter", "Failed upstream connects, per instance.");
  m.add("amb_connections_accepted_total", 2);
  m.add("amb_connections_accepted_total", 1);
  m.add("amb_connect_failures_total", 1, amb::metrics_registry::label("instance", "/s/x \"q\"\\"));
  m.set("amb_last_revision", 1234567890123);
  CHECK(m.value("amb_connections_accepted_total") == 3);
  CHECK(m.render() ==
        "# HELP amb_connections_accepted_total Client connections accepted.\n"
        "# TYPE amb_connections_accepted_total counter\n"
        "amb_connections_accepted_total 3\n"
        "# HELP amb_connect_failures_total Failed upstream connects, per instance.\n"
        "# TYPE amb_connect_failures_total counter\n"
        "amb_connect_failures_total{instance=\"/s/x \\\"q\\\"\\\\\"} 1\n"
        "# HELP amb_last_revision amb_last_revision\n"
        "# TYPE amb_last_revision gauge\n"
        "amb_last_revision 1234567890123\n");
  m.erase("amb_connect_failures_total", amb::metrics_registry::label("instance", "/s/x \"q\"\\"));
  CHECK(m.render().find("amb_connect_failures_total 0\n") != std::string::npos);
  m.set("ratio", 0.5);
  CHECK(m.render().find("ratio 0.5\n") != std::string::npos);
}

TEST_CASE("answers: /metrics, /healthz before and after ready, 404, 405, 400, HEAD") {
  amb::metrics_registry m;
  m.set("x", 1);
  auto r = amb::detail::metrics_answer("GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n", m, false);
  CHECK(r.rfind("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n", 0) == 0);
  CHECK(r.find("\r\n\r\n# HELP x x\n# TYPE x gauge\nx 1\n") != std::string::npos);
  CHECK(amb::detail::metrics_answer("GET /healthz HTTP/1.1\r\n\r\n", m, false).rfind("HTTP/1.1 503 ", 0) == 0);
  CHECK(amb::detail::metrics_answer("GET /healthz?x=1 HTTP/1.0\r\n\r\n", m, true).rfind("HTTP/1.1 200 ", 0) == 0);
  CHECK(amb::detail::metrics_answer("GET / HTTP/1.1\r\n\r\n", m, true).rfind("HTTP/1.1 404 ", 0) == 0);
  CHECK(amb::detail::metrics_answer("POST /metrics HTTP/1.1\r\n\r\n", m, true).rfind("HTTP/1.1 405 ", 0) == 0);
  CHECK(amb::detail::metrics_answer("hello\r\n\r\n", m, true).rfind("HTTP/1.1 400 ", 0) == 0);
  auto h = amb::detail::metrics_answer("HEAD /metrics HTTP/1.1\r\n\r\n", m, true);
  CHECK(h.size() == h.find("\r\n\r\n") + 4);
  CHECK(h.find("Content-Length: ") != std::string::npos);
}

TEST_CASE("/healthz says ok or not ready, and adds a note when there is one") {
  amb::metrics_registry m;
  auto body = [](const std::string& r) { return r.substr(r.find("\r\n\r\n") + 4); };
  CHECK(body(amb::detail::metrics_answer("GET /healthz HTTP/1.1\r\n\r\n", m, true)) == "ok\n");
  CHECK(body(amb::detail::metrics_answer("GET /healthz HTTP/1.1\r\n\r\n", m, false)) == "not ready\n");
  CHECK(body(amb::detail::metrics_answer("GET /healthz HTTP/1.1\r\n\r\n", m, true, "serving from a file")) ==
        "ok: serving from a file\n");
  CHECK(body(amb::detail::metrics_answer("GET /healthz HTTP/1.1\r\n\r\n", m, false, "etcd not reached")) ==
        "not ready: etcd not reached\n");
}

TEST_CASE("the endpoint on loopback: answers, refuses huge heads, drops silent clients") {
  using namespace std::chrono_literals;
  asio::io_context io;
  amb::metrics_registry m;
  m.declare("amb_instances", "gauge", "Instances known.");
  int scrapes = 0;
  m.add_collector([&](amb::metrics_registry& r) { r.set("amb_instances", 2 + scrapes++); });
  bool ready = false;
  amb::metrics_server_options o;
  o.read_timeout = 300ms;
  amb::metrics_server server(
      io.get_executor(), amb::host_port{"127.0.0.1", amb::test::free_port()}, m, [&] { return ready; }, o);
  auto port = server.port();
  asio::co_spawn(io, server.run(), asio::detached);  // run() catches nothing but throws nothing either
  std::thread t([&] { io.run(); });

  auto metrics = amb::test::tcp_exchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 5s, false);
  CHECK(metrics.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(metrics.find("\r\n\r\n# HELP amb_instances Instances known.\n# TYPE amb_instances gauge\namb_instances 2\n") !=
        std::string::npos);
  CHECK(amb::test::tcp_exchange(port, "GET /metrics HTTP/1.1\r\n\r\n", 5s, false).find("amb_instances 3\n") !=
        std::string::npos);  // collectors run at every scrape
  CHECK(amb::test::tcp_exchange(port, "GET /healthz HTTP/1.1\r\n\r\n", 5s, false).rfind("HTTP/1.1 503 ", 0) == 0);
  asio::post(io, [&] { ready = true; });
  CHECK(amb::test::wait_until(
      [&] {
        return amb::test::tcp_exchange(port, "GET /healthz HTTP/1.1\r\n\r\n", 5s, false).rfind("HTTP/1.1 200 ", 0) == 0;
      },
      5s));
  CHECK(amb::test::tcp_exchange(port, "GET /nope HTTP/1.1\r\n\r\n", 5s, false).rfind("HTTP/1.1 404 ", 0) == 0);
  std::string huge = "GET /metrics HTTP/1.1\r\nX: " + std::string(20000, 'a') + "\r\n\r\n";
  CHECK(amb::test::tcp_exchange(port, huge, 5s, false).rfind("HTTP/1.1 431 ", 0) == 0);
  // A client that never finishes its head is closed by the server (EOF well before our 5 s).
  auto start = std::chrono::steady_clock::now();
  CHECK(amb::test::tcp_exchange(port, "GET /metr", 5s, false).empty());
  CHECK(std::chrono::steady_clock::now() - start < 4s);

  asio::post(io, [&] { server.close(); });
  t.join();
}

}  // namespace metrics_test
