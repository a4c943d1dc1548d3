// SPDX-License-Identifier: MIT
// amb::parsed<T>: what every text parser returns (README, "Errors"): the value, or one line saying why not.
#pragma once

#include <optional>
#include <string>

namespace amb {

/// A value, or a one-line reason why the text could not be parsed.
template <class T>
struct parsed {
  std::optional<T> value;  ///< set on success
  std::string error;       ///< set on failure, e.g. `bad port "70000" in "redis:70000"`
  explicit operator bool() const noexcept { return value.has_value(); }
  const T& operator*() const { return *value; }
  const T* operator->() const { return &*value; }
};

}  // namespace amb
