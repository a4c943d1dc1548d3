// SPDX-License-Identifier: MIT
// Unit tests for include/amb/registry_value.hpp: both value forms, errors, and formatting.
#include <amb/registry_value.hpp>

#include <doctest/doctest.h>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace registry_value_test {

using amb::parse_registry_value;

TEST_CASE("the seed's JSON value") {
  auto v = parse_registry_value(R"({"host":"10.0.0.5","port":49155})");
  REQUIRE(v);
  CHECK(v->address.host == "10.0.0.5");
  CHECK(v->address.port == 49155);
  CHECK(v->weight == 1);
  CHECK(v->extra.empty());
}

TEST_CASE("JSON port as a numeric string, weight, extra fields") {
  auto v = parse_registry_value(R"( {"host":"db1","port":"6379","weight":3,"zone":"b","tls":false,"n":1.5} )"
                                "\n");
  REQUIRE(v);
  CHECK(v->address == amb::host_port{"db1", 6379});
  CHECK(v->weight == 3);
  REQUIRE(v->extra.size() == 3);
  CHECK(v->extra[0] == std::pair<std::string, std::string>{"n", "1.5"});
  CHECK(v->extra[1] == std::pair<std::string, std::string>{"tls", "false"});
  CHECK(v->extra[2] == std::pair<std::string, std::string>{"zone", "b"});
  auto w = parse_registry_value(R"({"host":"db1","port":6379,"weight":"7"})");
  REQUIRE(w);
  CHECK(w->weight == 7);
}

TEST_CASE("JSON IPv6 host, with or without brackets") {
  auto v = parse_registry_value(R"({"host":"::1","port":6379})");
  REQUIRE(v);
  CHECK(v->address.host == "::1");
  CHECK(v->address.to_string() == "[::1]:6379");
  auto b = parse_registry_value(R"({"host":"[::1]","port":6379})");
  REQUIRE(b);
  CHECK(b->address.host == "::1");
}

TEST_CASE("plain host:port, IPv4, names and IPv6") {
  auto v = parse_registry_value("10.0.0.7:6379");
  REQUIRE(v);
  CHECK(v->address == amb::host_port{"10.0.0.7", 6379});
  CHECK(v->weight == 1);
  auto n = parse_registry_value("redis.example:1\n");
  REQUIRE(n);
  CHECK(n->address == amb::host_port{"redis.example", 1});
  auto six = parse_registry_value("[::1]:6379");
  REQUIRE(six);
  CHECK(six->address == amb::host_port{"::1", 6379});
}

