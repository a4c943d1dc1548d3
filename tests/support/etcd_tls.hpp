// SPDX-License-Identifier: MIT
// Test support for etcd over TLS: certificates made with the openssl command, and a real etcd serving
// https:// on a free loopback port (optionally requiring client certificates), stopped by PID.
#pragma once

#include "support/process.hpp"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace amb::test {

/// A test PKI in a temp folder, made once per test process: a CA, a server certificate for IP 127.0.0.1
/// (serverAuth and clientAuth: etcd's own gateway dials its gRPC port with it), a client certificate
/// WITHOUT a CommonName (etcd 3.4's gateway answers 400 to a client certificate with a CN once auth is
/// on), and a second, unrelated CA (the "wrong CA").
class test_pki {
public:
  test_pki() {
    openssl_ = require_program("openssl", "openssl");
    make_ca("ca", "amb-test-ca");
    make_ca("other-ca", "amb-test-other-ca");
    make_cert("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n");
    make_cert("client", "", "extendedKeyUsage=clientAuth\n");
  }
  /// The one shared by a test executable (openssl runs once).
  static const test_pki& get() {
    static test_pki pki;
    return pki;
  }
  /// Path of "<name>.pem" (certificate) or "<name>-key.pem" (key) in the folder.
  std::string pem(const std::string& name) const { return (dir_.path() / (name + ".pem")).string(); }
  std::string ca() const { return pem("ca"); }
  std::string other_ca() const { return pem("other-ca"); }
  std::string server_cert() const { return pem("server"); }
  std::string server_key() const { return pem("server-key"); }
  std::string client_cert() const { return pem("client"); }
  std::string client_key() const { return pem("client-key"); }
  const std::filesystem::path& dir() const { return dir_.path(); }

private:
  void openssl(std::vector<std::string> args) const {
    args.insert(args.begin(), openssl_);
    auto r = run(args, 30s);
    if (r.status != 0) throw std::runtime_error("test set-up: openssl failed: " + r.output);
  }
  // EC keys: fast to make, and etcd (Go) takes them.
  std::vector<std::string> new_key(const std::string& name) const {
    return {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", pem(name + "-key")};
  }
  void make_ca(const std::string& name, const std::string& cn) const {
    std::vector<std::string> a{"req", "-x509", "-days", "2", "-subj", "/CN=" + cn, "-out", pem(name)};
    auto k = new_key(name);
    a.insert(a.end(), k.begin(), k.end());
    openssl(a);
  }
  void make_cert(const std::string& name, const std::string& cn, const std::string& extensions) const {
    const auto csr = (dir_.path() / (name + ".csr")).string();
    const auto ext = (dir_.path() / (name + ".ext")).string();
    std::ofstream(ext) << "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n" << extensions;
    std::vector<std::string> a{"req", "-subj", cn.empty() ? "/O=amb-test-client" : "/CN=" + cn, "-out", csr};
    auto k = new_key(name);
    a.insert(a.end(), k.begin(), k.end());
    openssl(a);
    openssl({"x509", "-req", "-in", csr, "-CA", ca(), "-CAkey", pem("ca-key"), "-CAcreateserial", "-days", "2",
             "-extfile", ext, "-out", pem(name)});
  }

  temp_dir dir_;
  std::string openssl_;
};

/// One etcd member serving https://127.0.0.1:<free port> with the test PKI's server certificate;
/// `client_cert_auth` makes it require client certificates signed by the test CA.
class tls_etcd {
public:
  explicit tls_etcd(bool client_cert_auth, std::vector<std::string> extra_args = {}) {
    const auto& pki = test_pki::get();
    etcd_ = require_program("etcd", "etcd-server");
    require_program("etcdctl", "etcd-client");
    port_ = free_port();
    const auto peer = free_port();
    std::vector<std::string> argv{etcd_,
                                  "--name=tls",
                                  "--data-dir=" + (dir_.path() / "data").string(),
                                  "--listen-client-urls=" + url(),
                                  "--advertise-client-urls=" + url(),
                                  "--listen-peer-urls=http://127.0.0.1:" + std::to_string(peer),
                                  "--initial-advertise-peer-urls=http://127.0.0.1:" + std::to_string(peer),
                                  "--initial-cluster=tls=http://127.0.0.1:" + std::to_string(peer),
                                  "--cert-file=" + pki.server_cert(),
                                  "--key-file=" + pki.server_key(),
                                  "--trusted-ca-file=" + pki.ca()};
    if (client_cert_auth) argv.push_back("--client-cert-auth");
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    child_process::options opts;
    opts.output = dir_.path() / "etcd.log";
    opts.unset_env = {"ETCDCTL_ENDPOINTS", "ETCD_NAME", "ETCD_DATA_DIR"};
    process_.start(argv, opts);
    bool ok = wait_until([&] { return !process_.running() || healthy(); }, 30s, 100ms);
    if (!ok || !process_.running())
      throw std::runtime_error("test set-up: etcd with TLS did not become healthy on " + url() + "; its log:\n" +
                               process_.output());
  }
  /// "https://127.0.0.1:<port>".
  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_); }
  std::uint16_t port() const { return port_; }
  /// Runs etcdctl (API v3) with the CA and the client certificate; throws on a non-zero exit.
  std::string etcdctl(std::vector<std::string> args) {
    auto r = etcdctl_result(std::move(args));
    if (r.status != 0) throw std::runtime_error("etcdctl failed (" + std::to_string(r.status) + "): " + r.output);
    return r.output;
  }
  run_result etcdctl_result(std::vector<std::string> args) {
    const auto& pki = test_pki::get();
    std::vector<std::string> argv{"etcdctl",
                                  "--endpoints=" + url(),
                                  "--command-timeout=10s",
                                  "--cacert=" + pki.ca(),
                                  "--cert=" + pki.client_cert(),
                                  "--key=" + pki.client_key()};
    argv.insert(argv.end(), args.begin(), args.end());
    child_process::options opts;
    opts.env["ETCDCTL_API"] = "3";
    opts.unset_env = {"ETCDCTL_ENDPOINTS", "ETCDCTL_USER", "ETCDCTL_PASSWORD",
                      "ETCDCTL_CACERT",    "ETCDCTL_CERT", "ETCDCTL_KEY"};
    return run(argv, 30s, opts);
  }
  /// The value of `key` read with etcdctl as `user` ("" when absent); `user` "" = no auth.
  std::string value(const std::string& key, const std::string& user = "") {
    std::vector<std::string> args{"get", "--print-value-only", key};
    if (!user.empty()) args.insert(args.begin(), "--user=" + user);
    auto out = etcdctl(args);
    if (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  }
  /// Adds user root with `password`, and enables auth.
  void enable_auth(const std::string& password) {
    etcdctl({"user", "add", "root:" + password});
    etcdctl({"auth", "enable"});
  }
  std::string log() const { return process_.output(); }
  child_process& process() { return process_; }

private:
  bool healthy() { return etcdctl_result({"endpoint", "health"}).status == 0; }

  temp_dir dir_;
  std::string etcd_;
  std::uint16_t port_ = 0;
  child_process process_;
};

}  // namespace amb::test
