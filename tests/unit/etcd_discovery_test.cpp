// SPDX-License-Identifier: MIT
// Unit tests for include/amb/etcd_discovery.hpp: the order of sources and the errors naming them.
#include <amb/app/etcd_discovery.hpp>
#include <amb/app/etcd_settings.hpp>

#include <doctest/doctest.h>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace etcd_discovery_test {

using amb::find_etcd_endpoints;

TEST_CASE("--etcd wins over everything") {
  std::vector<std::string> env{"ETCDCTL_ENDPOINTS=http://10.0.0.1:2379", "ETCD_PORT_10000_TCP_ADDR=172.17.0.5",
                               "ETCD_PORT_10000_TCP_PORT=10000"};
  auto r = find_etcd_endpoints(std::string("http://127.0.0.1:4001,127.0.0.2:4002"), env);
  REQUIRE(r);
  REQUIRE(r->endpoints.size() == 2);
  CHECK(r->endpoints[0].to_string() == "http://127.0.0.1:4001");
  CHECK(r->endpoints[1].to_string() == "http://127.0.0.2:4002");
  CHECK(r->source == "etcd at http://127.0.0.1:4001,http://127.0.0.2:4002 (from --etcd)");
}

TEST_CASE("ETCDCTL_ENDPOINTS comes next") {
  std::vector<std::string> env{"PATH=/bin", "ETCD_PORT_10000_TCP_ADDR=172.17.0.5", "ETCD_PORT_10000_TCP_PORT=10000",
                               "ETCDCTL_ENDPOINTS=http://10.0.0.1:2379,http://10.0.0.2:2379"};
  auto r = find_etcd_endpoints(std::nullopt, env);
  REQUIRE(r);
  REQUIRE(r->endpoints.size() == 2);
  CHECK(r->source == "etcd at http://10.0.0.1:2379,http://10.0.0.2:2379 (from ETCDCTL_ENDPOINTS)");
}

TEST_CASE("an empty ETCDCTL_ENDPOINTS counts as unset") {
  auto r = find_etcd_endpoints(std::nullopt, {"ETCDCTL_ENDPOINTS="});
  REQUIRE(r);
  CHECK(r->source == "etcd at http://127.0.0.1:2379 (from default)");
}

TEST_CASE("Docker links of alias etcd come third") {
  std::vector<std::string> env{"ETCD_PORT=tcp://172.17.0.5:10000", "ETCD_PORT_10000_TCP=tcp://172.17.0.5:10000",
                               "ETCD_PORT_10000_TCP_ADDR=172.17.0.5", "ETCD_PORT_10000_TCP_PORT=10000",
                               "ETCD_PORT_10000_TCP_PROTO=tcp"};
  auto r = find_etcd_endpoints(std::nullopt, env);
  REQUIRE(r);
  REQUIRE(r->endpoints.size() == 1);
  CHECK(r->endpoints[0].to_string() == "http://172.17.0.5:10000");
  CHECK(r->source == "etcd at http://172.17.0.5:10000 (from Docker link variables ETCD_PORT_*_TCP_ADDR/_PORT)");
}

TEST_CASE("the default is http://127.0.0.1:2379") {
  auto r = find_etcd_endpoints(std::nullopt,
                               {"HOME=/root", "REDIS_PORT_6379_TCP_ADDR=10.0.0.1", "REDIS_PORT_6379_TCP_PORT=6379"});
  REQUIRE(r);
  REQUIRE(r->endpoints.size() == 1);
  CHECK(r->endpoints[0].to_string() == "http://127.0.0.1:2379");
  CHECK(r->source == "etcd at http://127.0.0.1:2379 (from default)");
}