TEST_CASE("bad values give one clear line") {
  CHECK(parse_registry_value("garbage").error ==
        R"(bad registry value "garbage": neither {"host":..,"port":..} nor HOST:PORT)");
  CHECK(parse_registry_value("").error == R"(bad registry value "": empty)");
  CHECK(parse_registry_value("redis:70000").error == R"(bad registry value: bad port "70000" in "redis:70000")");
  CHECK(parse_registry_value("::1:6379").error ==
        R"(bad registry value: bad address "::1:6379": put an IPv6 address in brackets, as [::1]:6379)");
  CHECK(parse_registry_value(R"({"host":"a","port":1)")
            .error.rfind(R"(bad registry value "{"host":"a","port":1": invalid JSON ()", 0) == 0);
  CHECK(parse_registry_value(R"({"port":1})").error == R"(bad registry value "{"port":1}": missing "host")");
  CHECK(parse_registry_value(R"({"host":"a"})").error == R"(bad registry value "{"host":"a"}": missing "port")");
  CHECK(parse_registry_value(R"({"host":"","port":1})").error ==
        R"(bad registry value "{"host":"","port":1}": "host" must be a non-empty string)");
  CHECK(parse_registry_value(R"({"host":5,"port":1})").error ==
        R"(bad registry value "{"host":5,"port":1}": "host" must be a non-empty string)");
  CHECK(parse_registry_value(R"({"host":"a","port":70000})").error ==
        R"(bad registry value "{"host":"a","port":70000}": bad port 70000 (expected 1..65535))");
  CHECK(parse_registry_value(R"({"host":"a","port":0})").error ==
        R"(bad registry value "{"host":"a","port":0}": bad port 0 (expected 1..65535))");
  CHECK(parse_registry_value(R"({"host":"a","port":"12a"})").error ==
        R"(bad registry value "{"host":"a","port":"12a"}": bad port "12a" (expected 1..65535))");
  CHECK(parse_registry_value(R"({"host":"a","port":63.5})").error ==
        R"(bad registry value "{"host":"a","port":63.5}": bad port 63.5 (expected 1..65535))");
  CHECK(
      parse_registry_value(R"({"host":"a","port":1,"weight":-2})").error ==
      R"(bad registry value "{"host":"a","port":1,"weight":-2}": bad weight -2 (expected an integer 0..1000000, 0 for draining))");
  CHECK(
      parse_registry_value(R"({"host":"a","port":1,"weight":"x"})").error ==
      R"(bad registry value "{"host":"a","port":1,"weight":"x"}": bad weight "x" (expected an integer 0..1000000, 0 for draining))");
  CHECK(
      parse_registry_value(R"({"host":"a","port":1,"weight":1000001})").error ==
      R"(bad registry value "{"host":"a","port":1,"weight":1000001}": bad weight 1000001 (expected an integer 0..1000000, 0 for draining))");
  CHECK(parse_registry_value("[1,2]").error ==
        R"(bad registry value "[1,2]": neither {"host":..,"port":..} nor HOST:PORT)");
  CHECK(parse_registry_value("[1]:2:3").error == R"(bad registry value: bad port "2:3" in "[1]:2:3")");
  CHECK(parse_registry_value(R"({"host":"a","port":1} x)").error ==
        R"(bad registry value "{"host":"a","port":1} x": invalid JSON (trailing characters after the object))");
}

TEST_CASE("draining: a JSON boolean, or weight 0") {
  auto d = parse_registry_value(R"({"host":"10.0.0.5","port":6379,"draining":true})");
  REQUIRE(d);
  CHECK(d->draining);
  CHECK(d->weight == 1);
  CHECK(d->extra.empty());  // understood, so not an extra field
  auto w3 = parse_registry_value(R"({"host":"10.0.0.5","port":6379,"weight":3,"draining":true})");
  REQUIRE(w3);
  CHECK(w3->draining);
  CHECK(w3->weight == 3);  // the share it gets back when it stops draining
  auto no = parse_registry_value(R"({"host":"10.0.0.5","port":6379,"draining":false})");
  REQUIRE(no);
  CHECK(!no->draining);
  CHECK(!parse_registry_value(R"({"host":"10.0.0.5","port":6379})")->draining);
  CHECK(!parse_registry_value("10.0.0.5:6379")->draining);
  auto zero = parse_registry_value(R"({"host":"10.0.0.5","port":6379,"weight":0})");
  REQUIRE(zero);
  CHECK(zero->draining);
  CHECK(zero->weight == 0);
  CHECK(parse_registry_value(R"({"host":"10.0.0.5","port":6379,"weight":"0"})")->draining);
  // weight 0 is no share at all: draining even when "draining" says false
  CHECK(parse_registry_value(R"({"host":"10.0.0.5","port":6379,"weight":0,"draining":false})")->draining);
}

TEST_CASE("bad draining values give one clear line") {
  CHECK(
      parse_registry_value(R"({"host":"a","port":1,"draining":"yes"})").error ==
      R"(bad registry value "{"host":"a","port":1,"draining":"yes"}": bad draining "yes" (expected true or false, without quotes))");
  CHECK(
      parse_registry_value(R"({"host":"a","port":1,"draining":"true"})").error ==
      R"(bad registry value "{"host":"a","port":1,"draining":"true"}": bad draining "true" (expected true or false, without quotes))");
  CHECK(parse_registry_value(R"({"host":"a","port":1,"draining":1})").error ==
        R"(bad registry value "{"host":"a","port":1,"draining":1}": bad draining 1 (expected true or false))");
  CHECK(parse_registry_value(R"({"host":"a","port":1,"draining":null})").error ==
        R"(bad registry value "{"host":"a","port":1,"draining":null}": bad draining null (expected true or false))");
  CHECK(
      parse_registry_value(R"({"host":"a","port":1,"draining":[true]})").error ==
      R"(bad registry value "{"host":"a","port":1,"draining":[true]}": bad draining [true] (expected true or false))");
}

TEST_CASE("a huge garbage value is cut short in the error") {
  std::string big(1000, 'x');
  auto e = parse_registry_value(big).error;
  CHECK(e.size() < 200);
  CHECK(e == "bad registry value \"" + std::string(80, 'x') +
                 "\u2026\" (1000 bytes): neither {\"host\":..,\"port\":..} nor HOST:PORT");
}

TEST_CASE("format the seed's JSON") {
  CHECK(amb::format_registry_json("10.0.0.5", 49155) == R"({"host":"10.0.0.5","port":49155})");
  CHECK(amb::format_registry_json("::1", 6379) == R"({"host":"::1","port":6379})");
  CHECK(amb::format_registry_json("h", 1, {{"weight", "3"}, {"zone", "eu-1"}, {"ratio", "-0.5e+3"}}) ==
        R"({"host":"h","port":1,"weight":3,"zone":"eu-1","ratio":-0.5e+3})");
  // Not numbers by JSON's grammar: leading zero, leading '+', bare dot, hex, empty.
  CHECK(amb::format_registry_json("h", 1, {{"a", "007"}, {"b", "+1"}, {"c", "1."}, {"d", "0x1"}, {"e", ""}}) ==
        R"({"host":"h","port":1,"a":"007","b":"+1","c":"1.","d":"0x1","e":""})");
  CHECK(amb::format_registry_json("h", 1, {{"q", "say \"hi\"\\\n\t\x01"}, {"k\"ey", "é"}}) ==
        "{\"host\":\"h\",\"port\":1,\"q\":\"say \\\"hi\\\"\\\\\\n\\t\\u0001\",\"k\\\"ey\":\"é\"}");
  // host/port cannot be overridden; a repeated key keeps its place and its last value.
  CHECK(amb::format_registry_json("h", 1, {{"host", "x"}, {"port", "2"}, {"a", "1"}, {"b", "2"}, {"a", "3"}}) ==
        R"({"host":"h","port":1,"a":3,"b":2})");
}

TEST_CASE("formatted values parse back to the same thing") {
  auto json = amb::format_registry_json("10.1.2.3", 6380, {{"weight", "5"}, {"note", "a \"b\" c"}});
  auto v = parse_registry_value(json);
  REQUIRE(v);
  CHECK(v->address == amb::host_port{"10.1.2.3", 6380});
  CHECK(v->weight == 5);
  REQUIRE(v->extra.size() == 1);
  CHECK(v->extra[0].second == "a \"b\" c");
  auto plain = amb::format_registry_hostport("::1", 6379);
  CHECK(plain == "[::1]:6379");
  auto p = parse_registry_value(plain);
  REQUIRE(p);
  CHECK(p->address == amb::host_port{"::1", 6379});
  CHECK(amb::format_registry_hostport("10.0.0.5", 49155) == "10.0.0.5:49155");
}

TEST_CASE("KEY=VALUE fields") {
  auto kv = amb::parse_key_value("zone=eu=1");
  REQUIRE(kv);
  CHECK(kv->first == "zone");
  CHECK(kv->second == "eu=1");
  auto empty = amb::parse_key_value("k=");
  REQUIRE(empty);
  CHECK(empty->second.empty());
  CHECK(amb::parse_key_value("novalue").error == "bad field \"novalue\": expected KEY=VALUE");
  CHECK(amb::parse_key_value("=v").error == "bad field \"=v\": expected KEY=VALUE");
}

// Found by fuzz/registry_value_fuzz.cpp: picojson throws std::overflow_error for a number beyond a
// double, so a value such as {"port":1e999} in etcd escaped the parser as an exception.
TEST_CASE("a number beyond a double is a bad value, not an exception") {
  CHECK(parse_registry_value(R"({"host":"10.0.0.5","port":1e999})").error ==
        R"(bad registry value "{"host":"10.0.0.5","port":1e999}": invalid JSON (number out of range))");
  CHECK(!parse_registry_value(R"({"host":"a","port":1,"weight":-1e400})"));
}

// 150,000 levels of {"a": overflowed the stack inside picojson (its nesting limit covers arrays only):
// a registry value must be refused with a one-line error, whatever its depth.
TEST_CASE("deeply nested JSON is refused, not a crash") {
  const std::size_t levels = 150000;
  std::string deep;
  for (std::size_t i = 0; i < levels; ++i) deep += "{\"a\":";
  deep += "1";
  deep.append(levels, '}');
  auto v = parse_registry_value(deep);
  REQUIRE(!v);
  CHECK(v.error.find("invalid JSON (nested deeper than 64 levels)") != std::string::npos);
  CHECK(v.error.find('\n') == std::string::npos);
  CHECK(v.error.size() < 300);
  auto arrays =
      parse_registry_value(R"({"host":"h","port":1,"x":)" + std::string(levels, '[') + std::string(levels, ']') + "}");
  CHECK(!arrays);
  // A value inside the bound still parses; brackets inside strings do not count.
  std::string ok = R"({"host":"h","port":1,"x":)";
  for (int i = 0; i < 63; ++i) ok += "{\"a\":";
  ok += "\"{{{{[[[[\"";
  ok.append(63, '}');
  ok += "}";
  CHECK(parse_registry_value(ok));
}

}  // namespace registry_value_test
