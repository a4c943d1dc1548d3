// SPDX-License-Identifier: MIT
// Unit tests for include/amb/detail/base64.hpp.
#include <amb/detail/base64.hpp>

#include <doctest/doctest.h>

#include <string>

// Everything in a namespace of its own: the test build compiles a family of test files as one unit.
namespace base64_test {

using amb::detail::base64_decode;
using amb::detail::base64_encode;

TEST_CASE("RFC 4648 test vectors both ways") {
  const std::pair<std::string, std::string> vectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (auto& [plain, encoded] : vectors) {
    CHECK(base64_encode(plain) == encoded);
    std::string out = "junk";
    CHECK(base64_decode(encoded, out));
    CHECK(out == plain);
  }
}

TEST_CASE("etcd keys from docs/protocols.md §1.4") {
  CHECK(base64_encode("/services/redis/") == "L3NlcnZpY2VzL3JlZGlzLw==");
  CHECK(base64_encode("/services/redis0") == "L3NlcnZpY2VzL3JlZGlzMA==");
  CHECK(base64_encode(std::string(1, '\0')) == "AA==");
  std::string out;
  CHECK(base64_decode("MTAuMC4wLjc6NjM3OQ==", out));
  CHECK(out == "10.0.0.7:6379");
}

TEST_CASE("every byte value round-trips, at every length") {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (std::size_t len = 0; len <= all.size(); ++len) {
    std::string in = all.substr(all.size() - len);
    std::string out;
    REQUIRE(base64_decode(base64_encode(in), out));
    CHECK(out == in);
  }
  CHECK(base64_encode("\xff\xfe\xfd") == "//79");
  CHECK(base64_encode("\xfb\xff") == "+/8=");
}

TEST_CASE("the decoder is strict") {
  std::string out;
  CHECK_FALSE(base64_decode("Zg=", out));   // length not a multiple of 4
  CHECK_FALSE(base64_decode("Zg", out));    // unpadded
  CHECK_FALSE(base64_decode("Z===", out));  // too much padding
  CHECK_FALSE(base64_decode("====", out));
  CHECK_FALSE(base64_decode("Zg==Zg==", out));  // padding in the middle
  CHECK_FALSE(base64_decode("Zm9v\n", out));    // whitespace
  CHECK_FALSE(base64_decode("Zm9-", out));      // URL-safe alphabet is not etcd's
  CHECK_FALSE(base64_decode("Zm9_", out));
  CHECK_FALSE(base64_decode("Zh==", out));  // non-zero bits in the padding
  CHECK_FALSE(base64_decode("Zm9=", out));
  CHECK_FALSE(base64_decode(std::string("Zm\0v", 4), out));
  CHECK(base64_decode("Zm8=", out));
  CHECK(out == "fo");
}

}  // namespace base64_test
