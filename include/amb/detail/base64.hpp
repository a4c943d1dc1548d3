// SPDX-License-Identifier: MIT
// Standard base64 (RFC 4648, '+' '/' alphabet, '=' padding): etcd's bytes fields on the JSON gateway.
#pragma once

#include "amb/log.hpp"
#include "amb/parsed.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace amb::detail {

/// Encodes arbitrary bytes as padded standard base64.
inline std::string base64_encode(std::string_view bytes) {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    std::uint32_t n = (std::uint32_t(std::uint8_t(bytes[i])) << 16) | (std::uint32_t(std::uint8_t(bytes[i + 1])) << 8) |
                      std::uint32_t(std::uint8_t(bytes[i + 2]));
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += alphabet[(n >> 6) & 63];
    out += alphabet[n & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    std::uint32_t n = std::uint32_t(std::uint8_t(bytes[i])) << 16;
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += "==";
  } else if (rest == 2) {
    std::uint32_t n = (std::uint32_t(std::uint8_t(bytes[i])) << 16) | (std::uint32_t(std::uint8_t(bytes[i + 1])) << 8);
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += alphabet[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

/// Decodes padded standard base64. Strict: an error for a length that is not a multiple of 4, a
/// character outside the alphabet, misplaced padding, or non-zero bits in the padding (so each byte
/// string has exactly one accepted encoding); the error names the text, e.g. `bad base64 "Zg="`.
inline parsed<std::string> base64_decode(std::string_view text) {
  parsed<std::string> r;
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  const auto bad = [&](const char* why) {
    r.error = "bad base64 " + log::quoted(text) + ": " + why;
    return r;
  };
  if (text.size() % 4 != 0) return bad("length not a multiple of 4");
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int pad = 0;
    if (last && text[i + 3] == '=') pad = text[i + 2] == '=' ? 2 : 1;
    int v[4] = {0, 0, 0, 0};
    for (int k = 0; k < 4 - pad; ++k) {
      v[k] = value(text[i + k]);
      if (v[k] < 0) return bad("unexpected character");  // also catches '=' anywhere but the end
    }
    std::uint32_t n =
        (std::uint32_t(v[0]) << 18) | (std::uint32_t(v[1]) << 12) | (std::uint32_t(v[2]) << 6) | std::uint32_t(v[3]);
    out += static_cast<char>((n >> 16) & 0xff);
    if (pad == 2) {
      if (n & 0xffff) return bad("non-zero bits in the padding");
      break;
    }
    out += static_cast<char>((n >> 8) & 0xff);
    if (pad == 1) {
      if (n & 0xff) return bad("non-zero bits in the padding");
      break;
    }
    out += static_cast<char>(n & 0xff);
  }
  r.value = std::move(out);
  return r;
}

}  // namespace amb::detail
