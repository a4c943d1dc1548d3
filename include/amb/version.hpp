// SPDX-License-Identifier: MIT
// amb's version, printed by every program's --version.
#pragma once

#define AMB_VERSION_MAJOR 0
#define AMB_VERSION_MINOR 1
#define AMB_VERSION_PATCH 0
#define AMB_VERSION_STRING "0.1.0"

namespace amb {
/// The library's version as "MAJOR.MINOR.PATCH".
inline constexpr const char* version = AMB_VERSION_STRING;
}  // namespace amb
