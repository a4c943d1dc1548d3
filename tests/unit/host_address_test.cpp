// SPDX-License-Identifier: MIT
// Choosing the host IP to register: binding, --ip, HOST_IP, default route.
#include <amb/host_address.hpp>
#include <amb/app/host_ip.hpp>

#include <doctest/doctest.h>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace host_address_test {

using namespace amb;

namespace {
std::optional<default_route_address_result> route() { return default_route_address_result{"192.0.2.2", "eth0"}; }
std::optional<default_route_address_result> no_route() { return std::nullopt; }
}  // namespace

TEST_CASE("any addresses") {
  CHECK(is_any_address(""));
  CHECK(is_any_address("0.0.0.0"));
  CHECK(is_any_address("::"));
  CHECK(!is_any_address("127.0.0.1"));
  CHECK(!is_any_address("::1"));
}

TEST_CASE("default route from /proc/net/route text") {
  const char* text =
      "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
      "cni-podman0\t0000580A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
      "wlan0\t00000000\t010200C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n"
      "eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
      "down0\t00000000\t010200C0\t0002\t0\t0\t0\t00000000\t0\t0\t0\n";
  CHECK(default_route_interface(text) == "eth0");  // lowest metric among routes that are up
  CHECK(!default_route_interface("Iface\tDestination\n"));
  CHECK(!default_route_interface(""));
}

TEST_CASE("the real default route gives a numeric address when there is one") {
  if (auto d = default_route_address()) {
    CHECK(is_numeric_ip(d->address));
    CHECK(!d->iface.empty());
  }
}

TEST_CASE("policy: --ip, then HOST_IP, then default route") {
  auto flag = choose_host_ip_policy(std::string("10.0.0.5"), {"HOST_IP=10.0.0.6"}, route);
  REQUIRE(flag);
  CHECK(flag->address == "10.0.0.5");
  CHECK(flag->source == "--ip");
  auto env = choose_host_ip_policy(std::nullopt, {"A=b", "HOST_IP=10.0.0.6"}, route);
  CHECK(env->address == "10.0.0.6");
  CHECK(env->source == "HOST_IP");
  auto def = choose_host_ip_policy(std::nullopt, {"HOST_IP="}, route);
  CHECK(def->address == "192.0.2.2");
  CHECK(def->source == "the address of eth0, the interface of the default route");
  auto none = choose_host_ip_policy(std::nullopt, {}, no_route);
  REQUIRE(none);
  CHECK(none->address == "");
  CHECK(choose_host_ip_policy(std::string("::1"), {}, no_route)->address == "::1");
}

TEST_CASE("policy: names and garbage are refused with their source") {
  CHECK(choose_host_ip_policy(std::string("myhost"), {}, route).error ==
        "bad --ip \"myhost\": expected a numeric IPv4 or IPv6 address");
  CHECK(choose_host_ip_policy(std::nullopt, {"HOST_IP=1.2.3"}, route).error ==
        "bad HOST_IP \"1.2.3\": expected a numeric IPv4 or IPv6 address");
}

TEST_CASE("registered address: the binding's own IP unless it is any") {
  host_ip_policy p{"192.0.2.2", "--ip"};
  CHECK(registered_host_ip("127.0.0.1", p) == "127.0.0.1");
  CHECK(registered_host_ip("", p) == "192.0.2.2");
  CHECK(registered_host_ip("0.0.0.0", p) == "192.0.2.2");
  CHECK(registered_host_ip("::", p) == "192.0.2.2");
  CHECK(!registered_host_ip("", host_ip_policy{}));
}

TEST_CASE("loopback addresses") {
  CHECK(is_loopback_address("127.0.0.1"));
  CHECK(is_loopback_address("127.1.2.3"));
  CHECK(is_loopback_address("::1"));
  CHECK(!is_loopback_address("10.0.0.1"));
  CHECK(!is_loopback_address(""));
}

}  // namespace host_address_test
