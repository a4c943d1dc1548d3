// SPDX-License-Identifier: MIT
// amb::docker_client against podman's real Docker-compatible API on a unix socket.
#include <amb/docker_client.hpp>

#include "support/podman_service.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include "support/docker_register_support.hpp"
#include <mutex>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace docker_client_test {

using namespace amb::test;

namespace {

// Runs one coroutine on a fresh io_context and returns its result (exceptions propagate).
template <class T>
T run_io(std::function<asio::awaitable<T>(amb::docker_client&)> body, const std::string& url) {
  asio::io_context io;
  amb::docker_client docker(io.get_executor(), *amb::parse_endpoint(url));
  std::optional<T> result;
  std::exception_ptr error;
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { result = co_await body(docker); }, [&](std::exception_ptr e) { error = e; });
  io.run();
  if (error) std::rethrow_exception(error);
  return *result;
}

}  // namespace

TEST_CASE("docker_client: ping, negotiation, list with exact names, inspect, errors, events") {
  podman_service podman;
  auto name = podman.unique_name("client");
  auto other = podman.unique_name("client2");  // its name contains `name`: the engine's filter would match both
  podman.run_container(name, {"-p", "127.0.0.1::80", "--label", "amb.test=yes", "-e", "FOO=bar"},
                       {"httpd", "-f", "-p", "80"});
  podman.run_container(other, {}, {"httpd", "-f", "-p", "80"});
  const auto port = podman.published_port(name, 80);

  auto version = run_io<std::string>(
      [](amb::docker_client& d) -> asio::awaitable<std::string> {
        co_await d.ping();
        auto v = co_await d.negotiate();
        co_return v.api_version + " " + d.api_version();
      },
      podman.url());
  CHECK(version == "1.41 1.41");  // podman 4.3 says 1.41; we know up to 1.52

  auto info = run_io<amb::container_info>(
      [&](amb::docker_client& d) -> asio::awaitable<amb::container_info> { co_return co_await d.inspect(name); },
      podman.url());
  CHECK(info.name == name);
  CHECK(info.running);
  CHECK(info.labels.at("amb.test") == "yes");
  CHECK(info.env_value("FOO") == "bar");
  CHECK(info.bindings(80) == std::vector<amb::port_binding>{{"127.0.0.1", port}});

  auto found = run_io<std::string>(
      [&](amb::docker_client& d) -> asio::awaitable<std::string> {
        auto c = co_await d.find_by_name(name);
        std::vector<std::string> filters{"amb.test=yes"};  // named: GCC 12 rejects a braced list inside co_await
        auto labelled = co_await d.list_containers(false, filters);
        std::string ids;
        for (auto& l : labelled) ids += l.id + ",";
        co_return (c ? c->id : std::string("none")) + " " + ids;
      },
      podman.url());
  CHECK(found == info.id + " " + info.id + ",");

  std::string missing;
  try {
    run_io<int>(
        [](amb::docker_client& d) -> asio::awaitable<int> {
          co_await d.inspect("amb-test-no-such-container");
          co_return 0;
        },
        podman.url());
  } catch (const std::system_error& e) {
    missing = e.what();
    CHECK(e.code() == amb::errc::no_such_container);
  }
  CHECK(missing == "inspect container \"amb-test-no-such-container\" at " + podman.url() + ": no such container");

  // Events: a stop produces "die" for our container; the stream ends when the service stops. The
  // container is stopped only once the client has its answer to GET /version: on a loaded machine
  // podman took longer to answer it than the 2 s this waited before, and stopping the service first
  // left no stream to see the event (CI).
  std::atomic<bool> negotiated{false};
  std::thread stopper([&] {
    amb::test::wait_until([&] { return negotiated.load(); }, 60s);
    std::this_thread::sleep_for(1s);  // let the stream start; events since= covers a late start anyway
    podman.podman_ok({"stop", "-t", "1", name});
    std::this_thread::sleep_for(1s);
    podman.stop();
  });
  auto since =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::vector<std::string> actions;
  std::string ended;
  try {
    run_io<int>(
        [&](amb::docker_client& d) -> asio::awaitable<int> {
          co_await d.negotiate();
          negotiated = true;
          co_await d.events(since, [&](const amb::docker_event& ev) {
            if (ev.id == info.id) actions.push_back(ev.action);
          });
          co_return 0;
        },
        podman.url());
    ended = "clean end";
  } catch (const std::system_error& e) {
    ended = e.what();
  }
  stopper.join();
  INFO(ended);
  CHECK(std::find(actions.begin(), actions.end(), "die") != actions.end());
}

TEST_CASE("docker_client: version negotiation with a Docker-like engine that refuses the version once") {
  // No Docker engine runs here (podman accepts any version prefix), so a small in-test server plays
  // Docker's part: /version first says 1.53 (min 1.44), then the engine refuses 1.52 as too new,
  // as a daemon downgraded in between would, and says 1.45 when asked again.
  std::mutex mutex;
  std::vector<std::string> lines;
  int version_calls = 0;
  temp_dir dir;
  unix_server fake((dir.path() / "docker.sock").string(), [&](int fd) {
    std::string in;
    char buf[4096];
    for (;;) {
      std::size_t end;
      while ((end = in.find("\r\n\r\n")) == std::string::npos) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) return;
        in.append(buf, static_cast<std::size_t>(n));
      }
      std::string line = in.substr(0, in.find("\r\n"));
      in.erase(0, end + 4);
      int status = 200;
      std::string body;
      {
        std::lock_guard<std::mutex> lock(mutex);
        lines.push_back(line);
        if (line.rfind("GET /version ", 0) == 0) {
          body = ++version_calls == 1 ? R"({"Version":"29.0.0","ApiVersion":"1.53","MinAPIVersion":"1.44"})"
                                      : R"({"Version":"28.0.0","ApiVersion":"1.45","MinAPIVersion":"1.44"})";
        } else if (line.rfind("GET /v1.52/", 0) == 0) {
          status = 400;
          body = R"({"message":"client version 1.52 is too new. Maximum supported API version is 1.45"})";
        } else if (line.rfind("GET /v1.45/containers/json ", 0) == 0) {
          body = "[]";
        } else {
          status = 404;
          body = R"({"message":"page not found"})";
        }
      }
      std::string reply = "HTTP/1.1 " + std::to_string(status) + (status == 200 ? " OK" : " Error") +
                          "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                          "\r\n\r\n" + body;
      ::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
    }
  });
  auto used = run_io<std::string>(
      [](amb::docker_client& d) -> asio::awaitable<std::string> {
        auto list = co_await d.list_containers();
        co_return d.api_version() + " " + std::to_string(list.size());
      },
      fake.url());
  CHECK(used == "1.45 0");
  std::lock_guard<std::mutex> lock(mutex);
  CHECK(lines == std::vector<std::string>{"GET /version HTTP/1.1", "GET /v1.52/containers/json HTTP/1.1",
                                          "GET /version HTTP/1.1", "GET /v1.45/containers/json HTTP/1.1"});
}

}  // namespace docker_client_test
