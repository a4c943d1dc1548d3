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
    auto out = base64_decode(encoded);
    REQUIRE(out);
    CHECK(*out == plain);
  }
}

TEST_CASE("etcd keys from docs/protocols.md §1.4") {
  CHECK(base64_encode("/services/redis/") == "L3NlcnZpY2VzL3JlZGlzLw==");
  CHECK(base64_encode("/services/redis0") == "L3NlcnZpY2VzL3JlZGlzMA==");
  CHECK(base64_encode(std::string(1, '\0')) == "AA==");
  auto out = base64_decode("MTAuMC4wLjc6NjM3OQ==");
  REQUIRE(out);
  CHECK(*out == "10.0.0.7:6379");
}

TEST_CASE("every byte value round-trips, at every length") {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (std::size_t len = 0; len <= all.size(); ++len) {
    std::string in = all.substr(all.size() - len);
    auto out = base64_decode(base64_encode(in));
    REQUIRE(out);
    CHECK(*out == in);
  }
  CHECK(base64_encode("\xff\xfe\xfd") == "//79");
  CHECK(base64_encode("\xfb\xff") == "+/8=");
}

TEST_CASE("the decoder is strict") {
  CHECK_FALSE(base64_decode("Zg="));   // length not a multiple of 4
  CHECK_FALSE(base64_decode("Zg"));    // unpadded
  CHECK_FALSE(base64_decode("Z==="));  // too much padding
  CHECK_FALSE(base64_decode("===="));
  CHECK_FALSE(base64_decode("Zg==Zg=="));  // padding in the middle
  CHECK_FALSE(base64_decode("Zm9v\n"));    // whitespace
  CHECK_FALSE(base64_decode("Zm9-"));      // URL-safe alphabet is not etcd's
  CHECK_FALSE(base64_decode("Zm9_"));
  CHECK_FALSE(base64_decode("Zh=="));  // non-zero bits in the padding
  CHECK_FALSE(base64_decode("Zm9="));
  CHECK_FALSE(base64_decode(std::string("Zm\0v", 4)));
  auto out = base64_decode("Zm8=");
  REQUIRE(out);
  CHECK(*out == "fo");
}

TEST_CASE("a refused text is a parse result naming it, as every text parser (README, Errors)") {
  CHECK(base64_decode("Zg=").error == "bad base64 \"Zg=\": length not a multiple of 4");
  CHECK(base64_decode("Zm9-").error == "bad base64 \"Zm9-\": unexpected character");
  CHECK(base64_decode("Zh==").error == "bad base64 \"Zh==\": non-zero bits in the padding");
  CHECK(base64_decode("Zm9v\n").error == "bad base64 \"Zm9v\\n\": length not a multiple of 4");
  CHECK(base64_decode("Zm8=").error.empty());
}

}  // namespace base64_test
