// SPDX-License-Identifier: MIT
// dynamic-etcd-amb and docker-register against a real etcd with TLS, client certificates and auth:
// they route and register over https; each failure a user will meet is one clear line; the password
// never appears in their output (at debug level) nor in /proc/PID/cmdline.
#include "support/dynamic_amb.hpp"
#include "support/etcd_tls.hpp"
#include "support/podman_service.hpp"

#include <doctest/doctest.h>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace programs_test {

using namespace amb::test;

namespace {

const std::string password = "Pw-3xq9-never-printed";  // distinctive, so a leak cannot hide

// The flags that give the programs the test PKI's CA and client certificate.
std::vector<std::string> tls_flags(const std::string& ca = test_pki::get().ca()) {
  return {
      "--etcd-cacert", ca, "--etcd-cert", test_pki::get().client_cert(), "--etcd-key", test_pki::get().client_key()};
}

// The programs must see only what a test gives them.
const std::vector<std::string> etcd_env_vars{"ETCDCTL_ENDPOINTS", "ETCDCTL_USER", "ETCDCTL_PASSWORD", "ETCDCTL_CACERT",
                                             "ETCDCTL_CERT",      "ETCDCTL_KEY",  "DOCKER_HOST",      "HOST_IP"};

std::string cmdline(pid_t pid) {
  auto raw = read_file("/proc/" + std::to_string(pid) + "/cmdline");
  for (auto& c : raw)
    if (c == '\0') c = ' ';
  return raw;
}

child_process start(std::vector<std::string> argv, std::map<std::string, std::string> env = {}) {
  child_process::options o;
  for (const auto& v : etcd_env_vars)
    if (!env.count(v)) o.unset_env.push_back(v);
  o.env = std::move(env);
  return child_process(std::move(argv), o);
}

// A file holding the password, as a secret mounted in a container would.
struct password_file {
  password_file() { std::ofstream(path()) << password << "\n"; }
  std::string path() const { return (dir.path() / "etcd-password").string(); }
  temp_dir dir;
};

}  // namespace

TEST_CASE("dynamic-etcd-amb routes via https with client certificates and auth; the password shows nowhere") {
  tls_etcd etcd(true);
  etcd.enable_auth(password);
  tagged_redis a("A"), b("B");
  etcd.etcdctl({"--user=root:" + password, "put", "/services/redis-A/a", a.json()});
  password_file file;

  SUBCASE("password from a file") {
    auto flags = tls_flags();
    flags.insert(flags.end(), {"--etcd-user", "root", "--etcd-password-file", file.path(), "--log-level", "debug"});
    ambassador amb(etcd.url(), "redis-A", flags);
    CHECK(amb.routes_to("A"));
    // A change made now arrives through the https watch.
    etcd.etcdctl({"--user=root:" + password, "del", "/services/redis-A/a"});
    etcd.etcdctl({"--user=root:" + password, "put", "/services/redis-A/b", b.json()});
    CHECK(amb.routes_to("B"));
    CHECK(cmdline(amb.process().pid()).find(password) == std::string::npos);
    CHECK(amb.output().find(password) == std::string::npos);
    CHECK(amb.output().find("dynamic-etcd-amb: etcd security: user root (from --etcd-user, password from "
                            "--etcd-password-file), TLS CA " +
                            test_pki::get().ca() + " (from --etcd-cacert)") != std::string::npos);
  }
  SUBCASE("everything from etcdctl's variables") {
    ambassador amb(etcd.url(), "redis-A", {"--log-level", "debug"},
                   {{"ETCDCTL_USER", "root"},
                    {"ETCDCTL_PASSWORD", password},
                    {"ETCDCTL_CACERT", test_pki::get().ca()},
                    {"ETCDCTL_CERT", test_pki::get().client_cert()},
                    {"ETCDCTL_KEY", test_pki::get().client_key()}});
    CHECK(amb.routes_to("A"));
    CHECK(cmdline(amb.process().pid()).find(password) == std::string::npos);
    CHECK(amb.output().find(password) == std::string::npos);
  }
  SUBCASE("USER:PASSWORD on the command line is overwritten there once read") {
    auto flags = tls_flags();
    flags.push_back("--etcd-user=root:" + password);
    ambassador amb(etcd.url(), "redis-A", flags);
    CHECK(amb.routes_to("A"));
    const auto cl = cmdline(amb.process().pid());
    CHECK(cl.find(password) == std::string::npos);
    CHECK(cl.find("--etcd-user=root:" + std::string(password.size(), 'x')) != std::string::npos);
    CHECK(amb.output().find(password) == std::string::npos);
  }
}

