// SPDX-License-Identifier: MIT
// Unit tests for include/amb/address.hpp and include/amb/docker_links.hpp.
#include <amb/address.hpp>
#include <amb/app/docker_links.hpp>

#include <doctest/doctest.h>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace address_test {

TEST_CASE("host:port forms") {
  auto a = amb::parse_host_port("127.0.0.1:6379");
  REQUIRE(a);
  CHECK(a->host == "127.0.0.1");
  CHECK(a->port == 6379);
  auto v6 = amb::parse_host_port("[::1]:6379");
  REQUIRE(v6);
  CHECK(v6->host == "::1");
  CHECK(v6->to_string() == "[::1]:6379");
  auto name = amb::parse_host_port("redis:1");
  REQUIRE(name);
  CHECK(name->to_string() == "redis:1");
}

TEST_CASE("bad host:port gives one line naming the bad part") {
  CHECK(amb::parse_host_port("redis:70000").error == "bad port \"70000\" in \"redis:70000\"");
  CHECK(amb::parse_host_port("redis:abc").error == "bad port \"abc\" in \"redis:abc\"");
  CHECK(amb::parse_host_port("redis:0").error == "bad port \"0\" in \"redis:0\"");
  CHECK(amb::parse_host_port("redis:").error == "bad port \"\" in \"redis:\"");
  CHECK(amb::parse_host_port("redis").error == "bad address \"redis\": expected HOST:PORT");
  CHECK(amb::parse_host_port(":6379").error == "bad address \":6379\": empty host");
  CHECK(amb::parse_host_port("::1:6379").error ==
        "bad address \"::1:6379\": put an IPv6 address in brackets, as [::1]:6379");
  CHECK(amb::parse_host_port("[::1:6379").error == "bad address \"[::1:6379\": missing ']'");
  CHECK(amb::parse_host_port("[::1]6379").error == "bad address \"[::1]6379\": expected [ADDRESS]:PORT");
  CHECK(amb::parse_host_port("redis:+1").error == "bad port \"+1\" in \"redis:+1\"");
  CHECK(!amb::parse_host_port("redis:-1"));
}

TEST_CASE("endpoints") {
  auto h = amb::parse_endpoint("http://127.0.0.1:2379");
  REQUIRE(h);
  CHECK(!h->is_unix());
  CHECK(h->to_string() == "http://127.0.0.1:2379");
  CHECK(h->host_header() == "127.0.0.1:2379");
  auto t = amb::parse_endpoint("tcp://10.0.0.1:2375/");
  REQUIRE(t);
  CHECK(t->tcp.port == 2375);
  auto bare = amb::parse_endpoint("localhost:2379");
  REQUIRE(bare);
  CHECK(bare->to_string() == "http://localhost:2379");
  auto u = amb::parse_endpoint("unix:///var/run/docker.sock");
  REQUIRE(u);
  CHECK(u->is_unix());
  CHECK(u->unix_path == "/var/run/docker.sock");
  CHECK(u->host_header() == "localhost");
  auto tls = amb::parse_endpoint("https://127.0.0.1:2379/");
  REQUIRE(tls);
  CHECK(tls->tls);
  CHECK(tls->to_string() == "https://127.0.0.1:2379");
  CHECK(tls->host_header() == "127.0.0.1:2379");
  CHECK(!h->tls);
  CHECK(amb::parse_endpoint("ftp://a:1").error ==
        "unsupported scheme \"ftp\" in \"ftp://a:1\" (use http://, https://, tcp:// or unix://)");
  CHECK(amb::parse_endpoint("unix://relative").error ==
        "bad address \"unix://relative\": expected unix:///absolute/path");
  CHECK(amb::parse_endpoint("http://a:99999").error == "bad port \"99999\" in \"a:99999\" in \"http://a:99999\"");
  CHECK(amb::parse_endpoint("http://a:1/v3").error == "bad address \"http://a:1/v3\": unexpected path");
}

TEST_CASE("endpoint lists") {
  auto l = amb::parse_endpoint_list("http://a:2379,http://b:2379");
  REQUIRE(l);
  REQUIRE(l->size() == 2);
  CHECK((*l)[1].to_string() == "http://b:2379");
  CHECK(amb::parse_endpoint_list("http://a:2379,,http://b:2379").error ==
        "bad endpoint list \"http://a:2379,,http://b:2379\": empty item");
  CHECK(!amb::parse_endpoint_list(""));
}

