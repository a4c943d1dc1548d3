// SPDX-License-Identifier: MIT
// The one place that includes picojson, so its layout macro is the same in every TU.
#pragma once

// etcd's lease ids and Docker's timeNano exceed 2^53: without int64 support
// picojson would round them through double (docs/protocols.md §1.3).
#if defined(picojson_h) && !defined(PICOJSON_USE_INT64)
#error \
    "picojson.h was included before amb without PICOJSON_USE_INT64; include amb first or define PICOJSON_USE_INT64 everywhere"
#endif
#ifndef PICOJSON_USE_INT64
#define PICOJSON_USE_INT64
#endif
// picojson includes <iostream> only for its stream operators, which amb never uses. With libstdc++,
// <iostream> also plants a static initialiser in every translation unit that constructs cin, cout,
// cerr and their locales at start-up: that pulls the whole iostream and locale code into the static
// programs and touches it in every process. So <iostream> is skipped for picojson here (its include
// guard defined for the moment; <istream> and <ostream> declare what picojson's operators name) and
// the guard is removed again afterwards, so a later #include <iostream> of the user's still works.
#if defined(__GLIBCXX__) && !defined(_GLIBCXX_IOSTREAM) && !defined(picojson_h)
#define AMB_JSON_SKIPS_IOSTREAM
#define _GLIBCXX_IOSTREAM 1
#include <istream>
#include <ostream>
#endif
#include <picojson.h>
#ifdef AMB_JSON_SKIPS_IOSTREAM
#undef _GLIBCXX_IOSTREAM
#undef AMB_JSON_SKIPS_IOSTREAM
#endif

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace amb::detail {

/// Deepest nesting of arrays and objects amb accepts in any JSON document. picojson parses (and later
/// destroys and serializes) values recursively, and Debian's 1.3.0 bounds the nesting of arrays but not
/// of objects: 50,000 levels of {"a": overflow the stack. Every document amb reads (registry values,
/// etcd and engine replies and events) is far flatter than this.
inline constexpr std::size_t json_max_depth = 64;

/// True when no array or object in [first, last) nests deeper than `limit` levels. Only brackets
/// outside strings count; the text is not otherwise checked (the parser does that afterwards).
template <class Iter>
bool json_depth_within(Iter first, Iter last, std::size_t limit) noexcept {
  std::size_t depth = 0;
  bool in_string = false;
  for (; first != last; ++first) {
    const char c = *first;
    if (in_string) {
      if (c == '\\') {
        if (++first == last) break;  // an escape at the very end: the parser reports it
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return false;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return true;
}

/// picojson::parse that never throws and never recurses deeper than json_max_depth: picojson throws
/// std::overflow_error for a number beyond a double ("1e999", found by fuzzing); here that is a parse
/// error like any other, set in `*err`, and so is nesting beyond the bound (checked before parsing).
/// Every JSON parse in amb goes through here.
template <class Iter>
Iter json_parse(picojson::value& out, const Iter& first, const Iter& last, std::string* err) {
  out = picojson::value();
  if (!json_depth_within(first, last, json_max_depth)) {
    *err = "nested deeper than " + std::to_string(json_max_depth) + " levels";
    return first;
  }
  try {
    return picojson::parse(out, first, last, err);
  } catch (const std::overflow_error&) {
    *err = "number out of range";
    out = picojson::value();
    return first;
  }
}

/// Member `name` of object `v`, or nullptr when `v` is not an object or lacks it.
inline const picojson::value* json_member(const picojson::value& v, const std::string& name) noexcept {
  if (!v.is<picojson::object>()) return nullptr;
  const auto& o = v.get<picojson::object>();
  auto it = o.find(name);
  return it == o.end() ? nullptr : &it->second;
}

/// String member, or `fallback` when absent or not a string.
inline std::string json_string(const picojson::value& v, const std::string& name, std::string fallback = {}) {
  const auto* m = json_member(v, name);
  return m && m->is<std::string>() ? m->get<std::string>() : fallback;
}

/// Boolean member, false when absent (etcd omits false values).
inline bool json_bool(const picojson::value& v, const std::string& name) noexcept {
  const auto* m = json_member(v, name);
  return m && m->is<bool>() && m->get<bool>();
}

}  // namespace amb::detail