TEST_CASE("dynamic-etcd-amb: wrong CA, no client certificate, wrong password: one clear line each, retried") {
  tls_etcd etcd(true, {"--auth-token-ttl=2"});
  etcd.enable_auth(password);
  password_file file;
  const std::string prefix = "dynamic-etcd-amb: warning: watch /services/redis-A/: reading the prefix failed: ";
  auto amb_argv = [&](std::vector<std::string> flags) {
    std::vector<std::string> argv{AMB_DYNAMIC_ETCD_AMB_BIN,
                                  "--etcd",
                                  etcd.url(),
                                  "--listen",
                                  "127.0.0.1:" + std::to_string(free_port()),
                                  "--log-level",
                                  "debug"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.insert(argv.end(), {"redis-A"});  // PORT left out: --listen gives it
    return argv;
  };
  auto has_line = [](child_process& p, const std::string& line) {
    return wait_until(
        [&] {
          return p.output().find("\n" + line + "\n") != std::string::npos || p.output().rfind(line + "\n", 0) == 0;
        },
        10s);
  };
  auto flags = tls_flags(test_pki::get().other_ca());
  flags.insert(flags.end(), {"--etcd-user", "root", "--etcd-password-file", file.path()});
  auto wrong_ca = start(amb_argv(flags));
  auto no_cert = start(
      amb_argv({"--etcd-cacert", test_pki::get().ca(), "--etcd-user", "root", "--etcd-password-file", file.path()}));
  auto wrong_pw = start(amb_argv(tls_flags()), {{"ETCDCTL_USER", "root"}, {"ETCDCTL_PASSWORD", password + "-wrong"}});

  INFO("wrong CA:\n", wrong_ca.output(), "\nno client certificate:\n", no_cert.output(), "\nwrong password:\n",
       wrong_pw.output());
  CHECK(has_line(wrong_ca, prefix + "etcd get prefix /services/redis-A/: POST /v3/auth/authenticate to " + etcd.url() +
                               ": TLS handshake: certificate verify failed: unable to get local issuer certificate; "
                               "retrying in 250ms"));
  CHECK(has_line(no_cert, prefix + "etcd get prefix /services/redis-A/: POST /v3/auth/authenticate to " + etcd.url() +
                              ": read response: the server refused our TLS client certificate (none given, or not "
                              "trusted by it); retrying in 250ms"));
  CHECK(has_line(wrong_pw, prefix + "etcd authenticate as root at " + etcd.url() +
                               ": etcdserver: authentication failed, invalid user ID or password; retrying in 250ms"));
  // Retried, as outages are: still running, and the line comes again.
  CHECK(wait_until([&] { return wrong_pw.output().find("retrying in 500ms") != std::string::npos; }, 10s));
  for (auto* p : {&wrong_ca, &no_cert, &wrong_pw}) {
    CHECK(p->running());
    CHECK(p->output().find(password) == std::string::npos);
    CHECK(cmdline(p->pid()).find(password) == std::string::npos);
  }

  // Unreadable TLS files and incomplete flags: exit 2 at start, one line.
  auto r = run(amb_argv({"--etcd-cacert", "/nonexistent/ca.pem"}));
  CHECK(r.status == 2);
  CHECK(r.output == "dynamic-etcd-amb: error: etcd: TLS CA file /nonexistent/ca.pem: No such file or directory\n");
  r = run(amb_argv({"--etcd-cert", test_pki::get().client_cert()}));
  CHECK(r.status == 2);
  CHECK(r.output ==
        "dynamic-etcd-amb: a client certificate needs its key: give --etcd-key FILE (or ETCDCTL_KEY)\n"
        "Try 'dynamic-etcd-amb --help'.\n");
}

TEST_CASE("docker-register writes its key via https with client certificates and auth, and revokes it on SIGTERM") {
  tls_etcd etcd(true);
  etcd.enable_auth(password);
  podman_service podman;
  password_file file;
  auto name = podman.unique_name("tls");
  podman.run_container(name, {"-p", "127.0.0.1::80"}, {"httpd", "-f", "-p", "80"});
  const auto port = podman.published_port(name, 80);
  REQUIRE(port != 0);
  const std::string key = "/services/web/" + name;
  std::vector<std::string> argv{
      AMB_DOCKER_REGISTER_BIN, "--etcd",    etcd.url(), "--docker", podman.url(),  "--etcd-user", "root",
      "--etcd-password-file",  file.path(), "--ttl",    "2s",       "--log-level", "debug"};
  for (auto& f : tls_flags()) argv.push_back(f);
  argv.insert(argv.end(), {name, "80", "web"});
  auto reg = start(argv);
  const std::string want = "{\"host\":\"127.0.0.1\",\"port\":" + std::to_string(port) + "}";
  CHECK(wait_until([&] { return etcd.value(key, "root:" + password) == want; }, 15s));
  std::this_thread::sleep_for(2500ms);  // more than the TTL: keepalives over https hold it
  CHECK(etcd.value(key, "root:" + password) == want);
  CHECK(cmdline(reg.pid()).find(password) == std::string::npos);
  reg.signal(SIGTERM);
  CHECK(reg.wait(10s) == 0);
  CHECK(etcd.value(key, "root:" + password) == "");
  INFO(reg.output());
  CHECK(reg.output().find(password) == std::string::npos);
  CHECK(reg.output().find("docker-register: lease revoked; registrations removed\n") != std::string::npos);
}

}  // namespace programs_test