TEST_CASE("bad values name their source and never fall through") {
  CHECK(find_etcd_endpoints(std::string("http://a:x"), {}).error ==
        "bad port \"x\" in \"a:x\" in \"http://a:x\" in --etcd");
  CHECK(find_etcd_endpoints(std::string(""), {}).error == "bad endpoint list \"\": empty item in --etcd");
  CHECK(find_etcd_endpoints(std::string("ftp://a:2379"), {}).error ==
        "unsupported scheme \"ftp\" in \"ftp://a:2379\" (use http://, https://, tcp:// or unix://) in --etcd");
  CHECK(find_etcd_endpoints(std::nullopt, {"ETCDCTL_ENDPOINTS=http://a:1,,http://b:2"}).error ==
        "bad endpoint list \"http://a:1,,http://b:2\": empty item in ETCDCTL_ENDPOINTS");
  CHECK(
      find_etcd_endpoints(std::nullopt, {"ETCD_PORT_10000_TCP_ADDR=172.17.0.5", "ETCD_PORT_10000_TCP_PORT=x"}).error ==
      "bad port \"x\" in ETCD_PORT_10000_TCP_PORT");
}

TEST_CASE("--etcd etcd://HOST:PORT/PREFIX, registrator's form: one endpoint and the prefix") {
  const std::vector<std::string> env{"ETCDCTL_ENDPOINTS=http://10.0.0.1:2379"};
  auto r = find_etcd_endpoints(std::string("etcd://10.0.0.2:2379/services"), env);
  REQUIRE(r);
  REQUIRE(r->endpoints.size() == 1);
  CHECK(r->endpoints[0].to_string() == "http://10.0.0.2:2379");
  CHECK(r->prefix == "/services");
  CHECK(r->source == "etcd at http://10.0.0.2:2379 (from --etcd etcd://10.0.0.2:2379/services)");
  CHECK(find_etcd_endpoints(std::string("etcd://10.0.0.2:2379/a/b/"), env)->prefix == "/a/b");
  CHECK(!find_etcd_endpoints(std::string("etcd://10.0.0.2:2379/"), env)->prefix);
  CHECK(!find_etcd_endpoints(std::string("etcd://[::1]:2379"), env)->prefix);
  CHECK(!find_etcd_endpoints(std::string("http://10.0.0.2:2379"), env)->prefix);
  CHECK(find_etcd_endpoints(std::string("etcd://10.0.0.2/services"), env).error ==
        "bad address \"10.0.0.2\": expected HOST:PORT in \"etcd://10.0.0.2/services\" in --etcd");
  CHECK(find_etcd_endpoints(std::string("etcd://10.0.0.2:2379//x"), env).error ==
        "bad etcd address \"etcd://10.0.0.2:2379//x\": empty element in the prefix in --etcd");
  CHECK(find_etcd_endpoints(std::string("etcd://a:1,etcd://b:2"), env).error ==
        "bad etcd address \"etcd://a:1,etcd://b:2\": etcd://HOST:PORT/PREFIX names one endpoint (for several, give "
        "http:// URLs and --prefix) in --etcd");
  // Only --etcd takes it (etcdctl's variable does not).
  CHECK(!find_etcd_endpoints(std::nullopt, {"ETCDCTL_ENDPOINTS=etcd://10.0.0.2:2379/services"}));
}

TEST_CASE("the registry prefix: --prefix, else etcd://'s path, else /services; two different ones are refused") {
  amb::etcd_settings plain, with_path;
  with_path.where.prefix = "/skydns";
  CHECK(*amb::choose_registry_prefix(std::nullopt, plain) == "/services");
  CHECK(*amb::choose_registry_prefix(std::string("/reg/"), plain) == "/reg");
  CHECK(*amb::choose_registry_prefix(std::nullopt, with_path) == "/skydns");
  CHECK(*amb::choose_registry_prefix(std::string("/skydns/"), with_path) == "/skydns");
  CHECK(amb::choose_registry_prefix(std::string("/services"), with_path).error ==
        "--prefix \"/services\" disagrees with the prefix \"/skydns\" of --etcd etcd://HOST:PORT/PREFIX: give the "
        "prefix once");
  CHECK(amb::choose_registry_prefix(std::string("services"), plain).error ==
        "--prefix: \"services\" must start with '/', as /services");
  CHECK(amb::choose_registry_prefix(std::string("/"), plain).error ==
        "--prefix: \"/\" must start with '/', as /services");
}

}  // namespace etcd_discovery_test