TEST_CASE("Docker-links variables") {
  std::vector<std::string> env{"PATH=/bin",
                               "ETCD_PORT=tcp://172.17.0.5:10000",
                               "ETCD_PORT_10000_TCP=tcp://172.17.0.5:10000",
                               "ETCD_PORT_10000_TCP_ADDR=172.17.0.5",
                               "ETCD_PORT_10000_TCP_PORT=10000",
                               "ETCD_PORT_10000_TCP_PROTO=tcp",
                               "ETCD_PORT_4001_UDP_ADDR=172.17.0.5",
                               "ETCD_PORT_4001_UDP_PORT=4001"};
  auto hp = amb::link_address("etcd", env);
  REQUIRE(hp);
  REQUIRE(*hp);
  CHECK((*hp)->to_string() == "172.17.0.5:10000");
  auto none = amb::link_address("redis", env);  // no variables: no address, and no error
  REQUIRE(none);
  CHECK(!*none);

  SUBCASE("lowest TCP port wins, as Docker's <ALIAS>_PORT") {
    env.push_back("ETCD_PORT_2379_TCP_ADDR=172.17.0.6");
    env.push_back("ETCD_PORT_2379_TCP_PORT=2379");
    CHECK((*amb::link_address("etcd", env))->to_string() == "172.17.0.6:2379");
  }
  SUBCASE("alias with '-' becomes '_'") {
    std::vector<std::string> e{"ETCD_AMB_PORT_10000_TCP_ADDR=10.0.0.1", "ETCD_AMB_PORT_10000_TCP_PORT=10000"};
    CHECK((*amb::link_address("etcd-amb", e))->to_string() == "10.0.0.1:10000");
  }
  SUBCASE("a bad port is reported, not used") {
    std::vector<std::string> e{"ETCD_PORT_10000_TCP_ADDR=10.0.0.1", "ETCD_PORT_10000_TCP_PORT=x"};
    auto bad = amb::link_address("etcd", e);
    CHECK(!bad);
    CHECK(bad.error == "bad port \"x\" in ETCD_PORT_10000_TCP_PORT");
  }
}

// Found by fuzz/address_fuzz.cpp: a host with a stray bracket was accepted and printed back as
// "[:400", which does not parse.
TEST_CASE("a stray bracket in the host is refused") {
  CHECK(amb::parse_host_port("[[]:400").error == "bad address \"[[]:400\": unexpected '[' or ']' in host");
  CHECK(amb::parse_host_port("a]:80").error == "bad address \"a]:80\": unexpected '[' or ']' in host");
  CHECK(amb::parse_host_port("a[b:80").error == "bad address \"a[b:80\": unexpected '[' or ']' in host");
  CHECK(amb::parse_host_port("[::1]:80")->to_string() == "[::1]:80");
}

// Found by fuzz/docker_links_fuzz.cpp: an alias holding '=' matched the start of "NAME=value", and the
// name was cut past its end (an out-of-bounds read).
TEST_CASE("Docker-links: an alias with '=' matches no variable") {
  std::vector<std::string> env{"MYDB_PORT_5432_TCP_PORT=5432_PORT_DDR=10", "MYDB_PORT_5432_TCP_ADDR=10.0.0.9"};
  auto none = amb::link_address("myDB_PORT_5432_TCP_PORT=5432", env);
  REQUIRE(none);  // no error either
  CHECK(!*none);
  std::vector<std::string> good{"MYDB_PORT_5432_TCP_ADDR=10.0.0.9", "MYDB_PORT_5432_TCP_PORT=5432"};
  CHECK(!*amb::link_address("mydb=", good));
  auto hp = amb::link_address("mydb", good);
  REQUIRE(hp);
  REQUIRE(*hp);
  CHECK((*hp)->to_string() == "10.0.0.9:5432");
}

TEST_CASE("parse_port: a parse result, as every text parser (README, Errors)") {
  auto p = amb::parse_port("6379");
  REQUIRE(p);
  CHECK(*p == 6379);
  CHECK(p.error.empty());
  for (const char* bad : {"", "0", "70000", "12a", "-1", " 80"}) {
    auto r = amb::parse_port(bad);
    CHECK_FALSE(r);
    CHECK(r.error == "bad port \"" + std::string(bad) + "\": expected 1..65535");
  }
  CHECK(amb::parse_host_port("redis:70000").error == "bad port \"70000\" in \"redis:70000\"");
}

}  // namespace address_test
