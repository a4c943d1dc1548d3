// SPDX-License-Identifier: MIT
// find_etcd_security: etcdctl-style TLS files and credentials from flags and environment; hide_etcd_password.
#include <amb/app/etcd_security.hpp>
#include <amb/tls_options.hpp>

#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace etcd_security_test {

using amb::etcd_security_flags;
using amb::find_etcd_security;

namespace {
// A file holding `text`, removed at the end of the test.
struct temp_file {
  explicit temp_file(const std::string& text) {
    path =
        (std::filesystem::temp_directory_path() / ("amb-sec-" + std::to_string(::getpid()) + "-" + std::to_string(++n)))
            .string();
    std::ofstream(path, std::ios::binary) << text;
  }
  ~temp_file() { std::remove(path.c_str()); }
  std::string path;
  static inline int n = 0;
};
}  // namespace

TEST_CASE("nothing given: no TLS files, no user") {
  auto r = find_etcd_security({}, {"HOME=/root"});
  REQUIRE(r);
  CHECK(!r->tls.any());
  CHECK(r->user.empty());
  CHECK(r->description.empty());
}

TEST_CASE("flags win over etcdctl's variables") {
  etcd_security_flags f;
  f.cacert = "/f/ca.pem";
  auto r = find_etcd_security(f, {"ETCDCTL_CACERT=/e/ca.pem", "ETCDCTL_CERT=/e/c.pem", "ETCDCTL_KEY=/e/k.pem"});
  REQUIRE(r);
  CHECK(r->tls.ca_file == "/f/ca.pem");
  CHECK(r->tls.cert_file == "/e/c.pem");
  CHECK(r->tls.key_file == "/e/k.pem");
  CHECK(r->description ==
        "TLS CA /f/ca.pem (from --etcd-cacert), client certificate /e/c.pem (from ETCDCTL_CERT), key /e/k.pem (from "
        "ETCDCTL_KEY)");
  f.user = "root:s3cret";
  r = find_etcd_security(f, {"ETCDCTL_USER=other:x", "ETCDCTL_PASSWORD=y"});
  REQUIRE(r);
  CHECK(r->user == "root");
  CHECK(r->password == "s3cret");
  CHECK(r->description.find("s3cret") == std::string::npos);
  CHECK(r->description.rfind("user root (from --etcd-user, password from --etcd-user), TLS CA", 0) == 0);
}

TEST_CASE("user and password: USER:PASSWORD, password file, ETCDCTL_PASSWORD") {
  auto r = find_etcd_security({}, {"ETCDCTL_USER=root:a:b"});  // split at the first ':', as etcdctl
  REQUIRE(r);
  CHECK(r->user == "root");
  CHECK(r->password == "a:b");
  r = find_etcd_security({}, {"ETCDCTL_USER=root", "ETCDCTL_PASSWORD=pw"});
  REQUIRE(r);
  CHECK(r->password == "pw");
  CHECK(r->description == "user root (from ETCDCTL_USER, password from ETCDCTL_PASSWORD)");

  temp_file file("file-pw\r\n");
  etcd_security_flags f;
  f.user = "root";
  f.password_file = file.path;
  r = find_etcd_security(f, {"ETCDCTL_PASSWORD=env-pw"});  // the file wins over the variable
  REQUIRE(r);
  CHECK(r->password == "file-pw");
  CHECK(r->description == "user root (from --etcd-user, password from --etcd-password-file)");
  temp_file kept("  two words \n\n");  // only one newline is the file's end
  f.password_file = kept.path;
  r = find_etcd_security(f, {});
  REQUIRE(r);
  CHECK(r->password == "  two words \n");
}

TEST_CASE("mistakes: one line naming the source, never the password") {
  etcd_security_flags f;
  f.user = "root";
  CHECK(find_etcd_security(f, {}).error ==
        "--etcd-user root: no password (give USER:PASSWORD, --etcd-password-file FILE or ETCDCTL_PASSWORD)");
  f.user = ":pw";
  CHECK(find_etcd_security(f, {}).error == "--etcd-user: empty user name (expected USER or USER:PASSWORD)");
  f.user = "root:pw";
  f.password_file = "/x";
  CHECK(find_etcd_security(f, {}).error ==
        "--etcd-password-file and a password in --etcd-user USER:PASSWORD: give only one");
  f.user.reset();
  CHECK(find_etcd_security(f, {}).error == "--etcd-password-file needs --etcd-user USER (or ETCDCTL_USER)");
  f.user = "root";
  f.password_file = "/nonexistent/amb-pw";
  CHECK(find_etcd_security(f, {}).error == "--etcd-password-file /nonexistent/amb-pw: No such file or directory");
  temp_file empty("\n");
  f.password_file = empty.path;
  CHECK(find_etcd_security(f, {}).error ==
        "--etcd-user root: no password (give USER:PASSWORD, --etcd-password-file FILE or ETCDCTL_PASSWORD)");

  etcd_security_flags t;
  t.cert = "/c.pem";
  CHECK(find_etcd_security(t, {}).error == "a client certificate needs its key: give --etcd-key FILE (or ETCDCTL_KEY)");
  t.cert.reset();
  CHECK(find_etcd_security(t, {"ETCDCTL_KEY=/k.pem"}).error ==
        "a client key needs its certificate: give --etcd-cert FILE (or ETCDCTL_CERT)");
  t.cacert = "";
  CHECK(find_etcd_security(t, {}).error == "--etcd-cacert: empty file name");
}

TEST_CASE("hide_etcd_password overwrites the password in argv, both spellings") {
  char a0[] = "prog", a1[] = "--etcd-user", a2[] = "root:pw1", a3[] = "--etcd-user=u:pw2", a4[] = "--",
       a5[] = "--etcd-user=v:keep";
  char* argv[] = {a0, a1, a2, a3, a4, a5, nullptr};
  amb::hide_etcd_password(6, argv);
  CHECK(std::string(a2) == "root:xxx");
  CHECK(std::string(a3) == "--etcd-user=u:xxx");
  CHECK(std::string(a5) == "--etcd-user=v:keep");  // after "--" it is no option
}

TEST_CASE("tls_unsupported_error names the first https endpoint, only in a build without TLS") {
  auto list = amb::parse_endpoint_list("http://a:1,https://b:2");
  REQUIRE(list);
  CHECK(amb::any_tls(*list));
  if (amb::tls_available)
    CHECK(amb::tls_unsupported_error(*list).empty());
  else
    CHECK(amb::tls_unsupported_error(*list) ==
          "https://b:2: this build has no TLS support (configure with -DAMB_TLS=ON)");
  CHECK(amb::tls_unsupported_error({(*list)[0]}).empty());
}

}  // namespace etcd_security_test
