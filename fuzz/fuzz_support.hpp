// SPDX-License-Identifier: MIT
// Shared helpers for the fuzz targets: input as text, deterministic splits, a loud failed check.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

namespace amb::fuzz {

/// The fuzzer's bytes as a string_view.
inline std::string_view text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

/// Cut points for `s`, derived from its own bytes (FNV-1a seeded), so a corpus file stays a
/// plain real input and the same input always splits the same way (crashes reproduce).
inline std::vector<std::string_view> splits(std::string_view s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  std::vector<std::string_view> parts;
  std::size_t pos = 0;
  while (pos < s.size()) {
    h ^= h << 13;
    h ^= h >> 7;
    h ^= h << 17;
    // Mostly small pieces (1..8 bytes) with now and then a large one: both paths get exercised.
    std::size_t n = (h & 3) == 0 ? 1 + (h >> 8) % 256 : 1 + (h >> 8) % 8;
    if (n > s.size() - pos) n = s.size() - pos;
    parts.push_back(s.substr(pos, n));
    pos += n;
  }
  return parts;
}

/// A property the parser promises does not hold: report and abort, so libFuzzer saves the input.
[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "fuzz check failed: %s\n", what);
  std::abort();
}

}  // namespace amb::fuzz

#define AMB_FUZZ_CHECK(cond)               \
  do {                                     \
    if (!(cond)) ::amb::fuzz::fail(#cond); \
  } while (0)
