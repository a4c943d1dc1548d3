// SPDX-License-Identifier: MIT
// The PROXY protocol header, byte for byte against haproxy's specification: v1 text, v2 binary,
// IPv4, IPv6 and mixed families, and the flag's values.
#include <amb/proxy_protocol.hpp>

#include <doctest/doctest.h>

#include <string>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace proxy_protocol_test {

using asio::ip::make_address;
using endpoint = asio::ip::tcp::endpoint;

TEST_CASE("v1: one line naming the family, both addresses and both ports (the specification's example)") {
  CHECK(amb::proxy_protocol_header(amb::proxy_protocol::v1, endpoint(make_address("192.168.0.1"), 56324),
                                   endpoint(make_address("192.168.0.11"), 443)) ==
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
  CHECK(amb::proxy_protocol_header(amb::proxy_protocol::v1, endpoint(make_address("::1"), 40000),
                                   endpoint(make_address("::1"), 6379)) == "PROXY TCP6 ::1 ::1 40000 6379\r\n");
}

TEST_CASE("both addresses share one family: mapped IPv4 is given as IPv4, a lone IPv4 as mapped IPv6") {
  // A client of a dual-stack listener ([::]) arrives as ::ffff:10.0.0.7.
  CHECK(amb::proxy_protocol_header(amb::proxy_protocol::v1, endpoint(make_address("::ffff:10.0.0.7"), 1000),
                                   endpoint(make_address("::ffff:10.0.0.1"), 80)) ==
        "PROXY TCP4 10.0.0.7 10.0.0.1 1000 80\r\n");
  CHECK(amb::proxy_protocol_header(amb::proxy_protocol::v1, endpoint(make_address("10.0.0.7"), 1000),
                                   endpoint(make_address("fd00::1"), 80)) ==
        "PROXY TCP6 ::ffff:10.0.0.7 fd00::1 1000 80\r\n");
}

TEST_CASE("v1: the longest line fits the specification's 107 bytes") {
  const auto longest = amb::proxy_protocol_header(
      amb::proxy_protocol::v1, endpoint(make_address("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"), 65535),
      endpoint(make_address("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"), 65535));
  CHECK(longest.size() <= 107);
  CHECK(longest.substr(longest.size() - 2) == "\r\n");
}

TEST_CASE("v2: signature, version and command, family, length, then addresses and ports in network order") {
  const std::string signature("\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A", 12);
  const auto v4 = amb::proxy_protocol_header(amb::proxy_protocol::v2, endpoint(make_address("192.168.0.1"), 56324),
                                             endpoint(make_address("192.168.0.11"), 443));
  const std::string want4 = signature + std::string("\x21\x11\x00\x0C", 4) + std::string("\xC0\xA8\x00\x01", 4) +
                            std::string("\xC0\xA8\x00\x0B", 4) + std::string("\xDC\x04\x01\xBB", 4);
  CHECK(v4 == want4);
  const auto v6 = amb::proxy_protocol_header(amb::proxy_protocol::v2, endpoint(make_address("2001:db8::7"), 258),
                                             endpoint(make_address("::1"), 6379));
  REQUIRE(v6.size() == 16 + 36);
  CHECK(v6.substr(0, 16) == signature + std::string("\x21\x21\x00\x24", 4));
  const std::string src("\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x07", 16);
  const std::string dst("\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01", 16);
  CHECK(v6.substr(16, 16) == src);
  CHECK(v6.substr(32, 16) == dst);
  CHECK(v6.substr(48) == std::string("\x01\x02\x18\xEB", 4));  // 258, 6379
}

TEST_CASE("none writes nothing; the flag takes v1 or v2 and names anything else") {
  CHECK(amb::proxy_protocol_header(amb::proxy_protocol::none, endpoint(make_address("10.0.0.7"), 1),
                                   endpoint(make_address("10.0.0.1"), 2))
            .empty());
  CHECK(*amb::parse_proxy_protocol("v1") == amb::proxy_protocol::v1);
  CHECK(*amb::parse_proxy_protocol("v2") == amb::proxy_protocol::v2);
  CHECK(amb::parse_proxy_protocol("v3").error == "bad PROXY protocol version \"v3\" (use v1 or v2)");
  CHECK(amb::parse_proxy_protocol("").error == "bad PROXY protocol version \"\" (use v1 or v2)");
}

}  // namespace proxy_protocol_test
